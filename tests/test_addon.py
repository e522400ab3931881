"""The Blender extension in the real bpy module (headless): registration, rig import, keyframes, panels.

The extension is enabled the way Blender enables any user extension: a user repository (a temp folder)
holding a `kinesics` symlink to this checkout, so it is imported as `bl_ext.<repo>.kinesics`.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# Keep extension user data (saved captures) out of the real home; only effective before bpy is imported.
if "bpy" not in sys.modules:
    os.environ.setdefault("BLENDER_USER_EXTENSIONS", tempfile.mkdtemp(prefix="kinesics-ext-user-"))
bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (comes with bpy)
import torch  # noqa: E402

from core import capture_file  # noqa: E402
from core.head_model import HeadModel  # noqa: E402
from core.model_data import FLAME_JOINTS, HeadModelData, load_model_data  # noqa: E402

from blender_extension import PACKAGE, REPO_ROOT, extension_enabled, raise_error  # noqa: E402
TOLERANCE_M = 1e-4  # 0.1 mm


def addon(name: str):
    """A module of the enabled extension (looked up each time: disabling and enabling reloads it)."""
    return importlib.import_module(f"{PACKAGE}.addon.{name}")


@pytest.fixture(scope="session")
def extension():
    with extension_enabled() as package:
        yield package


@pytest.fixture
def scene(extension):
    """A fresh scene (the active one) per test."""
    bpy.ops.wm.read_homefile(use_empty=True)
    session = addon("session")
    # A warm worker is kept from test to test, as Blender keeps it between captures; unregister stops it.
    session.SESSION = session.Session(client=session.SESSION.client)
    return bpy.context.scene


# --- models and captures -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def standin_data(standin_model) -> HeadModelData:
    return load_model_data(standin_model).truncated(20, 20)


def synthetic_model(seed: int = 0) -> HeadModelData:
    """A small FLAME-layout head with strong expression-dependent joints and non-zero pose correctives."""
    rng = np.random.default_rng(seed)
    n = 14
    theta, phi = np.meshgrid(np.linspace(0.3, 2.8, n), np.linspace(0, 2 * np.pi, n, endpoint=False), indexing="ij")
    template = 0.1 * np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1)
    template = template.reshape(-1, 3)
    grid = np.arange(n * n).reshape(n, n)
    a, b, c, d = grid[:-1, :], grid[1:, :], np.roll(grid, -1, 1)[1:, :], np.roll(grid, -1, 1)[:-1, :]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    v = len(template)
    j_regressor = np.zeros((5, v))
    for j in range(5):
        picked = rng.choice(v, 6, replace=False)
        j_regressor[j, picked] = 1 / 6
    weights = rng.random((v, 5)) ** 4
    weights /= weights.sum(1, keepdims=True)
    posedirs = rng.normal(0, 0.004, (v, 3, 36))
    posedirs[:, :, [0, 13, 35]] = 0  # all-zero columns get no shape key
    return HeadModelData(kind="flame", template=template, faces=faces, shapedirs=rng.normal(0, 0.005, (v, 3, 4)),
                         exprdirs=rng.normal(0, 0.01, (v, 3, 6)), posedirs=posedirs, j_regressor=j_regressor,
                         weights=weights, parents=np.array([-1, 0, 1, 1, 1]), joint_names=FLAME_JOINTS,
                         source="synthetic", content_hash=f"synthetic{seed}")


def random_capture(data: HeadModelData, frames: int, seed: int = 1, **overrides) -> dict:
    """Plausible capture parameters: a head facing the camera 0.6 m away, moving and talking."""
    rng = np.random.default_rng(seed)
    t = frames
    capture = dict(
        fps=np.float64(25.0), image_size=np.array([640, 480]), model=data.source, model_hash=data.content_hash,
        shape=rng.normal(0, 1, data.n_shape), expression=rng.normal(0, 1.0, (t, data.n_expression)),
        jaw_pose=np.abs(rng.normal(0, 0.15, (t, 3))), neck_pose=rng.normal(0, 0.1, (t, 3)),
        eye_pose=rng.normal(0, 0.2, (t, 6)),
        # Facing the camera is a half turn about x: keys must not flip between q and -q there.
        global_pose=np.array([np.pi, 0, 0]) + rng.normal(0, 0.15, (t, 3)),
        translation=np.array([0.0, 0.02, 0.6]) + rng.normal(0, 0.02, (t, 3)),
        focal_px=np.float64(700.0), cx=np.float64(330.0), cy=np.float64(230.0), frame_index=np.arange(t),
        valid=np.ones(t, bool), landmarks=np.zeros((t, 478, 3), np.float32))
    capture.update(overrides)
    return capture


def reference_vertices(data: HeadModelData, capture: dict) -> np.ndarray:
    """core.head_model's forward pass (float64), camera space: (T,V,3)."""
    as_t = lambda k: torch.as_tensor(np.asarray(capture[k], np.float64))  # noqa: E731
    poses = {k: as_t(k) for k in ("jaw_pose", "neck_pose", "eye_pose", "global_pose") if k in capture}
    with torch.no_grad():
        out = HeadModel(data, dtype=torch.float64)(shape=as_t("shape")[None], expression=as_t("expression"),
                                                    translation=as_t("translation"), **poses)
    return out.vertices.numpy()


def blender_vertices(rig_obj, frame: int) -> np.ndarray:
    """The rig's mesh as Blender evaluates it at `frame` (drivers, shape keys, armature), in capture space."""
    scene = bpy.context.scene
    scene.frame_set(frame)
    mesh_obj = rig_obj["kinesics_mesh"]
    evaluated = mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    evaluated.to_mesh_clear()
    world = np.array(evaluated.matrix_world)
    points = co.reshape(-1, 3).astype(np.float64) @ world[:3, :3].T + world[:3, 3]
    return points @ addon("camera_space").CAPTURE_TO_WORLD  # world -> capture camera (the inverse rotation)


def assert_rig_matches(rig_obj, data, capture, frames):
    expected = reference_vertices(data, capture)
    first = addon("animate").FIRST_FRAME
    for t in frames:
        error = np.abs(blender_vertices(rig_obj, first + t) - expected[t]).max()
        assert error < TOLERANCE_M, f"frame {t}: Blender's mesh is {error * 1000:.3f} mm off core.head_model"


# --- the extension -------------------------------------------------------------------------------------

