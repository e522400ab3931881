"""The retarget panel's operators in real bpy: detect, edit, preset save/load, bake from a capture file,
Live Link Face export then import onto a second character, and the refusal for a character with no keys."""
from __future__ import annotations

import numpy as np
import pytest

from core import capture_file
from core.arkit_names import ARKIT_NAMES
from test_addon import CheckedLayout, draw
from test_retarget_scene import BONES, bpy, empty_scene, enabled_extension, make_capture, make_character, \
    other_convention  # noqa: F401  (empty_scene and enabled_extension are fixtures)

pytestmark = pytest.mark.usefixtures("enabled_extension")


def _capture_file(tmp_path, n=20) -> str:
    """A capture file that meets the whole contract, around the synthetic curves and poses."""
    capture = make_capture(n=n, start=3, stride=1)
    capture.update(image_size=np.array([64, 64]), shape=np.zeros(10), expression=np.zeros((n, 4)),
                   translation=np.zeros((n, 3)), focal_px=np.float64(60.0), cx=np.float64(32), cy=np.float64(32),
                   landmarks=np.zeros((n, 478, 3), np.float32))
    return str(capture_file.save(tmp_path / "take.npz", capture))


def _world_delta(armature, bone_name) -> np.ndarray:
    pb = armature.pose.bones[bone_name]
    return np.array(pb.matrix.to_3x3().normalized() @ pb.bone.matrix_local.to_3x3().normalized().inverted())


def _character(scene, name, k):
    mesh, armature = make_character([other_convention(n, k) for n in ARKIT_NAMES], name=name)
    s = scene.kinesics_retarget
    s.character, s.armature = mesh, armature
    assert bpy.ops.kinesics.retarget_detect() == {"FINISHED"}
    return mesh, armature


def test_detect_edit_and_preset_round_trip(empty_scene, tmp_path):
    _character(empty_scene, "Hero", 1)
    s = empty_scene.kinesics_retarget
    assert len(s.channels) == 52 and {(b.source, b.bone) for b in s.bones} == set(BONES.items())
    s.channels[0].gain, s.channels[0].clamp, s.channels[0].neutral = 1.7, False, 0.3
    s.bones[0].gain, s.bones[0].rest = (1.0, 0.5, 0.25), (0.1, -0.2, 0.05)
    bpy.ops.kinesics.retarget_row(collection="channels", action="ADD")
    s.channels[-1].channel, s.channels[-1].target = "tongueOut", "Face.jawOpen"
    saved = s.to_map()
    preset = str(tmp_path / "hero.json")
    assert bpy.ops.kinesics.retarget_preset_save(filepath=preset) == {"FINISHED"}
    s.channel_index = 0
    bpy.ops.kinesics.retarget_row(collection="channels", action="REMOVE")
    assert len(s.channels) == 52
    assert bpy.ops.kinesics.retarget_preset_load(filepath=preset) == {"FINISHED"}
    assert s.to_map() == saved


def test_bake_from_capture_then_livelink_round_trip(empty_scene, tmp_path):
    empty_scene.render.fps = 24  # the bake matches the capture's 25 fps
    mesh, armature = _character(empty_scene, "Hero", 0)
    s = empty_scene.kinesics_retarget
    s.source = _capture_file(tmp_path)
    assert "UNDO" in bpy.types.KINESICS_OT_retarget_bake.bl_options  # one undo step reverts the bake
    assert bpy.ops.kinesics.retarget_bake() == {"FINISHED"}
    assert empty_scene.render.fps == 25
    frames = range(empty_scene.frame_start + 3, empty_scene.frame_start + 23)
    watched = [n for n in ARKIT_NAMES if n != "jawOpen"]  # jawOpen also reads the capture's jaw pose

    def sample(mesh, armature, frames, convention):
        keys, heads = [], []
        for frame in frames:
            empty_scene.frame_set(frame)
            keys.append([mesh.data.shape_keys.key_blocks[other_convention(n, convention)].value for n in watched])
            heads.append([_world_delta(armature, b) for b in ("head", "eye.L", "eye.R")])
        return np.array(keys), np.array(heads)

    keys, heads = sample(mesh, armature, frames, 0)
    assert np.ptp(keys, axis=0).min() > 0.05  # every channel moves

    csv_path = str(tmp_path / "take.csv")
    assert bpy.ops.kinesics.livelink_export(filepath=csv_path) == {"FINISHED"}
    mesh2, armature2 = _character(empty_scene, "Double", 3)
    assert bpy.ops.kinesics.livelink_import(filepath=csv_path) == {"FINISHED"}
    # The take starts at its own frame 0, three frames before the capture's first video frame.
    keys2, heads2 = sample(mesh2, armature2, [f - 3 for f in frames], 3)
    np.testing.assert_allclose(keys2, keys, atol=1e-5)
    np.testing.assert_allclose(heads2, heads, atol=1e-4)


