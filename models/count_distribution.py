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
    rows = _recurse(out, rows, np.exp(log_p0[rows]), mean, r, success, poisson, q)
    slow = np.flatnonzero(positive & (log_p0 <= _MIN_LOG_P0))
    slow = np.union1d(slow, rows)  # underflow, or an extremely long tail
    if slow.size:
        for j, (m, rr, is_poisson) in enumerate(
            zip(mean[slow], r[slow], poisson[slow], strict=True)
        ):
            dist = stats.poisson(m) if is_poisson else stats.nbinom(rr, rr / (rr + m))
            out[slow[j]] = dist.ppf(q)
    return np.maximum(out, booked[:, None])


def _recurse(
    out: np.ndarray,
    rows: np.ndarray,
    pmf: np.ndarray,
    mean: np.ndarray,
    r: np.ndarray,
    success: np.ndarray,
    poisson: np.ndarray,
    q: np.ndarray,
) -> np.ndarray:
    """The pmf recursion of :func:`floored_quantiles`: quantiles into ``out[rows]``.

    ``out[i, j]`` becomes the number of k with ``P(D <= k) < q[j]``, which (the cdf never
    decreases: every term added is >= 0) is the first k with ``P(D <= k) >= q[j]``. So each
    row only watches the next level it has not reached (levels in ascending order), and is
    written when it reaches it; rows that reached every level are dropped in bulk (when a tenth
    of the rows are), and each row's parameters travel with it. Returns the rows still short
    of a level after ``_MAX_RECURSION_TERMS`` terms.
    """
    if q.size == 0:
        return rows[:0]
    if np.isnan(q).any() or not np.all(poisson[rows] | (r[rows] > 0)):  # pragma: no cover
        return _recurse_all_levels(out, rows, pmf, mean, r, success, poisson, q)
    order = np.argsort(q, kind="stable")
    levels = np.append(q[order], np.inf)  # past the last level: never reached
    cdf = pmf.copy()
    mean, r, success, poisson = mean[rows], r[rows], success[rows], poisson[rows]
    nxt = np.zeros(rows.size, dtype=np.intp)  # index (in ``order``) of the next level to reach
    threshold = np.full(rows.size, levels[0])
    any_poisson, all_poisson = bool(poisson.any()), bool(poisson.all())
    one_size = r[0] if r.size and not any_poisson and np.all(r == r[0]) else None
    buffer = np.empty(rows.size)
    n_done = 0
    k = 0
    while rows.size and k < _MAX_RECURSION_TERMS:
        reached = np.flatnonzero(cdf >= threshold)
        while reached.size:
            out[rows[reached], order[nxt[reached]]] = k
            nxt[reached] += 1
            threshold[reached] = levels[nxt[reached]]
            n_done += int(np.count_nonzero(nxt[reached] == q.size))
            reached = reached[cdf[reached] >= threshold[reached]]
        if n_done >= 0.1 * rows.size:
            active = nxt < q.size
            rows, pmf, cdf, nxt, threshold = (
                rows[active],
                pmf[active],
                cdf[active],
                nxt[active],
                threshold[active],
            )
            mean, r, success, poisson = mean[active], r[active], success[active], poisson[active]
            n_done = 0
            if not rows.size:
                break
        factor = buffer[: rows.size]
        if all_poisson:
            np.divide(mean, k + 1, out=factor)
        elif not any_poisson:
            if one_size is not None:  # one size for all rows: (k + r) / (k + 1) once
                np.multiply((k + one_size) / (k + 1), success, out=factor)
            else:
                np.add(r, k, out=factor)
                np.divide(factor, k + 1, out=factor)
                np.multiply(factor, success, out=factor)
        else:
            factor[:] = np.where(poisson, mean / (k + 1), (k + r) / (k + 1) * success)
        pmf *= factor
        cdf += pmf
        k += 1
    return rows[nxt < q.size]


def _recurse_all_levels(
    out: np.ndarray,
    rows: np.ndarray,
    pmf: np.ndarray,
    mean: np.ndarray,
    r: np.ndarray,
    success: np.ndarray,
    poisson: np.ndarray,
    q: np.ndarray,
) -> np.ndarray:
    """:func:`_recurse` for any input: every level compared at every term."""
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
    return rows


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
