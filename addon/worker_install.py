"""One-click install of the capture worker's environment from Blender's preferences (no bpy here).

A virtual environment is made with Blender's own Python (3.11, the version the worker's wheels need); torch goes
in first, pinned (a CPU build, or the CUDA build of an index the user names), so nothing later pulls another build
in its place; then the worker's pinned requirements (worker_requirements.txt). The capture code itself is not
installed: the worker runs from the extension's folder (bridge.client puts it on the worker's path). The steps run
in a thread; the preferences' timer reads the progress and can cancel.
"""
from __future__ import annotations

import collections
import os
import subprocess
import threading
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("worker_requirements.txt")
TORCH = "torch==2.13.0"


def venv_python(folder: Path) -> Path:
    """The interpreter of the virtual environment in `folder`."""
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_steps(folder: Path, base_python: str, torch_index: str = "") -> list[tuple[str, list[str]]]:
    """(what the user reads, command) for each step; every step is safe to repeat."""
    python = str(venv_python(folder))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    return [("Making the environment", [base_python, "-m", "venv", str(folder)]),
            ("Installing torch", pip + [TORCH] + (["--index-url", torch_index] if torch_index else [])),
            ("Installing MediaPipe and the rest", pip + ["-r", str(REQUIREMENTS)])]


class WorkerInstall:
    """The steps of `install_steps`, run one after another in a thread of their own."""

    def __init__(self, folder: Path, base_python: str, torch_index: str = ""):
        self.python = venv_python(folder)
        self.steps = install_steps(folder, base_python, torch_index)
        self.step = 0
        self.state = "running"  # running, done, failed, cancelled
        self.message = self.steps[0][0]
        self.output: collections.deque[str] = collections.deque(maxlen=30)
        self._cancel = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="kinesics-worker-install", daemon=True)
        self._thread.start()

    @property
    def fraction(self) -> float:
        return 1.0 if self.state == "done" else self.step / len(self.steps)

    def _run(self) -> None:
        for self.step, (label, command) in enumerate(self.steps):
            self.message = f"{label} ({self.step + 1} of {len(self.steps)})…"
            try:
                self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True, errors="replace")
            except OSError as err:
                self.state, self.message = "failed", f"{label} could not start ({err})."
                return
            for line in self._process.stdout:
                self.output.append(line.rstrip())
            code = self._process.wait()
            if self._cancel.is_set():
                self.state, self.message = "cancelled", f"Cancelled while {label.lower()}; run it again to go on."
                return
            if code != 0:
                last = next((line for line in reversed(self.output) if line.strip()), "")
                self.state = "failed"
                self.message = (f"{label} failed (exit code {code}): {last} Check the network connection to the "
                                "package index, then run the install again; it goes on where it stopped.")
                return
        self.state, self.message = "done", f"Worker installed: {self.python}"

    def cancel(self) -> None:
        self._cancel.set()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
