"""The preview video: the footage with the fitted head drawn over it, to judge a capture at a glance.

The face of the head model is posed with the capture's parameters, projected with the capture's camera
(OpenCV pinhole: x right, y down, z forward) and drawn as a translucent shaded surface; MediaPipe's
landmarks are small dots on top, so any gap between the fit and the tracking shows. Frames where no face
was found (their parameters are interpolated) get a red frame and a note.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from .builtin_model import KIND as BUILTIN, model_from_capture
from .errors import KinesicsError, ModelFileError
from .head_model import HeadModel
from .model_data import HeadModelData
from .video import read_frames

OVERLAY_ALPHA = 0.45
MESH_BGR = np.array([250.0, 215.0, 170.0])   # a light blue-grey that shows on skin
LANDMARK_BGR = (60, 230, 60)
NO_FACE_BGR = (40, 40, 230)
# A key light above and left of the lens (camera space: y down, z forward), so the face's relief shows.
LIGHT = np.array([-0.3, -0.5, -1.0]) / np.linalg.norm([-0.3, -0.5, -1.0])
AMBIENT = 0.3
SUBPIXEL_BITS = 2  # cv2 fixed-point drawing: quarter-pixel vertex positions
BATCH = 32         # frames posed together


def face_triangles(data: HeadModelData) -> np.ndarray:
    """Triangles (F',3) worth drawing: the built-in rig whole; another model's surface seen from the front
    on its neutral head (no mouth interior, teeth or back of the head), inside the landmarks' outline."""
    if data.kind == BUILTIN:
        return np.asarray(data.faces)
    from .embedding import HeadRenderer, landmark_embedding  # ray casting, only for full head models

    head = HeadRenderer(data)
    camera = head.portrait_camera()
    hits = head.scene.cast(*camera.rays(camera.pixel_centres()))
    seen = np.zeros(data.n_vertices, bool)
    seen[head.faces[hits.triangle[hits.hit]]] = True
    # Triangles smaller than a pixel of the render can be missed by every ray: keep those whose corners were seen.
    triangles = head.faces[seen[head.faces].all(axis=1)]
    emb = landmark_embedding(data)
    outline = cv2.convexHull(camera.project(emb.points[emb.valid]).astype(np.float32))
    centres = camera.project(data.template[triangles].mean(axis=1))
    inside = np.array([cv2.pointPolygonTest(outline, (float(x), float(y)), False) >= 0 for x, y in centres], bool)
    return triangles[inside]


class Overlay:
    """Poses a model's face with capture parameters and draws it over video frames."""

    def __init__(self, data: HeadModelData, device: str = "cpu"):
        triangles = face_triangles(data)
        used, local = np.unique(triangles, return_inverse=True)
        self.triangles = local.reshape(-1, 3)
        # Only the drawn vertices are posed: each is a "surface point" sitting on one of its own corners.
        corner = np.tile([1.0, 0.0, 0.0], (len(used), 1))
        self.model = HeadModel(data, device).subset(np.repeat(used[:, None], 3, axis=1), corner)

    def camera_points(self, capture: dict, rows: slice) -> np.ndarray:
        """Camera-space positions (B,V',3) of the drawn vertices for frames `rows` of the capture."""
        as_t = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=self.model.device)  # noqa: E731
        params = {k: as_t(capture[k][rows]) for k in ("expression", "global_pose", "neck_pose", "jaw_pose",
                                                      "eye_pose", "translation")}
        shape = as_t(capture["shape"])[None]
        with torch.no_grad():
            return self.model(shape=shape, **params).vertices.double().cpu().numpy()

    def draw(self, frame: np.ndarray, points: np.ndarray, focal: float, cx: float, cy: float,
             landmarks_px: np.ndarray | None) -> np.ndarray:
        """frame (H,W,3) BGR; points (V',3) camera space; landmarks_px (478,2) or None when no face was found."""
        z = np.maximum(points[:, 2], 1e-6)
        pix = np.stack([focal * points[:, 0] / z + cx, focal * points[:, 1] / z + cy], axis=1)
        tri3d = points[self.triangles]
        centres = tri3d.mean(axis=1)
        normals = np.cross(tri3d[:, 1] - tri3d[:, 0], tri3d[:, 2] - tri3d[:, 0])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        # Normals turned towards the camera, so any winding shades alike.
        normals *= -np.sign((normals * centres).sum(1, keepdims=True) + 1e-30)
        lambert = np.clip(normals @ LIGHT, 0.0, 1.0)
        colours = (MESH_BGR * (AMBIENT + (1 - AMBIENT) * lambert[:, None])).round().astype(int)
        order = np.argsort(-centres[:, 2])  # painter's algorithm: far triangles first
        polys = np.round(pix[self.triangles] * (1 << SUBPIXEL_BITS)).astype(np.int32)
        layer = frame.copy()
        for i in order:
            cv2.fillConvexPoly(layer, polys[i], colours[i].tolist(), cv2.LINE_AA, SUBPIXEL_BITS)
        out = cv2.addWeighted(layer, OVERLAY_ALPHA, frame, 1 - OVERLAY_ALPHA, 0)
        if landmarks_px is None:
            h, w = out.shape[:2]
            cv2.rectangle(out, (2, 2), (w - 3, h - 3), NO_FACE_BGR, 4)
            cv2.putText(out, "no face", (12, 32), cv2.FONT_HERSHEY_SIMPLEX, 0.9, NO_FACE_BGR, 2, cv2.LINE_AA)
        else:
            radius = round(max(1.0, min(out.shape[:2]) / 500) * (1 << SUBPIXEL_BITS))  # visible on 4K too
            for x, y in np.round(landmarks_px * (1 << SUBPIXEL_BITS)).astype(int):
                cv2.circle(out, (int(x), int(y)), radius, LANDMARK_BGR, -1, cv2.LINE_AA, SUBPIXEL_BITS)
        return out


