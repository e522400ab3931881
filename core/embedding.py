"""Where MediaPipe's 478 face-mesh landmarks lie on a head model's surface, derived for any head.

No embedding file is shipped: the neutral head is rendered from a few views with the ray-cast renderer,
MediaPipe's face mesh (with irises) runs on each render, the ray through every landmark's pixel finds the
surface, and the views are combined per landmark (median in 3D, snapped back onto the surface). Landmarks
whose views disagree (silhouette contours move with the view) or that miss the mesh are marked invalid.
The result is cached per model content under `cache_dir()/embeddings/`.
"""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from .errors import ModelFileError
from .model_data import HeadModelData
from .paths import atomic_write, cache_dir
from .render import Camera, RayScene, Render

N_LANDMARKS = 478
IRISES = slice(468, 478)  # refine_landmarks=True adds the two irises, centre then four rim points each
# Bump when the derivation changes, so caches made by an older one are not reused.
VERSION = 1

# (yaw, pitch) in degrees of the views around the face; MediaPipe's per-view jitter averages out and
# view-dependent (silhouette) landmarks reveal themselves by their spread.
VIEWS = ((0, 0), (-12, 0), (12, 0), (-24, 0), (24, 0), (0, -10), (0, 10), (-12, -8), (12, -8), (-12, 8), (12, 8))
IMAGE_SIZE = 512
FOCAL = 1.5 * IMAGE_SIZE
# A landmark is valid when at least this share of views found it and they agree within MAX_SPREAD metres (RMS).
MIN_VIEW_SHARE = 0.6
MAX_SPREAD = 0.005

SKIN = np.array([0.62, 0.40, 0.31])
SCLERA = np.array([0.75, 0.72, 0.70])
IRIS = np.array([0.12, 0.07, 0.04])
PUPIL = np.array([0.01, 0.01, 0.01])
MOUTH = np.array([0.25, 0.06, 0.06])
# Angular radii (radians, from the eyeball centre about +Z) of the iris and pupil painted on the eyeballs.
IRIS_ANGLE, PUPIL_ANGLE = 0.50, 0.20
# Regions hidden from the renders: ICT-FaceKit's eyelashes and eye helper shells hide the eyes. Models that
# do not name them (the FLAME-format stand-in built from ICT) lose them as loose parts hugging an eyeball.
HIDDEN_REGIONS = ("eye_helpers",)
EYE_SHELL_REACH = 2.0  # eyeball radii

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Embedding:
    """Landmark i lies at barycentric[i] @ template[triangles[i]].

    triangles (478,3) int64 vertex ids; barycentric (478,3); valid (478,) bool; spread (478,) metres, the RMS
    distance of the per-view surface points from the chosen one; points (478,3) rest positions (metres).
    """

    triangles: np.ndarray
    barycentric: np.ndarray
    valid: np.ndarray
    spread: np.ndarray
    points: np.ndarray


