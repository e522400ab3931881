"""Footage decoding with OpenCV: true frame rate, rotation metadata, frame range and stride."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import FootageError


@dataclass
class FootageInfo:
    path: str
    fps: float
    width: int          # after rotation
    height: int
    n_frames: int       # as the container reports it (may be approximate)
    rotation: int       # degrees of rotation metadata, already applied to decoded frames


def _open(path: str | os.PathLike) -> cv2.VideoCapture:
    path = Path(path)
    if not path.exists():
        raise FootageError(f"{path}: no such video file. Check the path.")
    if path.is_dir():
        raise FootageError(f"{path}: is a folder, not a video file.")
    if path.stat().st_size == 0:
        raise FootageError(f"{path}: the file is empty. Export or copy the video again.")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FootageError(f"{path}: OpenCV cannot read this file as video. Convert it to H.264 MP4 "
                           "(for example with ffmpeg) and try again.")
    # OpenCV applies the rotation metadata of phone footage itself when asked.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def probe(path: str | os.PathLike) -> FootageInfo:
    """Read the container's frame rate, size and rotation; fails clearly when no frame decodes."""
    cap = _open(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise FootageError(f"{path}: holds no decodable frame (empty or damaged video).")
        fps = cap.get(cv2.CAP_PROP_FPS)
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)
        return FootageInfo(str(path), float(fps) if fps and fps > 0 else 25.0, frame.shape[1], frame.shape[0],
                           int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), rotation)
    finally:
        cap.release()


def frame_numbers(n_frames: int, start: int = 0, end: int | None = None, stride: int = 1) -> range:
    """The source frame numbers a range selects (end exclusive, clipped to the clip)."""
    if start < 0 or stride < 1 or (end is not None and end <= start):
        raise FootageError(f"invalid frame range start={start} end={end} stride={stride}: need 0 <= start < end "
                           "and stride >= 1")
    stop = n_frames if end is None else min(end, n_frames) if n_frames > 0 else end
    return range(start, stop, stride)


def read_frames(path: str | os.PathLike, start: int = 0, end: int | None = None, stride: int = 1,
                warnings: list[str] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame number, BGR uint8 image) for the selected frames.

    A file that ends early (truncated or damaged) stops the iteration after the last good frame; a note
    goes to `warnings` so callers can say so while keeping every frame decoded before the damage.
    """
    frame_numbers(0, start, end, stride)  # validates the range
    cap = _open(path)
    try:
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        index = 0
        while end is None or index < end:
            wanted = index >= start and (index - start) % stride == 0
            ok = cap.grab()
            if not ok:
                break
            if wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                yield index, frame
            index += 1
        target = expected if end is None else min(end, expected)
        if warnings is not None and expected > 0 and index < target:
            warnings.append(f"{path}: the video ended after frame {index - 1}, but the file announces "
                            f"{expected} frames; it may be truncated. Frames decoded before the damage are kept.")
        if index <= start and index > 0:
            raise FootageError(f"{path}: the clip has {index} frames, the range starts at frame {start}.")
        if index == 0:
            raise FootageError(f"{path}: holds no decodable frame (empty or damaged video).")
    finally:
        cap.release()