def _stride(frame_index: np.ndarray) -> int:
    steps = np.diff(frame_index)
    return int(steps[0]) if len(steps) and (steps == steps[0]).all() and steps[0] > 0 else 1


def write_preview(capture: dict, video: str | os.PathLike, out: str | os.PathLike,
                  data: HeadModelData | None = None, device: str = "cpu",
                  on_frame: Callable[[int, int], None] | None = None) -> Path:
    """Write `out` (mp4v) with the capture's fit drawn over the frames of `video` it was made from.

    data: the capture's head model; None for a built-in capture (it carries its rig). The video plays at the
    capture's frame rate divided by its stride, so it keeps real time. on_frame(done, total) reports progress.
    """
    if data is None:
        if str(capture["model"]) != BUILTIN:
            raise ModelFileError(f"the preview of a '{capture['model']}' capture needs its head model; "
                                 "pass the same --model as for the capture")
        data = model_from_capture(capture)
    if "model_hash" in capture and data.content_hash and str(capture["model_hash"]) != data.content_hash:
        raise ModelFileError("the head model given for the preview is not the one the capture was made with")
    frame_index = np.asarray(capture["frame_index"], np.int64)
    if len(frame_index) == 0:
        raise KinesicsError("the capture holds no frame, so there is no preview to draw")
    overlay = Overlay(data, device)
    stride = _stride(frame_index)
    row_of = {int(f): r for r, f in enumerate(frame_index)}
    focal = np.broadcast_to(np.asarray(capture["focal_px"], np.float64), frame_index.shape)
    cx, cy = float(capture["cx"]), float(capture["cy"])
    width, height = (int(v) for v in capture["image_size"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix or '.mp4'}")  # the suffix picks the container
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(capture["fps"]) / stride,
                             (width, height))
    if not writer.isOpened():
        raise KinesicsError(f"{out}: cannot write a video there; choose a writable path ending in .mp4")
    written, cached = 0, (slice(0, 0), None)
    try:
        for index, frame in read_frames(video, int(frame_index[0]), int(frame_index[-1]) + 1, stride):
            row = row_of.get(index)
            if row is None:
                continue
            if frame.shape[1::-1] != (width, height):
                raise KinesicsError(f"{video}: frames are {frame.shape[1]}x{frame.shape[0]}, the capture was made "
                                    f"on {width}x{height} footage; give the video the capture was made from")
            if not cached[0].start <= row < cached[0].stop:
                rows = slice(row, min(row + BATCH, len(frame_index)))
                cached = (rows, overlay.camera_points(capture, rows))
            points = cached[1][row - cached[0].start]
            lms = capture["landmarks"][row, :, :2] * (width, height) if capture["valid"][row] else None
            writer.write(overlay.draw(frame, points, float(focal[row]), cx, cy, lms))
            written += 1
            if on_frame:
                on_frame(written, len(frame_index))
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    writer.release()
    os.replace(tmp, out)
    return out
