"""MediaPipe face mesh landmarks (478 points with irises) over a video, in tracking mode."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

N_LANDMARKS = 478


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
    own tracker keeps the face it locked on to until it loses it.
    """

    def __init__(self, max_faces: int = 1, min_confidence: float = 0.5):
        import mediapipe as mp  # heavy import, only where landmarks are needed

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces,
                                                     refine_landmarks=True, min_detection_confidence=min_confidence,
                                                     min_tracking_confidence=min_confidence)
        self._last_center: np.ndarray | None = None

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray | None:
        """(478,3) landmarks of the followed face in this frame, or None when there is none."""
        result = self._mesh.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        faces = result.multi_face_landmarks or []
        if not faces:
            return None
        arrays = [np.array([(p.x, p.y, p.z) for p in f.landmark], np.float32) for f in faces]
        if len(arrays) > 1 and self._last_center is not None:
            arrays.sort(key=lambda a: float(np.linalg.norm(a[:, :2].mean(0) - self._last_center)))
        self._last_center = arrays[0][:, :2].mean(0)
        return arrays[0]

    def close(self) -> None:
        self._mesh.close()


def detect_video(path: str | os.PathLike, start: int = 0, end: int | None = None, stride: int = 1,
                 max_faces: int = 1, on_frame: Callable[[int], None] | None = None) -> LandmarkTrack:
    """Landmarks for every selected frame of a video (see `core.video.read_frames` for the range)."""
    from .video import probe, read_frames

    info = probe(path)
    warnings: list[str] = []
    tracker = FaceMeshTracker(max_faces)
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
