"""ARKit curves measured straight from MediaPipe landmarks, without any blendshape basis.

Each frame is aligned (similarity, robust, on points that expressions barely move) to a face-fixed frame:
origin between the eyes, x towards the subject's left, y down, z away from the camera, millimetres from a
typical interpupillary distance (63 mm, an assumption: the true size of a face cannot be seen in one view).
The landmarks' drift there with the head's rotation, learnt from the clip's quieter frames, is taken out
(`pose_coupling`). Distances there (lid aperture, lip and jaw travel, the lips' red, mouth-corner displacement, brow
height, iris position) are compared with the actor's own neutral, found in the clip, and mapped to ARKit channels by
anatomical ranges (how far a feature moves at full activation). A clip without a neutral-looking frame falls back on
population values for the neutral and says so.

Used by the built-in model and as the ARKit fallback for FLAME captures when no ICT-FaceKit basis exists:
a function of (landmarks (T,478,3) normalised, valid (T,), image_size) only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
from scipy.spatial.transform import Rotation

from .arkit_names import ARKIT_INDEX, ARKIT_NAMES
from .errors import FootageError
from .far_side import curves_from_near_side, from_near_side, own_side_weights

IPD_MM = 63.0  # assumed distance between the eye centres: sets the metric scale
FIELD_OF_VIEW_DEG = 50.0  # assumed across the longer image side when the focal length is not given
NEUTRAL_SPAN = 2  # frames either side of a neutral frame the user names that count as at rest too
COUPLING_RIDGE_DEG = 3.0  # head turns that spread less than this say little about how landmarks drift with them
COUPLING_BEND_DEG = 6.0  # nor, spreading less than this, about how that drift bends (its squared terms)
COUPLING_ROUNDS = 2  # picks of the quieter frames: the second, with the first pick's drift out, counts turned rests

# Landmarks that expressions barely move: nose bridge and tip, eye corners, temples, cheekbones (not the
# forehead: its skin follows the brows).
STABLE = np.array([168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263, 127, 356, 234, 454, 162, 389, 116, 345, 117,
                   346, 123, 352])

# Per side, subject's left first (MediaPipe's "left" landmarks sit on the subject's left).
EYE_OUTER, EYE_INNER = (263, 33), (362, 133)
EYE_CORNERS = tuple(zip(EYE_OUTER, EYE_INNER))  # per side: outer, inner
LID_UPPER = ((386, 385, 387), (159, 158, 160))
LID_LOWER = ((374, 380, 373), (145, 153, 144))
IRIS_RINGS = ((473, 474, 475, 476, 477), (468, 469, 470, 471, 472))  # centre then ring, per side
IRIS = tuple(ring[0] for ring in IRIS_RINGS)
BROW_INNER = ((336, 296, 285, 295), (107, 66, 55, 65))
BROW_OUTER = ((300, 276, 293, 283), (70, 46, 63, 53))
# Per side, the point groups whose rest is learnt from every frame rather than from the frames picked for a relaxed
# face (`at_rest`): the iris, the inner brow and the outer brow.
REST_GROUPS = tuple(zip(IRIS_RINGS, BROW_INNER, BROW_OUTER))
GAZE_REST, ALL_REST = (0,), (0, 1, 2)  # indices into each side's REST_GROUPS
MOUTH_CORNER = (291, 61)
UPPER_LIP = ((267, 269, 270), (37, 39, 40))
LOWER_LIP = ((314, 405, 321), (84, 181, 91))
NOSE_WING = ((358, 327, 294), (129, 98, 64))
NOSE_BRIDGE = (168, 6)
NOSE_DORSUM = (195, 5, 4)
LIP_INNER_UPPER, LIP_INNER_LOWER, CHIN = 13, 14, 152
# The red of each lip, upper then lower, between its outer and inner contour (middle and either side of it).
VERMILION = (((0, 37, 267), (13, 82, 312)), ((17, 84, 314), (14, 87, 317)))
SIDES = ("Left", "Right")

# Feature travel at a channel's full activation, in mm (anatomical estimates, not fitted to any clip).
_RANGE_MM = {"jaw_drop": 22.0, "jaw_side": 8.0, "smile": 9.0, "frown": 4.0, "mouth_side": 8.0, "upper_up": 4.0,
             "lower_down": 5.0, "brow_up": 7.0, "brow_down": 4.0, "sneer": 3.0, "funnel_narrow": 6.0,
             "funnel_gap": 8.0, "shrug": 3.0, "roll": 3.0}
_RANGE_REL = {"blink": 0.75, "wide": 0.4, "squint": 0.25, "pucker": 0.25, "look_h": 0.22, "look_v": 0.12,
              "roll": 0.4}
# Per mm the chin drops, the mouth narrows JAW_NARROWING mm (narrowing beyond that is the lips' own) and the lips part
# JAW_GAP mm (unless they are kept closed: mouthClose). These and the funnel's ranges are of the order of
# ICT-FaceKit's jawOpen and mouthFunnel shapes at the landmarks (5 and 35 mm for 28; 6 mm narrower, 8 mm apart).
JAW_NARROWING, JAW_GAP = 0.2, 1.25
# Lips thin as they stretch, which is no roll of the lips inwards: per mm the chin drops (the jaw opening) or rises
# (the chin pushed up, mouthShrugLower), MediaPipe's lips show this share of their resting red less (0.01-0.035 and
# 0.06-0.13 on painted ICT-FaceKit heads).
JAW_THINNING, SHRUG_THINNING = 0.015, 0.08
CLOSED_THINNING = 0.05  # more per mm the chin drops, for a lower lip kept closed over the opening jaw (mouthClose)
SHRUG_LIP = 1.5  # mm the lower lip's red rises per mm the chin does as the chin pushes up (1.3-1.9 there)
# The share of the difference between the irises' moves across (vergence) that is read. A performer facing a camera
# at arm's length or more converges a few degrees at most, steadily; MediaPipe's two irises differ by a spread of
# 0.045 eye widths (some 6 degrees) through a real clip of one (frontal_talking_512), by 0.02 on renders whose eyes
# turn together: mostly noise. A prior holds the fitted models' eyes together too (`FitSettings.vergence_prior`).
VERGENCE_KEPT = 0.5
# MediaPipe's inner brow points rise about this share of its outer ones' rise when only the outer brow rises
# (least squares on `bench_painted.py`'s renders, 0.56-0.83 per head): taken out, an outer raise or a surprise's
# outer part is no browInnerUp.
INNER_WITH_OUTER = 0.7
# A smile lifts the cheeks and with them the nose wings and the upper lip: MediaPipe's rise this far (mm) per mm the
# mouth corners rise in ICT-FaceKit's smile on a painted head (0.29 from the eye corners, 0.39); that share is no
# sneer and no upper lip raise (before, a full smile read noseSneer and mouthUpperUp 1 too).
SMILE_LIFTS = (0.3, 0.4)  # nose wings, upper lip
# As an eye closes, MediaPipe's lower lid rises about this far (mm) per mm its upper lid drops (0.22-0.29 through
# frontal_talking_512's blinks, 0.40-0.49 on painted heads): that share is no squint (before, every blink read as
# eyeSquint too, correlated 0.74 with eyeBlink through that clip).
LOWER_WITH_UPPER = 0.3

# Neutral faces in the population (feature: (low, high)), to judge whether the clip holds a neutral frame.
# mouth_width and lip_gap are in mm at IPD 63 mm; aperture relative to the eye width; corner_lift in mm
# (mouth corners above the line between the lips).
NEUTRAL_RANGE = {"mouth_width": (38.0, 58.0), "lip_gap": (-1.5, 4.0), "aperture": (0.18, 0.5),
                 "corner_lift": (-6.0, 1.0)}
NEUTRAL_POPULATION = {"mouth_width": 48.0, "lip_gap": 0.5, "aperture": 0.3, "corner_lift": -2.0}

COVERED = tuple(f"{c}{s}" for c in ("eyeBlink", "eyeLookDown", "eyeLookIn", "eyeLookOut", "eyeLookUp",
                                   "eyeSquint", "eyeWide", "mouthSmile", "mouthFrown", "mouthUpperUp",
                                   "mouthLowerDown", "browDown", "browOuterUp", "noseSneer") for s in SIDES) + (
    "jawOpen", "jawLeft", "jawRight", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "browInnerUp")


def covered_channels() -> tuple[str, ...]:
    """The ARKit channels this solver measures, in Apple's order; the others stay 0."""
    return tuple(n for n in ARKIT_NAMES if n in COVERED)


