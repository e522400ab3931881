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
    """MediaPipe face mesh in tracking mode that keeps following the same person.

    With `max_faces` > 1, the face nearest to the last one followed is kept; with 1 (fastest), MediaPipe's
    own tracker keeps the face it locked on to until it loses it. `mirrored` tracks the mirror image of each
    frame and returns its landmarks mirrored back onto the frame: the second half of the mirror pass
    (`merge_passes`).
    """

    def __init__(self, max_faces: int = 1, min_confidence: float = 0.5, mirrored: bool = False):
        import mediapipe as mp  # heavy import, only where landmarks are needed

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces,
                                                     refine_landmarks=True, min_detection_confidence=min_confidence,
                                                     min_tracking_confidence=min_confidence)
        self._mirrored = mirrored
        self._last_center: np.ndarray | None = None

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray | None:
        """(478,3) landmarks of the followed face in this frame, or None when there is none."""
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        faces = _faces(self._mesh, cv2.flip(rgb, 1) if self._mirrored else rgb)
        if not faces:
            return None
        if self._mirrored:
            faces = [mirror_landmarks(f) for f in faces]
        if len(faces) > 1 and self._last_center is not None:
            faces.sort(key=lambda a: float(np.linalg.norm(a[:, :2].mean(0) - self._last_center)))
        self._last_center = faces[0][:, :2].mean(0)
        return faces[0]

    def close(self) -> None:
        self._mesh.close()


def merge_passes(face: np.ndarray | None, twin: np.ndarray | None) -> np.ndarray | None:
    """One frame of the mirror pass: the mean of the landmarks found on the frame (`face`) and on its mirror image,
    mirrored back (`twin`). MediaPipe's errors are not left-right symmetric, so the mean is steadier and less
    biased, and exactly mirror-symmetric. Where one pass found no face, the other stands alone; where the two
    followed different people, the frame's own pass wins."""
    if face is None or twin is None:
        return twin if face is None else face
    width = np.ptp(face[:, 0])
    if np.linalg.norm(face[:, :2].mean(0) - twin[:, :2].mean(0)) > SAME_FACE * width:
        return face
    return 0.5 * (face + twin)


class MirrorPassTracker:
    """The mirror pass in one process (twice the time of a `FaceMeshTracker`): see `merge_passes`."""

    def __init__(self, max_faces: int = 1):
        self._passes = (FaceMeshTracker(max_faces), FaceMeshTracker(max_faces, mirrored=True))

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray | None:
        return merge_passes(*(tracker(frame_bgr) for tracker in self._passes))

    def close(self) -> None:
        for tracker in self._passes:
            tracker.close()


def _faces(mesh, rgb: np.ndarray) -> list[np.ndarray]:
    result = mesh.process(rgb)
    return [np.array([(p.x, p.y, p.z) for p in f.landmark], np.float32) for f in result.multi_face_landmarks or []]


def detect_video(path: str | os.PathLike, start: int = 0, end: int | None = None, stride: int = 1,
                 max_faces: int = 1, on_frame: Callable[[int], None] | None = None,
                 mirror_pass: bool = False) -> LandmarkTrack:
    """Landmarks for every selected frame of a video (see `core.video.read_frames` for the range and
    `merge_passes` for the mirror pass)."""
    from .video import probe, read_timed_frames

    info = probe(path)
    warnings: list[str] = []
    tracker = MirrorPassTracker(max_faces) if mirror_pass else FaceMeshTracker(max_faces)
    indices, seconds, points, valid = [], [], [], []
    size = (info.width, info.height)
    try:
        for index, timestamp, frame in read_timed_frames(path, start, end, stride, warnings):
            lms, size = tracker(frame), (frame.shape[1], frame.shape[0])
            indices.append(index)
            seconds.append(timestamp)
            valid.append(lms is not None)
            points.append(lms if lms is not None else np.zeros((N_LANDMARKS, 3), np.float32))
            if on_frame:
                on_frame(len(indices))
    finally:
        tracker.close()
    return LandmarkTrack(np.asarray(indices, np.int64), np.asarray(points, np.float32).reshape(-1, N_LANDMARKS, 3),
                         np.asarray(valid, bool), info.fps, size, warnings, np.asarray(seconds, np.float64))
