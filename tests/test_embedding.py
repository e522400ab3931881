"""The landmark embedding derived by rendering a head and running MediaPipe on it, checked against
ICT-FaceKit's own 68-landmark annotation (which nobody here made)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from core.embedding import IRISES, MAX_SPREAD, N_LANDMARKS, HeadRenderer, landmark_embedding
from core.errors import ModelFileError
from core.model_data import HeadModelData, load_model_data
from core.render import Camera

# MediaPipe landmark -> Multi-PIE 68-point index: eye corners, mouth corners, nose tip, chin.
CHECKS = {33: 36, 133: 39, 362: 42, 263: 45, 61: 48, 291: 54, 1: 30, 152: 8}
MAX_ERROR, MAX_MEDIAN = 0.012, 0.006


@pytest.fixture(scope="module")
def annotation(ict_folder: Path) -> np.ndarray:
    """The 68 landmark vertex ids shipped with ICT-FaceKit."""
    return np.asarray(json.loads((ict_folder / "vertex_indices.json").read_text())["idx_to_landmark_verts"])


@pytest.fixture(scope="module")
def ict(ict_npz: Path) -> HeadModelData:
    return load_model_data(ict_npz)


@pytest.fixture(scope="module")
def ict_from_folder(ict_folder: Path) -> HeadModelData:
    return load_model_data(ict_folder)


@pytest.fixture(scope="module")
def standin(standin_model: Path) -> HeadModelData:
    """The FLAME-format stand-in: ICT's head in a FLAME pickle, with no region names but the eyeballs."""
    return load_model_data(standin_model)


@pytest.fixture(scope="module", params=["ict", "ict_from_folder", "standin"])
def derived(request) -> tuple[HeadModelData, object]:
    """(model, its embedding derived afresh) for each way ICT-FaceKit's head reaches us."""
    data = request.getfixturevalue(request.param)
    return data, landmark_embedding(data, cache=False)


def check_errors(data: HeadModelData, embedding, annotation: np.ndarray) -> np.ndarray:
    """Distances (metres) of the checked landmarks from the annotated vertices."""
    return np.array([np.linalg.norm(embedding.points[mp] - data.template[annotation[i68]])
                     for mp, i68 in CHECKS.items()])


def test_landmarks_match_the_ict_annotation(derived, annotation):
    data, embedding = derived
    errors = check_errors(data, embedding, annotation)
    report = ", ".join(f"{mp}:{e * 1000:.1f}mm" for mp, e in zip(CHECKS, errors))
    assert errors.max() <= MAX_ERROR, report
    assert np.median(errors) <= MAX_MEDIAN, report
    assert embedding.valid[list(CHECKS)].all(), report


def test_embedding_is_a_consistent_surface_embedding(derived):
    data, emb = derived
    assert emb.triangles.shape == (N_LANDMARKS, 3) and emb.triangles.dtype == np.int64
    assert emb.barycentric.shape == (N_LANDMARKS, 3) and emb.points.shape == (N_LANDMARKS, 3)
    assert emb.valid.dtype == bool and emb.spread.shape == (N_LANDMARKS,)
    # Every triangle is one of the model's faces, with its corners in the model's order.
    faces = {tuple(f) for f in data.faces.tolist()}
    assert all(tuple(t) in faces for t in emb.triangles.tolist())
    assert np.allclose(emb.barycentric.sum(1), 1) and (emb.barycentric > -1e-6).all()
    assert np.allclose(np.einsum("nk,nkd->nd", emb.barycentric, data.template[emb.triangles]), emb.points, atol=1e-9)
    assert (emb.spread[emb.valid] <= MAX_SPREAD).all()
    # Most of the face is reliable; the irises sit on the eyeballs.
    assert emb.valid.sum() >= 0.75 * N_LANDMARKS
    assert emb.valid[IRISES].all()
    assert np.isin(emb.triangles[IRISES], data.regions["eyeballs"]).all()


def test_silhouette_landmarks_spread_more_than_central_ones(derived):
    _, emb = derived
    cheek_contour = [234, 454, 127, 356]  # on the face oval, seen edge-on from the front
    central = [168, 6, 0, 17]  # nose bridge, upper and lower lip middle
    assert emb.spread[cheek_contour].min() > 2 * emb.spread[central].max()
    assert not emb.valid[cheek_contour].any()


def test_eye_shells_are_hidden_with_or_without_region_names(ict, standin):
    """ICT names its lashes and eye helpers; the FLAME-format stand-in does not, yet loses the same parts."""
    assert "eye_helpers" not in standin.regions
    helpers = ict.regions["eye_helpers"]
    for renderer in (HeadRenderer(ict), HeadRenderer(standin)):
        assert not np.isin(renderer.faces, helpers).any()
        assert len(renderer.faces) == np.count_nonzero(~np.isin(ict.faces, helpers).any(axis=1))


def test_camera_rays_and_projection_agree():
    camera = Camera.look_at(np.array([0.1, 0.2, 0.6]), np.array([0.0, 0.05, 0.1]), 700.0, 640, 480)
    assert np.allclose(camera.project(np.array([[0.0, 0.05, 0.1]])), [[320, 240]])
    pixels = np.array([[0.5, 0.5], [639.5, 10.0], [100.0, 479.0], [320.0, 240.0]])
    origins, directions = camera.rays(pixels)
    assert np.allclose(camera.project(origins + 0.37 * directions), pixels)
    # +Y up in the world is up in the image (v decreasing).
    above = camera.project(np.array([[0.0, 0.06, 0.1]]))
    assert above[0, 1] < 240


