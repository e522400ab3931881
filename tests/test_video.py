"""Footage decoding: frame ranges and strides pick the right frames; bad files fail clearly or keep what decodes."""
from __future__ import annotations

import struct
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import FootageError
from core.video import frame_numbers, frame_times, probe, read_ahead, read_frames, read_timed_frames

# MP4 boxes that only hold other boxes, on the way from moov down to the chunk offset tables.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(data: bytes, start: int, end: int):
    """(type, offset, size, header size) of the boxes in data[start:end]."""
    pos = start
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        yield kind, pos, size, header
        pos += size


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, shift: int) -> None:
    for kind, pos, size, header in _boxes(moov, start, end):
        if kind in _CONTAINERS:
            _shift_chunk_offsets(moov, pos + header, pos + size, shift)
        elif kind in (b"stco", b"co64"):
            width, fmt = (4, ">I") if kind == b"stco" else (8, ">Q")
            count = struct.unpack(">I", moov[pos + header + 4:pos + header + 8])[0]
            table = pos + header + 8
            for i in range(count):
                at = table + i * width
                moov[at:at + width] = struct.pack(fmt, struct.unpack(fmt, moov[at:at + width])[0] + shift)


def faststart(data: bytes) -> bytes:
    """The same MP4 with its index (moov) before the media data, as streaming encoders write it.

    Cutting such a file leaves an index that announces more frames than the data still holds: the kind of
    truncation a decoder can read up to the damage (with the index at the end, a cut file does not open)."""
    boxes = list(_boxes(data, 0, len(data)))
    moov = next(b for b in boxes if b[0] == b"moov")
    moved = bytearray(data[moov[1]:moov[1] + moov[2]])
    _shift_chunk_offsets(moved, moov[3], len(moved), len(moved))
    head = [data[p:p + s] for k, p, s, _ in boxes if k == b"ftyp"]
    rest = [data[p:p + s] for k, p, s, _ in boxes if k not in (b"ftyp", b"moov")]
    assert all(p < moov[1] for k, p, s, _ in boxes if k == b"mdat"), "expected the index after the media data"
    return b"".join(head) + bytes(moved) + b"".join(rest)


def rotated_for_display(data: bytes) -> bytes:
    """The same MP4 with a display matrix that turns the picture 90 degrees, as phones tag portrait footage
    (the track header's matrix: a = 0, b = 1, c = -1, d = 0 in 16.16 fixed point)."""
    out = bytearray(data)
    moov = next(b for b in _boxes(out, 0, len(out)) if b[0] == b"moov")
    trak = next(b for b in _boxes(out, moov[1] + moov[3], moov[1] + moov[2]) if b[0] == b"trak")
    kind, pos, size, header = next(b for b in _boxes(out, trak[1] + trak[3], trak[1] + trak[2]) if b[0] == b"tkhd")
    version = out[pos + header]
    # version+flags, times and track id, reserved, duration, reserved, layer, group, volume, reserved
    matrix = pos + header + 4 + (28 if version == 1 else 16) + 4 + 8 + 8
    out[matrix:matrix + 36] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    return bytes(out)


@pytest.fixture(scope="module")
def clip(footage: Path) -> Path:
    return footage / "frontal_talking_512.mp4"


def test_probe_reports_the_clip(clip: Path):
    info = probe(clip)
    assert (info.width, info.height, info.n_frames) == (512, 512, 400)
    assert info.fps == pytest.approx(25.0)


