"""Fidelity of the capture engine on synthetic renders with known truth.

    .venv/bin/python benchmarks/bench_fidelity.py [--mirror-pass] [--expressiveness E] [--renders DIR] [SEQUENCE ...]

Fits the FLAME-format stand-in (built from ICT-FaceKit by the shared tool) to each render in
<assets>/synthetic and prints, per sequence: detection rate, 68-landmark reprojection error (median, px),
face-region expression-displacement error relative to predicting no expression, head-rotation error
(median, degrees), acceleration error of the 68 landmarks against the truth (px/frame^2, jitter) and, on renders
whose eyes turn (bench_painted.py's), the gaze error (median, degrees).
A second table fits the true landmarks (the embedded MediaPipe points of the true mesh) plus 1 px noise,
which separates the detector's error from the fitter's. A third fits them with a smile (mouthSmile_L and _R +0.6)
held through the first 40 frames, as an actor who opens a take smiling: without a neutral frame, with one (the
quietest frame after the smile, as a user would pick it), and with the actor's face from an earlier capture (the
same render without the smile, fitted whole: a calibration take). A fourth fits noise-free true landmarks with the
true face shape and lens at expressiveness 64: what a fit to these landmarks can reach at best, whatever
tracks them. --mirror-pass captures the videos with the mirror pass; --expressiveness sets the fit's
expressiveness (1 by default); --renders scores the renders in another folder laid out as <assets>/synthetic (those
bench_painted.py makes: eyebrows, eyes that turn).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.engine import CaptureEngine  # noqa: E402
from core.head_model import HeadModel  # noqa: E402
from core.landmarks import LandmarkTrack  # noqa: E402
from core.lbs import batch_rodrigues  # noqa: E402
from core.model_data import load_ict_npz  # noqa: E402
from core.paths import assets_dir  # noqa: E402
from tests.conftest import standin_model_path  # noqa: E402
from tests.painted_heads import eye_turn, gaze_directions, gaze_matrices  # noqa: E402

FLIP = np.diag([1.0, -1.0, -1.0])  # truth camera (looks down -Z, +Y up) -> OpenCV camera
FACE = slice(0, 9409)              # ICT's face region


class Truth:
    """A synthetic sequence's ground truth (units: cm in the file, metres here)."""

    def __init__(self, folder: Path, ict):
        t = np.load(folder / "truth.npz")
        self.t = t
        self.ict = ict
        self.names = [str(n) for n in t["expression_names"]]
        self.n = len(t["expressions"])

    def vertices(self, ids: np.ndarray) -> np.ndarray:
        """True vertex positions (T,len(ids),3) in the OpenCV camera, metres."""
        t, ict = self.t, self.ict
        rest = (ict.template[ids] + ict.shapedirs[ids] @ t["identity"]
                + np.einsum("vck,tk->tvc", ict.exprdirs[ids], t["expressions"]))
        if "gaze" in t:  # renders whose eyeballs turn (bench_painted.py's)
            rest = rest + eye_turn(ict, t["identity"], ids, t["gaze"])
        piv, loc = t["pivot"] * 0.01, t["camera_location"] * 0.01
        world = np.einsum("tvc,tdc->tvd", rest - piv, t["rotation"]) + piv + t["translation"][:, None] * 0.01
        return (world - loc) @ FLIP.T

    def camera(self) -> tuple[float, float, float]:
        return float(self.t["focal_px"]), float(self.t["cx"]), float(self.t["cy"])

    def expression_displacement(self) -> np.ndarray:
        """(T,V_face,3) true expression displacement in the head frame, metres."""
        return np.einsum("vck,tk->tvc", self.ict.exprdirs[FACE], self.t["expressions"])


def held_expression(truth: Truth, weights: dict[str, float], frames: int) -> Truth:
    """The same render's truth with `weights` added (within [0, 1]) through its first `frames` frames."""
    held = copy.copy(truth)
    t = dict(truth.t)
    expressions = t["expressions"].copy()
    for name, weight in weights.items():
        k = truth.names.index(name)
        expressions[:frames, k] = np.clip(expressions[:frames, k] + weight, 0.0, 1.0)
    held.t = {**t, "expressions": expressions}
    return held