def test_manifest_validates_and_builds_without_dev_files(tmp_path):
    cli = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    run = lambda *args: subprocess.run([sys.executable, str(cli), *args], capture_output=True, text=True)  # noqa: E731
    validated = run("validate", str(REPO_ROOT))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    built = run("build", "--source-dir", str(REPO_ROOT), "--output-dir", str(tmp_path))
    assert built.returncode == 0, built.stdout + built.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("kinesics-*.zip"))).namelist()
    assert {"blender_manifest.toml", "__init__.py", "addon/__init__.py", "core/capture_file.py",
            "bridge/client.py"} <= set(names)
    assert not [n for n in names if n.split("/")[0] in (".venv", "tests", "benchmarks", ".git")
                or n.endswith((".pyc", ".npz", ".pkl", ".mp4"))]


def test_extension_registers_and_disables_cleanly(extension):
    operators = ("capture_start", "capture_refit", "capture_cancel", "import_rig", "apply_capture", "check_worker",
                 "install_worker", "install_worker_cancel", "take_show", "take_delete")
    assert set(operators) <= set(dir(bpy.ops.kinesics))
    assert bpy.types.KINESICS_PT_capture.bl_category == "Kinesics"
    assert hasattr(bpy.types.Scene, "kinesics")
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    assert prefs.worker_python == str(REPO_ROOT / ".venv" / "bin" / "python")

    addon_utils.disable(PACKAGE, default_set=True, handle_error=raise_error)
    assert not hasattr(bpy.types, "KINESICS_PT_capture")
    assert not hasattr(bpy.types.Scene, "kinesics")
    assert "import_rig" not in dir(bpy.ops.kinesics)
    addon_utils.enable(PACKAGE, default_set=True, handle_error=raise_error)
    assert hasattr(bpy.types, "KINESICS_PT_capture")


ISOLATED_ENABLE = """
import os, sys, tempfile
# As inside Blender: the checkout is not importable as top-level packages (no editable install, no cwd).
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.path = [p for p in sys.path if p not in ("", {root!r})]
import bpy, addon_utils
folder = tempfile.mkdtemp()
os.symlink({root!r}, os.path.join(folder, "kinesics"))
bpy.context.preferences.extensions.repos.new(name="iso", module="iso", custom_directory=folder, source="USER")
def fail(err):
    raise err
addon_utils.enable("bl_ext.iso.kinesics", default_set=True, handle_error=fail)
top_level = sorted({{m.split(".")[0] for m in sys.modules}} & {{"core", "bridge", "addon", "torch", "mediapipe", "cv2"}})
print("LOADED", hasattr(bpy.types, "KINESICS_PT_capture"), top_level)
"""


