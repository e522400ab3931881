"""Reading a turned face's far side from its near side.

MediaPipe places the far side of a turned face from what it sees of the near one, and its guess drifts: turned
45-60 degrees, painted heads at rest read browDown, eyeSquint and mouthFrown up to 1 on their far side alone
(`benchmarks/bench_painted.py --turns`). So each sided ARKit channel is read from its own side while that side faces
the camera, from the other side's counterpart once it has turned away, and from both in between.
"""
from __future__ import annotations

import numpy as np

from .arkit_names import ARKIT_INDEX
from .capture_file import times
from .rotations import rotvec_to_matrix

# A side of the face turned this far from the camera (degrees, about the head's vertical axis) is read from its own
# landmarks; this far and beyond from the other side's.
FAR_SIDE_DEG = (25.0, 50.0)

# A face turned about 45 degrees or more from the camera is read less well: MediaPipe places the landmarks of a painted
# head turned 60 degrees as those of one turned 50, and the fit's head rotation errs 13-15 degrees there (7-10 at 44-53
# degrees, 2-6 at 31-38; benchmarks/bench_painted.py --turns). A capture says where it happens: where the fit turns the
# head further than this (degrees), since it reads such turns short (45 degrees as 38-41).
TURNED_FAR_DEG = 40.0

# Each of the subject's left channels and its counterpart on the right: looking outwards with the left eye is looking
# inwards with the right. (jawLeft/Right and mouthLeft/Right are directions, not sides.)
SIDE_PAIRS = tuple((f"{c}Left", f"{c}Right") for c in (
    "eyeBlink", "eyeLookDown", "eyeLookUp", "eyeSquint", "eyeWide", "mouthSmile", "mouthFrown", "mouthDimple",
    "mouthStretch", "mouthPress", "mouthLowerDown", "mouthUpperUp", "browDown", "browOuterUp", "cheekSquint",
    "noseSneer")) + (("eyeLookInLeft", "eyeLookOutRight"), ("eyeLookOutLeft", "eyeLookInRight"))


def head_rotations(capture: dict) -> np.ndarray:
    """The head's rotations (T,3,3) in the camera: a capture's `global_pose` (T,3), then its `neck_pose` (T,3)."""
    return rotvec_to_matrix(np.asarray(capture["global_pose"])) @ rotvec_to_matrix(np.asarray(capture["neck_pose"]))


def turned_far_note(capture: dict) -> str | None:
    """A note for the user when the head of a capture (its `global_pose` and `neck_pose` (T,3), `translation` (T,3),
    `valid` (T,); the model's face looks along +z) turns further than TURNED_FAR_DEG from the camera in any frame
    with a face: how many frames, and when the first is."""
    turns = head_rotations(capture)
    to_camera = -np.asarray(capture["translation"], np.float64)
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-9)
    facing = turns[:, :, 2]  # where the face looks, in the camera
    angle = np.degrees(np.arccos(np.clip((facing * to_camera).sum(1), -1.0, 1.0)))
    far = np.flatnonzero((angle > TURNED_FAR_DEG) & np.asarray(capture["valid"], bool))
    if not len(far):
        return None
    first = float(times(capture)[far[0]])
    return (f"the face turns about 45° or more from the camera in {len(far)} frames (the first "
            f"{int(first // 60)}:{first % 60:05.2f} into the footage, up to {angle[far].max():.0f}° as fitted): MediaPipe "
            "reads a face turned that far less well, so head rotation there reads short and expressions less "
            "reliably. Film the face within about 45° of the camera where the performance allows.")


def own_side_weights(to_camera: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(T,2) how much of each side's reading (subject's left, right) comes from its own side: 1 up to the first of
    FAR_SIDE_DEG, falling to 0 at the second. to_camera (T,3): the direction from the face to the camera in a head
    frame whose x points to the subject's left; forward (3,): the way the face looks in that frame."""
    forward = np.asarray(forward, np.float64)
    # > 0: the head turns towards the subject's left, which turns that side away from the camera
    away = np.degrees(np.arctan2(-to_camera[:, 0], to_camera @ forward))
    low, high = FAR_SIDE_DEG
    return np.clip((high - np.stack([away, -away], 1)) / (high - low), 0.0, 1.0)


def from_near_side(left: np.ndarray, right: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each side's reading (T,) with its share (own (T,2), `own_side_weights`) and the rest from the other side."""
    return own[:, 0] * left + (1 - own[:, 0]) * right, own[:, 1] * right + (1 - own[:, 1]) * left


def curves_from_near_side(curves: np.ndarray, own: np.ndarray) -> np.ndarray:
    """ARKit curves (T,52), Apple's order, with every sided pair (`SIDE_PAIRS`) read `from_near_side`."""
    out = curves.copy()
    for left, right in SIDE_PAIRS:
        i, j = ARKIT_INDEX[left], ARKIT_INDEX[right]
        out[:, i], out[:, j] = from_near_side(curves[:, i], curves[:, j], own)
    return out
