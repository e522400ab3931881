"""Errors of the bridge; like every Kinesics error they carry a stable `code` the add-on can act on."""
from __future__ import annotations

from ._core import errors


class BridgeError(errors.KinesicsError):
    """The worker refused a request, or could not be reached; `code` names why."""

    code = "bridge"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class ProtocolError(BridgeError):
    """Bytes that are not a well-formed Kinesics message: the connection that sent them is closed."""

    code = "protocol"


class MessageTooLarge(ProtocolError):
    """A message over the receiver's size limit: refused before its body is read."""

    code = "too_large"


class WorkerDied(BridgeError):
    """The worker process exited, or the connection to it was lost."""

    code = "worker_died"
