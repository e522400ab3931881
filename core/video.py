"""Footage decoding with OpenCV: true frame rate, rotation metadata, frame range and stride. Footage is a video
file or an image sequence: a folder of frames, or one frame of a numbered series (shot_0001.png stands for every
shot_NNNN.png beside it), read in frame-number order."""
from __future__ import annotations

import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TypeVar

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
    rate_known: bool    # False where the footage holds no frame rate (image sequences): DEFAULT_FPS stands in


DEFAULT_FPS = 25.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
UNREAD_SUFFIXES = (".exr", ".dpx", ".hdr")  # linear or log film frames: MediaPipe wants display-referred 8-bit
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")  # prefix, frame number, the rest (no digits): shot_ 0001 .png


def image_sequence(path: Path) -> list[Path] | None:
    """The frame files of the image sequence `path` names, in frame-number order, or None when it names a file
    that is not an image (a video). A folder's images are all frames; an image whose name holds a number stands
    for every image beside it that differs only in that number."""
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise FootageError(f"{path}: is a folder with no images ({', '.join(IMAGE_SUFFIXES)}) in it; choose "
                               "a video file, or a folder of frames.")
        return sorted(files, key=_frame_number)
    if path.suffix.lower() in UNREAD_SUFFIXES:
        raise FootageError(f"{path}: {path.suffix} frames are not read; convert the sequence to PNG, TIFF or "
                           "JPEG with the grade you review it in (for example with ffmpeg or Blender) and try again.")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    numbered = _NUMBERED.match(path.name)
    if numbered is None:
        return [path]
    prefix, _, rest = numbered.groups()
    series = re.compile(re.escape(prefix) + r"\d+" + re.escape(rest) + "$")
    return sorted((p for p in path.parent.iterdir() if series.match(p.name)), key=_frame_number)


def _frame_number(path: Path) -> tuple[int, str]:
    numbered = _NUMBERED.match(path.name)
    return (int(numbered.group(2)) if numbered else -1), path.name


class _ImageSequence:
    """What `probe` and `read_frames` use of cv2.VideoCapture, over the files of an image sequence."""

    def __init__(self, files: list[Path]):
        self.files, self.next = files, 0
        self.size: tuple[int, ...] | None = None  # (height, width) of the first frame; every frame must match

    def grab(self) -> bool:
        ok = self.next < len(self.files)
        self.next += ok
        return ok

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        path = self.files[self.next - 1]
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR, whatever the depth
        if frame is not None:
            self.size = self.size or frame.shape[:2]
            if frame.shape[:2] != self.size:
                raise FootageError(f"{path}: is {frame.shape[1]}x{frame.shape[0]}, but the sequence's frames are "
                                   f"{self.size[1]}x{self.size[0]}; every frame of a sequence must be the same size.")
        return frame is not None, frame

    def read(self) -> tuple[bool, np.ndarray | None]:
        return self.retrieve() if self.grab() else (False, None)

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return float("nan")  # frames carry no timestamps
        return float(len(self.files)) if prop == cv2.CAP_PROP_FRAME_COUNT else 0.0  # no rate, no rotation

    def release(self) -> None:
        pass


def _open(path: str | os.PathLike) -> cv2.VideoCapture | _ImageSequence:
    path = Path(path)
    if not path.exists():
        raise FootageError(f"{path}: no such video file or folder of frames. Check the path.")
    frames = image_sequence(path)
    if frames is not None:
        return _ImageSequence(frames)
    if path.stat().st_size == 0:
        raise FootageError(f"{path}: the file is empty. Export or copy the video again.")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FootageError(f"{path}: OpenCV cannot read this file as video. Convert it to H.264 MP4 "
                           "(for example with ffmpeg) and try again.")
    # OpenCV applies the rotation metadata of phone footage itself when asked.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def probe(path: str | os.PathLike, decode: bool = True) -> FootageInfo:
    """Read the container's frame rate, size and rotation; fails clearly when no frame decodes. With `decode`
    False, the size is the container's (OpenCV reports it after rotation) and no frame is decoded: a first
    decode starts the decoder's threads, tens of milliseconds of CPU for 1080p, which a reader that decodes
    anyway (and fails as clearly) need not pay twice. Footage that gives no size is decoded all the same."""
    cap = _open(path)
    try:
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if decode or width <= 0 or height <= 0:
            ok, frame = cap.read()
            if not ok or frame is None:
                raise FootageError(f"{path}: holds no decodable frame (empty or damaged video).")
            height, width = frame.shape[:2]
        fps = cap.get(cv2.CAP_PROP_FPS)
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)
        known = bool(fps and fps > 0)
        return FootageInfo(str(path), float(fps) if known else DEFAULT_FPS, width, height,
                           int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), rotation, known)
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
    for index, _, frame in read_timed_frames(path, start, end, stride, warnings):
        yield index, frame


