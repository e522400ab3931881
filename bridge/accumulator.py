"""Collects one job's streamed events into a capture, complete or partial (numpy only: runs in Blender)."""
from __future__ import annotations

from ._core import capture_file
from .errors import BridgeError

FINAL_EVENTS = ("done", "error", "cancelled", "worker_died")


class CaptureAccumulator:
    """Feed it every event a client polls; it keeps those of `job_id` and knows when the job is over.

    `outcome` is None while the job runs, then one of FINAL_EVENTS, with that event in `final`. Static keys
    the engine adds at the end (such as "warnings"), and those it settles at the end (the ARKit curves solved again
    over the whole clip, see core.capture_file.SETTLED_AT_END), arrive with "done" or "cancelled" and replace what
    streamed.
    """

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.header: dict | None = None
        self.chunks: list[dict] = []
        self.frames = 0
        self.progress: dict | None = None
        self.outcome: str | None = None
        self.final: dict | None = None
        self.extras: dict = {}

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def feed(self, event: dict) -> bool:
        """Take one event; True when it concerned this job (a dead worker concerns every job)."""
        kind = event["type"]
        if kind != "worker_died" and event.get("job_id") != self.job_id:
            return False
        if kind == "header":
            self.header = event["data"]
        elif kind == "chunk":
            self.chunks.append(event["data"])
            self.frames += len(event["data"]["frame_index"])
        elif kind == "progress":
            self.progress = event
        elif kind in FINAL_EVENTS and self.outcome is None:
            self.outcome, self.final = kind, event
            self.extras = event.get("extras") or {}
        return True

    def capture(self) -> dict:
        """Every frame received so far as one capture dict (see core.capture_file)."""
        if self.header is None:
            raise BridgeError(f"job {self.job_id} sent no frames, so there is nothing to keep", code="empty")
        return {**capture_file.assemble(self.header, self.chunks), **self.extras}
