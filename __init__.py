"""Kinesics as a Blender extension: the repository root is the extension root (see blender_manifest.toml)."""
from .addon import register, unregister  # noqa: F401
