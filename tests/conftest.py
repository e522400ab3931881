"""Shared fixtures: the assets beside the checkout (skipped with a reason when absent) and cached models."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.paths import assets_dir, cache_dir


def _asset(relative: str) -> Path:
    path = assets_dir() / relative
    if not path.exists():
        pytest.skip(f"test asset {path} is absent (set KINESICS_ASSETS to the shared assets folder)")
    return path


@pytest.fixture(scope="session")
def assets() -> Path:
    return _asset("")


@pytest.fixture(scope="session")
def ict_npz() -> Path:
    return _asset("models/ict_facekit/ict_facekit.npz")


@pytest.fixture(scope="session")
def ict_folder() -> Path:
    return _asset("models/ict_facekit")


@pytest.fixture(scope="session")
def footage() -> Path:
    return _asset("footage")


@pytest.fixture(scope="session")
def synthetic() -> Path:
    return _asset("synthetic")


@pytest.fixture(scope="session")
def standin_model(ict_npz: Path) -> Path:
    """The FLAME-format stand-in built from ICT-FaceKit by the shared tool, generated once into the cache."""
    return standin_model_path(ict_npz)


def standin_model_path(ict_npz: Path) -> Path:
    out = cache_dir() / "standin" / "generic_model.pkl"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tool = assets_dir() / "tools" / "ict_to_flame_format.py"
        subprocess.run([sys.executable, str(tool), str(ict_npz), str(tmp)], check=True, capture_output=True)
        tmp.replace(out)
    return out


@pytest.fixture(scope="session")
def variable_rate_clip(footage: Path, tmp_path_factory) -> tuple[Path, list[float]]:
    """The talking clip's first 60 frames as phone footage with a variable frame rate: 25 frames/s, then 16.7 as
    the light drops (an MP4 whose frames are stamped 40 ms, then 60 ms apart), and the seconds each frame is
    shown. OpenCV writes constant-rate video only: its frames are re-stamped with PyAV, packet by packet."""
    import fractions

    import av
    import cv2

    from core.video import read_frames

    folder = tmp_path_factory.mktemp("vfr")
    steady, path = folder / "steady.mp4", folder / "phone.mp4"
    writer = cv2.VideoWriter(str(steady), cv2.VideoWriter_fourcc(*"mp4v"), 25, (512, 512))  # no B-frames
    for _, frame in read_frames(footage / "frontal_talking_512.mp4", 0, 60):
        writer.write(frame)
    writer.release()
    times_ms = [40 * i for i in range(30)] + [40 * 29 + 60 * (i + 1) for i in range(30)]
    with av.open(str(steady)) as source, av.open(str(path), "w") as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        packets = (p for p in source.demux(video) if p.size > 0)
        for packet, ms in zip(packets, times_ms):
            packet.time_base, packet.pts, packet.dts, packet.stream = fractions.Fraction(1, 1000), ms, ms, stream
            out.mux(packet)
    return path, [ms / 1000 for ms in times_ms]


@pytest.fixture(scope="session")
def glancing_head(ict_npz: Path, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Footage (512x512, 25 fps) of an ICT-FaceKit head with painted eyebrows whose eyes look ahead, 20 degrees to
    the subject's left, ahead, 20 degrees to the right, ahead, 15 degrees up (tests/painted_heads.py), and its true
    gaze (T,2) yaw, pitch in radians."""
    from core.model_data import load_ict_npz
    from tests.painted_heads import PaintedHead, front_camera, write_video

    data = load_ict_npz(ict_npz)
    held = [(0.0, 0.0, 8), (20.0, 0.0, 8), (0.0, 0.0, 6), (-20.0, 0.0, 8), (0.0, 0.0, 6), (0.0, 15.0, 8)]
    gaze = np.radians(np.concatenate([np.tile([yaw, pitch], (n, 1)) for yaw, pitch, n in held]))
    head = PaintedHead(data, ict_npz.parent / "vertex_indices.json", np.random.default_rng(5).normal(0, 0.75, 100))
    still = np.zeros((len(gaze), 3))
    video = tmp_path_factory.mktemp("glancing") / "glances.mp4"
    write_video(head.frames(np.zeros((len(gaze), data.n_expression)), still, gaze, front_camera(1040.0, 512)), video,
                25.0)
    return video, gaze
