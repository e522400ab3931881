"""ARKit names, ICT-FaceKit -> ARKit, and Live Link Face CSV takes: header, column order, timecodes, round
trips through captures, and the errors a user meets with a broken file."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from core import livelink
from core.arkit_names import ARKIT_NAMES, LIVELINK_NAMES, arkit_from_capture, ict_to_arkit, ict_to_arkit_name
from core.livelink import CAMERA_TO_FACE
from core.rotations import matrix_to_rotvec, rotvec_to_matrix, ypr_to_matrix

# Live Link Face's own header, as the app writes it.
APP_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,"
    "MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,"
    "MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,"
    "BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,"
    "CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,"
    "LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll")


def _capture(n=50, start=7, fps=30.0, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"fps": np.float64(fps), "frame_index": start + np.arange(n), "arkit_names": np.array(ARKIT_NAMES),
            "arkit": rng.uniform(0, 1, (n, 52)).astype(np.float32),
            "global_pose": matrix_to_rotvec(CAMERA_TO_FACE @ ypr_to_matrix(rng.uniform(-0.6, 0.6, (n, 3)))),
            "neck_pose": rng.normal(0, 0.1, (n, 3)), "jaw_pose": np.zeros((n, 3)),
            "eye_pose": np.concatenate([matrix_to_rotvec(ypr_to_matrix(rng.uniform(-0.4, 0.4, (n, 3)) * [1, 1, 0])),
                                        matrix_to_rotvec(ypr_to_matrix(rng.uniform(-0.4, 0.4, (n, 3)) * [1, 1, 0]))],
                                       1)}


def test_names_and_livelink_column_order():
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    assert ",".join(livelink.HEADER) == APP_HEADER
    assert sorted(n.lower() for n in LIVELINK_NAMES) == sorted(n.lower() for n in ARKIT_NAMES)


def test_csv_columns_carry_their_named_channel(tmp_path):
    arkit = np.tile(np.arange(52) / 100.0, (3, 1))  # channel k holds k/100 in Apple's order
    take = livelink.LiveLinkTake(60.0, np.arange(3), arkit, np.zeros((3, 3)), np.zeros((3, 6)))
    path = livelink.write_csv(tmp_path / "t.csv", take)
    with open(path, newline="") as fh:
        header, first = list(csv.reader(fh))[:2]
    assert first[1] == "61"
    for name, value in zip(header[2:54], first[2:54]):
        assert float(value) == pytest.approx(ARKIT_NAMES.index(name[0].lower() + name[1:]) / 100.0)


def test_timecodes():
    assert livelink.format_timecode(0, 25) == "00:00:00:00.000"
    assert livelink.format_timecode(25 * 3661 + 24, 25) == "01:01:01:24.000"
    assert livelink.format_timecode(1, 29.97) == "00:00:00:01.001"


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 60.0])
def test_frame_numbers_survive_timecodes(tmp_path, fps):
    n = 4000  # past a minute at every rate, where whole-second rounding would slip
    take = livelink.LiveLinkTake(fps, np.arange(n), np.zeros((n, 52)), np.zeros((n, 3)), np.zeros((n, 6)))
    back = livelink.read_csv(livelink.write_csv(tmp_path / "t.csv", take), fps=fps)
    np.testing.assert_array_equal(back.frame, np.arange(n))
    assert livelink.read_csv(tmp_path / "t.csv").fps == round(fps)  # inferred from the timecodes


def test_capture_round_trip_through_csv(tmp_path):
    capture = _capture()
    path = livelink.export_capture(capture, tmp_path / "take.csv")
    take = livelink.read_csv(path)
    assert take.fps == 30 and list(take.frame) == list(range(50))
    back = livelink.import_take(path)
    np.testing.assert_allclose(back["arkit"], capture["arkit"], atol=1e-7)
    head = livelink.head_rotation(capture)
    np.testing.assert_allclose(livelink.head_rotation(back), head, atol=1e-7)
    np.testing.assert_allclose(rotvec_to_matrix(back["eye_pose"].reshape(-1, 3)),
                               rotvec_to_matrix(capture["eye_pose"].reshape(-1, 3)), atol=1e-7)
    # Yaw turns the face (+z) towards the subject's left (+x).
    yaw, pitch, roll = take.head[0]
    forward = head[0] @ [0, 0, 1.0]
    assert np.sign(forward[0]) == np.sign(yaw) and np.sign(-forward[1]) == np.sign(pitch)


def test_variable_frame_rate_capture_keeps_its_times_in_the_timecodes(tmp_path):
    """A capture of variable-frame-rate footage writes each row at its frame's time: the timecode's sub-frame
    part carries what falls between frames."""
    capture = _capture()
    capture["time_s"] = np.arange(50) / 30 + np.where(np.arange(50) >= 10, 0.5 / 30, 0.0)  # half a frame late
    take = livelink.read_csv(livelink.export_capture(capture, tmp_path / "take.csv"), fps=30)
    rows = (tmp_path / "take.csv").read_text().splitlines()
    assert rows[11].startswith("00:00:00:10.500,") and rows[1].startswith("00:00:00:00.000,")
    np.testing.assert_array_equal(take.frame, np.arange(50))  # the app's frame numbers are whole


def test_reading_an_app_take_with_clock_timecodes_and_repeats(tmp_path):
    rows = [APP_HEADER]
    for i, (sec, ff) in enumerate([(52, 28.207), (52, 29.207), (53, 0.207), (53, 0.207), (53, 2.207)]):
        values = [f"{(i + 1) / 10:.3f}"] + ["0"] * 51 + ["0.1", "0.0", "0.0"] + ["0"] * 6
        rows.append(f"14:03:{sec}:{ff:06.3f},61," + ",".join(values))
    (tmp_path / "app.csv").write_text("\n".join(rows) + "\n")
    take = livelink.read_csv(tmp_path / "app.csv", fps=30)
    assert list(take.frame) == [0, 1, 2, 4]  # a repeated frame keeps its last row
    np.testing.assert_allclose(take.arkit[:, 0], [0.1, 0.2, 0.4, 0.5])
    np.testing.assert_allclose(take.head[:, 0], 0.1)


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("a,b,c\n1,2,3\n", "not a Live Link Face CSV"),
    (APP_HEADER + "\n", "holds no frames"),
    (APP_HEADER + "\n00:00:00:01.000,61,zero\n", "line 2: unreadable row"),
])
def test_broken_files_get_clear_errors(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(livelink.LiveLinkError, match=message):
        livelink.read_csv(tmp_path / "bad.csv")
    with pytest.raises(livelink.LiveLinkError, match="no such file"):
        livelink.read_csv(tmp_path / "missing.csv")


def test_ict_to_arkit_sides_and_pairs(ict_npz):
    names = [str(n) for n in np.load(ict_npz)["expression_names"]]
    rng = np.random.default_rng(1)
    weights = rng.uniform(0, 1, (4, len(names)))
    arkit = ict_to_arkit(weights, names)
    w = dict(zip(names, weights.T))
    a = dict(zip(ARKIT_NAMES, arkit.T))
    np.testing.assert_allclose(a["eyeBlinkLeft"], w["eyeBlink_L"])
    np.testing.assert_allclose(a["mouthSmileRight"], w["mouthSmile_R"])
    np.testing.assert_allclose(a["jawOpen"], w["jawOpen"])
    np.testing.assert_allclose(a["browInnerUp"], (w["browInnerUp_L"] + w["browInnerUp_R"]) / 2)
    np.testing.assert_allclose(a["cheekPuff"], (w["cheekPuff_L"] + w["cheekPuff_R"]) / 2)
    np.testing.assert_allclose(a["tongueOut"], 0)
    # Every ARKit channel but tongueOut is fed; every ICT shape feeds one.
    assert {ict_to_arkit_name(n) for n in names} == set(ARKIT_NAMES) - {"tongueOut"}
    capture = {"expression": weights, "expression_names": np.array(names)}
    np.testing.assert_allclose(arkit_from_capture(capture), arkit)
    with pytest.raises(ValueError, match="expected"):
        ict_to_arkit(weights[:, :5], names)


def test_arkit_from_capture_reorders_by_name():
    shuffled = list(reversed(ARKIT_NAMES))
    arkit = np.arange(52, dtype=float)[None, :].repeat(2, 0)
    out = arkit_from_capture({"arkit": arkit, "arkit_names": np.array(shuffled)})
    assert out[0, ARKIT_NAMES.index(shuffled[0])] == 0 and out[0, ARKIT_NAMES.index(shuffled[5])] == 5
    with pytest.raises(KeyError, match="no ARKit curves"):
        arkit_from_capture({"expression": arkit, "expression_names": np.array([f"e{i}" for i in range(52)])})
