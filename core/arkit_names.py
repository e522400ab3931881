"""Apple's 52 ARKit blendshape names, Live Link Face's spelling and order of them, and ICT-FaceKit -> ARKit.

ARKit's Left/Right and ICT-FaceKit's _L/_R both mean the subject's own left/right, so sides map straight
across; no mirroring happens anywhere here.
"""
from __future__ import annotations

import numpy as np

# Apple's order (ARFaceAnchor.BlendShapeLocation as documented: left eye, right eye, mouth and jaw,
# brows/cheeks/nose, tongue). Capture files store `arkit (T,52)` in this order.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight",
    "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
ARKIT_INDEX = {name: i for i, name in enumerate(ARKIT_NAMES)}


def pascal(name: str) -> str:
    """Live Link Face spells ARKit names in PascalCase: eyeBlinkLeft -> EyeBlinkLeft."""
    return name[:1].upper() + name[1:]


# Live Link Face's CSV column order: Apple's, except that jawRight/jawLeft and mouthRight/mouthLeft swap.
LIVELINK_NAMES: tuple[str, ...] = tuple(pascal(n) for n in (
    ARKIT_NAMES[:15] + ("jawRight", "jawLeft") + ARKIT_NAMES[17:21] + ("mouthRight", "mouthLeft") + ARKIT_NAMES[23:]))
# LIVELINK_ORDER[k] is the ARKit index of Live Link Face column k.
LIVELINK_ORDER = np.array([ARKIT_INDEX[n[:1].lower() + n[1:]] for n in LIVELINK_NAMES])

# ICT-FaceKit splits these ARKit channels into a left and a right shape; ARKit's channel is their mean.
ICT_PAIRED = ("browInnerUp", "cheekPuff")
_ICT_SIDES = {"_L": "Left", "_R": "Right"}


def ict_to_arkit_name(ict_name: str) -> str | None:
    """The ARKit channel an ICT-FaceKit expression feeds (eyeBlink_L -> eyeBlinkLeft), or None."""
    base, side = ict_name[:-2], ict_name[-2:]
    if side in _ICT_SIDES:
        if base in ICT_PAIRED:
            return base
        name = base + _ICT_SIDES[side]
    else:
        name = ict_name
    return name if name in ARKIT_INDEX else None


def arkit_from_capture(capture: dict) -> np.ndarray:
    """The capture's ARKit curves (T,52) in Apple's order: its `arkit` reordered by `arkit_names`, or, for a
    capture without them, derived from ICT-FaceKit-named `expression` weights. Raises KeyError otherwise."""
    if "arkit" in capture:
        arkit = np.asarray(capture["arkit"], np.float64)
        names = [str(n) for n in capture.get("arkit_names", ARKIT_NAMES)]
        out = np.zeros((len(arkit), len(ARKIT_NAMES)))
        for j, name in enumerate(names):
            if name in ARKIT_INDEX:
                out[:, ARKIT_INDEX[name]] = arkit[:, j]
        return out
    names = [str(n) for n in capture.get("expression_names", ())]
    if "expression" in capture and any(ict_to_arkit_name(n) for n in names):
        return ict_to_arkit(capture["expression"], names)
    raise KeyError("the capture holds no ARKit curves (no 'arkit' and no ICT-FaceKit expression names)")


def ict_to_arkit(weights: np.ndarray, ict_names) -> np.ndarray:
    """ARKit curves (T,52) in Apple's order from ICT-FaceKit expression weights (T,E) named `ict_names`.

    Paired ICT shapes (browInnerUp_L/_R, cheekPuff_L/_R) average into one channel; channels ICT lacks
    (tongueOut) stay 0; ICT names outside ARKit are ignored.
    """
    weights = np.asarray(weights, np.float64)
    names = [str(n) for n in ict_names]
    if weights.ndim != 2 or weights.shape[1] != len(names):
        raise ValueError(f"weights have shape {weights.shape}, expected (T, {len(names)}) for the names given")
    out = np.zeros((len(weights), len(ARKIT_NAMES)))
    count = np.zeros(len(ARKIT_NAMES))
    for j, name in enumerate(names):
        target = ict_to_arkit_name(name)
        if target is not None:
            out[:, ARKIT_INDEX[target]] += weights[:, j]
            count[ARKIT_INDEX[target]] += 1
    return out / np.maximum(count, 1)
