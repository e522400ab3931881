"""Capture from video: one worker (bridge.client), one job at a time, drained by a Blender timer.

States: idle -> running -> done | failed | cancelled (-> running again on the next Start). Every streamed
chunk is keyed as it arrives, so whatever arrived stays keyed when the job fails, is cancelled or the
worker dies. `step()` is the timer itself: tests call it directly (timers never fire in bpy-as-module).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import bpy
import numpy as np

from ..bridge.client import CaptureAccumulator, WorkerClient
from ..bridge.errors import BridgeError
from ..core import capture_file
from ..core.errors import KinesicsError
from . import footage, models, preferences, takes
from .animate import Track, begin, ensure_rig, finish, key_frames

POLL_S = 0.1
FINAL = {"done": "done", "error": "failed", "cancelled": "cancelled", "worker_died": "failed"}


@dataclass
class Session:
    """What the panel shows, and the live objects behind it."""

    state: str = "idle"  # idle, running, done, failed, cancelled
    message: str = ""
    done: int = 0
    total: int = 0
    fps: float = 0.0
    eta_s: float | None = None
    frames_keyed: int = 0
    cancelling: bool = False
    saved_path: str = ""
    client: WorkerClient | None = None
    job: CaptureAccumulator | None = None
    scene_name: str = ""
    footage: str = ""
    name: str = ""             # the saved capture file's name starts with it
    show_footage: bool = True
    footage_sound: bool = True
    time_mapping: str = 'CAPTURE'
    model_path: str | None = None
    model_candidates: list[str] = field(default_factory=list)
    track: Track | None = None
    pending: list[dict] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else 0.0


SESSION = Session()


def start(scene: bpy.types.Scene, worker_python: str, model_path: str | None, model_candidates: list[str],
          device: str = "cpu") -> None:
    """Submit a capture of `scene.kinesics.footage` to the worker (started on first use) and start the timer.

    Raises KinesicsError (BridgeError, ModelFileError) with what to do; nothing changes then.
    """
    settings = scene.kinesics
    video = bpy.path.abspath(settings.footage)
    if not video or not os.path.isfile(video):
        raise KinesicsError(f"The footage '{settings.footage}' does not exist: choose a video file, or one frame "
                            "of an image sequence.")
    if settings.frame_end and settings.frame_end <= settings.frame_start:
        raise KinesicsError("The End frame must come after the Start frame (or be 0 for the whole video).")
    options = _fit_options(settings)
    if settings.fps:
        options["fps"] = settings.fps
    _launch(scene, worker_python, model_path, model_candidates, video, "Starting the capture…",
            lambda client: client.submit(video=video, model=model_path, start=settings.frame_start,
                                         end=settings.frame_end or None, stride=settings.stride, device=device,
                                         max_faces=settings.faces, mirror_pass=settings.mirror_pass, **options))


def start_refit(scene: bpy.types.Scene, worker_python: str, model_path: str | None, model_candidates: list[str],
                capture_path: str, device: str = "cpu") -> None:
    """Submit a refit of the capture file at `capture_path` (its landmarks fitted again with the panel's model,
    lens and smoothing; no tracking) and key it as a capture streams. Errors as `start`."""
    if not os.path.isfile(capture_path):
        raise KinesicsError(f"The capture file '{capture_path}' does not exist: choose a saved capture (.npz).")
    video = bpy.path.abspath(scene.kinesics.footage)
    options = _fit_options(scene.kinesics)
    _launch(scene, worker_python, model_path, model_candidates, video if os.path.exists(video) else "",
            "Fitting the capture again…",
            lambda client: client.refit(capture_path, model=model_path, device=device, **options),
            name=f"{os.path.splitext(os.path.basename(capture_path))[0]}_refit")


def _fit_options(settings) -> dict:
    """The panel's settings that a capture and a refit share: a known lens, the smoothing, the expressiveness, a
    neutral frame and the actor's face from an earlier capture. Raises KinesicsError for a face file that is not
    there."""
    options = {"smoothing": settings.smoothing, "expressiveness": settings.expressiveness}
    if settings.use_lens:
        options["lens_mm"] = settings.lens_mm
    if settings.use_neutral_frame:
        options["neutral_frame"] = settings.neutral_frame
    if settings.use_face_from:
        path = bpy.path.abspath(settings.face_from)
        if not path or not os.path.isfile(path):
            raise KinesicsError(f"The Actor's Face capture '{settings.face_from}' does not exist: choose an earlier "
                                "capture (.npz) of this actor, or untick Actor's Face.")
        options["face_from"] = path
    return options


def _launch(scene: bpy.types.Scene, worker_python: str, model_path: str | None, model_candidates: list[str],
            footage_path: str, message: str, submit: Callable[[WorkerClient], int], name: str = "") -> None:
    """Start the worker if need be, submit the job and follow it with the timer."""
    global SESSION
    if SESSION.running:
        raise KinesicsError("A capture is already running: cancel it first, or wait for it to finish.")
    settings = scene.kinesics
    if model_path is not None:
        models.preload(model_path)  # read it while the worker works; raises now if the file is missing
    client = SESSION.client if SESSION.client is not None and SESSION.client.alive else None
    if client is None:
        client = SESSION.client = WorkerClient.start(worker_python)  # kept, so shutdown() stops it
    job_id = submit(client)
    SESSION = Session(state="running", message=message, client=client,
                      job=CaptureAccumulator(job_id), scene_name=scene.name, footage=footage_path,
                      name=name or os.path.splitext(os.path.basename(footage_path))[0],
                      show_footage=settings.show_footage, footage_sound=settings.footage_sound,
                      time_mapping=settings.time_mapping,
                      model_path=model_path, model_candidates=[model_path or ""] + model_candidates)
    if not bpy.app.timers.is_registered(step):
        bpy.app.timers.register(step, first_interval=POLL_S)


def cancel() -> None:
    """Ask the running job to stop; its 'cancelled' event (with the frames kept) ends the session."""
    if not SESSION.running or SESSION.cancelling:
        return
    SESSION.cancelling = True
    SESSION.message = "Cancelling…"
    try:
        SESSION.client.cancel(SESSION.job.job_id)
    except BridgeError as err:
        _end("failed", f"{err} What arrived before is kept.")


def step() -> float | None:
    """The timer's body: take every event the worker sent; returns the delay before the next step, None when
    finished. Never raises into Blender: a failure here ends the job and keeps what was keyed."""
    s = SESSION
    if not s.running:
        return None
    try:
        s.pending.extend(s.client.poll())
        while s.pending and s.running:
            event = s.pending[0]
            if event["type"] == "header" and s.model_path is not None and not models.ready(s.model_path):
                break  # the model file is still being read on its thread: keep the UI responsive
            s.pending.pop(0)
            if s.job.feed(event):
                _handle(event)
    except Exception as err:  # noqa: BLE001 - a raising timer would silently stop the capture
        _abandon_job()
        _end("failed", f"The capture stopped: {err}" + (" What arrived before is kept." if s.frames_keyed else ""))
    _redraw()
    return POLL_S if s.running else None


def _abandon_job() -> None:
    try:
        SESSION.client.cancel(SESSION.job.job_id)
    except BridgeError:
        pass  # the worker is gone already


def _scene() -> bpy.types.Scene:
    scene = bpy.data.scenes.get(SESSION.scene_name)
    if scene is None:
        raise KinesicsError(f"the scene '{SESSION.scene_name}' the capture was started in is gone")
    return scene


def _handle(event: dict) -> None:
    s = SESSION
    kind = event["type"]
    if kind == "header":
        scene = _scene()
        header = event["data"]
        rig = ensure_rig(header, scene.kinesics.rig, lambda: models.for_capture(header, s.model_candidates),
                         scene.collection)
        scene.kinesics.rig = rig
        s.track = begin(scene, rig, header, s.time_mapping, s.name)
        _note_on_take(s.track, footage=s.footage)
        if s.footage:
            footage.present(scene, s.track.camera, s.footage, s.show_footage, s.footage_sound)
        s.total = int(header.get("n_frames", 0))
        s.message = "Capturing…"
    elif kind == "chunk":
        key_frames(s.track, event["data"])
        s.frames_keyed += len(event["data"]["frame_index"])
    elif kind == "preparing":
        s.message = f"First use of this model: {event.get('message', 'preparing')} ({event.get('fraction', 0):.0%})"
    elif kind == "progress":
        s.done, s.total = int(event["done"]), int(event["total"])
        s.fps, s.eta_s = float(event.get("fps") or 0.0), event.get("eta_s")
    elif kind in FINAL:
        _end(FINAL[kind], _final_message(kind, event))


def _final_message(kind: str, event: dict) -> str:
    if kind == "done":
        summary = event.get("summary", {})
        return (f"Captured {summary.get('frames', SESSION.frames_keyed)} frames "
                f"({summary.get('valid_frames', '?')} with a face) in {summary.get('seconds', 0):.1f} s.")
    if kind == "error":
        kept = f" The {SESSION.frames_keyed} frames keyed before are kept." if SESSION.frames_keyed else ""
        return event.get("message", "The capture failed.") + kept
    return event.get("message", "The capture ended.")


def _end(state: str, message: str) -> None:
    """Finish the session: frame what was keyed, save it as a capture file, tell the user."""
    s = SESSION
    s.state, s.message, s.cancelling = state, message, False
    if s.client is not None and not s.client.alive:
        s.client = None  # a dead worker is restarted on the next Start
    if s.track is not None:
        try:
            finish(_scene(), s.track)
        except (KinesicsError, ReferenceError):
            pass  # the scene or the rig is gone: nothing to frame
    if s.job is not None and s.job.frames:
        capture = s.job.capture()
        notes = [str(w) for w in np.asarray(capture.get("warnings", ()), dtype=str).ravel()]
        if notes:  # what the capture says about itself (an uncertain calibration, a face turned far, ...)
            s.message += " Note: " + " ".join(f"{n[:1].upper()}{n[1:]}" for n in notes)
        try:
            s.saved_path = str(_save(capture))
        except (KinesicsError, OSError) as err:
            s.message += f" (The capture file could not be saved: {err})"
        else:
            _take_saved(s.track, s.saved_path)
    _notify('INFO' if state == "done" else 'ERROR', s.message)
    try:
        bpy.ops.ed.undo_push(message="Kinesics Capture")
    except RuntimeError:
        pass  # no undo stack (background mode)
    _redraw()


def _note_on_take(track: Track | None, **values: str | int) -> None:
    """Note the footage or the capture file on the take being keyed (nothing when its rig is gone)."""
    try:
        if track is not None:
            takes.note(track.rig.armature, **values)
    except ReferenceError:
        pass


def _take_saved(track: Track | None, path: str) -> None:
    """The saved capture file belongs to the take just keyed, and is what the Retarget panel reads next."""
    _note_on_take(track, capture_file=path)
    try:
        takes.retarget_from(_scene(), path)
    except KinesicsError:
        pass  # the scene is gone


def _save(capture: dict):
    folder = preferences.capture_folder(preferences.get())
    stem = SESSION.name or "capture"
    return capture_file.save(os.path.join(folder, f"{stem}_{time.strftime('%Y%m%d_%H%M%S')}.npz"), capture)


def _notify(level: str, message: str) -> None:
    """Show `message` in the status bar (an operator report is the only way from a timer)."""
    try:
        bpy.ops.kinesics.notify(level=level, message=message)
    except (RuntimeError, AttributeError):
        pass  # an ERROR report raises back into Python; it is in the status bar all the same


def _redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == 'VIEW_3D':
                area.tag_redraw()


def shutdown() -> None:
    """Stop the timer and the worker (the add-on is being disabled)."""
    global SESSION
    if bpy.app.timers.is_registered(step):
        bpy.app.timers.unregister(step)
    if SESSION.client is not None:
        SESSION.client.shutdown()
    SESSION = Session()
