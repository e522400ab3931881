"""Retargeting onto a character in real bpy: key detection across naming conventions, baked values on every
frame, bone rotations in each bone's rest frame, presets, and a clear refusal when nothing would move."""
from __future__ import annotations

import numpy as np
import pytest

from core.arkit_names import ARKIT_NAMES, arkit_from_capture
from core.livelink import CAMERA_TO_FACE
from core.rotations import rotvec_to_matrix
from test_retarget_scene import BONES, bpy, empty_scene, extension_module, make_capture, make_character, \
    other_convention  # noqa: F401  (empty_scene is a fixture)

retarget = extension_module("addon.retarget")


def test_canonical_names_are_unambiguous():
    canon = [retarget.canonical(n) for n in ARKIT_NAMES]
    assert len(set(canon)) == 52
    # No ARKit name may read as a prefixed spelling of another.
    assert not [(a, b) for a in canon for b in canon if a != b and a.endswith(b)]


@pytest.mark.parametrize("k", range(4))
def test_auto_map_finds_every_channel_in_each_convention(k):
    names = {other_convention(n, k): n for n in ARKIT_NAMES}
    rows = retarget.auto_map(list(names) + ["Basis", "eyeBlinkLeft_corrective", "body_fat"])
    assert {(r.channel, r.target) for r in rows} == {(n, key) for key, n in names.items()}


def test_auto_map_splits_unsided_channels_over_left_and_right_keys(ict_npz):
    ict_names = [str(n) for n in np.load(ict_npz)["expression_names"]]
    rows = retarget.auto_map(ict_names)
    mapping = {}
    for r in rows:
        mapping.setdefault(r.channel, []).append(r.target)
    assert mapping["browInnerUp"] == ["browInnerUp_L", "browInnerUp_R"]
    assert mapping["cheekPuff"] == ["cheekPuff_L", "cheekPuff_R"]
    assert mapping["eyeBlinkLeft"] == ["eyeBlink_L"] and mapping["mouthLeft"] == ["mouthLeft"]
    assert "tongueOut" not in mapping and len(mapping) == 51


def test_bake_keys_every_frame_with_gain_offset_and_clamp(empty_scene):
    names = [other_convention(n, i) for i, n in enumerate(ARKIT_NAMES)]
    mesh, _ = make_character(names, with_rig=False)
    capture = make_capture()
    mapping = retarget.RetargetMap(retarget.auto_map(names))
    blink = next(r for r in mapping.channels if r.channel == "eyeBlinkLeft")
    blink.gain, blink.offset = 2.0, -0.5
    smile = next(r for r in mapping.channels if r.channel == "mouthSmileLeft")
    smile.gain, smile.clamp = 3.0, False
    report = retarget.bake(capture, mesh, mapping)
    assert len(report.keys) == 52 and report.bones == [] and report.skipped == []
    arkit = arkit_from_capture(capture)
    frames = empty_scene.frame_start + capture["frame_index"]
    assert report.frames == (frames[0], frames[-1])
    blocks = mesh.data.shape_keys.key_blocks
    expected_jaw = np.maximum(arkit[:, ARKIT_NAMES.index("jawOpen")], np.clip(capture["jaw_pose"][:, 0] / 0.35, 0, 1))
    for i, frame in enumerate(frames):
        empty_scene.frame_set(int(frame))
        for j, name in enumerate(ARKIT_NAMES):
            value = blocks[names[j]].value
            if name == "eyeBlinkLeft":
                assert value == pytest.approx(np.clip(2 * arkit[i, j] - 0.5, 0, 1), abs=1e-5)
            elif name == "mouthSmileLeft":
                # Unclamped rows may leave [0, 1], but Blender's slider range still limits the evaluated value.
                fcurve = mesh.data.shape_keys.animation_data.action.layers[0].strips[0].channelbag(
                    mesh.data.shape_keys.animation_data.action_slot).fcurves.find(
                    f'key_blocks["{names[j]}"].value')
                assert fcurve.evaluate(frame) == pytest.approx(3 * arkit[i, j], abs=1e-5)
            elif name == "jawOpen":
                assert value == pytest.approx(expected_jaw[i], abs=1e-5)
            else:
                assert value == pytest.approx(arkit[i, j], abs=1e-5)
    # Plain keys only: no drivers, no constraints.
    assert mesh.data.shape_keys.animation_data.drivers.__len__() == 0


def test_rebake_replaces_the_keys_of_the_same_curves(empty_scene):
    names = [other_convention(n, 1) for n in ARKIT_NAMES]
    mesh, _ = make_character(names, with_rig=False)
    mapping = retarget.RetargetMap(retarget.auto_map(names))
    retarget.bake(make_capture(n=10, seed=1), mesh, mapping)
    retarget.bake(make_capture(n=20, seed=2), mesh, mapping)
    action = mesh.data.shape_keys.animation_data.action
    fcurves = action.layers[0].strips[0].channelbag(mesh.data.shape_keys.animation_data.action_slot).fcurves
    assert len(fcurves) == 52 and all(len(fc.keyframe_points) == 20 for fc in fcurves)


