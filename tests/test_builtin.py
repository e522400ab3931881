"""The built-in rig made from the actor's own face: real MediaPipe on real footage and synthetic renders."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from core import arkit_geometric as geo
from core import capture_file
from core.arkit_names import ARKIT_INDEX, ARKIT_NAMES, ict_to_arkit
from core.builtin_capture import capture_builtin
from core.builtin_model import IRIS_POINTS, model_from_capture
from core.engine import CaptureEngine
from core.errors import FootageError, ModelFileError
from core.head_model import HeadModel
from core.landmarks import detect_video
from core.rotations import rotvec_to_matrix
from core.trajectory import SmoothingSettings
from test_capture import assert_eyes_follow_the_glances


@pytest.fixture(scope="session")
def talking_track(footage):
    return detect_video(footage / "frontal_talking_512.mp4", end=60)


@pytest.fixture(scope="session")
def talking_capture(talking_track):
    return capture_builtin(talking_track)


@pytest.fixture(scope="session")
def rom_track(synthetic):
    return detect_video(synthetic / "ict_rom_21" / "video.mp4")


def _project(capture: dict) -> np.ndarray:
    """(T,478,2) pixels of the built-in model's forward pass with the capture's parameters and camera."""
    model = HeadModel(model_from_capture(capture), dtype=torch.float64)
    t = {k: torch.as_tensor(np.asarray(capture[k], np.float64))
         for k in ("expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "translation")}
    verts = model(**t).vertices.numpy()
    return float(capture["focal_px"]) * verts[..., :2] / verts[..., 2:] + np.array([capture["cx"], capture["cy"]])


def test_forward_pass_reproduces_the_tracked_landmarks(talking_track, talking_capture):
    err = np.linalg.norm(_project(talking_capture) - talking_track.pixels(), axis=-1)
    iod = np.linalg.norm(talking_track.pixels()[:, 473] - talking_track.pixels()[:, 468], axis=-1).mean()
    # Tolerance: mean 1.5 px, 95th percentile 4 px on a 512 px frame with ~78 px between the pupils
    # (the shape keys keep 95% of the clip's motion; what they drop is mostly landmark jitter).
    assert err.mean() < 1.5, err.mean()
    assert np.percentile(err, 95) < 4.0
    assert iod > 50  # the face is large enough in frame for these tolerances to mean something
    assert talking_capture["model"] == "builtin" and talking_capture["shape"].shape == (0,)
    assert 1 <= talking_capture["expression"].shape[1] <= 24


def test_rig_is_smoothed_in_time_like_a_fitted_capture(talking_track, talking_capture):
    """The built-in rig gets the fitted captures' zero-lag temporal prior: steadier than the raw landmark motion
    (with smoothing off), and with the head's slow part on the global bone and the rest on the neck."""
    raw = capture_builtin(talking_track, smoothing=SmoothingSettings().scaled(0))
    accel = lambda points: np.linalg.norm(np.diff(points, 2, axis=0), axis=-1).mean()  # noqa: E731
    assert accel(_project(talking_capture)) < 0.5 * accel(_project(raw))
    curve_accel = lambda capture: np.abs(np.diff(capture["arkit"], 2, axis=0)).mean()  # noqa: E731
    assert curve_accel(talking_capture) < 0.9 * curve_accel(raw)  # (landmarks tracked in turns are steady already)
    assert np.abs(talking_capture["neck_pose"]).max() > 0.01  # the talking head nods: the neck carries it


def test_capture_file_round_trips_and_rebuilds_the_same_rig(talking_capture, tmp_path):
    path = capture_file.save(tmp_path / "take.npz", talking_capture)
    loaded = capture_file.load(path)
    for key, value in talking_capture.items():
        assert np.array_equal(np.asarray(loaded[key]), np.asarray(value)), key
    data = model_from_capture(loaded)
    assert data.kind == "builtin" and data.content_hash == str(talking_capture["model_hash"])
    assert np.allclose(_project(loaded), _project(talking_capture), atol=1e-6)


