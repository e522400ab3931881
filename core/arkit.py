"""ARKit-52 curves for every capture, whatever head model the capture itself used.

With an ARKit expression basis installed (ICT-FaceKit: 53 ARKit-style shapes), a second, bounded fit of that
basis to the same landmarks gives the curves: its identity is solved once from keyframes, then each batch of
frames is fitted warm-started from the last, with every weight held in [0, 1]; ICT's shapes map onto Apple's
52 channels by `core.arkit_names.ict_to_arkit`. Without a basis, the landmark-only geometric solver
(`core.arkit_geometric`) stands in, calibrated on the same opening frames, and `note` says how to get a basis.

Curves stream like the rest of a capture (`ArkitStream`): raw per-batch solves are smoothed by a light
zero-lag Whittaker prior over a window that looks a few frames ahead, pinned to the frames already handed out,
so consecutive chunks join without a seam and blinks (3-4 frames) survive. When the last frame is in, the curves
settle (`ArkitStream.settled`): the landmark measures are solved again, calibrated on every frame rather than the
opening ones, and those are the curves a capture keeps.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import arkit_geometric as geometric
from .arkit_names import ARKIT_NAMES, ict_to_arkit, ict_to_arkit_name
from .embedding import landmark_embedding
from .errors import ModelFileError
from .far_side import curves_from_near_side, own_side_weights
from .fit import Camera, Fitter, FitSettings, FitState, identity_keyframes, landmark_weights
from .head_model import HeadModel
from .ict_install import NPZ_NAME, install_dir
from .model_data import HeadModelData, load_model_data
from .smoothing import cutoff_weight, whittaker
from .trajectory import SmoothingSettings

BATCH = 32  # frames per solve in `arkit_for_capture`, as in the engine
MODEL_FORWARD = np.array([0.0, 0.0, 1.0])  # the way ICT-FaceKit's face looks in its own frame (+x: the subject's left)
LOOKAHEAD = 8  # frames of future context before a smoothed frame is final
REST_HISTORY = 4096  # frames the streamed geometric solver keeps to learn the rest gaze and brows from
# Expression priors of the basis fit (see `FitSettings.expression_prior`). While the identity is solved the
# prior is strong, so that the face's own shape is not explained by steady expressions (a squint, lowered
# lips); per frame it is weaker, so that real expressions keep their size while landmark noise does not
# switch on opposing pairs (eyeLookUp with eyeLookDown). Chosen over all three synthetic renders together.
IDENTITY_EXPRESSION_PRIOR = 1.0
EXPRESSION_PRIOR = 0.03
# Channels with a direct landmark measure (lid aperture, mouth-corner travel, jaw opening, brow heights) average
# the basis fit with the calibrated geometric measure: the fit spreads such a motion over correlated shapes (a
# blink over eyeLookUp, squints and brows; a brow raise over eyeWide), the measure does not but is misled where
# MediaPipe misreads a feature; their errors differ. Over the synthetic renders the mean's worst correlation on
# blinks, smiles and jaw is 0.78, the fit's alone 0.44 and the measure's 0.70. Those renders have no eyebrows; on
# renders with painted ones (benchmarks/bench_painted.py, three random sequences) the fit alone reads browOuterUp
# 0.46-0.77 and browDown -0.05-0.33, the mean 0.72-0.90 and 0.13-0.60. With painted lips the fit reads mouthPucker
# 0.33-0.51 and mouthFunnel 0.40-0.80, the mean 0.47-0.92 and 0.72-0.98, and a jaw opened 0.6 with the lips kept
# closed as mouthClose 0.06 (the measure 0.3: MediaPipe reads the chin's drop short).
BLENDED = ("eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "jawOpen", "browOuterUpLeft",
           "browOuterUpRight", "browDownLeft", "browDownRight", "mouthPucker", "mouthFunnel", "mouthClose")
# Channels that are the geometric measure's alone. ICT-FaceKit's eyeLook shapes move the lids only (its rig turns the
# eyeballs apart from the shapes), so the basis fit cannot see where the eyes look; ARKit's eyeLook channels are the
# eyes' rotation, which the irises show. On renders whose eyes turn (benchmarks/bench_painted.py) the fit's eyeLook
# curves correlated -0.52 to 0.67 with the truth, the measure's 0.13-0.97. MediaPipe's inner brow points rise with
# an outer raise, which the fit takes for browInnerUp; the measure takes that share out (see
# `core.arkit_geometric.INNER_WITH_OUTER`): on those renders browInnerUp reads 0.34-0.57 fitted, 0.55-0.70 averaged
# and 0.73-0.85 measured (on the synthetic renders, which have no eyebrows to read, the ARKit MAE moves by 0.001).
# The fit reads lips rolled in and a chin pushed up barely (mouthRollUpper/Lower 0.08-0.09 at full weight on painted
# heads, correlation 0.17-0.85; mouthShrugLower 0.04): the measures of the lips' red and the chin's rise read them
# (correlation 0.82-0.98 and 0.53-0.61 through `bench_painted.py --lips`).
MEASURED = tuple(f"eyeLook{d}{s}" for s in ("Left", "Right") for d in ("Down", "In", "Out", "Up")) + (
    "browInnerUp", "mouthRollUpper", "mouthRollLower", "mouthShrugLower")
INSTALL_HINT = ("install ICT-FaceKit with `kinesics install-ict SOURCE` (SOURCE: its zip from "
                "https://github.com/ICT-VGL/ICT-FaceKit or the unpacked folder) for curves fitted with its 53 "
                "ARKit expression shapes")


def known_neutral(earlier: dict) -> np.ndarray | None:
    """The actor's rest face (478,3) an earlier capture's geometric calibration found (`arkit_neutral`), if any."""
    neutral = np.asarray(earlier.get("arkit_neutral", ()), np.float64)
    return neutral if neutral.shape == (478, 3) and np.isfinite(neutral).all() else None


def default_basis_path() -> Path:
    """Where `kinesics install-ict` puts ICT-FaceKit."""
    return install_dir() / NPZ_NAME


def _pixels(landmarks: np.ndarray, image_size) -> np.ndarray:
    """Normalised landmarks (...,478,>=2) -> pixel positions (...,478,2)."""
    return np.asarray(landmarks, np.float64)[..., :2] * np.asarray(image_size, np.float64)[:2]


class ArkitSolver:
    """Per-frame ARKit curves from landmarks. `load` picks the implementation; then `prepare` once on the
    opening frames of a clip and `solve` batch after batch, in order.

    kind: "ict" (a fitted basis) or "geometric" (landmarks only); note: a sentence for the user, "" when
    nothing needs saying.
    """

    kind = ""
    names: tuple[str, ...] = ARKIT_NAMES

    def __init__(self) -> None:
        self.note = ""
        self.image_size: np.ndarray | None = None

    @staticmethod
    def load(basis_path: str | os.PathLike | None = None, device: str = "cpu") -> "ArkitSolver":
        """The ICT-FaceKit basis at `basis_path` (an npz or ICT-FaceKit folder; None: the installed one), or the
        geometric solver when None is given and none is installed. A named path that is missing or is not an
        ARKit basis raises ModelFileError."""
        if basis_path is None:
            path = default_basis_path()
            if not path.is_file():
                return GeometricSolver(f"no ARKit basis is installed ({path} is absent)")
        else:
            path = Path(os.path.expanduser(str(basis_path)))
        return BasisSolver(load_model_data(path), device)

    def prepare(self, landmarks: np.ndarray, valid: np.ndarray, image_size, camera: Camera,
                neutral: int | None = None, earlier: dict | None = None) -> None:
        """Fix what is constant over the clip from its opening frames: landmarks (K,478,3) normalised as
        MediaPipe gives them, valid (K,) bool, image_size (W,H), the capture's camera; neutral: the row of a frame
        known to show the face at rest, if any; earlier: an earlier capture of the actor, whose face (`identity`'s
        keys, those this solver `accepts`) is kept rather than found again."""
        raise NotImplementedError

    def identity(self) -> dict:
        """The actor's face as this clip's `prepare` found it, as capture-file keys (`arkit_neutral`, the
        geometric measures' rest face; with a basis also `arkit_shape`, `arkit_basis_hash` and `arkit_rest`)."""
        raise NotImplementedError

    def accepts(self, earlier: dict) -> bool:
        """Whether an earlier capture holds all of the face `prepare` would keep from it (not when it was made
        with another basis, or before captures held it)."""
        raise NotImplementedError

    def solve(self, landmarks: np.ndarray, valid: np.ndarray, camera: Camera) -> np.ndarray:
        """Raw curves (B,52) in [0,1], Apple's order, for the next B frames (landmarks (B,478,3) normalised,
        valid (B,) bool); frames without a face get 0."""
        raise NotImplementedError

    def settle(self, landmarks: np.ndarray, camera: Camera) -> np.ndarray | None:
        """Raw curves (T,52) of every frame solved so far (landmarks (T,478,3) normalised, as `solve` had them),
        solved again with the landmark measures calibrated on all of them rather than on the opening frames (which
        may hold an expression, or turn less than the clip does); `note` and `identity` follow. None where the
        opening frames were all of them: the curves stand."""
        raise NotImplementedError

    def _require_prepared(self) -> None:
        if self.image_size is None:
            raise RuntimeError("ArkitSolver.prepare must run on the clip's opening frames before solve")


class BasisSolver(ArkitSolver):
    """A bounded fit of ICT-FaceKit (identity, rigid head pose, 53 expression weights) to the landmarks, with
    the BLENDED channels averaged with their geometric measure and the MEASURED ones taken from it, unless `blend`
    is False; the other channels less what the fit reads on the actor's rest face (`_rest`)."""

    kind = "ict"

    def __init__(self, data: HeadModelData, device: str = "cpu", settings: FitSettings | None = None,
                 blend: bool = True):
        super().__init__()
        mapped = [ict_to_arkit_name(n) for n in data.expression_names]
        if data.kind != "ict" or sum(m is not None for m in mapped) < 40:
            raise ModelFileError(f"{data.source}: is not an ARKit expression basis (expected ICT-FaceKit's 53 "
                                 "ARKit-style shapes); " + INSTALL_HINT)

        self.expression_names = data.expression_names
        self.basis_hash = data.content_hash
        self.settings = settings or FitSettings(n_shape=data.n_shape, n_expression=data.n_expression,
                                                   expression_prior=EXPRESSION_PRIOR,
                                                   identity_expression_prior=IDENTITY_EXPRESSION_PRIOR, bounded=True)
        emb = landmark_embedding(data)
        self.fitter = Fitter(HeadModel(data, device=device), emb.triangles, emb.barycentric, emb.valid,
                             landmark_weights(emb.spread), self.settings)
        self.previous: FitState | None = None
        self.direct = GeometricSolver("it measures the blended channels") if blend else None
        self.blended = [ARKIT_NAMES.index(n) for n in BLENDED]
        self.measured = [ARKIT_NAMES.index(n) for n in MEASURED]
        self.fit_only = [i for i in range(len(ARKIT_NAMES)) if i not in self.blended + self.measured]
        self.rest = np.zeros(len(ARKIT_NAMES))  # the fit's curves on the actor's rest face (see `_rest`)
        self.seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # per batch solved: `_combine`'s inputs

    def _take_note(self) -> None:
        warnings = self.direct.calibration.warnings
        lead = "ARKit gaze, blinks, smiles, jaw, brows and lip shapes (measured against the neutral):"
        self.note = " ".join([lead] + warnings) if warnings else ""

    def prepare(self, landmarks, valid, image_size, camera, neutral=None, earlier=None) -> None:
        if self.direct is not None:
            self.direct.prepare(landmarks, valid, image_size, camera, neutral, earlier)
            self._take_note()
        self.image_size = np.asarray(image_size, np.float64)
        pix = _pixels(landmarks, image_size)
        keys, at_rest = identity_keyframes(pix, np.asarray(valid, bool), self.settings.identity_keyframes,
                                           geometric.neutral_rows(valid, neutral))
        # Each clip starts from the mean face, or the actor's as an earlier capture found it.
        known = self._known_shape(earlier or {})
        self.fitter.prepare_face(known)
        if len(keys):
            state = self.fitter.initial_state(pix[keys], np.ones(len(keys), bool), camera)
            self.fitter.solve_identity(state, pix[keys], camera, neutral=at_rest, hold_shape=known is not None)
        self.previous, self.seen = None, []
        earlier_rest = np.asarray((earlier or {}).get("arkit_rest", ()), np.float64)
        if known is not None and earlier_rest.shape == self.rest.shape and np.isfinite(earlier_rest).all():
            self.rest = earlier_rest
        else:
            self.rest = self._rest(pix, camera)

    def _rest(self, pix: np.ndarray, camera: Camera) -> np.ndarray:
        """The fit's curves (52,) on the frames the geometric calibration took for the actor's rest face (median),
        where a channel has no measure of its own: what the basis's identity space cannot shape of the actor's
        face (eyes set wider open, lips pressed) reads there as a steady expression, and is taken off every frame
        as the measures take off their own rest. Zeros without the measures, or where the calibration's rest face
        is an earlier capture's (that capture's `arkit_rest` stands when it was fitted with this basis)."""
        rows = self.direct.calibration.neutral_frames if self.direct is not None else ()
        if not len(rows):
            return np.zeros(len(ARKIT_NAMES))
        every = np.ones(len(rows), bool)
        state = self.fitter.initial_state(pix[rows], every, camera)
        state = self.fitter.solve(state, pix[rows], every, camera, self.settings.cold_iterations)
        curves = self._fitted_curves(state)
        rest = np.zeros(len(ARKIT_NAMES))
        rest[self.fit_only] = np.median(curves[:, self.fit_only], axis=0)
        return rest

    def _own_side_weights(self, state: FitState) -> np.ndarray:
        """`core.far_side.own_side_weights` (B,2) of the fitted heads."""
        with torch.no_grad():
            face = self.fitter.camera_points(state).mean(1)  # (B,3) camera space
            to_camera = (-face[:, None] @ state.rotations[:, 0])[:, 0]  # in the model's frame
        return own_side_weights(to_camera.double().cpu().numpy(), MODEL_FORWARD)

    def _fitted_curves(self, state: FitState) -> np.ndarray:
        """The fit's expression weights as ARKit curves (B,52), unclipped."""
        return ict_to_arkit(self.fitter.expression_matrix(state), self.expression_names[:self.fitter.n_expression_out])

    def _known_shape(self, earlier: dict) -> np.ndarray | None:
        """The basis's face (S,) an earlier capture holds, if it was fitted with this very basis."""
        shape = np.asarray(earlier.get("arkit_shape", ()), np.float64).reshape(-1)
        same = bool(self.basis_hash) and str(earlier.get("arkit_basis_hash", "")) == self.basis_hash
        return shape if same and len(shape) == self.fitter.n_shape_out and np.isfinite(shape).all() else None

    def identity(self) -> dict:
        measured = self.direct.identity() if self.direct is not None else {}
        return {"arkit_shape": self.fitter.shape_vector(), "arkit_basis_hash": self.basis_hash,
                "arkit_rest": self.rest.astype(np.float32), **measured}

    def accepts(self, earlier: dict) -> bool:
        return self._known_shape(earlier) is not None and (self.direct is None or self.direct.accepts(earlier))

    def solve(self, landmarks, valid, camera) -> np.ndarray:
        self._require_prepared()
        valid = np.asarray(valid, bool)
        pix = _pixels(landmarks, self.image_size)
        state = self.fitter.initial_state(pix, valid, camera, self.previous)
        warm = self.previous is not None  # as in the engine: a cold (PnP) start needs more iterations
        state = self.fitter.solve(state, pix, valid, camera,
                                  self.settings.iterations if warm else self.settings.cold_iterations)
        self.previous = state if valid[-1] else None
        fitted, sides = self._fitted_curves(state), self._own_side_weights(state)
        self.seen.append((fitted, sides, valid))
        return self._combine(fitted, sides, self.direct.solve(landmarks, valid, camera) if self.direct else None,
                             valid)

    def settle(self, landmarks, camera) -> np.ndarray | None:
        """The measures settle (`GeometricSolver.settle`); the fit stands, with its face and its rest (`_rest`) from the
        opening frames: fitting every frame again with those from the whole clip would double its cost for no more
        (see README)."""
        self._require_prepared()
        direct = self.direct.settle(landmarks, camera) if self.direct is not None else None
        if direct is None:
            return None
        fitted, sides, valid = (np.concatenate(part) for part in zip(*self.seen))
        self._take_note()
        return self._combine(fitted, sides, direct, valid)

    def _combine(self, fitted: np.ndarray, sides: np.ndarray, direct: np.ndarray | None,
                 valid: np.ndarray) -> np.ndarray:
        """Curves (B,52) in [0,1] from the fit's (B,52, `_fitted_curves`), its heads' own-side weights (B,2) and the
        measures' curves (B,52; None without them)."""
        out = curves_from_near_side(fitted - self.rest, sides)
        if direct is not None:
            out[:, self.blended] = (out[:, self.blended] + direct[:, self.blended]) / 2
            out[:, self.measured] = direct[:, self.measured]
        out[~valid] = 0.0
        return np.clip(out, 0.0, 1.0)


class GeometricSolver(ArkitSolver):
    """`core.arkit_geometric` per batch: the face-fixed frame, the landmarks' drift with the head's rotation and the
    neutral come from the opening frames, the rest gaze and brows from every frame so far (see
    `geometric.calibrate`); `settle` takes the drift and the neutral from every frame too."""

    kind = "geometric"

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason
        self.note = self._note([])
        self.reference: np.ndarray | None = None
        self.calibration: geometric.Calibration | None = None
        self.coupling: geometric.PoseCoupling | None = None
        self.rest_seen: np.ndarray | None = None  # (K,2,G,3) of frames so far (`geometric.rest_offsets`)
        self.opening = self.position = 0  # frames `prepare` saw; frames solved
        # Per batch solved, its alignments in pixels and in camera space (`FaceFrames.pose_only`), for `settle`.
        self.seen: list[tuple[geometric.FaceFrames, geometric.FaceFrames]] = []
        self.neutral_row: int | None = None
        self.known: np.ndarray | None = None

    def _note(self, warnings: list[str]) -> str:
        covered = len(geometric.covered_channels())
        return " ".join([f"ARKit curves come from the landmark-only geometric solver ({covered} of 52 channels, "
                         f"the others stay 0) because {self.reason}; {INSTALL_HINT}."] + warnings)

    def prepare(self, landmarks, valid, image_size, camera, neutral=None, earlier=None) -> None:
        self.image_size = np.asarray(image_size, np.float64)
        self.neutral_row, self.known = neutral, known_neutral(earlier or {})
        frames = geometric.face_frames(landmarks, valid, image_size, camera.focal)
        self.reference = np.median(frames.points[frames.valid], axis=0)
        self.coupling = geometric.pose_coupling(frames)
        frames = geometric.decouple(frames, self.coupling)
        self.calibration = geometric.calibrate(frames, neutral, self.known)
        self.note = self._note(self.calibration.warnings)
        # The rest gaze and brows go on learning from the frames after these (see `geometric.calibrate`).
        self.rest_seen = geometric.rest_offsets(frames.points[frames.valid])
        self.opening, self.position, self.seen = len(valid), 0, []

    def identity(self) -> dict:
        return {"arkit_neutral": self.calibration.neutral.astype(np.float32)}

    def accepts(self, earlier: dict) -> bool:
        return known_neutral(earlier) is not None

    def _align(self, points: np.ndarray, valid: np.ndarray) -> geometric.FaceFrames:
        """Align each valid frame of points (B,478,3) to the opening frames' face (fixed, unlike
        `geometric.align_frames`, so that every batch shares one face-fixed frame)."""
        return geometric.aligned_to(self.reference, points, valid)

    def solve(self, landmarks, valid, camera) -> np.ndarray:
        self._require_prepared()
        valid = np.asarray(valid, bool)
        fresh = self.position + np.arange(len(valid)) >= self.opening  # frames `prepare` has not seen
        self.position += len(valid)
        first = self._align(geometric.pixel_points(landmarks, self.image_size), valid)
        aligned = self._align(geometric.camera_points(landmarks, first, self.image_size, camera.focal), valid)
        self.seen.append((first.pose_only(), aligned.pose_only()))
        if not valid.any():
            return np.zeros((len(valid), len(ARKIT_NAMES)))
        frames = geometric.decouple(aligned, self.coupling)
        if self.calibration.learnt and (valid & fresh).any():
            # The rest gaze and brows over the frames so far: the opening frames may hold a glance or a raised brow
            # (`geometric.at_rest`). Past REST_HISTORY frames every other one is dropped, which bounds the cost.
            seen = np.concatenate([self.rest_seen, geometric.rest_offsets(frames.points[valid & fresh])])
            self.rest_seen = seen[::2] if len(seen) > REST_HISTORY else seen
            self.calibration.neutral = geometric.at_rest(self.calibration.neutral, self.rest_seen,
                                                         self.calibration.learnt)
        curves, _ = geometric.solve(landmarks, valid, self.image_size, frames, self.calibration)
        return curves

    def settle(self, landmarks, camera) -> np.ndarray | None:
        self._require_prepared()
        if self.position <= self.opening:
            return None
        # Each frame as it was aligned in `solve` (the alignments are most of its cost; the points are not kept).
        first, pose = (geometric.FaceFrames.cat(list(part)) for part in zip(*self.seen))
        lifted = geometric.camera_points(landmarks, first, self.image_size, camera.focal)
        frames = geometric.realigned(lifted, pose)
        self.coupling = geometric.pose_coupling(frames)
        frames = geometric.decouple(frames, self.coupling)
        self.calibration = geometric.calibrate(frames, self.neutral_row, self.known)
        self.note = self._note(self.calibration.warnings)
        return geometric.solve(None, frames.valid, self.image_size, frames, self.calibration)[0]


class ArkitStream:
    """Curves of one capture as it streams: `add` each fitted batch in order, `take` frames as they become
    final (at most `LOOKAHEAD` frames before the last added, except at the end)."""

    def __init__(self, solver: ArkitSolver, fps: float, cutoff_hz: float = SmoothingSettings.arkit_hz):
        self.solver = solver
        self.lam = cutoff_weight(cutoff_hz, fps)
        self.raw: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.emitted: list[np.ndarray] = []
        self.n_emitted = 0

    def add(self, landmarks: np.ndarray, valid: np.ndarray, camera: Camera) -> None:
        """Solve the next batch: landmarks (B,478,3) normalised, valid (B,)."""
        self.raw.append(self.solver.solve(landmarks, valid, camera))
        self.valid.append(np.asarray(valid, bool))

    def settled(self, landmarks: np.ndarray, camera: Camera) -> np.ndarray | None:
        """Smoothed curves (T,52) of every frame added (landmarks (T,478,3): theirs), as `ArkitSolver.settle` solves
        them again; None where the solver's opening frames were all of them (the streamed curves stand)."""
        raw = self.solver.settle(landmarks, camera)
        if raw is None:
            return None
        return np.clip(whittaker(raw, np.concatenate(self.valid).astype(np.float64), self.lam), 0.0, 1.0)

    def take(self, ready: int) -> np.ndarray:
        """Smoothed curves (ready - already taken, 52) of frames [already taken, ready)."""
        raw = np.concatenate(self.raw)
        weights = np.concatenate(self.valid).astype(np.float64)
        history = min(self.n_emitted, LOOKAHEAD)
        a = self.n_emitted - history
        values, weights = raw[a:].copy(), weights[a:].copy()
        if history:  # frames already handed out stay as they were
            values[:history] = np.concatenate(self.emitted)[-history:]
            weights[:history] = 1e6
        out = np.clip(whittaker(values, weights, self.lam), 0.0, 1.0)[history:history + ready - self.n_emitted]
        self.emitted.append(out)
        self.n_emitted = ready
        return out


def arkit_for_capture(capture: dict, basis_path: str | os.PathLike | None = None,
                      solver: ArkitSolver | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """ARKit curves of a finished capture from its landmarks and camera: (names (52,), curves (T,52), note).

    The whole clip serves as the opening frames. `solver` reuses an already loaded solver instead of
    `ArkitSolver.load(basis_path)`.
    """
    solver = solver or ArkitSolver.load(basis_path)
    landmarks = np.asarray(capture["landmarks"], np.float64)
    valid = np.asarray(capture["valid"], bool)
    camera = Camera(float(capture["focal_px"]), float(capture["cx"]), float(capture["cy"]))
    solver.prepare(landmarks, valid, capture["image_size"], camera)
    index = np.asarray(capture["frame_index"])
    stride = float(np.median(np.diff(index))) if len(index) > 1 else 1.0
    stream = ArkitStream(solver, float(capture["fps"]) / max(stride, 1.0))
    for a in range(0, len(valid), BATCH):
        stream.add(landmarks[a:a + BATCH], valid[a:a + BATCH], camera)
    curves = stream.take(len(valid)) if len(valid) else np.zeros((0, len(ARKIT_NAMES)))
    return np.array(ARKIT_NAMES), curves, solver.note