class HeadRenderer:
    """The neutral head of a model as a ray scene with a skin-like albedo and painted eyes, for
    MediaPipe (and any preview) to look at. Triangle ids of its hits index `faces`, a subset of data.faces."""

    def __init__(self, data: HeadModelData):
        self._eyes = _eyes(data)
        hidden = _eye_shells(data, self._eyes)
        for name in HIDDEN_REGIONS:
            hidden[data.regions.get(name, [])] = True
        self.faces = data.faces[~hidden[data.faces].any(axis=1)]
        self.scene = RayScene(data.template, self.faces)
        self.template = data.template
        shown = np.unique(self.faces)
        self.bounds = np.stack([data.template[shown].min(0), data.template[shown].max(0)])
        self._mouth = self._faces_in(data, "mouth_interior")
        self._eyeball = self._faces_in(data, "eyeballs")
        # MediaPipe's iris points outline the whole iris, also where the eyelids cover it: they belong on the
        # eyeball, so they are cast against the eyeballs alone (the full head when the model has none).
        self.iris_scene = RayScene(data.template, self.faces[self._eyeball]) if self._eyeball.any() else self.scene

    def _faces_in(self, data: HeadModelData, region: str) -> np.ndarray:
        """(F',) bool: which of self.faces lie wholly in a named region (none when the model lacks it)."""
        inside = np.zeros(data.n_vertices, bool)
        inside[data.regions.get(region, [])] = True
        return inside[self.faces].all(axis=1)

    def albedo(self, points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """Linear RGB (N,3): skin, a dark mouth interior, eyeballs with a dark iris looking along +Z."""
        colour = np.tile(SKIN, (len(points), 1))
        colour[self._mouth[triangles]] = MOUTH
        on_eye = np.flatnonzero(self._eyeball[triangles])
        if len(on_eye) and self._eyes:
            centres = np.stack([c for c, _ in self._eyes])
            p = points[on_eye]
            nearest = np.argmin(((p[:, None] - centres[None]) ** 2).sum(-1), axis=1)
            offset = p - centres[nearest]
            angle = np.arccos(np.clip(offset[:, 2] / np.linalg.norm(offset, axis=1), -1, 1))
            colour[on_eye] = np.where((angle < PUPIL_ANGLE)[:, None], PUPIL,
                                      np.where((angle < IRIS_ANGLE)[:, None], IRIS, SCLERA))
        return colour

    def camera(self, target: np.ndarray, distance: float, yaw_deg: float = 0.0, pitch_deg: float = 0.0,
               size: int = IMAGE_SIZE) -> Camera:
        """A camera `distance` from `target`, turned by yaw (about +Y) and pitch (about +X) from straight ahead (+Z)."""
        yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
        direction = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
        return Camera.look_at(target + distance * direction, target, size * FOCAL / IMAGE_SIZE, size, size)

    def portrait_camera(self) -> Camera:
        """A frontal camera framing the whole rendered head."""
        lo, hi = self.bounds
        centre = (lo + hi) / 2
        target = np.array([centre[0], centre[1], hi[2]])
        return self.camera(target, (hi[1] - lo[1]) / 2 * FOCAL / (0.45 * IMAGE_SIZE))

    def render(self, camera: Camera) -> Render:
        return self.scene.render(camera, self.albedo)


def _eyes(data: HeadModelData) -> list[tuple[np.ndarray, float]]:
    """(centre (3,), radius) of each eyeball, split left/right about the head's midline."""
    ids = np.asarray(data.regions.get("eyeballs", []), np.int64)
    if len(ids) < 8:
        return []
    points = data.template[ids]
    midline = np.median(data.template[:, 0])
    eyes = []
    for side in (points[points[:, 0] < midline], points[points[:, 0] >= midline]):
        if len(side) >= 4:
            lo, hi = side.min(0), side.max(0)
            eyes.append(((lo + hi) / 2, float((hi - lo).max() / 2)))
    return eyes


def _eye_shells(data: HeadModelData, eyes: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """(V,) bool: vertices of loose parts (connected components, eyeballs excepted) lying wholly within
    EYE_SHELL_REACH radii of an eyeball centre: lashes, tear lines, occlusion shells."""
    shells = np.zeros(data.n_vertices, bool)
    if not eyes:
        return shells
    mesh = trimesh.Trimesh(data.template, data.faces, process=False)
    face_label = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(data.faces))
    label = np.full(data.n_vertices, -1)
    label[data.faces.ravel()] = np.repeat(face_label, 3)
    used = label >= 0
    reach = np.min([np.linalg.norm(data.template - c, axis=1) / r for c, r in eyes], axis=0)
    n = face_label.max() + 1
    farthest = np.zeros(n)
    np.maximum.at(farthest, label[used], reach[used])
    eyeball = np.zeros(n, bool)
    eyeball[label[data.regions["eyeballs"]]] = True
    loose = (farthest < EYE_SHELL_REACH) & ~eyeball
    shells[used] = loose[label[used]]
    return shells


class _FaceMesh:
    """MediaPipe face mesh with irises on single images; landmarks as pixel positions (478,2) or None."""

    def __init__(self):
        import mediapipe as mp  # heavy import, only where landmarks are detected

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True,
                                                     max_num_faces=1, min_detection_confidence=0.5)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * w, p.y * h] for p in lm], np.float64)

    def close(self) -> None:
        self._mesh.close()


def _view_points(head: HeadRenderer, face_mesh: _FaceMesh, camera: Camera) -> np.ndarray | None:
    """Surface points (478,3) behind the landmarks MediaPipe finds in one render (NaN off the mesh), or None."""
    pixels = face_mesh(head.render(camera).image)
    if pixels is None:
        return None
    points = head.scene.cast(*camera.rays(pixels)).points
    points[IRISES] = head.iris_scene.cast(*camera.rays(pixels[IRISES])).points
    return points


