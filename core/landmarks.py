"""MediaPipe face mesh landmarks (478 points with irises) over a video, in tracking mode."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from .mesh_mirror import mirror_landmarks

N_LANDMARKS = 478
SAME_FACE = 0.25  # the mirror pass's face is the followed one when their centres are this close (face widths)
SEARCH_EVERY = 5     # frames: how often a frame without a face is searched for a small one (a search is ~0.1 s)
WINDOW_FACES = 4.0   # a small face is tracked in a window this many face widths across
WINDOW_ZOOM = 2.5    # a face this many times larger or smaller than its window was made for is searched anew
MIN_WINDOW = 96      # pixels: the smallest window (MediaPipe needs some context about the face)
WHOLE_FRAME = 0.8    # a window this close to the frame's shorter side: track in the whole frame instead
# Tracking in turns (see `remove_turn_bias`): the left-right bias is estimated over 5 frames with these weights,
# in which the frames of either turn weigh the same, so that the motion's curvature (its sign alternates with the
# turns) cancels; and only at this frame rate or above, where neighbouring frames are close enough to compare.
TURN_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
TURNS_MIN_FPS = 20.0
TURN_CROP_FACES = 2.5   # the square about the face that tracking in turns looks at, in face sizes
TURN_SQUARE_PX = 512    # and its largest size in pixels (larger ones are scaled down)


@dataclass
class LandmarkTrack:
    """Landmarks of one person over T frames, as MediaPipe gives them.

    frame_index (T,) source frame numbers; landmarks (T,478,3): x, y normalised to the image width and
    height, z in MediaPipe's relative depth units; valid (T,) False where no face was found (zeros there);
    seconds (T,) the frames' timestamps (`core.video.read_timed_frames`; None or NaN: none).
    """

    frame_index: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    fps: float
    image_size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)
    seconds: np.ndarray | None = None

    @classmethod
    def from_capture(cls, capture: dict) -> "LandmarkTrack":
        """The landmarks a capture (`core.capture_file`) holds, as the track they were fitted from."""
        width, height = (int(v) for v in np.asarray(capture["image_size"]).ravel()[:2])
        seconds = np.asarray(capture["time_s"], np.float64) if "time_s" in capture else None
        return cls(np.asarray(capture["frame_index"], np.int64), np.asarray(capture["landmarks"], np.float32),
                   np.asarray(capture["valid"], bool), float(capture["fps"]), (width, height), seconds=seconds)

    @property
    def stride(self) -> int:
        """The frame step the track was taken with (1 when it has fewer than two frames)."""
        steps = np.diff(np.asarray(self.frame_index))
        return int(max(np.median(steps), 1)) if len(steps) else 1

    def pixels(self) -> np.ndarray:
        """(T,478,2) landmark positions in pixels."""
        return self.landmarks[:, :, :2] * np.asarray(self.image_size, np.float64)


class FaceMeshTracker:
    """MediaPipe face mesh in tracking mode that keeps following the same person, however small in the frame.

    With `max_faces` > 1, the face nearest to the last one followed is kept; with 1 (fastest), MediaPipe's
    own tracker keeps the face it locked on to until it loses it. `mirrored` tracks the mirror image of each
    frame and returns its landmarks mirrored back onto the frame: the second half of the mirror pass
    (`merge_passes`).

    Face mesh looks for faces with a short-range detector over the whole frame: in a 1080p medium shot a face
    100 px wide is not found at all. Where it finds none, MediaPipe's full-range detector searches the frame and
    then overlapping tiles of it (every SEARCH_EVERY frames while there is no face), and a face it finds is
    tracked in a square window about it (about WINDOW_FACES face widths across, centred on it each frame), its
    landmarks mapped back onto the frame. Every SEARCH_EVERY frames the whole frame is looked at again: a face
    found there is followed instead.
    """

    def __init__(self, max_faces: int = 1, min_confidence: float = 0.5, mirrored: bool = False):
        import mediapipe as mp  # heavy import, only where landmarks are needed

        self._new_mesh = lambda: mp.solutions.face_mesh.FaceMesh(  # noqa: E731
            static_image_mode=False, max_num_faces=max_faces, refine_landmarks=True,
            min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence)
        self._new_detector = lambda: mp.solutions.face_detection.FaceDetection(  # noqa: E731
            model_selection=1, min_detection_confidence=min_confidence)  # full range: faces up to 5 m away
        self._mesh = self._new_mesh()
        self._window_mesh = None   # its own tracker: it sees windows, not whole frames
        self._detector = None
        self._mirrored = mirrored
        self._forget()

    def _forget(self) -> None:
        self._window: tuple[int, int, int] | None = None   # x0, y0, side in pixels of the (flipped) frame
        self._since_search = SEARCH_EVERY
        self._since_whole = 0      # frames tracked in a window since the whole frame was last looked at
        self._last_center: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the face followed, as a new tracker would, keeping MediaPipe's graphs: one takes about 15 ms to
        start and 40 ms to close (a graph's reset, 2 ms), which on a short clip is work the fit could have had."""
        for solution in (self._mesh, self._window_mesh, self._detector):
            if solution is not None:
                solution.reset()
        self._forget()

    def track(self, frame_bgr: np.ndarray, index: int) -> tuple[np.ndarray | None, bool]:
        """As every view's tracker (see `view_tracker`): the landmarks, and whether they were found mirrored."""
        return self(frame_bgr), self._mirrored

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray | None:
        """(478,3) landmarks of the followed face in this frame, or None when there is none."""
        rgb = cv2.cvtColor(cv2.flip(frame_bgr, 1) if self._mirrored else frame_bgr, cv2.COLOR_BGR2RGB)
        faces = self._find(rgb)
        if not faces:
            return None
        if self._mirrored:
            faces = [mirror_landmarks(f) for f in faces]
        if len(faces) > 1 and self._last_center is not None:
            faces.sort(key=lambda a: float(np.linalg.norm(a[:, :2].mean(0) - self._last_center)))
        self._last_center = faces[0][:, :2].mean(0)
        return faces[0]

    @property
    def windowed(self) -> bool:
        """Whether the face is followed in a window (a small one), not in the whole frame."""
        return self._window is not None

    def _find(self, rgb: np.ndarray) -> list[np.ndarray]:
        if self._window is not None:
            self._since_whole += 1
            if self._since_whole >= SEARCH_EVERY:
                # A face the whole-frame mesh finds wins over a small one (the actor back in front of a face on
                # a poster that stood in while they were turned away).
                self._since_whole = 0
                faces = _faces(self._mesh, rgb)
                if faces:
                    self._window = None
                    return faces
            faces = self._in_window(rgb)
            if faces:
                self._since_search = SEARCH_EVERY  # if it is lost, search at once
                return faces
            self._window = None
        faces = _faces(self._mesh, rgb)
        if faces:
            self._since_search = SEARCH_EVERY
            return faces
        self._since_search += 1
        if self._since_search < SEARCH_EVERY:
            return []
        self._since_search = 0
        found = self._search(rgb)
        if found is None:
            return []
        self._window = _window_about(*found, rgb.shape[1], rgb.shape[0])
        if self._window is None:
            return []
        if self._window_mesh is not None:
            self._window_mesh.close()
        self._window_mesh = self._new_mesh()  # a fresh tracker: the last window's state is stale
        faces = self._in_window(rgb)
        if faces:
            self._since_search = SEARCH_EVERY  # a face moving too fast for the window is searched for at once
        return faces

    def _in_window(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Faces tracked in the window, in the frame's normalised coordinates; the window follows the first."""
        x0, y0, side = self._window
        height, width = rgb.shape[:2]
        faces = _faces(self._window_mesh, np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side]))
        scale = np.array([side / width, side / height, side / width], np.float32)  # z is in units of x
        faces = [f * scale + np.array([x0 / width, y0 / height, 0.0], np.float32) for f in faces]
        if faces:
            # Centred on the face each frame: MediaPipe's tracker then finds it where it left it, give or take
            # one frame's motion. A face that grew or shrank a lot is searched for again (at the next frame).
            pixels = faces[0][:, :2] * [width, height]
            center, face_width = (pixels.min(0) + pixels.max(0)) / 2, float(np.ptp(pixels[:, 0]))
            if 1 / WINDOW_ZOOM < WINDOW_FACES * face_width / side < WINDOW_ZOOM:
                self._window = _window_about(center, side / WINDOW_FACES, width, height)
            else:
                self._window, self._since_search = None, SEARCH_EVERY
        return faces

    def _search(self, rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Centre (pixels) and width of the most likely face, by the full-range detector on the whole frame, else
        on overlapping tiles of it (a small face fills more of a tile); the one nearest to the face followed
        before, if any."""
        self._detector = self._detector or self._new_detector()
        height, width = rgb.shape[:2]
        last = None
        if self._last_center is not None:
            last = self._last_center * [width, height]
            if self._mirrored:
                last[0] = width - last[0]
        for x, y, w, h in [(0, 0, width, height)] + _tiles(width, height):
            found = []
            for d in self._detector.process(np.ascontiguousarray(rgb[y:y + h, x:x + w])).detections or []:
                box = d.location_data.relative_bounding_box
                center = np.array([x + (box.xmin + box.width / 2) * w, y + (box.ymin + box.height / 2) * h])
                rank = -d.score[0] if last is None else float(np.linalg.norm(center - last))
                found.append((rank, center, box.width * w))
            if found:
                _, center, face_width = min(found, key=lambda f: f[0])
                return center, face_width
        return None

    def close(self) -> None:
        for solution in (self._mesh, self._window_mesh, self._detector):
            if solution is not None:
                solution.close()


def _window_about(center: np.ndarray, face_width: float, width: int, height: int) -> tuple[int, int, int] | None:
    """A square window (x0, y0, side) WINDOW_FACES face widths across about `center`, inside the frame; None for a
    face large enough to be tracked in the whole frame."""
    side = int(round(max(WINDOW_FACES * face_width, MIN_WINDOW)))
    if side >= WHOLE_FRAME * min(width, height):
        return None
    x0 = int(np.clip(round(center[0] - side / 2), 0, width - side))
    y0 = int(np.clip(round(center[1] - side / 2), 0, height - side))
    return x0, y0, side


def _tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (x, y, w, h) half the frame's shorter side across, half a tile apart."""
    side = min(width, height) // 2
    step = max(side // 2, 1)
    xs = sorted(set(list(range(0, width - side, step)) + [width - side]))
    ys = sorted(set(list(range(0, height - side, step)) + [height - side]))
    return [(x, y, side, side) for y in ys for x in xs]


def merge_passes(face: np.ndarray | None, twin: np.ndarray | None) -> np.ndarray | None:
    """One frame of the mirror pass: the mean of the landmarks found on the frame (`face`) and on its mirror image,
    mirrored back (`twin`). MediaPipe's errors are not left-right symmetric, so the mean is steadier and less
    biased, and exactly mirror-symmetric. Where one pass found no face, the other stands alone; where the two
    followed different people, the frame's own pass wins."""
    if face is None or twin is None:
        return twin if face is None else face
    return 0.5 * (face + twin) if same_face(face, twin) else face


def same_face(face: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Whether landmarks (...,478,3) are of one face: their centres within SAME_FACE of `face`'s width. (...) bool,
    batched over leading axes."""
    centres = np.linalg.norm(face[..., :2].mean(-2) - other[..., :2].mean(-2), axis=-1)
    return centres <= SAME_FACE * np.ptp(face[..., 0], axis=-1)


def tracking_passes(mirror_pass: bool, fps: float) -> str:
    """How MediaPipe looks at the frames: 'both' (the mirror pass: every frame as it is and mirrored, twice the
    time), 'turns' (each frame once, every other one mirrored: `remove_turn_bias` then cancels most of the bias
    the mirror pass averages away, at no extra cost) where `fps` (the rate of the frames tracked) allows, else
    'one'."""
    return "both" if mirror_pass else "turns" if fps >= TURNS_MIN_FPS else "one"


def mirrored_turn(index: int, stride: int) -> bool:
    """Whether frame `index` of footage tracked on a `stride` grid is looked at mirrored when tracking in turns.
    It depends on the frame alone, so segments tracked in separate processes take the same turns."""
    return (index // max(stride, 1)) % 2 == 1


class TurnsTracker:
    """Tracking in turns: frames whose turn it is (`mirrored_turn`) mirrored, the others as they are, each view
    with a MediaPipe tracker of its own, at the cost of one tracker.

    Both views look at a square about the face found last (TURN_CROP_FACES face sizes across, at most
    TURN_SQUARE_PX): two MediaPipe graphs taking whole 1080p frames in turns ran at half their speed, and on
    squares they keep up with one. Whole frames go to a `FaceMeshTracker` that finds the face (at the start,
    after a miss, another person in the square) and follows a small one (in a window, which needs every frame):
    those frames are tracked as they are."""

    def __init__(self, max_faces: int = 1, stride: int = 1):
        self._finder = FaceMeshTracker(max_faces)
        self._views = (FaceMeshTracker(max_faces), FaceMeshTracker(max_faces, mirrored=True))
        self._stride = stride
        self._last: np.ndarray | None = None  # the face found last, when it is large enough for the square

    def track(self, frame_bgr: np.ndarray, index: int) -> tuple[np.ndarray | None, bool]:
        """The landmarks of frame `index` (None: no face), and whether they were found on its mirror image."""
        if self._last is not None:
            mirrored = mirrored_turn(index, self._stride)
            found = self._in_square(frame_bgr, self._last, self._views[mirrored])
            if found is not None and same_face(self._last, found):
                self._last = found
                return found, mirrored
        found = self._finder(frame_bgr)
        self._last = None if self._finder.windowed else found
        return found, False

    @staticmethod
    def _in_square(frame_bgr: np.ndarray, last: np.ndarray, tracker: FaceMeshTracker) -> np.ndarray | None:
        height, width = frame_bgr.shape[:2]
        pixels = last[:, :2] * [width, height]
        centre = (pixels.min(0) + pixels.max(0)) / 2
        side = int(min(TURN_CROP_FACES * np.ptp(pixels, axis=0).max(), width, height))
        x0 = int(np.clip(round(centre[0] - side / 2), 0, width - side))
        y0 = int(np.clip(round(centre[1] - side / 2), 0, height - side))
        square = frame_bgr[y0:y0 + side, x0:x0 + side]
        if side > TURN_SQUARE_PX:  # MediaPipe reads the face at 192 px: a larger square only costs copying
            square = cv2.resize(square, (TURN_SQUARE_PX, TURN_SQUARE_PX), interpolation=cv2.INTER_LINEAR)
        found = tracker(np.ascontiguousarray(square))
        if found is None:
            return None
        return found * np.array([side / width, side / height, side / width], np.float32) \
            + np.array([x0 / width, y0 / height, 0.0], np.float32)

    def reset(self) -> None:
        for tracker in (self._finder, *self._views):
            tracker.reset()
        self._last = None

    def close(self) -> None:
        for tracker in (self._finder, *self._views):
            tracker.close()


def remove_turn_bias(landmarks: np.ndarray, valid: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Landmarks (N,478,3) of consecutive frames tracked in turns (mirrored (N,) bool: the frame's turn), with the
    left-right bias between the turns taken out.

    MediaPipe's errors are not left-right symmetric: on a mirrored frame its landmarks, mirrored back, sit about
    +b from the truth where the frame's own sit about -b. The mirror pass averages both on every frame. In
    turns, each frame holds one: b is estimated on every frame as half its gap to the mean of its neighbours (the
    other turn) and averaged over TURN_KERNEL, in which the motion's own curvature cancels, then taken off each
    frame with its turn's sign. On the renders this brings head rotation error 2.24 / 3.50 / 2.07° to 1.62 /
    3.48 / 1.76° (the mirror pass: 1.84 / 3.44 / 1.71°). Frames without a face (valid False) are left as they are;
    a neighbour on another face (further than SAME_FACE widths) is not compared."""
    x = np.asarray(landmarks, np.float64)
    valid = np.asarray(valid, bool)
    sign = np.where(np.asarray(mirrored, bool), 1.0, -1.0)
    n = len(x)
    total, count = np.zeros_like(x), np.zeros(n)
    for step in (-1, 1):
        here = np.arange(max(0, -step), n - max(0, step))
        there = here + step
        usable = valid[here] & valid[there] & (sign[here] != sign[there]) & same_face(x[here], x[there])
        total[here[usable]] += x[there[usable]]
        count[here[usable]] += 1
    known = count > 0
    estimate = np.zeros_like(x)
    estimate[known] = sign[known, None, None] * (x[known] - total[known] / count[known, None, None]) / 2
    reach = len(TURN_KERNEL) // 2
    padded = np.pad(estimate, ((reach, reach), (0, 0), (0, 0)))
    weight = np.pad(known.astype(np.float64), reach)
    num = sum(k * padded[j:j + n] for j, k in enumerate(TURN_KERNEL))
    den = sum(k * weight[j:j + n] for j, k in enumerate(TURN_KERNEL))
    bias = np.where(den[:, None, None] > 0, num / np.maximum(den, 1e-12)[:, None, None], 0.0)
    out = x - sign[:, None, None] * bias
    out[~valid] = x[~valid]
    return out.astype(np.asarray(landmarks).dtype)


class MirrorPassTracker:
    """The mirror pass in one process (twice the time of a `FaceMeshTracker`): see `merge_passes`."""

    def __init__(self, max_faces: int = 1):
        self._passes = (FaceMeshTracker(max_faces), FaceMeshTracker(max_faces, mirrored=True))

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray | None:
        return merge_passes(*(tracker(frame_bgr) for tracker in self._passes))

    def track(self, frame_bgr: np.ndarray, index: int) -> tuple[np.ndarray | None, bool]:
        """As every view's tracker (see `view_tracker`): the merged landmarks, found in neither view alone."""
        return self(frame_bgr), False

    def reset(self) -> None:
        for tracker in self._passes:
            tracker.reset()

    def close(self) -> None:
        for tracker in self._passes:
            tracker.close()


def view_tracker(view: str, max_faces: int = 1, stride: int = 1) -> FaceMeshTracker | MirrorPassTracker | TurnsTracker:
    """The tracker for one way of looking at the frames: 'one', 'turns' or 'both' (see `tracking_passes`), or
    'mirrored' (the mirrored frames alone: the mirror pass's second process). Each has `track(frame_bgr, index)`,
    which gives the landmarks (None: no face) and whether they were found on the mirror image, `reset()`, which
    makes it as new for other footage, and `close()`."""
    if view == "turns":
        return TurnsTracker(max_faces, stride)
    if view == "both":
        return MirrorPassTracker(max_faces)
    if view in ("one", "mirrored"):
        return FaceMeshTracker(max_faces, mirrored=view == "mirrored")
    raise ValueError(f"no such view of the frames: {view!r}")


def _faces(mesh, rgb: np.ndarray) -> list[np.ndarray]:
    result = mesh.process(rgb)
    return [np.array([(p.x, p.y, p.z) for p in f.landmark], np.float32) for f in result.multi_face_landmarks or []]


def detect_video(path: str | os.PathLike, start: int = 0, end: int | None = None, stride: int = 1,
                 max_faces: int = 1, on_frame: Callable[[int], None] | None = None,
                 mirror_pass: bool = False) -> LandmarkTrack:
    """Landmarks for every selected frame of a video, tracked as a capture tracks them (see
    `core.video.read_frames` for the range, `tracking_passes` for how MediaPipe looks at the frames)."""
    from .video import probe, read_timed_frames

    info = probe(path)
    warnings: list[str] = []
    passes = tracking_passes(mirror_pass, info.fps / max(stride, 1))
    tracker = view_tracker(passes, max_faces, stride)
    indices, seconds, points, valid, turns = [], [], [], [], []
    size = (info.width, info.height)
    try:
        for index, timestamp, frame in read_timed_frames(path, start, end, stride, warnings):
            lms, mirrored = tracker.track(frame, index)
            size = (frame.shape[1], frame.shape[0])
            turns.append(mirrored)
            indices.append(index)
            seconds.append(timestamp)
            valid.append(lms is not None)
            points.append(lms if lms is not None else np.zeros((N_LANDMARKS, 3), np.float32))
            if on_frame:
                on_frame(len(indices))
    finally:
        tracker.close()
    landmarks = np.asarray(points, np.float32).reshape(-1, N_LANDMARKS, 3)
    if passes == "turns":
        landmarks = remove_turn_bias(landmarks, np.asarray(valid, bool), np.asarray(turns, bool))
    return LandmarkTrack(np.asarray(indices, np.int64), landmarks, np.asarray(valid, bool), info.fps, size, warnings,
                         np.asarray(seconds, np.float64))
