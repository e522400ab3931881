"""Brow and gaze channels on renders with painted eyebrows and eyes that turn, which the shared renders lack.

    .venv/bin/python benchmarks/bench_painted.py [--seeds 0 1 2] [--rerender] [--lips | --turns]

Renders sequences of ICT-FaceKit heads (a random identity per seed) with painted eyebrows, lips and irises and
eyeballs that turn, with Kinesics' own CPU ray caster (`tests.painted_heads`), into the cache (`KINESICS_CACHE`/painted):
every brow pose once (browInnerUp, browOuterUp, browDown; both sides or one; surprise; worry), eight mouth and eye
poses, a third of the brow poses over one of those, blinks, glances held for a third of a second to a second (the
lids following through ICT-FaceKit's eyeLook shapes) and smooth head motion. The truth is written as the shared
renders' (plus `gaze` (T,2) and `arkit` (T,52)), so `bench_fidelity.py`, `bench_arkit.py` and `bench_builtin.py`
score these renders too with `--renders`. Each sequence is captured as footage (MediaPipe) with the built-in rig
(geometric ARKit curves, issue target >= 0.7) and with ICT-FaceKit as model and ARKit basis (basis fit, target
>= 0.8); prints the correlation with the truth of the brow and gaze channels and a few others ('n/a' where the
truth does not move).

--lips renders and scores another set (painted/lips-seedN): each head performs the lips' own motions (mouthRollUpper,
mouthRollLower, both, mouthShrugLower) among the mouth poses they are most easily mistaken for (press, stretch,
smile, pucker, funnel, jawOpen, upper lip raised, lower lip lowered, frown, jaw open with the lips kept closed), each
once at full weight, with the same head motion. It prints, per lip channel, the correlation with the truth, the mean
reading over its own pose's held frames and the highest mean reading over another pose's.

--turns renders and scores a third set (painted/turns-seedN): each head turns 30-60 degrees to either side six times
and nods up and down 15-25 degrees, resting a while there before it takes a pose (`TURN_POSES`), then turns back;
the last pose faces the camera. It prints, per turn, the pose's channels while held and the highest reading of a
channel the truth leaves at 0 while the face rests turned (built-in rig and ICT-FaceKit), the ICT-FaceKit fit's head
rotation error, and each rig's ARKit MAE over the clip.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.arkit_names import ARKIT_INDEX, ARKIT_NAMES, ict_to_arkit, ict_to_arkit_name  # noqa: E402
from core.builtin_capture import capture_builtin  # noqa: E402
from core.engine import CaptureEngine  # noqa: E402
from core.far_side import head_rotations  # noqa: E402
from core.landmarks import detect_video  # noqa: E402
from core.model_data import HeadModelData, load_ict_npz  # noqa: E402
from core.paths import assets_dir, cache_dir  # noqa: E402
from core.rotations import rotvec_to_matrix  # noqa: E402
from tests.painted_heads import PIVOT, PaintedHead, front_camera, write_video  # noqa: E402

CHANNELS = ("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browDownLeft", "browDownRight",
            "eyeLookOutLeft", "eyeLookInLeft", "eyeLookUpLeft", "eyeLookDownLeft", "eyeLookOutRight", "eyeLookInRight",
            "eyeLookUpRight", "eyeLookDownRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeSquintLeft",
            "jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthPucker", "mouthFunnel")
BROW_POSES = (("browInnerUp_L", "browInnerUp_R"), ("browOuterUp_L", "browOuterUp_R"), ("browDown_L", "browDown_R"),
              ("browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"),  # surprise
              ("browInnerUp_L", "browInnerUp_R", "browDown_L", "browDown_R"),  # worry
              ("browOuterUp_L",), ("browOuterUp_R",), ("browDown_L",), ("browDown_R",))
OTHER_POSES = (("mouthSmile_L", "mouthSmile_R"), ("jawOpen",), ("eyeWide_L", "eyeWide_R"),
               ("eyeSquint_L", "eyeSquint_R"), ("mouthFrown_L", "mouthFrown_R"), ("mouthFunnel",), ("mouthPucker",),
               ("noseSneer_L", "noseSneer_R"))
FPS, SIZE, FOCAL = 25.0, 384, 780.0
# ICT-FaceKit's eyeLook shapes (lids only) at full weight for a glance this far (degrees): outwards, inwards, up, down.
LOOK_FULL_DEG = {"Out": 30.0, "In": 30.0, "Up": 20.0, "Down": 20.0}
MOVING = 0.05  # a truth channel whose standard deviation is below this does not move in the sequence
LIP_POSES = (("mouthRollUpper",), ("mouthRollLower",), ("mouthRollUpper", "mouthRollLower"), ("mouthShrugLower",),
             ("mouthPress_L", "mouthPress_R"), ("mouthStretch_L", "mouthStretch_R"), ("mouthSmile_L", "mouthSmile_R"),
             ("mouthPucker",), ("mouthFunnel",), ("jawOpen",), ("mouthUpperUp_L", "mouthUpperUp_R"),
             ("mouthLowerDown_L", "mouthLowerDown_R"), ("mouthFrown_L", "mouthFrown_R"), ("mouthClose", "jawOpen"))
LIP_CHANNELS = ("mouthRollUpper", "mouthRollLower", "mouthShrugLower")
LIP_HOLD = 6  # frames each lip pose is held at full weight, after a 5-frame rise
TURN_POSES = (("mouthSmile_L", "mouthSmile_R"), ("eyeBlink_L", "eyeBlink_R"), ("jawOpen",),
              ("browInnerUp_L", "browInnerUp_R"), ("mouthFunnel",), ("mouthPucker",), ("mouthSmile_L",),
              ("eyeSquint_L", "eyeSquint_R"), ("mouthFrown_L", "mouthFrown_R"))
# A turn: the head turns in TURN_RAMP frames, holds TURN_QUIET frames with the face at rest, then a pose (TURN_POSES)
# rises, holds and falls, and the head turns back and rests a while facing the camera.
TURN_RAMP, TURN_QUIET, TURN_REST = 15, 12, 8
TURN_POSE_RISE, TURN_POSE_HOLD = 5, 14


def envelope(rise: int, hold: int) -> np.ndarray:
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, rise))
    return np.concatenate([ramp, np.ones(hold), ramp[::-1]])


def glances(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Gaze (T,2) yaw, pitch in radians (see `tests.painted_heads.gaze_matrices`): held 8-25 frames, ahead a third
    of the time, moving to the next in 3 frames."""
    gaze, here, t = np.zeros((frames, 2)), np.zeros(2), 0
    while t < frames:
        there = np.zeros(2) if rng.random() < 0.33 else np.radians([rng.uniform(-25, 25), rng.uniform(-12, 15)])
        step = envelope(4, 0)[:4, None]  # 0 .. 1 over the saccade
        gaze[t:t + 4] = (here + step * (there - here))[:frames - t]
        hold = int(rng.integers(8, 26))
        gaze[t + 4:t + 4 + hold] = there
        here, t = there, t + 4 + hold
    return gaze