def test_extension_imports_inside_blender_without_the_checkout_or_torch(tmp_path):
    env = {**os.environ, "BLENDER_USER_EXTENSIONS": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", ISOLATED_ENABLE.format(root=str(REPO_ROOT))], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert "LOADED True []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


# --- rig and keyframes ---------------------------------------------------------------------------------

def test_standin_rig_keyed_from_capture_file_matches_head_model(scene, standin_data, tmp_path):
    capture = random_capture(standin_data, frames=5)
    path = capture_file.save(tmp_path / "take.npz", capture)
    animate = addon("animate")
    rig_obj = animate.ensure_rig(capture, None, lambda: standin_data, scene.collection)
    # The rig was built for this model and identity, so applying the file needs no model file at all.
    track = animate.apply_capture_file(scene, str(path), rig_obj, model_candidates=[])
    assert track.rig.armature == rig_obj
    assert [b.name for b in rig_obj.data.bones] == list(FLAME_JOINTS)
    assert [b.parent.name if b.parent else None for b in rig_obj.data.bones] == \
        [None, "global", "neck", "neck", "neck"]
    assert len(rig_obj["kinesics_mesh"].data.shape_keys.key_blocks) == 1 + 20  # basis + expressions
    assert (scene.frame_start, scene.frame_end, scene.render.fps) == (1, 5, 25)
    assert_rig_matches(rig_obj, standin_data, capture, frames=[0, 2, 4])


def test_keys_at_whole_frames_land_on_them(scene, standin_data):
    """Timestamps that are whole frames but for rounding error (frame 14 at 0.56 s: 1 + 0.56 * 25 is
    15.000000000000002) key whole frames, and a capture that ends on one ends the scene there, not a frame later."""
    capture = random_capture(standin_data, frames=15)
    capture["time_s"] = np.array([i * 0.04 for i in range(15)])
    animate = addon("animate")
    rig_obj = animate.ensure_rig(capture, None, lambda: standin_data, scene.collection)
    track = animate.apply_capture(scene, rig_obj, capture)
    frames = animate.scene_frames(track, capture)
    np.testing.assert_array_equal(frames, 1 + np.arange(15))
    assert (scene.frame_start, scene.frame_end) == (1, 15)


def test_pose_correctives_and_expression_dependent_joints(scene):
    data = synthetic_model()
    capture = random_capture(data, frames=4)
    animate = addon("animate")
    rig_obj = animate.ensure_rig(capture, None, lambda: data, scene.collection)
    animate.apply_capture(scene, rig_obj, capture)
    key = rig_obj["kinesics_mesh"].data.shape_keys
    correctives = [k for k in key.key_blocks if k.name.startswith("pose_")]
    assert len(correctives) == 36 - 3
    drivers = key.animation_data.drivers
    assert len(drivers) == 33 and all(d.driver.is_simple_expression for d in drivers)
    assert_rig_matches(rig_obj, data, capture, frames=[0, 1, 3])
    # Both effects are large enough here that the comparison above would catch their absence.
    without = reference_vertices(HeadModelData(**{**data.__dict__, "posedirs": np.zeros_like(data.posedirs)}),
                                 capture)
    assert np.abs(without - reference_vertices(data, capture)).max() > 10 * TOLERANCE_M


def action_keys(id_data, path: str, index: int = 0, action=None) -> np.ndarray:
    """(K,2) keys of one F-curve in `action` (default: the one `id_data` shows)."""
    anim = id_data.animation_data
    action = action or anim.action
    slot = anim.action_slot if action == anim.action else action.slots[0]
    fcurve = action.layers[0].strips[0].channelbag(slot).fcurves.find(path, index=index)
    co = np.empty(2 * len(fcurve.keyframe_points), np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


JAW = 'pose.bones["jaw"].rotation_quaternion'


def test_each_capture_is_a_take_and_earlier_takes_come_back(scene):
    """A second capture on a rig (another identity, image size and a per-frame lens) is a new take: the first
    take's keys stay in their own actions, and showing it gives back its keys, face shape, camera and range."""
    data = synthetic_model()
    animate, takes = addon("animate"), addon("takes")
    first = random_capture(data, frames=3, seed=1)
    rig_obj = animate.ensure_rig(first, None, lambda: data, scene.collection)
    animate.apply_capture(scene, rig_obj, first, take="walk")
    second = random_capture(data, frames=2, seed=2, image_size=np.array([800, 600]), focal_px=np.array([650.0, 660.0]))
    assert animate.ensure_rig(second, rig_obj, lambda: data, scene.collection) == rig_obj  # reshaped
    animate.apply_capture(scene, rig_obj, second, take="walk")
    entries = rig_obj.kinesics.takes
    assert [t.name for t in entries] == ["walk", "walk 2"] and takes.current(rig_obj) == 1
    assert len(action_keys(rig_obj, JAW)) == 2, "the new take starts empty, not mixed with the first"
    assert_rig_matches(rig_obj, data, second, frames=[0, 1])
    camera = rig_obj["kinesics_camera"]
    assert len(action_keys(camera.data, "lens")) == 2

    kept = entries[0].bones
    assert kept.use_fake_user and len(action_keys(rig_obj, JAW, action=kept)) == 3
    reshape = lambda shape: addon("rig").reshape_rig(rig_obj, data, shape)  # noqa: E731
    takes.use(scene, rig_obj, 0, reshape)
    assert takes.current(rig_obj) == 0 and (scene.frame_start, scene.frame_end) == (1, 3)
    assert_rig_matches(rig_obj, data, first, frames=[0, 1, 2])
    assert (scene.render.resolution_x, scene.render.resolution_y) == (640, 480)
    assert camera.data.animation_data.action is None, "the first take's lens is fixed"
    assert camera.data.lens == pytest.approx(float(addon("camera_space").lens_mm(700.0, (640, 480))))

    takes.use(scene, rig_obj, 1, reshape)
    assert_rig_matches(rig_obj, data, second, frames=[0, 1])
    names = {entries[0].bones.name, entries[0].shape_keys.name}
    takes.remove(rig_obj, 0)
    assert [t.name for t in entries] == ["walk 2"] and not names & set(bpy.data.actions.keys())
    assert takes.current(rig_obj) == 0


def test_keys_made_before_takes_become_a_take(scene):
    """A rig keyed before takes existed (or by hand) keeps those keys as a take when the next capture comes."""
    data = synthetic_model()
    animate, takes = addon("animate"), addon("takes")
    first = random_capture(data, frames=3, seed=1)
    rig_obj = animate.ensure_rig(first, None, lambda: data, scene.collection)
    animate.apply_capture(scene, rig_obj, first)
    rig_obj.kinesics.takes.clear()  # as an older Kinesics left it
    earlier = rig_obj.animation_data.action
    animate.apply_capture(scene, rig_obj, random_capture(data, frames=2, seed=2, shape=first["shape"]), take="new")
    assert [t.name for t in rig_obj.kinesics.takes] == [takes.EARLIER, "new"]
    assert rig_obj.kinesics.takes[0].bones == earlier and earlier.use_fake_user
    takes.use(scene, rig_obj, 0)
    assert_rig_matches(rig_obj, data, first, frames=[0, 2])


def test_takes_panel_shows_and_deletes_takes(scene, tmp_path):
    """Captures applied from files become takes named after them; Show brings one back with its footage as
    the Retarget source's capture file, Delete removes it."""
    data = synthetic_model()
    first = random_capture(data, frames=3, seed=1)
    rig_obj = addon("animate").ensure_rig(first, None, lambda: data, scene.collection)
    scene.kinesics.rig = rig_obj
    paths = [capture_file.save(tmp_path / "walk.npz", first),
             capture_file.save(tmp_path / "talk.npz", random_capture(data, frames=5, seed=2, shape=first["shape"]))]
    for path in paths:
        assert bpy.ops.kinesics.apply_capture(filepath=str(path)) == {'FINISHED'}
    entries = rig_obj.kinesics.takes
    assert [t.name for t in entries] == ["walk", "talk"] and entries[1].capture_file == str(paths[1])
    assert scene.kinesics_retarget.source == str(paths[1])
    assert scene.frame_end == 5
    calls = draw(bpy.types.KINESICS_PT_takes)
    assert [c[1][0] for c in calls if c[0] == "operator"] == ["kinesics.take_show", "kinesics.take_delete"]

    assert bpy.ops.kinesics.take_show(index=0) == {'FINISHED'}
    assert addon("takes").current(rig_obj) == 0 and scene.frame_end == 3
    assert scene.kinesics_retarget.source == str(paths[0])
    assert len(action_keys(rig_obj, JAW)) == 3
    rig_obj.kinesics.active_take = 1
    assert bpy.ops.kinesics.take_delete() == {'FINISHED'}
    assert [t.name for t in entries] == ["walk"] and addon("takes").current(rig_obj) == 0


def test_neutral_from_frame_names_the_footage_frame_the_take_shows(scene, tmp_path):
    """The capture panel's Neutral from Frame reads, through the rig's showing take, which footage frame is keyed
    at the current frame (a capture that starts at footage frame 10 and takes every second frame), and sets it as
    the Neutral Frame a capture or refit uses, until other footage is chosen; with no take on the rig it says what
    to do."""
    data = synthetic_model()
    capture = random_capture(data, frames=6, frame_index=10 + 2 * np.arange(6))
    rig_obj = addon("animate").ensure_rig(capture, None, lambda: data, scene.collection)
    settings = scene.kinesics
    settings.rig = rig_obj
    with pytest.raises(RuntimeError, match="shows no take with a saved capture"):
        bpy.ops.kinesics.capture_neutral()
    path = capture_file.save(tmp_path / "strided.npz", capture)
    assert bpy.ops.kinesics.apply_capture(filepath=str(path)) == {'FINISHED'}
    keyed = np.unique(action_keys(rig_obj, JAW)[:, 0])
    try:
        scene.frame_set(int(keyed[3]))
        assert bpy.ops.kinesics.capture_neutral() == {'FINISHED'}
        assert settings.use_neutral_frame and settings.neutral_frame == 16
        assert addon("session")._fit_options(settings)["neutral_frame"] == 16
        scene.frame_set(int(keyed[-1]) + 50)  # past the end: the last frame keyed
        assert bpy.ops.kinesics.capture_neutral() == {'FINISHED'} and settings.neutral_frame == 20
        settings.footage = str(tmp_path / "another take.mp4")  # the neutral frame was another footage's
        assert not settings.use_neutral_frame
    finally:
        settings.use_neutral_frame, settings.neutral_frame, settings.rig, settings.footage = False, 0, None, ""


def test_face_from_take_names_the_capture_the_rig_shows(scene, tmp_path):
    """Face from Take makes the showing take's capture the Actor's Face a capture or refit reuses; with no take on
    the rig it says what to do, and a face file that has gone is refused before the worker is asked."""
    data = synthetic_model()
    capture = random_capture(data, frames=3)
    rig_obj = addon("animate").ensure_rig(capture, None, lambda: data, scene.collection)
    settings = scene.kinesics
    settings.rig = rig_obj
    session = addon("session")
    try:
        with pytest.raises(RuntimeError, match="shows no take with a saved capture"):
            bpy.ops.kinesics.face_from_take()
        assert "face_from" not in session._fit_options(settings)
        path = capture_file.save(tmp_path / "calibration.npz", capture)
        assert bpy.ops.kinesics.apply_capture(filepath=str(path)) == {'FINISHED'}
        assert bpy.ops.kinesics.face_from_take() == {'FINISHED'}
        assert settings.use_face_from and session._fit_options(settings)["face_from"] == str(path)
        path.unlink()
        with pytest.raises(Exception, match="Actor's Face capture .*calibration.npz' does not exist"):
            session._fit_options(settings)
    finally:
        settings.use_face_from, settings.face_from, settings.rig = False, "", None


def test_ict_rig_has_arkit_shape_keys_and_one_joint(scene, ict_npz):
    data = load_model_data(ict_npz).truncated(n_shape=5)
    capture = random_capture(data, frames=2, expression=np.random.default_rng(3).random((2, data.n_expression)))
    animate = addon("animate")
    rig_obj = animate.ensure_rig(capture, None, lambda: data, scene.collection)
    animate.apply_capture(scene, rig_obj, capture)
    names = [k.name for k in rig_obj["kinesics_mesh"].data.shape_keys.key_blocks]
    assert {"eyeBlink_L", "jawOpen", "mouthSmile_R"} <= set(names) and len(names) == 1 + 53
    assert [b.name for b in rig_obj.data.bones] == ["global"]
    assert_rig_matches(rig_obj, data, capture, frames=[1])


def test_streamed_chunks_key_the_same_curves_as_the_whole_capture(scene):
    data = synthetic_model()
    capture = random_capture(data, frames=12, seed=4)
    animate = addon("animate")
    whole = animate.ensure_rig(capture, None, lambda: data, scene.collection)
    animate.apply_capture(scene, whole, capture)
    streamed = animate.ensure_rig(capture, None, lambda: data, scene.collection)
    track = animate.begin(scene, streamed, capture)
    per_frame = capture_file.PER_FRAME
    for lo, hi in ((0, 5), (5, 6), (6, 12)):
        animate.key_frames(track, {k: capture[k][lo:hi] for k in per_frame})
    animate.finish(scene, track)

    def keys(obj):
        bag = addon("keyframes").channelbag(obj, "unused")
        out = {}
        for fc in bag.fcurves:
            co = np.empty(2 * len(fc.keyframe_points), np.float32)
            fc.keyframe_points.foreach_get("co", co)
            out[(fc.data_path, fc.array_index)] = co
        return out

    a, b = keys(whole), keys(streamed)
    assert a.keys() == b.keys() and len(a) == 5 * 7
    for channel in a:
        np.testing.assert_array_equal(a[channel], b[channel])
    quat = np.stack([a[('pose.bones["global"].rotation_quaternion', i)][1::2] for i in range(4)], 1)
    assert (np.sum(quat[1:] * quat[:-1], axis=1) > 0).all(), "quaternion keys flip sign between frames"


def test_scene_rate_keys_land_at_the_capture_times(scene):
    data = synthetic_model()
    focal = np.linspace(650.0, 750.0, 6)
    capture = random_capture(data, frames=6, seed=6, focal_px=focal)
    scene.render.fps, scene.render.fps_base = 30, 1.0
    animate = addon("animate")
    rig_obj = animate.ensure_rig(capture, None, lambda: data, scene.collection)
    track = animate.apply_capture(scene, rig_obj, capture, time_mapping='SCENE')
    assert scene.render.fps == 30
    times = fcurve_keys(rig_obj, 'pose.bones["global"].rotation_quaternion')[:, 0]
    np.testing.assert_allclose(times, 1 + np.arange(6) * 30 / 25, atol=1e-5)
    lens = fcurve_keys(track.camera.data, "lens")[:, 1]
    np.testing.assert_allclose(lens, addon("camera_space").lens_mm(focal, (640, 480)), rtol=1e-6)
    expected = reference_vertices(data, capture)
    frame = 1 + 3 * 30 / 25  # capture frame 3, between scene frames 4 and 5
    scene.frame_set(int(frame), subframe=frame % 1)
    mesh = rig_obj["kinesics_mesh"].evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    co = np.array([v.co for v in mesh.vertices], np.float64)
    world = np.array(rig_obj["kinesics_mesh"].matrix_world)
    got = (co @ world[:3, :3].T + world[:3, 3]) @ addon("camera_space").CAPTURE_TO_WORLD
    assert np.abs(got - expected[3]).max() < TOLERANCE_M


def test_variable_frame_rate_keys_land_at_the_frames_timestamps(scene):
    """A capture of variable-frame-rate footage carries each frame's time: keys land there (in step with the
    footage's sound), streamed or whole, on the rig and in a retarget bake alike."""
    data = synthetic_model()
    time_s = np.array([0.0, 0.04, 0.08, 0.14, 0.20, 0.26])  # 25 frames/s, then slower
    capture = random_capture(data, frames=6, seed=6, time_s=time_s)
    animate = addon("animate")
    rig_obj = animate.ensure_rig(capture, None, lambda: data, scene.collection)
    animate.apply_capture(scene, rig_obj, capture)
    times = fcurve_keys(rig_obj, 'pose.bones["global"].rotation_quaternion')[:, 0]
    np.testing.assert_allclose(times, 1 + time_s * 25, atol=1e-5)
    assert scene.frame_end == 8
    np.testing.assert_allclose(addon("retarget").key_frames(capture, 50.0, 10.0), 10 + time_s * 50)
    rig_obj = animate.ensure_rig(capture, None, lambda: data, scene.collection)
    track = animate.begin(scene, rig_obj, capture)
    for rows in (slice(0, 4), slice(4, 6)):
        animate.key_frames(track, {k: capture[k][rows] for k in capture_file.PER_FRAME + ("time_s",)})
    streamed = fcurve_keys(rig_obj, 'pose.bones["global"].rotation_quaternion')[:, 0]
    np.testing.assert_allclose(streamed, times)


def test_import_rig_operator_reads_a_flame_file(scene, tmp_path):
    import pickle
    data = synthetic_model()
    flame = {"v_template": data.template, "f": data.faces.astype(np.uint32),
             # FLAME files hold 300 shape columns, then the expression columns.
             "shapedirs": np.concatenate([data.shapedirs, np.zeros((data.n_vertices, 3, 296)), data.exprdirs], 2),
             "posedirs": data.posedirs,
             "J_regressor": data.j_regressor, "weights": data.weights,
             "kintree_table": np.stack([np.array([4294967295, 0, 1, 1, 1]), np.arange(5)])}
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(flame, protocol=2))
    assert bpy.ops.kinesics.import_rig(filepath=str(path)) == {'FINISHED'}
    rig_obj = scene.kinesics.rig
    assert [b.name for b in rig_obj.data.bones] == list(FLAME_JOINTS)
    blocks = rig_obj["kinesics_mesh"].data.shape_keys.key_blocks
    assert len(blocks) == 1 + 6 + 33 and blocks[1].name == "expression_000"
    assert blocks[1].slider_min == -10 and blocks[1].slider_max == 10
    groups = rig_obj["kinesics_mesh"].vertex_groups
    assert [g.name for g in groups] == list(FLAME_JOINTS)
    v = 17
    assert [groups[j].weight(v) for j in range(5)] == pytest.approx(data.weights[v], abs=1e-6)

    objects = len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="no such head-model file or folder"):
        bpy.ops.kinesics.import_rig(filepath=str(tmp_path / "missing.pkl"))
    assert len(bpy.data.objects) == objects


