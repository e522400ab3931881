"""The capture engine on real footage with real MediaPipe: fit quality, head rotation against rendered truth,
parameter recovery, cancelling, streaming and the capture file."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS
from scipy.spatial.transform import Rotation

from core import capture_file
from core.capture_file import CaptureFileError
from core.embedding import landmark_embedding
from core.engine import CaptureEngine, EngineSettings
from core.errors import CaptureCancelled, FootageError, SettingError
from core.far_side import turned_far_note
from core.fit import Camera
from core.head_model import HeadModel
from core.landmarks import LandmarkTrack
from core.model_data import load_model_data
from tests.painted_heads import gaze_angles
from test_video import _boxes, faststart

TALKING_FRAMES = 60
# Model frame (+Y up, face towards +Z) to OpenCV camera (y down, z forward) when facing the camera.
FLIP = np.diag([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def engine(standin_model: Path) -> CaptureEngine:
    return CaptureEngine(str(standin_model))


@pytest.fixture(scope="module")
def talking(engine: CaptureEngine, footage: Path) -> dict:
    """The first frames of the talking clip, with what was streamed while capturing."""
    streamed: dict = {"headers": [], "chunks": []}
    capture = engine.run(str(footage / "frontal_talking_512.mp4"), 0, TALKING_FRAMES,
                         on_header=streamed["headers"].append, on_chunk=streamed["chunks"].append)
    return {"capture": capture, **streamed}


def landmark_points(engine: CaptureEngine, capture: dict) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space positions (T,478,3) of the embedded landmark points under the capture's parameters,
    computed with the full head model (not the fitter's), and which landmarks are embedded (478,)."""
    emb = landmark_embedding(engine.data)
    model = HeadModel(engine.data).subset(emb.triangles, emb.barycentric)
    as_t = lambda k: torch.as_tensor(np.asarray(capture[k], np.float32))  # noqa: E731
    with torch.no_grad():
        out = model(shape=as_t("shape")[None], expression=as_t("expression"), global_pose=as_t("global_pose"),
                    neck_pose=as_t("neck_pose"), jaw_pose=as_t("jaw_pose"), eye_pose=as_t("eye_pose"),
                    translation=as_t("translation"))
    return out.vertices.double().numpy(), emb.valid


def project(points: np.ndarray, capture: dict) -> np.ndarray:
    focal = float(np.mean(capture["focal_px"]))
    return np.stack([focal * points[..., 0] / points[..., 2] + float(capture["cx"]),
                     focal * points[..., 1] / points[..., 2] + float(capture["cy"])], -1)


def test_talking_capture_is_complete_and_finite(talking: dict):
    capture = talking["capture"]
    capture_file.validate(capture)
    assert list(capture["frame_index"]) == list(range(TALKING_FRAMES))
    assert capture["valid"].all(), "MediaPipe finds the face in every frame of this clip"
    assert capture["model"] == "flame" and capture["fps"] == pytest.approx(25.0)
    assert list(capture["image_size"]) == [512, 512]
    for key in ("shape", "expression", "jaw_pose", "neck_pose", "eye_pose", "global_pose", "translation",
                "focal_px"):
        assert np.isfinite(capture[key]).all(), key
    assert 0.2 < float(np.median(capture["translation"][:, 2])) < 3.0  # metres in front of the lens
    assert np.abs(capture["shape"]).max() > 0, "an identity was fitted"
    assert np.abs(capture["expression"]).max() > 0


def test_named_blendshapes_are_fitted_as_weights(engine: CaptureEngine, talking: dict, ict_npz: Path):
    """The stand-in names its expression columns (ICT-FaceKit's blendshapes), so they are weights in [0, 1]:
    the fit holds unused shapes at exactly 0 instead of mixing in negative ones. FLAME's own columns are
    unnamed PCA components, and stay signed."""
    assert engine.data.expressions_are_weights and engine.fitter.settings.bounded
    assert load_model_data(ict_npz).expressions_are_weights
    assert not dataclasses.replace(engine.data, expression_names=()).expressions_are_weights
    expression = talking["capture"]["expression"][:, :len(engine.data.expression_names)]
    assert expression.min() >= 0.0 and expression.max() <= 1.0
    assert 0.2 < np.mean(expression == 0.0) < 0.95, "the bound holds some shapes at rest, not all"


def test_fitted_landmarks_reproject_onto_mediapipe(engine: CaptureEngine, talking: dict):
    capture = talking["capture"]
    points, embedded = landmark_points(engine, capture)
    pix = project(points, capture)
    tracked = capture["landmarks"][..., :2] * capture["image_size"]
    error = np.linalg.norm(pix - tracked, axis=-1)[:, embedded]   # (T, embedded landmarks)
    per_frame = np.median(error, axis=1)
    assert per_frame.max() < 3.0, f"median reprojection error per frame up to {per_frame.max():.2f} px"
    assert np.percentile(error, 90) < 6.0


