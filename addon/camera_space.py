"""The one fixed mapping from the capture camera to Blender's world, and the matching Blender camera.

A capture is in OpenCV camera space (x right, y down, z forward, model units = metres). Kinesics puts that
camera at the world origin looking along +Y with +Z up (Blender's front view): world = (x, z, -y), a
rotation of -90 degrees about X. The rig's armature object carries this rotation, so everything inside
the rig is in capture camera space, and a Blender camera at the origin with the footage's focal length,
sensor and principal point lines the rig up with the footage shown as its background.
"""
from __future__ import annotations

import math

import bpy
import numpy as np

CAPTURE_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
CAPTURE_TO_WORLD_EULER = (-math.pi / 2, 0.0, 0.0)
# The Blender camera looks down its -Z with +Y up: the capture camera turned 180 degrees about X.
CAMERA_EULER = (math.pi / 2, 0.0, 0.0)
SENSOR_MM = 36.0


def lens_mm(focal_px: np.ndarray | float, image_size: tuple[int, int]) -> np.ndarray:
    """Focal length in mm for a sensor of SENSOR_MM across the image's larger side (sensor_fit AUTO)."""
    return np.asarray(focal_px, np.float64) * SENSOR_MM / max(image_size)


def ensure_camera(scene: bpy.types.Scene, name: str, image_size: tuple[int, int], focal_px: float,
                  cx: float, cy: float) -> bpy.types.Object:
    """The capture camera in `scene` (created or updated): pose, intrinsics and render resolution.

    image_size is (width, height); cx, cy in pixels from the top-left corner of the image.
    """
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != 'CAMERA':
        obj = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(obj)
    width, height = int(image_size[0]), int(image_size[1])
    cam = obj.data
    obj.location = (0.0, 0.0, 0.0)
    obj.rotation_mode = 'XYZ'
    obj.rotation_euler = CAMERA_EULER
    cam.sensor_fit = 'AUTO'
    cam.sensor_width = SENSOR_MM
    cam.lens = float(lens_mm(focal_px, (width, height)))
    # Blender shifts in units of the larger image side; +x moves the view right, +y up.
    cam.shift_x = (width / 2 - cx) / max(width, height)
    cam.shift_y = (cy - height / 2) / max(width, height)
    cam.clip_start = 0.01
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.camera = obj
    return obj


def show_footage(camera: bpy.types.Object, video: str, first_frame: int = 1) -> None:
    """Show `video` behind the camera view, its frame 0 at scene frame `first_frame`."""
    clip = bpy.data.movieclips.load(video, check_existing=True)
    clip.frame_start = first_frame
    cam = camera.data
    bg = next((b for b in cam.background_images if b.source == 'MOVIE_CLIP'), None) or cam.background_images.new()
    bg.source = 'MOVIE_CLIP'
    bg.clip = clip
    bg.use_camera_clip = False
    bg.alpha = 1.0
    cam.show_background_images = True
