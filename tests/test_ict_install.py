"""`kinesics install-ict` on a zip laid out like ICT-FaceKit's GitHub download, built in the test from the
shared OBJ files (never downloaded), and on an unpacked folder; plus the errors a user can meet."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import ict_install
from core.model_data import load_ict_folder, load_ict_npz

OBJS = ("generic_neutral_mesh.obj", "eyeBlink_L.obj", "jawOpen.obj", "vertex_indices.json")


@pytest.fixture(scope="module")
def ict_zip(ict_folder: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("download") / "ICT-FaceKit-master.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in OBJS:
            archive.write(ict_folder / name, f"ICT-FaceKit-master/FaceXModel/{name}")
        archive.write(ict_folder / "LICENSE", "ICT-FaceKit-master/LICENSE")
        archive.writestr("ICT-FaceKit-master/Scripts/readme.txt", "code and docs the installer leaves out")
    return path


@pytest.fixture(scope="module")
def installed(ict_zip: Path, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KINESICS_CACHE", str(cache))
        assert ict_install.main([str(ict_zip)]) == 0
    return cache / "models" / "ict_facekit"


def test_zip_installs_into_the_cache_as_the_npz_layout(installed: Path, ict_npz: Path):
    assert "MIT" in (installed / "LICENSE").read_text()
    model = load_ict_npz(installed / ict_install.NPZ_NAME)
    reference = np.load(ict_npz)
    assert model.expression_names == ("eyeBlink_L", "jawOpen")  # vertex_indices.json's order
    np.testing.assert_allclose(model.template * 100, reference["neutral"], atol=1e-4)
    names = list(reference["expression_names"])
    for k, name in enumerate(model.expression_names):
        np.testing.assert_allclose(model.exprdirs[:, :, k] * 100, reference["expressions"][names.index(name)],
                                   atol=1e-4)
    packed = np.load(installed / ict_install.NPZ_NAME)
    np.testing.assert_array_equal(packed["face_vertex_counts"], reference["face_vertex_counts"])
    np.testing.assert_array_equal(packed["face_vertex_indices"], reference["face_vertex_indices"])


def test_folder_install_matches_the_folder_loader(ict_folder: Path, tmp_path):
    unpacked = tmp_path / "ICT-FaceKit" / "FaceXModel"
    unpacked.mkdir(parents=True)
    for name in OBJS:
        shutil.copyfile(ict_folder / name, unpacked / name)
    out = ict_install.install(str(tmp_path / "ICT-FaceKit"), tmp_path / "dest")
    packed, original = load_ict_npz(out), load_ict_folder(unpacked)
    assert packed.expression_names == original.expression_names
    np.testing.assert_allclose(packed.template, original.template, atol=1e-6)
    np.testing.assert_allclose(packed.exprdirs, original.exprdirs, atol=1e-6)
    np.testing.assert_array_equal(packed.faces, original.faces)


def test_bad_sources_say_what_to_do(tmp_path, capsys):
    assert ict_install.main([str(tmp_path / "nowhere.zip"), "--dest", str(tmp_path / "d")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "notes.zip").write_text("not a zip")
    assert ict_install.main([str(tmp_path / "notes.zip"), "--dest", str(tmp_path / "d")]) == 1
    assert "is not a zip file" in capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("project/readme.md", "no model here")
    assert ict_install.main([str(tmp_path / "other.zip"), "--dest", str(tmp_path / "d")]) == 1
    assert "generic_neutral_mesh.obj is missing" in capsys.readouterr().err
    assert not (tmp_path / "d" / ict_install.NPZ_NAME).exists()
