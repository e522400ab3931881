"""Head-model files read inside Blender (numpy only), cached, and matched to a capture's model.

Reading a FLAME file takes seconds, so the capture flow starts it on a thread when the capture starts
(`preload`) and the timer only picks the result up once it is there.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ..core.errors import ModelFileError
from ..core.model_data import HeadModelData, load_model_data

BUILTIN = "builtin"
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kinesics-model")
_cache: dict[tuple[str, float], Future] = {}
_lock = threading.Lock()


def _key(path: str) -> tuple[str, float]:
    path = os.path.abspath(os.path.expanduser(path))
    try:
        return path, os.path.getmtime(path)
    except OSError:
        raise ModelFileError(f"{path}: no such head-model file or folder. Set the model's path in the Kinesics "
                             "preferences (Edit > Preferences > Add-ons > Kinesics).") from None


def preload(path: str) -> Future:
    """Start reading `path` on a background thread (or return the cached read)."""
    key = _key(path)
    with _lock:
        if key not in _cache:
            _cache[key] = _pool.submit(load_model_data, key[0])
        return _cache[key]


def load(path: str) -> HeadModelData:
    """The model at `path`, read once per file version; raises ModelFileError."""
    future = preload(path)
    try:
        return future.result()
    except Exception:
        with _lock:
            _cache.pop(_key(path), None)  # a failed read is not cached: the user may fix the file
        raise


def ready(path: str) -> bool:
    return preload(path).done()


def for_capture(header: dict, candidates: list[str]) -> HeadModelData:
    """The model a capture was made with: the built-in one it carries, the file it names, or the first of
    `candidates` (paths from the preferences) whose content hash matches the capture's model_hash."""
    model = str(header.get("model", ""))
    if model == BUILTIN:
        try:
            from ..core.builtin_model import model_from_capture
        except ImportError:
            raise ModelFileError("This capture uses the built-in head model, which this Kinesics version "
                                 "does not include; update Kinesics.") from None
        return model_from_capture(header)
    wanted = str(header.get("model_hash", ""))
    for path in [model] + [c for c in candidates if c]:
        if not path or not os.path.exists(os.path.expanduser(path)):
            continue
        data = load(path)
        if not wanted or data.content_hash == wanted:
            return data
    raise ModelFileError(f"This capture was made with the head model '{model}' (content {wanted or 'unknown'}), "
                         "which is not on this computer. Set that model's path in the Kinesics preferences.")
