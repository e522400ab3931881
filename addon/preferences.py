"""Add-on preferences: the worker's Python, the head-model files, the device; a worker check."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy

from ..bridge.client import WorkerClient
from ..core.errors import KinesicsError
from .worker_install import WorkerInstall, venv_python

ROOT_PACKAGE = __package__.rpartition(".")[0]  # the extension root (preferences are keyed by it)
EXTENSION_ROOT = Path(__file__).resolve().parent.parent


def _default_python() -> str:
    """The project's own environment when the extension runs from a checkout set up by setup.sh."""
    venv = EXTENSION_ROOT / ".venv"
    exe = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    return str(exe) if exe.exists() else ""


class KINESICS_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    worker_python: bpy.props.StringProperty(
        name="Worker Python", subtype='FILE_PATH', default=_default_python(),
        description="Python interpreter the capture worker runs in, outside Blender: Install Worker sets it, or "
                    "the environment setup.sh made, or one with the worker installed (pip install \".[worker]\", "
                    "see the README)")
    flame_model: bpy.props.StringProperty(
        name="FLAME Model", subtype='FILE_PATH',
        description="FLAME model file (generic_model.pkl or flame2023.pkl from the FLAME website)")
    ict_model: bpy.props.StringProperty(
        name="ICT-FaceKit Folder", subtype='DIR_PATH',
        description="ICT-FaceKit's FaceXModel folder (or its packed .npz file)")
    capture_folder: bpy.props.StringProperty(
        name="Capture Folder", subtype='DIR_PATH',
        description="Where each capture is saved as a .npz (one file per capture, never deleted by Kinesics); "
                    "empty: the extension's own user folder")
    device: bpy.props.EnumProperty(
        name="Device", items=[('cpu', "CPU", "Capture on the processor"),
                              ('cuda', "CUDA GPU", "Capture on an NVIDIA GPU (needs torch with CUDA)")])
    check_result: bpy.props.StringProperty(name="Worker Check", options={'SKIP_SAVE'})
    torch_index: bpy.props.StringProperty(
        name="Torch Index",
        description="For an NVIDIA GPU: the package index of a CUDA build of torch for Install Worker (for example "
                    "https://download.pytorch.org/whl/cu128); empty installs the CPU build")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "worker_python")
        row = layout.row()
        row.operator("kinesics.check_worker", icon='CHECKMARK')
        if self.check_result:
            row.label(text=self.check_result)
        box = layout.box()
        if INSTALL is not None and INSTALL.state == "running":
            box.progress(factor=INSTALL.fraction, type='BAR', text=INSTALL.message)
            box.operator("kinesics.install_worker_cancel", icon='CANCEL')
        else:
            row = box.row()
            row.operator("kinesics.install_worker", icon='IMPORT')
            row.prop(self, "torch_index", text="")
            if INSTALL is not None:
                box.label(text=INSTALL.message, icon='CHECKMARK' if INSTALL.state == "done" else 'ERROR')
        layout.prop(self, "device")
        layout.prop(self, "flame_model")
        layout.prop(self, "ict_model")
        layout.prop(self, "capture_folder")


def get(context: bpy.types.Context | None = None) -> KINESICS_AP_preferences:
    return (context or bpy.context).preferences.addons[ROOT_PACKAGE].preferences


def model_path(prefs: KINESICS_AP_preferences, choice: str) -> str | None:
    """The file of the chosen head model ('FLAME', 'ICT'), None for the built-in one; KinesicsError if unset."""
    if choice == 'BUILTIN':
        return None
    path = bpy.path.abspath(prefs.flame_model if choice == 'FLAME' else prefs.ict_model)
    if not path:
        name = "FLAME Model" if choice == 'FLAME' else "ICT-FaceKit Folder"
        raise KinesicsError(f"No {name} is set: choose its file in Edit > Preferences > Add-ons > Kinesics.")
    return path.rstrip("/\\") if os.path.isdir(path) else path


def model_candidates(prefs: KINESICS_AP_preferences) -> list[str]:
    """The model files the preferences name, where a capture's own model is looked for."""
    return [bpy.path.abspath(p) for p in (prefs.flame_model, prefs.ict_model) if p]


