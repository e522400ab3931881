"""The client Blender uses to drive the capture worker (standard library and numpy only).

    client = WorkerClient.start(python_exe)          # or WorkerClient.connect(host, port, token)
    job = client.submit(video="clip.mp4", model=None, start=0, end=None, stride=1, device="cpu")
    acc = CaptureAccumulator(job)
    # from a Blender timer, never blocking:
    for event in client.poll():
        acc.feed(event)       # "header", "progress", "chunk", "done", "error", "cancelled", "worker_died", ...
    capture = acc.capture()   # complete after "done"; every frame received so far otherwise
    client.shutdown()

A background thread reads the socket into a queue that `poll()` drains. Events are the worker's job events
(see bridge.worker; chunk and header arrays arrive as numpy arrays under "data") plus, from the client
itself, "worker_died" {exit_code, output (last lines), message, frames_kept {job_id: frames}} when the worker
exits or the connection is lost, and "bye" when the worker shuts down on request.
"""
from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from . import PROTOCOL_VERSION, protocol
from .accumulator import CaptureAccumulator
from .auth import read_token
from .errors import BridgeError, ProtocolError, WorkerDied

__all__ = ["WorkerClient", "CaptureAccumulator", "BridgeError", "WorkerDied"]

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_LINES = 100
# MediaPipe's start-up notes (absl warnings and infos, TensorFlow Lite's delegate notice): every landmark process
# prints them, and kept they would push the worker's own lines, and a traceback, out of the tail a user is shown.
_STARTUP_NOISE = re.compile(r"^(?:[WI]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] |INFO: Created TensorFlow Lite "
                            r"|WARNING: All log messages before absl::InitializeLog\(\) is called)")