def test_phone_rotation_metadata_is_applied(footage: Path, tmp_path: Path):
    """Portrait phone footage is stored sideways with a rotation tag: frames come out upright, the size is the
    upright one, and MediaPipe finds the face where it finds it in the upright original."""
    from core.landmarks import detect_video

    original = footage / "happy_1080p.mp4"
    upright = [frame for _, frame in read_frames(original, 0, 12)]
    height, width = upright[0].shape[:2]
    stored = tmp_path / "stored_sideways.mp4"
    writer = cv2.VideoWriter(str(stored), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (height, width))
    for frame in upright:
        writer.write(cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE))
    writer.release()
    tagged = tmp_path / "portrait.mp4"
    tagged.write_bytes(rotated_for_display(stored.read_bytes()))

    for decode in (True, False):  # the container's size, read without decoding, is the upright one too
        info = probe(tagged, decode=decode)
        assert (info.rotation, info.width, info.height) == (90, 1920, 1080)
    decoded = [frame for _, frame in read_frames(tagged)]
    assert len(decoded) == len(upright) and decoded[0].shape == upright[0].shape
    assert np.abs(decoded[0].astype(np.int16) - upright[0].astype(np.int16)).mean() < 6.0  # mp4v's loss only
    track, reference = detect_video(tagged), detect_video(original, 0, 12)
    assert track.valid.all() and track.image_size == (1920, 1080)
    shift = np.linalg.norm((track.landmarks - reference.landmarks)[..., :2] * (1920, 1080), axis=-1)
    assert np.median(shift) < 3.0, np.median(shift)


def test_range_and_stride_pick_the_right_frames(clip: Path):
    every = dict(read_frames(clip, 0, 45))
    picked = list(read_frames(clip, 10, 45, 7))
    assert [i for i, _ in picked] == [10, 17, 24, 31, 38] == list(frame_numbers(400, 10, 45, 7))
    for index, frame in picked:  # the pixels too, not only the numbers
        assert np.array_equal(frame, every[index])
    assert not np.array_equal(every[10], every[17])


def test_range_is_clipped_to_the_clip_without_warning(clip: Path):
    warnings: list[str] = []
    assert [i for i, _ in read_frames(clip, 395, 1000, 2, warnings)] == [395, 397, 399]
    assert warnings == []
    assert list(frame_numbers(400, 395, 1000, 2)) == [395, 397, 399]


@pytest.mark.parametrize("start, end, stride", [(-1, None, 1), (10, 10, 1), (20, 5, 1), (0, None, 0)])
def test_invalid_range_is_refused(clip: Path, start, end, stride):
    with pytest.raises(FootageError, match="invalid frame range"):
        list(read_frames(clip, start, end, stride))


def test_range_beyond_the_clip_says_so(clip: Path):
    with pytest.raises(FootageError, match="400 frames"):
        list(read_frames(clip, 500, 600))


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    return {"missing": (tmp_path / "missing.mp4", "no such video file"), "folder": (folder, "folder"),
            "empty": (empty, "empty"), "noise": (noise, "cannot read this file as video")}


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "noise"])
def test_bad_files_fail_clearly(tmp_path: Path, case: str):
    path, words = _bad_files(tmp_path)[case]
    for attempt in (lambda: probe(path), lambda: probe(path, decode=False), lambda: list(read_frames(path))):
        with pytest.raises(FootageError, match=words) as err:
            attempt()
        assert str(path) in str(err.value)


def test_cut_file_with_index_at_the_end_fails_clearly(clip: Path, tmp_path: Path):
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(FootageError, match="cannot read"):
        probe(cut)