def test_capture_camera_projects_like_the_opencv_camera(scene):
    camera_space = addon("camera_space")
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector
    width, height, focal, cx, cy = 1920, 1080, 1400.0, 1000.0, 500.0
    camera = camera_space.ensure_camera(scene, "Cam", (width, height), focal, cx, cy)
    bpy.context.view_layer.update()
    points = np.array([[0.0, 0.0, 1.0], [0.1, -0.05, 0.6], [-0.2, 0.1, 1.5]])
    for p in points:
        ndc = world_to_camera_view(scene, camera, Vector(camera_space.CAPTURE_TO_WORLD @ p))
        pixel = np.array([ndc.x * width, (1 - ndc.y) * height])
        expected = np.array([focal * p[0] / p[2] + cx, focal * p[1] / p[2] + cy])
        np.testing.assert_allclose(pixel, expected, atol=1e-3)
        assert ndc.z == pytest.approx(p[2], abs=1e-6)


def builtin_capture(frames: int) -> tuple[HeadModelData, dict]:
    """A random built-in rig and a capture that carries it (applied with no model installed)."""
    builtin_model = pytest.importorskip("core.builtin_model")
    rng = np.random.default_rng(5)
    template = rng.normal(0, 0.05, (builtin_model.N_VERTICES, 3))
    faces = np.arange(3 * (builtin_model.N_VERTICES // 3)).reshape(-1, 3)
    data = builtin_model.build_model(template, faces, rng.normal(0, 0.005, (len(template), 3, 5)),
                                     [f"motion_{i:02d}" for i in range(5)])
    return data, random_capture(data, frames=frames, model="builtin", shape=np.zeros(0),
                                **builtin_model.capture_keys(data))


def test_builtin_capture_carries_its_own_rig(scene, tmp_path):
    builtin_model = pytest.importorskip("core.builtin_model")
    data, capture = builtin_capture(frames=3)
    path = capture_file.save(tmp_path / "builtin.npz", capture)
    assert bpy.ops.kinesics.apply_capture(filepath=str(path)) == {'FINISHED'}
    rig_obj = scene.kinesics.rig
    assert [k.name for k in rig_obj["kinesics_mesh"].data.shape_keys.key_blocks][1:] == list(data.expression_names)
    assert_rig_matches(rig_obj, builtin_model.model_from_capture(capture_file.load(path)), capture, frames=[0, 2])


def test_footage_sound_plays_in_time_with_the_keys(scene, footage, tmp_path):
    """Applying a capture puts the footage's sound in the sequencer with the footage's start at the first key's
    frame (video frame 0 at scene frame 1), above the user's own strips, replacing the one placed before; a silent
    clip adds nothing."""
    strips = addon("footage").strips(scene)
    own = strips.new_sound(name="dialogue", filepath=str(footage / "happy_1080p.mp4"), channel=1, frame_start=40)
    settings = scene.kinesics
    settings.footage = str(footage / "happy_1080p.mp4")
    path = capture_file.save(tmp_path / "take.npz", builtin_capture(frames=3)[1])
    for _ in range(2):
        assert bpy.ops.kinesics.apply_capture(filepath=str(path)) == {'FINISHED'}
    placed = [st for st in strips if st.get(addon("footage").SOUND_TAG)]
    assert len(placed) == 1 and own.name in strips and own.frame_start == 40
    sound = placed[0]
    fps = scene.render.fps / scene.render.fps_base
    assert sound.frame_start == 1 and sound.channel > own.channel and sound.sound.samplerate > 0
    assert sound.frame_final_duration == pytest.approx(76 / 25.0 * fps, abs=1.5)  # the clip's 3.04 s
    silent = addon("footage").add_sound(scene, str(footage / "frontal_talking_512.mp4"))
    assert silent is None and not any(st.get(addon("footage").SOUND_TAG) for st in strips)
    assert not any("frontal_talking" in snd.filepath for snd in bpy.data.sounds)


def test_apply_capture_operator_reports_a_bad_file_and_changes_nothing(scene, tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a capture")
    objects = len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="not a readable capture file"):
        bpy.ops.kinesics.apply_capture(filepath=str(bad))
    assert len(bpy.data.objects) == objects


def test_capture_with_an_unknown_model_names_the_model_and_changes_nothing(scene, tmp_path):
    data = synthetic_model()
    path = capture_file.save(tmp_path / "take.npz", random_capture(data, frames=2, model="/nowhere/flame.pkl"))
    with pytest.raises(RuntimeError, match="flame.pkl.*preferences"):
        bpy.ops.kinesics.apply_capture(filepath=str(path))
    assert len(bpy.data.objects) == 0


# --- panels --------------------------------------------------------------------------------------------

class CheckedOperatorProperties:
    """What UILayout.operator returns: setting a property the operator does not have fails."""

    def __init__(self, rna):
        object.__setattr__(self, "rna", rna)

    def __setattr__(self, name, value):
        assert name in self.rna.properties, f"{self.rna.identifier} has no property {name!r}"


class CheckedLayout:
    """Stands in for bpy.types.UILayout, which cannot be created without a window (popup_menu crashes in
    bpy-as-module): every call and attribute is checked against UILayout's real RNA definition, every
    property against its owner's RNA and every operator id against the registered operators."""

    _rna = bpy.types.UILayout.bl_rna
    _icons = set(_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, calls: list):
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        assert name in self._rna.properties, f"UILayout has no attribute {name!r}"

    def __getattr__(self, name):
        function = self._rna.functions.get(name)
        assert function is not None, f"UILayout has no function {name!r}"
        parameters = {p.identifier for p in function.parameters}

        def call(*args, **kwargs):
            unknown = set(kwargs) - parameters
            assert not unknown, f"UILayout.{name} has no parameter(s) {unknown}"
            if "icon" in kwargs:
                assert kwargs["icon"] in self._icons, f"unknown icon {kwargs['icon']!r}"
            if name == "prop":
                data, prop = args[:2]
                assert prop in data.bl_rna.properties, f"{data} has no property {prop!r}"
            self.calls.append((name, args, kwargs))
            if name == "operator":
                group, op = args[0].split(".")
                # Unknown ids raise KeyError; the returned properties accept only the operator's own.
                return CheckedOperatorProperties(getattr(getattr(bpy.ops, group), op).get_rna_type())
            return CheckedLayout(self.calls)

        return call


def draw(panel_class, context=None) -> list:
    calls = []
    panel_class.draw(SimpleNamespace(layout=CheckedLayout(calls)), context or bpy.context)
    return calls


@pytest.mark.parametrize("state", ["idle", "running", "done", "failed", "cancelled"])
def test_panels_draw_in_every_state(scene, state):
    session = addon("session")
    session.SESSION = session.Session(state=state, done=7, total=20, fps=3.5, eta_s=4.0, message=(
        "The capture worker stopped unexpectedly (killed by SIGKILL). Every frame received before is kept "
        "(7 frames)." if state == "failed" else "Done."), saved_path="/tmp/x.npz" if state != "idle" else "")
    calls = draw(bpy.types.KINESICS_PT_capture)
    ops = [c[1][0] for c in calls if c[0] == "operator"]
    assert ops == ["kinesics.capture_neutral", "kinesics.face_from_take"] + (
        ["kinesics.capture_cancel"] if state == "running" else ["kinesics.capture_start", "kinesics.capture_refit"])
    if state == "running":
        progress = next(c for c in calls if c[0] == "progress")
        assert progress[2]["factor"] == pytest.approx(0.35) and "3.5 frames/s" in progress[2]["text"]
    if state == "failed":
        text = " ".join(c[2]["text"] for c in calls if c[0] == "label")
        assert "stopped unexpectedly" in text and "7 frames" in text
    draw(bpy.types.KINESICS_PT_rig)
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    type(prefs).draw(_with_layout(prefs), bpy.context)


def _with_layout(prefs):
    """The preferences object's properties, with a checked layout (its draw reads both)."""
    class View:
        layout = CheckedLayout([])

        def __getattr__(self, name):
            return getattr(prefs, name)

    return View()


def test_install_worker_shows_progress_cancels_and_says_what_failed(scene, tmp_path):
    """Install Worker runs in the background: the preferences show its step with a Cancel button (and refuse a
    second install meanwhile), then how it ended."""
    preferences = addon("preferences")
    prefs = bpy.context.preferences.addons[PACKAGE].preferences

    def drawn() -> list:
        view = _with_layout(prefs)
        type(prefs).draw(view, bpy.context)
        return view.layout.calls

    try:
        preferences.INSTALL = addon("worker_install").WorkerInstall(tmp_path / "worker", sys.executable)
        calls = drawn()
        assert any(c[0] == "progress" and "Making the environment" in c[2]["text"] for c in calls)
        assert ("operator", ("kinesics.install_worker_cancel",)) in [(c[0], c[1][:1]) for c in calls]
        assert not bpy.ops.kinesics.install_worker.poll()
        assert bpy.ops.kinesics.install_worker_cancel() == {'FINISHED'}
        preferences.INSTALL.wait(timeout=120)
        labels = " ".join(c[2].get("text", "") for c in drawn() if c[0] == "label")
        assert preferences.INSTALL.state == "cancelled" and "Cancelled" in labels
        assert bpy.ops.kinesics.install_worker.poll()
        preferences.INSTALL = addon("worker_install").WorkerInstall(tmp_path / "w2", str(tmp_path / "no-python"))
        preferences.INSTALL.wait(timeout=60)
        labels = " ".join(c[2].get("text", "") for c in drawn() if c[0] == "label")
        assert "could not start" in labels
    finally:
        preferences.INSTALL = None


def test_worker_python_falls_back_to_the_installed_worker(scene):
    """With Worker Python empty (preferences reset after Install Worker), the installed worker is used; with
    neither, the message says to press Install Worker."""
    preferences = addon("preferences")
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    installed = addon("worker_install").venv_python(preferences.worker_folder())
    assert not installed.exists(), "the tests' extension user folder is their own"
    saved, prefs.worker_python = prefs.worker_python, ""
    try:
        with pytest.raises(Exception, match="press Install Worker"):
            preferences.worker_python(prefs)
        installed.parent.mkdir(parents=True, exist_ok=True)
        installed.symlink_to(sys.executable)
        assert preferences.worker_python(prefs) == str(installed)
    finally:
        prefs.worker_python = saved
        installed.unlink(missing_ok=True)


# --- capture through the real worker ----------------------------------------------------------------------

ENGINE_PRESENT = (REPO_ROOT / "core" / "engine.py").exists()
needs_engine = pytest.mark.skipif(not ENGINE_PRESENT, reason="core/engine.py (the capture engine) is not in this checkout")


def run_until_finished(session, until=lambda s: False, poll_s: float = 0.05, max_polls: int = 12_000) -> list[int]:
    """Drive the timer's step function as Blender would; returns frames keyed after each step.

    Stops early when until(SESSION) holds. max_polls only guards against a hung test (not a speed limit).
    """
    keyed = []
    for _ in range(max_polls):
        if session.step() is None:
            return keyed
        keyed.append(session.SESSION.frames_keyed)
        if until(session.SESSION):
            return keyed
        time.sleep(poll_s)
    pytest.fail(f"the capture never finished (state {session.SESSION.state}: {session.SESSION.message})")


def fcurve_keys(obj, path: str, index: int = 0) -> np.ndarray:
    bag = addon("keyframes").channelbag(obj, "unused")
    fcurve = bag.fcurves.find(path, index=index)
    co = np.empty(2 * len(fcurve.keyframe_points), np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


@pytest.fixture
def capture_session(scene):
    return addon("session")


def test_start_refuses_missing_footage_or_worker_and_stays_idle(capture_session, scene, tmp_path):
    scene.kinesics.footage = str(tmp_path / "missing.mp4")
    with pytest.raises(Exception, match="does not exist: choose a video file"):
        capture_session.start(scene, sys.executable, None, [])
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    scene.kinesics.footage = str(video)
    with pytest.raises(Exception, match="Cannot run the worker's Python"):
        capture_session.start(scene, str(tmp_path / "no-python"), None, [])
    assert capture_session.SESSION.state == "idle"


def test_failed_job_in_the_real_worker_is_shown_in_the_panel(capture_session, scene, tmp_path):
    video = tmp_path / "damaged.mp4"
    video.write_bytes(b"this is not a video" * 100)
    scene.kinesics.footage = str(video)
    objects = len(bpy.data.objects)
    capture_session.start(scene, sys.executable, None, [])
    run_until_finished(capture_session)
    s = capture_session.SESSION
    assert s.state == "failed" and s.message and s.frames_keyed == 0, s.message
    assert len(bpy.data.objects) == objects  # nothing arrived, nothing was built
    text = " ".join(c[2]["text"] for c in draw(bpy.types.KINESICS_PT_capture) if c[0] == "label")
    assert s.message.split()[0] in text


@needs_engine
def test_capture_streams_keyframes_from_the_real_worker(capture_session, scene, footage, standin_model, tmp_path):
    scene.kinesics.footage = str(footage / "frontal_talking_512.mp4")
    scene.kinesics.frame_start, scene.kinesics.frame_end = 10, 40
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.capture_folder = str(tmp_path / "captures")  # not there yet: made on save
    try:
        capture_session.start(scene, sys.executable, str(standin_model), [])
        run_until_finished(capture_session)
    finally:
        prefs.capture_folder = ""
    s = capture_session.SESSION
    assert s.state == "done", s.message
    assert s.frames_keyed == 30
    rig = scene.kinesics.rig
    keys = fcurve_keys(rig, 'pose.bones["jaw"].rotation_quaternion')
    np.testing.assert_array_equal(keys[:, 0], 1 + np.arange(10, 40))  # video frame i at scene frame 1 + i
    assert (scene.frame_start, scene.frame_end) == (11, 40)
    assert Path(s.saved_path).parent == tmp_path / "captures" and Path(s.saved_path).name.startswith("frontal_talking")
    saved = capture_file.load(s.saved_path)
    np.testing.assert_array_equal(saved["frame_index"], np.arange(10, 40))
    # The ARKit curves it keeps, which Retarget reads, are those settled over the whole clip, not those streamed.
    np.testing.assert_array_equal(saved["arkit"], s.job.extras["arkit"])
    assert not np.array_equal(saved["arkit"], np.concatenate([c["arkit"] for c in s.job.chunks]))
    background = scene.camera.data.background_images[0]
    assert scene.camera.data.show_background_images and background.clip.filepath.endswith("frontal_talking_512.mp4")
    assert len(addon("footage").strips(scene)) == 0, "this clip has no sound track: no sound strip"
    take = rig.kinesics.takes[addon("takes").current(rig)]
    assert (take.name, take.footage, take.capture_file) == ("frontal_talking_512", scene.kinesics.footage,
                                                            s.saved_path)
    assert (take.frame_start, take.frame_end) == (11, 40)
    assert scene.kinesics_retarget.source == s.saved_path, "Retarget reads the capture just made"


@needs_engine
def test_known_lens_and_faces_reach_the_real_worker(capture_session, scene, footage, standin_model, standin_data,
                                                    tmp_path):
    """The lens set in the panel is the capture's focal length (not an estimate), and the camera shows it; the
    Actor's Face is the capture's face shape."""
    face = random_capture(standin_data, frames=2, model="flame", shape=np.random.default_rng(4).normal(0, 0.5, 100))
    settings = scene.kinesics
    settings.footage = str(footage / "frontal_talking_512.mp4")
    settings.frame_start, settings.frame_end = 0, 12
    settings.use_lens, settings.lens_mm, settings.faces = True, 35.0, 2
    settings.use_face_from, settings.face_from = True, str(capture_file.save(tmp_path / "actor.npz", face))
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.capture_folder = str(tmp_path)
    try:
        capture_session.start(scene, sys.executable, str(standin_model), [])
        run_until_finished(capture_session)
    finally:
        prefs.capture_folder = ""
        settings.use_lens, settings.faces, settings.use_face_from, settings.face_from = False, 1, False, ""
    s = capture_session.SESSION
    assert s.state == "done", s.message
    saved = capture_file.load(s.saved_path)
    assert float(saved["focal_px"]) == pytest.approx(35.0 / 36.0 * 512)
    np.testing.assert_allclose(saved["shape"], face["shape"], atol=1e-6)
    assert scene.camera.data.lens == pytest.approx(35.0)


@needs_engine
def test_rate_smoothing_and_mirror_pass_set_in_the_panel_reach_the_worker(capture_session, scene, footage, tmp_path):
    """The panel's Frame Rate, Smoothing, Mirror Pass, Neutral Frame and Expressiveness are the capture's: the
    built-in capture the real worker makes runs at the rate given, holds the mirror pass's landmarks and is the
    one the library makes from them with smoothing off and that neutral frame; the expressiveness, which the
    built-in rig has no use for, is noted."""
    from core.builtin_capture import capture_builtin
    from core.landmarks import LandmarkTrack, detect_video
    from core.trajectory import SmoothingSettings

    settings = scene.kinesics
    settings.footage = str(footage / "frontal_talking_512.mp4")
    settings.frame_start, settings.frame_end, settings.smoothing, settings.mirror_pass = 0, 20, 0.0, True
    settings.fps, settings.use_neutral_frame, settings.neutral_frame, settings.expressiveness = 30.0, True, 12, 2.0
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.capture_folder = str(tmp_path)
    try:
        capture_session.start(scene, sys.executable, None, [])
        run_until_finished(capture_session)
    finally:
        prefs.capture_folder = ""
        settings.smoothing, settings.mirror_pass, settings.fps = 1.0, False, 0.0
        settings.use_neutral_frame, settings.neutral_frame, settings.expressiveness = False, 0, 1.0
    s = capture_session.SESSION
    assert s.state == "done", s.message
    saved = capture_file.load(s.saved_path)
    assert float(saved["fps"]) == 30.0 and bpy.context.scene.render.fps == 30  # the panel's rate, not the clip's 25
    mirrored = detect_video(footage / "frontal_talking_512.mp4", 0, 20, mirror_pass=True)
    np.testing.assert_allclose(saved["landmarks"], mirrored.landmarks, atol=1e-6)
    track = LandmarkTrack.from_capture(saved)
    off, default = (capture_builtin(track, float(saved["focal_px"]), SmoothingSettings().scaled(strength), 12)
                    for strength in (0, 1))
    np.testing.assert_allclose(saved["jaw_pose"], off["jaw_pose"], atol=1e-6)
    assert np.abs(saved["jaw_pose"] - default["jaw_pose"]).max() > 1e-3
    unnamed = capture_builtin(track, float(saved["focal_px"]), SmoothingSettings().scaled(0))
    assert np.abs(saved["arkit"] - unnamed["arkit"]).max() > 1e-2
    assert any("expressiveness applies to fitted head models" in str(w) for w in saved["warnings"])
    assert "Expressiveness applies to fitted head models" in s.message  # told, not only saved
    assert int(saved["neutral_frame"]) == 12


@needs_engine
def test_refit_a_saved_capture_with_the_real_worker(capture_session, scene, footage, tmp_path):
    """Refit: a saved capture's landmarks fitted again by the real worker with the panel's smoothing (off here),
    keyed onto a rig and saved as a new capture beside the first; no tracking."""
    from core.builtin_capture import capture_builtin
    from core.landmarks import LandmarkTrack, detect_video
    from core.trajectory import SmoothingSettings

    track = detect_video(footage / "frontal_talking_512.mp4", 0, 30)
    source = capture_file.save(tmp_path / "talk.npz", capture_builtin(track))
    settings = scene.kinesics
    settings.footage, settings.smoothing, settings.model = "", 0.0, 'BUILTIN'
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.capture_folder, prefs.worker_python = str(tmp_path / "captures"), sys.executable
    try:
        assert bpy.ops.kinesics.capture_refit(filepath=str(source)) == {'FINISHED'}
        run_until_finished(capture_session)
    finally:
        prefs.capture_folder = ""
        settings.smoothing, settings.model = 1.0, 'FLAME'
    s = capture_session.SESSION
    assert s.state == "done" and s.frames_keyed == 30, s.message
    assert Path(s.saved_path).name.startswith("talk_refit_")
    saved = capture_file.load(s.saved_path)
    expected = capture_builtin(LandmarkTrack(track.frame_index, track.landmarks, track.valid, track.fps,
                                             track.image_size), smoothing=SmoothingSettings().scaled(0))
    np.testing.assert_allclose(saved["jaw_pose"], expected["jaw_pose"], atol=1e-6)
    keys = fcurve_keys(scene.kinesics.rig, 'pose.bones["jaw"].rotation_quaternion')
    np.testing.assert_array_equal(keys[:, 0], 1 + np.arange(30))


def test_check_worker_button_reports_the_worker_version(scene):
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.worker_python = sys.executable
    assert bpy.ops.kinesics.check_worker() == {'FINISHED'}
    assert prefs.check_result.startswith("Worker OK: Kinesics 0.")


@needs_engine
def test_cancelled_capture_keeps_the_keyed_frames(capture_session, scene, footage, standin_model):
    scene.kinesics.footage = str(footage / "frontal_talking_512.mp4")
    capture_session.start(scene, sys.executable, str(standin_model), [])
    run_until_finished(capture_session, until=lambda s: s.frames_keyed > 0)
    assert bpy.ops.kinesics.capture_cancel() == {'FINISHED'}
    run_until_finished(capture_session)
    s = capture_session.SESSION
    assert s.state == "cancelled" and 0 < s.frames_keyed < 400, s.message
    rig = scene.kinesics.rig
    assert len(fcurve_keys(rig, 'pose.bones["global"].location')) == s.frames_keyed
    assert scene.frame_end == s.frames_keyed  # the scene is framed on what was kept
    draw(bpy.types.KINESICS_PT_capture)


@needs_engine
def test_rig_deleted_mid_capture_ends_the_job_with_a_message(capture_session, scene, footage, standin_model):
    scene.kinesics.footage = str(footage / "frontal_talking_512.mp4")
    # Long enough on any machine that frames still arrive after the rig is deleted (see the killed-worker test).
    scene.kinesics.frame_start, scene.kinesics.frame_end, scene.kinesics.mirror_pass = 0, 0, True
    try:
        capture_session.start(scene, sys.executable, str(standin_model), [])
    finally:
        scene.kinesics.mirror_pass = False
    run_until_finished(capture_session, until=lambda s: s.frames_keyed > 0)
    rig = scene.kinesics.rig
    for obj in (rig["kinesics_mesh"], rig):
        bpy.data.objects.remove(obj)
    run_until_finished(capture_session)
    s = capture_session.SESSION
    assert s.state == "failed" and s.message.startswith("The capture stopped"), s.message
    draw(bpy.types.KINESICS_PT_capture)


@needs_engine
def test_killed_worker_keeps_the_keyed_frames_and_says_so(capture_session, scene, footage, standin_model):
    scene.kinesics.footage = str(footage / "frontal_talking_512.mp4")
    # The whole clip with the mirror pass (one stream, twice the tracking): it runs long enough on any machine
    # for keys to be seen arriving while it runs, and to be killed midway.
    scene.kinesics.frame_start, scene.kinesics.frame_end, scene.kinesics.mirror_pass = 0, 0, True
    try:
        capture_session.start(scene, sys.executable, str(standin_model), [])
    finally:
        scene.kinesics.mirror_pass = False
    # Keys arrive with each chunk while the job still runs.
    for _ in range(2):
        before = capture_session.SESSION.frames_keyed
        run_until_finished(capture_session, until=lambda s: s.frames_keyed > before)
        assert capture_session.SESSION.running
        key = scene.kinesics.rig["kinesics_mesh"].data.shape_keys
        assert len(fcurve_keys(key, 'key_blocks["expression_000"].value')) == capture_session.SESSION.frames_keyed
    capture_session.SESSION.client.process.kill()
    run_until_finished(capture_session)
    s = capture_session.SESSION
    assert s.state == "failed" and "stopped unexpectedly" in s.message
    assert 0 < s.frames_keyed < 400
    assert len(fcurve_keys(key, 'key_blocks["expression_000"].value')) == s.frames_keyed
    assert len(capture_file.load(s.saved_path)["frame_index"]) == s.frames_keyed
    text = " ".join(c[2]["text"] for c in draw(bpy.types.KINESICS_PT_capture) if c[0] == "label")
    assert "stopped unexpectedly" in text