def test_streamed_pieces_assemble_into_the_capture(talking: dict):
    capture = talking["capture"]
    assert len(talking["headers"]) == 1
    assert talking["headers"][0]["n_frames"] == TALKING_FRAMES
    assert sum(len(c["frame_index"]) for c in talking["chunks"]) == TALKING_FRAMES
    assert len(talking["chunks"]) > 1, "frames are handed out as they become final, not all at the end"
    assembled = capture_file.assemble(talking["headers"][0], talking["chunks"])
    assert set(assembled) == set(capture) - {"warnings"}
    for key, value in assembled.items():
        if key not in capture_file.SETTLED_AT_END:
            assert np.array_equal(np.asarray(value), np.asarray(capture[key])), key
    # The ARKit curves and their rest face settle at the end (calibrated on the whole clip, not its opening second).
    assert assembled["arkit"].shape == capture["arkit"].shape
    assert not np.array_equal(assembled["arkit"], capture["arkit"])
    assert not np.array_equal(assembled["arkit_neutral"], capture["arkit_neutral"])


def test_a_capture_whose_curves_cannot_settle_keeps_the_streamed_ones(engine, talking, footage, monkeypatch):
    """Settling the ARKit curves is the capture's last step: should it fail, the capture is kept whole, with the
    curves as they streamed and a note that says what to do."""
    def fails(*_):
        raise FloatingPointError("a test makes settling fail")

    monkeypatch.setattr(engine.arkit_solver, "settle", fails)
    streamed: list[dict] = []
    capture = engine.run(str(footage / "frontal_talking_512.mp4"), 0, TALKING_FRAMES, on_chunk=streamed.append)
    np.testing.assert_array_equal(capture["arkit"], np.concatenate([c["arkit"] for c in streamed]))
    np.testing.assert_allclose(capture["global_pose"], talking["capture"]["global_pose"], atol=1e-6)
    note = [w for w in capture["warnings"] if "could not be settled" in w]
    assert len(note) == 1 and "FloatingPointError" in note[0] and "kinesics refit" in note[0]


def test_capture_file_round_trip(talking: dict, tmp_path: Path):
    capture = talking["capture"]
    path = capture_file.save(tmp_path / "talk.npz", capture)
    loaded = capture_file.load(path)
    assert set(loaded) == set(capture)
    for key, value in capture.items():
        if key == "model":
            assert loaded[key] == value
        else:
            assert np.array_equal(loaded[key], np.asarray(value)), key
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CaptureFileError, match="cut.npz"):
        capture_file.load(cut)
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CaptureFileError, match="capture the video again"):
        capture_file.load(noise)


def test_identity_waits_for_faces_when_footage_opens_without_one(engine: CaptureEngine, talking: dict):
    """A clip that opens on frames without a face (a slate, an empty set) gets its identity from as many faces
    as one that starts on the face, not from the first face alone."""
    capture = talking["capture"]
    size = tuple(int(v) for v in capture["image_size"])
    clean = engine.run_track(LandmarkTrack.from_capture(capture))
    empty = 40
    landmarks = np.concatenate([np.zeros((empty, *capture["landmarks"].shape[1:]), np.float32), capture["landmarks"]])
    valid = np.concatenate([np.zeros(empty, bool), capture["valid"]])
    late = engine.run_track(LandmarkTrack(np.arange(len(valid)), landmarks, valid, 25.0, size))
    assert not late["valid"][:empty].any() and late["valid"][empty:].all()
    np.testing.assert_allclose(late["shape"], clean["shape"], atol=1e-6)
    # Batches fall on other frames (warm starts differ), so expression agrees closely rather than exactly.
    drift = np.abs(late["expression"][empty:] - clean["expression"]).max(1)
    assert np.percentile(drift, 90) < 0.1 * np.abs(clean["expression"]).max(), drift


def test_head_rotation_matches_rendered_truth(engine: CaptureEngine, synthetic: Path):
    folder = synthetic / "ict_rom_21"
    truth = np.load(folder / "truth.npz")
    capture = engine.run(str(folder / "video.mp4"), 0, 60)
    assert capture["valid"].all()
    rot = lambda k: Rotation.from_rotvec(np.asarray(capture[k], np.float64))  # noqa: E731
    head = (rot("global_pose") * rot("neck_pose")).as_matrix()         # the neck turns under the global pose
    expected = FLIP @ truth["rotation"][capture["frame_index"]].astype(np.float64)  # truth camera looks down -Z
    angles = np.degrees(Rotation.from_matrix(np.swapaxes(head, 1, 2) @ expected).magnitude())
    assert np.median(angles) < 6.0 and angles.max() < 8.0, f"head rotation off by up to {angles.max():.1f} deg"
    # The motion, without the constant offset: the head turns by up to 25 degrees in these frames.
    moved = lambda r: Rotation.from_matrix(r @ r[0].T)  # noqa: E731
    motion_error = np.degrees((moved(head).inv() * moved(expected)).magnitude())
    assert np.degrees(moved(expected).magnitude()).max() > 20.0
    assert np.median(motion_error) < 3.0 and motion_error.max() < 7.0, f"motion off by {motion_error.max():.1f} deg"