def test_neutral_from_frame_makes_the_rest_face_read_zero(empty_scene, tmp_path):
    """At a frame the animator picks as the actor's rest face, every channel reads 0 after Neutral from Frame and
    every bone is at its rest pose; every other frame's channels are rescaled so that full stays full,
    (weight - rest) / (1 - rest), and every bone turns by the same rotation relative to the rest frame's pose."""
    empty_scene.render.fps = 24  # the operator reads frames at the rate the bake will set (the capture's 25)
    mesh, armature = _character(empty_scene, "Hero", 0)
    s = empty_scene.kinesics_retarget
    s.source = _capture_file(tmp_path)
    s.jaw_open_from_pose = False
    frames = range(empty_scene.frame_start + 3, empty_scene.frame_start + 23)

    def keyed() -> tuple[np.ndarray, np.ndarray]:
        assert bpy.ops.kinesics.retarget_bake() == {"FINISHED"}
        keys, poses = [], []
        for frame in frames:
            empty_scene.frame_set(frame)
            keys.append([mesh.data.shape_keys.key_blocks[other_convention(n, 0)].value for n in ARKIT_NAMES])
            poses.append([np.array(armature.pose.bones[b].matrix_basis.to_3x3()) for b in BONES.values()])
        return np.array(keys), np.array(poses)

    before, posed = keyed()
    rest = 7  # capture frame 7 (video frame 10): scene frame_start + 10 at the capture's rate
    empty_scene.frame_set(empty_scene.frame_start + 10)
    empty_scene.render.fps = 24
    assert bpy.ops.kinesics.retarget_neutral() == {"FINISHED"}
    neutral = np.array([next(c.neutral for c in s.channels if c.channel == n) for n in ARKIT_NAMES])
    np.testing.assert_allclose(neutral, np.minimum(before[rest], 0.9), atol=1e-6)
    after, reposed = keyed()
    at_rest = before[rest] <= 0.9  # a higher reading is no rest face: it is capped, keeping a tenth of the range
    assert at_rest.sum() > 30
    np.testing.assert_allclose(after[rest][at_rest], 0.0, atol=1e-6)
    np.testing.assert_allclose(after, np.clip((before - neutral) / (1 - neutral), 0, 1), atol=1e-5)
    np.testing.assert_allclose(reposed[rest], np.broadcast_to(np.eye(3), reposed[rest].shape), atol=1e-5)
    assert np.abs(posed[rest] - np.eye(3)).max() > 0.05  # the capture's rest frame was not at rest before
    relative = np.einsum("bji,tbjk->tbik", posed[rest], posed)  # each bone's pose relative to the rest frame's
    np.testing.assert_allclose(reposed, relative, atol=1e-4)


def test_bake_onto_a_character_without_matching_keys_reports_why(empty_scene, tmp_path):
    mesh, _ = make_character(["smile", "frown"], name="Robot", with_rig=False)
    s = empty_scene.kinesics_retarget
    s.character, s.armature, s.source = mesh, None, _capture_file(tmp_path, n=4)
    empty_scene.render.fps = 24
    bpy.ops.kinesics.retarget_detect()
    with pytest.raises(RuntimeError, match="Robot has no shape keys matching the ARKit names"):
        bpy.ops.kinesics.retarget_bake()
    assert mesh.data.shape_keys.animation_data is None and empty_scene.render.fps == 24


def test_bake_as_new_action_is_named_after_the_capture(empty_scene, tmp_path):
    mesh, armature = _character(empty_scene, "Hero", 2)
    s = empty_scene.kinesics_retarget
    s.source, s.new_action = _capture_file(tmp_path, n=5), True
    assert bpy.ops.kinesics.retarget_bake() == {"FINISHED"}
    assert mesh.data.shape_keys.animation_data.action.name == "take Face"
    assert armature.animation_data.action.name == "take Head"


def test_export_operator_writes_the_character(empty_scene, tmp_path):
    mesh, armature = _character(empty_scene, "Hero", 2)
    empty_scene.kinesics_retarget.source = _capture_file(tmp_path, n=5)
    bpy.ops.kinesics.retarget_bake()
    path = tmp_path / "hero.fbx"
    assert bpy.ops.kinesics.export_fbx(filepath=str(path)) == {"FINISHED"}
    assert path.stat().st_size > 1000


@pytest.mark.parametrize("source", ["", "take.npz", "take.csv"])
def test_panels_and_lists_draw(empty_scene, source):
    s = empty_scene.kinesics_retarget
    s.source = source
    assert draw(bpy.types.KINESICS_PT_retarget) and draw(bpy.types.KINESICS_PT_export)
    _character(empty_scene, "Hero", 0)
    calls = draw(bpy.types.KINESICS_PT_retarget)
    ops = {c[1][0] for c in calls if c[0] == "operator"}
    assert {"kinesics.retarget_detect", "kinesics.retarget_bake", "kinesics.retarget_row"} <= ops
    assert any(c[1][1] == "livelink_fps" for c in calls if c[0] == "prop") == source.endswith(".csv")
    for ul, rows in ((bpy.types.KINESICS_UL_channels, s.channels), (bpy.types.KINESICS_UL_bones, s.bones)):
        calls = []
        ul.draw_item(None, bpy.context, CheckedLayout(calls), s, rows[0], 0, s, "", 0)
        assert any(c[0] == "prop_search" for c in calls)
