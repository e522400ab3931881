"""Captures through the real worker process on real footage: the same result as in-process, streamed;
cancel, concurrent clients, a failing job, and the worker killed mid-job."""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

from bridge.auth import read_token
from bridge.client import CaptureAccumulator, WorkerClient
from core.capture_file import validate

FRAMES = 40  # short, to keep CI time down; enough for several streamed chunks


@pytest.fixture(scope="module")
def video(footage):
    return str(footage / "frontal_talking_512.mp4")


@pytest.fixture(scope="module")
def reference(standin_model, video):
    """The capture of the same frames by CaptureEngine in this process."""
    from core.engine import CaptureEngine
    return CaptureEngine(str(standin_model), "cpu").run(video, start=0, end=FRAMES)


@pytest.fixture(scope="module")
def worker():
    client = WorkerClient.start(sys.executable)
    yield client
    client.shutdown()


def _drain(client: WorkerClient, *accumulators: CaptureAccumulator, until=None) -> list[dict]:
    """Feed events to the accumulators until all are finished (or `until(acc)` holds for the first)."""
    seen = []
    done = (lambda: until(accumulators[0])) if until else (lambda: all(a.finished for a in accumulators))
    while not done():
        for event in client.poll(timeout=0.5):
            seen.append(event)
            for acc in accumulators:
                acc.feed(event)
    return seen