@dataclass
class FaceFrames:
    """Landmarks of every frame in the face-fixed frame (mm, see the module docstring).

    points (T,478,3); scale (T,), rotation (T,3,3) and origin (T,3) map them back onto the aligned input:
    input = scale * points @ rotation.T + origin (input in pixel units for `align_frames` of `pixel_points`,
    in camera-space mm for `face_frames`); valid (T,).
    """

    points: np.ndarray
    scale: np.ndarray
    rotation: np.ndarray
    origin: np.ndarray
    valid: np.ndarray

    @staticmethod
    def cat(parts: list[FaceFrames]) -> FaceFrames:
        """The frames of `parts`, in order, as one."""
        return FaceFrames(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(FaceFrames)))

    def pose_only(self) -> FaceFrames:
        """These frames' alignment without their points ((T,0,3)), to keep and apply again (`realigned`)."""
        return replace(self, points=np.zeros((len(self.valid), 0, 3)))


@dataclass
class Calibration:
    """The actor's neutral: the frames it came from and its features; `warnings` when it is uncertain."""

    neutral_frames: np.ndarray
    neutral: np.ndarray            # (478,3) mm, face-fixed frame
    features: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    learnt: tuple[int, ...] = ()   # the REST_GROUPS whose rest the clip's frames go on setting (`at_rest`)


