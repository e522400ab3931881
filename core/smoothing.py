"""Zero-lag temporal smoothing: the Whittaker smoother (a second-difference prior), weighted so that
frames without a face are filled by the prior instead of invented from nothing."""
from __future__ import annotations

import numpy as np
from scipy.linalg import solveh_banded


def whittaker(values: np.ndarray, weights: np.ndarray, lam: float | np.ndarray) -> np.ndarray:
    """Smooth each column of `values` (T,D): minimise sum w_t (x_t - y_t)^2 + lam * sum (x_t-1 - 2x_t + x_t+1)^2.

    weights (T,) >= 0 (0 for invalid frames). lam: scalar or (D,) per column. Non-causal and zero-phase, so
    fast motion is not delayed; a larger lam removes more jitter. Solved as a banded system, O(T).
    """
    values = np.asarray(values, np.float64)
    t, d = values.shape
    if t < 3:
        return values.copy()
    lams = np.broadcast_to(np.asarray(lam, np.float64), (d,))
    w = np.asarray(weights, np.float64)
    # D2^T D2 as upper banded storage: diagonals 0, 1, 2.
    d0 = np.full(t, 6.0); d0[[0, -1]] = 1; d0[[1, -2]] = 5
    d1 = np.full(t - 1, -4.0); d1[[0, -1]] = -2
    d2 = np.ones(t - 2)
    out = np.empty_like(values)
    for lam_value in np.unique(lams):
        cols = np.flatnonzero(lams == lam_value)
        ab = np.zeros((3, t))
        ab[2] = w + lam_value * d0 + 1e-9
        ab[1, 1:] = lam_value * d1
        ab[0, 2:] = lam_value * d2
        out[:, cols] = solveh_banded(ab, w[:, None] * values[:, cols])
    return out


def cutoff_weight(cutoff_hz: float, fps: float) -> float:
    """The `whittaker` weight whose half-power period is fps / cutoff_hz frames (a cut-off in hertz)."""
    period = max(fps / max(cutoff_hz, 1e-6), 2.0)
    return (period / (2 * np.pi)) ** 4