def test_bake_as_new_actions_keeps_the_earlier_take(empty_scene):
    """Baked as a take, each capture gets actions of its own on the character; the earlier ones are kept (fake
    user) with their keys, and the bones' action is the armature's, not the shape keys'."""
    names = [other_convention(n, 1) for n in ARKIT_NAMES]
    mesh, armature = make_character(names, with_rig=True)
    mapping = retarget.RetargetMap(retarget.auto_map(names), retarget.guess_bones(armature.data.bones.keys()))
    retarget.bake(make_capture(n=10, seed=1), mesh, mapping, armature, take="walk")
    first = mesh.data.shape_keys.animation_data.action
    retarget.bake(make_capture(n=20, seed=2), mesh, mapping, armature, take="talk")
    key_anim, bone_anim = mesh.data.shape_keys.animation_data, armature.animation_data
    assert (key_anim.action.name, bone_anim.action.name) == ("talk Face", "talk Head")
    assert first.name == "walk Face" and first.use_fake_user and "walk Head" in bpy.data.actions
    keys = lambda action, slot: [len(fc.keyframe_points)  # noqa: E731
                                 for fc in action.layers[0].strips[0].channelbag(slot).fcurves]
    assert set(keys(first, first.slots[0])) == {10} and set(keys(key_anim.action, key_anim.action_slot)) == {20}


def test_keys_land_on_scene_time_when_rates_differ(empty_scene):
    mesh, _ = make_character([other_convention(n, 2) for n in ARKIT_NAMES], with_rig=False)
    empty_scene.render.fps = 50
    capture = make_capture(n=4, start=10, stride=3)
    mapping = retarget.RetargetMap(retarget.auto_map(mesh.data.shape_keys.key_blocks.keys()))
    report = retarget.bake(capture, mesh, mapping, frame_offset=0)
    assert report.frames == (20.0, 38.0)  # video frame 10 at 25 fps is scene frame 20 at 50 fps


def _world_delta(armature, bone_name):
    """A posed bone's rotation relative to its rest pose, in world axes."""
    pb = armature.pose.bones[bone_name]
    posed = (armature.matrix_world @ pb.matrix).to_3x3().normalized()
    rest = (armature.matrix_world @ pb.bone.matrix_local).to_3x3().normalized()
    return np.array(posed @ rest.inverted())


@pytest.mark.parametrize("rotation_mode", ["QUATERNION", "YXZ"])
def test_bones_follow_the_capture_in_world_axes(empty_scene, rotation_mode):
    mesh, armature = make_character([other_convention(n, 0) for n in ARKIT_NAMES[:3]])
    armature.rotation_euler = (0.0, 0.0, 0.4)  # a rig turned in the scene still gets the performer's motion
    bpy.context.view_layer.update()
    for pb in armature.pose.bones:
        pb.rotation_mode = rotation_mode
    capture = make_capture(n=12, stride=1)
    mapping = retarget.RetargetMap(retarget.auto_map(list(mesh.data.shape_keys.key_blocks.keys())),
                                   [retarget.BoneMap(s, b) for s, b in BONES.items()])
    report = retarget.bake(capture, mesh, mapping, armature)
    assert sorted(report.bones) == sorted(BONES.values())
    face = retarget.FACE_TO_BLENDER
    world = np.array(armature.matrix_world.to_3x3().normalized()) @ face
    head = CAMERA_TO_FACE @ rotvec_to_matrix(capture["global_pose"])
    neck = rotvec_to_matrix(capture["neck_pose"])
    expected = {"neck": head, "head": head @ neck, "jaw": head @ neck @ rotvec_to_matrix(capture["jaw_pose"]),
                "eye.L": head @ neck @ rotvec_to_matrix(capture["eye_pose"][:, :3]),
                "eye.R": head @ neck @ rotvec_to_matrix(capture["eye_pose"][:, 3:])}
    for i, frame in enumerate(empty_scene.frame_start + capture["frame_index"]):
        empty_scene.frame_set(int(frame))
        for bone, rotations in expected.items():
            np.testing.assert_allclose(_world_delta(armature, bone), world @ rotations[i] @ world.T, atol=1e-5,
                                       err_msg=f"{bone} at frame {frame}")


def test_head_bone_alone_takes_global_and_neck_rotation(empty_scene):
    _, armature = make_character([], modifier=False)
    capture = make_capture(n=6, stride=1)
    retarget.bake(capture, None, retarget.RetargetMap([], [retarget.BoneMap("head", "head")]), armature)
    face = retarget.FACE_TO_BLENDER
    expected = CAMERA_TO_FACE @ rotvec_to_matrix(capture["global_pose"]) @ rotvec_to_matrix(capture["neck_pose"])
    empty_scene.frame_set(int(empty_scene.frame_start + capture["frame_index"][4]))
    np.testing.assert_allclose(_world_delta(armature, "head"), face @ expected[4] @ face.T, atol=1e-5)


