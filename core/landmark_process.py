"""Decoding and MediaPipe in a child process of their own.

MediaPipe holds Python's GIL while it runs a frame, so in a thread it and the fit would take turns instead
of using both cores. A persistent child process (started once per engine, kept warm between captures)
decodes and tracks; landmarks, a few kilobytes a frame, come back over a pipe. The child is spawned, so a
script that captures must guard its entry point with `if __name__ == "__main__":`, as multiprocessing asks.
"""
from __future__ import annotations

import multiprocessing
import queue
import threading
from contextlib import closing
from typing import Iterator

import numpy as np

from .errors import KinesicsError

DECODE_AHEAD = 3  # frames decoded ahead of MediaPipe, at most (a 1080p frame is 6 MB)
DECODE_AHEAD_BYTES = 64 << 20  # and at most this much of them per process (an 8K frame is 100 MB)

# frame number, landmarks (None: no face), (width, height), timestamp in seconds
Item = tuple[int, np.ndarray | None, tuple[int, int], float]
# tracking in turns adds whether the landmarks were found on the mirror image (see `turns_unbiased`)
TurnItem = tuple[int, np.ndarray | None, tuple[int, int], float, bool]


def decode_ahead(width: int, height: int) -> int:
    """How many frames of this size (BGR, 8 bits) to decode ahead: DECODE_AHEAD within DECODE_AHEAD_BYTES, and
    at least 1."""
    return max(1, min(DECODE_AHEAD, DECODE_AHEAD_BYTES // max(3 * width * height, 1)))


def _serve(conn, stop) -> None:
    """The child's loop: one job at a time, until a None job or the pipe closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it cancels the job)
    from .landmarks import FaceMeshTracker, view_tracker
    from .video import read_ahead, read_timed_frames

    FaceMeshTracker().close()  # MediaPipe's first graph loads its models (about 0.4 s): now, not in the first job
    tracker, tracked = None, None  # the last job's tracker and its settings: reset for a next job with the same
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        video, start, end, stride, max_faces, view, ahead = job
        warnings: list[str] = []
        outbox: queue.SimpleQueue = queue.SimpleQueue()
        sender = threading.Thread(target=_send_all, args=(conn, outbox, stop), daemon=True)
        sender.start()
        settings = (view, max_faces, stride)
        try:
            if tracker is not None and tracked == settings:
                tracker.reset()
            else:
                if tracker is not None:
                    tracker.close()
                tracker = None  # until the new one stands: one that fails to start leaves nothing to close
                tracker, tracked = view_tracker(view, max_faces, stride), settings
            with closing(read_ahead(read_timed_frames(video, start, end, stride, warnings), ahead)) as frames:
                for index, seconds, frame in frames:
                    if stop.is_set():
                        break
                    size = (frame.shape[1], frame.shape[0])
                    found, mirrored = tracker.track(frame, index)
                    outbox.put(("frame", index, found, size, seconds, mirrored))
            outbox.put(("end", warnings))
        except Exception as err:  # reported to the parent, which raises it there
            reported = err if isinstance(err, KinesicsError) else KinesicsError(f"{type(err).__name__}: {err}")
            outbox.put(("error", reported))
            if tracker is not None:  # a tracker that failed is not trusted with the next job
                tracker.close()
                tracker = None
        finally:
            outbox.put(None)
            sender.join()


def _send_all(conn, outbox: queue.SimpleQueue, stop) -> None:
    """Send queued messages until None. A pipe holds only a dozen frames of landmarks: while the parent is busy
    (solving the identity), a direct send would block the tracker; the queue lets it run on. A parent that is
    gone stops the job, as a failed direct send did."""
    while (message := outbox.get()) is not None:
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            stop.set()
            return


class LandmarkProcess:
    """A warm child process that turns a frame range of a video into landmarks."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork: the parent runs torch threads
        self._conn, child = ctx.Pipe()
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_serve, args=(child, self._stop), daemon=True, name="kinesics-landmarks")
        self._process.start()
        child.close()
        self._lock = threading.Lock()

    def frames(self, video: str, start: int, end: int | None, stride: int, max_faces: int, view: str,
               warnings: list[str], cancel: threading.Event | None = None, ahead: int = DECODE_AHEAD
               ) -> Iterator[Item | BaseException]:
        """Yield (frame number, landmarks or None, (width, height), timestamp in seconds; see
        `core.video.read_timed_frames`) per frame; an error is yielded, not raised, so the caller can keep what
        came before. Returns early once `cancel` is set. `view`: 'one', 'mirrored' or 'turns' (see
        `core.landmarks.view_tracker`; in turns each item also says whether it was found mirrored, and
        `turns_unbiased` takes the bias out). `ahead`: frames decoded ahead of
        MediaPipe (see `decode_ahead`). The job starts at once, not on the first next(), so that several processes
        work side by side."""
        results = self._results((video, start, end, stride, max_faces, view, ahead), warnings, cancel,
                                turns=view == "turns")
        next(results)  # sends the job; from here on, closing the iterator stops it and frees the process
        return results

    def _results(self, job: tuple, warnings: list[str], cancel: threading.Event | None, turns: bool
                 ) -> Iterator[Item | BaseException | None]:
        error: BaseException | None = None
        with self._lock:
            self._stop.clear()
            self._conn.send(job)
            finished = False
            try:
                yield None
                while True:
                    if cancel is not None and cancel.is_set():
                        return
                    if not self._conn.poll(0.05):
                        if not self._process.is_alive():
                            finished = True
                            error = self._stopped()
                            break
                        continue
                    try:
                        message = self._conn.recv()
                    except (EOFError, OSError):
                        finished = True
                        error = self._stopped()
                        break
                    if message[0] == "frame":  # whether found mirrored matters only to tracking in turns
                        yield message[1:] if turns else message[1:5]
                    elif message[0] == "end":
                        finished = True
                        warnings.extend(message[1])
                        return
                    else:
                        finished = True
                        error = message[1]
                        break
            finally:
                if not finished:
                    self._stop.set()
                    self._drain()
        # The process is free before the error is handed out: a caller that keeps the error (and with it this
        # generator, through its traceback) must not keep the next capture waiting.
        if error is not None:
            yield error

    def _stopped(self) -> KinesicsError:
        return KinesicsError(f"the landmark process stopped (exit code {self._process.exitcode})")

    def _drain(self) -> None:
        """Discard what the child still sends for a stopped job, up to its end marker."""
        try:
            while self._process.is_alive():
                if self._conn.poll(0.1) and self._conn.recv()[0] in ("end", "error"):
                    return
        except (EOFError, OSError):
            return

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=2)
            if self._process.is_alive():
                self._process.kill()
        self._conn.close()


