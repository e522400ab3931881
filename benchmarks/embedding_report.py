"""Landmark embedding report: derivation time and the distance of MediaPipe landmarks, placed by
`core.embedding` on ICT-FaceKit's head, from ICT-FaceKit's own 68-landmark annotation.

    .venv/bin/python benchmarks/embedding_report.py            # ICT npz, ICT folder, FLAME-format stand-in
    .venv/bin/python benchmarks/embedding_report.py MODEL ...  # any head-model files (ICT topology to be checked)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.embedding import N_LANDMARKS, landmark_embedding  # noqa: E402
from core.model_data import load_model_data  # noqa: E402
from core.paths import assets_dir  # noqa: E402
from tests.conftest import standin_model_path  # noqa: E402
from tests.test_embedding import CHECKS  # noqa: E402

NAMES = {33: "R eye outer", 133: "R eye inner", 362: "L eye inner", 263: "L eye outer",
         61: "mouth R", 291: "mouth L", 1: "nose tip", 152: "chin"}


def main(paths: list[str]) -> None:
    ict = assets_dir() / "models" / "ict_facekit"
    if not paths:
        paths = [str(ict / "ict_facekit.npz"), str(ict), str(standin_model_path(ict / "ict_facekit.npz"))]
    annotation = np.asarray(json.loads((ict / "vertex_indices.json").read_text())["idx_to_landmark_verts"])
    rows = []
    for path in paths:
        t0 = time.perf_counter()
        data = load_model_data(path)
        t1 = time.perf_counter()
        emb = landmark_embedding(data, cache=False)
        t2 = time.perf_counter()
        checked = data.n_vertices > annotation.max()
        errors = [np.linalg.norm(emb.points[mp] - data.template[annotation[i68]]) * 1000 if checked else np.nan
                  for mp, i68 in CHECKS.items()]
        rows.append((Path(path).name or path, data.n_vertices, t1 - t0, t2 - t1, emb, errors))

    print(f"{'model':<22}{'vertices':>9}{'load s':>8}{'derive s':>9}{'valid':>7}{'spread mm (valid, median)':>27}")
    for name, n, load_s, derive_s, emb, _ in rows:
        print(f"{name:<22}{n:>9}{load_s:>8.1f}{derive_s:>9.1f}{int(emb.valid.sum()):>4}/{N_LANDMARKS}"
              f"{np.median(emb.spread[emb.valid]) * 1000:>27.2f}")
    print()
    print("3D distance (mm) from ICT-FaceKit's annotated landmark vertex (fails over 12, median over 6)")
    print(f"{'MediaPipe -> 68-point':<24}" + "".join(f"{name[:14]:>16}" for name, *_ in rows))
    for i, (mp, i68) in enumerate(CHECKS.items()):
        label = f"{mp:>3} -> {i68:<2} {NAMES[mp]}"
        print(f"{label:<24}" + "".join(f"{row[5][i]:>16.2f}" for row in rows))
    print(f"{'median':<24}" + "".join(f"{np.median(row[5]):>16.2f}" for row in rows))
    print(f"{'max':<24}" + "".join(f"{np.max(row[5]):>16.2f}" for row in rows))


if __name__ == "__main__":
    main(sys.argv[1:])
