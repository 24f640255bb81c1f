"""Forecast accuracy measures shared by the engine's backtests, the track record and the
benchmarks: pure numpy, in the units of the data (shifts)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pinball_loss(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Pinball loss of each observation, averaged over the quantile ``levels``.

    ``actual`` has any shape ``S``; ``quantiles`` is ``S + (len(levels),)``; returns ``S``. For
    a level ``tau`` and ``d = actual - quantile`` the loss is ``max(tau d, (tau - 1) d)``.
    """
    diff = np.asarray(actual, dtype=float)[..., None] - np.asarray(quantiles, dtype=float)
    tau = np.asarray(levels, dtype=float)
    above = tau * diff
    np.multiply(tau - 1.0, diff, out=diff)  # the same products, without two more temporaries
    return np.mean(np.maximum(above, diff, out=above), axis=-1)


def inside(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Whether each observation lies in its interval ``[lower, upper]`` (both ends in)."""
    actual = np.asarray(actual, dtype=float)
    return (actual >= np.asarray(lower, dtype=float)) & (actual <= np.asarray(upper, dtype=float))
