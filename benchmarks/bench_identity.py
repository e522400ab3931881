"""Identity consistency: does the actor's face shape depend on where a capture starts?

    .venv/bin/python benchmarks/bench_identity.py [VIDEO ...]

Each clip in <assets>/footage and each synthetic render is tracked once with MediaPipe; captures with the
FLAME-format stand-in then start at STARTS evenly spaced frames (WINDOW frames each), and each solves its own
identity from its first frames with a face, as every capture does. Prints, per clip, the spread of the
neutral faces those identities give: the distance (mm) of each embedded landmark point from its mean over the
starts, averaged over the landmarks and at the worst one. On the renders also their mean distance from the
true identity's neutral face (the stand-in's shape columns are the ICT identities the renders were made with),
beside that of the face a refit solves from keyframes spread over the whole clip (what `kinesics refit` gives a
calibration take, for `--face-from` to carry to the others) and the mean face's (no identity at all).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.engine import CaptureEngine  # noqa: E402
from core.fit import Fitter  # noqa: E402
from core.landmarks import LandmarkTrack, detect_video  # noqa: E402
from core.paths import assets_dir  # noqa: E402
from tests.conftest import standin_model_path  # noqa: E402

STARTS = 8
WINDOW = 48


def neutral_points(fitter: Fitter, shape: np.ndarray) -> np.ndarray:
    """The embedded landmark points (L,3) of the neutral face of `shape` (S,), centred, in metres (it stays baked
    into `fitter`; every capture bakes its own)."""
    fitter.prepare_face(shape)
    points = fitter.base.double().cpu().numpy()
    return points - points.mean(0)


def window(track: LandmarkTrack, start: int) -> LandmarkTrack:
    rows = slice(start, start + WINDOW)
    return LandmarkTrack(track.frame_index[rows], track.landmarks[rows], track.valid[rows], track.fps,
                         track.image_size)


def main(argv: list[str]) -> int:
    root = assets_dir()
    engine = CaptureEngine(str(standin_model_path(root / "models/ict_facekit/ict_facekit.npz")))
    renders = sorted(p for p in (root / "synthetic").iterdir() if (p / "truth.npz").exists())
    clips = [Path(v) for v in argv] or sorted((root / "footage").glob("*.mp4")) + [r / "video.mp4" for r in renders]
    print(f"{'clip':<28}{'frames':>7}{'starts':>7}{'spread mm':>11}{'worst mm':>10}{'vs truth mm':>13}"
          f"{'whole clip vs truth':>21}{'mean face vs truth':>20}")
    for clip in clips:
        track = detect_video(clip)
        starts = np.linspace(0, max(len(track.valid) - WINDOW, 0), STARTS).astype(int)
        neutral = np.stack([neutral_points(engine.fitter, engine.run_track(window(track, s))["shape"])
                            for s in starts])
        distance = np.linalg.norm(neutral - neutral.mean(0), axis=-1) * 1000
        truth_file = clip.parent / "truth.npz"
        versus = whole = baseline = "n/a"
        if truth_file.exists():
            true = neutral_points(engine.fitter, np.load(truth_file)["identity"][:engine.fitter.n_shape_out])
            versus = f"{np.linalg.norm(neutral - true, axis=-1).mean() * 1000:.2f}"
            calibrated = neutral_points(engine.fitter, engine.run_track(track, whole_clip_identity=True)["shape"])
            whole = f"{np.linalg.norm(calibrated - true, axis=-1).mean() * 1000:.2f}"
            mean_face = neutral_points(engine.fitter, np.zeros(engine.fitter.n_shape_out))
            baseline = f"{np.linalg.norm(mean_face - true, axis=-1).mean() * 1000:.2f}"
        name = clip.parent.name if truth_file.exists() else clip.name
        print(f"{name:<28}{len(track.valid):>7}{len(starts):>7}{distance.mean():>11.2f}"
              f"{distance.mean(0).max():>10.2f}{versus:>13}{whole:>21}{baseline:>20}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
