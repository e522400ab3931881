"""The capture engine: footage in, per-frame head-model parameters out, streamed as frames become final.

Decoding and MediaPipe run in a child process (`core.landmark_process`); the fit runs in the calling thread
on batches of frames as they arrive (one torch thread), so both cores stay busy and the fit costs little on
top of landmarks.
Identity and focal length come from well-spread keyframes of the first frames with a face; after that, each
batch is fitted warm-started from the previous frame, smoothed with a window that looks a few frames ahead, and
handed out.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import capture_file
from .embedding import landmark_embedding
from .errors import CaptureCancelled, FootageError, SettingError
from .fit import (Camera, Fitter, FitSettings, FitState, fitted_landmarks, focal_from_lens, identity_keyframes,
                  landmark_weights)
from .head_model import HeadModel
from .arkit import ArkitSolver, ArkitStream, known_neutral
from .arkit_geometric import NEUTRAL_SPAN, neutral_rows
from .arkit_names import ARKIT_NAMES
from .far_side import turned_far_note
from .builtin_capture import capture_builtin
from .landmark_process import LandmarkProcess, chained, decode_ahead, merged_passes, turns_unbiased
from .landmarks import N_LANDMARKS, LandmarkTrack, tracking_passes
from .model_data import HeadModelData, load_model_data
from .trajectory import RawTrack, SmoothingSettings, to_parameters
from .video import frame_times, probe

SEED_REACH = 3  # frames: how far from an identity keyframe a frame may be and still start from its state


def expression_prior(settings: FitSettings, expressiveness: float) -> float:
    """The per-frame expression prior for the user's expressiveness: 1 as set, 2 a quarter as strong (the
    prior's pull is quadratic: expressions twice as far from rest cost what they cost at 1)."""
    if not 0 < expressiveness < float("inf"):
        raise SettingError(f"an expressiveness of {expressiveness} is not possible: give 1 (the default), more "
                           "(expressions read more readily) or less, above 0 (steadier)")
    return settings.expression_prior / expressiveness ** 2


@dataclass(frozen=True)
class ActorFace:
    """The actor's face as an earlier capture found it: the head model's shape (S,; None for the built-in rig),
    the ARKit curves' (`arkit_*` keys, see `core.arkit.ArkitSolver.identity`), and where it came from."""

    shape: np.ndarray | None
    arkit: dict
    source: str


def _check_neutral(frame: int | None, start: int, stop: int | None) -> None:
    """A neutral frame must lie among the frames captured, [start, stop)."""
    if frame is not None and not (start <= frame and (stop is None or stop <= 0 or frame < stop)):
        last = "the end" if stop is None or stop <= 0 else str(stop - 1)
        raise SettingError(f"the neutral frame {frame} lies outside the frames captured ({start} to {last}): "
                           "give a frame in the range where the face is relaxed and looks ahead")


@dataclass
class Progress:
    done: int
    total: int
    fps: float
    eta_s: float
    faces: int