def known_frames(fitter, data, rng: np.random.Generator, b: int):
    """B frames of plausible random parameters for the stand-in, and their landmarks (B,478,2) projected
    with the full head model and a known camera: (params, expression (B,E), pixels, camera)."""
    global_rot = Rotation.from_matrix(FLIP) * Rotation.from_euler("yxz", rng.uniform(-1, 1, (b, 3)) * [25, 12, 6],
                                                                  degrees=True)
    params = {"global_pose": global_rot.as_rotvec(),
              "jaw_pose": np.stack([rng.uniform(0.0, 0.25, b), np.zeros(b), np.zeros(b)], 1),
              "eye_pose": np.tile(rng.uniform(-0.2, 0.2, (b, 2)) @ [[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 1, 0]], 1),
              "translation": np.stack([rng.uniform(-0.05, 0.05, b), rng.uniform(-0.05, 0.05, b),
                                       rng.uniform(0.45, 0.8, b)], 1)}
    active = fitter.expr_cols.numpy()
    expression = np.zeros((b, fitter.n_expression_out))
    for row in expression:  # a few shapes at a time, as in a real expression
        row[rng.choice(active, 3, replace=False)] = rng.uniform(0.2, 0.7, 3)
    camera = Camera(900.0, 320.0, 240.0)
    emb = landmark_embedding(data)
    model = HeadModel(data).subset(emb.triangles, emb.barycentric)
    as_t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
    with torch.no_grad():
        points = model(shape=as_t(fitter.shape_vector())[None], expression=as_t(expression),
                       **{k: as_t(v) for k, v in params.items()}).vertices
    return params, expression, camera.project(points.double()).numpy(), camera


def fit_errors(fitter, params: dict, expression: np.ndarray, pix: np.ndarray, camera: Camera) -> dict:
    """Fit the frames from a PnP start and measure the worst errors against the known parameters."""
    valid = np.ones(len(pix), bool)
    start = fitter.initial_state(pix, valid, camera)
    state = fitter.solve(start, pix, valid, camera, iterations=30)
    reproject = lambda s: np.abs(fitter.project_points(s, camera).double().numpy() - pix[:, fitter.ids])  # noqa: E731
    angles = state.axis_angles().double().numpy()
    names = fitter.names
    rotation_error = Rotation.from_rotvec(angles[:, names.index("global")]).inv() * \
        Rotation.from_rotvec(params["global_pose"])
    fitted_expr = fitter.expression_matrix(state)
    active = fitter.expr_cols.numpy()
    return {"start_px": reproject(start).max(), "median_px": np.median(reproject(state)),
            "max_px": reproject(state).max(), "rotation_deg": np.degrees(rotation_error.magnitude()).max(),
            "translation_m": np.abs(state.trans.double().numpy() - params["translation"]).max(),
            "jaw_deg": np.degrees(np.abs(angles[:, names.index("jaw"), 0] - params["jaw_pose"][:, 0])).max(),
            "gaze_deg": np.degrees(np.abs(angles[:, [names.index("left_eye"), names.index("right_eye")], :2]
                                          - params["eye_pose"].reshape(-1, 2, 3)[..., :2])).max(),
            "expression": np.abs(fitted_expr - expression).max(),
            "expression_corr": np.corrcoef(fitted_expr[:, active].ravel(), expression[:, active].ravel())[0, 1]}