def _assert_same_capture(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        value = np.asarray(value)
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_socket_capture_matches_in_process(worker, standin_model, video, reference):
    loading = CaptureAccumulator(worker.load(standin_model))
    _drain(worker, loading)
    assert loading.outcome == "done" and not loading.final["summary"]["warm"], loading.final
    assert worker.status()["engines"] == [{"device": "cpu", "model": os.path.realpath(standin_model)}]

    job = worker.submit(video, model=standin_model, start=0, end=FRAMES)
    acc = CaptureAccumulator(job)
    events = [e for e in _drain(worker, acc) if e.get("job_id") == job]
    kinds = [e["type"] for e in events]
    assert acc.outcome == "done", acc.final
    assert kinds[0] == "started" and events[0]["warm"], "the loaded model is used warm"
    assert kinds[-1] == "done" and kinds.index("header") < kinds.index("chunk") and "progress" in kinds
    assert len(acc.chunks) >= 1 and acc.final["summary"]["frames"] == FRAMES
    capture = acc.capture()
    validate(capture)
    _assert_same_capture(capture, reference)


def test_cancel_mid_job_keeps_what_was_streamed(worker, standin_model, video):
    job = worker.submit(video, model=standin_model, start=0)
    acc = CaptureAccumulator(job)
    _drain(worker, acc, until=lambda a: a.frames > 0 or a.finished)
    assert worker.cancel(job) == "running"
    _drain(worker, acc)
    assert acc.outcome == "cancelled", acc.final
    assert acc.final["frames_kept"] == acc.frames > 0
    assert str(acc.frames) in acc.final["message"]
    capture = acc.capture()
    validate(capture)
    np.testing.assert_array_equal(capture["frame_index"], np.arange(acc.frames))
    assert worker.status()["jobs"] == []


def test_two_clients_at_once_get_their_own_results(worker, standin_model, video, reference):
    other = WorkerClient.connect(*worker.address, token=read_token(worker.ready["token_file"]))
    try:
        first = worker.submit(video, model=standin_model, start=0, end=FRAMES)
        second = other.submit(video, model=standin_model, start=0, end=FRAMES, stride=2)
        a, b = CaptureAccumulator(first), CaptureAccumulator(second)
        while not (a.finished and b.finished):
            for event in worker.poll(timeout=0.2):
                assert event.get("job_id") in (first, None), "a client gets only its own jobs' events"
                a.feed(event)
            for event in other.poll(timeout=0.2):
                assert event.get("job_id") in (second, None), "a client gets only its own jobs' events"
                b.feed(event)
    finally:
        other.close()
    assert (a.outcome, b.outcome) == ("done", "done"), (a.final, b.final)
    np.testing.assert_array_equal(a.capture()["frame_index"], np.arange(FRAMES))
    np.testing.assert_array_equal(b.capture()["frame_index"], np.arange(0, FRAMES, 2))
    validate(a.capture())
    validate(b.capture())


def test_a_warm_worker_repeats_the_same_capture(worker, standin_model, video, reference):
    """After other jobs (and a cancelled one), the cached engine must give the first result again."""
    job = worker.submit(video, model=standin_model, start=0, end=FRAMES)
    acc = CaptureAccumulator(job)
    _drain(worker, acc)
    assert acc.outcome == "done" and acc.final["summary"]["warm"]
    _assert_same_capture(acc.capture(), reference)


def test_jobs_of_a_client_that_leaves_are_cancelled(worker, standin_model, video):
    other = WorkerClient.connect(*worker.address, token=read_token(worker.ready["token_file"]))
    running = other.submit(video, model=standin_model, start=0)
    queued = other.submit(video, model=standin_model, start=0)
    other.close()
    while worker.status()["jobs"]:
        time.sleep(0.1)
    left = [line for line in worker.output if "its client left" in line]
    assert any(f"job {running}:" in line for line in left) and any(f"job {queued}:" in line for line in left)


def test_failing_jobs_report_clear_errors(worker, standin_model, video, tmp_path):
    capture = CaptureAccumulator(worker.submit(tmp_path / "missing.mp4", model=standin_model))
    load = CaptureAccumulator(worker.load(tmp_path / "missing.pkl"))
    lens = CaptureAccumulator(worker.submit(video, model=standin_model, end=5, lens_mm=-2.0))
    smoothing = CaptureAccumulator(worker.submit(video, end=5, smoothing=-1.0))
    rate = CaptureAccumulator(worker.submit(video, end=5, fps=0.0))
    past_end = CaptureAccumulator(worker.submit(video, model=standin_model, start=500))
    after = CaptureAccumulator(worker.submit(video, model=standin_model, end=5))  # waited on the last until fixed
    _drain(worker, capture, load, lens, smoothing, rate, past_end, after)
    assert past_end.outcome == "error" and past_end.final["code"] == "footage"
    assert "the range starts at frame 500" in past_end.final["message"]
    assert after.outcome == "done" and len(after.capture()["frame_index"]) == 5
    assert rate.outcome == "error" and rate.final["code"] == "setting" and "frame rate of 0.0" in rate.final["message"]
    assert lens.outcome == "error" and lens.final["code"] == "setting" and "-2.0 mm" in lens.final["message"]
    assert smoothing.outcome == "error" and smoothing.final["code"] == "setting"
    assert "smoothing of -1.0" in smoothing.final["message"]
    assert capture.outcome == "error" and capture.final["code"] == "footage"
    assert "missing.mp4" in capture.final["message"]
    assert load.outcome == "error" and load.final["code"] == "model" and "missing.pkl" in load.final["message"]
    assert worker.alive and worker.status()["jobs"] == []


def test_refit_job_fits_a_capture_files_landmarks_again(worker, reference, tmp_path):
    """A refit through the worker is the engine's refit of the same capture file (another model here: the
    built-in rig; no smoothing), streamed like a capture; options a refit does not take are refused clearly."""
    from core import capture_file
    from core.engine import CaptureEngine

    path = capture_file.save(tmp_path / "take.npz", reference)
    acc = CaptureAccumulator(worker.refit(path, smoothing=0.0))
    bad = CaptureAccumulator(worker.refit(path, mirror_pass=True))
    missing = CaptureAccumulator(worker.refit(tmp_path / "missing.npz"))
    _drain(worker, acc, bad, missing)
    assert acc.outcome == "done", acc.final
    got = acc.capture()
    expected = CaptureEngine(None).refit(capture_file.load(path), smoothing=0.0)
    assert got["model"] == "builtin" and acc.frames == FRAMES
    for key in ("jaw_pose", "global_pose", "translation", "arkit"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(got["landmarks"], reference["landmarks"])
    assert bad.outcome == "error" and bad.final["code"] == "bad_request" and "mirror_pass" in bad.final["message"]
    assert missing.outcome == "error" and "missing.npz" in missing.final["message"]


def test_worker_killed_mid_job(worker, standin_model, video):
    job = worker.submit(video, model=standin_model, start=0)
    acc = CaptureAccumulator(job)
    _drain(worker, acc, until=lambda a: a.frames > 0 or a.finished)
    assert not acc.finished, acc.final
    old_pid, old_token = worker.process.pid, worker.ready["token_file"]
    os.kill(old_pid, signal.SIGKILL)
    _drain(worker, acc)
    assert acc.outcome == "worker_died"
    died = acc.final
    assert died["exit_code"] == -signal.SIGKILL and "SIGKILL" in died["message"]
    assert died["frames_kept"] == {job: acc.frames} and f"{acc.frames} of job {job}" in died["message"]
    assert any("kinesics worker" in line for line in died["output"])
    assert not worker.alive
    capture = acc.capture()  # every frame received before the kill
    validate(capture)
    assert len(capture["frame_index"]) == acc.frames
    worker.restart()
    assert worker.alive and worker.hello()["pid"] == worker.process.pid != old_pid
    assert not os.path.exists(old_token), "a new worker removes the token files of killed ones"


def test_shutdown_mid_job_reports_what_was_kept(worker, standin_model, video):
    job = worker.submit(video, model=standin_model, start=0)
    acc = CaptureAccumulator(job)
    _drain(worker, acc, until=lambda a: a.frames > 0 or a.finished)
    worker.shutdown()
    events = worker.poll()
    for event in events:
        acc.feed(event)
    assert acc.outcome == "cancelled" and acc.final["frames_kept"] == acc.frames > 0
    assert events[-1]["type"] == "bye" and worker.process.returncode == 0
    validate(acc.capture())


def test_first_use_of_a_model_is_reported_while_it_is_prepared(standin_model, video, tmp_path, monkeypatch):
    """A worker with an empty cache derives the model's landmark embedding (seconds) before the first frame and
    says so, view by view; a warm model does not."""
    monkeypatch.setenv("KINESICS_CACHE", str(tmp_path / "cache"))
    client = WorkerClient.start(sys.executable)
    try:
        first = CaptureAccumulator(client.submit(video, model=standin_model, start=0, end=5))
        events = _drain(client, first)
        again = CaptureAccumulator(client.submit(video, model=standin_model, start=0, end=5))
        later = _drain(client, again)
    finally:
        client.shutdown()
    assert first.outcome == "done" and again.outcome == "done"
    kinds = [e["type"] for e in events if e.get("job_id") == first.job_id]
    preparing = [e for e in events if e["type"] == "preparing"]
    assert len(preparing) > 5 and preparing[-1]["fraction"] == 1.0 and "view" in preparing[1]["message"]
    assert kinds.index("preparing") < kinds.index("header")
    assert not [e for e in later if e["type"] == "preparing"]


def _children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    children: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children |= {int(c) for c in f.read().split()}
    return children


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts child processes through /proc")
def test_an_evicted_engine_stops_its_landmark_processes(standin_model, video):
    """With one engine kept, a capture with another model evicts the first engine, and the landmark processes it
    started (two, with the mirror pass) end instead of lingering for the worker's lifetime."""
    worker = WorkerClient.start(sys.executable, ("--max-engines", "1"))
    try:
        builtin = CaptureAccumulator(worker.submit(video, end=5, mirror_pass=True))
        _drain(worker, builtin)
        assert builtin.outcome == "done", builtin.final
        with_builtin = _children(worker.process.pid)
        standin = CaptureAccumulator(worker.submit(video, model=standin_model, end=5))
        _drain(worker, standin)
        assert standin.outcome == "done", standin.final
        deadline = time.monotonic() + 10
        while len(_children(worker.process.pid)) != len(with_builtin) - 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_children(worker.process.pid)) == len(with_builtin) - 1  # two ended, one started
    finally:
        worker.shutdown()