def _snap(scene: RayScene, points: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest surface points of `scene` to points (N,3): (triangle (N,3) vertex ids, barycentric (N,3), point (N,3)).
    Candidates are the triangles around the k nearest vertices (exact for a mesh this dense)."""
    mesh = scene.mesh
    shown = np.unique(mesh.faces)
    vertices = mesh.vertices[shown]
    k = min(k, len(shown) - 1)
    # Nearest vertices in chunks of points, so memory stays small for dense meshes.
    near = np.concatenate([shown[np.argpartition(((chunk[:, None] - vertices[None]) ** 2).sum(-1), k, axis=1)[:, :k]]
                           for chunk in np.array_split(points, max(1, len(points) // 32))])
    candidates = mesh.vertex_faces[near].reshape(len(points), -1)  # (N, k * max valence), -1 padded
    candidates = np.where(candidates < 0, candidates.max(axis=1, keepdims=True), candidates)
    on = trimesh.triangles.closest_point(mesh.triangles[candidates.ravel()],
                                         np.repeat(points, candidates.shape[1], axis=0)).reshape(*candidates.shape, 3)
    best = np.argmin(((on - points[:, None]) ** 2).sum(-1), axis=1)
    rows = np.arange(len(points))
    triangle, closest = candidates[rows, best], on[rows, best]
    return mesh.faces[triangle], trimesh.triangles.points_to_barycentric(mesh.triangles[triangle], closest), closest


def derive_embedding(data: HeadModelData, progress: Progress | None = None) -> Embedding:
    """Render, detect and combine (no cache). Raises ModelFileError when no view shows MediaPipe a face."""
    report = progress or (lambda fraction, message: None)
    head = HeadRenderer(data)
    face_mesh = _FaceMesh()
    try:
        report(0.0, "looking for the face")
        portrait = head.portrait_camera()
        first = _view_points(head, face_mesh, portrait)
        if first is None or np.isnan(first).all():
            raise _no_face(data)
        # Frame the face itself: centred on the landmarks, about half the image tall.
        found = first[~np.isnan(first).any(axis=1)]
        target = found.mean(axis=0)
        height = np.ptp(found[:, 1])
        distance = height / 2 * FOCAL / (0.25 * IMAGE_SIZE)
        views = []
        for i, (yaw, pitch) in enumerate(VIEWS):
            report((i + 1) / (len(VIEWS) + 2), f"landmarks in view {i + 1} of {len(VIEWS)}")
            points = _view_points(head, face_mesh, head.camera(target, distance, yaw, pitch))
            if points is not None:
                views.append(points)
    finally:
        face_mesh.close()
    if not views:
        raise _no_face(data)
    report((len(VIEWS) + 1) / (len(VIEWS) + 2), "combining views")
    embedding = _combine(head, np.stack(views))
    report(1.0, "done")
    return embedding


def _no_face(data: HeadModelData) -> ModelFileError:
    return ModelFileError(f"{data.source or 'the head model'}: MediaPipe finds no face on a render of the neutral "
                          "head, so its landmarks cannot be placed. Is it a human head facing +Z with +Y up, in metres?")


def _combine(head: HeadRenderer, views: np.ndarray) -> Embedding:
    """Per landmark, the median of its per-view surface points (views (N,478,3), NaN where missed) snapped to
    the surface; valid where enough views found it and they agree."""
    count = (~np.isnan(views).any(axis=2)).sum(axis=0)
    seen = count > 0
    median = np.full((N_LANDMARKS, 3), np.nan)
    median[seen] = np.nanmedian(views[:, seen], axis=0)
    # A landmark no view found still gets a surface point (the face's centre) so arrays stay dense; it is invalid.
    median[~seen] = np.nanmean(median[seen], axis=0)
    triangles, barycentric, points = _snap(head.scene, median)
    iris = _snap(head.iris_scene, median[IRISES])
    for array, on_eyeball in zip((triangles, barycentric, points), iris):
        array[IRISES] = on_eyeball
    spread = np.full(N_LANDMARKS, np.inf)
    spread[seen] = np.sqrt(np.nanmean(((views[:, seen] - points[None, seen]) ** 2).sum(-1), axis=0))
    valid = (count >= MIN_VIEW_SHARE * len(views)) & (spread <= MAX_SPREAD)
    return Embedding(triangles.astype(np.int64), barycentric, valid, spread, points)


def _cache_path(data: HeadModelData) -> Path:
    key = data.content_hash
    if not key:  # a model built in memory: key it by the geometry the embedding depends on
        digest = hashlib.sha256(np.ascontiguousarray(data.template, np.float64).tobytes())
        digest.update(np.ascontiguousarray(data.faces, np.int64).tobytes())
        key = digest.hexdigest()[:16]
    return cache_dir() / "embeddings" / f"{key}-v{VERSION}.npz"


_FIELDS = ("triangles", "barycentric", "valid", "spread", "points")


def _load_cached(path: Path, n_vertices: int) -> Embedding | None:
    """The cached embedding, or None when absent or unusable (then it is derived again)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            emb = Embedding(*(f[k] for k in _FIELDS))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    shapes_ok = (emb.triangles.shape == (N_LANDMARKS, 3) and emb.barycentric.shape == (N_LANDMARKS, 3)
                 and emb.valid.shape == emb.spread.shape == (N_LANDMARKS,) and emb.points.shape == (N_LANDMARKS, 3))
    if not shapes_ok or emb.triangles.min() < 0 or emb.triangles.max() >= n_vertices:
        return None
    return emb


def _save(path: Path, emb: Embedding) -> None:
    with atomic_write(path) as fh:
        np.savez(fh, **{k: getattr(emb, k) for k in _FIELDS})


def landmark_embedding(data: HeadModelData, *, cache: bool = True, progress: Progress | None = None) -> Embedding:
    """The embedding of MediaPipe's 478 landmarks on `data`'s surface, from the cache when it holds one.
    progress(fraction in [0, 1], message) is called as the views are processed."""
    path = _cache_path(data)
    if cache:
        cached = _load_cached(path, data.n_vertices)
        if cached is not None:
            return cached
    emb = derive_embedding(data, progress)
    if cache:
        try:
            _save(path, emb)
        except OSError:
            pass  # an unwritable cache only costs deriving it again next time
    return emb
