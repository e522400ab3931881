"""Retarget and export throughput: bake onto a 52-key character with a 5-bone head rig, FBX export and
re-import, and Live Link Face CSV write and read, for captures of several lengths.

    .venv/bin/python benchmarks/bench_arkit_mapping.py [--frames 250 1000 5000]

Prints one row per capture length, seconds per stage (best of --repeats), and the largest difference of any
shape key after the FBX round trip (should stay under 1e-3).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from core import livelink  # noqa: E402
from core.arkit_names import ARKIT_NAMES  # noqa: E402
from test_retarget_scene import BONES, bpy, extension_module, make_capture, make_character, \
    other_convention  # noqa: E402

retarget = extension_module("addon.retarget")
export_fbx = extension_module("addon.export_fbx")


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fresh_scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.context.scene.render.fps = 25
    return bpy.context.scene


def sample(scene, mesh, frames) -> np.ndarray:
    """(frames, keys) shape key values; the bones' round trip is checked in tests/test_export_fbx.py."""
    rows = []
    for frame in frames:
        scene.frame_set(frame)
        rows.append([b.value for b in mesh.data.shape_keys.key_blocks[1:]])
    return np.array(rows)


def run(n: int, repeats: int, folder: Path) -> dict:
    scene = fresh_scene()
    names = [other_convention(a, i) for i, a in enumerate(ARKIT_NAMES)]
    mesh, armature = make_character(names)
    capture = make_capture(n=n, start=0, stride=1)
    mapping = retarget.RetargetMap(retarget.auto_map(names), [retarget.BoneMap(s, b) for s, b in BONES.items()])
    row = {"frames": n, "bake_s": best(lambda: retarget.bake(capture, mesh, mapping, armature), repeats)}
    frames = list(range(scene.frame_start, scene.frame_start + n, max(1, n // 50)))
    before = sample(scene, mesh, frames)
    path = str(folder / f"bench_{n}.fbx")
    row["fbx_export_s"] = best(lambda: export_fbx.export_fbx(path, [mesh], scene), repeats)
    fresh_scene()
    start = time.perf_counter()
    imported = export_fbx.import_fbx(path)
    row["fbx_import_s"] = time.perf_counter() - start
    new_mesh = next(ob for ob in imported if ob.type == "MESH")
    row["fbx_max_key_diff"] = float(np.abs(sample(bpy.context.scene, new_mesh, frames) - before).max())
    csv_path = folder / f"bench_{n}.csv"
    row["csv_write_s"] = best(lambda: livelink.export_capture(capture, csv_path), repeats)
    row["csv_read_s"] = best(lambda: livelink.import_take(csv_path), repeats)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[250, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, args.repeats, Path(tmp)) for n in args.frames]
    columns = list(rows[0])
    print(" | ".join(f"{c:>16}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c]:>16.4g}" if isinstance(row[c], float) else f"{row[c]:>16}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
