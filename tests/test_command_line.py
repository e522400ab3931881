"""`blender --command kinesics export`: the extension's command line in the real bpy, with the extension enabled
as Blender enables it. The bpy module has no `blender` executable to start, so each test calls the function the
extension registers for the command with the arguments that follow `--command kinesics`."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from core import capture_file, livelink
from core.arkit_names import ARKIT_NAMES
from test_addon import random_capture, synthetic_model
from test_export_fbx import _round_trip, _sample
from test_retarget_scene import BONES, bpy, empty_scene, enabled_extension, extension_module, make_capture, \
    make_character, other_convention  # noqa: F401  (empty_scene and enabled_extension are fixtures)

pytestmark = pytest.mark.usefixtures("enabled_extension")
NAMES = [other_convention(n, i) for i, n in enumerate(ARKIT_NAMES)]


def command(*args: str) -> int:
    return extension_module("addon.command_line").execute(list(args))


def _character_file(scene, path) -> None:
    """A .blend holding the test character (keys in other conventions, a head rig) beside a mesh with shape keys
    that match no ARKit channel, which the command must not pick."""
    make_character(NAMES)
    make_character(["Fat", "Thin"], name="Decoy", with_rig=False)
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)


def test_the_command_is_registered_with_the_extension():
    assert extension_module("addon.command_line")._handle is not None


def test_export_bakes_a_take_onto_the_character_in_a_blend_file(empty_scene, tmp_path, capsys):
    """A Live Link Face take baked onto the character a .blend holds, the mapping found by name as Detect Mapping
    finds it: the same keys a bake in the panel writes, and the FBX holds them at every frame."""
    _character_file(empty_scene, tmp_path / "character.blend")
    take = livelink.export_capture(make_capture(n=30, start=0, stride=1, fps=30.0), tmp_path / "take.csv")
    out = tmp_path / "character.fbx"

    assert command("export", str(take), "-o", str(out), "--character", str(tmp_path / "character.blend"),
                   "--save", str(tmp_path / "baked.blend")) == 0
    printed = capsys.readouterr().out
    assert "Baked 52 shape keys and 5 bones" in printed and f"to {out}" in printed
    scene = bpy.context.scene
    assert scene.render.fps / scene.render.fps_base == pytest.approx(30.0)  # the take's rate: a key every frame
    frames = list(range(1, 31))
    baked = _sample(scene, bpy.data.objects["Character"], bpy.data.objects["CharacterRig"], frames)
    assert bpy.data.objects["Decoy"].data.shape_keys.animation_data is None

    # The panel's bake of the same take onto the same character.
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "character.blend"))
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    retarget = extension_module("addon.retarget")
    mesh, armature = bpy.data.objects["Character"], bpy.data.objects["CharacterRig"]
    mapping = retarget.RetargetMap(retarget.auto_map(NAMES), [retarget.BoneMap(s, b) for s, b in BONES.items()])
    retarget.bake(retarget.load_source(str(take)), mesh, mapping, armature, scene)
    expected = _sample(scene, mesh, armature, frames)
    assert set(baked) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(baked[name], values, atol=1e-6, err_msg=name)
    assert np.ptp(expected[NAMES[ARKIT_NAMES.index("jawOpen")]]) > 0.3

    again = _round_trip(str(out), frames)
    for name, values in expected.items():
        np.testing.assert_allclose(again[name], values, atol=1e-3, err_msg=name)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "baked.blend"))
    assert bpy.data.objects["Character"].data.shape_keys.animation_data.action is not None


def test_export_without_a_character_writes_the_captures_own_head_rig(empty_scene, footage, tmp_path, capsys):
    """A built-in capture of real footage, no character: the head rig the Head Rig panel builds, keyed and
    written to FBX; every shape key and bone comes back at every frame."""
    from core.builtin_capture import capture_builtin  # MediaPipe: not in the Blender LTS venv (test_blender_lts)
    from core.landmarks import detect_video

    capture = capture_builtin(detect_video(footage / "frontal_talking_512.mp4", end=24))
    path = capture_file.save(tmp_path / "take.npz", capture)
    out = tmp_path / "rig.fbx"

    assert command("export", str(path), "-o", str(out)) == 0
    assert f"to {out}" in capsys.readouterr().out
    scene = bpy.context.scene
    armature = next(ob for ob in scene.objects if ob.type == "ARMATURE")
    mesh = armature["kinesics_mesh"]
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    assert len(frames) == 24
    original = _sample(scene, mesh, armature, frames)
    assert max(np.ptp(v) for k, v in original.items() if v.ndim == 1) > 0.1  # the expressions move
    again = _round_trip(str(out), frames)
    assert set(again) == set(original)
    for name, values in original.items():
        np.testing.assert_allclose(again[name], values, atol=1e-3, err_msg=name)


def test_a_live_link_take_is_written_without_a_character(empty_scene, tmp_path, capsys):
    capture = make_capture(n=12, start=0, stride=1)
    source = livelink.export_capture(capture, tmp_path / "source.csv")
    assert command("export", str(source), "-o", str(tmp_path / "again.csv")) == 0
    assert "12 frames" in capsys.readouterr().out
    np.testing.assert_allclose(livelink.import_take(tmp_path / "again.csv")["arkit"], capture["arkit"], atol=1e-6)


def test_what_cannot_be_done_is_one_clear_error(empty_scene, tmp_path, capsys):
    """Each refusal names the problem and what to do, and writes no output."""
    take = livelink.export_capture(make_capture(n=12, start=0, stride=1), tmp_path / "take.csv")
    _character_file(empty_scene, tmp_path / "character.blend")
    plain = tmp_path / "plain.blend"
    bpy.ops.wm.read_homefile(use_empty=True)
    make_character(["Fat", "Thin"], name="Blob", with_rig=False)
    bpy.ops.wm.save_as_mainfile(filepath=str(plain), copy=True)
    character = ("--character", str(tmp_path / "character.blend"))
    cases = [
        (("-o", "x.obj"), "name an .fbx file"),
        (("-o", "x.fbx"), "carries no head rig: give --character"),
        (("-o", "x.fbx", "--character", str(tmp_path / "missing.blend")), "no such .blend file"),
        (("-o", "x.fbx", "--character", str(plain)), "no mesh with ARKit-style shape keys"),
        (("-o", "x.fbx", *character, "--mesh", "Nobody"), "no mesh named 'Nobody' (its meshes: Character, Decoy)"),
        (("-o", "x.fbx", *character, "--neutral-frame", "99"), "not a frame of the capture (it holds frames 0-11)"),
        (("-o", "x.fbx", *character, "--mapping", str(tmp_path / "none.json")), "none.json: cannot be read"),
        (("-o", "x.csv", *character), "leave --character out"),
    ]
    for args, message in cases:
        assert command("export", str(take), *args[:1], str(tmp_path / args[1]), *args[2:]) == 1, message
        assert message in capsys.readouterr().err
        assert not (tmp_path / args[1]).exists()
    assert command("export", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.fbx")) == 1
    assert "missing.npz" in capsys.readouterr().err
    assert command("export", "--help") == 0 and "--character" in capsys.readouterr().out
    assert command("bake") == 2  # argparse's usage error


def test_several_sources_go_into_a_folder_and_a_bad_one_does_not_stop_the_rest(empty_scene, tmp_path, capsys):
    _character_file(empty_scene, tmp_path / "character.blend")
    takes = [livelink.export_capture(make_capture(n=10 + k, start=0, stride=1, seed=k), tmp_path / f"take{k}.csv")
             for k in range(2)]
    (tmp_path / "broken.csv").write_text("not a take")
    sources = [str(takes[0]), str(tmp_path / "broken.csv"), str(takes[1])]
    character = ("--character", str(tmp_path / "character.blend"))
    assert command("export", *sources, "-o", str(tmp_path / "fbx"), *character) == 1
    err = capsys.readouterr().err
    assert "broken.csv: " in err and "1 of 3 sources failed" in err
    assert sorted(p.name for p in (tmp_path / "fbx").iterdir()) == ["take0.fbx", "take1.fbx"]
    export_fbx = extension_module("addon.export_fbx")
    for k in range(2):  # each file holds its own take's frames
        bpy.ops.wm.read_homefile(use_empty=True)
        mesh = next(ob for ob in export_fbx.import_fbx(str(tmp_path / "fbx" / f"take{k}.fbx")) if ob.type == "MESH")
        assert export_fbx.animation_range([mesh]) == (1, 10 + k)
    assert command("export", *sources[::2], "-o", str(tmp_path / "csv"), "--format", "csv") == 0
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["take0.csv", "take1.csv"]
    assert command("export", *sources[::2], "-o", str(tmp_path / "one.fbx"), *character) == 1
    assert "name folders, not files" in capsys.readouterr().err
    (tmp_path / "again").mkdir()
    livelink.export_capture(make_capture(n=5, start=0, stride=1), tmp_path / "again" / "take0.csv")
    assert command("export", str(takes[0]), str(tmp_path / "again" / "take0.csv"), "-o", str(tmp_path / "x")) == 1
    assert "several sources are named take0" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_the_head_model_is_found_through_model_or_the_preferences(empty_scene, tmp_path, capsys):
    """A FLAME capture names its model by content: the file is found through --model or the preferences' FLAME
    Model, as the Head Rig panel finds it; with neither, the error says both ways."""
    from core.model_data import load_model_data

    data = synthetic_model()
    flame = {"v_template": data.template, "f": data.faces.astype(np.uint32),
             "shapedirs": np.concatenate([data.shapedirs, np.zeros((data.n_vertices, 3, 296)), data.exprdirs], 2),
             "posedirs": data.posedirs, "J_regressor": data.j_regressor, "weights": data.weights,
             "kintree_table": np.stack([np.array([4294967295, 0, 1, 1, 1]), np.arange(5)])}
    model = tmp_path / "generic_model.pkl"
    model.write_bytes(pickle.dumps(flame, protocol=2))
    loaded = load_model_data(str(model))
    take = capture_file.save(tmp_path / "take.npz", random_capture(loaded, 6, model="flame",
                                                                   model_hash=loaded.content_hash))
    prefs = extension_module("addon.preferences").get()
    prefs.flame_model = ""
    assert command("export", str(take), "-o", str(tmp_path / "none.fbx")) == 1
    err = capsys.readouterr().err
    assert "not on this computer" in err and "preferences" in err and "--model PATH" in err
    assert command("export", str(take), "-o", str(tmp_path / "given.fbx"), "--model", str(model)) == 0
    prefs.flame_model = str(model)
    try:
        assert command("export", str(take), "-o", str(tmp_path / "preferred.fbx")) == 0
    finally:
        prefs.flame_model = ""
    assert (tmp_path / "given.fbx").stat().st_size > 0 and (tmp_path / "preferred.fbx").stat().st_size > 0


def test_capture_runs_the_worker_on_footage_then_bakes_and_exports(empty_scene, footage, tmp_path, capsys):
    """`capture`: kinesics capture run with the worker's Python (this environment's) on real footage, options after
    -- passed on, the capture kept beside the FBX and baked onto the character as `export` bakes it; in a batch a
    video that fails leaves the others exported; without a worker's Python, one clear error."""
    _character_file(empty_scene, tmp_path / "character.blend")
    clip = footage / "frontal_talking_512.mp4"
    character = ("--character", str(tmp_path / "character.blend"))
    worker = ("--worker-python", sys.executable)
    (tmp_path / "take.npz").write_bytes(b"an earlier capture")  # replaced by this run's

    assert command("capture", str(clip), "-o", str(tmp_path / "take.fbx"), *character, *worker, "--",
                   "--start", "5", "--end", "17") == 0
    capture = capture_file.load(tmp_path / "take.npz")
    assert list(capture["frame_index"]) == list(range(5, 17))
    frames = list(range(1, 13))
    again = _round_trip(str(tmp_path / "take.fbx"), frames)
    assert command("export", str(tmp_path / "take.npz"), "-o", str(tmp_path / "same.fbx"), *character) == 0
    exported = _round_trip(str(tmp_path / "same.fbx"), frames)
    assert set(again) == set(exported)
    for name, values in exported.items():
        np.testing.assert_allclose(again[name], values, atol=1e-6, err_msg=name)
    assert np.ptp(exported[NAMES[ARKIT_NAMES.index("jawOpen")]]) > 0.05  # the talking mouth moves

    assert command("capture", str(clip), str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "batch"), *worker,
                   "--", "--end", "6") == 1
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["frontal_talking_512.fbx",
                                                                       "frontal_talking_512.npz"]
    prefs = extension_module("addon.preferences").get()
    kept = prefs.worker_python
    prefs.worker_python = str(tmp_path / "no-python")
    assert command("capture", str(clip), "-o", str(tmp_path / "other.obj"), *worker) == 1  # refused before capturing
    assert "name an .fbx file" in capsys.readouterr().err and not (tmp_path / "other.npz").exists()
    try:
        assert command("capture", str(clip), "-o", str(tmp_path / "none.fbx")) == 1
    finally:
        prefs.worker_python = kept
    assert "Worker Python" in capsys.readouterr().err and not (tmp_path / "none.fbx").exists()
