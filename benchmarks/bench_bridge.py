"""Bridge overhead: the same clip captured in-process and through the worker over its socket.

    .venv/bin/python benchmarks/bench_bridge.py [--video PATH] [--model PATH] [--frames N] [--device cpu]

Both sides are warmed first (model loaded, MediaPipe started), then the clip is captured `--repeats` times
each, alternating, and the best time of each is kept. Reports the protocol's overhead on the whole capture
(goal under 3 %) two ways: worker runs against in-process runs (noisy on a busy machine: separate runs),
and, within each worker job, the client's wait beyond the worker's own run time plus the codec's CPU time
per frame (what the bridge itself adds). Also the time from submit to the first streamed frame with the
model warm (goal under 1 s) and from cancel to the worker's "cancelled", each beside the same figure
in-process (what the engine itself takes), a request's round trip (the bridge's own latency), and the
bytes per frame on the wire.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge import protocol  # noqa: E402
from bridge.client import CaptureAccumulator, WorkerClient  # noqa: E402
from core.engine import CaptureEngine  # noqa: E402
from core.errors import CaptureCancelled  # noqa: E402
from core.paths import assets_dir  # noqa: E402
from tests.conftest import standin_model_path  # noqa: E402

WARMUP_FRAMES = 5


def in_process(engine: CaptureEngine, video: str, frames: int) -> tuple[float, float]:
    """(seconds for the whole capture, seconds to the first final frame)."""
    first: list[float] = []
    t0 = time.perf_counter()
    engine.run(video, start=0, end=frames, on_chunk=lambda chunk: first.append(time.perf_counter()))
    return time.perf_counter() - t0, first[0] - t0


def over_socket(client: WorkerClient, video: str, model: str, frames: int, device: str):
    """(seconds from submit to done, seconds from submit to the first chunk, the accumulator)."""
    t0 = time.perf_counter()
    job = client.submit(video, model=model, start=0, end=frames, device=device)
    acc, first = CaptureAccumulator(job), None
    while not acc.finished:
        for event in client.poll(timeout=0.05):
            acc.feed(event)
            if event["type"] == "chunk" and first is None:
                first = time.perf_counter() - t0
    if acc.outcome != "done":
        raise SystemExit(f"the worker's capture ended with {acc.outcome}: {acc.final}")
    return time.perf_counter() - t0, first, acc


def cancel_in_process(engine: CaptureEngine, video: str) -> float:
    """Seconds from setting the cancel flag (at the first final frame) to CaptureCancelled."""
    cancel, set_at = threading.Event(), []

    def on_chunk(chunk: dict) -> None:
        if not set_at:
            set_at.append(time.perf_counter())
            cancel.set()

    try:
        engine.run(video, start=0, on_chunk=on_chunk, cancel=cancel)
    except CaptureCancelled:
        return time.perf_counter() - set_at[0]
    raise SystemExit("the capture ended before it could be cancelled")


def round_trip(client: WorkerClient, n: int = 50) -> float:
    """Median seconds of a request and its reply: the bridge's own latency."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.hello()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cancel_latency(client: WorkerClient, video: str, model: str, device: str) -> float:
    job = client.submit(video, model=model, start=0, device=device)
    acc = CaptureAccumulator(job)
    while acc.frames == 0 and not acc.finished:
        for event in client.poll(timeout=0.05):
            acc.feed(event)
    t0 = time.perf_counter()
    client.cancel(job)
    while not acc.finished:
        for event in client.poll(timeout=0.01):
            acc.feed(event)
    return time.perf_counter() - t0


def codec_seconds(chunks: list[dict]) -> float:
    """CPU time to encode every chunk (worker side) and decode it (client side), through a socket pair."""
    a, b = socket.socketpair()
    try:
        t0 = time.perf_counter()
        for chunk in chunks:
            data = protocol.encode({"type": "chunk", "job_id": 1, "data": chunk})
            a.sendall(data)
            protocol.recv(b, protocol.EVENT_LIMIT)
        return time.perf_counter() - t0
    finally:
        a.close()
        b.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(assets_dir() / "footage" / "frontal_talking_512.mp4"))
    parser.add_argument("--model", help="head-model file (default: the FLAME-format stand-in from ICT-FaceKit)")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    model = args.model or str(standin_model_path(assets_dir() / "models" / "ict_facekit" / "ict_facekit.npz"))

    t0 = time.perf_counter()
    engine = CaptureEngine(model, args.device)
    engine.run(args.video, start=0, end=WARMUP_FRAMES)
    load_in_process = time.perf_counter() - t0
    t0 = time.perf_counter()
    client = WorkerClient.start(sys.executable)
    start_worker = time.perf_counter() - t0
    try:
        cold, cold_first, _ = over_socket(client, args.video, model, WARMUP_FRAMES, args.device)
        local, remote = [], []
        for _ in range(args.repeats):
            local.append(in_process(engine, args.video, args.frames))
            remote.append(over_socket(client, args.video, model, args.frames, args.device))
        cancel = cancel_latency(client, args.video, model, args.device)
        latency = round_trip(client)
    finally:
        client.shutdown()
    cancel_local = cancel_in_process(engine, args.video)
    best_local, best_local_first = min(t for t, _ in local), min(f for _, f in local)
    best_remote, best_remote_first = min(t for t, _, _ in remote), min(f for _, f, _ in remote)
    acc = remote[-1][2]
    wire = sum(len(protocol.encode({"type": "chunk", "job_id": 1, "data": c})) for c in acc.chunks) / acc.frames
    codec = codec_seconds(acc.chunks) / acc.frames
    # The same job seen from both ends: what the client waited beyond the worker's own run time.
    in_job = min(100.0 * (t - a.final["summary"]["seconds"]) / a.final["summary"]["seconds"] for t, _, a in remote)

    overhead = 100.0 * (best_remote - best_local) / best_local
    rows = [
        ("clip", f"{Path(args.video).name} frames 0-{args.frames}, {args.device}", ""),
        ("in-process capture (warm)", f"{best_local:.2f} s ({args.frames / best_local:.1f} frames/s)", ""),
        ("worker capture, submit to done (warm)",
         f"{best_remote:.2f} s ({args.frames / best_remote:.1f} frames/s)", ""),
        ("protocol overhead, worker vs in-process runs", f"{overhead:+.1f} %", "< 3 %"),
        ("  same job: client wait beyond worker run time", f"{in_job:+.2f} %", "< 3 %"),
        ("  encode + decode per frame", f"{codec * 1e6:.0f} us", ""),
        ("submit to first streamed frame (warm)", f"{best_remote_first:.3f} s", "< 1 s"),
        ("  in-process, start to first final frame", f"{best_local_first:.3f} s", ""),
        ("cancel to 'cancelled' event", f"{cancel:.3f} s", "< 1 s"),
        ("  in-process, cancel flag to CaptureCancelled", f"{cancel_local:.3f} s", ""),
        ("request round trip (hello, median of 50)", f"{latency * 1000:.2f} ms", ""),
        ("bytes per frame on the wire", f"{wire:,.0f}", ""),
        ("worker start to ready + connected", f"{start_worker:.2f} s", ""),
        ("first job, cold (model load + 5 frames)", f"{cold:.2f} s (first frame {cold_first:.2f} s)", ""),
        ("in-process load + 5 frames", f"{load_in_process:.2f} s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'value':<{vwidth}}  goal")
    print("-" * (width + vwidth + 8))
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {goal}")


if __name__ == "__main__":
    main()
