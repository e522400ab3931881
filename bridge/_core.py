"""The core modules the client side needs, whether `bridge` is a top-level package (the worker, the tests)
or a subpackage of the Blender extension beside `core` (the add-on imports `<extension>.bridge.client`)."""
try:
    from ..core import capture_file, errors
except ImportError:  # no parent package: the repository root is on sys.path
    from core import capture_file, errors

__all__ = ["capture_file", "errors"]
