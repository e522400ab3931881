"""Where Kinesics finds shared test assets and keeps its caches."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def cache_dir() -> Path:
    """Per-user cache (landmark embeddings, converted models); KINESICS_CACHE overrides it."""
    root = os.environ.get("KINESICS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "kinesics")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def assets_dir() -> Path:
    """The shared assets folder beside the checkout; KINESICS_ASSETS overrides it."""
    env = os.environ.get("KINESICS_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_args) -> Iterator[IO]:
    """Write `path` all at once: into a temporary file beside it, renamed over it only when writing
    succeeded, so a crash or a full disk never leaves half a file. Permissions follow the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_args) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files owner-only
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
