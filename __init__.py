"""Kinesics as a Blender extension: the repository root is the extension root (see blender_manifest.toml)."""
if __package__:  # Blender imports this as the extension's package; test runners may import the file alone
    from .addon import register, unregister  # noqa: F401
