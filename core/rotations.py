"""Rotation conversions in numpy, batched over leading axes. Numpy only (no torch, no scipy), so that the
Blender add-on can use them as well as the worker; torch's versions for the fit live in `core.lbs`."""
from __future__ import annotations

import numpy as np


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle (...,3) -> rotation matrices (...,3,3) (Rodrigues)."""
    r = np.asarray(rotvec, np.float64)
    angle = np.linalg.norm(r, axis=-1, keepdims=True)
    axis = r / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(r.shape[:-1] + (3, 3))
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrices (...,3,3) -> unit quaternions (...,4) w,x,y,z with w >= 0 (Shepperd: divide by the
    largest component, so small rotations keep full precision)."""
    m = np.asarray(matrix, np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    s21, s02, s10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    a01, a02, a12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    candidates = np.stack([
        np.stack([1 + m00 + m11 + m22, s21, s02, s10], -1),
        np.stack([s21, 1 + m00 - m11 - m22, a01, a02], -1),
        np.stack([s02, a01, 1 - m00 + m11 - m22, a12], -1),
        np.stack([s10, a02, a12, 1 - m00 - m11 + m22], -1)], -2)  # row k: 4 q_k q, largest when q_k is
    best = np.argmax(np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                               1 - m00 - m11 + m22], -1), -1)
    q = np.take_along_axis(candidates, best[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrices (...,3,3) -> axis-angle (...,3), angle in [0, pi]."""
    q = matrix_to_quaternion(matrix)
    norm = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(norm, q[..., :1])
    return q[..., 1:] * angle / np.where(norm > 1e-12, norm, 1.0)


def matrix_to_ypr(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrices (...,3,3) -> (...,3) yaw, pitch, roll with R = Ry(yaw) Rx(pitch) Rz(roll)."""
    m = np.asarray(matrix, np.float64)
    pitch = np.arcsin(np.clip(-m[..., 1, 2], -1, 1))
    yaw = np.arctan2(m[..., 0, 2], m[..., 2, 2])
    roll = np.arctan2(m[..., 1, 0], m[..., 1, 1])
    return np.stack([yaw, pitch, roll], -1)


def ypr_to_matrix(ypr: np.ndarray) -> np.ndarray:
    """(...,3) yaw, pitch, roll -> rotation matrices (...,3,3), R = Ry(yaw) Rx(pitch) Rz(roll)."""
    a = np.asarray(ypr, np.float64)
    eye = np.eye(3)
    return (rotvec_to_matrix(a[..., :1] * eye[1]) @ rotvec_to_matrix(a[..., 1:2] * eye[0])
            @ rotvec_to_matrix(a[..., 2:3] * eye[2]))


def axis_angle_to_quaternion(axis_angle: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Axis-angle (T,3) to unit quaternions (T,4) w,x,y,z, sign-aligned frame to frame (and to `previous`)
    so keyframe interpolation never takes the long way round."""
    aa = np.asarray(axis_angle, np.float64).reshape(-1, 3)
    angle = np.linalg.norm(aa, axis=1)
    half = 0.5 * angle
    # sin(a/2)/a, with its limit 1/2 at a = 0.
    scale = np.where(angle > 1e-12, np.sin(half) / np.maximum(angle, 1e-12), 0.5)
    q = np.concatenate([np.cos(half)[:, None], aa * scale[:, None]], axis=1)
    ref = previous
    for t in range(len(q)):
        if ref is not None and np.dot(q[t], ref) < 0:
            q[t] = -q[t]
        ref = q[t]
    return q


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions (T,4) w,x,y,z (normalised here, as Blender does) to rotation matrices (T,3,3)."""
    q = np.asarray(q, np.float64)
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1).reshape(-1, 3, 3)