@dataclass
class PoseCoupling:
    """How the face-frame landmarks of a clip drift with the head's rotation: MediaPipe's depth is on a scale of its
    own and its mesh deforms as the head turns, so a nod moves the chin in the face frame (about 1 mm a degree in
    footage of an actor looking down) though the jaw stays shut. rest (3,3): the rotation it counts from;
    coefficients (9,478,3): mm of drift per unit of each of the rotation's `pose_features` (none at rest); low and
    high (3,): the range of the rotation vector's components it was learnt over, beyond which it is not
    extrapolated."""

    rest: np.ndarray
    coefficients: np.ndarray
    low: np.ndarray
    high: np.ndarray


def pixel_points(landmarks: np.ndarray, image_size) -> np.ndarray:
    """MediaPipe's normalised (x, y, z) to pixel units (x*W, y*H, z*W): z shares x's scale. (T,478,3)."""
    w, h = float(image_size[0]), float(image_size[1])
    return np.asarray(landmarks, np.float64) * np.array([w, h, w])


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted Umeyama fit, batched over leading axes: dst ~ s * src @ R.T + t for point sets (...,N,3)
    with weights (...,N). Returns s (...), R (...,3,3), t (...,3)."""
    w = weights / weights.sum(-1, keepdims=True)
    mu_s, mu_d = np.einsum("...n,...nc->...c", w, src), np.einsum("...n,...nc->...c", w, dst)
    a, b = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = np.einsum("...n,...ni,...nj->...ij", w, b, a)
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.stack([np.ones_like(d), np.ones_like(d), d], -1)
    rot = (u * fix[..., None, :]) @ vt
    scale = (sig * fix).sum(-1) / np.einsum("...n,...n->...", w, (a * a).sum(-1))
    return scale, rot, mu_d - scale[..., None] * np.einsum("...ij,...j->...i", rot, mu_s)


def robust_similarity(src: np.ndarray, dst: np.ndarray, iterations: int = 4
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`similarity` on the STABLE points, reweighted (Cauchy) so that a few moving points do not drag it.
    src and dst (...,478,3) broadcast against each other, so one call aligns a whole batch of frames."""
    s, d = src[..., STABLE, :], dst[..., STABLE, :]
    s, d = np.broadcast_arrays(s, d)
    w = np.ones(s.shape[:-1])
    for _ in range(iterations):
        scale, rot, t = similarity(s, d, w)
        r = np.linalg.norm(scale[..., None, None] * s @ np.swapaxes(rot, -1, -2) + t[..., None, :] - d, axis=-1)
        w = 1.0 / (1.0 + (r / (1.5 * np.median(r, axis=-1, keepdims=True) + 1e-9)) ** 2)
    return scale, rot, t