def test_fit_recovers_known_parameters(engine: CaptureEngine):
    """Landmarks projected from known parameters (full head model, known camera) are fitted back: exactly
    by the solver with its priors nearly off, and close by the engine's own settings."""
    weak = dataclasses.replace(engine.fitter.settings, expression_prior=1e-6, shape_prior=1e-6,
                               jaw_prior=(1e-3, 1e-3, 1e-3), eye_prior=(1e-3, 1e-3, 1.0), vergence_prior=1e-3)
    free = dataclasses.replace(engine.fitter, settings=weak)
    free.prepare(engine.fitter.shape_active)
    truth = known_frames(free, engine.data, np.random.default_rng(7), 6)
    exact = fit_errors(free, *truth)
    assert exact["start_px"] > 5.0, "the PnP start leaves work to do"
    assert exact["median_px"] < 0.01 and exact["max_px"] < 0.3
    assert exact["rotation_deg"] < 0.1 and exact["translation_m"] < 5e-4 and exact["jaw_deg"] < 0.1
    assert exact["gaze_deg"] < 0.5, "gaze (eye pitch and yaw) comes back from the irises"
    assert exact["expression"] < 0.03 and exact["expression_corr"] > 0.999
    # The engine's priors trade exactness for stability on noisy landmarks; the pose must still come back.
    engine_fit = fit_errors(engine.fitter, *truth)
    assert engine_fit["median_px"] < 0.5
    assert engine_fit["rotation_deg"] < 2.0 and engine_fit["translation_m"] < 0.015 and engine_fit["jaw_deg"] < 2.0
    assert engine_fit["gaze_deg"] < 4.0


def test_cancel_keeps_every_frame_handed_out(engine: CaptureEngine, footage: Path):
    cancel = threading.Event()
    chunks: list[dict] = []
    headers: list[dict] = []

    def on_chunk(chunk: dict) -> None:
        chunks.append(chunk)
        cancel.set()

    with pytest.raises(CaptureCancelled) as err:
        engine.run(str(footage / "frontal_talking_512.mp4"), 100, 400, on_header=headers.append, on_chunk=on_chunk,
                   cancel=cancel)
    partial = err.value.partial
    capture_file.validate(partial)
    handed_out = np.concatenate([c["frame_index"] for c in chunks])
    assert 0 < len(handed_out) < 300
    assert np.array_equal(partial["frame_index"], handed_out)
    assert handed_out[0] == 100 and (np.diff(handed_out) == 1).all()
    assembled = capture_file.assemble(headers[0], chunks)
    for key in capture_file.PER_FRAME:
        assert np.array_equal(partial[key], assembled[key]), key


def test_footage_the_landmark_process_refuses_fails_clearly_and_frees_it(engine: CaptureEngine, footage: Path,
                                                                          tmp_path: Path):
    """What only decoding finds (a range that starts past the clip's end; a file whose index announces frames its
    data does not hold) fails clearly, and the next capture runs while the error is still held, as a worker holds
    it to report it (it once waited for the garbage collector)."""
    video = footage / "frontal_talking_512.mp4"
    data = faststart(video.read_bytes())
    index = next(box for box in _boxes(data, 0, len(data)) if box[0] == b"moov")
    no_frames = tmp_path / "index_only.mp4"
    no_frames.write_bytes(data[:index[1] + index[2] + 16])
    held = []
    for path, start, words in ((video, 500, "the range starts at frame 500"), (no_frames, 0, "no decodable frame")):
        with pytest.raises(FootageError, match=words) as refused:
            engine.run(str(path), start=start)
        held.append(refused)
        assert not any(process._lock.locked() for process in engine._landmarks)
    assert len(engine.run(str(video), end=5)["frame_index"]) == 5 and len(held) == 2


def test_a_consumer_that_fails_mid_capture_stops_the_landmark_job(engine: CaptureEngine, footage: Path):
    """A callback that raises while chunks stream (a client gone) ends the run with its error; the landmark job
    stops with it, and the next capture runs while the error is held."""
    class Gone(Exception):
        pass

    def on_chunk(chunk: dict) -> None:
        raise Gone("the client left")

    video = str(footage / "frontal_talking_512.mp4")
    with pytest.raises(Gone) as gone:
        engine.run(video, end=200, on_chunk=on_chunk)
    assert not any(process._lock.locked() for process in engine._landmarks)
    assert len(engine.run(video, end=5)["frame_index"]) == 5 and gone.value


def test_identity_solve_refines_the_focal_length(engine: CaptureEngine):
    """With the face's shape pinned, perspective across poses tells the lens: a solve that starts a third too
    short moves most of the way to the true focal length, and one that starts there stays. (With the shape free,
    shape depth and focal length trade off: the engine starts from a typical lens and only refines it.)"""
    pinned = dataclasses.replace(engine.fitter.settings, shape_prior=1e6, focal_prior=1e-6, robust_px=1e3,
                                 identity_rounds=20)
    fitter = dataclasses.replace(engine.fitter, settings=pinned)
    fitter.prepare(torch.zeros_like(engine.fitter.shape_active))
    params, expression, pix, camera = known_frames(fitter, engine.data, np.random.default_rng(11), 12)
    every = np.ones(len(pix), bool)
    short = Camera(camera.focal * 2 / 3, camera.cx, camera.cy)
    _, fixed = fitter.solve_identity(fitter.initial_state(pix, every, short), pix, short)
    assert fixed.focal == short.focal, "the lens stays as given unless asked to estimate it"
    _, estimated = fitter.solve_identity(fitter.initial_state(pix, every, short), pix, short, estimate_focal=True)
    assert abs(estimated.focal / camera.focal - 1) < 0.1, estimated.focal
    _, kept = fitter.solve_identity(fitter.initial_state(pix, every, camera), pix, camera, estimate_focal=True)
    assert abs(kept.focal / camera.focal - 1) < 0.02, kept.focal


