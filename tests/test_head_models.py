"""The head-model layer: FLAME against smplx's own implementation, chumpy-free loading, ICT-FaceKit."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from core.errors import ModelFileError
from core.head_model import HeadModel
from core.model_data import load_flame, load_ict_folder, load_ict_npz, load_model_data
from core.safe_pickle import load_pickle


@pytest.fixture(scope="module")
def standin_data(standin_model):
    return load_model_data(standin_model)


def _random_params(batch: int, n_shape: int, n_expr: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: scale * torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return {"shape": r(batch, n_shape), "expression": r(batch, n_expr), "global_pose": r(batch, 3, scale=0.6),
            "neck_pose": r(batch, 3, scale=0.3), "jaw_pose": r(batch, 3, scale=0.3),
            "eye_pose": r(batch, 6, scale=0.3), "translation": r(batch, 3, scale=0.2)}


@pytest.fixture(scope="module")
def flame_with_correctives(standin_model, tmp_path_factory):
    """The stand-in with random pose correctives (its own are zero), so the oracle checks them too."""
    with open(standin_model, "rb") as fh:
        raw = pickle.load(fh)
    raw["posedirs"] = np.random.default_rng(7).normal(0, 2e-3, raw["posedirs"].shape)
    folder = tmp_path_factory.mktemp("smplx")
    (folder / "flame").mkdir()
    with open(folder / "flame" / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(raw, fh, protocol=2)
    with open(folder / "flame" / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": np.array([0, 1]), "lmk_b_coords": np.full((2, 3), 1 / 3)}, fh)
    return folder


def test_flame_forward_matches_smplx(flame_with_correctives):
    smplx = pytest.importorskip("smplx")
    n_shape, n_expr, batch = 100, 50, 4
    reference = smplx.create(str(flame_with_correctives), model_type="flame", num_betas=n_shape,
                             num_expression_coeffs=n_expr, use_face_contour=False, batch_size=batch).double()
    data = load_model_data(flame_with_correctives / "flame" / "FLAME_NEUTRAL.pkl")
    assert np.abs(data.posedirs).max() > 0
    ours = HeadModel(data.truncated(n_shape, n_expr), dtype=torch.float64)
    p = _random_params(batch, n_shape, n_expr)
    mine = ours(**p).vertices
    theirs = reference(betas=p["shape"], expression=p["expression"], global_orient=p["global_pose"],
                       neck_pose=p["neck_pose"], jaw_pose=p["jaw_pose"], leye_pose=p["eye_pose"][:, :3],
                       reye_pose=p["eye_pose"][:, 3:], transl=p["translation"]).vertices
    assert mine.shape == theirs.shape == (batch, data.n_vertices, 3)
    assert float((mine - theirs).abs().max()) < 1e-5
    # The comparison can fail: pose correctives left out, or a different pose, move vertices far more.
    data.posedirs = np.zeros_like(data.posedirs)
    assert float((HeadModel(data.truncated(n_shape, n_expr), dtype=torch.float64)(**p).vertices
                  - theirs).abs().max()) > 1e-4
    p["jaw_pose"] = p["jaw_pose"] + 0.05
    assert float((ours(**p).vertices - theirs).abs().max()) > 1e-4


def test_subset_equals_interpolated_full_forward(standin_data):
    data = standin_data.truncated(20, 20)
    model = HeadModel(data, dtype=torch.float64)
    rng = np.random.default_rng(2)
    tri = data.faces[rng.choice(len(data.faces), 50)]
    bary = rng.dirichlet(np.ones(3), 50)
    p = _random_params(3, 20, 20, seed=3)
    sub = model.subset(tri, bary)
    interpolate = lambda v: torch.einsum("lk,blkc->blc", torch.as_tensor(bary), v[:, torch.as_tensor(tri)])  # noqa
    rest = {k: p[k] for k in ("shape", "expression", "translation")}
    assert float((sub(**rest).vertices - interpolate(model(**rest).vertices)).abs().max()) < 1e-9
    # Posed, skinning with interpolated weights stays within a millimetre of the skinned triangle.
    assert float((sub(**p).vertices - interpolate(model(**p).vertices)).abs().max()) < 1e-3


def _install_stub_chumpy(monkeypatch) -> type:
    """A stand-in `chumpy.ch.Ch` class, as real FLAME 2020 pickles reference (chumpy itself is not installed)."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch = Ch
    chumpy.ch = ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch)
    return Ch