def test_render_shows_the_face_and_the_eyes(ict):
    head = HeadRenderer(ict)
    render = head.render(head.portrait_camera())
    assert render.image.shape == (512, 512, 3) and render.image.dtype == np.uint8
    # A ray at each eyeball's front meets the eyeball, not a shell in front of it.
    eyeballs = ict.template[ict.regions["eyeballs"]]
    for side in (eyeballs[eyeballs[:, 0] < 0], eyeballs[eyeballs[:, 0] > 0]):
        front = side[np.argmax(side[:, 2])]
        hits = head.scene.cast(front[None] + [0, 0, 0.5], np.array([[0.0, 0.0, -1.0]]))
        assert np.isin(head.faces[hits.triangle[0]], ict.regions["eyeballs"]).all()


def test_cache_is_keyed_by_content(ict, tmp_path, monkeypatch):
    monkeypatch.setenv("KINESICS_CACHE", str(tmp_path))
    calls = []
    first = landmark_embedding(ict, progress=lambda fraction, message: calls.append(fraction))
    assert calls and calls[-1] == 1.0
    entries = list((tmp_path / "embeddings").glob("*.npz"))
    assert len(entries) == 1 and entries[0].name.startswith(ict.content_hash)

    calls.clear()
    again = landmark_embedding(ict, progress=lambda fraction, message: calls.append(fraction))
    assert not calls, "a second call must be served from the cache"
    for name in ("triangles", "barycentric", "valid", "spread", "points"):
        assert np.array_equal(getattr(first, name), getattr(again, name))

    # A different head (the same one raised 2 cm) gets its own entry, and its landmarks follow it.
    raised = HeadModelData(**{**ict.__dict__, "template": ict.template + [0, 0.02, 0], "content_hash": "raised"})
    moved = landmark_embedding(raised)
    assert len(list((tmp_path / "embeddings").glob("*.npz"))) == 2
    both = first.valid & moved.valid
    shift = moved.points[both] - first.points[both] - [0, 0.02, 0]
    assert np.median(np.linalg.norm(shift, axis=1)) < 0.0015

    # A damaged entry (a write cut short) is derived again, not trusted.
    entries[0].write_bytes(entries[0].read_bytes()[:300])
    calls.clear()
    repaired = landmark_embedding(ict, progress=lambda fraction, message: calls.append(fraction))
    assert calls and np.array_equal(repaired.triangles, first.triangles)


def _sphere_model(source: str) -> HeadModelData:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    v = len(sphere.vertices)
    return HeadModelData(kind="flame", template=np.asarray(sphere.vertices), faces=np.asarray(sphere.faces, np.int64),
                         shapedirs=np.zeros((v, 3, 0)), exprdirs=np.zeros((v, 3, 0)), posedirs=np.zeros((v, 3, 0)),
                         j_regressor=np.full((1, v), 1 / v), weights=np.ones((v, 1)), parents=np.array([-1]),
                         joint_names=("global",), source=source)


def test_a_head_without_a_face_is_refused(tmp_path):
    source = str(tmp_path / "sphere.pkl")
    with pytest.raises(ModelFileError, match="sphere.pkl.*finds no face"):
        landmark_embedding(_sphere_model(source), cache=False)


def test_bad_model_files_are_refused_with_the_file_named(tmp_path, ict_npz, standin_model):
    truncated_npz = tmp_path / "ict_cut.npz"
    truncated_npz.write_bytes(ict_npz.read_bytes()[:3_000_000])
    truncated_pkl = tmp_path / "flame_cut.pkl"
    with open(standin_model, "rb") as fh:
        truncated_pkl.write_bytes(fh.read(1_000_000))
    unknown = tmp_path / "head.bin"
    unknown.write_bytes(b"\x00binary head of some other tool\x00")
    not_flame = tmp_path / "other.npz"
    np.savez(not_flame, vertices=np.zeros((3, 3)))
    cases = {tmp_path / "missing.pkl": "no such file", truncated_npz: "truncated", truncated_pkl: "truncated",
             unknown: "unknown head-model format", not_flame: "lacks"}
    for path, problem in cases.items():
        with pytest.raises(ModelFileError, match=problem) as err:
            landmark_embedding(load_model_data(path), cache=False)
        assert str(path) in str(err.value)


def test_rays_without_embree_meet_what_embree_meets(ict, monkeypatch):
    """Where Embree has no wheel (Apple silicon), the id-buffer caster renders the same head and finds the same
    surface behind the landmark rays (sub-pixel positions, not pixel centres)."""
    from core import render

    head = HeadRenderer(ict)
    camera = head.camera(head.bounds.mean(0), 0.6, yaw_deg=30, pitch_deg=10)
    pixels = np.random.default_rng(3).uniform(100, 412, (500, 2))
    with_embree = head.render(camera), head.scene.cast(*camera.rays(pixels))
    monkeypatch.setattr(render, "EMBREE", False)
    without = head.render(camera), head.scene.cast(*camera.rays(pixels))
    a, b = with_embree[0].hits, without[0].hits
    assert np.mean(a.hit == b.hit) > 0.995
    both = a.hit & b.hit
    assert np.mean(a.triangle[both] == b.triangle[both]) > 0.998
    assert np.abs(with_embree[0].image.astype(int) - without[0].image.astype(int)).mean() < 0.5
    rays_a, rays_b = with_embree[1], without[1]
    assert np.array_equal(rays_a.hit, rays_b.hit) and rays_a.hit.sum() > 300
    same = rays_a.triangle == rays_b.triangle
    assert same.mean() > 0.99
    np.testing.assert_allclose(rays_b.points[same], rays_a.points[same], atol=1e-7)
    np.testing.assert_allclose(rays_b.barycentric[same], rays_a.barycentric[same], atol=1e-5)
    with pytest.raises(ValueError, match="share their origin"):
        head.scene.cast(np.eye(3), np.tile([0.0, 0.0, -1.0], (3, 1)))
