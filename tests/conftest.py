"""Shared fixtures: the assets beside the checkout (skipped with a reason when absent) and cached models."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.paths import assets_dir, cache_dir


def _asset(relative: str) -> Path:
    path = assets_dir() / relative
    if not path.exists():
        pytest.skip(f"test asset {path} is absent (set KINESICS_ASSETS to the shared assets folder)")
    return path


@pytest.fixture(scope="session")
def assets() -> Path:
    return _asset("")


@pytest.fixture(scope="session")
def ict_npz() -> Path:
    return _asset("models/ict_facekit/ict_facekit.npz")


@pytest.fixture(scope="session")
def ict_folder() -> Path:
    return _asset("models/ict_facekit")


@pytest.fixture(scope="session")
def footage() -> Path:
    return _asset("footage")


@pytest.fixture(scope="session")
def synthetic() -> Path:
    return _asset("synthetic")


@pytest.fixture(scope="session")
def standin_model(ict_npz: Path) -> Path:
    """The FLAME-format stand-in built from ICT-FaceKit by the shared tool, generated once into the cache."""
    return standin_model_path(ict_npz)


def standin_model_path(ict_npz: Path) -> Path:
    out = cache_dir() / "standin" / "generic_model.pkl"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tool = assets_dir() / "tools" / "ict_to_flame_format.py"
        subprocess.run([sys.executable, str(tool), str(ict_npz), str(tmp)], check=True, capture_output=True)
        tmp.replace(out)
    return out
