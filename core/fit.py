"""Batched Levenberg-Marquardt fit of a head model to 2D landmarks.

Only the embedded landmark points are evaluated inside the loop. Every Jacobian is analytic and cheap:
expression and shape enter linearly given the pose (skinning rotation times the basis), and each joint's
rotation is updated by a small increment in its own frame, whose effect is a cross product with the
points it carries. Frames are independent given the identity, so they are solved in batches; identity
(`shape`), shared by the clip, is solved jointly with a few keyframes' parameters (and, unless the lens is
known, a refinement of the focal length).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .errors import SettingError
from .head_model import HeadModel
from .lbs import batch_rodrigues, matrix_to_axis_angle, pose_feature, rigid_transforms

IRIS = np.arange(468, 478)
FIT_JOINTS = ("global", "jaw", "left_eye", "right_eye")  # the neck is split off the head pose afterwards


def landmark_weights(spread: np.ndarray) -> np.ndarray:
    """Trust a landmark less the more its surface position varies with the view (silhouettes, nose sides)."""
    return 1.0 / (1.0 + (np.asarray(spread) / 0.003) ** 2)


def spread_keyframes(pix: np.ndarray, valid: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` valid frames that differ most in landmark configuration (farthest points)."""
    idx = np.flatnonzero(valid)
    if len(idx) <= count:
        return idx
    shapes = pix[idx] - pix[idx].mean(1, keepdims=True)
    shapes /= np.linalg.norm(shapes, axis=(1, 2), keepdims=True)
    flat = shapes.reshape(len(idx), -1)
    chosen = [int(np.argmin(np.linalg.norm(flat - flat.mean(0), axis=1)))]  # the most typical frame first
    dist = np.linalg.norm(flat - flat[chosen[0]], axis=1)
    while len(chosen) < count:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(flat - flat[nxt], axis=1))
    return idx[np.sort(chosen)]


def identity_keyframes(pix: np.ndarray, valid: np.ndarray, count: int, resting: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Keyframes of an identity solve: up to `count` spread ones (`spread_keyframes`) and the rows `resting`, known
    to show the face at rest. Returns their indices (K,) and which of them are at rest (K,) bool."""
    keys = np.union1d(spread_keyframes(pix, valid, count), resting)
    return keys, np.isin(keys, resting)


def fitted_landmarks(valid: np.ndarray, stride: int = 2) -> np.ndarray:
    """Which embedded landmarks the fit uses (478,) bool: every point of the expressive contours (lips,
    eyes, brows, irises, face oval) and every `stride`-th of the dense rest, which is redundant for pose
    and identity; halving it halves the fit's cost beside MediaPipe."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    keep = np.arange(len(valid)) % stride == 0
    for edges in (fmc.FACEMESH_LIPS, fmc.FACEMESH_LEFT_EYE, fmc.FACEMESH_RIGHT_EYE, fmc.FACEMESH_LEFT_EYEBROW,
                  fmc.FACEMESH_RIGHT_EYEBROW, fmc.FACEMESH_FACE_OVAL):
        keep[[i for edge in edges for i in edge]] = True
    keep[IRIS] = True
    return np.asarray(valid, bool) & keep


@dataclass
class FitSettings:
    n_shape: int = 100
    n_expression: int = 50
    iterations: int = 2              # per batch, warm-started from the previous frame
    cold_iterations: int = 6         # after a fresh PnP start (first batch, or after frames without a face)
    identity_rounds: int = 6
    identity_keyframes: int = 16
    shape_prior: float = 0.02        # relative to the landmark motion one unit of a component causes
    expression_prior: float = 0.5
    identity_expression_prior: float = 5.0   # while solving identity: the static face is shape, not expression
    neutral_expression_prior: float = 50.0   # on a keyframe known to show the face at rest (a neutral frame)
    focal_prior: float = 0.1         # px^2 per landmark and keyframe (at the reference scale), per unit log focal
    jaw_prior: tuple[float, float, float] = (1.0, 3e4, 3e4)   # px^2 per rad^2: the jaw mostly opens
    eye_prior: tuple[float, float, float] = (20.0, 20.0, 4000.0)  # roll is unobservable
    vergence_prior: float = 200.0    # both eyes look the same way unless the landmarks say otherwise
    robust_px: float = 2.0           # Cauchy scale: sliding landmarks (rolling lips, silhouettes) lose pull
    # The pixel-valued settings (robust scale, joint priors) hold for a face imaged at this many pixels per metre
    # and scale with it: MediaPipe's errors are in units of its face crop, so they grow with the face's size in
    # the image, and a close-up or a 4K frame must not read as noisier (less expressive) than a small face.
    reference_px_per_m: float = 1000.0
    damping: float = 1e-3
    bounded: bool = False            # blendshape weights in [0, 1] (named blendshapes), else unbounded (FLAME)


@dataclass
class FitState:
    """Per-frame parameters of B frames: rotations (B,J,3,3) of the model's joints (local, FLAME order),
    translation (B,3) and expression (B,Ea) over the active expression columns."""

    rotations: torch.Tensor
    trans: torch.Tensor
    expr: torch.Tensor

    def take(self, rows) -> "FitState":
        return FitState(self.rotations[rows].clone(), self.trans[rows].clone(), self.expr[rows].clone())

    @staticmethod
    def cat(parts: list["FitState"]) -> "FitState":
        return FitState(*(torch.cat([getattr(p, k) for p in parts]) for k in ("rotations", "trans", "expr")))

    def axis_angles(self) -> torch.Tensor:
        """(B,J,3) axis-angle per joint."""
        b, j = self.rotations.shape[:2]
        return matrix_to_axis_angle(self.rotations.reshape(-1, 3, 3)).reshape(b, j, 3)


@dataclass
class Camera:
    """Pinhole camera, OpenCV convention (x right, y down, z forward), in pixels."""

    focal: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        return np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1]])

    def project(self, pts: torch.Tensor) -> torch.Tensor:
        z = pts[..., 2].clamp(min=1e-4)
        return torch.stack([self.focal * pts[..., 0] / z + self.cx, self.focal * pts[..., 1] / z + self.cy], -1)