def test_fit_does_not_depend_on_the_image_resolution(engine: CaptureEngine):
    """The same faces filmed at three times the resolution, with MediaPipe's error three times larger in pixels
    (it works on a crop of the face), are fitted to the same expressions, jaw and gaze: a 4K close-up must not
    come out flatter than a small face in SD."""
    fitter = engine.fitter
    fitter.prepare(torch.zeros_like(fitter.shape_active))
    params, expression, pix, camera = known_frames(fitter, engine.data, np.random.default_rng(5), 12)
    noise = np.random.default_rng(0).normal(0, 1, pix.shape)
    every = np.ones(len(pix), bool)
    fitted = []
    for k in (1.0, 3.0):
        cam = Camera(camera.focal * k, camera.cx * k, camera.cy * k)
        target = (pix + noise) * k
        state = fitter.solve(fitter.initial_state(target, every, cam), target, every, cam, iterations=10)
        fitted.append((fitter.expression_matrix(state), state.axis_angles().double().numpy()))
    (small, small_angles), (large, large_angles) = fitted
    assert np.abs(small).mean() > 0.5 * np.abs(expression).mean(), "the fit is not flattened to nothing"
    np.testing.assert_allclose(large, small, atol=1e-3)
    np.testing.assert_allclose(large_angles, small_angles, atol=1e-3)


def test_smoothing_strength_trades_jitter_without_lag(engine: CaptureEngine, talking: dict):
    """The user's smoothing strength scales the temporal prior: stronger is steadier, 0 is the raw fit, and no
    strength delays the motion (the prior is zero-phase)."""
    capture = talking["capture"]
    track = LandmarkTrack.from_capture(capture)
    runs = {s: engine.run_track(track, smoothing=s) for s in (0.0, 1.0, 3.0)}
    jitter = {s: {k: np.abs(np.diff(r[k], 2, axis=0)).mean() for k in ("expression", "jaw_pose", "neck_pose")}
              for s, r in runs.items()}
    for key in ("expression", "jaw_pose", "neck_pose"):  # (the landmarks, tracked in turns, are steady already)
        assert jitter[0.0][key] > 1.3 * jitter[1.0][key] > 1.3 * jitter[3.0][key], (key, jitter)
    np.testing.assert_array_equal(runs[0.0]["shape"], runs[3.0]["shape"])  # smoothing comes after the fit
    jaw = {s: r["jaw_pose"][:, 0] - r["jaw_pose"][:, 0].mean() for s, r in runs.items()}
    lags = np.arange(-4, 5)
    xcorr = [np.dot(np.roll(jaw[3.0], lag), jaw[0.0]) for lag in lags]
    assert lags[int(np.argmax(xcorr))] == 0, xcorr
    with pytest.raises(SettingError, match="-1"):
        engine.run_track(track, smoothing=-1.0)


def test_whole_clip_identity_reads_the_whole_clip(engine: CaptureEngine, talking: dict):
    """A streamed capture fixes the actor's shape from its opening faces, so frames added at the end leave it
    alone; with `whole_clip_identity` (a refit) the keyframes spread over the whole clip, so they count."""
    capture = talking["capture"]
    size = tuple(int(v) for v in capture["image_size"])
    n = len(capture["frame_index"])
    landmarks = np.concatenate([capture["landmarks"], capture["landmarks"][::-1] * [1.0, 1.02, 1.0]])
    short = LandmarkTrack(np.arange(n), capture["landmarks"], np.ones(n, bool), 25.0, size)
    longer = LandmarkTrack(np.arange(2 * n), landmarks.astype(np.float32), np.ones(2 * n, bool), 25.0, size)
    for whole, changes in ((False, False), (True, True)):
        a, b = (engine.run_track(t, whole_clip_identity=whole)["shape"] for t in (short, longer))
        assert (np.abs(a - b).max() > 1e-3) == changes, (whole, np.abs(a - b).max())


