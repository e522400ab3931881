"""Footage of ICT-FaceKit heads with painted eyebrows, lips and irises and eyes that turn, rendered by Kinesics' CPU
ray caster, for the brow, gaze and mouth channels: the shared renders have no eyebrows (MediaPipe can only guess
where brows are), lips of the skin's colour, and eyeballs that never turn (ICT-FaceKit's eyeLook shapes move the
lids only)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from core.embedding import HeadRenderer
from core.model_data import HeadModelData
from core.render import Camera, RayScene
from core.rotations import rotvec_to_matrix

EYEBROW = np.array([0.045, 0.030, 0.022])  # linear RGB of brow hair
LIPS = np.array([0.45, 0.17, 0.15])  # linear RGB
PIVOT = np.array([0.0, -0.10, -0.02])  # head rotations turn about the top of the neck (metres, model space)
EYE_CENTRE_DEPTH = 0.013  # an eye turns about a point this far behind the front of its cornea (metres)
# ICT-FaceKit's closed lids do not quite cover its eyeballs, so painted irises showed through a blink (MediaPipe read
# a full blink as 0.2); eyeballs drawn this much smaller, about the same centre, hide under closed lids (at 0.97 the
# pupils still showed).
EYEBALL_SCALE = 0.94


def gaze_matrices(gaze: np.ndarray) -> np.ndarray:
    """Rotations (...,3,3) turning an eye that looks along +Z to look along (yaw, pitch) (...,2), radians: yaw
    towards +X (the subject's left), pitch up (+Y). The gaze direction is (cos p sin y, sin p, cos p cos y)."""
    yaw, pitch = np.asarray(gaze, np.float64)[..., 0], np.asarray(gaze, np.float64)[..., 1]
    about_y = rotvec_to_matrix(np.stack([np.zeros_like(yaw), yaw, np.zeros_like(yaw)], -1))
    about_x = rotvec_to_matrix(np.stack([-pitch, np.zeros_like(pitch), np.zeros_like(pitch)], -1))
    return about_y @ about_x


def eye_turn(data: HeadModelData, identity: np.ndarray, ids: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """Displacement (T,len(ids),3) of vertices `ids` of a head with `identity` when both eyes look along gaze (T,2)
    (see `gaze_matrices`): each eyeball, drawn EYEBALL_SCALE its size, turns about its centre of rotation,
    EYE_CENTRE_DEPTH behind the front of its cornea; other vertices stay."""
    balls = np.asarray(data.regions["eyeballs"], np.int64)
    rest = data.template[balls] + data.shapedirs[balls] @ identity
    ids = np.asarray(ids, np.int64)
    turns = gaze_matrices(gaze)
    out = np.zeros((len(turns), len(ids), 3))
    for side in (rest[:, 0] >= 0, rest[:, 0] < 0):  # left eye (+X), right eye
        centre = (rest[side].min(0) + rest[side].max(0)) / 2
        centre[2] = rest[side][:, 2].max() - EYE_CENTRE_DEPTH
        rows = np.flatnonzero(np.isin(ids, balls[side]))
        local = data.template[ids[rows]] + data.shapedirs[ids[rows]] @ identity - centre
        out[:, rows] = EYEBALL_SCALE * local @ turns.transpose(0, 2, 1) - local
    return out


class PaintedHead:
    """An ICT-FaceKit head (`data`, from `core.model_data.load_ict_npz`) with one identity, rendered with skin,
    mouth and eyes as the landmark embedding's renderer paints them, plus eyebrows along ICT-FaceKit's brow
    landmark vertices (68-point scheme 17-21 and 22-26, from its `vertex_indices.json`), tapering outwards, and
    lips within its outer lip contour (48-59)."""

    def __init__(self, data: HeadModelData, vertex_indices: Path, identity: np.ndarray):
        self.data = data
        self.identity = identity
        self.renderer = HeadRenderer(data)
        self.rest = data.template + data.shapedirs @ identity
        marks = json.loads(Path(vertex_indices).read_text())["idx_to_landmark_verts"]
        self.colour = self._painted(marks[48:60], marks[17:22][::-1], marks[22:27])  # each brow from its inner end

    def _painted(self, lips: list[int], *brows: list[int]) -> np.ndarray:
        """Per-triangle linear RGB (F,3) of the renderer's triangles."""
        data, faces = self.data, self.renderer.faces
        centres = data.template[faces].mean(1)
        colour = self.renderer.albedo(centres, np.arange(len(centres)))
        on_face = np.zeros(data.n_vertices, bool)
        on_face[data.regions["face"]] = True
        on_face = on_face[faces].all(1)
        contour = (data.template[lips][:, :2] * 1e4).astype(np.float32)  # seen from the front, 0.1 mm units
        near = np.flatnonzero(on_face & (centres[:, 2] > data.template[lips][:, 2].min() - 0.005))
        inside = [cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in centres[near, :2] * 1e4]
        colour[near[np.asarray(inside, bool)]] = LIPS
        for ids in brows:
            line = data.template[ids]
            lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
            starts = np.concatenate([[0.0], np.cumsum(lengths)])
            best, along = np.full(len(centres), np.inf), np.zeros(len(centres))
            for k in range(len(line) - 1):
                a, ab = line[k], line[k + 1] - line[k]
                t = np.clip((centres - a) @ ab / (ab @ ab), 0.0, 1.0)
                dist = np.linalg.norm(centres - (a + t[:, None] * ab), axis=1)
                closer = dist < best
                best[closer], along[closer] = dist[closer], (starts[k] + t[closer] * lengths[k]) / starts[-1]
            half_width = 0.0050 * (1 - along) + 0.0028 * along  # metres
            colour[(best < half_width) & on_face] = EYEBROW
        return colour

    def posed(self, weights: np.ndarray, rotation: np.ndarray, gaze: np.ndarray = np.zeros(2)) -> np.ndarray:
        """Vertices (V,3), metres, model space, of the head with expression weights (E,), its eyes looking along
        gaze (2,) (see `gaze_matrices`), turned by a rotation vector (3,) about PIVOT."""
        eyes = eye_turn(self.data, self.identity, np.arange(self.data.n_vertices), np.asarray(gaze)[None])[0]
        return (self.rest + self.data.exprdirs @ weights + eyes - PIVOT) @ rotvec_to_matrix(rotation).T + PIVOT

    def frames(self, weights: np.ndarray, rotation: np.ndarray, gaze: np.ndarray, camera: Camera
               ) -> Iterator[np.ndarray]:
        """RGB images (H,W,3) uint8 of the head with expression weights (T,E), gaze (T,2) and head rotation
        vectors (T,3)."""
        for w, r, g in zip(weights, rotation, gaze):
            scene = RayScene(self.posed(w, r, g), self.renderer.faces)
            yield scene.render(camera, lambda p, tri: self.colour[tri]).image


def gaze_directions(eye_pose: np.ndarray) -> np.ndarray:
    """Unit directions (T,3) of both eyes averaged, from a capture's eye_pose (T,6): each eye's +Z (ahead at rest)
    turned, in the model frame."""
    turns = rotvec_to_matrix(np.asarray(eye_pose, np.float64).reshape(-1, 2, 3))
    ahead = turns[:, :, :, 2].mean(1)
    return ahead / np.linalg.norm(ahead, axis=1, keepdims=True)


def gaze_angles(eye_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch (T,) in degrees of `gaze_directions` (yaw towards +X, the subject's left; pitch up)."""
    ahead = gaze_directions(eye_pose)
    return np.degrees(np.arctan2(ahead[:, 0], ahead[:, 2])), np.degrees(np.arcsin(ahead[:, 1]))


def front_camera(focal_px: float, size: int, distance: float = 0.85) -> Camera:
    """A camera `distance` metres in front of the face looking straight at it (down -Z, +Y up)."""
    return Camera.look_at(np.array([0.0, 0.02, distance]), np.array([0.0, 0.02, 0.0]), focal_px, size, size)


def write_video(images, path: Path, fps: float) -> None:
    """RGB images to an mp4 at `path`, written beside it and renamed into place when complete."""
    partial = path.with_name(path.stem + ".partial.mp4")
    writer = None
    for image in images:
        if writer is None:
            writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (image.shape[1], image.shape[0]))
        writer.write(np.ascontiguousarray(image[..., ::-1]))
    writer.release()
    partial.replace(path)