def test_truncated_file_keeps_the_frames_before_the_damage(clip: Path, tmp_path: Path):
    streamable = faststart(clip.read_bytes())
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(streamable)
    reference = dict(read_frames(whole, 0, 400, 1))
    assert len(reference) == 400  # the rewrite itself loses nothing
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(streamable[:len(streamable) // 2])
    warnings: list[str] = []
    frames = list(read_frames(cut, 0, None, 1, warnings))
    assert 50 < len(frames) < 400
    assert [i for i, _ in frames] == list(range(len(frames)))
    for index, frame in frames[:-1]:  # the last frame may be partly decoded
        assert np.array_equal(frame, reference[index])
    assert len(warnings) == 1 and "truncated" in warnings[0] and str(cut) in warnings[0]


def test_reading_ahead_gives_the_same_frames_and_the_damage_after_them(clip: Path, tmp_path: Path):
    """Frames decoded in a thread ahead of their use: the same frames, times and notes in order; an error comes
    where it happened, after the frames before it."""
    reference = list(read_timed_frames(clip, 0, 60, 2))
    ahead = list(read_ahead(read_timed_frames(clip, 0, 60, 2), 3))
    assert [(i, t) for i, t, _ in ahead] == [(i, t) for i, t, _ in reference]
    assert all(np.array_equal(a[2], r[2]) for a, r in zip(ahead, reference))

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart(clip.read_bytes())[:len(clip.read_bytes()) // 2])
    warnings: list[str] = []
    assert len(list(read_ahead(read_timed_frames(cut, 0, None, 1, warnings), 3))) > 50
    assert len(warnings) == 1 and "truncated" in warnings[0]

    def failing():
        yield from read_timed_frames(clip, 0, 5)
        raise FootageError("damaged")

    got = []
    with pytest.raises(FootageError, match="damaged"):
        for index, _, _ in read_ahead(failing(), 2):
            got.append(index)
    assert got == [0, 1, 2, 3, 4]


def test_reading_ahead_stops_when_its_consumer_does(clip: Path):
    """Closing the reader early stops its thread and closes the decoder (the landmark process stops a job so)."""
    closed = threading.Event()

    def frames():
        try:
            yield from read_timed_frames(clip)
        finally:
            closed.set()

    before = threading.active_count()
    reader = read_ahead(frames(), 2)
    assert next(reader)[0] == 0
    reader.close()
    assert closed.is_set() and threading.active_count() == before


def _write_sequence(clip: Path, folder: Path, names: list[str]) -> list[np.ndarray]:
    """The clip's first frames written losslessly as images named `names`; returns the frames."""
    folder.mkdir()
    frames = [frame for _, frame in read_frames(clip, 0, len(names))]
    for name, frame in zip(names, frames):
        assert cv2.imwrite(str(folder / name), frame)
    return frames


def test_image_sequence_reads_like_the_video_in_frame_number_order(clip: Path, tmp_path: Path):
    """A folder of frames, or one frame of a numbered series, is footage: frames in frame-number order (9 before 10,
    not as the names sort), range and stride as for a video, no frame rate (the default stands in)."""
    names = [f"take_{n}.png" for n in (8, 9, 10, 11, 12, 13)]
    frames = _write_sequence(clip, tmp_path / "plate", names)
    (tmp_path / "plate" / "notes.txt").write_text("not a frame")
    for footage in (tmp_path / "plate", tmp_path / "plate" / "take_11.png"):
        info = probe(footage)
        assert (info.n_frames, info.width, info.height, info.rate_known) == (6, 512, 512, False)
        got = list(read_frames(footage, 1, 6, 2))
        assert [i for i, _ in got] == [1, 3, 5]
        for (i, frame) in got:
            assert np.array_equal(frame, frames[i]), i
    assert probe(clip).rate_known


def test_image_sequence_problems_fail_clearly_and_keep_what_was_read(clip: Path, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FootageError, match="folder with no images"):
        probe(tmp_path / "empty")
    _write_sequence(clip, tmp_path / "plate", [f"f{n:03d}.png" for n in range(5)])
    (tmp_path / "plate" / "f002.png").write_bytes(b"damaged")
    warnings: list[str] = []
    assert [i for i, _ in read_frames(tmp_path / "plate", warnings=warnings)] == [0, 1]
    assert warnings and "truncated" in warnings[0]
    frames = _write_sequence(clip, tmp_path / "mixed", ["m1.png", "m2.png", "m3.png"])
    cv2.imwrite(str(tmp_path / "mixed" / "m3.png"), cv2.resize(frames[2], (256, 256)))
    with pytest.raises(FootageError, match="m3.png: is 256x256, but the sequence's frames are 512x512"):
        list(read_frames(tmp_path / "mixed"))
    (tmp_path / "film.0001.exr").write_bytes(b"\x76\x2f\x31\x01")
    with pytest.raises(FootageError, match="exr frames are not read; convert"):
        probe(tmp_path / "film.0001.exr")


def test_frames_are_timed_by_the_footage_timestamps(clip: Path, variable_rate_clip, tmp_path: Path):
    """Constant-rate footage is timed at frame_index / fps exactly; variable-frame-rate footage at its
    timestamps, read even for a range that starts mid-clip; an image sequence has no timestamps."""
    path, truth = variable_rate_clip
    timed = list(read_timed_frames(path, 10, 60, 3))
    indices = np.array([i for i, _, _ in timed])
    seconds = np.array([s for _, s, _ in timed])
    np.testing.assert_allclose(seconds, np.asarray(truth)[indices], atol=1e-3)
    fps = probe(path).fps
    times = frame_times(indices, seconds, fps)
    np.testing.assert_allclose(times, np.asarray(truth)[indices], atol=1e-3)
    assert np.abs(indices / fps - times).max() > 0.2, "the average rate alone would be off by a fifth of a second"

    steady = list(read_timed_frames(clip, 0, 50))
    indices = np.array([i for i, _, _ in steady])
    assert np.array_equal(frame_times(indices, [s for _, s, _ in steady], 25.0), indices / 25.0)
    sixty = np.arange(120)
    assert np.array_equal(frame_times(sixty, np.round(sixty / 60, 3), 60.0), sixty / 60.0), \
        "timestamps rounded to the millisecond (Matroska) are constant-rate"
    assert np.array_equal(frame_times(indices[:3], [np.nan, 0.04, 0.03], 25.0), indices[:3] / 25.0), \
        "missing or backward timestamps are not trusted"
    np.testing.assert_allclose(frame_times(indices[:3], [0.0, 0.2, 0.1], 25.0), [0.0, 0.2, 0.24],
                               err_msg="a frame is never placed before the one it follows")
    cv2.imwrite(str(tmp_path / "f_0001.png"), steady[0][2])
    assert np.isnan(next(read_timed_frames(tmp_path / "f_0001.png"))[1])


def test_a_range_that_starts_late_is_reached_by_seeking_to_the_same_frames(clip: Path, variable_rate_clip,
                                                                          monkeypatch):
    """A range that starts mid-clip (a later segment of a long capture) is reached by seeking instead of decoding
    every frame before it, checked against the container's own timestamps: the same frames, pixels and times as
    reading from the first frame, on constant-rate footage and on variable-rate footage (where OpenCV's seek by
    frame number lands elsewhere and is corrected). Without those timestamps (no PyAV) frames are read one by one,
    to the same result."""
    import core.video as video

    for path, starts in ((clip, (30, 201, 350)), (variable_rate_clip[0], (17, 30, 41, 55))):
        every = list(read_timed_frames(path))
        cap = cv2.VideoCapture(str(path))
        cap.grab()
        first_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        for start in starts:
            moved = video._seek(path, start, first_ms)
            assert moved is not None, (path, start)
            assert np.array_equal(moved.retrieve()[1], every[start][2]), (path, start)
            part = list(read_timed_frames(path, start, start + 10, 3))
            assert [i for i, _, _ in part] == list(range(start, min(start + 10, len(every)), 3))
            for index, seconds, frame in part:
                assert seconds == every[index][1] and np.array_equal(frame, every[index][2]), (path, index)
    with monkeypatch.context() as patch:
        patch.setattr(video, "presentation_ms", lambda path: None)
        assert video._seek(clip, 201, 0.0) is None
        part = list(read_timed_frames(clip, 201, 205))
    assert [i for i, _, _ in part] == [201, 202, 203, 204]
    assert np.array_equal(part[0][2], dict(read_frames(clip, 201, 202))[201])
