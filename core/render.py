"""CPU ray-cast rendering of a triangle mesh (trimesh over Embree): shaded images a face detector can
read, and the exact surface point (triangle, barycentric coordinates) behind any pixel.

Where Embree has no wheel (Apple silicon), rays that share an origin (every ray here comes from a camera)
are cast without it: a triangle-id buffer rasterised with OpenCV names the few triangles near each ray,
and an exact ray-triangle test picks the first hit among them.

Camera convention (the capture file's): a pinhole looking down its local -Z with +Y up; pixel (u, v) has
v growing downwards and the pixel whose corner is (0, 0) spans [0, 1) x [0, 1), so its centre is (0.5, 0.5).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import trimesh

EMBREE = bool(trimesh.ray.has_embree)  # trimesh's own fallback needs rtree and runs out of memory on a head
_ID_BUFFER_PX = 1024   # the id buffer's longer side
_CANDIDATES = 3        # a ray is tested against the triangles within this many id-buffer pixels of it
_RAY_CHUNK = 16384


@dataclass(frozen=True)
class Camera:
    """position (3,); rotation (3,3) camera-to-world, columns = camera right, up, backward; focal_px;
    principal point at the image centre of a width x height image."""

    position: np.ndarray
    rotation: np.ndarray
    focal_px: float
    width: int
    height: int

    @classmethod
    def look_at(cls, eye: np.ndarray, target: np.ndarray, focal_px: float, width: int, height: int,
                up: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> "Camera":
        back = np.asarray(eye, np.float64) - np.asarray(target, np.float64)
        back /= np.linalg.norm(back)
        right = np.cross(up, back)
        right /= np.linalg.norm(right)
        return cls(np.asarray(eye, np.float64), np.stack([right, np.cross(back, right), back], axis=1),
                   float(focal_px), int(width), int(height))

    def rays(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Origins (N,3) and unit directions (N,3) of the rays through continuous pixel positions (N,2)."""
        pixels = np.asarray(pixels, np.float64).reshape(-1, 2)
        local = np.stack([(pixels[:, 0] - self.width / 2) / self.focal_px,
                          -(pixels[:, 1] - self.height / 2) / self.focal_px,
                          -np.ones(len(pixels))], axis=1)
        directions = local @ self.rotation.T
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        return np.broadcast_to(self.position, directions.shape).copy(), directions

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel positions (N,2) of world points (N,3) in front of the camera."""
        local = (np.asarray(points, np.float64) - self.position) @ self.rotation
        depth = -local[:, 2]
        return np.stack([self.width / 2 + self.focal_px * local[:, 0] / depth,
                         self.height / 2 - self.focal_px * local[:, 1] / depth], axis=1)

    def pixel_centres(self) -> np.ndarray:
        """(H*W, 2) centres of every pixel, row by row."""
        v, u = np.mgrid[0:self.height, 0:self.width]
        return np.stack([u.ravel() + 0.5, v.ravel() + 0.5], axis=1).astype(np.float64)


@dataclass
class Hits:
    """First surfaces met by N rays: triangle (N,) int64, -1 where the ray misses; barycentric (N,3)
    and points (N,3), NaN where it misses."""

    triangle: np.ndarray
    barycentric: np.ndarray
    points: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return self.triangle >= 0


@dataclass
class Render:
    """image (H,W,3) uint8 RGB and the surface behind each pixel (Hits over H*W rays, row by row)."""

    image: np.ndarray
    hits: Hits
    camera: Camera


# albedo(points (N,3), triangles (N,)) -> linear RGB (N,3) in [0, 1]
Albedo = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Lights fixed to the camera (so every view of a head is lit alike): (direction towards the light in camera
# space, intensity). A key light above and left of the lens, a weaker fill from the right, plus ambient.
_LIGHTS = ((np.array([-0.35, 0.45, 1.0]), 0.75), (np.array([0.6, 0.1, 1.0]), 0.25))
_AMBIENT = 0.12


class RayScene:
    """A static triangle mesh, vertices (V,3) and faces (F,3), ready for ray queries and rendering."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        self.mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
        self._vertex_normals = np.asarray(self.mesh.vertex_normals)

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        """The first surface each ray meets."""
        if not EMBREE:
            return self._cast_from_point(origins, directions)
        n = len(origins)
        triangle = np.full(n, -1, np.int64)
        barycentric = np.full((n, 3), np.nan)
        points = np.full((n, 3), np.nan)
        tri, ray, loc = self.mesh.ray.intersects_id(origins, directions, multiple_hits=False, return_locations=True)
        if len(tri):
            triangle[ray] = tri
            points[ray] = loc
            barycentric[ray] = trimesh.triangles.points_to_barycentric(self.mesh.triangles[tri], loc)
        return Hits(triangle, barycentric, points)

    def _cast_from_point(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        """`cast` without Embree, for rays from one point: candidates from an id buffer, then an exact test."""
        origins = np.asarray(origins, np.float64)
        directions = np.asarray(directions, np.float64)
        if len(origins) and not np.allclose(origins, origins[0]):
            raise ValueError("without Embree, rays must share their origin (cast them from one camera)")
        n = len(directions)
        hits = Hits(np.full(n, -1, np.int64), np.full((n, 3), np.nan), np.full((n, 3), np.nan))
        if n == 0:
            return hits
        ids, to_pixel = self._id_buffer(origins[0], directions)
        height, width = ids.shape
        offsets = np.arange(-_CANDIDATES, _CANDIDATES + 1)
        for a in range(0, n, _RAY_CHUNK):
            rows = slice(a, a + _RAY_CHUNK)
            u, v = to_pixel(directions[rows])
            cu = np.clip(np.floor(u).astype(np.int64)[:, None, None] + offsets[None, None, :], 0, width - 1)
            cv = np.clip(np.floor(v).astype(np.int64)[:, None, None] + offsets[None, :, None], 0, height - 1)
            candidates = ids[cv, cu].reshape(len(u), -1)
            tri, t, bary = _first_hits(self.mesh.triangles, candidates, origins[0], directions[rows])
            ok = tri >= 0
            index = np.flatnonzero(ok) + a
            hits.triangle[index] = tri[ok]
            hits.barycentric[index] = bary[ok]
            hits.points[index] = origins[0] + directions[index] * t[ok, None]
        return hits

    def _id_buffer(self, origin: np.ndarray, directions: np.ndarray):
        """Triangle ids (H,W) int64 (-1: none) seen from `origin` through a pinhole around the rays, and the map
        from ray directions (N,3) to buffer pixel coordinates (u (N,), v (N,)). Triangles are drawn far to near
        (painter's order); where that order errs, the exact test over a ray's neighbourhood still finds the hit."""
        axis = directions.mean(0)
        axis /= np.linalg.norm(axis)
        helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
        right = np.cross(axis, helper)
        right /= np.linalg.norm(right)
        up = np.cross(right, axis)

        def plane(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            depth = vectors @ axis
            return vectors @ right / depth, vectors @ up / depth

        x, y = plane(directions)
        scale = (_ID_BUFFER_PX / 2) / (max(float(np.abs(x).max()), float(np.abs(y).max()), 1e-3) * 1.05)

        def to_pixel(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            px, py = plane(d)
            return _ID_BUFFER_PX / 2 + px * scale, _ID_BUFFER_PX / 2 - py * scale

        relative = self.mesh.vertices - origin
        corners = np.stack(to_pixel(relative), -1)[self.mesh.faces]
        depth = (relative @ axis)[self.mesh.faces]
        in_front = (depth > 0).all(1)
        buffer = np.zeros((_ID_BUFFER_PX, _ID_BUFFER_PX, 3), np.uint8)
        fixed = np.round(corners * 16).astype(np.int64)  # 4 bits of sub-pixel precision (shift=4)
        drawable = in_front & (np.abs(fixed) < 1 << 28).all((1, 2))  # within OpenCV's fixed-point range
        for f in np.flatnonzero(drawable)[np.argsort(-depth[drawable].mean(1))]:
            label = int(f) + 1
            cv2.fillConvexPoly(buffer, fixed[f].astype(np.int32), (label & 255, (label >> 8) & 255, label >> 16),
                               lineType=cv2.LINE_8, shift=4)
        ids = (buffer[..., 0].astype(np.int64) | buffer[..., 1].astype(np.int64) << 8
               | buffer[..., 2].astype(np.int64) << 16) - 1
        return ids, to_pixel

    def normals(self, hits: Hits, directions: np.ndarray) -> np.ndarray:
        """Smooth (vertex-interpolated) unit normals (N,3) at hit points, turned to face the ray."""
        ok = hits.hit
        normals = np.zeros((len(hits.triangle), 3))
        corners = self._vertex_normals[self.mesh.faces[hits.triangle[ok]]]
        n = np.einsum("nk,nkd->nd", hits.barycentric[ok], corners)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        n[np.einsum("nd,nd->n", n, directions[ok]) > 0] *= -1
        normals[ok] = n
        return normals

    def render(self, camera: Camera, albedo: Albedo | None = None,
               background: tuple[float, float, float] = (0.35, 0.42, 0.5)) -> Render:
        """Lambert-shaded image of the mesh seen by `camera` (one ray per pixel centre)."""
        origins, directions = camera.rays(camera.pixel_centres())
        hits = self.cast(origins, directions)
        ok = hits.hit
        normals = self.normals(hits, directions)[ok]
        shade = np.full(int(ok.sum()), _AMBIENT)
        for direction, intensity in _LIGHTS:
            light = camera.rotation @ (direction / np.linalg.norm(direction))
            shade += intensity * np.clip(normals @ light, 0.0, None)
        colour = np.full((len(ok), 3), background, np.float64)
        base = albedo(hits.points[ok], hits.triangle[ok]) if albedo else np.full((int(ok.sum()), 3), 0.8)
        colour[ok] = base * shade[:, None]
        # Linear light to sRGB-like gamma, as a camera would store it.
        image = (np.clip(colour, 0.0, 1.0) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
        return Render(image.reshape(camera.height, camera.width, 3), hits, camera)


def _first_hits(triangles: np.ndarray, candidates: np.ndarray, origin: np.ndarray, directions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Möller-Trumbore over each ray's candidate triangles: triangle (N,) (-1: none), distance (N,) and
    barycentric (N,3) of the nearest hit. triangles (F,3,3); candidates (N,C) ids, -1 for none."""
    safe = np.maximum(candidates, 0)
    a, b, c = (triangles[safe, k] for k in range(3))        # (N,C,3)
    e1, e2 = b - a, c - a
    d = directions[:, None, :]
    p = np.cross(d, e2)
    det = np.einsum("nck,nck->nc", e1, p)
    ok = (candidates >= 0) & (np.abs(det) > 1e-12)
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - a
    u = np.einsum("nck,nck->nc", s, p) * inv
    q = np.cross(s, e1)
    v = np.einsum("nck,nck->nc", d, q) * inv
    t = np.einsum("nck,nck->nc", e2, q) * inv
    eps = 1e-9
    ok &= (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (t > eps)
    t = np.where(ok, t, np.inf)
    best = np.argmin(t, axis=1)
    rows = np.arange(len(candidates))
    found = np.isfinite(t[rows, best])
    tri = np.where(found, candidates[rows, best], -1)
    uu, vv = u[rows, best], v[rows, best]
    return tri, np.where(found, t[rows, best], np.nan), np.stack([1 - uu - vv, uu, vv], -1)