def test_rig_topology_joints_and_weights(talking_capture):
    data = model_from_capture(talking_capture)
    assert data.n_vertices == 478 and data.joint_names == ("global", "neck", "jaw", "left_eye", "right_eye")
    assert data.posedirs.shape == (478, 3, 36) and np.allclose(data.weights.sum(1), 1)
    # A surface: every edge borders one or two triangles, wound consistently (an edge runs both ways at most once).
    f = data.faces
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len({tuple(e) for e in directed}) == len(directed)
    assert len(f) == 852 + 8 and set(np.unique(f)) == set(range(478))
    # Facing the viewer (+Z) in the template.
    a, b, c = (data.template[f[:, k]] for k in range(3))
    assert (np.cross(b - a, c - a)[:, 2] > 0).mean() > 0.9
    for j, eye in ((3, "left_eye"), (4, "right_eye")):
        assert np.all(data.weights[list(IRIS_POINTS[eye]), j] == 1)
    assert data.weights[14, 2] == 1 and data.weights[13, 2] == 0  # lower lip on the jaw, upper lip not
    # The subject's left eye sits at +x, and the joints stay put under any expression.
    assert data.template[473, 0] > data.template[468, 0]
    assert np.allclose(np.einsum("jv,vck->jck", data.j_regressor, data.exprdirs), 0, atol=1e-9)


def test_invalid_frames_get_parameters_filled_in_by_the_temporal_prior(talking_track):
    landmarks, valid = talking_track.landmarks.copy(), talking_track.valid.copy()
    landmarks[20:25], valid[20:25] = 0, False
    track = dataclasses.replace(talking_track, landmarks=landmarks, valid=valid)
    capture = capture_builtin(track)
    assert not capture["valid"][20:25].any() and capture["valid"][:20].all()
    for key in ("expression", "jaw_pose", "eye_pose", "translation", "global_pose", "neck_pose", "arkit"):
        assert np.isfinite(capture[key]).all(), key
    assert capture["arkit"].min() >= 0 and capture["arkit"].max() <= 1
    # The filled frames carry on the motion around the gap, without a jump into or out of it: no rig point moves
    # further from one frame to the next there than 1.5 times the clip's median largest step (1.2 px; a rest pose
    # in the gap jumps 4 px), and the rig lies where MediaPipe finds the face in the unbroken clip, within 2 px.
    points = _project(capture)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=-1).max(1)
    assert steps[19:25].max() < 1.5 * np.median(steps), (steps[19:25], np.median(steps))
    err = np.linalg.norm(points - talking_track.pixels(), axis=-1).mean(1)
    assert err[20:25].max() < 2.0, err[20:25]


def test_a_clip_without_a_face_says_so(talking_track):
    track = dataclasses.replace(talking_track, landmarks=np.zeros_like(talking_track.landmarks),
                                valid=np.zeros_like(talking_track.valid))
    with pytest.raises(FootageError, match="no face"):
        capture_builtin(track)


def test_model_from_a_capture_of_another_model_is_refused(talking_capture):
    other = {k: v for k, v in talking_capture.items() if not k.startswith("builtin_")}
    with pytest.raises(ModelFileError, match="built-in"):
        model_from_capture(other)


def test_no_neutral_frame_still_works_and_warns(footage, talking_capture):
    # A strong smile throughout: the clip cannot show the actor's neutral.
    capture = capture_builtin(detect_video(footage / "happy_1080p.mp4"))
    capture_file.validate(capture)
    assert any("calibration uncertain" in str(w) for w in capture["warnings"])
    assert len(talking_capture["warnings"]) == 0
    # With the population neutral standing in, the smile reads as a smile; the upper lip it stretches thin is not read
    # as rolled in (0.43 on average before the lip's border had to turn in as well: a smile lifts it).
    smile = capture["arkit"][:, [ARKIT_INDEX["mouthSmileLeft"], ARKIT_INDEX["mouthSmileRight"]]]
    assert np.median(smile) > 0.3
    rolled = capture["arkit"][:, [ARKIT_INDEX["mouthRollUpper"], ARKIT_INDEX["mouthRollLower"]]]
    assert rolled.mean(0).max() < 0.1, rolled.mean(0)


