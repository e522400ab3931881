"""CPU ray-cast rendering of a triangle mesh (trimesh over Embree): shaded images a face detector can
read, and the exact surface point (triangle, barycentric coordinates) behind any pixel.

Camera convention (the capture file's): a pinhole looking down its local -Z with +Y up; pixel (u, v) has
v growing downwards and the pixel whose corner is (0, 0) spans [0, 1) x [0, 1), so its centre is (0.5, 0.5).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh


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