def apply_similarity(scale: np.ndarray, rot: np.ndarray, trans: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """s * pts @ R.T + t, batched."""
    return scale[..., None, None] * pts @ np.swapaxes(rot, -1, -2) + trans[..., None, :]


def undo_similarity(scale: np.ndarray, rot: np.ndarray, trans: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The inverse of `apply_similarity`: (pts - t) @ R / s, batched."""
    return (pts - trans[..., None, :]) @ rot / scale[..., None, None]


def _canonical(shape: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale, rotation and origin taking a pixel-space face to the face-fixed frame."""
    left = shape[[EYE_OUTER[0], EYE_INNER[0]]].mean(0)
    right = shape[[EYE_OUTER[1], EYE_INNER[1]]].mean(0)
    origin = (left + right) / 2
    x = (left - right) / np.linalg.norm(left - right)
    down = shape[list(MOUTH_CORNER)].mean(0) - origin
    y = down - x * (x @ down)
    y /= np.linalg.norm(y)
    return IPD_MM / float(np.linalg.norm(left - right)), np.stack([x, y, np.cross(x, y)]), origin


def default_focal(image_size) -> float:
    """Focal length in pixels for a FIELD_OF_VIEW_DEG view across the longer image side."""
    return 0.5 * max(image_size) / np.tan(np.radians(FIELD_OF_VIEW_DEG / 2))


def face_frames(landmarks: np.ndarray, valid: np.ndarray, image_size, focal_px: float | None = None) -> FaceFrames:
    """Landmarks (T,478,3) normalised -> aligned face-fixed frames, perspective accounted for.

    A first alignment in pixel units gives each frame's size in the image, hence (with the assumed IPD and
    the focal length, FIELD_OF_VIEW_DEG when not given) its distance; `camera_points` lifts the landmarks
    to camera space, where the final alignment runs: scale, rotation and origin then map face-frame mm to
    camera-space mm (`camera = scale * points @ rotation.T + origin`, scale close to 1).
    """
    focal = float(focal_px) if focal_px else default_focal(image_size)
    first = align_frames(pixel_points(landmarks, image_size), valid)
    return align_frames(camera_points(landmarks, first, image_size, focal), valid)


def camera_points(landmarks: np.ndarray, frames: FaceFrames, image_size, focal: float) -> np.ndarray:
    """(T,478,3) mm in camera space (OpenCV axes, principal point at the image centre): each landmark on its
    pixel's ray, at the depth where the face has the assumed size plus MediaPipe's relative depth. They
    project exactly onto the tracked landmarks."""
    pix = pixel_points(landmarks, image_size)
    centre = np.asarray(image_size, np.float64) / 2
    scale = frames.scale[:, None]                               # pixels per mm
    depth = focal / scale + (pix[..., 2] - frames.origin[:, None, 2]) / scale
    out = np.concatenate([(pix[..., :2] - centre) * depth[..., None] / focal, depth[..., None]], -1)
    out[~frames.valid] = 0.0
    return out


def align_frames(pts: np.ndarray, valid: np.ndarray) -> FaceFrames:
    """Align every valid frame of pts (T,478,3) to the clip's median face (generalised Procrustes), and
    express them in the face-fixed frame; `scale` is then in the units of pts per mm."""
    valid = np.asarray(valid, bool)
    if not valid.any():
        raise FootageError("no face was found in any frame of the clip: check that the face is visible, "
                           "lit and not too small, or choose another frame range")
    ids = np.flatnonzero(valid)
    ref = pts[ids[len(ids) // 2]]
    for _ in range(2):
        ref = np.median(apply_similarity(*robust_similarity(pts[ids], ref), pts[ids]), axis=0)
    k, axes, origin = _canonical(ref)
    return aligned_to(k * (ref - origin) @ axes.T, pts, valid)


def aligned_to(reference: np.ndarray, pts: np.ndarray, valid: np.ndarray) -> FaceFrames:
    """Each valid frame of pts (T,478,3) aligned to `reference` (478,3, the face-fixed frame) by `robust_similarity`."""
    n = len(pts)
    scale, rotation, origin = np.ones(n), np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 3))
    ids = np.flatnonzero(valid)
    scale[ids], rotation[ids], origin[ids] = robust_similarity(reference, pts[ids])
    return realigned(pts, FaceFrames(np.zeros((n, 0, 3)), scale, rotation, origin, np.asarray(valid, bool)))


def realigned(pts: np.ndarray, pose: FaceFrames) -> FaceFrames:
    """pts (T,478,3) taken into the face-fixed frame by an alignment found before (`pose`, whose points are not
    used): the frames without a face hold zeros."""
    ids = np.flatnonzero(pose.valid)
    out = np.zeros_like(pts, dtype=np.float64)
    out[ids] = undo_similarity(pose.scale[ids], pose.rotation[ids], pose.origin[ids], pts[ids])
    return replace(pose, points=out)


def _mean(points: np.ndarray, ids) -> np.ndarray:
    return points[..., list(ids), :].mean(-2)


def neutral_features(points: np.ndarray) -> dict[str, np.ndarray]:
    """Features that tell a neutral face from an expressive one, per frame (points (...,478,3) mm)."""
    eye_width = np.linalg.norm(points[..., EYE_OUTER, :] - points[..., EYE_INNER, :], axis=-1)  # (...,2)
    aperture = np.stack([_mean(points, LID_LOWER[k])[..., 1] - _mean(points, LID_UPPER[k])[..., 1]
                         for k in range(2)], -1) / eye_width
    lips_mid = (points[..., LIP_INNER_UPPER, 1] + points[..., LIP_INNER_LOWER, 1]) / 2
    return {"mouth_width": np.linalg.norm(points[..., MOUTH_CORNER[0], :] - points[..., MOUTH_CORNER[1], :], axis=-1),
            "lip_gap": points[..., LIP_INNER_LOWER, 1] - points[..., LIP_INNER_UPPER, 1],
            "aperture": aperture.mean(-1),
            "corner_lift": lips_mid - points[..., list(MOUTH_CORNER), 1].mean(-1)}


def lip_red(points: np.ndarray) -> np.ndarray:
    """(...,2) mm of red each lip shows, upper then lower, between its outer and inner contour (points (...,478,3))."""
    return np.stack([np.abs(_mean(points, inner)[..., 1] - _mean(points, outer)[..., 1]) for outer, inner in VERMILION],
                    -1)


def rest_cost(points: np.ndarray) -> np.ndarray:
    """How far each of the frames' points (K,478,3) lies from the quiet end of their own distribution (K,): a small
    lip gap, a narrow mouth, open (median) eyes, and corners at the height usual in the quietest quarter of those
    (no higher than the lowest fifth): neither raised (a smile) nor lowered (a frown)."""
    feats = neutral_features(points)
    spread = {k: np.subtract(*np.percentile(v, [90, 10])) + 1e-6 for k, v in feats.items()}
    cost = (np.maximum(feats["lip_gap"] - np.percentile(feats["lip_gap"], 5), 0) / spread["lip_gap"]
            + np.maximum(feats["mouth_width"] - np.percentile(feats["mouth_width"], 20), 0) / spread["mouth_width"]
            + np.abs(feats["aperture"] - np.median(feats["aperture"])) / spread["aperture"])
    lift = feats["corner_lift"]
    rest_lift = min(np.median(lift[np.argsort(cost)[:max(3, len(points) // 4)]]), np.percentile(lift, 20))
    return cost + np.abs(lift - rest_lift) / spread["corner_lift"]


def _turns(rotation: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Rotation vectors (K,3) of rotations (K,3,3) from rest (3,3), in the face's own frame."""
    return Rotation.from_matrix(rest.T @ rotation).as_rotvec()


def pose_features(turns: np.ndarray) -> np.ndarray:
    """(K,9) for rotation vectors (K,3): their components, then their squares and products. MediaPipe's mesh deforms
    alike for a turn either way (turned 45 degrees to either side, a painted head's nose wings rose into a sneer and
    its brows fell), which no term linear in the rotation holds."""
    x, y, z = np.moveaxis(turns, -1, 0)
    return np.stack([x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], -1)


def pose_coupling(frames: FaceFrames) -> PoseCoupling:
    """The clip's `PoseCoupling`, by ridge regression of the quieter half of its frames (`rest_cost`) on their head
    rotation: over those frames the face barely moves but for that drift. The quieter half is picked again once the
    drift is out, so that a face at rest turned far counts as quiet. Each iris drifts with its eye's corners, so
    that a look that goes with a turn of the head stays a look."""
    ids = np.flatnonzero(frames.valid)
    points = frames.points[ids]
    bend = np.radians(COUPLING_BEND_DEG) ** 2  # a product term is held back as its turns' squares would be
    ridge = np.diag([0.0] + [np.radians(COUPLING_RIDGE_DEG) ** 2] * 3 + [bend ** 2] * 6)  # per frame
    coupling = None
    for _ in range(COUPLING_ROUNDS):
        cost = rest_cost(points if coupling is None else decouple(frames, coupling).points[ids])
        quiet = cost <= np.median(cost)
        rest = Rotation.from_matrix(frames.rotation[ids][quiet]).mean().as_matrix()
        turns = _turns(frames.rotation[ids][quiet], rest)
        x = np.concatenate([np.ones((len(turns), 1)), pose_features(turns)], 1)  # with an intercept: the rest face
        y = points[quiet].reshape(len(x), -1)
        coefficients = np.linalg.solve(x.T @ x + len(x) * ridge, x.T @ y)[1:].reshape(-1, *points.shape[1:])
        for corners, ring in zip(EYE_CORNERS, IRIS_RINGS):
            coefficients[:, list(ring)] = coefficients[:, list(corners)].mean(1, keepdims=True)
        coupling = PoseCoupling(rest, coefficients, turns.min(0), turns.max(0))
    return coupling


def drift(rotation: np.ndarray, coupling: PoseCoupling) -> np.ndarray:
    """(K,478,3) mm the points drift at head rotations (K,3,3), by `coupling`."""
    turns = np.clip(_turns(rotation, coupling.rest), coupling.low, coupling.high)
    return np.einsum("ka,alc->klc", pose_features(turns), coupling.coefficients)


def decouple(frames: FaceFrames, coupling: PoseCoupling) -> FaceFrames:
    """The frames with their points' drift with the head's rotation (`PoseCoupling`) taken out."""
    ids = np.flatnonzero(frames.valid)
    points = frames.points.copy()
    points[ids] -= drift(frames.rotation[ids], coupling)
    return FaceFrames(points, frames.scale, frames.rotation, frames.origin, frames.valid)


def neutral_rows(valid: np.ndarray, row: int | None) -> np.ndarray:
    """The rows that stand for a neutral frame the user named: it and its valid neighbours within NEUTRAL_SPAN (a
    rest moment outlasts a frame; several frames average the landmarks' noise). None (none named): no rows."""
    if row is None:
        return np.zeros(0, int)
    rows = np.arange(max(row - NEUTRAL_SPAN, 0), min(row + NEUTRAL_SPAN + 1, len(valid)))
    return rows[np.asarray(valid, bool)[rows]]


def iris_offsets(points: np.ndarray) -> np.ndarray:
    """Each iris centre from the middle of its eye's corners, (K,2,3) for points (K,478,3), subject's left first."""
    return np.stack([points[:, ring[0]] - points[:, list(corners)].mean(1)
                     for corners, ring in zip(EYE_CORNERS, IRIS_RINGS)], 1)


def binocular(moves: np.ndarray) -> np.ndarray:
    """Both irises' moves (T,2,3) as eyes move: up and down together (only their turns across differ, converging on
    what is near), so one vertical reading from both halves the noise of MediaPipe's vertical iris position, the
    weakest of its gaze cues; across, their difference (vergence) kept at VERGENCE_KEPT. Depth is left per eye."""
    mean = moves.mean(1, keepdims=True)
    return mean + (moves - mean) * np.array([VERGENCE_KEPT, 0.0, 1.0])


def rest_offsets(points: np.ndarray) -> np.ndarray:
    """(K,2,G,3) for points (K,478,3): each of REST_GROUPS' points' mean from the middle of its eye's corners."""
    return np.stack([np.stack([points[:, list(group)].mean(1) for group in groups], 1)
                     - points[:, list(corners)].mean(1)[:, None]
                     for corners, groups in zip(EYE_CORNERS, REST_GROUPS)], 1)


def at_rest(neutral: np.ndarray, offsets: np.ndarray, learnt: tuple[int, ...]) -> np.ndarray:
    """The neutral (478,3) with each `learnt` group of REST_GROUPS moved, as one, to the median of offsets (K,2,G,3)
    from its eye's corners: the frames picked for a relaxed mouth and open eyes were not picked for their gaze or
    brows, and one glance or raised brow among them would offset every reading of those, while people mostly look
    ahead with their brows at rest."""
    out = neutral.copy()
    rest = np.median(offsets, axis=0)
    now = rest_offsets(neutral[None])[0]
    for k, groups in enumerate(REST_GROUPS):
        for g in learnt:
            out[list(groups[g])] += rest[k, g] - now[k, g]
    return out


def calibrate(frames: FaceFrames, neutral_row: int | None = None, known: np.ndarray | None = None) -> Calibration:
    """The actor's neutral: the frames whose mouth is closed and relaxed and whose eyes are open.

    Frames are ranked by how far their features lie from the quiet end of the clip's own distribution;
    the best tenth (at least 3 frames) is averaged (median). If even that neutral falls outside the range
    of neutral faces in the population, the feature is taken from the population and a warning says so.
    `neutral_row`: a frame the user knows to be at rest, which is the neutral instead (see `neutral_rows`).
    `known`: the actor's neutral (478,3) as an earlier capture's calibration found it (in that clip's face frame),
    which is the neutral instead of either, once aligned to this clip's face (on the STABLE points).
    Unless a neutral frame is named, the neutral's irises sit where they rest over all of the frames (`at_rest`),
    and so do its brows unless the neutral is `known` (the brows' rest is the actor's, the gaze's the take's).
    """
    ids = np.flatnonzero(frames.valid)
    if known is not None:
        pick = np.zeros(0, int)
        reference = np.median(frames.points[ids], axis=0)
        neutral = apply_similarity(*robust_similarity(np.asarray(known, np.float64), reference), known)
    elif neutral_row is not None:
        pick = neutral_rows(frames.valid, neutral_row)
    else:
        pick = ids[np.argsort(rest_cost(frames.points[ids]))[:max(3, len(ids) // 10)]]
    if known is None:
        neutral = np.median(frames.points[pick], axis=0)
    learnt = () if neutral_row is not None else GAZE_REST if known is not None else ALL_REST
    if learnt:
        neutral = at_rest(neutral, rest_offsets(frames.points[ids]), learnt)
    values = {k: float(v) for k, v in neutral_features(neutral).items()}
    warnings = []
    for key, (low, high) in NEUTRAL_RANGE.items():
        if not low <= values[key] <= high:
            warnings.append(f"{key.replace('_', ' ')} {values[key]:.2f} is outside the neutral range "
                            f"{low:g}..{high:g}")
    if warnings and known is not None:
        warnings = ["calibration uncertain: the actor's neutral from the earlier capture does not look relaxed ("
                    + "; ".join(warnings) + "); population values stand in for those features. Take the face from "
                    "a capture whose clip holds a relaxed, neutral moment."]
    elif warnings and neutral_row is not None:
        warnings = ["calibration uncertain: the neutral frame given does not look relaxed (" + "; ".join(warnings)
                    + "); population values stand in for those features. Pick a frame where the mouth is closed "
                    "and relaxed and the eyes are open."]
    elif warnings:
        warnings = ["calibration uncertain: no neutral-looking frame in the clip (" + "; ".join(warnings)
                    + "); population values stand in for the actor's neutral. Include a second or two of "
                    "relaxed, neutral face in the clip, or take the actor's face from an earlier capture that has "
                    "one (--face-from, or Actor's Face in Blender), for calibrated curves."]
    return Calibration(pick, neutral, values, warnings, learnt)


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def side_weights(frames: FaceFrames) -> np.ndarray:
    """`core.far_side.own_side_weights` of the frames (T,2): 1 where there is no face."""
    out = np.ones((len(frames.valid), 2))
    ids = np.flatnonzero(frames.valid)
    to_camera = np.einsum("tji,tj->ti", frames.rotation[ids], -frames.origin[ids])  # in the face-fixed frame
    out[ids] = own_side_weights(to_camera, np.array([0.0, 0.0, -1.0]))  # the face looks down -z there
    return out


def solve(landmarks: np.ndarray, valid: np.ndarray, image_size, frames: FaceFrames | None = None,
          calibration: Calibration | None = None) -> tuple[np.ndarray, Calibration]:
    """ARKit curves (T,52) in [0,1], Apple's order (`ARKIT_NAMES`), and the calibration they rest on.

    landmarks (T,478,3) MediaPipe-normalised; valid (T,) bool (curves there are 0); image_size (W,H).
    `frames` and `calibration` may be passed when already computed for the same landmarks.
    """
    if frames is None:
        frames = face_frames(landmarks, valid, image_size)
        frames = decouple(frames, pose_coupling(frames))
    cal = calibration if calibration is not None else calibrate(frames)
    n0 = cal.neutral
    p = np.where(frames.valid[:, None, None], frames.points, n0)  # frames without a face read as neutral
    d = p - n0  # displacement from the neutral, mm (x to the subject's left, y down)
    out = np.zeros((len(p), len(ARKIT_NAMES)))

    def put(name: str, value: np.ndarray) -> None:
        out[:, ARKIT_INDEX[name]] = _clip01(value)

    # Population neutral where the clip's own neutral is implausible (see `calibrate`).
    now = neutral_features(p)
    base = {k: (NEUTRAL_POPULATION[k] if cal.warnings and not NEUTRAL_RANGE[k][0] <= v <= NEUTRAL_RANGE[k][1]
                else v) for k, v in cal.features.items()}

    chin = d[:, CHIN]
    jaw_drop = chin[:, 1]
    put("jawOpen", jaw_drop / _RANGE_MM["jaw_drop"])
    put("jawLeft", chin[:, 0] / _RANGE_MM["jaw_side"])
    put("jawRight", -chin[:, 0] / _RANGE_MM["jaw_side"])
    mouth_shift = d[:, list(MOUTH_CORNER), 0].mean(1) - 0.5 * chin[:, 0]
    put("mouthLeft", mouth_shift / _RANGE_MM["mouth_side"])
    put("mouthRight", -mouth_shift / _RANGE_MM["mouth_side"])
    # Lips pushed together: closed, a pucker; parted (an O), a funnel. Opening the jaw parts them with no narrowing.
    narrowing = base["mouth_width"] - now["mouth_width"] - JAW_NARROWING * jaw_drop
    parting = (now["lip_gap"] - base["lip_gap"]) / _RANGE_MM["funnel_gap"]
    put("mouthFunnel", np.minimum(narrowing / _RANGE_MM["funnel_narrow"], parting))
    put("mouthPucker", narrowing / (_RANGE_REL["pucker"] * base["mouth_width"]) * (1.0 - _clip01(parting)))
    # ARKit's mouthClose is the part of jawOpen whose lips stay together: the share of the lip gap that the chin's
    # drop would open and that is missing.
    missing = 1.0 - (now["lip_gap"] - base["lip_gap"]) / np.maximum(JAW_GAP * jaw_drop, 1e-6)
    put("mouthClose", np.where(jaw_drop > 0, jaw_drop / _RANGE_MM["jaw_drop"] * _clip01(missing), 0.0))
    # The chin pushed up (the jaw cannot close further than at rest) pushes the lower lip up and out. Both must rise
    # (stretching the lips wide lifts MediaPipe's chin as well, but not the lower lip), measured from the nose, which a
    # blink does not move (it moves MediaPipe's eye corners, and the face frame with them, by 0.3-0.5 of this range).
    nose = _mean(d, NOSE_DORSUM)[:, 1]
    lower_border = _mean(d, VERMILION[1][0])[:, 1]  # the lower lip's outer edge, mm down from its rest
    chin_rise = np.maximum(nose - jaw_drop, 0.0)
    put("mouthShrugLower", np.minimum(chin_rise, (nose - lower_border) / SHRUG_LIP) / _RANGE_MM["shrug"])
    # A lip rolled in shows less of its red, beyond what the jaw's travel stretches out of it, and its outer border
    # turns towards the mouth: the upper one down, the lower one up from the chin. (A sneer or a smile thins the upper
    # lip's red too, but lifts its border.) The lower lip rides on the jaw: kept closed as the jaw opens, it stretches
    # further.
    jaw_opening = np.maximum(jaw_drop, 0.0)
    stretched = JAW_THINNING * jaw_opening + SHRUG_THINNING * chin_rise
    per_lip = (stretched, stretched + CLOSED_THINNING * _clip01(missing) * jaw_opening)
    inwards = (_mean(d, VERMILION[0][0])[:, 1], jaw_drop - lower_border)
    red, red0 = lip_red(p), lip_red(n0)
    for k, (name, turned, thinned) in enumerate(zip(("mouthRollUpper", "mouthRollLower"), inwards, per_lip)):
        put(name, np.minimum((1.0 - red[:, k] / max(red0[k], 1e-6) - thinned) / _RANGE_REL["roll"],
                             turned / _RANGE_MM["roll"]))
    # Per side, the corner rising relative to the lips' middle (a smile), from the neutral's (whose mean lift may be
    # the population's, as above): a smile on one side is none on the other.
    lips_mid = (p[:, LIP_INNER_UPPER, 1] + p[:, LIP_INNER_LOWER, 1]) / 2
    lift0 = ((n0[LIP_INNER_UPPER, 1] + n0[LIP_INNER_LOWER, 1]) / 2 - n0[list(MOUTH_CORNER), 1]
             + base["corner_lift"] - cal.features["corner_lift"])
    lift_gain = lips_mid[:, None] - p[:, list(MOUTH_CORNER), 1] - lift0  # (T,2)
    inner_own = []  # per side, the inner brow's rise that is not the whole brow's
    # The nose wings rise from the nose's bridge, which neither the eyes' closing nor the mouth moves (MediaPipe's eye
    # corners drop a little as the lids close: from them, a blink read as a sneer).
    bridge = d[:, list(NOSE_BRIDGE), 1].mean(1)
    eye_widths = np.stack([np.linalg.norm(p[:, outer] - p[:, inner], axis=1) for outer, inner in EYE_CORNERS], 1)
    gaze = binocular((iris_offsets(p) - iris_offsets(n0[None])) / eye_widths[..., None])  # (T,2,3) in eye widths
    for k, side in enumerate(SIDES):
        sign = 1.0 if k == 0 else -1.0  # +x is outwards on the subject's left
        eye_w = eye_widths[:, k]
        ap = (_mean(p, LID_LOWER[k])[:, 1] - _mean(p, LID_UPPER[k])[:, 1]) / eye_w
        ap0 = float((_mean(n0, LID_LOWER[k])[1] - _mean(n0, LID_UPPER[k])[1])
                    / np.linalg.norm(n0[EYE_OUTER[k]] - n0[EYE_INNER[k]]))
        if cal.warnings and not NEUTRAL_RANGE["aperture"][0] <= ap0 <= NEUTRAL_RANGE["aperture"][1]:
            ap0 = NEUTRAL_POPULATION["aperture"]
        put(f"eyeBlink{side}", (ap0 - ap) / (_RANGE_REL["blink"] * ap0))
        put(f"eyeWide{side}", (ap - ap0) / (_RANGE_REL["wide"] * ap0))
        eye_line = d[:, [EYE_OUTER[k], EYE_INNER[k]], 1].mean(1)
        lower_up = -(_mean(d, LID_LOWER[k])[:, 1] - eye_line)
        upper_down = np.maximum(_mean(d, LID_UPPER[k])[:, 1] - eye_line, 0.0)
        put(f"eyeSquint{side}", (lower_up - LOWER_WITH_UPPER * upper_down) / (_RANGE_REL["squint"] * ap0 * eye_w))
        outwards = sign * gaze[:, k, 0]
        put(f"eyeLookOut{side}", outwards / _RANGE_REL["look_h"])
        put(f"eyeLookIn{side}", -outwards / _RANGE_REL["look_h"])
        put(f"eyeLookUp{side}", -gaze[:, k, 1] / _RANGE_REL["look_v"])
        put(f"eyeLookDown{side}", gaze[:, k, 1] / _RANGE_REL["look_v"])
        corner = d[:, MOUTH_CORNER[k]]
        # Opening the jaw pulls the corners down about a third as far as the chin: not a frown.
        corner_up = -(corner[:, 1] - jaw_drop / 3)
        # Outwards from the mouth's own middle: the whole mouth moving sideways (mouthLeft/Right) is no smile.
        widening = sign * (corner[:, 0] - d[:, list(MOUTH_CORNER), 0].mean(1))
        put(f"mouthSmile{side}", (0.5 * corner_up + 0.5 * lift_gain[:, k] + 0.3 * widening) / _RANGE_MM["smile"])
        put(f"mouthFrown{side}", -corner_up / _RANGE_MM["frown"])
        smiled = np.maximum(corner_up, 0.0)
        put(f"mouthUpperUp{side}", (-_mean(d, UPPER_LIP[k])[:, 1] - SMILE_LIFTS[1] * smiled) / _RANGE_MM["upper_up"])
        put(f"mouthLowerDown{side}", (_mean(d, LOWER_LIP[k])[:, 1] - jaw_drop) / _RANGE_MM["lower_down"])
        inner_up = -(_mean(d, BROW_INNER[k])[:, 1] - eye_line)
        outer_up = -(_mean(d, BROW_OUTER[k])[:, 1] - eye_line)
        # A lowered brow drops along its length: both halves read, for half the noise of one.
        put(f"browDown{side}", -(inner_up + outer_up) / 2 / _RANGE_MM["brow_down"])
        put(f"browOuterUp{side}", outer_up / _RANGE_MM["brow_up"])
        nose_up = -(_mean(d, NOSE_WING[k])[:, 1] - bridge)
        put(f"noseSneer{side}", (nose_up - SMILE_LIFTS[0] * smiled) / _RANGE_MM["sneer"])
        inner_own.append(inner_up - INNER_WITH_OUTER * outer_up)
    own = side_weights(frames)
    put("browInnerUp", np.mean(from_near_side(*inner_own, own), 0) / _RANGE_MM["brow_up"])
    out = curves_from_near_side(out, own)
    out[~frames.valid] = 0.0
    return out, cal
