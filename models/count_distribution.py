"""Count-valued daily demand: negative-binomial quantiles and means, floored at booked requests.

Daily demand of one series is ``D ~ NegBin(mean=m, size=r)`` with variance ``m + m**2 / r``
(``r = inf`` is Poisson, ``m = 0`` is no demand). Requests already booked for a day are a lower
bound, so the demand planned for is ``max(D, booked)``. Every quantile here is an exact discrete
quantile (an integer number of shifts), so forecasts stay count-like, never negative, ordered.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

QUANTILES: tuple[float, ...] = (0.025, 0.1, 0.5, 0.8, 0.9, 0.95, 0.975)
"""Quantile levels reported for every daily and regional forecast."""

QUANTILE_COLUMNS: tuple[str, ...] = ("p025", "p10", "p50", "p80", "p90", "p95", "p975")
"""Column names of :data:`QUANTILES`, in the same order."""

_MIN_LOG_P0 = -700.0  # below this log P(D = 0) the pmf recursion would start from an underflow
_MAX_RECURSION_TERMS = 100_000
_CDF_CHUNK_ELEMENTS = 2_000_000  # cdf evaluations per chunk for the floored mean


def floored_quantiles(
    mean: np.ndarray, size: np.ndarray, booked: np.ndarray, levels: tuple[float, ...] = QUANTILES
) -> np.ndarray:
    """Quantiles of ``max(D, booked)`` with ``D ~ NegBin(mean, size)``: array (n, len(levels)).

    Exact discrete quantiles (smallest k with P(D <= k) >= level), in shifts. ``size = inf`` is
    Poisson; ``mean = 0`` gives ``D = 0``.

    The cdf is accumulated term by term with the pmf recursion
    ``P(k+1) = P(k) (k + r) / (k + 1) * m / (r + m)`` (Poisson: ``P(k) m / (k + 1)``) for all
    rows at once, which is about twenty times faster than ``scipy.stats.nbinom.ppf``; rows whose
    ``P(0)`` would underflow (means in the hundreds) go to scipy.
    """
    mean = np.asarray(mean, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    booked = np.asarray(booked, dtype=np.float64)
    q = np.asarray(levels, dtype=np.float64)
    out = np.zeros((mean.size, q.size))
    poisson = np.isinf(size)
    positive = mean > 0
    r = np.where(poisson, 1.0, size)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p0 = np.where(poisson, -mean, r * np.log(r / (r + mean)))
        success = np.where(poisson, 0.0, mean / (r + mean))  # NB: the "1 - p" of each row
    rows = np.flatnonzero(positive & (log_p0 > _MIN_LOG_P0))
    pmf = np.exp(log_p0[rows])
    cdf = pmf.copy()
    k = 0
    while rows.size and k < _MAX_RECURSION_TERMS:
        below = cdf[:, None] < q[None, :]  # quantile = number of k with P(D <= k) < level
        out[rows] += below
        keep = below.any(axis=1)
        rows, pmf, cdf = rows[keep], pmf[keep], cdf[keep]
        pmf *= np.where(
            poisson[rows], mean[rows] / (k + 1), (k + r[rows]) / (k + 1) * success[rows]
        )
        cdf += pmf
        k += 1
    slow = np.flatnonzero(positive & (log_p0 <= _MIN_LOG_P0))
    slow = np.union1d(slow, rows)  # underflow, or an extremely long tail
    if slow.size:
        for j, (m, rr, is_poisson) in enumerate(
            zip(mean[slow], r[slow], poisson[slow], strict=True)
        ):
            dist = stats.poisson(m) if is_poisson else stats.nbinom(rr, rr / (rr + m))
            out[slow[j]] = dist.ppf(q)
    return np.maximum(out, booked[:, None])


def floored_mean(mean: np.ndarray, size: np.ndarray, booked: np.ndarray) -> np.ndarray:
    """``E[max(D, booked)]`` with ``D ~ NegBin(mean, size)``, in shifts.

    ``E[max(D, b)] = m + E[(b - D)+] = m + sum_{j=0}^{b-1} P(D <= j)``, computed exactly for the
    rows with ``b > 0``, one booked value at a time and in chunks to keep the cdf grids small.
    """
    mean = np.asarray(mean, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    booked = np.asarray(booked, dtype=np.int64)
    out = mean.copy()
    for b in np.unique(booked[booked > 0]):
        rows_b = np.flatnonzero(booked == b)
        j = np.arange(b)[None, :]
        step = max(1, _CDF_CHUNK_ELEMENTS // int(b))
        for start in range(0, rows_b.size, step):
            rows = rows_b[start : start + step]
            out[rows] += _cdf(j, mean[rows, None], size[rows, None]).sum(axis=1)
    return out


def _cdf(k: np.ndarray, mean: np.ndarray, size: np.ndarray) -> np.ndarray:
    """P(D <= k) for D ~ NegBin(mean, size) (Poisson where size is inf; D = 0 where mean is 0)."""
    k, mean, size = np.broadcast_arrays(k, mean, size)
    out = np.ones(k.shape)
    poisson = np.isinf(size) & (mean > 0)
    negbin = ~np.isinf(size) & (mean > 0)
    out[poisson] = stats.poisson.cdf(k[poisson], mean[poisson])
    r = size[negbin]
    out[negbin] = stats.nbinom.cdf(k[negbin], r, r / (r + mean[negbin]))
    return out
