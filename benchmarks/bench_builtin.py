"""Built-in rig and geometric ARKit curves on the synthetic renders, treated as footage (no truth camera).

    .venv/bin/python benchmarks/bench_builtin.py [--assets ../shared | --renders DIR]

Prints, per sequence: correlation of the geometric ARKit curves with the rendered truth (ICT-FaceKit
expression weights mapped to ARKit; 'n/a' where the truth channel does not move), and the acceleration
error (px/frame^2) of the built-in capture's landmarks (its model's vertices projected with its camera)
against the truth's 68 landmarks, compared with MediaPipe's raw landmarks, on the 51 inner points
(brows, nose, eyes, mouth: the jaw contour is defined differently in the two schemes).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.arkit_names import ARKIT_INDEX, ict_to_arkit  # noqa: E402
from core.builtin_capture import capture_builtin  # noqa: E402
from core.builtin_model import model_from_capture  # noqa: E402
from core.head_model import HeadModel  # noqa: E402
from core.landmarks import detect_video  # noqa: E402
from core.paths import assets_dir  # noqa: E402

CHANNELS = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "browInnerUp")
# MediaPipe landmark nearest to each of the 68 Multi-PIE points (the commonly used correspondence).
MP_TO_68 = np.array([162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389, 71, 63, 105,
                     66, 107, 336, 296, 334, 293, 301, 168, 197, 5, 4, 75, 97, 2, 326, 305, 33, 160, 158, 133, 153,
                     144, 362, 385, 387, 263, 373, 380, 61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82,
                     13, 312, 308, 317, 14, 87])
INNER = np.arange(17, 68)
MOVING = 0.05  # a truth channel whose standard deviation is below this does not move in the sequence


def projected(capture: dict) -> np.ndarray:
    model = HeadModel(model_from_capture(capture), dtype=torch.float64)
    t = {k: torch.as_tensor(np.asarray(capture[k], np.float64))
         for k in ("expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "translation")}
    v = model(**t).vertices.numpy()
    return float(capture["focal_px"]) * v[..., :2] / v[..., 2:] + np.array([capture["cx"], capture["cy"]])


def accel_error(points: np.ndarray, truth: np.ndarray) -> float:
    """Mean |second difference of points - that of truth| over frames and points (px/frame^2)."""
    acc = lambda x: x[2:] - 2 * x[1:-1] + x[:-2]  # noqa: E731
    return float(np.linalg.norm(acc(points) - acc(truth), axis=-1).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=assets_dir())
    parser.add_argument("--renders", type=Path, help="a folder of renders laid out as <assets>/synthetic "
                        "(bench_painted.py's: eyebrows, eyes that turn); default: <assets>/synthetic")
    args = parser.parse_args()
    renders = args.renders or args.assets / "synthetic"
    folders = sorted(renders.glob("*/truth.npz"))
    if not folders:
        print(f"no synthetic renders under {renders}")
        return 1
    head = f"{'sequence':<15}" + "".join(f"{c:>16}" for c in CHANNELS)
    head += f"{'E':>4}{'accel model':>13}{'accel mp':>10}{'pos px':>8}{'s':>6}  warnings"
    print(head)
    print("-" * len(head))
    corr_all: dict[str, list[float]] = {c: [] for c in CHANNELS}
    for truth_path in folders:
        seq = truth_path.parent
        truth = np.load(truth_path)
        track = detect_video(seq / "video.mp4")
        t0 = time.perf_counter()
        capture = capture_builtin(track)
        seconds = time.perf_counter() - t0
        want = ict_to_arkit(truth["expressions"], [str(n) for n in truth["expression_names"]])
        cells = []
        for c in CHANNELS:
            i = ARKIT_INDEX[c]
            if want[:, i].std() < MOVING or capture["arkit"][:, i].std() == 0:
                cells.append(f"{'n/a':>16}")
                continue
            r = float(np.corrcoef(capture["arkit"][:, i], want[:, i])[0, 1])
            corr_all[c].append(r)
            cells.append(f"{r:>16.2f}")
        ok = track.valid
        true68 = truth["landmarks68"][ok][:, INNER]
        model68 = projected(capture)[ok][:, MP_TO_68][:, INNER]
        mp68 = track.pixels()[ok][:, MP_TO_68][:, INNER]
        pos = float(np.linalg.norm(model68 - true68, axis=-1).mean())
        warn = "; ".join(str(w)[:40] for w in capture["warnings"]) or "-"
        accel = f"{accel_error(model68, true68):>13.3f}{accel_error(mp68, true68):>10.3f}"
        print(f"{seq.name:<15}" + "".join(cells) + f"{capture['expression'].shape[1]:>4}{accel}{pos:>8.2f}"
              f"{seconds:>6.2f}  {warn}")
    print("-" * len(head))
    print(f"{'mean':<15}" + "".join(f"{np.mean(v):>16.2f}" if v else f"{'n/a':>16}" for v in corr_all.values()))
    print("target: correlation >= 0.7 per channel; accel in px/frame^2 on the 51 inner 68-scheme points "
          "(model: built-in capture reprojected; mp: the landmarks as tracked); pos: mean distance to the truth points "
          "(includes the difference between the two landmark definitions).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