def test_axis_gains_scale_the_rotation_in_the_bone_frame():
    rng = np.random.default_rng(3)
    rest = rotvec_to_matrix(rng.normal(size=3))
    local = rng.normal(size=(5, 3)) * 0.3
    rotation = rest @ rotvec_to_matrix(local) @ rest.T
    q = retarget.bone_quaternions(rotation, rest, gain=(0.5, 0.0, 2.0))
    angle = 2 * np.arctan2(np.linalg.norm(q[:, 1:], axis=1), q[:, 0])
    rotvec = q[:, 1:] / np.maximum(np.linalg.norm(q[:, 1:], axis=1), 1e-12)[:, None] * angle[:, None]
    np.testing.assert_allclose(rotvec, local * [0.5, 0.0, 2.0], atol=1e-9)


def test_preset_round_trip_and_bad_preset():
    mapping = retarget.RetargetMap([retarget.ChannelMap("jawOpen", "Face.jawOpen", 1.5, -0.1, False)],
                                   [retarget.BoneMap("jaw", "DEF-jaw", (1.0, 0.5, 0.0))], False, 0.4)
    assert retarget.RetargetMap.from_json(mapping.to_json()) == mapping
    with pytest.raises(retarget.RetargetError, match="Kinesics"):
        retarget.RetargetMap.from_json('{"channels": []}')
    with pytest.raises(retarget.RetargetError, match="unknown channels: jawOpn"):
        retarget.RetargetMap.from_json(mapping.to_json().replace('"jawOpen"', '"jawOpn"'))


def test_character_without_matching_keys_gets_a_clear_message(empty_scene):
    mesh, _ = make_character(["smile", "frown", "Key 3"], name="Robot", with_rig=False)
    mapping = retarget.RetargetMap(retarget.auto_map(mesh.data.shape_keys.key_blocks.keys()))
    assert mapping.channels == []
    with pytest.raises(retarget.RetargetError, match="Robot has no shape keys matching the ARKit names"):
        retarget.bake(make_capture(n=5), mesh, mapping)
    assert mesh.data.shape_keys.animation_data is None  # nothing was written


def test_ict_character_reproduces_the_captured_face(empty_scene, ict_npz):
    """ICT-FaceKit's face, its 53 shapes renamed to another convention, driven by a capture of ICT expression
    weights: the baked character's surface is the ICT model's at every checked frame (sides not mirrored,
    paired brow and cheek shapes both driven)."""
    ict = np.load(ict_npz)
    names = [str(n) for n in ict["expression_names"]]
    face = 9409  # ICT-FaceKit's face region comes first
    counts, flat = ict["face_vertex_counts"], ict["face_vertex_indices"]
    offsets = np.r_[0, np.cumsum(counts)]
    polys = [flat[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:]) if flat[a:b].max() < face]
    neutral = ict["neutral"][:face].astype(np.float64) * 0.01
    deltas = ict["expressions"][:, :face].astype(np.float64) * 0.01
    mesh_data = bpy.data.meshes.new("ICT")
    mesh_data.from_pydata(neutral.tolist(), [], polys)
    mesh = bpy.data.objects.new("ICT", mesh_data)
    empty_scene.collection.objects.link(mesh)
    mesh.shape_key_add(name="Basis")
    for k, name in enumerate(names):
        side = {"_L": "Left", "_R": "Right"}.get(name[-2:], "")
        key = mesh.shape_key_add(name=other_convention(name[:-2] + side if side else name, k), from_mix=False)
        key.data.foreach_set("co", (neutral + deltas[k]).ravel())
    rng = np.random.default_rng(5)
    n = 6
    weights = rng.uniform(0, 1, (n, len(names)))
    for pair in ("browInnerUp", "cheekPuff"):
        weights[:, names.index(pair + "_R")] = weights[:, names.index(pair + "_L")]
    capture = {**make_capture(n=n, stride=1), "expression": weights, "expression_names": np.array(names)}
    del capture["arkit"], capture["arkit_names"]
    capture["jaw_pose"] = np.zeros((n, 3))
    mapping = retarget.RetargetMap(retarget.auto_map(mesh.data.shape_keys.key_blocks.keys()))
    assert len(retarget.bake(capture, mesh, mapping).keys) == 53
    for i in (0, 3, 5):
        empty_scene.frame_set(int(empty_scene.frame_start + capture["frame_index"][i]))
        evaluated = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get())
        co = np.empty(face * 3, np.float32)
        evaluated.data.vertices.foreach_get("co", co)
        expected = neutral + np.einsum("k,kvc->vc", weights[i], deltas)
        np.testing.assert_allclose(co.reshape(-1, 3), expected, atol=2e-6)


def test_capture_without_arkit_curves_is_refused_for_shape_keys(empty_scene):
    mesh, _ = make_character([other_convention(n, 0) for n in ARKIT_NAMES], with_rig=False)
    capture = make_capture(n=4)
    del capture["arkit"], capture["arkit_names"]
    with pytest.raises(retarget.RetargetError, match="holds no ARKit curves.*bones only"):
        retarget.bake(capture, mesh, retarget.RetargetMap(retarget.auto_map(mesh.data.shape_keys.key_blocks.keys())))
