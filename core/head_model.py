"""The batched PyTorch head model shared by every head format (FLAME, ICT-FaceKit, built-in).

Forward pass with the semantics of smplx's FLAME layer: blendshapes, pose correctives, joints regressed
from the shaped mesh, global rotation about the root joint, linear blend skinning, then translation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .lbs import batch_rodrigues, pose_feature, rigid_transforms, skin
from .model_data import HeadModelData

POSE_PARAMS = ("global_pose", "neck_pose", "jaw_pose", "eye_pose")


@dataclass
class HeadOutput:
    vertices: torch.Tensor  # (B,V,3)
    joints: torch.Tensor    # (B,J,3) posed joints, translation included


class HeadModel(torch.nn.Module):
    """A head model as torch buffers on one device.

    Parameters of `forward` (B frames): shape (B,S), expression (B,E), global_pose (B,3), neck_pose (B,3),
    jaw_pose (B,3), eye_pose (B,6) left eye then right, translation (B,3); axis-angle rotations.
    Missing parameters are zero; pose parameters of joints the model lacks must be zero or absent.
    """

    def __init__(self, data: HeadModelData, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        self.data = data
        self.joint_names = data.joint_names
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
        self.register_buffer("template", as_t(data.template))
        self.register_buffer("dirs", as_t(np.concatenate([data.shapedirs, data.exprdirs], axis=2)))
        self.register_buffer("posedirs", as_t(data.posedirs))
        self.register_buffer("weights", as_t(data.weights))
        # Joints are linear in the blendshape coefficients: precompute them so subsets stay exact.
        self.register_buffer("joint_template", as_t(data.j_regressor @ data.template))
        self.register_buffer("joint_dirs", as_t(np.einsum("jv,vck->jck", data.j_regressor,
                                                          np.concatenate([data.shapedirs, data.exprdirs], 2))))
        self.register_buffer("parents", torch.as_tensor(data.parents, dtype=torch.long, device=device))
        self.faces = data.faces
        self.n_shape, self.n_expression = data.n_shape, data.n_expression

    @property
    def device(self) -> torch.device:
        return self.template.device

    def subset(self, triangles: np.ndarray, barycentric: np.ndarray) -> "HeadModel":
        """A model whose vertices are points on this surface: triangles (L,3) vertex ids, barycentric (L,3).

        Blendshapes and pose correctives interpolate exactly; skinning uses the interpolated weights, which
        differs from interpolating the skinned triangle only by the weights' variation across one triangle
        (well under a millimetre). A fraction of the cost of the full model: used while fitting.
        """
        sub = HeadModel.__new__(HeadModel)
        torch.nn.Module.__init__(sub)
        sub.data, sub.joint_names, sub.faces = self.data, self.joint_names, None
        sub.n_shape, sub.n_expression = self.n_shape, self.n_expression
        tri = torch.as_tensor(triangles, dtype=torch.long, device=self.device)
        bc = torch.as_tensor(barycentric, dtype=self.template.dtype, device=self.device)
        pick = lambda a: torch.einsum("lk,lk...->l...", bc, a[tri])  # noqa: E731
        for name in ("template", "dirs", "posedirs", "weights"):
            sub.register_buffer(name, pick(getattr(self, name)).contiguous())
        for name in ("joint_template", "joint_dirs", "parents"):
            sub.register_buffer(name, getattr(self, name))
        return sub

    def full_pose(self, batch: int, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-joint axis-angle (B,J,3) from the named pose parameters."""
        pose = torch.zeros(batch, len(self.joint_names), 3, dtype=self.template.dtype, device=self.device)
        slots = {"global": ("global_pose", 0), "neck": ("neck_pose", 0), "jaw": ("jaw_pose", 0),
                 "left_eye": ("eye_pose", 0), "right_eye": ("eye_pose", 3)}
        for j, name in enumerate(self.joint_names):
            param, offset = slots.get(name, (None, 0))
            if param in params and params[param] is not None:
                pose[:, j] = params[param][:, offset:offset + 3]
        return pose

    def forward(self, shape: torch.Tensor | None = None, expression: torch.Tensor | None = None,
                translation: torch.Tensor | None = None, **poses: torch.Tensor) -> HeadOutput:
        unknown = set(poses) - set(POSE_PARAMS)
        if unknown:
            raise TypeError(f"unknown head-model parameters: {sorted(unknown)}")
        given = [t for t in (shape, expression, translation, *poses.values()) if t is not None]
        batch = max((t.shape[0] for t in given), default=1)
        dtype, device = self.template.dtype, self.device
        coeffs = torch.zeros(batch, self.n_shape + self.n_expression, dtype=dtype, device=device)
        if shape is not None:
            coeffs[:, :shape.shape[1]] = shape.expand(batch, -1)
        if expression is not None:
            coeffs[:, self.n_shape:self.n_shape + expression.shape[1]] = expression
        shaped = self.template + torch.einsum("vck,bk->bvc", self.dirs, coeffs)
        rest_joints = self.joint_template + torch.einsum("jck,bk->bjc", self.joint_dirs, coeffs)
        rot = batch_rodrigues(self.full_pose(batch, poses).reshape(-1, 3)).reshape(batch, -1, 3, 3)
        if self.posedirs.shape[2]:
            shaped = shaped + torch.einsum("vcp,bp->bvc", self.posedirs, pose_feature(rot))
        joints, transforms = rigid_transforms(rot, rest_joints, self.parents)
        vertices = skin(shaped, self.weights, transforms)
        if translation is not None:
            vertices = vertices + translation[:, None]
            joints = joints + translation[:, None]
        return HeadOutput(vertices, joints)
