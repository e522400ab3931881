"""MediaPipe tracking on real footage: with several people in shot, the capture keeps its person; the mirror
pass averages the footage's landmarks with those of its mirror image; tracking in turns takes out the same bias."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree

from core import arkit_geometric as geo
from core.engine import CaptureEngine
from core.errors import FootageError, KinesicsError
from core.landmark_process import DECODE_AHEAD_BYTES, LandmarkProcess, decode_ahead, merged_passes, turns_unbiased
from core.landmarks import (FaceMeshTracker, TurnsTracker, detect_video, merge_passes, mirrored_turn,
                            remove_turn_bias, tracking_passes, view_tracker)
from core.mesh_mirror import MIRROR, PAIRS, mirror_landmarks
from core.video import read_frames


@pytest.mark.parametrize("passes", ["one", "both", "turns"])
def test_tracker_keeps_the_person_it_started_with(footage: Path, passes: str):
    """A second, larger face walks into the right of the frame; the tracker stays on the first one (with the
    mirror pass and in turns too, whose mirrored tracker sees the newcomer on the other side)."""
    talking = [frame for _, frame in read_frames(footage / "frontal_talking_512.mp4", 0, 16)]
    happy = [frame for _, frame in read_frames(footage / "happy_1080p.mp4", 0, 16)]
    import mediapipe as mp

    tracker = view_tracker(passes, max_faces=2)
    counter = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2, refine_landmarks=True)
    centres, faces_seen = [], []
    for i, (left, right) in enumerate(zip(talking, happy)):
        canvas = np.zeros((512, 1024, 3), np.uint8)
        canvas[:, :512] = left
        if i >= 6:  # the newcomer: the middle of the 1080p frame, face filling more of its half
            canvas[:, 512:] = cv2.resize(right[:, 420:1500], (512, 512))
        lms = tracker.track(canvas, i)[0]
        assert lms is not None, f"no face in frame {i}"
        centres.append(lms[:, 0].mean() * 1024)
        faces_seen.append(len(counter.process(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)).multi_face_landmarks or []))
    tracker.close()
    counter.close()
    assert max(faces_seen[6:]) == 2, "MediaPipe sees both faces once the second arrives"
    assert max(centres) < 512, f"the capture jumped to the newcomer: centre x up to {max(centres):.0f} px"


def _track(frames: list[np.ndarray], mirror_pass: bool) -> np.ndarray:
    tracker = view_tracker("both" if mirror_pass else "one")
    try:
        return np.array([tracker.track(frame, i)[0] for i, frame in enumerate(frames)])
    finally:
        tracker.close()


def test_mirror_pass_is_exactly_symmetric(footage: Path):
    """Tracking the mirrored footage with the mirror pass gives the mirror image of tracking the footage (to float
    rounding); one pass alone does not (MediaPipe's errors are not symmetric, about 0.5 px on this clip)."""
    frames = [frame for _, frame in read_frames(footage / "frontal_talking_512.mp4", 0, 12)]
    mirrored = [np.ascontiguousarray(frame[:, ::-1]) for frame in frames]
    for mirror_pass, low, high in ((True, 0.0, 1e-3), (False, 0.2, np.inf)):
        gap = np.abs(mirror_landmarks(_track(mirrored, mirror_pass)) - _track(frames, mirror_pass))[..., :2] * 512
        assert low <= gap.mean() < high, (mirror_pass, gap.mean())


def test_mirror_twins_are_the_same_points_on_a_real_face(footage: Path):
    """Each landmark's twin is where the landmark lands when the actor's neutral face is mirrored about its
    midline; midline points are their own twins."""
    assert len(PAIRS) == 225 and np.array_equal(MIRROR[MIRROR], np.arange(478))
    assert MIRROR[33] == 263 and MIRROR[61] == 291 and MIRROR[468] == 473  # eye corners, mouth corners, irises
    assert all(MIRROR[i] == i for i in (1, 4, 152, 10, 0, 17))  # nose tip, chin, forehead, lips
    track = detect_video(footage / "frontal_talking_512.mp4", 0, 60)
    neutral = geo.calibrate(geo.face_frames(track.landmarks.astype(np.float64), track.valid, track.image_size)).neutral
    midline = neutral[MIRROR == np.arange(478), 0].mean()
    mirrored = neutral * [-1, 1, 1] + [2 * midline, 0, 0]
    gap = np.linalg.norm(mirrored[MIRROR] - neutral, axis=1)  # mm; a real face is not exactly symmetric
    assert np.median(gap) < 2.0, np.median(gap)
    _, nearest = cKDTree(neutral).query(mirrored, k=3)
    assert (nearest == MIRROR[:, None]).any(1).mean() > 0.9  # the twin is among the 3 points nearest the image


def _turns_track(n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A face (478 points 0.2 wide) that drifts and nods, its lids (points 0-39) closing in a 4-frame blink at
    frame 30; and the same frames as tracked in turns, every other one off by a slowly changing bias (+b on a
    mirrored turn, -b on the others). Returns truth, tracked, mirrored."""
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.uniform(0.4, 0.6, (478, 2)), rng.normal(0, 0.02, (478, 1))], 1)
    t = np.arange(n, dtype=np.float64)
    truth = np.repeat(base[None], n, 0)
    truth[..., 0] += 0.02 * np.sin(t / 9)[:, None]
    truth[..., 1] += 0.01 * np.sin(t / 5)[:, None]
    truth[:, :40, 1] += 0.012 * np.clip(1 - np.abs(t - 30) / 2, 0, None)[:, None]  # the blink
    bias = 0.004 * np.stack([np.cos(t / 15), np.sin(t / 11), np.zeros(n)], 1)[:, None] * rng.uniform(0.5, 1, (478, 1))
    mirrored = np.array([mirrored_turn(int(i), 1) for i in t])
    sign = np.where(mirrored, 1.0, -1.0)[:, None, None]
    return truth, truth + sign * bias, mirrored


def test_tracking_in_turns_takes_the_bias_out_and_keeps_the_motion():
    """The bias between the turns goes (to a tenth), a 4-frame blink keeps its depth, frames without a face stay
    as they are, and a neighbour on another face is not compared. Turns are taken where the rate allows."""
    truth, tracked, mirrored = _turns_track()
    valid = np.ones(len(truth), bool)
    fixed = remove_turn_bias(tracked, valid, mirrored)
    before, after = np.abs(tracked - truth).mean(), np.abs(fixed - truth).mean()
    assert after < 0.1 * before, (before, after)
    blink = fixed[30, :40, 1] - fixed[24, :40, 1] - (truth[30, :40, 1] - truth[24, :40, 1])
    assert np.abs(blink).max() < 0.1 * 0.012, "the blink's depth is kept"
    gone = valid.copy()
    gone[10] = False
    holes = tracked.copy()
    holes[10] = 0.0
    stranger = holes.copy()
    stranger[20, :, 0] += 0.3  # someone else, a face and a half away
    out = remove_turn_bias(stranger, gone, mirrored)
    assert np.array_equal(out[10], holes[10])
    assert np.abs(out[[9, 11]] - truth[[9, 11]]).mean() < 0.2 * before
    assert np.abs(out[[19, 21]] - truth[[19, 21]]).mean() < 0.2 * before, "the stranger is not compared"
    assert [mirrored_turn(i, 2) for i in (10, 11, 12, 14)] == [True, True, False, True]
    assert [tracking_passes(m, fps) for m, fps in ((False, 25), (False, 12.5), (True, 25))] == ["turns", "one", "both"]


def test_turns_stream_matches_the_whole_track_and_ends_at_an_error():
    """Frames streamed through `turns_unbiased` come out as `remove_turn_bias` of the whole track gives them,
    each once, in order; an error comes after every frame before it."""
    truth, tracked, mirrored = _turns_track(20)
    tracked = tracked.astype(np.float32)
    valid = np.ones(20, bool)
    valid[7] = False
    damaged = FootageError("clip.mp4: damaged after frame 19")
    items = [(i, tracked[i] if valid[i] else None, (64, 64), i / 25, bool(mirrored[i])) for i in range(20)]
    out = list(turns_unbiased(item for item in [*items, damaged]))
    assert out[-1] is damaged and [item[0] for item in out[:-1]] == list(range(20))
    assert out[7][1] is None and out[5][2:] == ((64, 64), 5 / 25)
    assert list(turns_unbiased(item for item in [damaged])) == [damaged], "an error before any frame"
    whole = remove_turn_bias(np.where(valid[:, None, None], tracked, 0), valid, mirrored)
    np.testing.assert_allclose(np.stack([item[1] for item in out[:-1] if item[1] is not None]), whole[valid],
                               atol=1e-6)


def test_turns_on_real_footage_are_nearly_left_right_symmetric(footage: Path):
    """Tracking the mirrored footage in turns gives nearly the mirror image of tracking the footage in turns (one
    MediaPipe run a frame, the bias between the views taken out of each frame), where one pass is not: 0.23
    against 0.52 px a frame, 0.07 against 0.70 px over the clip."""
    frames = [frame for _, frame in read_frames(footage / "frontal_talking_512.mp4", 0, 40)]
    mirrored = [np.ascontiguousarray(frame[:, ::-1]) for frame in frames]

    def turns(clip: list[np.ndarray]) -> np.ndarray:
        tracker = TurnsTracker()
        try:
            found = [tracker.track(frame, i) for i, frame in enumerate(clip)]
        finally:
            tracker.close()
        assert [view for _, view in found[2:]] == [i % 2 == 1 for i in range(2, 40)]
        return remove_turn_bias(np.array([lms for lms, _ in found]), np.ones(40, bool), [v for _, v in found])

    one = mirror_landmarks(_track(mirrored, False)) - _track(frames, False)
    in_turns = mirror_landmarks(turns(mirrored)) - turns(frames)
    # Each landmark's gap in pixels, frame by frame (the turns are each one view: the bias must be taken out of
    # each frame) and averaged over the clip (the bias alone, without MediaPipe's noise).
    per_frame = lambda gap: np.linalg.norm(gap[2:-2, :, :2] * 512, axis=-1).mean()  # noqa: E731
    over_clip = lambda gap: np.linalg.norm(gap[2:-2, :, :2].mean(0) * 512, axis=-1).mean()  # noqa: E731
    assert per_frame(in_turns) < 0.6 * per_frame(one), (per_frame(in_turns), per_frame(one))
    assert over_clip(in_turns) < 0.3 * over_clip(one), (over_clip(in_turns), over_clip(one))


def test_merged_streams_stop_at_the_first_error_or_a_frame_out_of_step():
    face = np.zeros((478, 3), np.float32)
    face[:, 0] = np.linspace(0.4, 0.6, 478)  # a face 0.2 wide
    damaged = FootageError("clip.mp4: damaged after frame 1")

    def stream(*items):
        yield from items

    merged = list(merged_passes(stream((0, face, (64, 64), 0.0), (1, face, (64, 64), 0.04), damaged),
                                stream((0, face + 0.01, (64, 64), 0.0), (1, None, (64, 64), 0.04),
                                       (2, face, (64, 64), 0.08))))
    assert merged[0][0] == 0 and np.allclose(merged[0][1], face + 0.005)  # the mean of the two passes
    assert merged[1][0] == 1 and merged[1][1] is face  # the mirrored pass lost the face: the frame's own stands
    assert merged[1][3] == 0.04, "the frame's timestamp comes along"
    assert merged[2] is damaged and len(merged) == 3
    far = face + np.array([0.3, 0, 0], np.float32)  # the mirrored pass followed someone else
    assert merge_passes(face, far) is face and merge_passes(None, far) is far
    out_of_step = list(merged_passes(stream((4, face, (64, 64), 0.16)), stream((5, face, (64, 64), 0.2))))
    assert isinstance(out_of_step[0], KinesicsError) and "out of step" in str(out_of_step[0])


def test_frames_decoded_ahead_stay_within_a_memory_budget(footage: Path):
    """Up to 3 frames are decoded ahead of MediaPipe, fewer where they would pass the budget (4K: 2, 8K: 1, never
    0); however many, the landmarks are the same."""
    assert [decode_ahead(w, h) for w, h in ((512, 512), (1920, 1080), (3840, 2160), (7680, 4320), (20000, 20000))] \
        == [3, 3, 2, 1, 1]
    assert all(decode_ahead(w, h) * 3 * w * h <= DECODE_AHEAD_BYTES for w, h in ((3840, 2160), (4096, 2160)))
    process = LandmarkProcess()
    try:
        clip = str(footage / "frontal_talking_512.mp4")
        one, three = ([item[1] for item in process.frames(clip, 0, 12, 1, 1, "one", [], None, ahead)]
                      for ahead in (1, 3))
    finally:
        process.close()
    assert len(one) == 12 and np.array_equal(np.stack(one), np.stack(three))


def test_a_kept_tracker_tracks_the_next_footage_as_a_new_one_would(footage: Path):
    """The landmark process keeps its trackers from one job to the next with the same settings (a MediaPipe graph
    takes about 15 ms to start and 40 ms to close, 2 ms to reset): what a job finds must not depend on the one
    before, which ended on another face, elsewhere in another frame size."""
    talking, happy = (str(footage / name) for name in ("frontal_talking_512.mp4", "happy_1080p.mp4"))
    process = LandmarkProcess()
    try:
        def track(clip: str) -> np.ndarray:
            return np.stack([item[1] for item in process.frames(clip, 0, 12, 1, 1, "turns", [], None)])
        first = track(talking)
        track(happy)
        again = track(talking)
    finally:
        process.close()
    assert np.array_equal(first, again)


def _wide_shot(footage: Path, path: Path, frames: int, scale: float) -> list[tuple[int, int]]:
    """The talking clip shrunk by `scale` into 1080p frames (a medium or wide shot), walking right and down;
    written to `path`, with each frame's top-left corner of the shrunk clip."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (1920, 1080))
    corners = []
    for i, frame in read_frames(footage / "frontal_talking_512.mp4", 0, frames):
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        x0, y0 = 300 + 8 * i, 200 + 2 * i
        canvas = np.full((1080, 1920, 3), 90, np.uint8)
        canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        writer.write(canvas)
        corners.append((x0, y0))
    writer.release()
    return corners


@pytest.mark.parametrize("scale", [0.4, 0.15])
def test_a_small_face_in_a_wide_shot_is_found_and_tracked(footage: Path, tmp_path: Path, scale: float):
    """Faces about 70 and 25 px wide in 1080p frames, moving: MediaPipe's face mesh alone finds neither, the tracker
    finds and follows both in every frame (through the capture's landmark process too), its landmarks where the
    full-size clip's land, scaled down (within a pixel, median)."""
    import mediapipe as mp

    corners = _wide_shot(footage, tmp_path / "wide.mp4", 40, scale)
    first = next(read_frames(tmp_path / "wide.mp4"))[1]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        assert mesh.process(cv2.cvtColor(first, cv2.COLOR_BGR2RGB)).multi_face_landmarks is None
    reference = detect_video(footage / "frontal_talking_512.mp4", 0, 40)
    for mirror_pass in (False, True):
        track = detect_video(tmp_path / "wide.mp4", mirror_pass=mirror_pass)
        assert track.valid.all(), f"no face in frames {np.flatnonzero(~track.valid)}"
        expected = reference.landmarks[..., :2] * 512 * scale + np.asarray(corners, np.float64)[:, None]
        error = np.linalg.norm(track.pixels() - expected, axis=-1)
        assert np.median(error) < 1.0 and np.percentile(error, 95) < 3.0, (np.median(error), mirror_pass)
    capture = CaptureEngine().run(str(tmp_path / "wide.mp4"))  # decoded and tracked in a landmark process
    assert capture["valid"].all()


def test_a_small_face_moving_fast_is_searched_for_again_at_once(footage: Path, tmp_path: Path):
    """A small face that moves 16 px a frame (every other frame of the wide shot) escapes the window it is
    tracked in; it is searched for again in the same frame, not SEARCH_EVERY frames later, so most frames keep it
    (a fifth of them did), on the mirror image too."""
    _wide_shot(footage, tmp_path / "wide.mp4", 40, 0.15)
    frames = [frame for _, frame in read_frames(tmp_path / "wide.mp4")][::2]
    for mirrored in (False, True):
        tracker = FaceMeshTracker(mirrored=mirrored)
        try:
            found = [tracker(frame) is not None for frame in frames]
        finally:
            tracker.close()
        assert np.mean(found) >= 0.7, (mirrored, found)


def test_the_actor_back_in_front_wins_over_a_small_face_that_stood_in(footage: Path):
    """A small face (a poster in the background) is followed while the actor is out of shot; once the actor is
    back, large in the frame, the tracker returns to them within a few frames."""
    actor = [frame for _, frame in read_frames(footage / "frontal_talking_512.mp4", 0, 40)]
    poster = cv2.resize(actor[0], None, fx=0.12, fy=0.12, interpolation=cv2.INTER_AREA)
    tracker = FaceMeshTracker()
    centres = []
    for i, frame in enumerate(actor):
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        canvas[40:40 + poster.shape[0], 1100:1100 + poster.shape[1]] = poster
        if not 10 <= i < 20:  # the actor steps out of shot for 10 frames
            canvas[100:612, 200:712] = frame
        lms = tracker(canvas)
        centres.append(None if lms is None else lms[:, 0].mean() * 1280)
    tracker.close()
    on_actor = [c is not None and c < 800 for c in centres]
    assert all(on_actor[:10]) and all(on_actor[26:]), on_actor
    assert any(c is not None and c > 1000 for c in centres[10:20]), "the poster's face stands in meanwhile"