def project(points: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    return np.stack([focal * points[..., 0] / points[..., 2] + cx, focal * points[..., 1] / points[..., 2] + cy], -1)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    rel = np.einsum("tji,tjk->tik", a, b)
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def rotations(aa: np.ndarray) -> np.ndarray:
    return batch_rodrigues(torch.as_tensor(aa, dtype=torch.float64)).numpy()


def evaluate(capture: dict, truth: Truth, model: HeadModel) -> dict[str, float]:
    t = truth.t
    lv = t["landmark_vertices"]
    sub = model.subset(np.stack([lv] * 3, 1), np.tile([1.0, 0.0, 0.0], (len(lv), 1)))
    p = {k: torch.as_tensor(np.asarray(capture[k]), dtype=torch.float64)
         for k in ("expression", "jaw_pose", "neck_pose", "eye_pose", "global_pose", "translation")}
    shape = torch.as_tensor(capture["shape"], dtype=torch.float64)[None]
    pts = sub(shape=shape, expression=p["expression"], global_pose=p["global_pose"], neck_pose=p["neck_pose"],
              jaw_pose=p["jaw_pose"], eye_pose=p["eye_pose"], translation=p["translation"]).vertices.numpy()
    f, cx, cy = float(capture["focal_px"]), float(capture["cx"]), float(capture["cy"])
    fitted = project(pts, f, cx, cy)
    true2d = t["landmarks68"]
    err = np.linalg.norm(fitted - true2d, axis=-1)
    acc = np.linalg.norm(np.diff(fitted, 2, axis=0) - np.diff(true2d, 2, axis=0), axis=-1)
    head = np.einsum("tij,tjk->tik", rotations(capture["global_pose"]), rotations(capture["neck_pose"]))
    rot_err = angle_deg(head, np.einsum("ij,tjk->tik", FLIP, t["rotation"]))
    # Expression displacement on the face, in the head frame (no global/neck/translation).
    face = model.subset(np.stack([np.arange(FACE.stop)] * 3, 1), np.tile([1.0, 0.0, 0.0], (FACE.stop, 1)))
    with torch.no_grad():
        moved = face(shape=shape, expression=p["expression"], jaw_pose=p["jaw_pose"]).vertices
        still = face(shape=shape).vertices
    fit_disp = (moved - still).numpy()
    true_disp = truth.expression_displacement()
    rel = np.linalg.norm(fit_disp - true_disp, axis=-1).sum() / max(np.linalg.norm(true_disp, axis=-1).sum(), 1e-12)
    return {"detected": float(np.mean(capture["valid"])), "lm68_px": float(np.median(err)),
            "expr_rel": float(rel), "rot_deg": float(np.median(rot_err)), "accel_px": float(acc.mean()),
            "gaze_deg": gaze_error(capture, t)}


def gaze_error(capture: dict, t) -> float:
    """Median angle (degrees) between the fitted gaze (both eyes' directions averaged, in the head's frame) and the
    truth's, for renders whose eyes turn (NaN for others)."""
    if "gaze" not in t:
        return float("nan")
    true = gaze_matrices(t["gaze"])[:, :, 2]  # the +Z (ahead at rest) of an eye turned to the true gaze
    cos = np.einsum("tc,tc->t", gaze_directions(capture["eye_pose"]), true) / np.linalg.norm(true, axis=1)
    return float(np.median(np.degrees(np.arccos(np.clip(cos, -1, 1)))))


def true_landmark_track(truth: Truth, engine: CaptureEngine, noise_px: float, seed: int = 0) -> LandmarkTrack:
    """MediaPipe's landmark points of the true mesh, projected, plus Gaussian pixel noise."""
    from core.embedding import landmark_embedding

    emb = landmark_embedding(engine.data)
    verts = truth.vertices(emb.triangles.reshape(-1)).reshape(truth.n, 478, 3, 3)
    pts = np.einsum("tlkc,lk->tlc", verts, emb.barycentric)
    f, cx, cy = truth.camera()
    size = int(truth.t["image_size"])
    pix = project(pts, f, cx, cy) + np.random.default_rng(seed).normal(0, noise_px, (truth.n, 478, 2))
    lms = np.concatenate([pix / size, np.zeros((truth.n, 478, 1))], -1).astype(np.float32)
    return LandmarkTrack(np.arange(truth.n), lms, np.ones(truth.n, bool), 25.0, (size, size))


def table(rows: list[tuple[str, dict]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'sequence':<16}{'detected':>9}{'lm68 px':>9}{'expr rel':>10}{'rot deg':>9}{'accel px/f2':>13}"
          f"{'gaze deg':>10}{'secs':>7}")
    for name, r in rows:
        gaze = "n/a" if np.isnan(r["gaze_deg"]) else f"{r['gaze_deg']:.2f}"
        print(f"{name:<16}{r['detected']:>9.3f}{r['lm68_px']:>9.2f}{r['expr_rel']:>10.3f}{r['rot_deg']:>9.2f}"
              f"{r['accel_px']:>13.3f}{gaze:>10}{r['secs']:>7.1f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror-pass", action="store_true")
    parser.add_argument("--expressiveness", type=float, default=1.0)
    parser.add_argument("--renders", type=Path, help="a folder of renders (default: <assets>/synthetic)")
    parser.add_argument("sequences", nargs="*")
    args = parser.parse_args(argv)
    root = assets_dir()
    renders = args.renders or root / "synthetic"
    sequences = args.sequences or sorted(p.name for p in renders.iterdir() if (p / "truth.npz").exists())
    ict = load_ict_npz(root / "models/ict_facekit/ict_facekit.npz")
    engine = CaptureEngine(str(standin_model_path(root / "models/ict_facekit/ict_facekit.npz")))
    model = HeadModel(engine.data.truncated(engine.settings.fit.n_shape, engine.settings.fit.n_expression),
                      dtype=torch.float64)
    e = args.expressiveness
    detector, fitter_only, held, ceiling = [], [], [], []
    for name in sequences:
        truth = Truth(renders / name, ict)
        t0 = time.perf_counter()
        capture = engine.run(str(renders / name / "video.mp4"), mirror_pass=args.mirror_pass,
                             expressiveness=e)
        detector.append((name, {**evaluate(capture, truth, model), "secs": time.perf_counter() - t0}))
        t0 = time.perf_counter()
        plain = true_landmark_track(truth, engine, noise_px=1.0)
        capture = engine.run_track(plain, expressiveness=e)
        fitter_only.append((name, {**evaluate(capture, truth, model), "secs": time.perf_counter() - t0}))
        calibration = engine.run_track(plain, whole_clip_identity=True, expressiveness=e)
        smiling = held_expression(truth, {"mouthSmile_L": 0.6, "mouthSmile_R": 0.6}, 40)
        track = true_landmark_track(smiling, engine, noise_px=1.0)
        quietest = 40 + int(np.argmin(smiling.t["expressions"][40:].sum(1)))
        for label, options in ((name, {}), (f"{name} @{quietest}", {"neutral_frame": quietest}),
                               (f"{name} face", {"face_from": calibration})):
            t0 = time.perf_counter()
            capture = engine.run_track(track, expressiveness=e, **options)
            held.append((label, {**evaluate(capture, smiling, model), "secs": time.perf_counter() - t0}))
        t0 = time.perf_counter()
        face = {"model": engine.data.kind, "model_hash": engine.data.content_hash, "shape": truth.t["identity"]}
        capture = engine.run_track(true_landmark_track(truth, engine, noise_px=0.0), focal_px=truth.camera()[0],
                                   expressiveness=64.0, face_from=face)
        ceiling.append((name, {**evaluate(capture, truth, model), "secs": time.perf_counter() - t0}))
    suffix = "" if e == 1.0 else f", expressiveness {e:g}"
    table(detector, f"Video -> MediaPipe{' (mirror pass)' if args.mirror_pass else ''} -> fit (FLAME-format stand-in"
          f"{suffix})")
    table(fitter_only, f"True landmarks + 1 px noise -> fit (fitter alone{suffix})")
    table(held, "A smile held through the first 40 frames, true landmarks + 1 px noise; @N: neutral frame N; face: "
          f"the actor's face from a calibration capture{suffix}")
    table(ceiling, "Noise-free true landmarks, the true face shape and lens, expressiveness 64: the best a fit to "
          "landmarks reaches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
