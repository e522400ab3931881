"""The installed `kinesics` console script, run as a user runs it (a real process on real footage)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core import capture_file
from core.builtin_capture import capture_builtin
from core.errors import KinesicsError
from core.landmarks import LandmarkTrack, detect_video
from core.trajectory import SmoothingSettings
from core.video import read_frames

KINESICS = Path(sys.executable).with_name("kinesics")
FRAMES = 50


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(KINESICS), *args], capture_output=True, text=True, timeout=timeout)


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def clip(footage: Path) -> Path:
    return footage / "frontal_talking_512.mp4"


@pytest.fixture(scope="module", params=["standin", "builtin"])
def captured(request, clip: Path, tmp_path_factory) -> dict:
    """`kinesics capture` with a preview, once with the FLAME-format stand-in (lens estimated) and once with the
    built-in rig (a known 30 mm lens)."""
    out = tmp_path_factory.mktemp(f"cli-{request.param}")
    model = (["--model", str(request.getfixturevalue("standin_model"))] if request.param == "standin"
             else ["--lens-mm", "30"])
    done = run("capture", str(clip), *model, "-o", str(out / "take.npz"), "--preview", str(out / "take.mp4"),
               "--start", "20", "--end", str(20 + FRAMES))
    return {"kind": request.param, "proc": done, "npz": out / "take.npz", "preview": out / "take.mp4"}


def test_capture_writes_capture_and_preview(captured: dict, clip: Path):
    proc = captured["proc"]
    assert proc.returncode == 0, proc.stderr
    capture = capture_file.load(captured["npz"])
    assert list(capture["frame_index"]) == list(range(20, 20 + FRAMES))
    assert capture["model"] == ("flame" if captured["kind"] == "standin" else "builtin")
    assert f"captured {FRAMES} frames" in proc.stdout and str(captured["npz"]) in proc.stdout
    assert f"a face was found in {FRAMES}" in proc.stdout
    if captured["kind"] == "builtin":
        assert "built-in" in proc.stderr, "without --model the user is told which model is used"
        assert float(capture["focal_px"]) == pytest.approx(30.0 / 36.0 * 512), "the known lens is used as given"
    assert f"{FRAMES}/{FRAMES} frames" in proc.stderr, "progress is reported on stderr"

    preview = read_video(captured["preview"])
    assert len(preview) == FRAMES
    assert all(f.shape == (512, 512, 3) for f in preview)
    source = dict((i, f) for i, f in enumerate(read_video(clip)[:20 + FRAMES]))
    # The overlay covers the face and leaves the rest of the picture alone (up to mp4v's re-encoding).
    lms = capture["landmarks"][0, :, :2] * capture["image_size"]
    x0, y0 = lms.min(0).astype(int)
    x1, y1 = lms.max(0).astype(int)
    diff = np.abs(preview[0].astype(np.int16) - source[20].astype(np.int16)).mean(-1)
    inside = diff[y0:y1, x0:x1].mean()
    outside = np.concatenate([diff[:, :x0 - 30].ravel(), diff[:, x1 + 30:].ravel()]).mean()
    assert inside > 15.0 and outside < 5.0, (inside, outside)


def test_face_from_an_earlier_capture_carries_the_actors_face(captured: dict, clip: Path, standin_model: Path,
                                                             tmp_path: Path):
    """--face-from: another take of the actor (here other frames of the clip) keeps the face shape of the earlier
    capture and says so; a built-in capture has no face shape to give, which is one clear line."""
    proc = run("capture", str(clip), "--model", str(standin_model), "--start", "200", "--end", "230",
               "--face-from", str(captured["npz"]), "-o", str(tmp_path / "take2.npz"))
    if captured["kind"] == "builtin":
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "built-in rig, which has no face shape" in proc.stderr.strip().splitlines()[-1], proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    take2 = capture_file.load(tmp_path / "take2.npz")
    np.testing.assert_allclose(take2["shape"], capture_file.load(captured["npz"])["shape"], atol=1e-6)
    assert f"face from {captured['npz']}" in proc.stdout


def test_export_writes_the_capture_as_a_live_link_face_take(captured: dict, tmp_path: Path):
    """`kinesics export` writes a capture's ARKit curves and head and eye rotations as a Live Link Face take that
    reads back to the same values; FBX and other names are refused with where to go instead."""
    from core import livelink

    assert captured["proc"].returncode == 0, captured["proc"].stderr
    source = capture_file.load(captured["npz"])
    proc = run("export", str(captured["npz"]), "-o", str(tmp_path / "take.csv"))
    assert proc.returncode == 0, proc.stderr
    assert f"{len(source['frame_index'])} frames" in proc.stdout
    back = livelink.import_take(tmp_path / "take.csv")
    np.testing.assert_allclose(back["arkit"], source["arkit"], atol=1e-6)
    np.testing.assert_allclose(livelink.head_rotation(back), livelink.head_rotation(source), atol=1e-6)
    assert list(back["frame_index"] - back["frame_index"][0]) == list(source["frame_index"] - source["frame_index"][0])
    for name, message in (("take.fbx", "blender --command kinesics export"), ("take.txt", "name a .csv file")):
        proc = run("export", str(captured["npz"]), "-o", str(tmp_path / name))
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert not (tmp_path / name).exists()
    proc = run("export", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "other.csv"))
    assert proc.returncode == 1 and "missing.npz" in proc.stderr, proc.stderr
    # Several captures: a folder of takes named after them; one that fails is reported, the others written.
    proc = run("export", str(captured["npz"]), str(tmp_path / "missing.npz"), "-o", str(tmp_path / "takes"))
    assert proc.returncode == 1 and "missing.npz" in proc.stderr and "1 of 2 captures" in proc.stdout, proc.stderr
    assert [p.name for p in (tmp_path / "takes").iterdir()] == ["take.csv"]
    proc = run("export", str(captured["npz"]), str(captured["npz"]), "-o", str(tmp_path / "twice"))
    assert proc.returncode == 1 and "would overwrite each other" in proc.stderr and not (tmp_path / "twice").exists()


def test_missing_video_is_one_clear_line(tmp_path: Path):
    proc = run("capture", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "out.npz"))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.mp4" in lines[0] and "no such video file" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.npz").exists()


def test_bad_model_and_bad_range_are_one_clear_line(clip: Path, tmp_path: Path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    for args, words in ((["--model", str(junk)], "junk.pkl: not a readable model file"),
                        (["--start", "500"], "the clip has 400 frames"),
                        (["--start", "30", "--end", "10"], "invalid frame range")):
        proc = run("capture", str(clip), *args, "-o", str(tmp_path / "out.npz"))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert words in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_smoothing_and_mirror_pass_reach_the_capture(clip: Path, tmp_path: Path):
    """A capture made with --smoothing 2 --mirror-pass holds the mirror pass's landmarks, and is the one the
    library makes from them with twice the default smoothing (not the default one)."""
    proc = run("capture", str(clip), "--end", "30", "--smoothing", "2", "--mirror-pass", "-o", str(tmp_path / "t.npz"))
    assert proc.returncode == 0, proc.stderr
    capture = capture_file.load(tmp_path / "t.npz")
    np.testing.assert_allclose(capture["landmarks"], detect_video(clip, 0, 30, mirror_pass=True).landmarks, atol=1e-6)
    assert np.abs(capture["landmarks"] - detect_video(clip, 0, 30).landmarks).max() > 1e-3
    track = LandmarkTrack.from_capture(capture)
    smooth, default = (capture_builtin(track, float(capture["focal_px"]), SmoothingSettings().scaled(strength))
                       for strength in (2, 1))
    np.testing.assert_allclose(capture["jaw_pose"], smooth["jaw_pose"], atol=1e-6)
    assert np.abs(capture["jaw_pose"] - default["jaw_pose"]).max() > 1e-3


def test_neutral_frame_and_expressiveness_reach_the_capture(clip: Path, tmp_path: Path):
    """--neutral-frame makes that frame the rest face (the built-in rig is the one the library builds with it as
    neutral); --expressiveness, which the built-in rig has no use for, is noted rather than silently dropped."""
    proc = run("capture", str(clip), "--end", "30", "--neutral-frame", "10", "--expressiveness", "2",
               "-o", str(tmp_path / "t.npz"))
    assert proc.returncode == 0, proc.stderr
    capture = capture_file.load(tmp_path / "t.npz")
    track = LandmarkTrack.from_capture(capture)
    named, default = (capture_builtin(track, float(capture["focal_px"]), neutral_row=row) for row in (10, None))
    np.testing.assert_allclose(capture["arkit"], named["arkit"], atol=1e-6)
    assert int(capture["neutral_frame"]) == 10 and "expressiveness" not in capture
    assert np.abs(capture["arkit"] - default["arkit"]).max() > 1e-2
    assert "expressiveness applies to fitted head models" in proc.stdout


def test_image_sequence_capture_with_a_given_frame_rate(clip: Path, tmp_path: Path):
    """A numbered image series is captured like the video it came from (the same landmarks), at the frame rate
    given with --fps; without --fps the user is told the rate was assumed."""
    plate = tmp_path / "plate"
    plate.mkdir()
    for index, frame in read_frames(clip, 0, 12):
        cv2.imwrite(str(plate / f"shot_{1001 + index}.png"), frame)
    proc = run("capture", str(plate / "shot_1001.png"), "--fps", "30", "-o", str(tmp_path / "seq.npz"))
    assert proc.returncode == 0, proc.stderr
    assert "30.00 fps as given" in proc.stderr
    capture = capture_file.load(tmp_path / "seq.npz")
    assert float(capture["fps"]) == 30.0 and list(capture["frame_index"]) == list(range(12))
    np.testing.assert_allclose(capture["landmarks"], detect_video(clip, 0, 12).landmarks, atol=1e-6)
    proc = run("capture", str(plate), "--end", "3", "-o", str(tmp_path / "assumed.npz"))
    assert proc.returncode == 0 and "no frame rate in the footage: 25 fps assumed" in proc.stderr, proc.stderr


def test_refit_fits_the_stored_landmarks_again(clip: Path, standin_model: Path, tmp_path: Path):
    """`kinesics refit` turns a capture into one with another model (or smoothing) from the landmarks it holds:
    the same frames and landmarks, no footage needed; a file that is no capture is one clear line."""
    taken = tmp_path / "take.npz"
    assert run("capture", str(clip), "--start", "10", "--end", "40", "--stride", "2", "-o", str(taken)).returncode == 0
    source = capture_file.load(taken)
    proc = run("refit", str(taken), "--model", str(standin_model), "-o", str(tmp_path / "flame.npz"))
    assert proc.returncode == 0, proc.stderr
    flame = capture_file.load(tmp_path / "flame.npz")
    assert flame["model"] == "flame" and flame["expression"].shape[1] > 0
    np.testing.assert_array_equal(flame["frame_index"], source["frame_index"])
    np.testing.assert_array_equal(flame["landmarks"], source["landmarks"])
    proc = run("refit", str(taken), "--smoothing", "0", "--lens-mm", "30", "-o", str(tmp_path / "raw.npz"))
    assert proc.returncode == 0, proc.stderr
    track = LandmarkTrack.from_capture(source)
    expected = capture_builtin(track, 30.0 / 36.0 * 512, SmoothingSettings().scaled(0))
    np.testing.assert_allclose(capture_file.load(tmp_path / "raw.npz")["jaw_pose"], expected["jaw_pose"], atol=1e-6)
    (tmp_path / "notes.npz").write_bytes(b"not a capture")
    proc = run("refit", str(tmp_path / "notes.npz"), "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 1 and "notes.npz" in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_batch_capture_goes_on_past_a_bad_video(clip: Path, tmp_path: Path):
    """Several videos to a folder: each capture is named after its video, one that fails is reported and skipped,
    and the exit status says that one failed; two videos of the same name are refused before anything runs."""
    other = tmp_path / "second take.mp4"
    other.write_bytes(clip.read_bytes())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    proc = run("capture", str(clip), str(broken), str(other), "--end", "6", "-o", str(tmp_path / "takes"))
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "takes").iterdir()) == [f"{clip.stem}.npz", "second take.npz"]
    first, second = (capture_file.load(tmp_path / "takes" / name) for name in (f"{clip.stem}.npz", "second take.npz"))
    np.testing.assert_array_equal(first["landmarks"], second["landmarks"])  # the same frames, the same capture
    assert "broken.mp4" in proc.stderr and "[3/3]" in proc.stderr
    assert "captured 2 of 3 videos" in proc.stdout and "failed: " + str(broken) in proc.stdout
    proc = run("capture", str(clip), str(tmp_path / "elsewhere" / clip.name), "-o", str(tmp_path / "twins"))
    assert proc.returncode == 1 and "would overwrite each other" in proc.stderr and not (tmp_path / "twins").exists()
    proc = run("capture", str(clip), str(other), "-o", str(tmp_path / "one.npz"))
    assert proc.returncode == 1 and "-o names a folder" in proc.stderr
    proc = run("capture", str(clip), str(other), "--neutral-frame", "3", "-o", str(tmp_path / "neutral"))
    assert proc.returncode == 1 and "capture the videos one at a time" in proc.stderr


def test_faces_lens_smoothing_rate_and_neutral_frame_must_be_in_range(clip: Path, tmp_path: Path):
    proc = run("capture", str(clip), "--faces", "0", "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 2 and "--faces: must be 1 or more" in proc.stderr
    proc = run("capture", str(clip), "--lens-mm", "-5", "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 2 and "--lens-mm: must be above 0" in proc.stderr
    proc = run("capture", str(clip), "--smoothing", "-1", "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 2 and "--smoothing: must be 0 or more" in proc.stderr
    proc = run("capture", str(clip), "--fps", "0", "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 2 and "--fps: must be above 0" in proc.stderr
    proc = run("capture", str(clip), "--expressiveness", "0", "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 2 and "--expressiveness: must be above 0" in proc.stderr
    proc = run("capture", str(clip), "--neutral-frame", "-1", "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 2 and "--neutral-frame: must be 0 or more" in proc.stderr
    proc = run("capture", str(clip), "--end", "20", "--neutral-frame", "30", "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 1 and "the neutral frame 30 lies outside the frames captured (0 to 19)" in proc.stderr
    assert not (tmp_path / "out.npz").exists()


def test_unwritable_output_fails_before_capturing(clip: Path, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run("capture", str(clip), "-o", str(blocker / "out.npz"))
    assert proc.returncode != 0 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def test_help_and_version():
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("capture", "worker", "install-ict"):
        assert command in proc.stdout
    assert "--preview" in run("capture", "--help").stdout
    assert run("--version").stdout.strip() == "kinesics 0.1.0"
    # Delegated commands parse their own arguments.
    install = run("install-ict", "--help")
    assert install.returncode == 0 and "kinesics install-ict" in install.stdout


def test_first_use_of_a_model_says_what_it_prepares(clip: Path, standin_model: Path, tmp_path: Path):
    """With an empty cache the landmark embedding is derived (seconds) and the user is told; the next run is
    silent about it."""
    env = {**os.environ, "KINESICS_CACHE": str(tmp_path / "cache")}
    args = [str(KINESICS), "capture", str(clip), "--model", str(standin_model), "--end", "5"]
    first = subprocess.run([*args, "-o", str(tmp_path / "a.npz")], capture_output=True, text=True, env=env,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    assert "first use of this model" in first.stderr and "(100%)" in first.stderr
    again = subprocess.run([*args, "-o", str(tmp_path / "b.npz")], capture_output=True, text=True, env=env,
                           timeout=600)
    assert again.returncode == 0 and "first use of this model" not in again.stderr


def test_ctrl_c_saves_the_frames_finished(clip: Path, standin_model: Path, tmp_path: Path):
    out = tmp_path / "take.npz"
    proc = subprocess.Popen([str(KINESICS), "capture", str(clip), "--model", str(standin_model), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # without a terminal the progress comes one line per 10%
            if "/400 frames" in line and int(line.split("/400 frames")[0].split()[-1]) >= 120:
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "saved" in stderr
    capture = capture_file.load(out)
    assert 50 <= len(capture["frame_index"]) < 400
    assert list(capture["frame_index"]) == list(range(len(capture["frame_index"])))


@pytest.mark.parametrize("captured", ["builtin"], indirect=True)
def test_preview_marks_frames_without_a_face(captured: dict, clip: Path, tmp_path: Path):
    from core.preview import NO_FACE_BGR, write_preview

    capture = capture_file.load(captured["npz"])
    capture["valid"][3:6] = False
    write_preview(capture, clip, tmp_path / "marked.mp4")
    frames = read_video(tmp_path / "marked.mp4")
    assert len(frames) == FRAMES
    border = lambda f: f[:4].reshape(-1, 3).mean(0)  # noqa: E731  (top rows, BGR)
    assert np.abs(border(frames[4]) - NO_FACE_BGR).max() < 40
    assert np.abs(border(frames[0]) - NO_FACE_BGR).max() > 80
    small = tmp_path / "small.mp4"
    writer = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (256, 256))
    for frame in frames:  # 50 frames: enough to reach the first captured one (20)
        writer.write(cv2.resize(frame, (256, 256)))
    writer.release()
    with pytest.raises(KinesicsError, match="the capture was made on 512x512 footage"):
        write_preview(capture, small, tmp_path / "wrong.mp4")
    assert not (tmp_path / "wrong.mp4").exists()
