"""Install Worker (the add-on's one-click setup) for real: a fresh environment made with this Python, torch and
the worker's pinned requirements from the package index, then a capture worker started from it."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bridge.client import CaptureAccumulator, WorkerClient

REPO = Path(__file__).resolve().parent.parent


def _worker_install():
    """addon/worker_install.py is plain Python (no bpy): load it without the add-on package."""
    spec = importlib.util.spec_from_file_location("worker_install", REPO / "addon" / "worker_install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_worker_makes_an_environment_that_captures(tmp_path: Path, footage: Path):
    install = _worker_install().WorkerInstall(tmp_path / "worker", sys.executable)
    install.wait(timeout=1500)
    assert install.state == "done", "\n".join([install.message, *install.output])
    assert install.python.is_file() and install.fraction == 1.0
    client = WorkerClient.start(install.python)
    try:
        job = CaptureAccumulator(client.submit(footage / "frontal_talking_512.mp4", end=5))
        while not job.finished:
            for event in client.poll(timeout=0.5):
                job.feed(event)
        assert job.outcome == "done" and job.frames == 5, job.final
    finally:
        client.shutdown()


def test_a_failed_step_says_which_and_what_to_do(tmp_path: Path):
    module = _worker_install()
    missing = module.WorkerInstall(tmp_path / "a", str(tmp_path / "no-python"))
    missing.wait(timeout=60)
    assert missing.state == "failed" and "Making the environment could not start" in missing.message
    (tmp_path / "b").write_text("a file where the environment's folder would go")
    blocked = module.WorkerInstall(tmp_path / "b", sys.executable)
    blocked.wait(timeout=120)
    assert blocked.state == "failed" and blocked.message.startswith("Making the environment failed (exit code")
    assert "run the install again" in blocked.message and blocked.step == 0


def test_cancel_stops_the_running_step(tmp_path: Path):
    install = _worker_install().WorkerInstall(tmp_path / "c", sys.executable)
    install.cancel()
    install.wait(timeout=120)
    assert install.state == "cancelled" and "run it again" in install.message
    assert install.step == 0, "cancelled in its first step, nothing after it ran"
