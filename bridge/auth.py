"""The worker's access token: random, written to a file only the user can read, checked on every connection.

Anyone on the machine can reach a 127.0.0.1 port; only the user who started the worker can read the token.
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path


def write_token(path: str | os.PathLike) -> str:
    """Create a fresh token in `path` with mode 0600 (its folder 0700 when we create it) and return it."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    # O_CREAT with 0600 so the file is never readable by others, not even for a moment; fchmod covers
    # a file that already existed with wider permissions.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    return token


def read_token(path: str | os.PathLike) -> str:
    return Path(path).read_text().strip()


def token_matches(expected: str, presented: object) -> bool:
    """Constant-time comparison, so the token cannot be guessed from response times."""
    return isinstance(presented, str) and hmac.compare_digest(expected.encode(), presented.encode())
