"""Per-frame bone channels that reproduce the FLAME forward pass on a Blender armature (numpy only).

Bones have identity rest orientation in the model frame and sit at the shaped rest joints b_j (expression
zero). FLAME regresses the joints J_j from the mesh *including* expression, so J_j = b_j + dJ_j with
dJ_j = joint_expr_dirs[j] @ expression, and rotates each joint about J_j. With Blender's pose chain
P_j = P_parent @ T(b_j - b_parent) @ T(l_j) @ R_j and skinning P_j @ T(-b_j), matching FLAME's
G_j @ T(-J_j) needs the pose-bone location l_j = (I - R_j) dJ_j, plus the translation on the root.
"""
from __future__ import annotations

import numpy as np

from ..core.rotations import axis_angle_to_quaternion, quaternion_to_matrix

# Which capture parameter (and column offset) drives each FLAME joint, as in core.head_model.
JOINT_PARAMS = {"global": ("global_pose", 0), "neck": ("neck_pose", 0), "jaw": ("jaw_pose", 0),
                "left_eye": ("eye_pose", 0), "right_eye": ("eye_pose", 3)}


# (R - I)[r, c] of a quaternion (w, x, y, z), any length, as a driver's simple expression (no Python needed).
_ROTATION_MINUS_IDENTITY = (
    ("-2*(y*y+z*z)", "2*(x*y-w*z)", "2*(x*z+w*y)"),
    ("2*(x*y+w*z)", "-2*(x*x+z*z)", "2*(y*z-w*x)"),
    ("2*(x*z-w*y)", "2*(y*z+w*x)", "-2*(x*x+y*y)"),
)


def pose_feature_expression(row: int, col: int) -> str:
    """Driver expression for FLAME's pose feature element (R - I)[row, col] of one joint."""
    return f"{_ROTATION_MINUS_IDENTITY[row][col]}/(w*w+x*x+y*y+z*z)"


def joint_tracks(params: dict, joint_names: tuple[str, ...], joint_expr_dirs: np.ndarray,
                 previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pose-bone rotations and locations for T frames of capture parameters.

    params: per-frame arrays expression (T,E), global_pose (T,3), translation (T,3) and the other poses
    present in the capture; joint_expr_dirs (J,3,E) is the joint regressor applied to the expression
    blendshapes; previous (J,4) the last quaternions already keyed (for sign continuity across chunks).
    Returns quaternions (T,J,4) and locations (T,J,3) in the model frame.
    """
    expression = np.asarray(params["expression"], np.float64)
    n_frames = len(expression)
    n_expr = joint_expr_dirs.shape[2]
    e = np.zeros((n_frames, n_expr))
    e[:, :min(n_expr, expression.shape[1])] = expression[:, :n_expr]
    offsets = np.einsum("jce,te->tjc", joint_expr_dirs, e)
    quats = np.empty((n_frames, len(joint_names), 4))
    locations = np.empty((n_frames, len(joint_names), 3))
    for j, name in enumerate(joint_names):
        param, col = JOINT_PARAMS.get(name, (None, 0))
        aa = np.zeros((n_frames, 3))
        if param in params:
            aa = np.asarray(params[param], np.float64)[:, col:col + 3]
        quats[:, j] = axis_angle_to_quaternion(aa, None if previous is None else previous[j])
        rot = quaternion_to_matrix(quats[:, j])
        locations[:, j] = offsets[:, j] - np.einsum("tab,tb->ta", rot, offsets[:, j])
    locations[:, 0] += np.asarray(params["translation"], np.float64)
    return quats, locations