def lid_weights(gaze: np.ndarray, names: list[str]) -> np.ndarray:
    """ICT-FaceKit eyeLook weights (T,E) for gaze (T,2): the lids follow the eyes."""
    yaw, pitch = np.degrees(gaze[:, 0]), np.degrees(gaze[:, 1])
    towards = {"Up": pitch, "Down": -pitch}
    weights = np.zeros((len(gaze), len(names)))
    for side, outwards in (("_L", yaw), ("_R", -yaw)):  # the left eye (+X) looks out when yaw > 0
        for look, angle in {**towards, "Out": outwards, "In": -outwards}.items():
            weights[:, names.index(f"eyeLook{look}{side}")] = np.clip(angle / LOOK_FULL_DEG[look], 0.0, 1.0)
    return weights


def performance(names: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expression weights (T,E) in [0, 1], gaze (T,2) and head rotation vectors (T,3) of a random performance:
    every brow pose and every other pose once, in a random order, a third of the brow poses over another pose,
    blinks, glances."""
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
    gaze = glances(frames, rng)
    weights = np.maximum(weights, lid_weights(gaze, names))
    return weights, gaze, head_motion(frames, rng)


def head_motion(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Head rotation vectors (T,3): pitch, yaw and roll swaying up to 6, 14 and 4 degrees."""
    time = np.arange(frames) / FPS
    amplitude = np.radians([6.0, 14.0, 4.0])  # pitch, yaw, roll
    phase, period = rng.uniform(0, 2 * np.pi, 3), rng.uniform(3.0, 6.0, 3)
    return amplitude * np.sin(2 * np.pi * time[:, None] / period + phase)


def lip_starts() -> np.ndarray:
    """First frame of each of `LIP_POSES`: 12 frames of rest before the first and between the others."""
    return 12 + np.arange(len(LIP_POSES)) * (len(envelope(5, LIP_HOLD)) + 12)


def lip_performance(names: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expression weights (T,E): each of `LIP_POSES` once at full weight (the jaw at half where the lips stay closed
    over it), in order; gaze ahead; head motion as in `performance`."""
    env = envelope(5, LIP_HOLD)
    frames = int(lip_starts()[-1]) + len(env) + 12
    weights = np.zeros((frames, len(names)))
    for start, pose in zip(lip_starts(), LIP_POSES):
        for name in pose:
            amplitude = 0.5 if name == "jawOpen" and "mouthClose" in pose else 1.0
            weights[start:start + len(env), names.index(name)] = amplitude * env
    return weights, np.zeros((frames, 2)), head_motion(frames, rng)


def turn_targets(rng: np.random.Generator) -> list[tuple[float, float, int]]:
    """(yaw, pitch, pose) of each turn in degrees (yaw towards the subject's left, pitch up) and an index into
    TURN_POSES: six turns 30-60 degrees to alternate sides, a nod up and one down, and the last pose facing the
    camera (the reference it is read against), the poses in a random order."""
    poses = rng.permutation(len(TURN_POSES))
    sides = rng.permutation([-1.0, 1.0])
    yaws = [sides[k % 2] * rng.uniform(30.0, 60.0) for k in range(6)] + [0.0, 0.0, 0.0]
    pitches = [rng.uniform(-8.0, 8.0) for _ in range(6)] + [rng.uniform(15.0, 25.0), -rng.uniform(15.0, 25.0), 0.0]
    return [(y, p, int(k)) for y, p, k in zip(yaws, pitches, poses)]


def turn_performance(names: list[str], rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Expression weights (T,E), gaze (T,2, ahead), head rotation vectors (T,3) and the turns: `turn` (T,), each
    frame's (an index into the others, -1 while turning or facing the camera between turns), and `turn_targets` (N,3)
    (see `turn_targets`)."""
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, TURN_RAMP))
    pose_weight = envelope(TURN_POSE_RISE, TURN_POSE_HOLD)
    hold = TURN_QUIET + len(pose_weight)
    weights, rotation, turn = [np.zeros((TURN_REST, len(names)))], [np.zeros((TURN_REST, 3))], [np.full(TURN_REST, -1)]
    targets = turn_targets(rng)
    for k, (yaw, pitch, pose) in enumerate(targets):
        target = np.radians([-pitch, yaw, 0.0])  # about +X the face tips down; about +Y it turns to its left (+X)
        w = np.zeros((hold, len(names)))
        for name in TURN_POSES[pose]:
            w[TURN_QUIET:, names.index(name)] = pose_weight
        weights += [np.zeros((TURN_RAMP, len(names))), w, np.zeros((TURN_RAMP + TURN_REST, len(names)))]
        rotation += [ramp[:, None] * target, np.tile(target, (hold, 1)), ramp[::-1, None] * target,
                     np.zeros((TURN_REST, 3))]
        turn += [np.full(TURN_RAMP, -1), np.full(hold, k), np.full(TURN_RAMP + TURN_REST, -1)]
    weights = np.concatenate(weights)
    turns = {"turn": np.concatenate(turn), "turn_targets": np.array(targets)}
    return weights, np.zeros((len(weights), 2)), np.concatenate(rotation), turns


def render_sequence(data: HeadModelData, vertex_indices: Path, seed: int, folder: Path, kind: str = "") -> None:
    """Writes folder/video.mp4 and folder/truth.npz, laid out as the shared renders' truth (see ../shared/README.md:
    cm, a camera looking down -Z) plus `arkit` (T,52), so that the other benchmarks score these renders too. `kind`:
    "lips" for the lip poses (`lip_performance`), "turns" for poses held with the head turned far
    (`turn_performance`, whose truth also holds its `turn` and `turn_targets`), else a random performance."""
    rng = np.random.default_rng(seed)
    names = list(data.expression_names)
    identity = rng.normal(0.0, 0.75, data.n_shape)
    extra = {}
    if kind == "turns":
        weights, gaze, rotation, extra = turn_performance(names, rng)
    else:
        weights, gaze, rotation = (lip_performance if kind == "lips" else performance)(names, rng)
    head = PaintedHead(data, vertex_indices, identity)
    camera = front_camera(FOCAL, SIZE)
    folder.mkdir(parents=True, exist_ok=True)

    def shown(images):
        for t, image in enumerate(images):
            print(f"\r  seed {seed}: frame {t + 1}/{len(weights)}", end="", flush=True)
            yield image
        print()

    write_video(shown(head.frames(weights, rotation, gaze, camera)), folder / "video.mp4", FPS)
    marks = np.asarray(json.loads(vertex_indices.read_text())["idx_to_landmark_verts"], np.int64)
    landmarks68 = np.stack([camera.project(head.posed(w, r, g)[marks]) for w, r, g in zip(weights, rotation, gaze)])
    np.savez(folder / "truth.npz", identity=identity, expression_names=np.array(names), expressions=weights,
             rotation=rotvec_to_matrix(rotation), pivot=PIVOT * 100, translation=np.zeros((len(weights), 3)),
             focal_px=FOCAL, cx=SIZE / 2, cy=SIZE / 2, camera_location=camera.position * 100, image_size=SIZE,
             landmarks68=landmarks68, landmark_vertices=marks, gaze=gaze, arkit=ict_to_arkit(weights, names), **extra)


def correlation(curve: np.ndarray, truth: np.ndarray) -> float | None:
    """None where the truth does not move."""
    return None if truth.std() < MOVING else 0.0 if curve.std() < 1e-9 else float(np.corrcoef(curve, truth)[0, 1])


def pose_readings(curve: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean reading of a lip channel over the held frames of the poses that hold it (truth at 1) and the highest mean
    reading over another pose's."""
    held = [slice(start + 5, start + 5 + LIP_HOLD) for start in lip_starts()]
    own = [curve[h].mean() for h in held if truth[h].min() > 0.5]
    other = [curve[h].mean() for h in held if truth[h].max() < 0.05]
    return float(np.mean(own)), float(np.max(other))


def score_turns(folder: Path, engine: CaptureEngine) -> None:
    """Prints, per turn of a `turn_performance` render, the reading of its pose's channels while the pose is held, the
    highest reading of a channel the truth leaves at 0 while the face rests turned, both for the built-in rig and ICT
    (fitted head and ARKit basis), and the ICT fit's head rotation error; then each rig's ARKit MAE over the clip."""
    truth = np.load(folder / "truth.npz")
    track = detect_video(folder / "video.mp4")
    capture = engine.run_track(track)
    curves = {"built-in": capture_builtin(track)["arkit"], "ict": capture["arkit"]}
    head = head_rotations(capture)
    true_head = np.diag([1.0, -1.0, -1.0]) @ truth["rotation"]  # the truth's camera looks down -Z, OpenCV's down +Z
    cos = (np.einsum("tij,tij->t", head, true_head) - 1) / 2
    rotation_error = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    print(f"\n{folder.name}: per turn, the pose's channels held / the highest other channel with the face at rest")
    print(f"{'yaw':>5}{'pitch':>6}  {'pose':<28}{'built-in':>34}{'ict':>34}{'head rot':>9}")
    for k, (yaw, pitch, pose) in enumerate(truth["turn_targets"]):
        rows = np.flatnonzero(truth["turn"] == k)
        quiet, held = rows[:TURN_QUIET], rows[TURN_QUIET + TURN_POSE_RISE:][:TURN_POSE_HOLD]
        pose = TURN_POSES[int(pose)]
        own = sorted({ARKIT_INDEX[ict_to_arkit_name(n)] for n in pose})
        at_rest = truth["arkit"][quiet].max(0) < 0.01
        cells = []
        for rig in ("built-in", "ict"):
            reading = curves[rig][quiet].mean(0) * at_rest
            worst = int(np.argmax(reading))
            cells.append(f"{curves[rig][held][:, own].mean():.2f} / {ARKIT_NAMES[worst]} {reading[worst]:.2f}")
        print(f"{yaw:>5.0f}{pitch:>6.0f}  {'+'.join(pose):<28}{cells[0]:>34}{cells[1]:>34}"
              f"{np.median(rotation_error[rows]):>8.1f}°")
    print("ARKit MAE over the clip: " + ", ".join(f"{rig} {np.abs(c - truth['arkit']).mean():.3f}"
                                                  for rig, c in curves.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rerender", action="store_true")
    parser.add_argument("--lips", action="store_true", help="the lip poses' set instead of random performances")
    parser.add_argument("--turns", action="store_true", help="poses held with the head turned far instead")
    args = parser.parse_args()
    basis = assets_dir() / "models/ict_facekit/ict_facekit.npz"
    if not basis.is_file():
        print(f"needs ICT-FaceKit at {basis}")
        return 1
    data = load_ict_npz(basis)
    kind = "lips" if args.lips else "turns" if args.turns else ""
    folders = []
    for seed in args.seeds:
        folder = cache_dir() / "painted" / f"{kind + '-' if kind else ''}seed{seed}"
        if args.rerender or not (folder / "truth.npz").is_file():
            render_sequence(data, basis.parent / "vertex_indices.json", seed, folder, kind)
        folders.append(folder)
    engine = CaptureEngine(str(basis), arkit_basis=str(basis))
    if args.turns:
        for folder in folders:
            score_turns(folder, engine)
        engine.close()
        return 0
    rigs = ("built-in", "ict")
    channels = LIP_CHANNELS if args.lips else CHANNELS
    table = {name: {rig: [] for rig in rigs} for name in channels}
    poses = {name: {rig: [] for rig in rigs} for name in channels}
    for folder in folders:
        truth = np.load(folder / "truth.npz")["arkit"]
        track = detect_video(folder / "video.mp4")
        curves = {"built-in": capture_builtin(track)["arkit"], "ict": engine.run_track(track)["arkit"]}
        for name in channels:
            k = ARKIT_INDEX[name]
            for rig in rigs:
                table[name][rig].append(correlation(curves[rig][:, k], truth[:, k]))
                if args.lips:
                    poses[name][rig].append(pose_readings(curves[rig][:, k], truth[:, k]))
    engine.close()
    seeds = " / ".join(f.name for f in folders)
    print(f"correlation with the truth, {seeds}; worst in brackets")
    print(f"{'channel':<18}" + "".join(f"{rig:>30}" for rig in rigs))
    for name, by_rig in table.items():
        cells = []
        for rig in rigs:
            values = by_rig[rig]
            shown = " / ".join("n/a" if v is None else f"{v:.2f}" for v in values)
            moving = [v for v in values if v is not None]
            cells.append(f"{shown} [{min(moving):.2f}]" if moving else shown)
        print(f"{name:<18}" + "".join(f"{c:>30}" for c in cells))
    if args.lips:
        print(f"\nmean reading over its own pose's held frames, and the highest over another pose's ({seeds})")
        print(f"{'channel':<18}" + "".join(f"{rig + ' ' + what:>30}" for rig in rigs for what in ("own", "other")))
        for name, by_rig in poses.items():
            print(f"{name:<18}" + "".join(f"{' / '.join(f'{r[i]:.2f}' for r in by_rig[rig]):>30}"
                                          for rig in rigs for i in (0, 1)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
