"""Live Link Face CSV takes (Epic's iPhone app), written from and read into Kinesics captures.

A take is one row per frame: `Timecode` (HH:MM:SS:FF.fff, FF counted at the take's frame rate and .fff a
sub-frame fraction), `BlendShapeCount` (61), the 52 ARKit weights in PascalCase and Live Link Face's column
order, then HeadYaw, HeadPitch, HeadRoll and the same three for the left then the right eye.

Rotation convention (radians): a rotation R in the face's own axes (x the subject's left, y up, z out of the
face) is R = Ry(yaw) @ Rx(pitch) @ Rz(roll); positive yaw turns the head to the subject's left, positive pitch
tilts it down, positive roll tips the top of the head to the subject's right. The head rotation of a capture
is its global then neck rotation taken relative to looking straight into the (OpenCV) camera.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import capture_file
from .arkit_names import ARKIT_NAMES, LIVELINK_NAMES, LIVELINK_ORDER, arkit_from_capture
from .errors import KinesicsError
from .paths import atomic_write
from .rotations import matrix_to_rotvec, matrix_to_ypr, rotvec_to_matrix, ypr_to_matrix

ROTATION_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                    "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
HEADER = ("Timecode", "BlendShapeCount") + LIVELINK_NAMES + ROTATION_COLUMNS
BLENDSHAPE_COUNT = len(LIVELINK_NAMES) + len(ROTATION_COLUMNS)  # 61, as the app writes it
STANDARD_RATES = (24, 25, 30, 48, 50, 60)
# OpenCV camera axes (x right, y down, z forward) to the face's axes when it looks into the camera.
CAMERA_TO_FACE = np.diag([1.0, -1.0, -1.0])


class LiveLinkError(KinesicsError, ValueError):
    """A Live Link Face CSV that cannot be read, or a capture that cannot be written as one."""

    code = "livelink"


@dataclass
class LiveLinkTake:
    """T frames: frame (T,) frame numbers from the first row at `fps` (whole, but for a capture of
    variable-frame-rate footage, whose frames fall between: the timecodes' sub-frame part keeps them), arkit (T,52)
    in Apple's order,
    head (T,3) yaw/pitch/roll and eyes (T,6) left then right yaw/pitch/roll, radians."""

    fps: float
    frame: np.ndarray
    arkit: np.ndarray
    head: np.ndarray
    eyes: np.ndarray


def head_rotation(capture: dict) -> np.ndarray:
    """(T,3,3) the head's rotation (global then neck) relative to facing the camera, in the face's axes."""
    rotation = CAMERA_TO_FACE @ rotvec_to_matrix(capture["global_pose"])
    if "neck_pose" in capture:
        rotation = rotation @ rotvec_to_matrix(capture["neck_pose"])
    return rotation


# --- timecodes --------------------------------------------------------------------------------------------

def format_timecode(frame: float, fps: float) -> str:
    """Frame number (sub-frames allowed) -> `HH:MM:SS:FF.fff` at `fps` (FF counted at the nearest whole rate)."""
    nominal = round(fps)
    t = frame / fps
    seconds = math.floor(t + 1e-9)
    frames = max(0.0, (t - seconds) * nominal)
    whole = min(int(frames + 1e-6), nominal - 1)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{whole:02d}.{round((frames - whole) * 1000) % 1000:03d}"


def _parse_timecode(text: str) -> tuple[int, float]:
    """`HH:MM:SS:FF.fff` -> (whole seconds, frames within the second incl. sub-frame)."""
    parts = text.strip().split(":")
    if len(parts) != 4:
        raise ValueError(text)
    h, m, s = (int(p) for p in parts[:3])
    return h * 3600 + m * 60 + s, float(parts[3])


# --- CSV --------------------------------------------------------------------------------------------------

def write_csv(path: str | os.PathLike, take: LiveLinkTake) -> Path:
    """Write a take as Live Link Face CSV (atomically: a temporary file, then a rename)."""
    path = Path(path)
    n = len(take.arkit)
    if take.arkit.shape != (n, len(ARKIT_NAMES)):
        raise LiveLinkError(f"the ARKit curves have shape {take.arkit.shape}, expected (T, {len(ARKIT_NAMES)})")
    rotations = np.concatenate([take.head, take.eyes], 1)
    blend = np.asarray(take.arkit)[:, LIVELINK_ORDER]
    with atomic_write(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        for i in range(n):
            out.writerow([format_timecode(float(take.frame[i]), take.fps), BLENDSHAPE_COUNT]
                         + [f"{v:.8f}" for v in blend[i]] + [f"{v:.8f}" for v in rotations[i]])
    return path


def read_csv(path: str | os.PathLike, fps: float | None = None) -> LiveLinkTake:
    """Read a Live Link Face CSV. `fps` None infers the take's rate from its timecodes (the smallest standard
    rate above the largest frame count seen, so 29.97 reads as 30; pass it for NTSC rates and for takes shorter
    than a second). Columns are found by name, any case; missing rotation columns read as 0. Frames repeated in
    the file keep their last row."""
    path = Path(path)
    if not path.is_file():
        raise LiveLinkError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise LiveLinkError(f"{path}: the file is empty")
    columns = {name.strip().lower(): j for j, name in enumerate(rows[0])}
    blend_cols = {i: columns.get(name.lower()) for i, name in enumerate(ARKIT_NAMES)}
    if "timecode" not in columns or all(c is None for c in blend_cols.values()):
        raise LiveLinkError(f"{path}: not a Live Link Face CSV (its header has no Timecode and ARKit columns); "
                            "export the take from the Live Link Face app as CSV")
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise LiveLinkError(f"{path}: the take holds no frames")
    rot_cols = [columns.get(name.lower()) for name in ROTATION_COLUMNS]
    times, values = [], np.zeros((len(body), len(ARKIT_NAMES) + len(ROTATION_COLUMNS)))
    for r, row in enumerate(body):
        line = r + 2
        try:
            times.append(_parse_timecode(row[columns["timecode"]]))
            for i, j in list(blend_cols.items()) + [(len(ARKIT_NAMES) + k, j) for k, j in enumerate(rot_cols)]:
                if j is not None:
                    values[r, i] = float(row[j])
        except (ValueError, IndexError):
            raise LiveLinkError(f"{path}, line {line}: unreadable row (bad timecode or number); "
                                "re-export the take or remove that line") from None
    if fps is None:
        top = max(f for _, f in times)
        fps = next((rate for rate in STANDARD_RATES if top < rate), 60)
    seconds = np.array([s for s, _ in times], np.float64)
    frames_in = np.array([f for _, f in times], np.float64)
    if fps == round(fps):
        # At whole rates a row's frame is its FF; the sub-frame fraction only says when within it it was sampled.
        frames_in = np.floor(frames_in + 1e-6)
    absolute = np.rint(seconds * fps + frames_in * fps / round(fps)).astype(np.int64)
    frame = absolute - absolute.min()
    # Keep the last row of every frame number, in frame order.
    order = np.argsort(frame, kind="stable")
    keep = order[np.r_[frame[order][1:] != frame[order][:-1], True]]
    v = values[keep]
    return LiveLinkTake(float(fps), frame[keep], v[:, :len(ARKIT_NAMES)], v[:, len(ARKIT_NAMES):][:, :3],
                        v[:, len(ARKIT_NAMES) + 3:])


# --- captures ---------------------------------------------------------------------------------------------

def take_from_capture(capture: dict) -> LiveLinkTake:
    """A capture's ARKit curves, head and eye rotations as a take, frames counted from its first frame."""
    try:
        arkit = arkit_from_capture(capture)
    except KeyError as err:
        raise LiveLinkError(f"cannot write a Live Link Face take: {err.args[0]}") from None
    n = len(arkit)
    head = matrix_to_ypr(head_rotation(capture)) if "global_pose" in capture else np.zeros((n, 3))
    eye_pose = np.asarray(capture.get("eye_pose", np.zeros((n, 6))), np.float64)
    eyes = np.concatenate([matrix_to_ypr(rotvec_to_matrix(eye_pose[:, :3])),
                           matrix_to_ypr(rotvec_to_matrix(eye_pose[:, 3:]))], 1)
    fps = float(capture.get("fps", 30.0))
    times = capture_file.times({"frame_index": np.arange(n), **capture}, fps)
    frame = np.round((times - (times[0] if n else 0.0)) * fps, 9)  # whole for constant-rate footage
    return LiveLinkTake(fps, frame, np.clip(arkit, 0.0, 1.0), head, eyes)