def test_a_long_clip_tracked_in_segments_side_by_side(standin_model: Path, footage: Path):
    """With cores to spare, a long clip is tracked by several processes, each a segment: the frames arrive
    complete and in order, the first segment exactly as one process tracks it, the later ones within tracking's
    own spread (each re-detects the face where it starts)."""
    video = str(footage / "frontal_talking_512.mp4")
    one = CaptureEngine(str(standin_model), settings=EngineSettings(landmark_workers=1))
    split = CaptureEngine(str(standin_model), settings=EngineSettings(landmark_workers=3, segment_frames=40))
    try:
        assert split._segments(10, 250, 250, 2) == [(10, 90), (90, 170), (170, 250)]
        assert split._segments(0, None, 70, 1) == [(0, None)]  # too short to split
        a, b = one.run(video, 10, 250, 2), split.run(video, 10, 250, 2)
    finally:
        one.close()
        split.close()
    np.testing.assert_array_equal(b["frame_index"], np.arange(10, 250, 2))
    assert b["valid"].all()
    np.testing.assert_array_equal(b["landmarks"][:40], a["landmarks"][:40])
    gap = np.linalg.norm((b["landmarks"] - a["landmarks"])[..., :2] * 512, axis=-1).mean(1)  # px, per frame
    assert np.median(gap[40:]) < 0.5 and gap.max() < 3.0, (np.median(gap[40:]), gap.max())


def test_variable_frame_rate_footage_is_timed_by_its_timestamps(engine: CaptureEngine, talking: dict,
                                                                variable_rate_clip):
    """Phone footage whose rate drops mid-clip: every frame is timed at its own timestamp (so keys stay in step
    with the sound), with a note saying so; with the built-in rig and in a refit too. Constant-rate footage is
    timed at frame_index / fps exactly, and a frame rate the user gives replaces the timestamps."""
    path, truth = variable_rate_clip
    capture = engine.run(str(path))
    capture_file.validate(capture)
    np.testing.assert_allclose(capture["time_s"], truth, atol=1e-3)
    assert any("variable frame rate" in str(w) for w in capture["warnings"])
    np.testing.assert_array_equal(engine.refit(capture)["time_s"], capture["time_s"])
    builtin = CaptureEngine().run(str(path), 20, 60)
    np.testing.assert_allclose(builtin["time_s"], truth[20:60], atol=1e-3)
    assert any("variable frame rate" in str(w) for w in builtin["warnings"])

    steady = talking["capture"]
    assert np.array_equal(steady["time_s"], steady["frame_index"] / steady["fps"])
    assert not any("variable frame rate" in str(w) for w in steady.get("warnings", []))
    given = engine.run(str(path), 0, 30, fps=30.0)
    assert np.array_equal(given["time_s"], np.arange(30) / 30.0)


def held_smile(engine: CaptureEngine, frames: int = 60, held: int = 30, noise_px: float = 0.5
               ) -> tuple[LandmarkTrack, np.ndarray, np.ndarray, Camera, np.ndarray]:
    """Landmarks of a known face (the stand-in with a random identity), smiling (mouthSmile_L and _R at 0.6)
    through its first `held` frames and relaxed after, turning gently before a 640x480 camera: (track, clean
    pixels (T,478,2), the smile's weights (T,E), camera, the face's shape (S,))."""
    rng = np.random.default_rng(3)
    data, fitter = engine.data, engine.fitter
    names = list(data.expression_names)
    shape = np.zeros(fitter.n_shape_out)
    shape[:100] = rng.normal(0, 0.7, 100)
    t = np.arange(frames) / 25.0
    turn = np.stack([12 * np.sin(1.3 * t), 6 * np.sin(0.9 * t + 1), 3 * np.sin(0.7 * t)], 1)
    params = {"global_pose": (Rotation.from_matrix(FLIP) * Rotation.from_euler("yxz", turn, degrees=True)).as_rotvec(),
              "translation": np.stack([0.02 * np.sin(t), 0.01 * np.cos(t), 0.6 + 0.03 * np.sin(0.5 * t)], 1)}
    expression = np.zeros((frames, fitter.n_expression_out))
    expression[:held, [names.index("mouthSmile_L"), names.index("mouthSmile_R")]] = 0.6
    emb = landmark_embedding(data)
    model = HeadModel(data).subset(emb.triangles, emb.barycentric)
    as_t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
    with torch.no_grad():
        points = model(shape=as_t(shape)[None], expression=as_t(expression),
                       **{k: as_t(v) for k, v in params.items()}).vertices.double()
    camera = Camera(900.0, 320.0, 240.0)
    clean = camera.project(points).numpy()
    pix = clean + rng.normal(0, noise_px, clean.shape)
    landmarks = np.concatenate([pix / [640, 480], np.zeros((frames, 478, 1))], -1).astype(np.float32)
    return LandmarkTrack(np.arange(frames), landmarks, np.ones(frames, bool), 25.0, (640, 480)), clean, expression, \
        camera, shape


