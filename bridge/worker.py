"""The capture worker: a local socket server that runs capture jobs for Blender in its own process.

    kinesics worker [--port N] [--token-file PATH] [--max-engines N] [--watch-stdin] ...   (--help lists all)
    python -m bridge.worker ...

Listens on 127.0.0.1 only and prints one JSON line when ready:
    {"kinesics_worker": "ready", "host": "127.0.0.1", "port": N, "protocol": 1, "token_file": PATH, "pid": N}
Every connection must first send {"type": "hello", "token": ..., "protocol": 1}; anything else, anything
malformed and anything over the size limit is refused and that connection closed, while others go on.
Messages are framed as bridge.protocol describes (JSON header, raw little-endian arrays, no pickle).

Requests (each may carry an "id", echoed as "reply_to" in its reply):
    hello                 -> hello {protocol, version, pid}
    submit {video, model, start, end, stride, device, options} -> accepted {job_id, position}
    refit {capture, model, device, options} -> accepted {job_id, position}: a capture file's landmarks fitted again
    load {model, device}  -> accepted {job_id, position}: a job that only loads the model, so captures start warm
    cancel {job_id}       -> cancelling {job_id, state}, then the job's own "cancelled" event
    status                -> status {pid, uptime_s, jobs, engines, connections}
    shutdown              -> cancels every job (each reports what it kept), then bye, and the worker exits
Job events, to the connection that submitted the job, each with its job_id:
    started {warm, device}, preparing {fraction, message} (first use of a model: its landmark embedding),
    header {data}, progress {done, total, fps, eta_s, faces}, chunk {data},
    done {summary, extras}, error {code, message, frames_kept}, cancelled {frames_kept, message, extras}
    (extras: capture keys known or settled only at the end, such as "warnings" and the ARKit curves solved again
    over the whole clip, core.capture_file.SETTLED_AT_END; they replace what streamed)
Errors of a request are {type: "error", code, message, reply_to}.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from core import __version__
from core.paths import cache_dir

from . import PROTOCOL_VERSION, protocol
from .auth import token_matches, write_token
from .errors import BridgeError, ProtocolError
from .jobs import BadRequest, DeviceRunner, EngineFactory, Job, JobSpec, ShuttingDown, capture_engine

HOST = "127.0.0.1"
MAX_CONNECTIONS = 16
LINGER_S = 1.0  # how long a refused connection's remaining bytes are read and dropped


class Connection:
    """One client: a reader thread that dispatches requests and a writer thread that sends queued messages,
    so engine callbacks never wait on a slow client."""

    def __init__(self, server: "Worker", sock: socket.socket, peer: str):
        self.server, self.sock, self.peer = server, sock, peer
        self.authenticated = False
        self._refused = False
        self._outbox: queue.Queue = queue.Queue()
        self.closed = threading.Event()  # the writer has sent its last message

    def start(self) -> None:
        threading.Thread(target=self._write_loop, name=f"kinesics-out-{self.peer}", daemon=True).start()
        threading.Thread(target=self._read_loop, name=f"kinesics-in-{self.peer}", daemon=True).start()

    def send(self, message: dict) -> None:
        if not self.closed.is_set():
            self._outbox.put(message)

    def close(self) -> None:
        """Send what is queued, then end the stream; the client then closes its side and the reader ends."""
        self._outbox.put(None)

    def refuse(self, code: str, message: str) -> None:
        self.server.log(f"refused {self.peer}: {message}")
        self._refused = True
        self.send({"type": "error", "code": code, "message": message})
        self.close()

    def _write_loop(self) -> None:
        try:
            while (message := self._outbox.get()) is not None:
                protocol.send(self.sock, message)
        except OSError:
            pass  # the client went away; the reader notices and cancels its jobs
        finally:
            self.closed.set()
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _read_loop(self) -> None:
        try:
            self.sock.settimeout(self.server.auth_timeout)
            while (message := protocol.recv(self.sock, self.server.max_message)) is not None:
                if not self.authenticated:
                    self._authenticate(message)
                    if not self.authenticated:
                        return
                    self.sock.settimeout(None)
                else:
                    self.server.dispatch(self, message)
        except ProtocolError as err:
            self.refuse(err.code, str(err))
        except socket.timeout:
            self.refuse("auth", f"no hello within {self.server.auth_timeout:g} s")
        except OSError:
            pass
        finally:
            self.server.disconnected(self)
            self.close()
            if self._refused:
                self._linger()
            self.closed.wait(LINGER_S)
            self.sock.close()

    def _linger(self) -> None:
        """Read and drop what a refused client still sends, so closing does not reset the connection before
        it has read why it was refused."""
        deadline = time.monotonic() + LINGER_S
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return
        except OSError:
            pass

    def _authenticate(self, message: dict) -> None:
        if message.get("type") != "hello" or not token_matches(self.server.token, message.get("token")):
            self.refuse("auth", "the worker's token was not presented: read it from the token file the worker "
                                "names when it starts")
        elif message.get("protocol") != PROTOCOL_VERSION:
            self.refuse("protocol_version", f"this worker speaks bridge protocol {PROTOCOL_VERSION}, the client "
                                            f"{message.get('protocol')!r}: use a worker and add-on of one release")
        else:
            self.authenticated = True
            self.send(self.server.hello_reply(message))


class Worker:
    """The server: accepts connections, queues jobs per device, answers requests, shuts down cleanly."""

    def __init__(self, token: str, engine_factory: EngineFactory = capture_engine, port: int = 0,
                 max_message: int = protocol.REQUEST_LIMIT, auth_timeout: float = 10.0, max_engines: int = 2):
        self.token, self.max_message, self.auth_timeout = token, max_message, auth_timeout
        self._factory, self._max_engines = engine_factory, max_engines
        self._listener = socket.create_server((HOST, port))
        self.port = self._listener.getsockname()[1]
        self._connections: set[Connection] = set()
        self._runners: dict[str, DeviceRunner] = {}
        self._jobs: dict[int, tuple[Job, Connection]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.stopping = threading.Event()

    @staticmethod
    def log(line: str) -> None:
        print(f"kinesics worker: {line}", file=sys.stderr, flush=True)

    def serve(self) -> None:
        """Accept connections until `stopping` is set, then shut everything down."""
        self._listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                sock, (addr, port) = self._listener.accept()
            except socket.timeout:
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # events are small: send them now
            with self._lock:
                if len(self._connections) >= MAX_CONNECTIONS:
                    sock.close()
                    self.log(f"refused {addr}:{port}: {MAX_CONNECTIONS} connections already open")
                    continue
                conn = Connection(self, sock, f"{addr}:{port}")
                self._connections.add(conn)
            conn.start()
        self._listener.close()
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.stop(timeout=5.0)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.send({"type": "bye", "message": "The worker has shut down."})
            conn.close()
        for conn in connections:
            conn.closed.wait(2.0)  # their last events and "bye" are delivered before the process exits

    def hello_reply(self, message: dict) -> dict:
        return {"type": "hello", "reply_to": message.get("id"), "protocol": PROTOCOL_VERSION,
                "version": __version__, "pid": os.getpid()}

    def dispatch(self, conn: Connection, message: dict) -> None:
        kind, request_id = message["type"], message.get("id")
        handler = {"hello": self._hello, "submit": self._submit, "refit": self._submit, "load": self._submit,
                   "cancel": self._cancel,
                   "status": self._status, "shutdown": self._shutdown_request}.get(kind)
        if handler is None:
            raise ProtocolError(f"unknown request type {kind!r}")
        try:
            reply = handler(conn, message)
        except BridgeError as err:
            reply = {"type": "error", "code": err.code, "message": str(err)}
        if reply is not None:
            conn.send({**reply, "reply_to": request_id})

    def _hello(self, conn: Connection, message: dict) -> dict:
        return self.hello_reply(message)

    def _submit(self, conn: Connection, message: dict) -> None:
        spec = JobSpec.from_message(message)
        with self._lock:
            if self.stopping.is_set():
                raise ShuttingDown()
            job = Job(next(self._ids), spec, conn.send)
            runner = self._runners.get(spec.device)
            if runner is None:
                runner = self._runners[spec.device] = DeviceRunner(spec.device, self._factory, self._max_engines)
            self._jobs[job.id] = (job, conn)
        if spec.refit is not None:
            self.log(f"job {job.id}: refit {spec.refit} with {spec.model or 'the built-in model'} on {spec.device}")
        elif spec.video is None:
            self.log(f"job {job.id}: load {spec.model or 'the built-in model'} on {spec.device}")
        else:
            self.log(f"job {job.id}: {spec.video} frames {spec.start} to {spec.end or 'the end'}, stride "
                     f"{spec.stride}, on {spec.device}")
        # The reply is queued before the job can emit anything, so the client knows the id of every event.
        conn.send({"type": "accepted", "job_id": job.id, "position": len(runner.jobs()), "reply_to": message.get("id")})
        try:
            runner.put(job)
        except BridgeError as err:
            job.emit("error", code=err.code, message=str(err), frames_kept=0)

    def _cancel(self, conn: Connection, message: dict) -> dict:
        with self._lock:
            entry = self._jobs.get(message.get("job_id"))
        if entry is None:
            raise BadRequest(f"there is no job {message.get('job_id')!r}")
        job = entry[0]
        self._runners[job.spec.device].cancel(job)
        return {"type": "cancelling", "job_id": job.id, "state": job.state}

    def _status(self, conn: Connection, message: dict) -> dict:
        with self._lock:
            runners = list(self._runners.values())
            connections = len(self._connections)
        return {"type": "status", "pid": os.getpid(), "protocol": PROTOCOL_VERSION, "version": __version__,
                "uptime_s": time.monotonic() - self._started, "connections": connections,
                "jobs": [job.describe() for r in runners for job in r.jobs()],
                "engines": [{"device": r.device, "model": m} for r in runners for m in r.engines()]}

    def _shutdown_request(self, conn: Connection, message: dict) -> None:
        self.log("shutdown requested")
        self.stopping.set()  # serve() cancels the jobs, then says bye to every connection

    def disconnected(self, conn: Connection) -> None:
        """A client left: nobody is left to receive its jobs' results, so they are cancelled."""
        with self._lock:
            self._connections.discard(conn)
            owned = [job for job, owner in self._jobs.values() if owner is conn]
            for job in owned:
                del self._jobs[job.id]
        for job in owned:
            if job.state in ("queued", "running"):
                self.log(f"job {job.id}: its client left, cancelling")
                self._runners[job.spec.device].cancel(job)