def read_timed_frames(path: str | os.PathLike, start: int = 0, end: int | None = None, stride: int = 1,
                      warnings: list[str] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """As `read_frames`, with each frame's timestamp: (frame number, seconds after the clip's first frame as the
    container stamps it, or NaN where the footage has no timestamps, BGR image). See `frame_times`."""
    frame_numbers(0, start, end, stride)  # validates the range
    cap = _open(path)
    try:
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        index = 0
        first_ms = float("nan")
        grabbed = False  # the capture already holds frame `index` (after a seek)
        while end is None or index < end:
            wanted = index >= start and (index - start) % stride == 0
            if not grabbed and not cap.grab():
                break
            grabbed = False
            if index == 0:
                first_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                moved = _seek(path, start, first_ms) if start > 1 and isinstance(cap, cv2.VideoCapture) else None
                if moved is not None:  # a later segment: no need to decode every frame before it
                    cap.release()
                    cap, index, grabbed = moved, start, True
                    continue
            if wanted:
                seconds = (cap.get(cv2.CAP_PROP_POS_MSEC) - first_ms) / 1000.0
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                yield index, seconds, frame
            index += 1
        target = expected if end is None else min(end, expected)
        if warnings is not None and expected > 0 and index < target:
            warnings.append(f"{path}: the footage ended after frame {index - 1}, but it announces {expected} "
                            "frames; it may be truncated or damaged. Frames decoded before the damage are kept.")
        if index <= start and index > 0:
            raise FootageError(f"{path}: the clip has {index} frames, the range starts at frame {start}.")
        if index == 0:
            raise FootageError(f"{path}: holds no decodable frame (empty or damaged video).")
    finally:
        cap.release()


T = TypeVar("T")


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items` (decoded frames), produced in a thread of their own up to `depth` ahead of the consumer: OpenCV
    decodes without Python's lock, so the next frames decode while the consumer runs MediaPipe on this one. An
    error is raised to the consumer in its place; closing this iterator stops the thread and closes `items`."""
    ahead: queue.Queue = queue.Queue(maxsize=max(1, depth))  # 0 would make it unbounded
    stop = threading.Event()

    def offer(message: tuple) -> bool:
        while not stop.is_set():
            try:
                ahead.put(message, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((True, item)):
                    return
            offer((False, None))
        except Exception as err:  # noqa: BLE001 - handed to the consumer, which raises it
            offer((False, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, daemon=True, name="kinesics-decode")
    thread.start()
    try:
        while True:
            more, item = ahead.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


TIMESTAMP_TOLERANCE_MS = 0.5  # a frame's timestamp as OpenCV and as the container's packets give it


def presentation_ms(path: str | os.PathLike) -> np.ndarray | None:
    """(N,) every frame's timestamp in milliseconds after the stream's start, in presentation order, as OpenCV's
    CAP_PROP_POS_MSEC gives it, read from the video's packets alone (PyAV demuxes without decoding: a fraction of
    a second for a long clip). None where PyAV is missing or cannot read the file, or a frame has no timestamp."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts = [packet.pts for packet in container.demux(stream) if packet.size > 0]
            start, base = stream.start_time or 0, float(stream.time_base)
    except (av.FFmpegError, IndexError):
        return None
    if not pts or any(p is None for p in pts):
        return None
    return (np.sort(np.asarray(pts, np.float64)) - start) * base * 1000.0


def _seek(path: str | os.PathLike, frame: int, first_ms: float) -> cv2.VideoCapture | None:
    """A capture of the video at `path` that has just grabbed frame `frame` (presentation order, as counted by
    grabbing every frame from the first), reached by seeking; None where that cannot be verified against the
    container's timestamps (see `presentation_ms`). OpenCV numbers frames by timestamp times the average frame
    rate: exact for constant-rate footage, early or late for variable-rate footage, where this grabs forward from
    an earlier seek."""
    times = presentation_ms(path)
    if times is None or frame >= len(times) or not abs(times[0] - first_ms) <= TIMESTAMP_TOLERANCE_MS:
        return None
    cap = _open(path)
    for lead in (0, 8, 64, 512):  # frames to seek short of `frame` where the last seek overshot it
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(frame - lead, 0))
        while cap.grab():
            ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            landed = int(np.argmin(np.abs(times - ms)))
            if not abs(times[landed] - ms) <= TIMESTAMP_TOLERANCE_MS or landed > frame:
                break
            if landed == frame:
                return cap
    cap.release()
    return None


SNAP = 0.02  # of a frame: timestamps this close to frame_index / fps are that, exactly (constant-rate footage)
CONTAINER_ROUNDING_S = 0.0011  # Matroska and many MP4s round timestamps to the millisecond: still constant-rate


def frame_times(frame_index: np.ndarray, seconds: np.ndarray, fps: float, after: float = float("-inf")
                ) -> np.ndarray:
    """(T,) seconds after the footage's first frame at which each frame is shown.

    Constant-rate footage: frame_index / fps, exactly. Variable-frame-rate footage (phones lower the rate in
    low light): the container's timestamps `seconds` (T,), where they depart from that by more than SNAP of a
    frame (and more than a container's rounding to the millisecond), so that keys stay in step with the
    footage's sound. Timestamps that are missing (NaN) or do not
    come after the frame before (`after`: the time of the frame before the first) are not trusted: such a frame
    is placed at frame_index / fps, or one frame after the frame before where that would not come after it.
    """
    nominal = np.asarray(frame_index, np.float64) / fps
    times = nominal.copy()
    last = after
    tolerance = max(SNAP / fps, CONTAINER_ROUNDING_S)
    for k, (n, s) in enumerate(zip(nominal, np.asarray(seconds, np.float64))):
        trusted = np.isfinite(s) and s > last
        if trusted and abs(s - n) > tolerance:
            times[k] = s
        elif not trusted and n <= last:
            times[k] = last + 1.0 / fps
        last = times[k]
    return times
