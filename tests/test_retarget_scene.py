"""Shared builders for the retarget, FBX and Live Link tests (real bpy): the extension loaded as a package,
a light character with ARKit keys under other naming conventions plus a head rig, and synthetic captures."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile

import numpy as np
import pytest

from core.arkit_names import ARKIT_NAMES
from core.livelink import CAMERA_TO_FACE
from core.rotations import matrix_to_rotvec, ypr_to_matrix

# Keep extension user data out of the real home; only effective before bpy is imported (as in test_addon).
if "bpy" not in sys.modules:
    os.environ.setdefault("BLENDER_USER_EXTENSIONS", tempfile.mkdtemp(prefix="kinesics-ext-user-"))
bpy = pytest.importorskip("bpy")

from blender_extension import PACKAGE, REPO_ROOT as ROOT, extension_enabled  # noqa: E402


def extension_module(name: str):
    """`<extension>.<name>` from this checkout: the enabled extension's module when it is enabled, else the
    repository root loaded as a package named `kinesics` (enough for logic that registers nothing)."""
    if PACKAGE in sys.modules:
        return importlib.import_module(f"{PACKAGE}.{name}")
    if "kinesics" not in sys.modules:
        spec = importlib.util.spec_from_file_location("kinesics", ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["kinesics"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"kinesics.{name}")


@pytest.fixture(scope="module")
def enabled_extension():
    with extension_enabled() as package:
        yield package




def other_convention(name: str, k: int) -> str:
    """ARKit name `name` spelled in one of several rig conventions, chosen by k."""
    side = "Left" if name.endswith("Left") else "Right" if name.endswith("Right") else ""
    base = name[: len(name) - len(side)]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in base)
    short = side[:1]
    return [f"CC_Base_{base[0].upper()}{base[1:]}{'_' + short if side else ''}",
            f"Face.{base}{'.' + short if side else ''}",
            f"{snake}{'_' + side.lower() if side else ''}",
            f"{base[0].upper()}{base[1:]}{side}"][k % 4]


def make_character(key_names, name: str = "Character", with_rig: bool = True, modifier: bool = True):
    """A small grid mesh with a Basis and one displaced shape key per name, optionally skinned to a head rig
    (neck > head > jaw, eye.L, eye.R; rolled bones, so rest frames differ from the armature's axes) and
    carrying a Subdivision modifier (the FBX exporter's shape-key trap)."""
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=6, y_subdivisions=6, size=0.2, location=(0, -0.1, 1.6),
                                    rotation=(np.pi / 2, 0, 0))
    mesh = bpy.context.object
    mesh.name = name
    bpy.ops.object.transform_apply(location=True, rotation=True, scale=True)
    mesh.shape_key_add(name="Basis")
    rng = np.random.default_rng(7)
    n_verts = len(mesh.data.vertices)
    base = np.array([v.co[:] for v in mesh.data.vertices])
    for key_name in key_names:
        key = mesh.shape_key_add(name=key_name, from_mix=False)
        key.data.foreach_set("co", (base + rng.normal(0, 0.01, base.shape)).ravel())
    if modifier:
        mesh.modifiers.new("Subdivision", "SUBSURF")
    if not with_rig:
        return mesh, None
    armature = bpy.data.objects.new(f"{name}Rig", bpy.data.armatures.new(f"{name}Rig"))
    bpy.context.scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    spec = {"neck": ((0, 0, 1.40), (0, 0, 1.50), 0.3, None), "head": ((0, 0, 1.50), (0, 0, 1.75), -0.5, "neck"),
            "jaw": ((0, -0.02, 1.56), (0, -0.10, 1.50), 0.2, "head"),
            "eye.L": ((0.03, -0.08, 1.62), (0.03, -0.11, 1.62), 0.0, "head"),
            "eye.R": ((-0.03, -0.08, 1.62), (-0.03, -0.11, 1.62), 1.0, "head")}
    for bone_name, (head, tail, roll, parent) in spec.items():
        edit = armature.data.edit_bones.new(bone_name)
        edit.head, edit.tail, edit.roll = head, tail, roll
        if parent:
            edit.parent = armature.data.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    group = mesh.vertex_groups.new(name="head")
    group.add(list(range(n_verts)), 1.0, "REPLACE")
    jaw = mesh.vertex_groups.new(name="jaw")
    jaw.add([v.index for v in mesh.data.vertices if v.co.z < 1.58], 0.5, "REPLACE")
    modifier_arm = mesh.modifiers.new("Armature", "ARMATURE")
    modifier_arm.object = armature
    mesh.parent = armature
    return mesh, armature


BONES = {"neck": "neck", "head": "head", "jaw": "jaw", "left_eye": "eye.L", "right_eye": "eye.R"}


def make_capture(n: int = 36, start: int = 3, stride: int = 2, fps: float = 25.0, seed: int = 0) -> dict:
    """A capture of smooth random ARKit curves, head (global and neck), jaw and eye rotations."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)[:, None]
    phase = rng.uniform(0, 2 * np.pi, (1, len(ARKIT_NAMES)))
    arkit = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2, (1, len(ARKIT_NAMES))) * t + phase)
    ypr = 0.4 * np.sin(2 * np.pi * t * np.array([1.0, 1.5, 0.7]) + np.array([0.0, 1.0, 2.0]))
    return {
        "fps": np.float64(fps),
        "frame_index": start + stride * np.arange(n),
        "valid": np.ones(n, bool),
        "model": "test",
        "arkit_names": np.array(ARKIT_NAMES),
        "arkit": arkit.astype(np.float32),
        "global_pose": matrix_to_rotvec(CAMERA_TO_FACE @ ypr_to_matrix(ypr)),
        "neck_pose": 0.2 * np.sin(2 * np.pi * t * np.array([0.5, 1.0, 1.5])),
        "jaw_pose": np.concatenate([0.25 * (1 + np.sin(6 * t)), 0.02 * np.cos(3 * t), 0 * t], 1),
        "eye_pose": 0.3 * np.sin(2 * np.pi * t * np.array([1.0, 2.0, 0.0, 1.2, 1.8, 0.0])),
    }


@pytest.fixture
def empty_scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0  # the captures' rate: one key per scene frame
    yield scene
