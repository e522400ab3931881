"""Pure functions for linear blend skinning, with smplx's FLAME semantics (batched torch tensors)."""
from __future__ import annotations

import numpy as np
import torch


def batch_rodrigues(rot_vecs: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N,3) to rotation matrices (N,3,3); smooth at zero angle."""
    angle = torch.linalg.norm(rot_vecs + 1e-8, dim=1, keepdim=True)
    axis = rot_vecs / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    rx, ry, rz = axis[:, 0], axis[:, 1], axis[:, 2]
    zeros = torch.zeros_like(rx)
    k = torch.stack([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return eye + sin * k + (1 - cos) * torch.bmm(k, k)


def rigid_transforms(rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a joint tree.

    rot_mats (B,J,3,3) local rotations, joints (B,J,3) rest positions, parents (J,) with -1 at the root.
    Returns posed joints (B,J,3) and skinning transforms (B,J,4,4) that map rest to posed space.
    """
    b, n = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] -= joints[:, parents[1:]]
    local = torch.zeros(b, n, 4, 4, dtype=joints.dtype, device=joints.device)
    local[:, :, :3, :3] = rot_mats
    local[:, :, :3, 3] = rel
    local[:, :, 3, 3] = 1
    chain = [local[:, 0]]
    for i in range(1, n):
        chain.append(chain[int(parents[i])] @ local[:, i])
    world = torch.stack(chain, dim=1)
    posed = world[:, :, :3, 3]
    skin = world.clone()
    skin[:, :, :3, 3] -= torch.einsum("bjkl,bjl->bjk", world[:, :, :3, :3], joints)
    return posed, skin


def pose_feature(rot_mats: torch.Tensor) -> torch.Tensor:
    """FLAME's pose-corrective input: (R - I) of every joint but the root, flattened (B, 9*(J-1))."""
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def skin(vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning: vertices (B,V,3), weights (V,J), transforms (B,J,4,4) -> (B,V,3)."""
    t = torch.einsum("vj,bjkl->bvkl", weights, transforms[:, :, :3, :])
    return torch.einsum("bvkl,bvl->bvk", t[..., :3], vertices) + t[..., 3]


def matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N,3,3) to axis-angle (N,3) with angle in [0, pi], stable near 0 and pi."""
    m = rot
    w = torch.sqrt((1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]).clamp(min=0)) / 2
    x = torch.sqrt((1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2]).clamp(min=0)) / 2
    y = torch.sqrt((1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2]).clamp(min=0)) / 2
    z = torch.sqrt((1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]).clamp(min=0)) / 2
    x = torch.copysign(x, m[:, 2, 1] - m[:, 1, 2])
    y = torch.copysign(y, m[:, 0, 2] - m[:, 2, 0])
    z = torch.copysign(z, m[:, 1, 0] - m[:, 0, 1])
    vec = torch.stack([x, y, z], 1)
    sin_half = vec.norm(dim=1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, w[:, None])
    return vec * torch.where(sin_half > 1e-8, angle / sin_half.clamp(min=1e-12), torch.full_like(angle, 2.0))


def unwrap_axis_angle(rotvecs: np.ndarray) -> np.ndarray:
    """Make a sequence of axis-angle vectors (T,3) continuous: of the equivalent vectors v and
    v - 2*pi*v/|v|, keep the one nearest to the previous frame (keyframe interpolation needs this)."""
    out = np.array(rotvecs, np.float64)
    for t in range(1, len(out)):
        v = out[t]
        angle = np.linalg.norm(v)
        if angle < 1e-9:
            continue
        alternative = v - 2 * np.pi * v / angle
        if np.linalg.norm(alternative - out[t - 1]) < np.linalg.norm(v - out[t - 1]):
            out[t] = alternative
    return out