def worker_environment() -> dict[str, str]:
    """The environment for this checkout's code run by the worker's Python: Blender's PYTHONHOME/PYTHONPATH
    would make another Python load Blender's modules (its numpy) instead of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    return env


def kept_output(line: str) -> bool:
    """Whether a line of the worker's output belongs in the tail kept for the user (not MediaPipe's notes)."""
    return _STARTUP_NOISE.match(line) is None


class _Waiter:
    def __init__(self):
        self.event = threading.Event()
        self.reply: dict | None = None


class WorkerClient:
    """A connection to one capture worker, optionally the owner of its process.

    Besides the methods below: `info` (the worker's hello: protocol, version, pid), `address` (host, port),
    and for a worker this client started, `process` (its Popen), `ready` (its ready line: host, port,
    token_file, ...) and `output` (its last lines of output).
    """

    def __init__(self):
        self.info: dict = {}
        self.ready: dict = {}
        self.process: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None
        self._launch: tuple[str, tuple[str, ...]] | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES)
        self._output_thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._events: queue.Queue = queue.Queue()
        self._pending: dict[int, _Waiter] = {}
        self._frames: dict[int, int] = {}  # frames received of each unfinished job
        self._ids = itertools.count(1)
        self._lock = threading.Lock()       # guards _pending
        self._send_lock = threading.Lock()  # one message at a time on the socket
        self._closing = False
        self._said_bye = False

    # --- starting and connecting -------------------------------------------------------------------------

    @classmethod
    def start(cls, python_exe: str | os.PathLike, args: tuple[str, ...] = (), timeout: float = 120.0) -> "WorkerClient":
        """Start `python_exe -m bridge.worker` (this checkout on its PYTHONPATH) and connect to it.

        `python_exe` is the interpreter of an environment with the worker's dependencies (torch, MediaPipe);
        `args` are extra worker options. Raises WorkerDied with the worker's output when it cannot start.
        """
        client = cls()
        client._launch = (str(python_exe), tuple(args))
        client._spawn(timeout)
        return client

    @classmethod
    def connect(cls, host: str, port: int, token: str, timeout: float = 10.0) -> "WorkerClient":
        """Connect to a running worker; BridgeError with code "auth" when the token is wrong."""
        client = cls()
        client._attach(host, port, token, timeout)
        return client

    def restart(self, timeout: float = 120.0) -> "WorkerClient":
        """Stop this client's worker if it still runs and start a fresh one in its place."""
        if self._launch is None:
            raise BridgeError("this client did not start its worker, so it cannot restart it", code="not_owner")
        self.close()
        self._spawn(timeout)
        return self

    def _spawn(self, timeout: float) -> None:
        python_exe, args = self._launch
        env = worker_environment()
        self._output.clear()
        try:
            self.process = subprocess.Popen(
                [python_exe, "-m", "bridge.worker", "--watch-stdin", *args], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except OSError as err:
            raise WorkerDied(f"Cannot run the worker's Python {python_exe!r} ({err}); set the path of the "
                             "Python of the environment setup.sh made (.venv/bin/python), or of one with the worker "
                             "installed (pip install \".[worker]\").") from None
        ready: queue.Queue = queue.Queue()
        self._output_thread = threading.Thread(target=self._drain_output, args=(self.process, ready),
                                               name="kinesics-worker-output", daemon=True)
        self._output_thread.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = ready.get(timeout=0.1)
                break
            except queue.Empty:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self._stop_process(0.0)
                    tail = " | ".join([text for text in self._output if text.strip()][-3:])
                    raise WorkerDied(f"The capture worker did not start ({self._death_note()}): {tail}") from None
        self.ready = line
        try:
            self._attach(line["host"], line["port"], read_token(line["token_file"]), timeout)
        except BaseException:
            self._stop_process(0.0)
            raise

    def _drain_output(self, process: subprocess.Popen, ready: queue.Queue) -> None:
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if kept_output(line):
                self._output.append(line)
            if line.startswith("{") and '"kinesics_worker"' in line:
                try:
                    ready.put(json.loads(line))
                except ValueError:
                    pass

    def _attach(self, host: str, port: int, token: str, timeout: float) -> None:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise WorkerDied(f"Cannot reach the capture worker at {host}:{port} ({err}).") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            protocol.send(sock, {"type": "hello", "token": token, "protocol": PROTOCOL_VERSION, "id": 0})
            reply = protocol.recv(sock, protocol.EVENT_LIMIT)
        except (OSError, ProtocolError) as err:
            sock.close()
            raise WorkerDied(f"The capture worker at {host}:{port} did not answer ({err}).") from None
        if reply is None or reply["type"] != "hello":
            sock.close()
            reply = reply or {}
            raise BridgeError(reply.get("message", "the worker closed the connection"), code=reply.get("code", "auth"))
        sock.settimeout(None)
        self.info, self.address, self._sock = reply, (host, port), sock
        self._closing = self._said_bye = False
        self._frames.clear()
        self._reader = threading.Thread(target=self._read_loop, args=(sock,), name="kinesics-client-in", daemon=True)
        self._reader.start()

    # --- requests --------------------------------------------------------------------------------------

    def hello(self) -> dict:
        """The worker's identity (protocol, version, pid); a round trip, so also a liveness check."""
        self.info = self._request({"type": "hello"})
        return self.info

    def submit(self, video: str | os.PathLike, model: str | os.PathLike | None = None, start: int = 0,
               end: int | None = None, stride: int = 1, device: str = "cpu", **options) -> int:
        """Queue a capture of frames start..end (end excluded, None: to the last) and return its job id.

        `options` are further CaptureEngine.run settings (focal_px=...). Errors in the job itself arrive
        later as an "error" event; BridgeError with code "bad_request" when the request itself is wrong.
        """
        reply = self._request({"type": "submit", "video": str(video), "model": None if model is None else str(model),
                               "start": start, "end": end, "stride": stride, "device": device, "options": options})
        return reply["job_id"]

    def refit(self, capture: str | os.PathLike, model: str | os.PathLike | None = None, device: str = "cpu",
              **options) -> int:
        """Queue a refit of the landmarks the capture file `capture` holds (another model, lens or smoothing; no
        footage) and return its job id; its events are a capture's. `options`: CaptureEngine.refit settings."""
        reply = self._request({"type": "refit", "capture": str(capture), "model": None if model is None else str(model),
                               "device": device, "options": options})
        return reply["job_id"]

    def load(self, model: str | os.PathLike | None = None, device: str = "cpu") -> int:
        """Load a model in the background so the next capture with it starts warm; returns the job id
        (its "done" or "error" event says how it went). Queued like a capture, on the same device."""
        reply = self._request({"type": "load", "model": None if model is None else str(model), "device": device})
        return reply["job_id"]

    def cancel(self, job_id: int) -> str:
        """Ask the job to stop; its "cancelled" event follows, saying how many frames it kept.

        Returns the job's state when asked ("queued"/"running", or "done" etc. when it had already ended).
        """
        return self._request({"type": "cancel", "job_id": job_id})["state"]

    def status(self) -> dict:
        """The worker's jobs (state, progress), loaded engines, connections and uptime."""
        return self._request({"type": "status"})

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Every event received so far, oldest first; waits up to `timeout` s for the first (0: never blocks)."""
        events = []
        try:
            events.append(self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait())
            while True:
                events.append(self._events.get_nowait())
        except queue.Empty:
            return events

    @property
    def alive(self) -> bool:
        """Connected, and the worker process (when this client started it) still runs."""
        return (self._sock is not None and self._reader is not None and self._reader.is_alive()
                and (self.process is None or self.process.poll() is None))

    @property
    def output(self) -> list[str]:
        return list(self._output)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask the worker to stop (its jobs are cancelled and report what they kept), then close."""
        if self._sock is not None:
            self._closing = True
            try:
                self._send({"type": "shutdown"})
                self._reader.join(timeout)  # the worker says bye and closes the connection
            except WorkerDied:
                pass
        self.close(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Disconnect. A worker this client started is stopped too (never left running without its owner)."""
        self._closing = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            if self._reader is not threading.current_thread():
                self._reader.join(timeout)
            self._sock = None
        self._stop_process(timeout)

    def _stop_process(self, timeout: float) -> None:
        """Close the worker's stdin (it exits on its own), then terminate, then kill."""
        process = self.process
        if process is None:
            return
        if process.stdin and not process.stdin.closed:
            try:
                process.stdin.close()
            except OSError:
                pass
        for stop in (None, process.terminate, process.kill):
            if stop is not None:
                stop()
            try:
                process.wait(timeout if stop is None else 5.0)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._output_thread is not None:
            self._output_thread.join(2.0)

    def _request(self, message: dict, timeout: float = 30.0) -> dict:
        request_id = next(self._ids)
        waiter = _Waiter()
        with self._lock:
            self._pending[request_id] = waiter
        try:
            self._send({**message, "id": request_id})
            if not waiter.event.wait(timeout):
                raise BridgeError(f"the worker did not answer a {message['type']} request within {timeout:g} s",
                                  code="timeout")
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        reply = waiter.reply
        if reply is None:
            raise WorkerDied("The capture worker stopped before it answered.")
        if reply["type"] == "error":
            raise BridgeError(reply["message"], code=reply["code"])
        return reply

    def _send(self, message: dict) -> None:
        sock = self._sock
        if sock is None:
            raise WorkerDied("Not connected to a capture worker; start or connect to one first.")
        data = protocol.encode(message)
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as err:
            raise WorkerDied(f"The capture worker cannot be reached ({err}).") from None

    # --- the reader thread -----------------------------------------------------------------------------

    def _read_loop(self, sock: socket.socket) -> None:
        reason = "the worker closed the connection"
        try:
            while (message := protocol.recv(sock, protocol.EVENT_LIMIT)) is not None:
                self._deliver(message)
        except ProtocolError as err:
            reason = f"the worker sent a malformed message ({err})"
        except OSError as err:
            reason = f"the connection failed ({err})"
        with self._lock:
            waiters = list(self._pending.values())
        for waiter in waiters:
            waiter.event.set()  # with no reply: the request fails with WorkerDied
        if not self._closing and not self._said_bye:
            self._events.put(self._death_event(reason))

    def _deliver(self, message: dict) -> None:
        if message["type"] == "accepted":  # here, not in submit(): the job's own events may follow at once
            self._frames[message["job_id"]] = 0
        with self._lock:
            waiter = self._pending.get(message.get("reply_to"))
        if waiter is not None:
            waiter.reply = message
            waiter.event.set()
            return
        kind = message["type"]
        if kind == "chunk":
            job_id = message["job_id"]
            self._frames[job_id] = self._frames.get(job_id, 0) + len(message["data"]["frame_index"])
        elif kind in ("done", "error", "cancelled") and "job_id" in message:
            self._frames.pop(message["job_id"], None)
        elif kind == "bye":
            self._said_bye = True
        self._events.put(message)

    def _death_event(self, reason: str) -> dict:
        exit_code = None
        if self.process is not None:
            try:
                exit_code = self.process.wait(3.0)
            except subprocess.TimeoutExpired:
                pass
            if self._output_thread is not None:
                self._output_thread.join(2.0)  # its last lines, a traceback say, are what the user needs
        kept = dict(self._frames)
        message = (f"The capture worker stopped unexpectedly ({self._death_note(exit_code, reason)}). Every frame "
                   f"received before is kept ({', '.join(f'{n} of job {j}' for j, n in kept.items()) or 'none'}).")
        return {"type": "worker_died", "exit_code": exit_code, "output": list(self._output), "message": message,
                "frames_kept": kept}

    def _death_note(self, exit_code: int | None = None, reason: str | None = None) -> str:
        if exit_code is None and self.process is not None:
            exit_code = self.process.poll()
        if exit_code is None:
            return reason or "it did not report ready in time"
        if exit_code < 0 and -exit_code in {s.value for s in signal.Signals}:
            return f"killed by {signal.Signals(-exit_code).name}"
        return f"exit code {exit_code}"
