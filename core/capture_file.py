"""The capture file: the `.npz` contract between core, bridge and addon.

Keys (T frames, S shape, E expression components):
  fps () float: the footage's true frame rate; image_size (2,) width/height; frame_index (T,) source-video
  frame numbers (frame t happened at frame_index[t] / fps seconds, so strides and ranges keep their timing),
  valid (T,) bool (False: no face was found; parameters there are interpolated), model () str,
  shape (S,), expression (T,E), jaw_pose (T,3), neck_pose (T,3), eye_pose (T,6) left eye then right,
  global_pose (T,3), translation (T,3) in model units (metres for FLAME), focal_px () or (T,), cx (), cy (),
  landmarks (T,478,3) MediaPipe output as given (x, y normalised to the image, z; where the frames were tracked
  in turns or with the mirror pass, its two views combined: see `core.landmarks.tracking_passes`).
Optional: time_s (T,) seconds after the footage's first frame at which frame t is shown: frame_index / fps
  for constant-rate footage, the container's timestamps for variable-frame-rate footage (see `times`);
  arkit_names (52,) and arkit (T,52) in [0,1]; expression_names (E,); model_hash () str;
  warnings (K,) str (e.g. footage that ended early); neutral_frame () int, the frame named as the actor's rest
  face (see core.engine.CaptureEngine.run); expressiveness () float, the fit's (not in built-in captures);
  face_from () str, the earlier capture whose face this one kept (`--face-from`); arkit_neutral (478,3), the
  actor's rest face the geometric ARKit measures compare with (mm, face-fixed frame, see core.arkit_geometric);
  arkit_shape (S',) and arkit_basis_hash () str, the actor's face in the ARKit basis the curves were fitted with;
  arkit_rest (52,), what that fit reads on the actor's rest face, taken off the curves (see core.arkit.BasisSolver);
  builtin_* (the built-in model's own arrays, see core.builtin_model).
Geometry: camera-space vertices = the FLAME forward pass (smplx semantics) + translation, OpenCV camera
(x right, y down, z forward). Loading never unpickles.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import KinesicsError
from .paths import atomic_write

PER_FRAME = ("frame_index", "valid", "expression", "jaw_pose", "neck_pose", "eye_pose", "global_pose",
             "translation", "landmarks")
REQUIRED = ("fps", "image_size", "model", "shape", "focal_px", "cx", "cy") + PER_FRAME
OPTIONAL_PER_FRAME = ("arkit", "time_s")
# Keys a streamed capture settles only once its last frame is in (see core.engine): sent earlier in a header or in
# chunks, their final values replace those.
SETTLED_AT_END = ("arkit", "arkit_neutral", "warnings")
_WIDTHS = {"jaw_pose": 3, "neck_pose": 3, "eye_pose": 6, "global_pose": 3, "translation": 3}


class CaptureFileError(KinesicsError, ValueError):
    """A capture file that is missing, damaged or breaks the contract."""

    code = "capture_file"


def validate(capture: dict) -> None:
    """Raise CaptureFileError naming the first key that breaks the contract."""
    missing = [k for k in REQUIRED if k not in capture]
    if missing:
        raise CaptureFileError(f"the capture lacks {', '.join(missing)}")
    n = len(np.asarray(capture["frame_index"]))
    for key in PER_FRAME + tuple(k for k in OPTIONAL_PER_FRAME if k in capture):
        arr = np.asarray(capture[key])
        if len(arr) != n:
            raise CaptureFileError(f"'{key}' has {len(arr)} frames, 'frame_index' has {n}")
    for key, width in _WIDTHS.items():
        if np.asarray(capture[key]).shape != (n, width):
            raise CaptureFileError(f"'{key}' has shape {np.asarray(capture[key]).shape}, expected ({n}, {width})")
    if np.asarray(capture["landmarks"]).shape[1:] != (478, 3):
        raise CaptureFileError(f"'landmarks' has shape {np.asarray(capture['landmarks']).shape}, expected (T, 478, 3)")
    focal = np.asarray(capture["focal_px"])
    if focal.ndim not in (0, 1) or (focal.ndim == 1 and len(focal) != n):
        raise CaptureFileError(f"'focal_px' must be a scalar or hold one value per frame, not shape {focal.shape}")
    if "arkit" in capture and np.asarray(capture["arkit"]).shape != (n, len(capture.get("arkit_names", ()))):
        raise CaptureFileError("'arkit' must be (T, len(arkit_names))")


def times(capture: dict, fps: float | None = None) -> np.ndarray:
    """(T,) seconds after the footage's first frame at which each frame is shown: `time_s`, or frame_index / fps
    in captures made before it was written. `fps` stands in for the capture's own in a streamed chunk."""
    if "time_s" in capture:
        return np.asarray(capture["time_s"], np.float64)
    return np.asarray(capture["frame_index"], np.float64) / float(capture["fps"] if fps is None else fps)


def save(path: str | os.PathLike, capture: dict) -> Path:
    """Validate and write atomically: a temporary file in the same folder, then a rename."""
    validate(capture)
    path = Path(path)
    arrays = {k: np.asarray(v) for k, v in capture.items()}
    arrays["valid"] = arrays["valid"].astype(bool)
    with atomic_write(path) as fh:
        # Stored, not deflated: the landmarks, most of a capture, are noisy floats that deflate by under a tenth,
        # at 25 times the cost of writing (seconds for a long clip).
        np.savez(fh, **arrays)
    return path


def load(path: str | os.PathLike) -> dict:
    """Read a capture file into a dict of numpy arrays (strings become str, scalars stay 0-d arrays)."""
    path = Path(path)
    if not path.is_file():
        raise CaptureFileError(f"{path}: no such capture file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            capture = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise CaptureFileError(f"{path}: not a readable capture file ({err}); capture the video again") from None
    if "model" in capture:
        capture["model"] = str(capture["model"])
    try:
        validate(capture)
    except CaptureFileError as err:
        raise CaptureFileError(f"{path}: {err}") from None
    return capture


def assemble(header: dict, chunks: list[dict]) -> dict:
    """One capture from a streamed header (static keys) and its per-frame chunks, in order.

    With no chunks (nothing finished), the per-frame arrays are empty with the right widths.
    """
    capture = {k: v for k, v in header.items() if k != "n_frames"}
    n_expression = int(header.get("n_expression", len(header.get("expression_names", ()))))
    empty = {"frame_index": (0,), "valid": (0,), "expression": (0, n_expression), "landmarks": (0, 478, 3),
             **{k: (0, w) for k, w in _WIDTHS.items()}}
    for key in PER_FRAME + OPTIONAL_PER_FRAME:
        parts = [np.asarray(c[key]) for c in chunks if key in c]
        if parts:
            capture[key] = np.concatenate(parts)
        elif key in empty:
            capture[key] = np.zeros(empty[key], bool if key == "valid" else np.float32)
    return capture
