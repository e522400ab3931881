"""Brow channels on renders that have eyebrows: the shared renders have none, so MediaPipe guesses where brows are.

    .venv/bin/python benchmarks/bench_brows.py [--seeds 0 1 2] [--rerender]

Renders sequences of ICT-FaceKit heads (a random identity per seed) with painted eyebrows and irises, with
Kinesics' own CPU ray caster (`core.render`), into the cache (`KINESICS_CACHE`/bench_brows): brow poses
(browInnerUp, browOuterUp, browDown; both sides or one) in most events, mouth and eye poses in the rest and
over some brow poses, blinks, and smooth head motion, with the truth as ARKit curves. Each sequence is then
captured as footage (MediaPipe) twice: with the built-in rig (geometric ARKit curves, issue target >= 0.7)
and with ICT-FaceKit as model and ARKit basis (bounded basis fit, target >= 0.8). Prints the correlation with
the truth of the brow channels and a few others ('n/a' where the truth does not move).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.arkit_names import ARKIT_INDEX, ict_to_arkit  # noqa: E402
from core.builtin_capture import capture_builtin  # noqa: E402
from core.engine import CaptureEngine  # noqa: E402
from core.landmarks import detect_video  # noqa: E402
from core.model_data import HeadModelData, load_ict_npz  # noqa: E402
from core.paths import assets_dir, cache_dir  # noqa: E402
from core.rotations import rotvec_to_matrix  # noqa: E402
from tests.painted_heads import PIVOT, PaintedHead, front_camera, write_video  # noqa: E402

CHANNELS = ("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browDownLeft", "browDownRight", "jawOpen",
            "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "eyeWideLeft", "eyeSquintLeft")
BROW_POSES = (("browInnerUp_L", "browInnerUp_R"), ("browOuterUp_L", "browOuterUp_R"), ("browDown_L", "browDown_R"),
              ("browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"),  # surprise
              ("browInnerUp_L", "browInnerUp_R", "browDown_L", "browDown_R"),  # worry
              ("browOuterUp_L",), ("browOuterUp_R",), ("browDown_L",), ("browDown_R",))
OTHER_POSES = (("mouthSmile_L", "mouthSmile_R"), ("jawOpen",), ("eyeWide_L", "eyeWide_R"),
               ("eyeSquint_L", "eyeSquint_R"), ("mouthFrown_L", "mouthFrown_R"), ("mouthFunnel",),
               ("noseSneer_L", "noseSneer_R"))
FPS, SIZE, FOCAL = 25.0, 384, 780.0
MOVING = 0.05  # a truth channel whose standard deviation is below this does not move in the sequence


def envelope(rise: int, hold: int) -> np.ndarray:
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, rise))
    return np.concatenate([ramp, np.ones(hold), ramp[::-1]])


def performance(names: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Expression weights (T,E) in [0, 1] and head rotation vectors (T,3) of a random performance: every brow
    pose and every other pose once, in a random order, a third of the brow poses over another pose."""
    events = [list(p) for p in BROW_POSES] + [list(p) for p in OTHER_POSES]
    for event in events[:len(BROW_POSES)]:
        if rng.random() < 0.33:
            event += OTHER_POSES[rng.integers(len(OTHER_POSES))]
    shapes = []  # (start, envelope, {name: amplitude})
    t = 4 + int(rng.integers(0, 6))
    for k in rng.permutation(len(events)):
        env = envelope(int(rng.integers(4, 7)), int(rng.integers(2, 9)))
        shapes.append((t, env, {name: rng.uniform(0.4, 1.0) for name in events[k]}))
        t += len(env) + int(rng.integers(3, 12))
    frames = t + 4
    weights = np.zeros((frames, len(names)))
    for start, env, pose in shapes:
        for name, amplitude in pose.items():
            k = names.index(name)
            weights[start:start + len(env), k] = np.maximum(weights[start:start + len(env), k], amplitude * env)
    for start in rng.choice(np.arange(2, frames - 5), size=max(1, frames // 60), replace=False):
        for side in ("eyeBlink_L", "eyeBlink_R"):
            k = names.index(side)
            weights[start:start + 4, k] = np.maximum(weights[start:start + 4, k], [0.5, 1.0, 1.0, 0.5])
    time = np.arange(frames) / FPS
    amplitude = np.radians([6.0, 14.0, 4.0])  # pitch, yaw, roll
    phase, period = rng.uniform(0, 2 * np.pi, 3), rng.uniform(3.0, 6.0, 3)
    rotation = amplitude * np.sin(2 * np.pi * time[:, None] / period + phase)
    return weights, rotation


def render_sequence(data: HeadModelData, vertex_indices: Path, seed: int, folder: Path) -> None:
    """Writes folder/video.mp4 and folder/truth.npz, laid out as the shared renders' truth (see ../shared/README.md:
    cm, a camera looking down -Z) plus `arkit` (T,52), so that the other benchmarks score these renders too."""
    rng = np.random.default_rng(seed)
    names = list(data.expression_names)
    identity = rng.normal(0.0, 0.75, data.n_shape)
    weights, rotation = performance(names, rng)
    head = PaintedHead(data, vertex_indices, identity)
    camera = front_camera(FOCAL, SIZE)
    folder.mkdir(parents=True, exist_ok=True)

    def shown(images):
        for t, image in enumerate(images):
            print(f"\r  seed {seed}: frame {t + 1}/{len(weights)}", end="", flush=True)
            yield image
        print()

    write_video(shown(head.frames(weights, rotation, camera)), folder / "video.mp4", FPS)
    marks = np.asarray(json.loads(vertex_indices.read_text())["idx_to_landmark_verts"], np.int64)
    landmarks68 = np.stack([camera.project(head.posed(w, r)[marks]) for w, r in zip(weights, rotation)])
    np.savez(folder / "truth.npz", identity=identity, expression_names=np.array(names), expressions=weights,
             rotation=rotvec_to_matrix(rotation), pivot=PIVOT * 100, translation=np.zeros((len(weights), 3)),
             focal_px=FOCAL, cx=SIZE / 2, cy=SIZE / 2, camera_location=camera.position * 100, image_size=SIZE,
             landmarks68=landmarks68, landmark_vertices=marks, arkit=ict_to_arkit(weights, names))


def correlations(curves: np.ndarray, truth: np.ndarray) -> list[float | None]:
    out = []
    for name in CHANNELS:
        a, b = curves[:, ARKIT_INDEX[name]], truth[:, ARKIT_INDEX[name]]
        out.append(None if b.std() < MOVING else 0.0 if a.std() < 1e-9 else float(np.corrcoef(a, b)[0, 1]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rerender", action="store_true")
    args = parser.parse_args()
    basis = assets_dir() / "models/ict_facekit/ict_facekit.npz"
    if not basis.is_file():
        print(f"needs ICT-FaceKit at {basis}")
        return 1
    data = load_ict_npz(basis)
    folders = []
    for seed in args.seeds:
        folder = cache_dir() / "bench_brows" / f"seed{seed}"
        if args.rerender or not (folder / "truth.npz").is_file():
            render_sequence(data, basis.parent / "vertex_indices.json", seed, folder)
        folders.append(folder)
    engine = CaptureEngine(str(basis), arkit_basis=str(basis))
    head = f"{'sequence':<14}{'rig':<9}" + "".join(f"{c[:14]:>15}" for c in CHANNELS)
    print(head)
    print("-" * len(head))
    worst: dict[str, dict[str, list[float]]] = {"built-in": {}, "ict": {}}
    for folder in folders:
        truth = np.load(folder / "truth.npz")["arkit"]
        track = detect_video(folder / "video.mp4")
        curves = {"built-in": capture_builtin(track)["arkit"], "ict": engine.run_track(track)["arkit"]}
        for rig, values in curves.items():
            cors = correlations(values, truth)
            for name, c in zip(CHANNELS, cors):
                if c is not None:
                    worst[rig].setdefault(name, []).append(c)
            print(f"{folder.name:<14}{rig:<9}" + "".join(f"{'n/a' if c is None else f'{c:.2f}':>15}" for c in cors))
    print("-" * len(head))
    for rig, by_channel in worst.items():
        print(f"{'worst':<14}{rig:<9}" + "".join(f"{min(by_channel[c]):>15.2f}" if c in by_channel else f"{'n/a':>15}"
                                                 for c in CHANNELS))
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
