"""A capture with the built-in rig (`core.builtin_model`): no head-model download needed.

From a MediaPipe landmark track: every frame is lifted to camera space (pinhole, OpenCV axes) so that it
projects exactly onto the tracked landmarks, with MediaPipe's depth and a metric scale from a typical
interpupillary distance (63 mm, an assumption). The head pose is a robust rigid alignment on points that
expressions barely move; the actor's neutral (frames with a closed, relaxed mouth and open eyes) becomes
the template; jaw and eye rotations are measured and undone; what motion is left becomes a few shape keys
(a PCA of the clip keeping 95% of it, at most MAX_COMPONENTS).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from . import arkit_geometric as geo
from .arkit_names import ARKIT_NAMES
from .builtin_model import KIND, build_model, capture_keys, mediapipe_triangles, rig_joints
from .capture_file import validate
from .model_data import FLAME_JOINTS
from .rotations import rotvec_to_matrix
from .smoothing import cutoff_weight, whittaker
from .trajectory import RawTrack, SmoothingSettings, to_parameters

KEEP_MOTION = 0.95        # share of the clip's motion energy the shape keys keep (the rest is mostly jitter)
MAX_COMPONENTS = 24
FACE_TO_MODEL = np.array([1.0, -1.0, -1.0]) / 1000.0  # face frame (mm, y down, z away) -> model (m, y up, z out)
JAW_POINTS = (152, 148, 377, 175, 199, 200, 176, 400)  # chin and jawline in front: they turn with the jaw


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Axis-angle (T,3) of the smallest rotations taking a (3,) to each b (T,3)."""
    cross = np.cross(a, b)
    sin = np.linalg.norm(cross, axis=1)
    angle = np.arctan2(sin, b @ a)
    return cross / np.maximum(sin, 1e-12)[:, None] * angle[:, None]