def default_token_path() -> Path:
    """A per-process file in the user's runtime folder (XDG_RUNTIME_DIR), else in the Kinesics cache."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "kinesics" if runtime and os.path.isdir(runtime) else cache_dir() / "run"
    _remove_stale_tokens(folder)
    return folder / f"worker-{os.getpid()}.token"


def _remove_stale_tokens(folder: Path) -> None:
    """Token files of default-path workers that were killed (they cannot clean up after themselves)."""
    if os.name != "posix":
        return  # os.kill(pid, 0) only probes on POSIX
    for path in folder.glob("worker-*.token"):
        try:
            os.kill(int(path.stem.removeprefix("worker-")), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            pass  # not ours to judge: a foreign name, or a process of another user


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kinesics worker", description="Run the Kinesics capture worker.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--token-file", type=Path, help="where to write the access token (mode 0600)")
    parser.add_argument("--max-engines", type=int, default=2, help="models kept loaded per device")
    parser.add_argument("--max-message", type=int, default=protocol.REQUEST_LIMIT, help="largest request, bytes")
    parser.add_argument("--auth-timeout", type=float, default=10.0, help="seconds a connection has to say hello")
    parser.add_argument("--watch-stdin", action="store_true",
                        help="exit when stdin closes (the client that started the worker is gone)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    token_file = args.token_file or default_token_path()
    token = write_token(token_file)
    try:
        worker = Worker(token, port=args.port, max_message=args.max_message, auth_timeout=args.auth_timeout,
                        max_engines=args.max_engines)
    except OSError as err:
        token_file.unlink(missing_ok=True)
        print(f"kinesics worker: cannot listen on {HOST}:{args.port} ({err}); choose another port", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stopping.set())
    if args.watch_stdin:
        threading.Thread(target=_exit_with_stdin, args=(worker,), daemon=True).start()
    print(json.dumps({"kinesics_worker": "ready", "host": HOST, "port": worker.port, "protocol": PROTOCOL_VERSION,
                      "token_file": str(token_file), "pid": os.getpid(), "version": __version__}), flush=True)
    try:
        worker.serve()
    finally:
        token_file.unlink(missing_ok=True)
    return 0


def _exit_with_stdin(worker: Worker) -> None:
    # os.read, not sys.stdin: a daemon thread holding the buffered reader's lock aborts interpreter exit.
    while os.read(sys.stdin.fileno(), 4096):
        pass
    worker.log("stdin closed: the client that started this worker is gone; shutting down")
    worker.stopping.set()


if __name__ == "__main__":
    sys.exit(main())
