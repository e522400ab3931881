"""Enabling the Kinesics extension in the bpy module the way Blender enables a user extension: a user
repository pointed at a folder that holds a `kinesics` symlink to this checkout. Shared by the bpy tests."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import addon_utils  # comes with bpy
import bpy

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_MODULE = "kinesics_test"
PACKAGE = f"bl_ext.{REPO_MODULE}.kinesics"


def raise_error(err: BaseException) -> None:
    raise err


@contextmanager
def extension_enabled() -> Iterator[str]:
    """Enable the extension for the duration (or reuse it when another test module already has)."""
    if PACKAGE in bpy.context.preferences.addons:
        yield PACKAGE
        return
    folder = tempfile.mkdtemp(prefix="kinesics-repo-")
    os.symlink(REPO_ROOT, os.path.join(folder, "kinesics"))
    repos = bpy.context.preferences.extensions.repos
    repo = repos.new(name=REPO_MODULE, module=REPO_MODULE, custom_directory=folder, source="USER")
    addon_utils.enable(PACKAGE, default_set=True, handle_error=raise_error)
    try:
        yield PACKAGE
    finally:
        addon_utils.disable(PACKAGE, default_set=True, handle_error=raise_error)
        repos.remove(repo)
