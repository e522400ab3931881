"""Capture jobs inside the worker: what a client may submit, and one queue per device that runs them in turn.

Each device has a runner thread that keeps its capture engines warm (loaded once per model, least recently
used evicted) and streams every job's results to the job's `emit` callback as the engine finalises them.
"""
from __future__ import annotations

import collections
import inspect
import os
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from core.capture_file import OPTIONAL_PER_FRAME, PER_FRAME, SETTLED_AT_END
from core.capture_file import load as load_capture
from core.errors import CaptureCancelled, KinesicsError

from .errors import BridgeError

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
_ENGINE_ARGUMENTS = frozenset({"video", "source", "start", "end", "stride", "on_header", "on_chunk", "on_progress",
                               "cancel"})
# model, device, on_prepare -> an engine with run() and close(), as core.engine.CaptureEngine
EngineFactory = Callable[[str | None, str, Callable[[float, str], None]], object]


class BadRequest(BridgeError):
    code = "bad_request"


class ShuttingDown(BridgeError):
    code = "shutting_down"

    def __init__(self):
        super().__init__("The worker is shutting down and takes no more jobs; start it again.")


@dataclass(frozen=True)
class JobSpec:
    video: str | None  # None: a refit, or only loading the model (a "load" request) so later captures start warm
    model: str | None = None
    start: int = 0
    end: int | None = None
    stride: int = 1
    device: str = "cpu"
    options: dict = field(default_factory=dict)  # further keyword arguments of CaptureEngine.run (focal_px, ...)
    refit: str | None = None  # a capture file whose landmarks are fitted again (CaptureEngine.refit), no video

    @classmethod
    def from_message(cls, msg: dict) -> "JobSpec":
        """The job a submit, refit or load message asks for; BadRequest naming the first field that is wrong."""
        refit = msg.get("capture") if msg["type"] == "refit" else None
        if msg["type"] == "refit" and (not isinstance(refit, str) or not refit):
            raise BadRequest("the refit names no capture: give the path of a capture file (.npz)")
        video, model = (msg.get("video") if msg["type"] == "submit" else None), msg.get("model")
        if msg["type"] == "submit" and (not isinstance(video, str) or not video):
            raise BadRequest("the job names no video: give the path of a video file")
        if model is not None and not isinstance(model, str):
            raise BadRequest("'model' must be the path of a head-model file, or null for the built-in model")
        start, end, stride = msg.get("start", 0), msg.get("end"), msg.get("stride", 1)
        if not _is_int(start) or start < 0:
            raise BadRequest(f"'start' must be a frame number of 0 or more, not {start!r}")
        if end is not None and (not _is_int(end) or end <= start):
            raise BadRequest(f"'end' must be a frame number after 'start' ({start}), or null for the last frame")
        if not _is_int(stride) or stride < 1:
            raise BadRequest(f"'stride' must be 1 or more, not {stride!r}")
        device = msg.get("device", "cpu")
        if not isinstance(device, str) or not _DEVICE.match(device):
            raise BadRequest(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'")
        options = msg.get("options") or {}
        if not isinstance(options, dict) or _ENGINE_ARGUMENTS & options.keys():
            raise BadRequest(f"'options' must be an object of capture settings other than {sorted(_ENGINE_ARGUMENTS)}")
        # One warm engine per model file, however its path was spelt.
        model = os.path.realpath(model) if model else None
        return cls(video, model, start, end, stride, "cuda:0" if device == "cuda" else device, options, refit)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Job:
    """One submitted capture: its state, its cancel flag, and the stream of events it sends to its client."""

    def __init__(self, job_id: int, spec: JobSpec, emit: Callable[[dict], None]):
        self.id, self.spec, self._emit = job_id, spec, emit
        self.cancel = threading.Event()
        self.state = "queued"  # queued, running, done, failed, cancelled
        self.frames_sent = 0
        self.header_keys: set[str] | None = None  # None until the header is sent
        self.progress: dict | None = None

    def emit(self, kind: str, **fields) -> None:
        self._emit({"type": kind, "job_id": self.id, **fields})

    def describe(self) -> dict:
        return {"job_id": self.id, "state": self.state, "video": self.spec.video, "refit": self.spec.refit,
                "model": self.spec.model,
                "device": self.spec.device, "frames_sent": self.frames_sent, "progress": self.progress}

    # Engine callbacks: they only queue messages (the connection's writer thread does the sending).
    def on_header(self, header: dict) -> None:
        self.header_keys = set(header)
        self.emit("header", data=header)

    def on_chunk(self, chunk: dict) -> None:
        self.frames_sent += len(chunk["frame_index"])
        self.emit("chunk", data=chunk)

    def on_progress(self, progress) -> None:
        self.progress = {k: getattr(progress, k) for k in ("done", "total", "fps", "eta_s", "faces")}
        self.emit("progress", **self.progress)

    def stream_rest(self, capture: dict | None) -> dict:
        """Send the frames of `capture` the engine has not streamed yet, so the client ends up with all of it;
        returns the static keys that were not in the header, and those settled at the end (`SETTLED_AT_END`: the
        ARKit curves solved again over the whole clip, their rest face, the notes found along the way), for the
        last event."""
        if not capture:
            return {}
        n = len(capture["frame_index"])
        per_frame = [k for k in PER_FRAME + OPTIONAL_PER_FRAME if k in capture]
        if self.header_keys is None:
            self.on_header({**{k: v for k, v in capture.items() if k not in per_frame}, "n_frames": n})
        if n > self.frames_sent:
            self.on_chunk({k: np.asarray(capture[k])[self.frames_sent:] for k in per_frame})
        return {k: v for k, v in capture.items()
                if k in SETTLED_AT_END or (k not in per_frame and k not in self.header_keys)}


class DeviceRunner:
    """Runs the jobs of one device one at a time, in submission order, with warm engines."""

    def __init__(self, device: str, engine_factory: EngineFactory, max_engines: int = 2):
        self.device = device
        self._factory, self._max_engines = engine_factory, max_engines
        self._engines: collections.OrderedDict = collections.OrderedDict()
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.current: Job | None = None
        self._thread = threading.Thread(target=self._loop, name=f"kinesics-jobs-{device}", daemon=True)
        self._thread.start()

    def put(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise ShuttingDown()
            self._queue.append(job)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """Stop a job: a queued one ends at once, a running one within the engine's cancel latency."""
        with self._cond:
            queued = job in self._queue
            if queued:
                self._queue.remove(job)
        job.cancel.set()
        if queued:
            job.state = "cancelled"
            job.emit("cancelled", frames_kept=0, message="The capture was cancelled before it started.")

    def jobs(self) -> list[Job]:
        """The running job, then the queued ones (a job that has sent its last event is no longer listed)."""
        with self._cond:
            jobs = ([self.current] if self.current else []) + list(self._queue)
        return [job for job in jobs if job.state in ("queued", "running")]

    def engines(self) -> list[str | None]:
        return list(self._engines)

    def stop(self, timeout: float) -> None:
        """Cancel everything, let the running job report what it kept, and end the thread."""
        with self._cond:
            self._stopping = True
            doomed = list(self._queue) + ([self.current] if self.current else [])
            self._cond.notify()
        for job in doomed:
            self.cancel(job)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            for engine in self._engines.values():
                engine.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue:
                    return
                self.current = self._queue.popleft()
            try:
                self._run(self.current)
            finally:
                with self._cond:
                    self.current = None

    def _run(self, job: Job) -> None:
        spec, began = job.spec, time.monotonic()
        job.state = "running"
        warm = spec.model in self._engines
        job.emit("started", warm=warm, device=self.device)
        try:
            engine = self._engine(spec.model, job)
            _check_options(engine.refit if spec.refit else engine.run, spec.options)
            if job.cancel.is_set():
                raise CaptureCancelled("The capture was cancelled before its first frame.", partial=None)
            if spec.refit is not None:
                capture = engine.refit(load_capture(spec.refit), on_header=job.on_header, on_chunk=job.on_chunk,
                                       cancel=job.cancel, **spec.options)
            elif spec.video is None:
                job.state = "done"
                job.emit("done", extras={}, summary={"frames": 0, "valid_frames": 0, "fps": None, "warm": warm,
                                                     "seconds": time.monotonic() - began, "device": self.device})
                return
            else:
                capture = engine.run(spec.video, start=spec.start, end=spec.end, stride=spec.stride,
                                     on_header=job.on_header, on_chunk=job.on_chunk, on_progress=job.on_progress,
                                     cancel=job.cancel, **spec.options)
            extras = job.stream_rest(capture)
            seconds = time.monotonic() - began
            n = len(capture["frame_index"])
            job.state = "done"
            job.emit("done", extras=extras, summary={
                "frames": n, "valid_frames": int(np.count_nonzero(capture["valid"])), "seconds": seconds,
                "fps": n / seconds if seconds > 0 else None, "device": self.device, "warm": warm})
        except CaptureCancelled as err:
            extras = job.stream_rest(err.partial)
            job.state = "cancelled"
            job.emit("cancelled", frames_kept=job.frames_sent, extras=extras,
                     message=f"The capture was cancelled; the {job.frames_sent} frames finished before are kept.")
        except KinesicsError as err:
            job.state = "failed"
            job.emit("error", code=err.code, message=str(err), frames_kept=job.frames_sent)
        except Exception as err:  # noqa: BLE001 - a bug must fail the job, never the worker
            traceback.print_exc(file=sys.stderr)
            job.state = "failed"
            job.emit("error", code="internal", frames_kept=job.frames_sent,
                     message=f"The capture failed unexpectedly ({type(err).__name__}: {err}). "
                             "The worker's output has the details; please report it.")

    def _engine(self, model: str | None, job: Job):
        """The model's engine, loaded on first use; deriving a new model's landmark embedding (seconds) is
        reported to the job's client as "preparing" events."""
        if model in self._engines:
            self._engines.move_to_end(model)
            return self._engines[model]
        while len(self._engines) >= self._max_engines:
            self._engines.popitem(last=False)[1].close()  # its landmark processes go with it
        engine = self._factory(model, self.device,
                               lambda fraction, message: job.emit("preparing", fraction=fraction, message=message))
        self._engines[model] = engine
        return engine


def _check_options(method: Callable, options: dict) -> None:
    """BadRequest naming the options `method` (the engine's run or refit) does not take."""
    accepted = set(inspect.signature(method).parameters) - _ENGINE_ARGUMENTS
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BadRequest(f"unknown capture option(s) {', '.join(unknown)}; this worker accepts {sorted(accepted)}")


def capture_engine(model: str | None, device: str, on_prepare: Callable[[float, str], None] | None = None):
    """The real engine (imported here, so the worker starts listening before torch and MediaPipe load)."""
    try:
        import torch
        from core.engine import CaptureEngine
    except ImportError as err:
        raise BridgeError(f"The worker's Python cannot load the capture engine ({err}). Start the worker with "
                          "the Python of the environment setup.sh made, or of one with the worker installed "
                          "(pip install \".[worker]\").", code="dependencies") from None
    if device.startswith("cuda") and not (torch.cuda.is_available()
                                          and int(device.partition(":")[2] or 0) < torch.cuda.device_count()):
        raise BridgeError(f"This worker has no {device} device (torch sees {torch.cuda.device_count()} CUDA "
                          "devices); choose the CPU, or install torch with CUDA (see setup.sh).", code="device")
    if device == "mps" and not torch.backends.mps.is_available():
        raise BridgeError("This worker has no Apple GPU (mps); choose the CPU.", code="device")
    return CaptureEngine(model, device, on_prepare=on_prepare)