def test_a_neutral_frame_keeps_a_held_smile_out_of_the_face_shape(engine: CaptureEngine):
    """An actor who smiles through the opening second: the opening faces are taken to be mostly at rest, so the
    smile becomes the face's shape and the relaxed frames after it are fitted badly (their mouth pulled into a
    frown the shape keys cannot make). Naming a relaxed frame takes the shape from it: the relaxed frames fit,
    and the smiling ones hold more smile. A neutral frame outside the clip is refused; one without a face is
    noted and the faces up to it serve. The capture records the neutral frame and the expressiveness it used."""
    track, clean, expression, camera, _ = held_smile(engine)
    lips = [i for i in sorted({i for edge in FACEMESH_LIPS for i in edge}) if landmark_embedding(engine.data).valid[i]]
    errors, smiles = {}, {}
    for neutral in (None, 45):
        capture = engine.run_track(track, focal_px=camera.focal, neutral_frame=neutral, expressiveness=4.0)
        points, _ = landmark_points(engine, capture)
        errors[neutral] = np.linalg.norm(project(points, capture) - clean, axis=-1)[30:, lips].mean()
        smiles[neutral] = (capture["expression"][:30] * (expression[:30] > 0)).sum(1).mean()
        assert capture.get("neutral_frame") == neutral and capture["expressiveness"] == 4.0  # the file says so
    assert errors[None] > 2.5 * errors[45], errors
    assert smiles[45] > 2 * smiles[None], smiles
    with pytest.raises(SettingError, match="neutral frame 60 lies outside"):
        engine.run_track(track, neutral_frame=60)
    hidden = LandmarkTrack(track.frame_index, track.landmarks, np.arange(60) != 45, 25.0, (640, 480))
    capture = engine.run_track(hidden, focal_px=camera.focal, neutral_frame=45)
    assert any("no face was found in the neutral frame 45" in str(w) for w in capture["warnings"])
    assert len(capture["frame_index"]) == 60 and capture["valid"].sum() == 59


def test_expressiveness_lets_expressions_read_fuller(engine: CaptureEngine):
    """The per-frame expression prior keeps landmark noise out of the shape keys, at the price of shrinking
    real expressions; expressiveness scales it: a held smile reads fuller at 4 than at 1, still within the
    weights' [0, 1], and the clip's landmarks fit closer. Expressiveness must be above 0."""
    track, clean, expression, camera, _ = held_smile(engine, noise_px=0.0)
    smile = expression[:30] > 0
    fitted = {}
    for e in (1.0, 4.0):
        capture = engine.run_track(track, focal_px=camera.focal, neutral_frame=45, expressiveness=e)
        points, _ = landmark_points(engine, capture)
        fitted[e] = ((capture["expression"][:30] * smile).sum(1).mean(),
                     np.linalg.norm(project(points, capture) - clean, axis=-1).mean(), capture["expression"])
    assert fitted[4.0][0] > 2.5 * fitted[1.0][0], fitted
    assert fitted[4.0][1] < fitted[1.0][1], fitted
    assert fitted[4.0][2].min() >= 0 and fitted[4.0][2].max() <= 1
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(SettingError, match="expressiveness"):
            engine.run_track(track, expressiveness=bad)


def test_the_actors_face_from_an_earlier_capture_is_kept(engine: CaptureEngine, talking: dict, tmp_path: Path):
    """A take that opens smiling, no neutral frame named: from its opening faces, the face's shape takes in the
    smile and the relaxed frames after it fit badly. Given the actor's face from an earlier capture with the same
    model (a file holding the true shape), the shape is kept as it is, the relaxed frames fit, the smile stays an
    expression, the lens is still estimated, and the capture says where its face came from."""
    track, clean, expression, camera, shape = held_smile(engine)
    earlier = capture_file.save(tmp_path / "calibration.npz", {**talking["capture"], "shape": shape})
    lips = [i for i in sorted({i for edge in FACEMESH_LIPS for i in edge}) if landmark_embedding(engine.data).valid[i]]
    errors, smiles = {}, {}
    for face in (None, str(earlier)):
        capture = engine.run_track(track, expressiveness=4.0, face_from=face)
        points, _ = landmark_points(engine, capture)
        errors[face] = np.linalg.norm(project(points, capture) - clean, axis=-1)[30:, lips].mean()
        smiles[face] = (capture["expression"][:30] * (expression[:30] > 0)).sum(1).mean()
    np.testing.assert_allclose(capture["shape"], shape, atol=1e-5)
    assert capture["face_from"] == str(earlier) and "face_from" not in talking["capture"]
    assert abs(float(capture["focal_px"]) - camera.focal) < 0.1 * camera.focal, capture["focal_px"]
    assert errors[None] > 2.5 * errors[str(earlier)], errors
    assert smiles[str(earlier)] > 2 * smiles[None], smiles


