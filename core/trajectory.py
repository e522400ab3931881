"""From per-frame fit states to the capture file's parameters: temporal smoothing and the neck split.

The fit solves each frame on its own; here the whole trajectory is smoothed with a zero-lag prior whose
cut-off is set in hertz (so it means the same at any frame rate), frames without a face are filled in, and
head rotation is split into a slow body/global part and the neck's part.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import SettingError
from .lbs import batch_rodrigues, matrix_to_axis_angle, unwrap_axis_angle
from .smoothing import cutoff_weight, whittaker


@dataclass(frozen=True)
class SmoothingSettings:
    """Cut-off frequencies (Hz) of the temporal prior per parameter group; higher keeps faster motion."""

    head_hz: float = 3.0
    expression_hz: float = 5.0
    jaw_hz: float = 6.0
    eyes_hz: float = 8.0     # saccades are fast: smooth gaze the least
    arkit_hz: float = 8.0    # above the 2-4 Hz of speech and brows; a blink (about 150 ms) keeps most of its height
    body_hz: float = 0.5     # the global (body) part of head rotation; the neck carries the rest

    def scaled(self, strength: float) -> "SmoothingSettings":
        """The user's smoothing strength applied: 1 as set, 2 twice as smooth (cut-offs halved), 0 off.
        The body/neck split is a decomposition, not smoothing, and stays as set."""
        if not 0 <= strength < float("inf"):
            raise SettingError(f"a smoothing of {strength} is not possible: give 0 (off), 1 (the default) "
                               "or more (smoother)")
        cut = (lambda hz: hz / strength) if strength > 0 else (lambda hz: float("inf"))
        return replace(self, head_hz=cut(self.head_hz), expression_hz=cut(self.expression_hz),
                       jaw_hz=cut(self.jaw_hz), eyes_hz=cut(self.eyes_hz), arkit_hz=cut(self.arkit_hz))


def _log(rot: np.ndarray) -> np.ndarray:
    return matrix_to_axis_angle(torch.as_tensor(rot, dtype=torch.float64).reshape(-1, 3, 3)).numpy()


def _exp(vec: np.ndarray) -> np.ndarray:
    return batch_rodrigues(torch.as_tensor(vec, dtype=torch.float64).reshape(-1, 3)).numpy()


@dataclass
class RawTrack:
    """Per-frame fit results of T frames in numpy: rotations (T,J,3,3) local, FLAME joint order,
    translation (T,3), expression (T,E), joints_rest (T,J,3) rest joints (shape and expression applied)."""

    rotations: np.ndarray
    translation: np.ndarray
    expression: np.ndarray
    joints_rest: np.ndarray


def to_parameters(raw: RawTrack, weights: np.ndarray, fps: float, joint_names: tuple[str, ...],
                  settings: SmoothingSettings, reference: np.ndarray | None = None,
                  pinned: int = 0, previous_global: np.ndarray | None = None,
                  bounded: bool = False) -> dict[str, np.ndarray]:
    """Smooth a trajectory and express it as capture parameters.

    weights (T,): 0 for frames without a face (filled by the prior), 1 otherwise; the first `pinned` frames
    are already final and get a large weight so that consecutive windows join without a seam.
    reference (3,3): the rotation that head rotations are smoothed around (keeps them away from the
    axis-angle wrap at pi). previous_global (3,): the global pose emitted just before this window, so the
    axis-angle sequence stays continuous across windows. bounded: expressions are blendshape weights, kept in
    [0, 1] after smoothing (the smoother rings slightly past a sharp onset).
    Returns global_pose, neck_pose, jaw_pose, eye_pose, translation, expression.
    """
    w = np.asarray(weights, np.float64).copy()
    w[:pinned] = 1e6
    t = len(w)
    ref = raw.rotations[0, 0] if reference is None else reference
    head = _log(np.einsum("ij,tjk->tik", ref.T, raw.rotations[:, 0]))
    head = whittaker(unwrap_axis_angle(head), w, cutoff_weight(settings.head_hz, fps))
    head_rot = np.einsum("ij,tjk->tik", ref, _exp(head))
    expression = (whittaker(raw.expression, w, cutoff_weight(settings.expression_hz, fps))
                  if raw.expression.shape[1] else raw.expression.copy())
    if bounded:
        expression = expression.clip(0.0, 1.0)
    out = {"translation": whittaker(raw.translation, w, cutoff_weight(settings.head_hz, fps)), "expression": expression}
    zeros = np.zeros((t, 3))
    if "jaw" in joint_names:
        jaw = _log(raw.rotations[:, joint_names.index("jaw")])
        out["jaw_pose"] = whittaker(jaw, w, cutoff_weight(settings.jaw_hz, fps))
    else:
        out["jaw_pose"] = zeros
    if "left_eye" in joint_names:
        eyes = np.concatenate([_log(raw.rotations[:, joint_names.index(n)]) for n in ("left_eye", "right_eye")], 1)
        out["eye_pose"] = whittaker(eyes, w, cutoff_weight(settings.eyes_hz, fps))
    else:
        out["eye_pose"] = np.zeros((t, 6))
    if "neck" in joint_names:
        body = whittaker(head, w, cutoff_weight(settings.body_hz, fps))
        body_rot = np.einsum("ij,tjk->tik", ref, _exp(body))
        neck_rot = np.einsum("tji,tjk->tik", body_rot, head_rot)
        # Same face, pivot moved: x = Rg (Rn (X - J1) + J1 - J0) + J0 + t'  equals  R (X - J0) + J0 + t.
        lever = raw.joints_rest[:, joint_names.index("neck")] - raw.joints_rest[:, 0]
        out["translation"] = out["translation"] + np.einsum("tij,tj->ti", head_rot - body_rot, lever)
        global_rot, out["neck_pose"] = body_rot, _log(neck_rot)
    else:
        global_rot, out["neck_pose"] = head_rot, zeros
    start = [] if previous_global is None else [np.asarray(previous_global, np.float64)]
    out["global_pose"] = unwrap_axis_angle(np.concatenate([np.reshape(start, (-1, 3)), _log(global_rot)]))[len(start):]
    return out