def capture_folder(prefs: KINESICS_AP_preferences) -> str:
    """The folder captures are saved in (created when missing)."""
    chosen = bpy.path.abspath(prefs.capture_folder)
    if not chosen:
        return bpy.utils.extension_path_user(ROOT_PACKAGE, path="captures", create=True)
    os.makedirs(chosen, exist_ok=True)
    return chosen


def worker_python(prefs: KINESICS_AP_preferences) -> str:
    """The worker's interpreter: Worker Python, or where Install Worker put it when that is left empty (the
    preferences were reset, or not saved after the install)."""
    path = bpy.path.abspath(prefs.worker_python)
    if not path:
        installed = venv_python(worker_folder())
        path = str(installed) if installed.is_file() else ""
    if not path or not os.path.isfile(path):
        raise KinesicsError("The worker's Python is not set or does not exist: press Install Worker in the Kinesics "
                            "preferences, or run setup.sh (or install the worker alone, see the README) and set "
                            "Worker Python to that environment's python (.venv/bin/python after setup.sh).")
    return path


def check_worker(python_exe: str) -> str:
    """Start a worker with `python_exe`, ask its versions, stop it; a one-line result for the user."""
    client = WorkerClient.start(python_exe, timeout=60.0)
    try:
        info = client.hello()
    finally:
        client.shutdown()
    return f"Worker OK: Kinesics {info.get('version', '?')}, protocol {info.get('protocol', '?')}"


class KINESICS_OT_check_worker(bpy.types.Operator):
    """Start the capture worker once and report its versions"""

    bl_idname = "kinesics.check_worker"
    bl_label = "Check Worker"

    def execute(self, context):
        prefs = get(context)
        try:
            prefs.check_result = check_worker(worker_python(prefs))
        except KinesicsError as err:
            prefs.check_result = "Worker failed"
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        self.report({'INFO'}, prefs.check_result)
        return {'FINISHED'}


INSTALL: WorkerInstall | None = None  # the worker install under way, or the last one (its outcome is shown)


def worker_folder() -> Path:
    """Where Install Worker puts the worker's environment: the extension's user folder."""
    return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, path="worker", create=True))


def _follow_install() -> float | None:
    """Timer: when the install ends, point Worker Python at it; redraw the preferences meanwhile."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == 'PREFERENCES':
                area.tag_redraw()
    if INSTALL is None or INSTALL.state == "running":
        return 0.5
    if INSTALL.state == "done":
        get().worker_python = str(INSTALL.python)
    return None


class KINESICS_OT_install_worker(bpy.types.Operator):
    """Make the capture worker's Python environment (Blender's own Python 3.11, torch, MediaPipe; a few minutes
    and about 1.5 GB, downloaded once) and set Worker Python to it"""

    bl_idname = "kinesics.install_worker"
    bl_label = "Install Worker"

    @classmethod
    def poll(cls, context):
        return INSTALL is None or INSTALL.state != "running"

    def execute(self, context):
        global INSTALL
        INSTALL = WorkerInstall(worker_folder(), sys.executable, get(context).torch_index.strip())
        if not bpy.app.timers.is_registered(_follow_install):
            bpy.app.timers.register(_follow_install, first_interval=0.5)
        self.report({'INFO'}, "Installing the capture worker in the background")
        return {'FINISHED'}


class KINESICS_OT_install_worker_cancel(bpy.types.Operator):
    """Stop the worker install; running it again goes on where it stopped"""

    bl_idname = "kinesics.install_worker_cancel"
    bl_label = "Cancel Install"

    def execute(self, context):
        if INSTALL is not None:
            INSTALL.cancel()
        return {'FINISHED'}


def unregister() -> None:
    """Stop an install under way (the add-on is being disabled)."""
    if INSTALL is not None and INSTALL.state == "running":
        INSTALL.cancel()
    if bpy.app.timers.is_registered(_follow_install):
        bpy.app.timers.unregister(_follow_install)


classes = (KINESICS_AP_preferences, KINESICS_OT_check_worker, KINESICS_OT_install_worker,
           KINESICS_OT_install_worker_cancel)
