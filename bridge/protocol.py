"""Wire format of the bridge: length-prefixed messages, a JSON header plus raw little-endian array payloads.

One message on the wire:
    MAGIC (4 bytes) | header length (uint32 LE) | payload length (uint32 LE) | header (UTF-8 JSON) | payload
The header is {"msg": message, "arrays": [{"dtype": "<f4", "shape": [T, 3]}, ...]}. Inside the message each
numeric or boolean numpy array is replaced by {"$array": i} and its bytes are the i-th slice of the payload
(C order, little-endian, slices back to back); string arrays travel as {"$strings": nested list}. Nothing is
ever unpickled: only the dtypes in ALLOWED_DTYPES are accepted and sizes must add up exactly.

Standard library and numpy only: this module runs inside Blender's Python.
"""
from __future__ import annotations

import json
import math
import socket
import struct

import numpy as np

from .errors import MessageTooLarge, ProtocolError

MAGIC = b"KNS1"
_PREFIX = struct.Struct("<4sII")
HEADER_LIMIT = 1 << 20            # JSON header bytes, whatever the message
REQUEST_LIMIT = 1 << 20           # what the worker accepts from a client (requests carry no big arrays)
EVENT_LIMIT = 256 << 20           # what the client accepts from the worker (a chunk of frames)
ALLOWED_DTYPES = frozenset({"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"})


def encode(message: dict) -> bytes:
    """One wire message from a dict of JSON values, numpy arrays and numpy scalars (nested dicts/lists allowed)."""
    arrays: list[np.ndarray] = []

    def walk(value):
        if isinstance(value, dict):
            return {str(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
            arr = np.asarray(value)
            if arr.dtype.kind == "U":
                return {"$strings": arr.tolist()}
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"arrays of dtype {arr.dtype} cannot be sent")
            arrays.append(arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False))
            return {"$array": len(arrays) - 1}
        return value

    header = json.dumps({"msg": walk(message),
                         "arrays": [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]},
                        separators=(",", ":")).encode()
    payload = b"".join(a.tobytes() for a in arrays)
    return _PREFIX.pack(MAGIC, len(header), len(payload)) + header + payload


def send(sock: socket.socket, message: dict) -> None:
    sock.sendall(encode(message))


def recv(sock: socket.socket, limit: int) -> dict | None:
    """The next message, or None when the peer closed the connection cleanly between messages.

    Raises MessageTooLarge (before reading the body) when header + payload exceed `limit` bytes, and
    ProtocolError on anything malformed. Socket timeouts and OSError pass through.
    """
    prefix = _recv_exact(sock, _PREFIX.size, allow_eof=True)
    if prefix is None:
        return None
    magic, header_len, payload_len = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError("these bytes are not a Kinesics bridge message (wrong magic)")
    if header_len > HEADER_LIMIT or header_len + payload_len > limit:
        raise MessageTooLarge(f"a message of {header_len + payload_len} bytes is over the limit of {limit} bytes")
    header = _recv_exact(sock, header_len)
    payload = _recv_exact(sock, payload_len)
    return decode(header, payload)


def decode(header: bytes | bytearray, payload: bytearray) -> dict:
    """The message of a header and payload read off the wire; ProtocolError when they do not fit together."""
    try:
        parsed = json.loads(bytes(header).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ProtocolError(f"the message header is not valid JSON ({err})") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("msg"), dict) or not isinstance(
            parsed.get("arrays", []), list):
        raise ProtocolError("the message header lacks its 'msg' object")
    arrays = [_array(spec, payload, offset) for spec, offset in _offsets(parsed.get("arrays", []), len(payload))]

    def walk(value):
        if isinstance(value, dict):
            if "$array" in value:
                index = value["$array"]
                if not isinstance(index, int) or not 0 <= index < len(arrays):
                    raise ProtocolError(f"the message refers to array {index!r}, which it does not carry")
                return arrays[index]
            if "$strings" in value:
                return np.array(value["$strings"], dtype=str)
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    try:
        message = walk(parsed["msg"])
    except RecursionError:
        raise ProtocolError("the message is nested too deeply") from None
    if not isinstance(message.get("type"), str):
        raise ProtocolError("the message has no 'type'")
    return message


def _offsets(specs: list, payload_len: int):
    """(spec, byte offset) of each array; the sizes must add up to the payload exactly."""
    offset, placed = 0, []
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("dtype") not in ALLOWED_DTYPES:
            raise ProtocolError(f"array description {spec!r} has a dtype outside {sorted(ALLOWED_DTYPES)}")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ProtocolError(f"array description {spec!r} has an invalid shape")
        placed.append((spec, offset))
        offset += math.prod(shape) * np.dtype(spec["dtype"]).itemsize
    if offset != payload_len:
        raise ProtocolError(f"the arrays described take {offset} bytes but the payload holds {payload_len}")
    return placed


def _array(spec: dict, payload: bytearray, offset: int) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    count = math.prod(spec["shape"])
    # A writable view into the message's own buffer: no copy, and callers may modify it.
    return np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(tuple(spec["shape"]))


def _recv_exact(sock: socket.socket, n: int, allow_eof: bool = False) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            if allow_eof and got == 0:
                return None
            raise ProtocolError(f"the connection closed in the middle of a message ({got} of {n} bytes)")
        got += k
    return buf
