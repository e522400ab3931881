"""A capture keyed onto a rig: whole (a capture file) or chunk by chunk as the worker streams it.

Time mapping, fixed: a frame shown t seconds after the footage's first (`core.capture_file.times`: for
constant-rate footage, source-video frame i at i / capture_fps) lands on scene frame 1 + t * scene_fps. With
'CAPTURE' the scene takes the capture's frame rate, so every key of constant-rate footage sits on a whole frame;
with 'SCENE' the scene keeps its rate and keys sit at the exact capture times (Blender interpolates between
them). Variable-frame-rate footage is keyed at its timestamps, in step with its sound.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..core import capture_file
from . import models, takes
from .camera_space import ensure_camera, lens_mm
from .joint_tracks import joint_tracks
from .keyframes import FIRST_FRAME, append_keys
from .rig import Rig, build_rig, is_rig, read_rig, reshape_rig

WHOLE_FRAME_TOLERANCE = 1e-6  # frames


@dataclass
class Track:
    """One capture being keyed onto one rig."""

    rig: Rig
    camera: bpy.types.Object
    capture_fps: float
    scene_fps: float
    focal_per_frame: bool
    image_size: tuple[int, int]
    last_quats: np.ndarray | None = None  # (J,4) for quaternion sign continuity across chunks
    first_frame: float | None = None
    last_frame: float | None = None


def _bone_channels(rig: Rig) -> list[tuple[str, int]]:
    return [(f'pose.bones["{n}"].{prop}', i) for n in rig.joint_names
            for prop, width in (("rotation_quaternion", 4), ("location", 3)) for i in range(width)]


def _key_channels(rig: Rig) -> list[tuple[str, int]]:
    return [(f'key_blocks["{k}"].value', 0) for k in rig.expression_keys]


def ensure_rig(header: dict, rig_obj: bpy.types.Object | None, load_model, collection: bpy.types.Collection
               ) -> bpy.types.Object:
    """A rig for the capture described by `header` (model_hash, shape): `rig_obj` itself when it was built
    from the same model (reshaped if the identity differs), else a new rig. load_model() -> HeadModelData
    is only called when the model is needed."""
    shape = np.asarray(header["shape"], np.float64)
    model_hash = str(header.get("model_hash", ""))
    if is_rig(rig_obj) and (not model_hash or rig_obj.get("kinesics_model_hash") == model_hash):
        current = np.asarray(rig_obj["kinesics_shape"], np.float64)
        if current.shape != shape.shape or not np.allclose(current, shape, atol=1e-7):
            reshape_rig(rig_obj, load_model(), shape)
        return rig_obj
    return build_rig(load_model(), shape, collection)


def begin(scene: bpy.types.Scene, rig_obj: bpy.types.Object, header: dict, time_mapping: str = 'CAPTURE',
          take: str = "Capture") -> Track:
    """Prepare `rig_obj` for a capture with static keys `header` (fps, image_size, focal_px, cx, cy, shape):
    set the scene's frame rate (time_mapping 'CAPTURE') and the camera, and start a new take named after
    `take` (the rig's earlier takes are kept)."""
    rig = read_rig(rig_obj)
    fps = float(header["fps"])
    if time_mapping == 'CAPTURE':
        scene.render.fps = max(1, int(round(fps)))
        scene.render.fps_base = scene.render.fps / fps
    scene_fps = scene.render.fps / scene.render.fps_base
    focal = np.asarray(header["focal_px"], np.float64)
    image_size = tuple(int(v) for v in np.asarray(header["image_size"]).ravel()[:2])
    camera = ensure_camera(scene, f"{rig_obj.name} Camera", image_size, float(focal.ravel()[0]),
                           float(header["cx"]), float(header["cy"]))
    rig_obj["kinesics_camera"] = camera
    takes.start(scene, rig_obj, header, take)
    return Track(rig, camera, fps, scene_fps, focal.ndim == 1, image_size)


def scene_frames(track: Track, frames: dict) -> np.ndarray:
    """(T,) scene frames of the capture frames `frames` (a chunk, or a whole capture). Times that land within
    rounding error of a whole frame land on it (248.00000000000003 would key, and end the scene, a frame late)."""
    exact = FIRST_FRAME + capture_file.times(frames, track.capture_fps) * track.scene_fps
    whole = np.round(exact)
    return np.where(np.abs(exact - whole) < WHOLE_FRAME_TOLERANCE, whole, exact)


def key_frames(track: Track, chunk: dict) -> None:
    """Key the consecutive frames of `chunk` (per-frame capture keys, T frames) after those already keyed."""
    frames = scene_frames(track, chunk)
    if len(frames) == 0:
        return
    rig = track.rig
    quats, locations = joint_tracks(chunk, rig.joint_names, rig.joint_expr_dirs, track.last_quats)
    track.last_quats = quats[-1]
    # (T,J,7) -> one row per channel, in _bone_channels' order: each joint's quaternion, then its location.
    bone_values = np.concatenate([quats, locations], axis=2).transpose(1, 2, 0).reshape(-1, len(frames))
    append_keys(rig.armature, f"{rig.armature.name} Capture", frames, dict(zip(_bone_channels(rig), bone_values)))
    expression = np.asarray(chunk["expression"], np.float64)
    append_keys(rig.key, f"{rig.mesh.name} Expressions", frames, dict(zip(_key_channels(rig), expression.T)))
    if track.focal_per_frame and "focal_px" in chunk:
        append_keys(track.camera.data, f"{track.camera.name} Lens", frames,
                    {("lens", 0): lens_mm(chunk["focal_px"], track.image_size)})
    track.first_frame = frames[0] if track.first_frame is None else track.first_frame
    track.last_frame = frames[-1]


def finish(scene: bpy.types.Scene, track: Track) -> None:
    """Frame the scene on what was keyed and show its first frame."""
    if track.first_frame is None:
        return
    scene.frame_start = int(np.floor(track.first_frame))
    scene.frame_end = max(scene.frame_start, int(np.ceil(track.last_frame)))
    scene.frame_set(scene.frame_start)
    takes.note(track.rig.armature, frame_start=scene.frame_start, frame_end=scene.frame_end)


def apply_capture(scene: bpy.types.Scene, rig_obj: bpy.types.Object, capture: dict,
                  time_mapping: str = 'CAPTURE', take: str = "Capture") -> Track:
    """Key a whole capture (core.capture_file.load) onto a rig already shaped for it, as a new take."""
    track = begin(scene, rig_obj, capture, time_mapping, take)
    key_frames(track, capture)
    finish(scene, track)
    return track


def apply_capture_file(scene: bpy.types.Scene, path: str, rig_obj: bpy.types.Object | None,
                       model_candidates: list[str], time_mapping: str = 'CAPTURE') -> Track:
    """Key the capture file at `path` onto `rig_obj` (or a new rig), no worker needed.

    Everything that can fail (the file, the model) is read before the scene is touched: ensure_rig
    loads the model before it builds or reshapes anything."""
    capture = capture_file.load(path)
    rig_obj = ensure_rig(capture, rig_obj, lambda: models.for_capture(capture, model_candidates), scene.collection)
    track = apply_capture(scene, rig_obj, capture, time_mapping, bpy.path.display_name_from_filepath(path))
    takes.note(rig_obj, capture_file=path)
    return track