@dataclass
class EngineSettings:
    fit: FitSettings = field(default_factory=FitSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    identity_window: int = 24        # frames with a face whose keyframes fix identity and focal length
    batch: int = 24                  # frames fitted together
    lookahead: int = 8               # frames of future context before a frame is final
    typical_fov_deg: float = 40.0    # across the longer image side: where the focal length estimate starts
    landmark_stride: int = 2         # of the dense (non-contour) landmarks, fit every n-th
    landmark_workers: int = 0        # processes tracking segments of a long clip side by side; 0: one per core, <= 4
    segment_frames: int = 150        # the shortest segment worth its own process (each re-detects the face)


@dataclass(frozen=True)
class _Plan:
    """What one capture is asked for: where its frames come from, their rate and size, how many are expected,
    the stride they were taken with, a known focal length, the temporal prior and the faces that fix identity."""

    source: str
    fps: float
    size: tuple[int, int]
    total: int
    stride: int
    focal_px: float | None
    smoothing: SmoothingSettings
    identity_window: int
    timestamps: bool = True   # the footage's own timestamps time its frames (not when a frame rate is given)
    neutral_frame: int | None = None  # a frame the user says shows the face at rest (fixes the face's shape)
    expressiveness: float = 1.0       # scales how readily the fit reaches for expression (see `expression_prior`)
    face: ActorFace | None = None     # the actor's face, known from an earlier capture: not solved again


class CaptureEngine:
    """A head model, its landmark embedding and the fitter, loaded once and reused for many captures."""

    def __init__(self, model_path: str | None = None, device: str = "cpu",
                 settings: EngineSettings | None = None, data: HeadModelData | None = None,
                 arkit_basis: str | None = None, on_prepare: Callable[[float, str], None] | None = None,
                 tracks_footage: bool = True):
        """`on_prepare(fraction, message)` follows the first use of a model (its landmark embedding is derived,
        a few seconds; cached afterwards). `tracks_footage` False: an engine that only refits landmarks already
        tracked starts no landmark process until a capture needs one."""
        self.settings = settings or EngineSettings()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise FootageError("device 'cuda' was asked for, but torch sees no CUDA GPU; use --device cpu "
                               "or install a CUDA build of torch (see README)")
        # The first landmark process starts at once: its start-up (MediaPipe's imports and models, about a
        # second) runs beside the model's loading instead of before the first capture's first frame.
        self._landmarks: list[LandmarkProcess] = [LandmarkProcess()] if tracks_footage else []
        self.data = data if data is not None else (load_model_data(model_path) if model_path else None)
        self.fitter: Fitter | None = None
        self.arkit_solver: ArkitSolver | None = None
        if self.data is not None:
            self.arkit_solver = ArkitSolver.load(arkit_basis, device)
            fs = self.settings.fit
            fs.bounded = self.data.expressions_are_weights
            model = HeadModel(self.data.truncated(fs.n_shape, fs.n_expression), device=device)
            emb = landmark_embedding(self.data, progress=on_prepare)
            usable = fitted_landmarks(emb.valid, self.settings.landmark_stride)
            self.fitter = Fitter(model, emb.triangles, emb.barycentric, usable, landmark_weights(emb.spread),
                                 fs)

    @property
    def model_name(self) -> str:
        return self.data.kind if self.data is not None else "builtin"

    # ---- the run ----------------------------------------------------------------------------------------
    def run(self, video: str, start: int = 0, end: int | None = None, stride: int = 1,
            focal_px: float | None = None, on_header: Callable[[dict], None] | None = None,
            on_chunk: Callable[[dict], None] | None = None, on_progress: Callable[[Progress], None] | None = None,
            cancel: threading.Event | None = None, max_faces: int = 1, lens_mm: float | None = None,
            smoothing: float = 1.0, mirror_pass: bool = False, fps: float | None = None,
            neutral_frame: int | None = None, expressiveness: float = 1.0,
            face_from: str | os.PathLike | dict | None = None) -> dict:
        """Capture `video`; returns the capture dict (see core.capture_file). Raises CaptureCancelled with
        everything finished so far when `cancel` is set, FootageError for bad footage, SettingError for a
        setting out of range. A known lens is given as `focal_px` or as `lens_mm` (see
        `core.fit.focal_from_lens`). `smoothing` scales the temporal prior: 1 as set, 0 off, 2 twice as smooth.
        `mirror_pass` also tracks the mirrored footage and averages (see `core.landmarks.merge_passes`). `fps`
        replaces the footage's frame rate (an image sequence has none: `core.video.DEFAULT_FPS` stands in).
        `neutral_frame`: a frame (footage numbering) that shows the actor's face at rest, relaxed and looking
        ahead; the face's shape is taken from it (see `core.fit.Fitter.solve_identity`), so that an expression held
        through the opening frames stays an expression. The first keys then wait for that frame.
        `expressiveness` scales how readily the fit reads landmark motion as expression rather than noise: 1 as
        set, 2 or 4 for fuller expressions (and more of MediaPipe's noise in them), 0.5 steadier; see
        `expression_prior`. It applies to fitted head models; the built-in rig follows the landmarks as they are.
        `face_from`: an earlier capture of the same actor (its file's path, or the capture loaded), made with the
        same head model; its face is reused instead of found again (see `actor_face`)."""
        smoothing_settings = self.settings.smoothing.scaled(smoothing)
        expression_prior(self.settings.fit, expressiveness)  # a bad value fails before any work
        face = self.actor_face(face_from)
        if fps is not None and not 0 < fps < float("inf"):
            raise SettingError(f"a frame rate of {fps} is not possible: give frames per second, above 0")
        info = probe(video, decode=False)  # the landmark process decodes, and fails clearly if nothing does
        if lens_mm is not None:
            focal_px = focal_from_lens(lens_mm, (info.width, info.height))
        stop_frame = info.n_frames if end is None else min(end, info.n_frames) if info.n_frames > 0 else end
        total = len(range(start, stop_frame, stride))
        _check_neutral(neutral_frame, start, stop_frame)
        warnings: list[str] = []
        ahead = decode_ahead(info.width, info.height)
        passes = tracking_passes(mirror_pass, (fps or info.fps) / stride)
        if passes == "both":  # the mirrored frames in a process of their own: on a machine with cores to spare, free
            own = self._process(0).frames(video, start, end, stride, max_faces, "one", warnings, cancel, ahead)
            items = merged_passes(own, self._process(1).frames(video, start, end, stride, max_faces, "mirrored", [],
                                                               cancel, ahead))
        else:
            # Following one person across a cut between segments is not possible: several faces keep one stream.
            bounds = self._segments(start, end, stop_frame, stride) if max_faces == 1 else [(start, end)]
            items = chained([self._process(k).frames(video, a, b, stride, max_faces, passes, warnings, cancel, ahead)
                             for k, (a, b) in enumerate(bounds)])
            if passes == "turns":
                items = turns_unbiased(items)
        plan = _Plan(info.path, fps or info.fps, (info.width, info.height), total, stride, focal_px,
                     smoothing_settings, self.settings.identity_window, timestamps=fps is None,
                     neutral_frame=neutral_frame, expressiveness=expressiveness, face=face)
        return self._consume(items, plan, on_header, on_chunk, on_progress, cancel, warnings)

    def run_track(self, track: LandmarkTrack, stride: int = 1, focal_px: float | None = None,
                  on_header: Callable[[dict], None] | None = None, on_chunk: Callable[[dict], None] | None = None,
                  cancel: threading.Event | None = None, smoothing: float = 1.0, whole_clip_identity: bool = False,
                  neutral_frame: int | None = None, expressiveness: float = 1.0,
                  face_from: str | os.PathLike | dict | None = None) -> dict:
        """Capture from landmarks already tracked (or synthesised): the same fit, no video. With
        `whole_clip_identity`, identity comes from keyframes spread over the whole clip rather than its opening
        faces (nothing streams before the end then; for a finished clip, such as a refit). `face_from`: see `run`."""
        face = self.actor_face(face_from)
        seconds = track.seconds if track.seconds is not None else np.full(len(track.valid), np.nan)
        items = ((int(i), lm if ok else None, tuple(track.image_size), float(t))
                 for i, lm, ok, t in zip(track.frame_index, track.landmarks, track.valid, seconds))
        window = len(track.valid) + 1 if whole_clip_identity else self.settings.identity_window
        if len(track.frame_index):
            _check_neutral(neutral_frame, int(track.frame_index[0]), int(track.frame_index[-1]) + 1)
        plan = _Plan("landmark track", track.fps, tuple(track.image_size), len(track.valid), stride, focal_px,
                     self.settings.smoothing.scaled(smoothing), window, neutral_frame=neutral_frame,
                     expressiveness=expressiveness, face=face)
        return self._consume(items, plan, on_header, on_chunk, None, cancel, list(track.warnings))

    def refit(self, source: dict, focal_px: float | None = None, lens_mm: float | None = None,
              smoothing: float = 1.0, on_header: Callable[[dict], None] | None = None,
              on_chunk: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
              neutral_frame: int | None = None, expressiveness: float = 1.0,
              face_from: str | os.PathLike | dict | None = None) -> dict:
        """Fit the landmarks a capture (`core.capture_file.load`) holds again: this engine's model, a known lens,
        other smoothing, and the actor's shape from the whole clip (or from `face_from`, see `run`). Seconds, with
        no footage; errors as `run`."""
        track = LandmarkTrack.from_capture(source)
        if lens_mm is not None:
            focal_px = focal_from_lens(lens_mm, track.image_size)
        return self.run_track(track, track.stride, focal_px, on_header, on_chunk, cancel, smoothing,
                              whole_clip_identity=True, neutral_frame=neutral_frame, expressiveness=expressiveness,
                              face_from=face_from)

    def actor_face(self, face_from: str | os.PathLike | dict | None) -> ActorFace | None:
        """The actor's face from an earlier capture: a capture file's path or a loaded capture (None: none, the face
        is solved). A head model takes its shape from a capture made with the same model file; the built-in rig its
        rest face from any capture that holds one. Raises CaptureFileError for a file that cannot be read,
        SettingError for a capture that holds no face this engine can use."""
        if face_from is None:
            return None
        name = "the capture given" if isinstance(face_from, dict) else os.fspath(face_from)
        source = face_from if isinstance(face_from, dict) else capture_file.load(os.path.expanduser(name))
        arkit = {k: v for k, v in source.items() if k.startswith("arkit_") and k != "arkit_names"}
        if self.fitter is None:
            if known_neutral(source) is None:
                raise SettingError(f"{name} holds no rest face for the built-in rig (it was captured by an earlier "
                                   "Kinesics): capture that take again, then take the face from it")
            return ActorFace(None, arkit, name)
        model = str(source.get("model", ""))
        if model == "builtin":
            raise SettingError(f"{name} was captured with the built-in rig, which has no face shape to pass on: take "
                               f"the shape from a capture made with this head model ({self.data.source or model})")
        digest, own = str(source.get("model_hash", "")), self.data.content_hash
        shape = np.asarray(source.get("shape", ()), np.float64).reshape(-1)
        if model != self.data.kind or (digest and own and digest != own) or len(shape) != self.fitter.n_shape_out:
            raise SettingError(f"{name} was captured with another head model ({model or 'unknown'}): a face shape "
                               "carries over only between captures made with the same model file; capture with "
                               "that model, or take the shape from a capture made with "
                               f"{self.data.source or 'this one'}")
        if not np.isfinite(shape).all():
            raise SettingError(f"{name} holds a face shape that is not a number: capture that take again")
        return ActorFace(shape, arkit, name)

    def _consume(self, items, plan: _Plan, on_header, on_chunk, on_progress, cancel, warnings: list[str]) -> dict:
        torch.set_num_threads(1)
        run_cls = _Run if self.fitter is not None else _BuiltinRun
        run = run_cls(self, plan, on_header, on_chunk, on_progress, warnings)
        cancelled = lambda: cancel is not None and cancel.is_set()  # noqa: E731
        with closing(items):  # stops the landmark jobs however this ends
            for item in items:
                if cancelled():
                    break
                if isinstance(item, FootageError) and run.n_frames:
                    warnings.append(str(item))  # damage mid-file: keep what was decoded
                    break
                if isinstance(item, BaseException):
                    raise item
                run.add(*item)
        if cancelled():
            run.finish(final=False)
            raise CaptureCancelled(f"capture cancelled after {run.emitted} frames; they are kept", run.capture())
        run.finish(final=True)
        return run.capture()

    def _segments(self, start: int, end: int | None, stop: int, stride: int) -> list[tuple[int, int | None]]:
        """Frame ranges (start, end) that tile [start, end) on the stride's grid, one per landmark process: a long
        clip is split so that its segments are tracked side by side (one tracker, even decoding ahead, leaves part
        of a core idle: on 2 cores 400 frames of 512 px took 1.62 s in two segments, 1.80 s in one)."""
        workers = self.settings.landmark_workers or max(1, min(4, os.cpu_count() or 1))
        frames = len(range(start, stop, stride))
        count = max(1, min(workers, frames // max(self.settings.segment_frames, 1)))
        cuts = [start + stride * round(k * frames / count) for k in range(1, count)]
        return list(zip([start] + cuts, cuts + [end]))

    def _process(self, k: int) -> LandmarkProcess:
        """The k-th warm landmark process (0: the footage; 1: its mirror image, for the mirror pass)."""
        while len(self._landmarks) <= k:
            self._landmarks.append(LandmarkProcess())
        if not self._landmarks[k].alive:
            self._landmarks[k] = LandmarkProcess()
        return self._landmarks[k]

    def close(self) -> None:
        """Stop the landmark processes (they also end with this process)."""
        for process in self._landmarks:
            process.close()
        self._landmarks = []


class _Run:
    """The state of one capture: frames received, fitted, smoothed and handed out."""

    def __init__(self, engine: CaptureEngine, plan: _Plan, on_header, on_chunk, on_progress, warnings: list[str]):
        self.engine, self.plan = engine, plan
        self.on_header, self.on_chunk, self.on_progress = on_header, on_chunk, on_progress
        self.total, self.warnings = max(plan.total, 1), warnings
        self.indices: list[int] = []
        self.seconds: list[float] = []    # the frames' timestamps (core.video.read_timed_frames)
        self.last_time = float("-inf")    # the time of the last frame handed out
        self.landmarks: list[np.ndarray] = []
        self.valid: list[bool] = []
        self.variable_rate = False        # a frame's timestamp departed from frame_index / fps
        self.faces = 0                    # frames with a face so far
        self.image_size = plan.size
        self.header: dict | None = None
        self.chunks: list[dict] = []
        self.states: list[FitState] = []   # fitted batches, in order
        self.fitted = 0                   # frames fitted so far
        self.emitted = 0                  # frames handed out (final)
        self.started = time.perf_counter()
        self.reference: np.ndarray | None = None
        self.last_global: np.ndarray | None = None
        self.camera: Camera | None = None
        self.seeds: tuple[np.ndarray, FitState] | None = None   # identity keyframes and their solved state
        self.arkit: ArkitStream | None = None
        self.settled: dict = {}            # the ARKit curves and their rest face, solved again at the end
        self.expression_prior = expression_prior(engine.settings.fit, plan.expressiveness)

    @property
    def n_frames(self) -> int:
        return len(self.indices)

    def record(self, index: int, lms: np.ndarray | None, size: tuple[int, int], seconds: float = float("nan")
               ) -> None:
        """Keep one frame's landmarks (None: no face) and timestamp."""
        self.indices.append(index)
        self.seconds.append(seconds if self.plan.timestamps else float("nan"))
        self.valid.append(lms is not None)
        self.faces += lms is not None
        self.landmarks.append(lms if lms is not None else np.zeros((N_LANDMARKS, 3), np.float32))
        self.image_size = size

    def add(self, index: int, lms: np.ndarray | None, size: tuple[int, int], seconds: float = float("nan")) -> None:
        self.record(index, lms, size, seconds)
        # Identity needs faces, not frames: footage often opens on an empty set or a slate.
        # A named neutral frame fixes the shape with the frames either side of it: they must have arrived.
        neutral = self.plan.neutral_frame
        arrived = neutral is None or index >= neutral + NEUTRAL_SPAN * self.plan.stride
        if self.header is None and self.faces >= self.plan.identity_window and arrived:
            self.start_fit()
        if self.header is not None:
            self.advance(final=False)
        self.report()

    def times(self, a: int, b: int) -> np.ndarray:
        """Seconds of frames [a, b) after the footage's first (`core.video.frame_times`), handed out in order."""
        times = frame_times(self.indices[a:b], self.seconds[a:b], self.plan.fps, self.last_time)
        if len(times):
            nominal = np.asarray(self.indices[a:b], np.float64) / self.plan.fps
            if not self.variable_rate and (times != nominal).any():
                self.variable_rate = True
                self.warnings.append(
                    f"{self.plan.source}: the footage's timestamps depart from its stated {self.plan.fps:g} frames/s "
                    "(a variable frame rate); its frames are keyed at their timestamps, in step with its sound. "
                    "Blender plays a video behind the camera frame by frame, so that picture may drift from the "
                    "keys: for an exact overlay, convert the footage to a constant rate (for example with ffmpeg's "
                    "-fps_mode cfr) and capture that.")
            self.last_time = float(times[-1])
        return times

    def pixels(self, rows: slice) -> np.ndarray:
        return np.asarray(self.landmarks[rows])[:, :, :2] * np.asarray(self.image_size, np.float64)

    def start_fit(self) -> None:
        """Fix camera and identity from the faces received so far (at least one), then send the header."""
        fitter = self.engine.fitter
        w, h = self.image_size
        pix = self.pixels(slice(0, self.n_frames))
        valid = np.asarray(self.valid)
        neutral = self._neutral_row()
        keys, at_rest = identity_keyframes(pix, valid, self.engine.settings.fit.identity_keyframes,
                                           neutral_rows(valid, neutral))
        # Every capture starts from the mean face (an engine is reused: the last clip's actor is not this one), or
        # from the actor's face as an earlier capture found it.
        face = self.plan.face
        fitter.prepare_face(face.shape if face is not None else None)
        # Without a known lens, start from a typical one; the identity solve refines it with the shape.
        focal = self.plan.focal_px or max(w, h) / 2 / np.tan(np.radians(self.engine.settings.typical_fov_deg) / 2)
        camera = Camera(float(focal), w / 2.0, h / 2.0)
        state = fitter.initial_state(pix[keys], np.ones(len(keys), bool), camera)
        state, self.camera = fitter.solve_identity(state, pix[keys], camera, estimate_focal=not self.plan.focal_px,
                                                   neutral=at_rest, expression_prior=self.expression_prior,
                                                   hold_shape=face is not None)
        self.seeds = (keys, state)
        focal = self.camera.focal
        solver = self.engine.arkit_solver
        solver.prepare(np.asarray(self.landmarks), valid, self.image_size, self.camera, neutral,
                       face.arkit if face is not None else None)
        if face is not None and not solver.accepts(face.arkit):
            self.warnings.append(f"{face.source} holds no face for these ARKit curves (captured with another basis, "
                                 "or by an earlier Kinesics): their face was found in this clip")
        self.arkit = ArkitStream(solver, self.plan.fps / self.plan.stride, self.plan.smoothing.arkit_hz)
        self.header = {"fps": float(self.plan.fps), "image_size": np.array([w, h]),
                       "model": self.engine.model_name, "model_hash": self.engine.data.content_hash,
                       "shape": fitter.shape_vector(), "focal_px": float(focal), "cx": w / 2.0, "cy": h / 2.0,
                       "expression_names": np.array(self._expression_names()), "n_frames": self.total,
                       "n_expression": fitter.n_expression_out, "arkit_names": np.array(ARKIT_NAMES),
                       "expressiveness": float(self.plan.expressiveness)}
        if neutral is not None:
            self.header["neutral_frame"] = int(self.indices[neutral])
        self.header.update(solver.identity())
        if face is not None:
            self.header["face_from"] = face.source
        if self.on_header:
            self.on_header(dict(self.header))

    def _neutral_row(self) -> int | None:
        """The row of the neutral frame the user named, or None (none named; or, with a warning, the footage
        ended before it or it shows no face)."""
        frame = self.plan.neutral_frame
        if frame is None:
            return None
        indices = np.asarray(self.indices)
        row = int(np.abs(indices - frame).argmin())
        if abs(int(indices[row]) - frame) >= self.plan.stride:
            self.warnings.append(f"the footage ended before the neutral frame {frame}: the face's shape comes from "
                                 "the opening frames instead")
            return None
        if not self.valid[row]:
            self.warnings.append(f"no face was found in the neutral frame {frame}: the face's shape comes from the "
                                 "opening frames instead; pick a frame where the face is visible, relaxed and looks "
                                 "ahead")
            return None
        return row

    def _seed(self, state: FitState, rows: slice, valid: np.ndarray) -> tuple[FitState, bool]:
        """Start the frames of a cold batch that lie next to an identity keyframe from its solved state rather
        than from PnP; True when every face in the batch was seeded, so that a warm start's iterations suffice."""
        keys, key_state = self.seeds
        frames = np.arange(rows.start, rows.stop)
        nearest = np.abs(frames[:, None] - keys[None]).argmin(1)
        near = valid & (np.abs(frames - keys[nearest]) <= SEED_REACH)
        if near.any():
            rows_t = torch.as_tensor(np.flatnonzero(near), device=state.trans.device)
            seeded = key_state.take(torch.as_tensor(nearest[near], device=state.trans.device))
            state.rotations[rows_t], state.trans[rows_t], state.expr[rows_t] = \
                seeded.rotations, seeded.trans, seeded.expr
        return state, bool(near[valid].all())

    def _expression_names(self) -> list[str]:
        names = list(self.engine.data.expression_names)
        e = self.engine.fitter.n_expression_out
        return (names + [f"expression_{i:03d}" for i in range(len(names), e)])[:e]

    def advance(self, final: bool) -> None:
        """Fit every complete batch received; hand out frames that have enough look-ahead."""
        s = self.engine.settings
        fitter = self.engine.fitter
        while self.n_frames - self.fitted >= s.batch or (final and self.fitted < self.n_frames):
            rows = slice(self.fitted, min(self.fitted + s.batch, self.n_frames))
            pix = self.pixels(rows)
            valid = np.asarray(self.valid[rows])
            previous = self.states[-1] if self.states else None
            warm = previous is not None and self.valid[self.fitted - 1]
            state = fitter.initial_state(pix, valid, self.camera, previous if warm else None)
            if not warm:
                state, warm = self._seed(state, rows, valid)
            iterations = s.fit.iterations if warm else s.fit.cold_iterations
            self.states.append(fitter.solve(state, pix, valid, self.camera, iterations, self.expression_prior))
            self.arkit.add(np.asarray(self.landmarks[rows]), valid, self.camera)
            self.fitted = rows.stop
        ready = self.fitted if final else self.fitted - s.lookahead
        if ready > self.emitted:
            self.emit(ready)

    def emit(self, ready: int) -> None:
        """Smooth [emitted - history, fitted) and hand out frames [emitted, ready)."""
        s = self.engine.settings
        fitter = self.engine.fitter
        history = min(self.emitted, s.lookahead)
        a = self.emitted - history
        window = self._states_from(a)
        raw = RawTrack(window.rotations.double().cpu().numpy(), window.trans.double().cpu().numpy(),
                       fitter.expression_matrix(window), self._rest_joints(window))
        if self.reference is None:
            self.reference = raw.rotations[0, 0]
        weights = np.asarray(self.valid[a:self.fitted], np.float64)
        params = to_parameters(raw, weights, self.header["fps"] / self.plan.stride, fitter.names, self.plan.smoothing,
                               self.reference, pinned=history, previous_global=self.last_global,
                               bounded=fitter.settings.bounded)
        rows = slice(history, history + ready - self.emitted)
        chunk = {k: v[rows] for k, v in params.items()}
        chunk["frame_index"] = np.asarray(self.indices[self.emitted:ready], np.int64)
        chunk["time_s"] = self.times(self.emitted, ready)
        chunk["valid"] = np.asarray(self.valid[self.emitted:ready], bool)
        chunk["landmarks"] = np.asarray(self.landmarks[self.emitted:ready], np.float32)
        chunk["arkit"] = self.arkit.take(ready)
        self.chunks.append(chunk)
        self.last_global = chunk["global_pose"][-1]
        self.emitted = ready
        if self.on_chunk:
            self.on_chunk(dict(chunk))

    def _states_from(self, a: int) -> FitState:
        """Fitted states of frames [a, fitted); batches wholly before `a` are dropped (never needed again)."""
        first = self.fitted - sum(len(st.trans) for st in self.states)
        while self.states and first + len(self.states[0].trans) <= a:
            first += len(self.states[0].trans)
            self.states.pop(0)
        return FitState.cat(self.states).take(slice(a - first, None))

    def _rest_joints(self, state: FitState) -> np.ndarray:
        fitter = self.engine.fitter
        joints = fitter.joint_base + torch.einsum("jck,bk->bjc", fitter.joint_exprdirs, state.expr)
        return joints.double().cpu().numpy()

    def finish(self, final: bool) -> None:
        """End of footage (or cancel): fit and hand out everything received."""
        if self.n_frames == 0:
            if final:
                raise FootageError(f"{self.plan.source}: no frame was decoded in the requested range")
            return
        if self.header is None:
            if not any(self.valid) and final:
                raise FootageError(f"{self.plan.source}: no face was found in any of the {self.n_frames} frames. "
                                   "Check that the face is visible and well lit, and the frame range.")
            if not any(self.valid):
                return
            self.start_fit()
        self.advance(final=True)
        self.settle()
        self.report()

    def settle(self) -> None:
        """The ARKit curves of every frame solved again, their measures calibrated on the whole clip rather than its
        opening second (`ArkitStream.settled`): what a streamed capture keeps, as a refit would solve them. A
        refinement: should it fail, the streamed curves stand and a note says so, and the capture is kept."""
        try:
            curves = self.arkit.settled(np.asarray(self.landmarks[:self.fitted]), self.camera)
        except Exception as err:  # noqa: BLE001 - never lose a finished capture to its last refinement
            self.warnings.append(f"the ARKit curves could not be settled over the whole clip ({type(err).__name__}: "
                                 f"{err}); they are calibrated on its opening frames. `kinesics refit` of this "
                                 "capture solves them over the whole clip")
            return
        if curves is not None:
            self.settled = {"arkit": curves.astype(np.float32), **self.engine.arkit_solver.identity()}

    def report(self) -> None:
        if not self.on_progress:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        fps = self.n_frames / elapsed
        remaining = max(self.total - self.n_frames, 0)
        self.on_progress(Progress(self.n_frames, self.total, fps, remaining / fps if fps > 0 else 0.0,
                                  self.faces))

    def capture(self) -> dict:
        if self.header is None:
            return {}
        capture = {**capture_file.assemble(self.header, self.chunks), **self.settled}
        note = self.engine.arkit_solver.note
        return _with_notes(capture, self.warnings + ([note] if note else []))


class _BuiltinRun(_Run):
    """No head model installed: collect the whole track, then build the actor's own rig from it."""

    def add(self, index: int, lms: np.ndarray | None, size: tuple[int, int], seconds: float = float("nan")) -> None:
        self.record(index, lms, size, seconds)
        self.report()

    def finish(self, final: bool) -> None:
        if not any(self.valid):
            if final:
                raise FootageError(f"{self.plan.source}: no face was found in any of the {self.n_frames} frames. "
                                   "Check that the face is visible and well lit, and the frame range.")
            return
        track = LandmarkTrack(np.asarray(self.indices, np.int64), np.asarray(self.landmarks, np.float32),
                              np.asarray(self.valid, bool), self.plan.fps, self.image_size, self.warnings)
        if self.plan.expressiveness != 1.0:
            self.warnings.append("expressiveness applies to fitted head models (FLAME, ICT-FaceKit): the built-in "
                                 "rig's shape keys follow the landmarks as they are measured")
        neutral = self._neutral_row()
        face = self.plan.face
        capture = capture_builtin(track, self.plan.focal_px, self.plan.smoothing, neutral,
                                  known_neutral(face.arkit) if face is not None else None)
        capture["time_s"] = self.times(0, self.n_frames)
        if neutral is not None:
            capture["neutral_frame"] = int(self.indices[neutral])
        if face is not None:
            capture["face_from"] = face.source
        per_frame = set(capture_file.PER_FRAME + capture_file.OPTIONAL_PER_FRAME)
        self.header = {k: v for k, v in capture.items() if k not in per_frame}
        self.header["n_frames"] = self.total
        if self.on_header:
            self.on_header(dict(self.header))
        for a in range(0, self.n_frames, self.engine.settings.batch):
            chunk = {k: np.asarray(v)[a:a + self.engine.settings.batch] for k, v in capture.items() if k in per_frame}
            self.chunks.append(chunk)
            self.emitted += len(chunk["frame_index"])
            if self.on_chunk:
                self.on_chunk(dict(chunk))
        self.report()

    def capture(self) -> dict:
        if self.header is None:
            return {}
        capture = capture_file.assemble(self.header, self.chunks)
        # The calibration's notes (in the header), then the footage's (ended early, variable frame rate).
        notes = [str(w) for w in np.asarray(capture.get("warnings", []), dtype=str).ravel()] + self.warnings
        return _with_notes(capture, notes)


def _with_notes(capture: dict, notes: list[str]) -> dict:
    """The capture with its notes for the user as `warnings`, and one more where the head turned far."""
    turned = turned_far_note(capture)
    notes = notes + ([turned] if turned else [])
    if notes:
        capture["warnings"] = np.array(notes)
    return capture