def merged_passes(own: Iterator[Item | BaseException], mirrored: Iterator[Item | BaseException]
                  ) -> Iterator[Item | BaseException]:
    """The mirror pass from two processes' streams of the same frames, one tracking them mirrored: each frame's
    landmarks merged by `core.landmarks.merge_passes`; the first error of either stream ends it."""
    from .landmarks import merge_passes

    try:
        for item, twin in zip(own, mirrored):
            for part in (item, twin):
                if isinstance(part, BaseException):
                    yield part
                    return
            if item[0] != twin[0]:
                yield KinesicsError(f"the mirror pass fell out of step with the footage (frame {twin[0]} against "
                                    f"{item[0]}); capture again without it")
                return
            yield item[0], merge_passes(item[1], twin[1]), item[2], item[3]
    finally:
        own.close()
        mirrored.close()


def turns_unbiased(items: Iterator[TurnItem | BaseException], step: int = 8) -> Iterator[Item | BaseException]:
    """The stream of frames tracked in turns (`core.landmarks.TurnsTracker`) with the bias between the turns taken
    out of each (`core.landmarks.remove_turn_bias`) as soon as the frames it is compared with have come: `step`
    frames at a time (one call per frame cost more than the rest of the fit's bookkeeping). An error passes on
    after the frames before it."""
    from .landmarks import N_LANDMARKS, TURN_KERNEL, remove_turn_bias

    reach = len(TURN_KERNEL) // 2 + 1  # a frame's bias is read from frames this far on either side
    window: list[TurnItem] = []        # the frames still to go out, and up to `reach` before them
    done = 0                           # how many of the window's frames have gone out

    def unbiased(upto: int) -> Iterator[Item]:
        if upto <= done:
            return
        valid = np.array([w[1] is not None for w in window])
        points = np.stack([w[1] if w[1] is not None else np.zeros((N_LANDMARKS, 3), np.float32) for w in window])
        fixed = remove_turn_bias(points, valid, np.array([w[4] for w in window]))
        for k in range(done, upto):
            index, found, size, seconds, _ = window[k]
            yield index, None if found is None else fixed[k], size, seconds

    try:
        for item in items:
            if isinstance(item, BaseException):
                yield from unbiased(len(window))
                yield item
                return
            window.append(item)
            if len(window) - done >= step + reach:
                yield from unbiased(done + step)
                done += step
                del window[:done - reach]
                done = reach
        yield from unbiased(len(window))
    finally:
        items.close()


def chained(segments: list[Iterator[Item | BaseException]]) -> Iterator[Item | BaseException]:
    """The streams of consecutive segments of one clip, tracked side by side, as one stream in frame order; an
    error in a segment ends it (the frames before are kept), and every segment's job is stopped when it ends."""
    try:
        for segment in segments:
            for item in segment:
                yield item
                if isinstance(item, BaseException):
                    return
    finally:
        for segment in segments:
            segment.close()
