"""The bridge's wire format over a real socket pair: arrays survive exactly, malformed bytes are refused."""
from __future__ import annotations

import json
import socket
import struct

import numpy as np
import pytest

from bridge import protocol
from bridge.errors import MessageTooLarge, ProtocolError


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _raw(header: dict | bytes, payload: bytes = b"", magic: bytes = protocol.MAGIC) -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<4sII", magic, len(head), len(payload)) + head + payload


def test_arrays_round_trip_exactly(pair):
    a, b = pair
    rng = np.random.default_rng(0)
    data = {
        "expression": rng.standard_normal((5, 53)).astype(np.float32),
        "big_endian": np.arange(6, dtype=">f8").reshape(2, 3),
        "transposed": np.arange(12, dtype=np.int64).reshape(3, 4).T,
        "valid": np.array([True, False, True]),
        "scalar": np.array(25.0),
        "empty": np.zeros((0, 478, 3), np.float32),
        "names": np.array(["jawOpen", "eyeBlink_L"]),
    }
    protocol.send(a, {"type": "chunk", "job_id": 3, "data": data, "list": [np.float32(1.5), {"n": np.int64(7)}]})
    got = protocol.recv(b, protocol.EVENT_LIMIT)
    assert got["type"] == "chunk" and got["job_id"] == 3 and got["list"] == [1.5, {"n": 7}]
    for key, value in data.items():
        out = got["data"][key]
        assert out.shape == value.shape and out.dtype.kind == value.dtype.kind, key
        np.testing.assert_array_equal(out, value)
    assert got["data"]["expression"].dtype == np.float32 and got["data"]["expression"].flags.writeable


def test_clean_close_between_messages_reads_as_none(pair):
    a, b = pair
    protocol.send(a, {"type": "bye"})
    a.close()
    assert protocol.recv(b, protocol.EVENT_LIMIT) == {"type": "bye"}
    assert protocol.recv(b, protocol.EVENT_LIMIT) is None


@pytest.mark.parametrize("raw, match", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "wrong magic"),
    (_raw(b"{not json"), "not valid JSON"),
    (_raw({"msg": [1, 2]}), "lacks its 'msg'"),
    (_raw({"msg": {"kind": "hello"}}), "no 'type'"),
    (_raw({"msg": {"type": "x", "a": {"$array": 0}}, "arrays": [{"dtype": "|O8", "shape": [1]}]}, b"\0" * 8),
     "dtype outside"),
    (_raw({"msg": {"type": "x", "a": {"$array": 0}}, "arrays": [{"dtype": "<f4", "shape": [4]}]}, b"\0" * 8),
     "payload holds 8"),
    (_raw({"msg": {"type": "x", "a": {"$array": 1}}, "arrays": [{"dtype": "<f4", "shape": [2]}]}, b"\0" * 8),
     "does not carry"),
    (_raw({"msg": {"type": "x"}, "arrays": [{"dtype": "<f4", "shape": [-2]}]}), "invalid shape"),
    (_raw(b"[" * 100000 + b"]" * 100000), "JSON|nested"),
])
def test_malformed_messages_are_refused(pair, raw, match):
    a, b = pair
    a.sendall(raw)
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(ProtocolError, match=match):
        protocol.recv(b, protocol.EVENT_LIMIT)


def test_oversized_message_is_refused_before_its_body_is_read(pair):
    a, b = pair
    # Only the 12-byte prefix is sent: the receiver must refuse on the declared size alone.
    a.sendall(struct.pack("<4sII", protocol.MAGIC, 100, 5_000_000))
    with pytest.raises(MessageTooLarge, match="over the limit of 1000000"):
        protocol.recv(b, 1_000_000)


def test_connection_closed_mid_message(pair):
    a, b = pair
    a.sendall(protocol.encode({"type": "hello", "token": "x" * 50})[:30])
    a.close()
    with pytest.raises(ProtocolError, match="closed in the middle"):
        protocol.recv(b, protocol.EVENT_LIMIT)


def test_object_arrays_cannot_be_sent():
    with pytest.raises(TypeError, match="cannot be sent"):
        protocol.encode({"type": "x", "a": np.array([object()])})
