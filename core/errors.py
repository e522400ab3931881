"""Errors a user can act on: each carries a stable code (the bridge sends it) and says what to do."""
from __future__ import annotations


class KinesicsError(Exception):
    """Base of every error Kinesics reports to a user. `code` is stable and machine-readable."""

    code = "error"


class ModelFileError(KinesicsError, ValueError):
    """A head-model file that is missing, damaged or of a layout Kinesics does not know."""

    code = "model"


class FootageError(KinesicsError, ValueError):
    """Footage that is missing, unreadable, empty or damaged."""

    code = "footage"


class SettingError(KinesicsError, ValueError):
    """A capture setting out of its range (a lens of no length, ...)."""

    code = "setting"


class CaptureCancelled(KinesicsError):
    """The capture was cancelled; `partial` holds the capture of every frame finished before."""

    code = "cancelled"

    def __init__(self, message: str, partial: dict | None = None):
        super().__init__(message)
        self.partial = partial
