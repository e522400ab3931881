"""Reading a turned face's far side from its near side.

MediaPipe places the far side of a turned face from what it sees of the near one, and its guess drifts: turned
45-60 degrees, painted heads at rest read browDown, eyeSquint and mouthFrown up to 1 on their far side alone
(`benchmarks/bench_painted.py --turns`). So each sided ARKit channel is read from its own side while that side faces
the camera, from the other side's counterpart once it has turned away, and from both in between.
"""
from __future__ import annotations

import numpy as np

from .arkit_names import ARKIT_INDEX

# A side of the face turned this far from the camera (degrees, about the head's vertical axis) is read from its own
# landmarks; this far and beyond from the other side's.
FAR_SIDE_DEG = (25.0, 50.0)

# Each of the subject's left channels and its counterpart on the right: looking outwards with the left eye is looking
# inwards with the right. (jawLeft/Right and mouthLeft/Right are directions, not sides.)
SIDE_PAIRS = tuple((f"{c}Left", f"{c}Right") for c in (
    "eyeBlink", "eyeLookDown", "eyeLookUp", "eyeSquint", "eyeWide", "mouthSmile", "mouthFrown", "mouthDimple",
    "mouthStretch", "mouthPress", "mouthLowerDown", "mouthUpperUp", "browDown", "browOuterUp", "cheekSquint",
    "noseSneer")) + (("eyeLookInLeft", "eyeLookOutRight"), ("eyeLookOutLeft", "eyeLookInRight"))


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
