"""FBX export of a retargeted character, re-imported with Blender's own importer: every shape key and every
bone compared at every frame, with each of the exporter's known traps set up (shape-key-only animation, a
Subdivision modifier, a scene range narrower than the animation)."""
from __future__ import annotations

import numpy as np
import pytest

from core.arkit_names import ARKIT_NAMES
from test_addon import random_capture, synthetic_model
from test_retarget_scene import BONES, bpy, empty_scene, extension_module, make_capture, make_character, \
    other_convention  # noqa: F401  (empty_scene is a fixture)

retarget = extension_module("addon.retarget")
export_fbx = extension_module("addon.export_fbx")


@pytest.fixture
def takes_registered():
    """A rig keeps its takes in a registered property; register it where the extension itself is not enabled."""
    takes = extension_module("addon.takes")
    if hasattr(bpy.types.Object, "kinesics"):
        yield
        return
    for cls in takes.classes:
        bpy.utils.register_class(cls)
    takes.register()
    yield
    takes.unregister()
    for cls in reversed(takes.classes):
        bpy.utils.unregister_class(cls)


def _world_delta(armature, bone_name) -> np.ndarray:
    """A posed bone's world transform relative to its rest (4,4): rotation and translation, whatever rest
    orientation the importer gives the bone."""
    pb = armature.pose.bones[bone_name]
    return np.array((armature.matrix_world @ pb.matrix) @ (armature.matrix_world @ pb.bone.matrix_local).inverted())


def _sample(scene, mesh, armature, frames) -> dict:
    """Every shape key value and every bone's world rotation at every frame."""
    out = {}
    for frame in frames:
        scene.frame_set(frame)
        for block in mesh.data.shape_keys.key_blocks[1:]:
            out.setdefault(block.name, []).append(block.value)
        if armature is not None:
            for bone in armature.pose.bones:
                out.setdefault(bone.name, []).append(_world_delta(armature, bone.name))
    return {k: np.array(v) for k, v in out.items()}


def _bake_character(scene, with_rig: bool):
    names = [other_convention(n, i) for i, n in enumerate(ARKIT_NAMES)]
    mesh, armature = make_character(names, with_rig=with_rig)
    bones = [retarget.BoneMap(s, b) for s, b in BONES.items()] if with_rig else []
    capture = make_capture(n=30, start=3, stride=2)
    report = retarget.bake(capture, mesh, retarget.RetargetMap(retarget.auto_map(names), bones), armature)
    scene.frame_start, scene.frame_end = 1, 20  # narrower than the animation (frames 4-62)
    return mesh, armature, report


@pytest.mark.parametrize("with_rig", [False, True], ids=["shape-keys-only", "shape-keys-and-bones"])
def test_fbx_round_trip_keeps_every_curve_at_every_frame(empty_scene, tmp_path, with_rig):
    mesh, armature, report = _bake_character(empty_scene, with_rig)
    frames = list(range(int(report.frames[0]), int(report.frames[1]) + 1))
    original = _sample(empty_scene, mesh, armature, frames)
    path = str(tmp_path / "character.fbx")

    (tmp_path / "character.fbx").write_text("an earlier export")
    result = export_fbx.export_fbx(path, [mesh])
    assert [p.name for p in tmp_path.iterdir()] == ["character.fbx"]  # written beside it, then renamed over it
    assert (empty_scene.frame_start, empty_scene.frame_end) == (1, 20)  # the scene range is restored
    assert result.frames == (frames[0], frames[-1])
    assert any("Subdivision" in w for w in result.warnings)
    assert sorted(result.objects) == sorted([mesh.name] + ([armature.name] if with_rig else []))

    again = _round_trip(path, frames)
    assert set(again) == set(original)
    for name, values in original.items():
        np.testing.assert_allclose(again[name], values, atol=1e-3, err_msg=name)
    # The shape-key animation really varies (a dropped action would read as a constant).
    assert np.ptp(again[other_convention("jawOpen", ARKIT_NAMES.index("jawOpen"))]) > 0.3


def _round_trip(path, frames) -> dict:
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 25
    imported = export_fbx.import_fbx(path)
    mesh = next(ob for ob in imported if ob.type == "MESH")
    armature = next((ob for ob in imported if ob.type == "ARMATURE"), None)
    return _sample(scene, mesh, armature, frames)


def test_fbx_of_the_capture_rig_bakes_keys_drivers_and_joints(empty_scene, tmp_path, takes_registered):
    """The capture rig: expression keys keyed, pose-corrective keys driven by the joints, joints rotating and
    moving. Exporting its armature takes its head along; every curve comes back."""
    rig, animate = extension_module("addon.rig"), extension_module("addon.animate")
    data = synthetic_model()
    capture = random_capture(data, 24)
    armature = rig.build_rig(data, capture["shape"], empty_scene.collection)
    animate.apply_capture(empty_scene, armature, capture)
    mesh = armature["kinesics_mesh"]
    frames = list(range(empty_scene.frame_start, empty_scene.frame_end + 1))
    original = _sample(empty_scene, mesh, armature, frames)
    assert any(k.startswith("pose_") for k in original)  # the driven correctives are among the curves
    path = str(tmp_path / "rig.fbx")
    assert sorted(export_fbx.export_fbx(path, [armature]).objects) == sorted([armature.name, mesh.name])
    again = _round_trip(path, frames)
    assert set(again) == set(original)
    for name, values in original.items():
        np.testing.assert_allclose(again[name], values, atol=1e-3, err_msg=name)


def test_export_with_nothing_exportable_is_refused(empty_scene, tmp_path):
    empty = bpy.data.objects.new("Empty", None)
    empty_scene.collection.objects.link(empty)
    with pytest.raises(export_fbx.ExportError, match="select the character"):
        export_fbx.export_fbx(str(tmp_path / "x.fbx"), [empty])
    mesh, _ = make_character(["jawOpen"], with_rig=False)
    with pytest.raises(export_fbx.ExportError, match="no such folder"):
        export_fbx.export_fbx(str(tmp_path / "missing" / "x.fbx"), [mesh])
