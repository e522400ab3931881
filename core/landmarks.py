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
    height, z in MediaPipe's relative depth units; valid (T,) False where no face was found (zeros there).
    """

    frame_index: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    fps: float
    image_size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)

    def pixels(self) -> np.ndarray:
        """(T,478,2) landmark positions in pixels."""
        return self.landmarks[:, :, :2] * np.asarray(self.image_size, np.float64)


class FaceMeshTracker:
    """MediaPipe face mesh in tracking mode that keeps following the same person.

    With `max_faces` > 1, the face nearest to the last one followed is kept; with 1 (fastest), MediaPipe's
    own tracker keeps the face it locked on to until it loses it. With `mirror_pass`, a second tracker follows
    the mirrored footage and each frame's landmarks are the mean of the two (twice the time): MediaPipe's errors
    are not symmetric, so the mean is steadier and less biased, and the result is exactly mirror-symmetric.
    """

    def __init__(self, max_faces: int = 1, min_confidence: float = 0.5, mirror_pass: bool = False):
        import mediapipe as mp  # heavy import, only where landmarks are needed

        def face_mesh():
            return mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces,
                                                   refine_landmarks=True, min_detection_confidence=min_confidence,
                                                   min_tracking_confidence=min_confidence)

        self._mesh = face_mesh()
        self._mirror_mesh = face_mesh() if mirror_pass else None
        self._last_center: np.ndarray | None = None

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray | None:
        """(478,3) landmarks of the followed face in this frame, or None when there is none."""
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        faces = _faces(self._mesh, rgb)
        if not faces:
            return None
        if len(faces) > 1 and self._last_center is not None:
            faces.sort(key=lambda a: _distance(a, self._last_center))
        face = faces[0]
        self._last_center = face[:, :2].mean(0)
        if self._mirror_mesh is not None:
            twins = [mirror_landmarks(f) for f in _faces(self._mirror_mesh, cv2.flip(rgb, 1))]
            width = np.ptp(face[:, 0])
            twins = [t for t in twins if _distance(t, self._last_center) < SAME_FACE * width]
            if twins:  # the mirrored tracker may have lost the face, or follow someone else: then keep one pass
                face = 0.5 * (face + min(twins, key=lambda t: _distance(t, self._last_center)))
        return face

    def close(self) -> None:
        self._mesh.close()
        if self._mirror_mesh is not None:
            self._mirror_mesh.close()


def _faces(mesh, rgb: np.ndarray) -> list[np.ndarray]:
    result = mesh.process(rgb)
    return [np.array([(p.x, p.y, p.z) for p in f.landmark], np.float32) for f in result.multi_face_landmarks or []]


def _distance(face: np.ndarray, center: np.ndarray) -> float:
    return float(np.linalg.norm(face[:, :2].mean(0) - center))


def detect_video(path: str | os.PathLike, start: int = 0, end: int | None = None, stride: int = 1,
                 max_faces: int = 1, on_frame: Callable[[int], None] | None = None,
                 mirror_pass: bool = False) -> LandmarkTrack:
    """Landmarks for every selected frame of a video (see `core.video.read_frames` for the range and
    `FaceMeshTracker` for the mirror pass)."""
    from .video import probe, read_frames

    info = probe(path)
    warnings: list[str] = []
    tracker = FaceMeshTracker(max_faces, mirror_pass=mirror_pass)
    indices, points, valid = [], [], []
    size = (info.width, info.height)
    try:
        for index, frame in read_frames(path, start, end, stride, warnings):
            lms, size = tracker(frame), (frame.shape[1], frame.shape[0])
            indices.append(index)
            valid.append(lms is not None)
            points.append(lms if lms is not None else np.zeros((N_LANDMARKS, 3), np.float32))
            if on_frame:
                on_frame(len(indices))
    finally:
        tracker.close()
    return LandmarkTrack(np.asarray(indices, np.int64), np.asarray(points, np.float32).reshape(-1, N_LANDMARKS, 3),
                         np.asarray(valid, bool), info.fps, size, warnings)