def _jaw_angle(local: np.ndarray, template: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """Jaw rotation about the model's x axis (T,), positive opening, from the chin points about the hinge."""
    a = template[list(JAW_POINTS), 1:] - pivot[1:]        # (K,2) y, z at rest
    b = local[:, list(JAW_POINTS), 1:] - pivot[1:]        # (T,K,2)
    sin = a[:, 0] * b[..., 1] - a[:, 1] * b[..., 0]
    cos = (a * b).sum(-1)
    return np.arctan2(sin.sum(1), cos.sum(1))


def unpose(local: np.ndarray, weights: np.ndarray, joints: np.ndarray, jaw_pose: np.ndarray,
           eye_pose: np.ndarray) -> np.ndarray:
    """Undo the jaw and eye rotations of linear blend skinning: posed local points (T,V,3) -> rest (T,V,3).

    Neck and global rotations are identity here (head motion was removed before), so each vertex moves by
    the affine map sum_j w_j (R_j x + j_j - R_j j_j), which is inverted per vertex.
    """
    t = len(local)
    rots = np.tile(np.eye(3), (t, len(joints), 1, 1))
    rots[:, 2] = rotvec_to_matrix(jaw_pose)
    rots[:, 3], rots[:, 4] = rotvec_to_matrix(eye_pose[:, :3]), rotvec_to_matrix(eye_pose[:, 3:])
    offsets = joints[None] - np.einsum("tjab,jb->tja", rots, joints)
    mats = np.einsum("vj,tjab->tvab", weights, rots)
    shift = np.einsum("vj,tja->tva", weights, offsets)
    return np.linalg.solve(mats, (local - shift)[..., None])[..., 0]


def motion_basis(residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA (uncentred: zero is the neutral) of residuals (N,V,3): coefficients (N,E) and exprdirs (V,3,E).

    Keeps KEEP_MOTION of the energy (at most MAX_COMPONENTS); each component is scaled so that its
    coefficient reaches about 1 at the clip's strongest (99th percentile) and signed so that it does so
    positively, which suits Blender's shape-key sliders.
    """
    n, v, _ = residual.shape
    u, s, vt = np.linalg.svd(residual.reshape(n, -1), full_matrices=False)
    energy = np.cumsum(s ** 2) / max(float((s ** 2).sum()), 1e-30)
    k = int(min(np.searchsorted(energy, KEEP_MOTION) + 1, MAX_COMPONENTS, len(s)))
    coeffs, basis = u[:, :k] * s[:k], vt[:k]
    for i in range(k):
        hi, lo = np.percentile(coeffs[:, i], [99, 1])
        sign = 1.0 if hi >= -lo else -1.0
        size = max(abs(hi), abs(lo), 1e-12)
        coeffs[:, i] *= sign / size
        basis[i] *= sign * size
    return coeffs, basis.reshape(k, v, 3).transpose(1, 2, 0)


def _fill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Columns of values (T,D) linearly interpolated over invalid frames (held at the ends)."""
    t = np.arange(len(values))
    ok = np.flatnonzero(valid)
    return np.stack([np.interp(t, ok, values[ok, d]) for d in range(values.shape[1])], 1)


def _interpolate_rotations(rot: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rotations (T,3,3) with invalid frames filled by normalised linear quaternion interpolation."""
    quat = Rotation.from_matrix(rot).as_quat()
    ok = np.flatnonzero(valid)
    for a, b in zip(ok[:-1], ok[1:]):  # one hemisphere, so interpolation takes the short way
        if quat[b] @ quat[a] < 0:
            quat[b] = -quat[b]
    quat = _fill(quat, valid)
    return Rotation.from_quat(quat / np.linalg.norm(quat, axis=1, keepdims=True)).as_matrix()


def capture_builtin(track, focal_px: float | None = None, smoothing: SmoothingSettings = SmoothingSettings(),
                    neutral_row: int | None = None, known_neutral: np.ndarray | None = None) -> dict:
    """A complete, validated capture with the built-in model from a `core.landmarks.LandmarkTrack`.

    Keys: all of `core.capture_file` (model 'builtin', an empty shape, expression (T,E) on the clip's own
    shape keys, jaw and eye poses, arkit (T,52) from `core.arkit_geometric`), plus the rig in `builtin_*`
    keys (see `core.builtin_model.model_from_capture`) and `warnings` (strings for the user, e.g. an
    uncertain calibration). Parameters and curves are smoothed in time as a fitted capture's are (`smoothing`);
    frames without a face get parameters filled in by that prior, and valid=False. `neutral_row`: the row of a
    frame known to show the face at rest, which becomes the rig's neutral (otherwise the clip's quietest frames);
    `known_neutral`: the actor's rest face as an earlier capture found it (its `arkit_neutral`), which is the
    neutral instead (see `core.arkit_geometric.calibrate`). The capture keeps its neutral as `arkit_neutral`.
    Raises FootageError when no frame holds a face.
    """
    landmarks = np.asarray(track.landmarks, np.float64)
    valid = np.asarray(track.valid, bool)
    width, height = (int(x) for x in track.image_size)
    focal = float(focal_px) if focal_px else geo.default_focal((width, height))
    cx, cy = width / 2.0, height / 2.0
    frames = geo.face_frames(landmarks, valid, (width, height), focal)
    frames = geo.decouple(frames, geo.pose_coupling(frames))  # a nod is no jaw motion
    cal = geo.calibrate(frames, neutral_row, known_neutral)
    template = cal.neutral * FACE_TO_MODEL
    local = frames.points * FACE_TO_MODEL                      # (T,478,3) model frame, head motion removed

    rig = build_model(template, mediapipe_triangles(template), np.zeros((len(template), 3, 0)), ())
    joints = rig_joints(template)
    jaw_pose = np.zeros((len(local), 3))
    jaw_pose[:, 0] = _jaw_angle(local, template, joints[2])
    # Each eye turns as its iris moves from where it rests between the eye's corners: where MediaPipe shifts a whole
    # eye (lids, corners and iris together), the eye has not turned. Both turn as eyes do (`geo.binocular`).
    moved = geo.binocular(geo.iris_offsets(local) - geo.iris_offsets(template[None]))
    eye_pose = np.concatenate([_rotation_between(template[geo.IRIS[k]] - joints[j],
                                                 template[geo.IRIS[k]] - joints[j] + moved[:, k])
                               for k, j in enumerate((3, 4))], 1)
    jaw_pose[~valid], eye_pose[~valid] = 0.0, 0.0  # no measurement there: the temporal prior fills them in
    rest = unpose(local[valid], rig.weights, joints, jaw_pose[valid], eye_pose[valid])
    coeffs, exprdirs = motion_basis(rest - template)
    names = tuple(f"motion_{i + 1:02d}" for i in range(exprdirs.shape[2]))
    model = build_model(template, rig.faces, exprdirs, names)

    expression = np.zeros((len(local), len(names)))
    expression[valid] = coeffs
    # Camera-space metres = R (F p) + t / (1000 s): the global rotation is R F, about the root joint.
    rot = _interpolate_rotations(frames.rotation @ np.diag(np.sign(FACE_TO_MODEL)), valid)
    shift = _fill(frames.origin / (1000.0 * frames.scale[:, None]), valid)
    rotations = np.tile(np.eye(3), (len(local), len(joints), 1, 1))
    rotations[:, 0], rotations[:, 2] = rot, rotvec_to_matrix(jaw_pose)
    rotations[:, 3], rotations[:, 4] = rotvec_to_matrix(eye_pose[:, :3]), rotvec_to_matrix(eye_pose[:, 3:])
    raw = RawTrack(rotations, shift - joints[0] + rot @ joints[0], expression,
                   np.broadcast_to(joints, (len(local),) + joints.shape))
    # The same zero-lag prior and neck split as a fitted capture; frames without a face are filled by it.
    weights, rate = valid.astype(np.float64), float(track.fps) / track.stride
    params = to_parameters(raw, weights, rate, FLAME_JOINTS, smoothing)

    arkit, _ = geo.solve(landmarks, valid, (width, height), frames, cal)
    arkit = np.clip(whittaker(arkit, weights, cutoff_weight(smoothing.arkit_hz, rate)), 0.0, 1.0)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    capture = {
        "fps": np.float64(track.fps), "image_size": np.array([width, height]),
        "frame_index": np.asarray(track.frame_index, np.int64), "valid": valid,
        "model": KIND, "model_hash": model.content_hash, "shape": np.zeros(0, np.float32),
        **{k: f32(v) for k, v in params.items()}, "expression_names": np.array(names, dtype=str),
        "focal_px": np.float64(focal), "cx": np.float64(cx), "cy": np.float64(cy),
        "landmarks": f32(track.landmarks),
        "arkit_names": np.array(ARKIT_NAMES), "arkit": f32(arkit), "arkit_neutral": f32(cal.neutral),
        "warnings": np.array(cal.warnings, dtype=str),
        **capture_keys(model),
    }
    validate(capture)
    return capture
