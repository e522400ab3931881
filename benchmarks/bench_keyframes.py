"""Keyframe writing speed: 60 F-curves over 10,000 frames, in bulk, streamed in chunks, and one key at a time.

    .venv/bin/python benchmarks/bench_keyframes.py [--frames 10000] [--curves 60] [--chunk 25]

Prints a table; the target is the bulk write of 60 x 10,000 keys in under a second.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import bpy
import numpy as np

# addon.keyframes needs only bpy and numpy; load it alone (the add-on package expects to be an extension).
_spec = importlib.util.spec_from_file_location(
    "kinesics_keyframes", Path(__file__).resolve().parent.parent / "addon" / "keyframes.py")
keyframes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(keyframes)


def _target(name: str) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, None)
    for i in range(60):
        obj[f"c{i}"] = 0.0
    return obj


def bulk(frames: np.ndarray, values: np.ndarray, chunk: int | None) -> float:
    obj = _target("bulk" if chunk is None else "chunked")
    channels = [(f'["c{i}"]', 0) for i in range(values.shape[1])]
    step = chunk or len(frames)
    began = time.perf_counter()
    for lo in range(0, len(frames), step):
        keyframes.append_keys(obj, obj.name, frames[lo:lo + step],
                              {c: values[lo:lo + step, i] for i, c in enumerate(channels)})
    return time.perf_counter() - began


def one_at_a_time(frames: np.ndarray, values: np.ndarray) -> float:
    obj = _target("insert")
    began = time.perf_counter()
    for t, frame in enumerate(frames):
        for i in range(values.shape[1]):
            obj[f"c{i}"] = float(values[t, i])
            obj.keyframe_insert(f'["c{i}"]', frame=float(frame))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--curves", type=int, default=60)
    parser.add_argument("--chunk", type=int, default=25, help="frames per streamed chunk")
    parser.add_argument("--insert-frames", type=int, default=200, help="frames for the keyframe_insert baseline")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = np.arange(1, args.frames + 1, dtype=np.float64)
    values = rng.normal(size=(args.frames, args.curves))
    keys = args.frames * args.curves
    rows = [("bulk, one call per curve", keys, bulk(frames, values, None)),
            (f"streamed, chunks of {args.chunk} frames", keys, bulk(frames, values, args.chunk))]
    n = args.insert_frames
    rows.append((f"keyframe_insert ({n} frames)", n * args.curves, one_at_a_time(frames[:n], values[:n])))
    print(f"Blender {bpy.app.version_string}: {args.curves} curves x {args.frames} frames")
    print(f"{'method':<34}{'keys':>10}{'seconds':>10}{'keys/s':>14}")
    for name, count, seconds in rows:
        print(f"{name:<34}{count:>10}{seconds:>10.3f}{count / seconds:>14,.0f}")


if __name__ == "__main__":
    main()
