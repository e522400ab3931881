"""Where Kinesics finds shared test assets, keeps its caches and names a batch's outputs."""
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


def outputs_named_after(sources: list[str], folder: Path, suffix: str, noun: str) -> list[Path]:
    """One output per source (several `noun`s) in `folder`, named after its source with `suffix`; KinesicsError
    when two sources share a name."""
    from .errors import KinesicsError

    stems = [Path(s.rstrip("/\\")).stem for s in sources]
    twins = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twins:
        raise KinesicsError(f"several {noun}s are named {', '.join(twins)}: their outputs would overwrite each "
                            "other; run them separately or into separate folders")
    return [folder / f"{stem}{suffix}" for stem in stems]