def test_a_face_from_another_model_or_the_builtin_rig_is_refused(engine: CaptureEngine, talking: dict,
                                                                  tmp_path: Path):
    """A face shape carries over only between captures made with the same model file; the built-in rig has none
    to give, and takes a rest face only from a capture that holds one; a missing file is named. Each fails before
    any work."""
    track = LandmarkTrack.from_capture(talking["capture"])
    cases = [({**talking["capture"], "model_hash": "0123456789abcdef"}, SettingError, "another head model"),
             ({**talking["capture"], "shape": talking["capture"]["shape"][:50]}, SettingError, "another head model"),
             ({**talking["capture"], "model": "builtin"}, SettingError, "built-in rig, which has no face shape"),
             ({**talking["capture"], "shape": np.full(100, np.nan)}, SettingError, "not a number"),
             (str(tmp_path / "gone.npz"), CaptureFileError, "gone.npz: no such capture file")]
    for face, error, message in cases:
        with pytest.raises(error, match=message):
            engine.run_track(track, face_from=face)
    bare = {k: v for k, v in talking["capture"].items() if k != "arkit_neutral"}
    with pytest.raises(SettingError, match="holds no rest face for the built-in rig"):
        CaptureEngine(None, tracks_footage=False).run_track(track, face_from=bare)


def test_fitted_eyes_turn_where_the_rendered_eyes_look(engine: CaptureEngine, glancing_head):
    """eye_pose turns each eye's +Z (ahead) towards the true gaze: to the subject's left is +X, up is +Y (model
    frame). MediaPipe's irises under-read these renders' glances (about half), so the angle is checked loosely,
    the direction strictly."""
    video, _ = glancing_head
    assert_eyes_follow_the_glances(engine.run(str(video))["eye_pose"])


def assert_eyes_follow_the_glances(eye_pose: np.ndarray, between_glances: bool = True) -> None:
    """The glancing head's frames (see conftest.glancing_head): 20 degrees left, 20 right, 15 up, ahead between.
    `between_glances`: angles count from the frames between the glances (the fitted eyes' rest is the model's,
    not the actor's); otherwise from the eyes' own rest, which must then be ahead."""
    yaw, pitch = gaze_angles(eye_pose)
    left, right, up, still = slice(9, 16), slice(23, 30), slice(37, 44), np.r_[0:8, 17:22, 31:36]
    if between_glances:
        yaw, pitch = yaw - yaw[np.r_[17:22, 31:36]].mean(), pitch - pitch[np.r_[17:22, 31:36]].mean()
    # The fitted eyes waver by up to 5 degrees in pitch in the opening frames (0-7), less than the glance up.
    assert np.abs(yaw[still]).max() < 5.0 and np.abs(pitch[still]).max() < 7.0
    assert 6.0 < yaw[left].mean() < 30.0 and -30.0 < yaw[right].mean() < -6.0
    assert pitch[up].mean() > 3.0
    assert np.abs(yaw[up]).max() < 5.0


def _turning_capture(yaw_deg: np.ndarray) -> dict:
    """The head-pose keys of a capture (25 fps, 0.8 m from the camera) whose face turns by yaw_deg (T,) about its
    vertical axis from facing the camera."""
    facing = Rotation.from_rotvec([np.pi, 0.0, 0.0])  # the model's +z (its face) towards the camera, +y up
    turns = facing * Rotation.from_rotvec(np.radians(yaw_deg)[:, None] * [0.0, 1.0, 0.0])
    n = len(yaw_deg)
    return {"global_pose": turns.as_rotvec(), "neck_pose": np.zeros((n, 3)), "translation": np.tile([0, 0, 0.8], (n, 1)),
            "valid": np.ones(n, bool), "frame_index": np.arange(n), "fps": 25.0}


def test_a_capture_says_where_the_face_turns_far_from_the_camera():
    """MediaPipe reads a face turned about 45 degrees or more from the camera less well (benchmarks/bench_painted.py
    --turns), and the fit reads such turns short: a capture notes how many frames the fit turns beyond 40 degrees and
    when the first is, counting frames with a face only."""
    yaw = np.concatenate([np.zeros(10), np.full(5, 60.0), np.full(5, -50.0), np.zeros(5)])
    capture = _turning_capture(yaw)
    note = turned_far_note(capture)
    assert note is not None and "in 10 frames" in note and "0:00.40" in note and "up to 60°" in note, note
    capture["valid"][10:15] = False
    assert "in 5 frames" in turned_far_note(capture) and "0:00.60" in turned_far_note(capture)
    assert turned_far_note(_turning_capture(np.linspace(-38.0, 38.0, 25))) is None
