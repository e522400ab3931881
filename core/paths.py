"""Where Kinesics finds shared test assets and keeps its caches."""
from __future__ import annotations

import os
from pathlib import Path


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