SENSOR_MM = 36.0  # a lens in millimetres is read as Blender's camera reads it: this sensor across the longer side


def focal_from_lens(lens_mm: float, image_size: tuple[int, int]) -> float:
    """Focal length in pixels of a `lens_mm` lens (35 mm-equivalent, as phones and Blender's camera give it)."""
    if not lens_mm > 0:
        raise SettingError(f"a lens of {lens_mm} mm is not possible: give the focal length in millimetres, above 0")
    return float(lens_mm) / SENSOR_MM * max(image_size)


@dataclass
class Fitter:
    """Fits one head model to landmark tracks. Build once per model; `prepare(shape)` bakes an identity."""

    model: HeadModel
    triangles: np.ndarray         # (478,3) embedding
    barycentric: np.ndarray       # (478,3)
    usable: np.ndarray            # (478,) bool: reliably embedded landmarks
    landmark_weights: np.ndarray  # (478,) relative confidence
    settings: FitSettings = field(default_factory=FitSettings)
    dtype: torch.dtype = torch.float32
    chunk: int = 32               # frames per batched solve: bounds the size of temporaries

    def __post_init__(self) -> None:
        self.device = self.model.device
        self.ids = np.flatnonzero(self.usable)
        sub = self.model.subset(self.triangles[self.ids], self.barycentric[self.ids])
        s = min(self.settings.n_shape, self.model.n_shape)
        e = min(self.settings.n_expression, self.model.n_expression)
        dirs = sub.dirs.to(self.dtype)
        # Columns that move no landmark (e.g. unused FLAME columns) are left out of the solve.
        self.shape_cols = torch.nonzero(dirs[:, :, :s].abs().amax((0, 1)) > 0).flatten()
        expr_all = dirs[:, :, self.model.n_shape:self.model.n_shape + e]
        self.expr_cols = torch.nonzero(expr_all.abs().amax((0, 1)) > 0).flatten()
        self.n_shape_out, self.n_expression_out = s, e
        self.template_l = sub.template.to(self.dtype)
        self.shapedirs_l = dirs[:, :, :s][:, :, self.shape_cols].contiguous()
        self.exprdirs_l = expr_all[:, :, self.expr_cols].contiguous()
        self.posedirs_l = sub.posedirs.to(self.dtype)
        self.weights_l = sub.weights.to(self.dtype)
        jdirs = self.model.joint_dirs.to(self.dtype)
        self.joint_template = self.model.joint_template.to(self.dtype)
        self.joint_shapedirs = jdirs[:, :, :s][:, :, self.shape_cols]
        self.joint_exprdirs = jdirs[:, :, self.model.n_shape:self.model.n_shape + e][:, :, self.expr_cols]
        self.parents = self.model.parents
        self.names = self.model.joint_names
        self.fit_joints = [self.names.index(n) for n in FIT_JOINTS if n in self.names]
        # Points each joint carries: the joint and its descendants.
        self.carried = []
        for k in self.fit_joints:
            below = {k}
            for j in range(len(self.names)):
                chain, p = [], j
                while p >= 0:
                    chain.append(p)
                    p = int(self.parents[p]) if p > 0 else -1
                if k in chain:
                    below.add(j)
            self.carried.append(sorted(below))
        # (L,) per fitted joint: the share of each point's skinning that moves with it
        self.carried_share = [self.weights_l[:, below].sum(1) for below in self.carried]
        self.w = torch.as_tensor(self.landmark_weights[self.ids], dtype=self.dtype, device=self.device)
        # Priors are scaled by how far (RMS over landmarks, metres) one unit of each column moves the face.
        self.shape_scale = self.shapedirs_l.pow(2).sum(1).mean(0).sqrt()
        self.expr_scale = self.exprdirs_l.pow(2).sum(1).mean(0).sqrt()
        self.prepare(torch.zeros(len(self.shape_cols), dtype=self.dtype, device=self.device))

    # ---- identity ----------------------------------------------------------------------------------------
    def prepare(self, shape_active: torch.Tensor) -> None:
        """Bake an identity (over the active shape columns) into the landmark model."""
        self.shape_active = shape_active.to(self.dtype)
        self.base = self.template_l + self.shapedirs_l @ self.shape_active
        self.joint_base = self.joint_template + self.joint_shapedirs @ self.shape_active

    def prepare_face(self, shape: np.ndarray | None) -> None:
        """Bake a full shape vector (S,), as `shape_vector` gives it, or the mean face (None)."""
        active = np.zeros(len(self.shape_cols)) if shape is None else np.asarray(shape)[self.shape_cols.cpu().numpy()]
        self.prepare(torch.as_tensor(active, dtype=self.dtype, device=self.device))

    def shape_vector(self) -> np.ndarray:
        """Full shape vector (S,) with zeros for unused columns."""
        out = np.zeros(self.n_shape_out)
        out[self.shape_cols.cpu().numpy()] = self.shape_active.double().cpu().numpy()
        return out

    def expression_matrix(self, state: FitState) -> np.ndarray:
        """Full expression coefficients (B,E) with zeros for unused columns."""
        out = np.zeros((state.expr.shape[0], self.n_expression_out))
        out[:, self.expr_cols.cpu().numpy()] = state.expr.double().cpu().numpy()
        return out

    # ---- forward on the landmarks ----------------------------------------------------------------------
    def _forward(self, state: FitState):
        """Camera-space points (B,L,3) and what their Jacobian needs: each point's blended skinning rotation
        (B,L,3,3), and per fitted joint its world rotation (B,3,3) and the points relative to it, scaled by the
        share of their skinning it carries (B,L,3)."""
        shaped = self.base + torch.einsum("lck,bk->blc", self.exprdirs_l, state.expr)
        joints = self.joint_base + torch.einsum("jck,bk->bjc", self.joint_exprdirs, state.expr)
        if self.posedirs_l.shape[2]:
            shaped = shaped + torch.einsum("lcp,bp->blc", self.posedirs_l, pose_feature(state.rotations))
        posed_joints, transforms = rigid_transforms(state.rotations, joints, self.parents)
        rigid = transforms[:, :, :3, :]  # (B,J,3,4)
        # Blend the transforms, then apply them (as smplx does): one transform per point, not one per joint.
        blend = torch.einsum("lj,bjrc->blrc", self.weights_l, rigid)
        column = shaped[..., None]
        pts = (blend[..., :3] @ column)[..., 0] + blend[..., 3]
        carried = []
        for k, below, share in zip(self.fit_joints, self.carried, self.carried_share):
            if len(below) == rigid.shape[1]:  # the root carries every point whole
                moved = pts
            else:
                part = torch.einsum("lj,bjrc->blrc", self.weights_l[:, below], rigid[:, below])
                moved = (part[..., :3] @ column)[..., 0] + part[..., 3]
            carried.append(moved - share[:, None] * posed_joints[:, k, None])
        return pts + state.trans[:, None], blend[..., :3], rigid[:, self.fit_joints, :, :3], carried

    def camera_points(self, state: FitState) -> torch.Tensor:
        """Camera-space positions (B,L,3) of the fitted landmark points."""
        return self._forward(state)[0]

    def project_points(self, state: FitState, camera: Camera) -> torch.Tensor:
        return camera.project(self.camera_points(state))

    # ---- initial pose --------------------------------------------------------------------------------
    def initial_state(self, pix: np.ndarray, valid: np.ndarray, camera: Camera,
                      previous: FitState | None = None) -> FitState:
        """Rigid pose per frame from PnP on the neutral landmark points (or the previous frame's state)."""
        b = len(pix)
        n_joints = len(self.names)
        eye = torch.eye(3, dtype=self.dtype, device=self.device)
        rotations = eye.repeat(b, n_joints, 1, 1)
        trans = torch.zeros(b, 3, dtype=self.dtype, device=self.device)
        expr = torch.zeros(b, len(self.expr_cols), dtype=self.dtype, device=self.device)
        if previous is not None:
            last = previous.take(slice(-1, None))
            return FitState(last.rotations.repeat(b, 1, 1, 1), last.trans.repeat(b, 1), last.expr.repeat(b, 1))
        rest = self.base.double().cpu().numpy()
        face = ~np.isin(self.ids, IRIS)
        pix = np.asarray(pix, np.float64)[:, self.ids]
        root = self.joint_base[0].double().cpu().numpy()
        guess = None
        for i in np.flatnonzero(valid):
            if guess is None:
                _, rvec, tvec = cv2.solvePnP(rest[face], pix[i][face], camera.matrix(), None, flags=cv2.SOLVEPNP_EPNP)
            else:
                rvec, tvec = guess[0].copy(), guess[1].copy()
            _, rvec, tvec = cv2.solvePnP(rest[face], pix[i][face], camera.matrix(), None, rvec, tvec, True,
                                         cv2.SOLVEPNP_ITERATIVE)
            guess = (rvec, tvec)
            r = cv2.Rodrigues(rvec)[0]
            rotations[i, 0] = torch.as_tensor(r, dtype=self.dtype, device=self.device)
            # PnP gives x = R X + t; the model rotates about its root joint: x = R (X - J0) + J0 + t'.
            trans[i] = torch.as_tensor(tvec[:, 0] + r @ root - root, dtype=self.dtype, device=self.device)
        idx = np.flatnonzero(valid)
        if len(idx):  # frames without a face start from the nearest valid pose
            nearest = torch.as_tensor(idx[np.abs(np.arange(b)[:, None] - idx[None]).argmin(1)], device=self.device)
            rotations, trans = rotations[nearest], trans[nearest]
        return FitState(rotations, trans, expr)

    # ---- Gauss-Newton ------------------------------------------------------------------------------
    def residuals_and_jacobian(self, state: FitState, target: torch.Tensor, camera: Camera,
                               with_shape: bool = False, with_focal: bool = False):
        """Pixel residuals (B,L,2), Jacobian (B,L,2,P) over [joint rotation increments (3 per fitted joint),
        translation, expression(, shape)(, log focal length)], and depth (B,L)."""
        pts, rot_world, frames, carried = self._forward(state)
        b, n = pts.shape[:2]
        z = pts[..., 2].clamp(min=1e-4)
        f = camera.focal
        proj = torch.stack([f * pts[..., 0] / z + camera.cx, f * pts[..., 1] / z + camera.cy], -1)
        d_proj = torch.zeros(b, n, 2, 3, dtype=self.dtype, device=self.device)
        d_proj[..., 0, 0] = f / z
        d_proj[..., 0, 2] = -f * pts[..., 0] / z ** 2
        d_proj[..., 1, 1] = f / z
        d_proj[..., 1, 2] = -f * pts[..., 1] / z ** 2
        # A rotation increment d in a joint's frame R turns a point it carries (m, about the joint) by
        # (R d) x m; through the projection's row a that is (m x a) . R d: one cross product per row, then R.
        d_rot = torch.cat([(torch.linalg.cross(m[:, :, None].expand(-1, -1, 2, -1), d_proj, dim=-1)
                            .view(b, n * 2, 3) @ frame).view(b, n, 2, 3)
                           for m, frame in zip(carried, frames.unbind(1))], -1)  # (B,L,2,3 per fitted joint)
        d_skin = d_proj @ rot_world  # (B,L,2,3)
        # Basis columns: one small matmul per landmark, (B*2,3) @ (3,K), batched over landmarks.
        per_landmark = d_skin.permute(1, 0, 2, 3).reshape(n, b * 2, 3)
        basis = lambda dirs: (per_landmark @ dirs).view(n, b, 2, -1).permute(1, 0, 2, 3)  # noqa: E731
        blocks = [d_rot, d_proj, basis(self.exprdirs_l)]
        if with_shape:
            blocks.append(basis(self.shapedirs_l))
        if with_focal:  # d proj / d log f: the offset from the principal point
            centre = torch.as_tensor([camera.cx, camera.cy], dtype=self.dtype, device=self.device)
            blocks.append((proj - centre)[..., None])
        return proj - target, torch.cat(blocks, -1), z

    def _prior(self, state: FitState, angles: torch.Tensor, px_per_m: torch.Tensor,
               expression_prior: float | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Diagonal prior weights (B,P) and the prior's gradient (B,P), in pixel^2 units. angles (B,J,3): the
        state's axis-angles; px_per_m (B,1): the face's image scale, which the joint priors (set at the reference
        scale) follow; expression_prior: in place of the settings' per-frame one, for every frame (a float) or
        each its own ((B,1))."""
        s = self.settings
        b = state.rotations.shape[0]
        joint_scale = (px_per_m / s.reference_px_per_m) ** 2
        diag, grad = [], []
        for k in self.fit_joints:
            name = self.names[k]
            lam = {"jaw": s.jaw_prior, "left_eye": s.eye_prior, "right_eye": s.eye_prior}.get(name, (0.0, 0.0, 0.0))
            lam = torch.as_tensor(lam, dtype=self.dtype, device=self.device) * joint_scale
            diag.append(lam)
            grad.append(lam * angles[:, k])
        lam = s.expression_prior if expression_prior is None else expression_prior
        expr_lam = lam * (self.expr_scale * px_per_m) ** 2 * len(self.ids)
        zeros = torch.zeros(b, 3, dtype=self.dtype, device=self.device)
        diag += [zeros, expr_lam]
        grad += [zeros, expr_lam * state.expr]
        return torch.cat(diag, 1), torch.cat(grad, 1)

    def _vergence(self, h: torch.Tensor, g: torch.Tensor, angles: torch.Tensor, face_scale: torch.Tensor) -> None:
        """Couple the two eyes' yaw and pitch (in place): penalise their difference. angles (B,J,3) axis-angles,
        face_scale (B,): the face's image scale relative to the reference."""
        if "left_eye" not in self.names:
            return
        left, right = self.names.index("left_eye"), self.names.index("right_eye")
        i0, j0 = 3 * self.fit_joints.index(left), 3 * self.fit_joints.index(right)
        lam = self.settings.vergence_prior * face_scale ** 2
        for k in range(2):
            i, j = i0 + k, j0 + k
            diff = angles[:, left, k] - angles[:, right, k]
            h[:, i, i] += lam
            h[:, j, j] += lam
            h[:, i, j] -= lam
            h[:, j, i] -= lam
            g[:, i] += lam * diff
            g[:, j] -= lam * diff

    def _apply(self, state: FitState, step: torch.Tensor) -> FitState:
        rotations = state.rotations.clone()
        b, n = len(step), len(self.fit_joints)
        delta = batch_rodrigues(step[:, :3 * n].reshape(-1, 3)).reshape(b, n, 3, 3)
        rotations[:, self.fit_joints] = rotations[:, self.fit_joints] @ delta
        if "jaw" in self.names:
            # A jaw cannot close past its rest pose: keep FLAME's opening angle (about +x) non-negative.
            k = self.names.index("jaw")
            jaw = matrix_to_axis_angle(rotations[:, k])
            if bool((jaw[:, 0] < 0).any()):
                jaw[:, 0] = jaw[:, 0].clamp(min=0)
                rotations[:, k] = batch_rodrigues(jaw)
        o = 3 * len(self.fit_joints)
        expr = state.expr + step[:, o + 3:]
        if self.settings.bounded:
            expr = expr.clamp(0, 1)
        return FitState(rotations, state.trans + step[:, o:o + 3], expr)

    def solve(self, state: FitState, pix: np.ndarray, valid: np.ndarray, camera: Camera,
              iterations: int | None = None, expression_prior: float | torch.Tensor | None = None) -> FitState:
        """Levenberg-Marquardt over every frame (independent given the identity), in batches. expression_prior:
        see `_prior`."""
        parts = []
        for a in range(0, len(pix), self.chunk):
            rows = slice(a, a + self.chunk)
            prior = expression_prior[rows] if torch.is_tensor(expression_prior) else expression_prior
            parts.append(self._solve_batch(state.take(rows), pix[rows], valid[rows], camera,
                                           iterations or self.settings.iterations, prior))
        return FitState.cat(parts)

    def _normal_equations(self, state: FitState, target: torch.Tensor, camera: Camera, frame_weight: torch.Tensor,
                          with_shape: bool = False, with_focal: bool = False,
                          expression_prior: float | torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Robustly weighted normal equations of B frames: H (B,P,P), g (B,P) and depth (B,L), over the frame
        parameters (priors, damping and eye coupling applied) and, `with_shape`/`with_focal`, the shape columns and
        the log focal length after them (left bare: they are shared, their priors belong to the sum over frames).
        frame_weight (B,): 0 drops a frame; expression_prior: see `_prior`."""
        s = self.settings
        res, jac, depth = self.residuals_and_jacobian(state, target, camera, with_shape, with_focal)
        px_per_m = (camera.focal / depth.mean(1))[:, None]
        face_scale = px_per_m / s.reference_px_per_m
        robust = 1.0 / (1.0 + (res.norm(dim=-1) / (s.robust_px * face_scale)) ** 2)
        weight = (self.w * robust * frame_weight[:, None])[..., None, None]
        h = (jac * weight).flatten(1, 2).transpose(1, 2) @ jac.flatten(1, 2)
        g = ((weight[..., 0] * res).flatten(1, 2)[:, None] @ jac.flatten(1, 2))[:, 0]  # 10x faster than J^T r
        angles = state.axis_angles()
        prior_diag, prior_grad = self._prior(state, angles, px_per_m, expression_prior)
        n = prior_diag.shape[1]
        diag = torch.arange(n, device=self.device)
        g[:, :n] += prior_grad
        h[:, diag, diag] += prior_diag + s.damping * h[:, diag, diag] + 1e-6
        self._vergence(h, g, angles, face_scale[:, 0])
        return h, g, depth

    def _solve_batch(self, state: FitState, pix: np.ndarray, valid: np.ndarray, camera: Camera,
                     iterations: int, expression_prior: float | torch.Tensor | None = None) -> FitState:
        target = torch.as_tensor(pix[:, self.ids], dtype=self.dtype, device=self.device)
        valid_t = torch.as_tensor(valid, dtype=self.dtype, device=self.device)
        for _ in range(iterations):
            h, g, _ = self._normal_equations(state, target, camera, valid_t, expression_prior=expression_prior)
            step = -torch.linalg.solve(h, g[..., None])[..., 0]
            state = self._apply(state, step * valid_t[:, None])
        return state

    def solve_identity(self, state: FitState, pix: np.ndarray, camera: Camera, estimate_focal: bool = False,
                       neutral: np.ndarray | None = None, expression_prior: float | None = None,
                       hold_shape: bool = False) -> tuple[FitState, Camera]:
        """Solve the shared shape (and, `estimate_focal`, the focal length) with the keyframes' own parameters
        (see `_identity_rounds`), then refit the keyframes to it; returns the keyframe state and the camera.

        neutral (K,) bool: keyframes known to show the face at rest. Without any, every keyframe is taken to be
        mostly at rest (`identity_expression_prior`), so a steady expression becomes part of the face's shape. With
        one, the face's shape is what those frames show (`neutral_expression_prior`), and the other keyframes
        are free to express as every frame is (`expression_prior`, by default the settings'): an actor who
        smiles through the opening second keeps the smile. `hold_shape`: the shape baked by `prepare` is the
        actor's, known already; only the keyframes (and the focal length) are solved, every keyframe free to express."""
        s = self.settings
        per_frame = s.expression_prior if expression_prior is None else expression_prior
        if hold_shape:
            lam = np.full(len(pix), per_frame)
        elif neutral is not None and np.any(neutral):
            lam = np.where(neutral, s.neutral_expression_prior, per_frame)
        else:
            lam = np.full(len(pix), s.identity_expression_prior)
        lam = torch.as_tensor(lam[:, None], dtype=self.dtype, device=self.device)
        state, camera = self._identity_rounds(state, pix, camera, estimate_focal, lam, solve_shape=not hold_shape)
        return self.solve(state, pix, np.ones(len(pix), bool), camera, 3, per_frame), camera

    def _identity_rounds(self, state: FitState, pix: np.ndarray, camera: Camera, estimate_focal: bool,
                         expression_prior: torch.Tensor, solve_shape: bool = True) -> tuple[FitState, Camera]:
        """Joint Levenberg-Marquardt steps over every keyframe's parameters and the shared shape (unless not
        `solve_shape`) and log focal length (`estimate_focal`). The frames' blocks are eliminated (Schur
        complement), so each step costs one small solve per frame plus one of the shared block's size. Alternating
        frame fits with shape updates instead crawls along the pose-shape valley (a head pitched down and a longer
        nose look alike) and leaves the pose biased."""
        s = self.settings
        ones = torch.ones(len(pix), dtype=self.dtype, device=self.device)
        target = torch.as_tensor(pix[:, self.ids], dtype=self.dtype, device=self.device)
        # PnP start -> near the valley
        state = self.solve(state, pix, np.ones(len(pix), bool), camera, iterations=3, expression_prior=expression_prior)
        n_shape = len(self.shape_cols) if solve_shape else 0
        n_shared = n_shape + estimate_focal
        if not n_shared:
            return state, camera
        frame, shared = slice(None, -n_shared), slice(-n_shared, None)
        focal0 = camera.focal
        for _ in range(s.identity_rounds):
            h, g, depth = self._normal_equations(state, target, camera, ones, solve_shape, estimate_focal,
                                                 expression_prior)
            h_ff, h_fs, h_ss = h[:, frame, frame], h[:, frame, shared], h[:, shared, shared].sum(0)
            px_per_m = float(camera.focal / depth.mean())
            count = len(self.ids) * len(pix)
            prior = s.shape_prior * (self.shape_scale[:n_shape] * px_per_m) ** 2 * count
            current = self.shape_active[:n_shape]
            if estimate_focal:  # a log-normal prior about the starting lens: landmarks pin focal length weakly
                log_focal = torch.as_tensor([np.log(camera.focal / focal0)], dtype=self.dtype, device=self.device)
                focal_lam = s.focal_prior * count * (px_per_m / s.reference_px_per_m) ** 2
                prior = torch.cat([prior, torch.as_tensor([focal_lam], dtype=self.dtype, device=self.device)])
                current = torch.cat([current, log_focal])
            g_f, g_s = g[:, frame], g[:, shared].sum(0) + prior * current
            h_ss = h_ss + torch.diag(prior + s.damping * torch.diagonal(h_ss) + 1e-6)
            solved = torch.linalg.solve(h_ff, torch.cat([h_fs, g_f[..., None]], -1))  # H_ff^-1 [H_fs, g_f]
            schur = h_ss - (h_fs.transpose(1, 2) @ solved[..., :-1]).sum(0)
            d_shared = -torch.linalg.solve(schur, g_s - (h_fs.transpose(1, 2) @ solved[..., -1:]).sum(0)[:, 0])
            state = self._apply(state, -(solved[..., -1] + solved[..., :-1] @ d_shared))
            if solve_shape:
                self.prepare(self.shape_active + d_shared[:n_shape])
            if estimate_focal:
                camera = Camera(camera.focal * float(torch.exp(d_shared[-1])), camera.cx, camera.cy)
        return state, camera