def test_chumpy_pickle_loads_without_chumpy(standin_model, tmp_path, monkeypatch):
    import scipy.sparse as sp

    with open(standin_model, "rb") as fh:
        raw = pickle.load(fh)
    Ch = _install_stub_chumpy(monkeypatch)
    # FLAME 2020's layout: chumpy arrays, and a sparse joint regressor.
    chumpified = dict(raw, v_template=Ch(raw["v_template"]), shapedirs=Ch(raw["shapedirs"]),
                      posedirs=Ch(raw["posedirs"]), weights=Ch(raw["weights"]), J=Ch(raw["J"]),
                      J_regressor=sp.csc_matrix(raw["J_regressor"]))
    path = tmp_path / "generic_model.pkl"
    with open(path, "wb") as fh:
        pickle.dump(chumpified, fh, protocol=2)
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    data = load_flame(path)
    reference = load_flame(standin_model)
    assert np.array_equal(data.template, reference.template)
    assert np.array_equal(data.shapedirs, reference.shapedirs)
    assert np.array_equal(data.j_regressor, reference.j_regressor)
    assert data.joint_names == ("global", "neck", "jaw", "left_eye", "right_eye")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unknown_classes_are_refused(tmp_path):
    payload = pickle.dumps({"v_template": _Evil()}, protocol=2)
    with pytest.raises(ModelFileError, match="print, which is not allowed"):
        load_pickle(payload, "evil.pkl")


def test_bad_model_files_say_what_is_wrong(standin_model, tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model_data(tmp_path / "missing.pkl")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(standin_model.read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model_data(truncated)
    unknown = tmp_path / "model.pkl"
    with open(unknown, "wb") as fh:
        pickle.dump({"vertices": np.zeros((3, 3))}, fh)
    with pytest.raises(ModelFileError, match="lacks v_template"):
        load_model_data(unknown)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="unknown head-model format"):
        load_model_data(text)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_model_data(empty)


def test_ict_folder_matches_packed_archive(ict_folder, ict_npz):
    folder = load_ict_folder(ict_folder)
    packed = load_ict_npz(ict_npz)
    assert folder.n_vertices == packed.n_vertices == 26719
    assert np.abs(folder.template - packed.template).max() < 1e-6
    assert np.abs(folder.template).max() < 1.0  # centimetres became metres
    for i, name in enumerate(folder.expression_names):
        j = packed.expression_names.index(name)
        assert np.abs(folder.exprdirs[:, :, i] - packed.exprdirs[:, :, j]).max() < 1e-6
    assert set(folder.expression_names) == {"jawOpen", "eyeBlink_L"}
    assert packed.n_expression == 53 and packed.n_shape == 100
    assert packed.joint_names == ("global",)
    assert {"face", "eyeballs", "mouth_interior"} <= set(packed.regions)
    assert load_model_data(ict_folder).kind == "ict"


def test_ict_rigid_pose_and_translation(ict_npz):
    data = load_ict_npz(ict_npz).truncated(10, 53)
    model = HeadModel(data, dtype=torch.float64)
    rest = model().vertices
    moved = model(global_pose=torch.tensor([[0.0, np.pi / 2, 0.0]], dtype=torch.float64),
                  translation=torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64)).vertices
    # Rigid: every distance between vertices is kept.
    idx = torch.arange(0, data.n_vertices, 997)
    d0 = torch.cdist(rest[0, idx], rest[0, idx])
    d1 = torch.cdist(moved[0, idx], moved[0, idx])
    assert float((d0 - d1).abs().max()) < 1e-7
    blink = torch.zeros(1, 53, dtype=torch.float64)
    blink[0, data.expression_names.index("eyeBlink_L")] = 1.0
    assert float((model(expression=blink).vertices - rest).abs().max()) > 1e-3