def test_geometric_arkit_curves_follow_the_rendered_truth(rom_track, synthetic):
    arkit, cal = geo.solve(rom_track.landmarks, rom_track.valid, rom_track.image_size)
    truth_file = np.load(synthetic / "ict_rom_21" / "truth.npz")
    truth = ict_to_arkit(truth_file["expressions"], [str(n) for n in truth_file["expression_names"]])
    assert not cal.warnings  # the range of motion returns to neutral between poses
    for name in ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft"):
        i = ARKIT_INDEX[name]
        assert np.corrcoef(arkit[:, i], truth[:, i])[0, 1] > 0.7, name
    assert arkit.min() >= 0 and arkit.max() <= 1
    uncovered = [ARKIT_INDEX[n] for n in ARKIT_NAMES if n not in geo.covered_channels()]
    assert np.all(arkit[:, uncovered] == 0) and "tongueOut" not in geo.covered_channels()


def test_a_mouth_moved_sideways_is_no_smile(talking_track):
    """The lips of real footage moved 6 px towards the subject's left in the second half of the clip (about 6 mm):
    the geometric solver reads mouthLeft, not a smile on the side the mouth moved towards."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    lips = sorted({i for edge in FACEMESH_LIPS for i in edge})
    moved = talking_track.landmarks.copy()
    moved[30:, lips, 0] += 6.0 / talking_track.image_size[0]  # the subject's left is the image's right
    curves = []
    for lms in (talking_track.landmarks, moved):  # both at rest as frame 5 shows it, before the lips move
        frames = geo.face_frames(lms, talking_track.valid, talking_track.image_size)
        rest = geo.calibrate(frames, 5)
        curves.append(geo.solve(lms, talking_track.valid, talking_track.image_size, frames, rest)[0])
    before, after = curves
    change = (after[30:] - before[30:]).mean(0)
    assert change[ARKIT_INDEX["mouthLeft"]] > 0.3, change[ARKIT_INDEX["mouthLeft"]]
    assert abs(change[ARKIT_INDEX["mouthSmileLeft"]]) < 0.05 and abs(change[ARKIT_INDEX["mouthSmileRight"]]) < 0.05


def test_a_frown_is_not_taken_for_the_actors_rest(talking_track):
    """The talking clip with its mouth corners lowered 3 px in a sixth of its frames (a frown, lips closed as
    before): the calibration still finds the actor's rest corners, so the other frames read no smile they did not
    read before (lowest corners had counted as the most relaxed, and the frown then made every rest a smile)."""
    frowning = talking_track.landmarks.copy()
    frowning[20:30, list(geo.MOUTH_CORNER), 1] += 3.0 / talking_track.image_size[1]
    found = []
    for lms in (talking_track.landmarks, frowning):
        frames = geo.face_frames(lms, talking_track.valid, talking_track.image_size)
        rest = geo.calibrate(frames)
        found.append((rest, geo.solve(lms, talking_track.valid, talking_track.image_size, frames, rest)[0]))
    (before, curves_before), (after, curves_after) = found
    assert not set(after.neutral_frames) & set(range(20, 30)), after.neutral_frames
    assert abs(after.features["corner_lift"] - before.features["corner_lift"]) < 0.3
    smile = [ARKIT_INDEX["mouthSmileLeft"], ARKIT_INDEX["mouthSmileRight"]]
    others = np.r_[0:20, 30:len(frowning)]
    assert np.abs(curves_after[others][:, smile] - curves_before[others][:, smile]).mean() < 0.03


def test_a_take_that_never_relaxes_reads_against_an_earlier_rest_face(talking_track, talking_capture):
    """The talking clip with its mouth corners raised 4 px in every frame (a smile held throughout): on its own it
    holds no neutral-looking frame, so its calibration is uncertain and falls back on the population's; against
    the rest face of an earlier capture of the actor (the clip as it was), as `--face-from` gives it, it is
    calibrated and the raise reads as a smile, through the engine as in the library."""
    raised = talking_track.landmarks.copy()
    raised[:, list(geo.MOUTH_CORNER), 1] -= 4.0 / talking_track.image_size[1]
    take = dataclasses.replace(talking_track, landmarks=raised)
    own = capture_builtin(take)
    kept = capture_builtin(take, known_neutral=talking_capture["arkit_neutral"])
    assert any("calibration uncertain" in str(w) for w in own["warnings"]) and len(kept["warnings"]) == 0
    smile = [ARKIT_INDEX["mouthSmileLeft"], ARKIT_INDEX["mouthSmileRight"]]
    assert kept["arkit"][:, smile].mean() > talking_capture["arkit"][:, smile].mean() + 0.15
    through = CaptureEngine(None, tracks_footage=False).run_track(take, face_from=talking_capture)
    np.testing.assert_allclose(through["arkit"], kept["arkit"], atol=1e-6)
    assert through["face_from"] == "the capture given"


def test_a_neutral_frame_named_by_the_user_is_the_rig_at_rest(footage, talking_track):
    """The user's neutral frame (with its neighbours, against landmark noise) is the rig's rest face and the
    ARKit calibration's neutral: the shape keys and curves sit at rest there, wherever the clip's quietest frames
    are. A neutral frame that does not look relaxed is said to be so."""
    rest = 10
    capture = capture_builtin(talking_track, smoothing=SmoothingSettings().scaled(0), neutral_row=rest)
    default = capture_builtin(talking_track, smoothing=SmoothingSettings().scaled(0))
    size = lambda c: np.abs(c["expression"]).sum(1)  # noqa: E731
    assert size(capture)[rest] < 0.25 * np.median(size(capture)), (size(capture)[rest], np.median(size(capture)))
    assert size(default)[rest] > 0.5 * np.median(size(default))  # not a rest frame of its own accord
    assert np.abs(capture["arkit"][rest]).max() < 0.1
    assert not any("neutral frame given" in str(w) for w in capture["warnings"])
    smiling = detect_video(footage / "happy_1080p.mp4", end=10)
    assert any("neutral frame given does not look relaxed" in str(w)
               for w in capture_builtin(smiling, neutral_row=5)["warnings"])


def test_the_rigs_eyes_turn_where_the_rendered_eyes_look(glancing_head):
    video, _ = glancing_head
    # The rig's rest gaze is where the eyes rest over the clip (ahead), whatever the quietest frames look at.
    eye_pose = capture_builtin(detect_video(video))["eye_pose"]
    assert_eyes_follow_the_glances(eye_pose, between_glances=False)
    # Both eyes turn up and down together, as eyes do (read apart, their pitch differed by up to 2 degrees here).
    up = rotvec_to_matrix(eye_pose.reshape(-1, 2, 3).astype(np.float64))[:, :, 1, 2]  # each eye's +Z, its height
    assert np.degrees(np.abs(np.arcsin(up[:, 0]) - np.arcsin(up[:, 1]))).max() < 0.1


def test_a_nod_is_no_jaw_opening(footage):
    """In the talking clip the actor looks down about 14 degrees for its last seconds with his lips nearly closed. The
    landmarks' drift with the head's rotation (`core.arkit_geometric.pose_coupling`) is taken out, so jawOpen and the
    rig's jaw follow the mouth, not the nod (with the drift left in, jawOpen read 0.76 at its 95th percentile,
    correlated 0.89 with the head's pitch, and the rig's jaw 9.6 degrees)."""
    capture = capture_builtin(detect_video(footage / "frontal_talking_512.mp4"))
    pitch = Rotation.from_rotvec(capture["global_pose"]).as_euler("xyz")[:, 0]
    jaw = capture["arkit"][:, ARKIT_INDEX["jawOpen"]]
    assert np.percentile(jaw, 95) < 0.45 and abs(np.corrcoef(jaw, np.unwrap(pitch))[0, 1]) < 0.7
    assert np.percentile(capture["arkit"][:, ARKIT_INDEX["mouthClose"]], 95) < 0.3
    assert np.degrees(np.percentile(np.linalg.norm(capture["jaw_pose"], axis=1), 95)) < 7.0