def capture_from_take(take: LiveLinkTake) -> dict:
    """The retargetable part of a capture from a take: fps, frame_index, valid, arkit_names, arkit, and poses
    (global_pose facing the OpenCV camera turned by the head rotation, zero neck and jaw, eye_pose)."""
    n = len(take.frame)
    eyes = np.concatenate([matrix_to_rotvec(ypr_to_matrix(take.eyes[:, :3])),
                           matrix_to_rotvec(ypr_to_matrix(take.eyes[:, 3:]))], 1)
    return {
        "fps": np.float64(take.fps),
        "frame_index": np.asarray(take.frame, np.int64),
        "valid": np.ones(n, bool),
        "arkit_names": np.array(ARKIT_NAMES),
        "arkit": np.asarray(take.arkit, np.float32),
        "global_pose": matrix_to_rotvec(CAMERA_TO_FACE @ ypr_to_matrix(take.head)),
        "neck_pose": np.zeros((n, 3)),
        "jaw_pose": np.zeros((n, 3)),
        "eye_pose": eyes,
        "model": "livelink",
    }


def export_capture(capture: dict, path: str | os.PathLike) -> Path:
    """Write a capture's ARKit curves and rotations as a Live Link Face CSV."""
    return write_csv(path, take_from_capture(capture))


def import_take(path: str | os.PathLike, fps: float | None = None) -> dict:
    """Read a Live Link Face CSV into the retargetable part of a capture (see `capture_from_take`)."""
    return capture_from_take(read_csv(path, fps))
