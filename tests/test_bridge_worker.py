"""The real worker process over real sockets: handshake, token, limits, refusals, start failures, clean exits.

None of these need the capture engine; captures over the socket are in test_bridge_capture.py.
"""
from __future__ import annotations

import os
import socket
import stat
import struct
import sys

import pytest

from bridge import PROTOCOL_VERSION, protocol
from bridge.auth import read_token
from bridge.client import BridgeError, WorkerClient, WorkerDied, kept_output

AUTH_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def worker():
    client = WorkerClient.start(sys.executable, args=("--auth-timeout", str(AUTH_TIMEOUT)))
    yield client
    client.shutdown()


def _connect(worker: WorkerClient, authenticate: bool) -> socket.socket:
    sock = socket.create_connection(worker.address)
    if authenticate:
        protocol.send(sock, {"type": "hello", "token": read_token(worker.ready["token_file"]),
                             "protocol": PROTOCOL_VERSION})
        assert protocol.recv(sock, protocol.EVENT_LIMIT)["type"] == "hello"
    return sock


def _refusal(sock: socket.socket) -> dict:
    """The worker's last word on a refused connection, after which it closes it."""
    with sock:
        reply = protocol.recv(sock, protocol.EVENT_LIMIT)
        assert protocol.recv(sock, protocol.EVENT_LIMIT) is None, "the worker must close a refused connection"
    return reply


def _still_serving(worker: WorkerClient) -> None:
    assert worker.status()["pid"] == worker.process.pid
    assert worker.alive


def test_ready_line_hello_and_token_file(worker):
    assert worker.ready["host"] == "127.0.0.1" and worker.ready["protocol"] == PROTOCOL_VERSION
    assert worker.info["pid"] == worker.process.pid == worker.ready["pid"]
    assert worker.hello()["protocol"] == PROTOCOL_VERSION
    mode = stat.S_IMODE(os.stat(worker.ready["token_file"]).st_mode)
    assert mode == 0o600, f"token file mode {oct(mode)}: only the user may read it"
    status = worker.status()
    assert status["jobs"] == [] and status["connections"] >= 1


def test_wrong_token_is_refused(worker):
    with pytest.raises(BridgeError, match="token") as err:
        WorkerClient.connect(*worker.address, token="0" * 64)
    assert err.value.code == "auth"
    _still_serving(worker)


def test_requests_before_hello_are_refused(worker):
    sock = _connect(worker, authenticate=False)
    protocol.send(sock, {"type": "submit", "video": "x.mp4"})
    assert _refusal(sock)["code"] == "auth"
    _still_serving(worker)


def test_garbage_bytes_are_refused(worker):
    sock = _connect(worker, authenticate=False)
    sock.sendall(os.urandom(4096))
    assert _refusal(sock)["code"] == "protocol"
    _still_serving(worker)


def test_oversized_message_is_refused(worker):
    sock = _connect(worker, authenticate=True)
    # Declares a body one byte over the limit and sends none of it: refused on the prefix alone.
    sock.sendall(struct.pack("<4sII", protocol.MAGIC, 2, protocol.REQUEST_LIMIT - 1))
    reply = _refusal(sock)
    assert reply["code"] == "too_large" and str(protocol.REQUEST_LIMIT) in reply["message"]
    _still_serving(worker)


def test_an_oversized_real_request_is_refused(worker):
    sock = _connect(worker, authenticate=True)
    protocol.send(sock, {"type": "submit", "video": "v" * protocol.REQUEST_LIMIT})
    assert _refusal(sock)["code"] == "too_large"
    _still_serving(worker)


def test_silent_connection_times_out(worker):
    sock = _connect(worker, authenticate=False)
    reply = _refusal(sock)  # blocks until the worker gives up on the hello
    assert reply["code"] == "auth" and "no hello" in reply["message"]
    _still_serving(worker)


def test_unknown_request_type_closes_the_connection(worker):
    sock = _connect(worker, authenticate=True)
    protocol.send(sock, {"type": "frobnicate"})
    assert _refusal(sock)["code"] == "protocol"
    _still_serving(worker)


def test_protocol_version_mismatch_is_refused(worker):
    sock = _connect(worker, authenticate=False)
    protocol.send(sock, {"type": "hello", "token": read_token(worker.ready["token_file"]), "protocol": 999})
    reply = _refusal(sock)
    assert reply["code"] == "protocol_version" and "999" in reply["message"]


@pytest.mark.parametrize("job, match", [
    ({"video": ""}, "no video"),
    ({"video": "a.mp4", "stride": 0}, "'stride'"),
    ({"video": "a.mp4", "start": 10, "end": 5}, "'end'"),
    ({"video": "a.mp4", "device": "tpu"}, "unknown device"),
    ({"video": "a.mp4", "on_chunk": 1}, "'options'"),
])
def test_bad_jobs_are_answered_and_the_connection_stays(worker, job, match):
    with pytest.raises(BridgeError, match=match) as err:
        worker.submit(**job)
    assert err.value.code == "bad_request"
    _still_serving(worker)


def test_cancel_of_an_unknown_job(worker):
    with pytest.raises(BridgeError, match="no job 12345") as err:
        worker.cancel(12345)
    assert err.value.code == "bad_request"


def test_two_clients_at_once(worker):
    other = WorkerClient.connect(*worker.address, token=read_token(worker.ready["token_file"]))
    try:
        assert other.status()["connections"] >= 2
        assert other.hello()["pid"] == worker.hello()["pid"]
    finally:
        other.close()
    _still_serving(worker)


def test_close_stops_a_worker_this_client_started():
    client = WorkerClient.start(sys.executable)
    token_file = client.ready["token_file"]
    client.close()
    assert client.process.returncode == 0 and not client.alive
    assert any("stdin closed" in line for line in client.output), "it left because its owner went away"
    assert not os.path.exists(token_file), "the worker removes its token file when it exits"


def test_shutdown_says_bye_and_the_worker_exits():
    client = WorkerClient.start(sys.executable)
    client.shutdown()
    assert client.process.returncode == 0 and not client.alive
    assert [e["type"] for e in client.poll()] == ["bye"]


def test_worker_that_cannot_start_says_why(worker):
    with pytest.raises(WorkerDied, match="exit code 2.*cannot listen") as err:
        WorkerClient.start(sys.executable, args=("--port", str(worker.address[1])))
    assert err.value.code == "worker_died"
    with pytest.raises(WorkerDied, match="Cannot run the worker's Python"):
        WorkerClient.start("/nonexistent/python3")


def test_the_kept_output_leaves_out_mediapipes_start_up_notes():
    """Every landmark process prints MediaPipe's notes as it starts; the tail of output a user is shown when the
    worker dies keeps the worker's own lines, errors and tracebacks instead."""
    noise = ["W0000 00:00:1795361970.251935    5404 inference_feedback_manager.cc:114] Feedback manager requires a "
             "model with a single signature inference. Disabling support for feedback tensors.",
             "I0000 00:00:1795361970.25    77 gl_context.cc:369] GL version: 3.2",
             "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
             "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"]
    kept = ["kinesics worker: job 3: face.mp4 frames 0 to the end, stride 1, on cpu",
            "E0000 00:00:1795361970.251935    5404 calculator_graph.cc:887] INTERNAL: a real failure",
            "Traceback (most recent call last):", '{"kinesics_worker": "ready", "port": 40000}']
    assert not any(kept_output(line) for line in noise)
    assert all(kept_output(line) for line in kept)
