"""Forecasting models behind one small interface (STYLE 3-5).

Every model is a :class:`Forecaster`: the constructor only stores parameters, ``fit(y, start)``
learns from daily demand ``y`` (oldest first, consecutive days, the first on ``start``) without
mutating it, fitted state lives in attributes ending in ``_``, and ``predict(horizon)`` returns
the mean demand for the ``horizon`` days after the last fitted day, never negative. Units are
those of ``y`` (shifts per day in the weekly run; any non-negative daily quantity otherwise).

Models, simplest first:

- :class:`SeasonalNaive`: repeat the last week (the benchmark every score is scaled by).
- :class:`WeekdayMean`: the mean of each weekday over the last weeks.
- :class:`RecentMean`: one flat rate over the last weeks (intermittent series, most days zero).
- :class:`HoltWinters`: statsmodels exponential smoothing with additive weekly seasonality; its
  level follows recent changes.
- :class:`CalendarGLM`: a Poisson log-linear regression on weekday, yearly Fourier terms,
  holidays with their windows and a damped trend, fitted by robust iteratively reweighted least
  squares. It is the calendar-aware workhorse: Prophet's structure, without its sampling cost.
- :class:`ProphetModel`: Prophet with weekly and yearly seasonality and the same holidays (an
  adapter; optional in the engine because it costs ~0.1 s per fit).
- :class:`Combination`: the mean of several models' forecasts.
"""

from __future__ import annotations

import functools
import logging
import warnings
from abc import ABC, abstractmethod
from datetime import date
from typing import Any, Self

import numpy as np
import pandas as pd

from models.calendar import HolidayCalendar

try:  # pandas' rolling-mean kernel (what Series.rolling(...).mean() runs)
    from pandas._libs.window.aggregations import roll_mean as _roll_mean
except ImportError:  # pragma: no cover - another pandas: the public, slower path
    _roll_mean = None
try:  # scipy's L-BFGS-B routine (what minimize(method="L-BFGS-B") runs)
    from scipy.optimize._lbfgsb import setulb as _setulb
except ImportError:  # pragma: no cover - another scipy: minimize itself
    _setulb = None
_SETULB_OK = True
_LBFGSB_FACTR = 2.2204460492503131e-09 / np.finfo(float).eps  # minimize's default ftol

SEASON = 7


class Forecaster(ABC):
    """One model: the constructor stores parameters, ``fit`` learns, ``predict`` forecasts."""

    name: str = "forecaster"

    @abstractmethod
    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        """Learn from daily demand ``y`` (consecutive days, oldest first, ``y[0]`` on ``start``).

        ``start`` matters only to calendar-aware models; others ignore it.
        """

    @abstractmethod
    def predict(self, horizon: int) -> np.ndarray:
        """Mean demand for the ``horizon`` days after the last fitted day (>= 0)."""

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        """Constructor arguments the generic model tests use."""
        return [{}]


def _tile_week(profile: np.ndarray, horizon: int) -> np.ndarray:
    reps = -(-horizon // SEASON)
    return np.tile(profile, reps)[:horizon]


class SeasonalNaive(Forecaster):
    """Repeat the last week: each day's forecast is the demand 7 days before (the benchmark)."""

    name = "seasonal_naive"

    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        y = np.asarray(y, dtype=float)
        last = y[-SEASON:]
        if last.size < SEASON:  # under a week of history: its mean on every day
            last = np.full(SEASON, last.mean() if last.size else 0.0)
        self.last_season_ = last.copy()
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return _tile_week(self.last_season_, horizon)


class WeekdayMean(Forecaster):
    """Mean of the same weekday over the last ``weeks`` whole weeks."""

    name = "weekday_mean"

    def __init__(self, weeks: int = 8) -> None:
        self.weeks = weeks

    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        y = np.asarray(y, dtype=float)
        n = min(len(y) // SEASON, self.weeks) * SEASON
        if n == 0:
            self.profile_ = np.full(SEASON, y.mean() if y.size else 0.0)
            return self
        recent = y[len(y) - n :].reshape(-1, SEASON)
        self.profile_ = recent.mean(axis=0)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return _tile_week(self.profile_, horizon)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"weeks": 4}, {"weeks": 8}]


class RecentMean(Forecaster):
    """One flat daily rate: the mean of the last ``days`` days (for intermittent demand)."""

    name = "recent_mean"

    def __init__(self, days: int = 91) -> None:
        self.days = days

    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        y = np.asarray(y, dtype=float)[-self.days :]
        self.level_ = float(y.mean()) if y.size else 0.0
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.full(horizon, self.level_)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"days": 28}, {"days": 91}]


class HoltWinters(Forecaster):
    """Holt-Winters exponential smoothing, additive seasonality (statsmodels).

    Fitted on at most the last ``max_days`` days; the level follows trend and yearly swings.
    ``season`` is 7 (weekly) or 14: many nurse rotas repeat every two weeks (every other
    weekend), and PBJ staffing hours correlate at a 14-day lag (0.16-0.41 in the files in
    data/real after removing weekday means).
    """

    name = "holt_winters"

    def __init__(self, max_days: int = 365, season: int = SEASON) -> None:
        self.max_days = max_days
        self.season = season

    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        y = np.asarray(y[-self.max_days :], dtype=float)
        self.flat_ = None
        if len(y) < 2 * self.season + 2 or not np.any(y):
            self.flat_ = float(y.mean()) if y.size else 0.0
            return self
        self.model_ = None
        if _holt_winters_kernels() is None:  # another statsmodels: its public API
            self.model_ = _statsmodels_holt_winters(y, self.season)
        else:
            self.level_, self.seasons_ = _holt_winters_additive(
                np.ascontiguousarray(y), self.season
            )
        return self

    def predict(self, horizon: int) -> np.ndarray:
        if self.flat_ is not None:
            return np.full(horizon, self.flat_)
        if self.model_ is not None:
            return np.clip(np.asarray(self.model_.forecast(horizon), dtype=float), 0.0, None)
        m = self.season
        # statsmodels' forecast: the last level plus the seasonal states; from the m-th day on,
        # it repeats the states s[n - 1], s[n], ... (HoltWintersResults.forecast, bit for bit)
        early, cycle = self.seasons_[1:m], self.seasons_[:m]
        tail = np.take(cycle, np.arange(max(horizon - (m - 1), 0)) % m)
        seasons = np.concatenate([early, tail])[:horizon]
        return np.clip(self.level_ + seasons, 0.0, None)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"max_days": 120}, {"max_days": 365, "season": 14}]


def _statsmodels_holt_winters(y: np.ndarray, season: int) -> Any:
    """The fitted statsmodels model :class:`HoltWinters` reproduces (reference and fallback)."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ExponentialSmoothing(
            y,
            trend=None,
            seasonal="add",
            seasonal_periods=season,
            initialization_method="heuristic",
        ).fit(use_brute=False)


@functools.cache
def _holt_winters_kernels() -> tuple[Any, ...] | None:
    """statsmodels' compiled Holt-Winters pieces that ExponentialSmoothing.fit runs, or None."""
    try:
        from statsmodels.tsa.holtwinters._exponential_smoothers import (
            HoltWintersArgs,
            holt_win__add,
        )
        from statsmodels.tsa.holtwinters._smoothers import to_restricted, to_unrestricted
    except ImportError:  # pragma: no cover - another statsmodels
        return None
    return HoltWintersArgs, holt_win__add, to_restricted, to_unrestricted


@functools.cache
def _heuristic_level_pinv() -> np.ndarray:
    """statsmodels' heuristic level regression on the first ten trend values (a constant)."""
    pinv = np.linalg.pinv(np.c_[np.ones(10), np.arange(10) + 1])
    pinv.setflags(write=False)
    return pinv


def _rolling_mean(values: np.ndarray, window: int, center: bool) -> np.ndarray:
    """``pd.Series(values).rolling(window, center=center).mean()`` as an array, bit for bit.

    Calls pandas' own kernel with the window bounds of its FixedWindowIndexer (the Series and
    Rolling objects around it cost ~50x the arithmetic on a 35-day window).
    """
    if _roll_mean is None:
        return pd.Series(values).rolling(window, center=center).mean().to_numpy()
    n = values.size
    offset = (window - 1) // 2 if center else 0
    end = np.arange(1 + offset, n + 1 + offset, dtype="int64")
    start = np.clip(end - window, 0, n)
    end = np.clip(end, 0, n)
    with np.errstate(all="ignore"):
        return np.asarray(_roll_mean(values, start, end, window))


def _heuristic_initial_values(y: np.ndarray, m: int) -> tuple[float, np.ndarray]:
    """Initial level and seasonal states of additive Holt-Winters without trend.

    The arithmetic of statsmodels' ``_initialization_heuristic(y, False, "add", m)`` (Hyndman
    et al., section 2.6), with its pandas rolling means done by pandas' kernel.
    """
    nobs = len(y)
    min_obs = 10 + 2 * (m // 2)
    k_cycles = max(min(5, nobs // m), int(np.ceil(min_obs / m)))
    series = y[: m * k_cycles].copy()
    trend = _rolling_mean(series, m, center=True)
    if m % 2 == 0:
        shifted = np.empty_like(trend)
        shifted[:-1], shifted[-1] = trend[1:], np.nan
        trend = _rolling_mean(shifted, 2, center=False)
    detrended = series - trend
    tmp = np.zeros(k_cycles * m) * np.nan
    tmp[: len(detrended)] = detrended
    seasonal = np.nanmean(tmp.reshape(k_cycles, m).T, axis=1)
    seasonal -= np.mean(seasonal)
    endog = np.atleast_2d(trend[~np.isnan(trend)]).T
    beta = np.squeeze(_heuristic_level_pinv().dot(endog[:10]))
    return beta[0], seasonal


class _ForwardDifference:
    """Objective and gradient for scipy's L-BFGS-B: exactly its own 2-point differences.

    ``minimize(method="L-BFGS-B")`` without a gradient differentiates with absolute steps of
    ``eps = 1e-8``, flipped where a step would leave the bounds
    (scipy.optimize._numdiff.approx_derivative, '2-point', 1-sided scheme); this computes the
    same numbers, in the same floating-point operations, without the generic machinery (which
    was most of the fit's time). Bounds are finite here ([0, 1] per parameter).
    """

    def __init__(
        self, func: Any, args: Any, lower: np.ndarray, upper: np.ndarray, eps: float = 1e-8
    ) -> None:
        self.func, self.args, self.eps = func, args, eps
        self.lower, self.upper = lower.tolist(), upper.tolist()
        self.x: list[float] | None = None
        self.f: Any = None

    def objective(self, x: np.ndarray) -> Any:
        err = self.func(x, self.args)
        f = err.T @ err
        self.x, self.f = x.tolist(), f
        return f

    def gradient(self, x: np.ndarray) -> np.ndarray:
        x0 = np.asarray(x, dtype=np.float64)
        values = x0.tolist()
        f0 = self.f if values == self.x else self.objective(x0)
        grad = np.empty(x0.size)
        for i, (xi, lb, ub) in enumerate(zip(values, self.lower, self.upper, strict=True)):
            h = self.eps
            if (xi + h) - xi == 0:
                h = _SQRT_EPS * (1.0 if xi >= 0 else -1.0) * max(1.0, abs(xi))
            lower_dist, upper_dist = xi - lb, ub - xi
            ahead = xi + h
            fitting = abs(h) <= max(lower_dist, upper_dist)
            if (ahead < lb or ahead > ub) and fitting:
                h = -h
            elif not fitting:
                h = upper_dist if upper_dist >= lower_dist else -lower_dist
            x1 = x0.copy()
            x1[i] = xi + h
            err = self.func(x1, self.args)
            grad[i] = (err.T @ err - f0) / ((xi + h) - xi)
        return grad


_SQRT_EPS = float(np.finfo(np.float64).eps ** 0.5)


def _lbfgsb(
    difference: _ForwardDifference, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray | None:
    """``minimize(fun, x0, method="L-BFGS-B", bounds=...).x`` with scipy's default options.

    The driver loop of scipy.optimize._lbfgsb_py._minimize_lbfgsb (same calls of the same
    Fortran-translated routine, same memoised evaluations, same stopping rules) without its
    result objects and function wrappers. Returns None where this scipy's routine differs.
    """
    global _SETULB_OK
    if _setulb is None or not _SETULB_OK:
        return None
    maxcor, maxls, maxiter, maxfun = 10, 20, 15000, 15000
    factr, pgtol = _LBFGSB_FACTR, 1e-5
    x0 = np.clip(np.asarray(x0).ravel(), lower, upper)
    n = x0.size
    nbd = np.full(n, 2, np.int32)  # both bounds finite
    low_bnd = np.asarray(lower, dtype=np.float64).copy()
    upper_bnd = np.asarray(upper, dtype=np.float64).copy()
    x = np.array(x0, dtype=np.float64)
    f: Any = np.array(0.0, dtype=np.float64)
    g = np.zeros((n,), dtype=np.float64)
    wa = np.zeros(2 * maxcor * n + 5 * n + 11 * maxcor * maxcor + 8 * maxcor, np.float64)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29, dtype=np.float64)
    workspace = (wa, iwa, task, lsave, isave, dsave, maxls, ln_task)
    # scipy's ScalarFunction evaluates f and its gradient at x0 when it is set up
    at = x.tolist()
    value = difference.objective(x.copy())
    grad = difference.gradient(x.copy())
    nfev = 1 + n
    n_iterations = 0
    while True:
        g = g.astype(np.float64)
        try:
            _setulb(maxcor, x, low_bnd, upper_bnd, nbd, f, g, factr, pgtol, *workspace)
        except TypeError:  # pragma: no cover - another scipy's signature
            _SETULB_OK = False
            return None
        if task[0] == 3:
            if x.tolist() != at:  # a new point (scipy's np.array_equal memo)
                at = x.tolist()
                value = difference.objective(x.copy())
                grad = difference.gradient(x.copy())
                nfev += 1 + n
            f, g = value, grad
        elif task[0] == 1:
            n_iterations += 1
            if n_iterations >= maxiter:
                task[0], task[1] = 5, 504
            elif nfev > maxfun:
                task[0], task[1] = 5, 502
        else:
            break
    return x


def _holt_winters_additive(y: np.ndarray, m: int) -> tuple[float, np.ndarray]:
    """Fit additive-seasonal Holt-Winters without trend as statsmodels does, bit for bit.

    What ``ExponentialSmoothing(y, trend=None, seasonal="add", seasonal_periods=m,
    initialization_method="heuristic").fit(use_brute=False)`` computes (heuristic initial
    states; smoothing level and seasonal by L-BFGS-B on the sum of squared one-step errors,
    in statsmodels' unrestricted parameter space), without its pandas and result objects.
    Returns the level after the last day and the seasonal states ``s[n - 1 .. n + m - 2]``
    that statsmodels' forecast reads (HoltWinters.predict lays them out).
    """
    from scipy.optimize import minimize

    kernels = _holt_winters_kernels()
    assert kernels is not None
    HoltWintersArgs, holt_win__add, to_restricted, to_unrestricted = kernels  # noqa: N806
    nobs = y.size
    l0, s0 = _heuristic_initial_values(y, m)
    init_alpha = 0.5 / max(m, 1)
    init_gamma = 0.05 * (1 - init_alpha)
    params = np.zeros(6 + m)
    params[:6] = [init_alpha, np.nan, init_gamma, l0, np.nan, 1.0]
    params[-m:] = s0
    sel = np.array([True, False, True, False, False, False] + [False] * m)
    bounds = np.array([(0.0, 1.0)] * 3, dtype=float)
    hw_args = HoltWintersArgs(sel.astype(np.int64), params, bounds, y, m, nobs)
    lb, ub = np.zeros(2), np.ones(2)
    initial_p = params[sel]  # strictly inside (0, 1): _enforce_bounds leaves it
    params[sel] = initial_p
    params[:3] = to_unrestricted(params, sel, hw_args.bounds)
    initial_p = params[sel]
    hw_args.transform = True
    difference = _ForwardDifference(holt_win__add, hw_args, lb, ub)
    x = _lbfgsb(difference, initial_p, lb, ub)
    if x is None:  # another scipy: its public minimize, same numbers, slower
        x = minimize(
            difference.objective,
            initial_p,
            jac=difference.gradient,
            bounds=[(0, 1), (0, 1)],
            method="L-BFGS-B",
        ).x
    # ExponentialSmoothing._predict's smoothing recursion (lvl[i], s[i + m - 1] for i = 1..n)
    # is the objective's own recursion at the optimum (same expressions): run it once more
    # and take the one step (i = n) it stops short of.
    holt_win__add(x, hw_args)
    level, seasons = hw_args.lvl, hw_args.s  # level[0..n-1], seasons[0..n+m-2]
    params[sel] = x
    params[:3] = to_restricted(params, sel, hw_args.bounds)
    alpha = float(params[0])
    lvl = (alpha * y[nobs - 1]) - (alpha * seasons[nobs - 1]) + ((1 - alpha) * level[nobs - 1])
    # forecast day j >= 0 (t = n + j): s[n + j] for j < m - 1, then s[n - 1 + (j - m + 1) % m]
    return float(lvl), np.array(seasons[nobs - 1 : nobs + m - 1])


def _as_day(start: date | np.datetime64 | None) -> np.datetime64:
    if start is None:
        raise ValueError("this model needs the date of the first day of y (start=...).")
    return np.datetime64(pd.Timestamp(start).date(), "D")


class CalendarGLM(Forecaster):
    """Poisson log-linear regression on the calendar, fitted by robust, ridge-penalised IRLS.

    ``log E[y_t] = intercept + weekday + yearly Fourier terms (when a year of history exists)
    + holiday and window effects + trend``. The trend (log units per year, measured from the
    last fitted day) is damped: the forecast carries ``trend_damping`` of it forward. Days whose
    Pearson residual exceeds ``robust_c`` (in standard deviations) are down-weighted, so a
    storm, an outage or a block of unreported days does not bend the fit. ``ridge`` shrinks
    every effect but the intercept toward zero with the weight of ``ridge`` average days of
    data: a holiday at half the usual demand seen three times keeps three quarters of its
    effect (in log units), and a sparse
    series' holiday that happened to be zero does not get an effect of minus infinity.
    """

    name = "calendar_glm"

    def __init__(
        self,
        calendar: HolidayCalendar | None = None,
        yearly_terms: int = 6,
        max_days: int = 1096,
        trend_damping: float = 0.5,
        ridge: float = 0.5,
        robust_c: float = 3.0,
        holiday_ridge: float = 0.5,
        holiday_prior: tuple[tuple[str, float], ...] = (),
    ) -> None:
        self.calendar = calendar
        self.yearly_terms = yearly_terms
        self.max_days = max_days
        self.trend_damping = trend_damping
        self.ridge = ridge
        self.robust_c = robust_c
        self.holiday_ridge = holiday_ridge
        self.holiday_prior = holiday_prior

    def _design(self, days: np.ndarray, end: np.datetime64) -> np.ndarray:
        """Design matrix of consecutive ``days`` (read-only: shared by every fit of the batch)."""
        if days.size == 0:
            return _build_design(
                self.calendar_,
                days,
                end,
                self.yearly_terms_,
                self.trend_,
                tuple(self.holiday_columns_),
            )
        return _calendar_design(
            self.calendar_,
            days[0].astype("datetime64[D]"),
            days.size,
            end,
            self.yearly_terms_,
            self.trend_,
            tuple(self.holiday_columns_),
        )

    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        y = np.asarray(y, dtype=float)
        first = _as_day(start)
        days = first + np.arange(y.size)
        y, days = y[-self.max_days :], days[-self.max_days :]
        self.end_ = days[-1]
        self.calendar_ = self.calendar or HolidayCalendar()
        self.yearly_terms_ = self.yearly_terms if y.size >= 365 else 0
        self.trend_ = y.size >= 365
        self.holiday_columns_ = []
        if y.size:
            self.holiday_columns_ = list(_active_holidays(self.calendar_, days[0], days.size))
        self.zero_ = not np.any(y)
        if self.zero_:
            return self
        x = self._design(days, self.end_)
        level = max(float(y.mean()), 1e-9)
        n_holidays = len(self.holiday_columns_)
        penalty = np.full(x.shape[1], self.ridge * level)  # in days of information
        penalty[0] = 0.0
        target = np.zeros(x.shape[1])
        if n_holidays:
            prior = dict(self.holiday_prior)
            penalty[-n_holidays:] = self.holiday_ridge * level
            target[-n_holidays:] = [prior.get(n, 0.0) for n in self.holiday_columns_]
        self.coef_, info = _robust_poisson_irls(x, y, penalty, target, self.robust_c)
        self.holiday_info_ = info[-n_holidays:] if n_holidays else np.zeros(0)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        if self.zero_:
            return np.zeros(horizon)
        days = self.end_ + 1 + np.arange(horizon)
        x = self._design(days, self.end_)
        if self.trend_:
            x = x.copy()
            trend_column = 1 + (SEASON - 1) + 2 * self.yearly_terms_
            x[:, trend_column] *= self.trend_damping
        return np.exp(np.clip(x @ self.coef_, -30.0, 30.0))

    def holiday_factor(self, horizon: int) -> np.ndarray:
        """Multiplier of each forecast day from holidays and their windows alone (1 = none).

        Lets models that know no calendar borrow this model's holiday effects.
        """
        if self.zero_ or not self.holiday_columns_:
            return np.ones(horizon)
        days = self.end_ + 1 + np.arange(horizon)
        x = self._design(days, self.end_)[:, -len(self.holiday_columns_) :]
        return np.exp(np.clip(x @ self.coef_[-len(self.holiday_columns_) :], -5.0, 5.0))

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{}, {"yearly_terms": 2, "trend_damping": 0.0, "robust_c": 100.0}]


def _consecutive_days(first: np.datetime64, n: int) -> np.ndarray:
    return first + np.arange(n)


@functools.lru_cache(maxsize=256)
def _active_holidays(calendar: HolidayCalendar, first: np.datetime64, n: int) -> tuple[str, ...]:
    """The holiday columns with at least one day among ``n`` consecutive days from ``first``."""
    features, names = calendar.features(_consecutive_days(first, n))
    return tuple(name for i, name in enumerate(names) if features[:, i].any())


@functools.lru_cache(maxsize=64)
def _calendar_design(
    calendar: HolidayCalendar,
    first: np.datetime64,
    n: int,
    end: np.datetime64,
    yearly_terms: int,
    trend: bool,
    holiday_columns: tuple[str, ...],
) -> np.ndarray:
    """CalendarGLM's design matrix of ``n`` consecutive days from ``first`` (read-only).

    Cached: the series of one batch mostly share their dates, so every backtest origin asks for
    the same matrices again and again (at most 64 of ~0.3 MB are kept).
    """
    x = _build_design(
        calendar, _consecutive_days(first, n), end, yearly_terms, trend, holiday_columns
    )
    x.setflags(write=False)
    return x


def _build_design(
    calendar: HolidayCalendar,
    days: np.ndarray,
    end: np.datetime64,
    yearly_terms: int,
    trend: bool,
    holiday_columns: tuple[str, ...],
) -> np.ndarray:
    columns = [np.ones(days.size)]
    weekday = (days.astype("datetime64[D]").view("int64") + 3) % 7  # Monday = 0
    columns.extend((weekday == k).astype(float) for k in range(1, SEASON))
    day_of_year = (days - days.astype("datetime64[Y]")).astype(int)
    angle = 2.0 * np.pi * day_of_year / 365.25
    for k in range(1, yearly_terms + 1):
        columns.extend((np.sin(k * angle), np.cos(k * angle)))
    if trend:
        columns.append((days - end).astype(float) / 365.25)
    if holiday_columns:
        features, names = calendar.features(days)
        index = {name: i for i, name in enumerate(names)}
        zero = np.zeros(days.size)
        columns.extend(features[:, index[h]] if h in index else zero for h in holiday_columns)
    return np.column_stack(columns)


def _robust_poisson_irls(
    x: np.ndarray,
    y: np.ndarray,
    penalty: np.ndarray,
    target: np.ndarray,
    robust_c: float,
    iterations: int = 25,
) -> tuple[np.ndarray, np.ndarray]:
    """Penalised Poisson regression by IRLS, then refitted with Huber-type weights.

    Minimises the Poisson deviance plus ``sum(penalty * (coef - target)**2) / 2``. The refit
    scales the penalty by the estimated dispersion (quasi-Poisson): a noisy series carries less
    information per day, so its rare effects (holidays) shrink more. Returns the coefficients
    and each coefficient's information (weighted sum of squares of its column, per dispersion).
    """
    coef = target.copy()
    coef[0] = np.log(y.mean() + 1e-9)
    weights = np.ones(y.size)
    dispersion = 1.0
    for rounds in range(2):
        ridge = np.diag(penalty)
        for _ in range(iterations):
            eta = np.clip(x @ coef, -30.0, 30.0)
            mu = np.exp(eta)
            w = mu * weights
            z = eta + (y - mu) / mu
            xw = x * w[:, None]
            gram = xw.T @ x + ridge
            new = np.linalg.solve(gram, xw.T @ z + penalty * target)
            converged = np.max(np.abs(new - coef)) < 1e-6
            coef = new
            if converged:
                break
        if rounds == 1:
            break
        mu = np.exp(np.clip(x @ coef, -30.0, 30.0))
        pearson = (y - mu) / np.sqrt(mu)
        dispersion = max(float(np.mean(pearson**2)), 1.0)
        scaled = np.abs(pearson) / np.sqrt(dispersion)
        weights = np.minimum(1.0, robust_c / np.maximum(scaled, 1e-12))
        penalty = penalty * dispersion
    mu = np.exp(np.clip(x @ coef, -30.0, 30.0))
    info = ((x * x) * (mu * weights)[:, None]).sum(axis=0) / dispersion
    return coef, info


class ProphetModel(Forecaster):
    """Prophet with weekly and yearly seasonality and the calendar's holidays and windows.

    An adapter (STYLE 5): fits with MAP optimisation and no uncertainty samples (the engine
    calibrates uncertainty itself on backtests), ~0.1 s per 3-year series.
    """

    name = "prophet"

    def __init__(self, calendar: HolidayCalendar | None = None) -> None:
        self.calendar = calendar

    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        from prophet import Prophet

        logging.getLogger("cmdstanpy").disabled = True
        logging.getLogger("prophet").setLevel(logging.WARNING)
        y = np.asarray(y, dtype=float)
        first = _as_day(start)
        days = first + np.arange(y.size)
        self.end_ = days[-1]
        calendar = self.calendar or HolidayCalendar()
        self.flat_ = None
        if y.size < 2 * SEASON or not np.any(y):
            self.flat_ = float(y.mean()) if y.size else 0.0
            return self
        end_day = (self.end_ + 400).astype(date)
        pairs = calendar.days(days[0].astype(date), end_day)
        holidays_frame = pd.DataFrame(
            {
                "holiday": list(pairs.values()),
                "ds": pd.to_datetime(list(pairs)),
                "lower_window": -calendar.days_before,
                "upper_window": calendar.days_after,
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Prophet(
                weekly_seasonality=True,
                yearly_seasonality=y.size >= 365,
                daily_seasonality=False,
                holidays=holidays_frame if len(holidays_frame) else None,
                uncertainty_samples=0,
            )
            model.fit(pd.DataFrame({"ds": pd.to_datetime(days), "y": y}))
        self.model_ = model
        return self

    def predict(self, horizon: int) -> np.ndarray:
        if self.flat_ is not None:
            return np.full(horizon, self.flat_)
        future = pd.DataFrame({"ds": pd.to_datetime(self.end_ + 1 + np.arange(horizon))})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yhat = self.model_.predict(future)["yhat"].to_numpy(dtype=float)
        return np.clip(yhat, 0.0, None)


class Combination(Forecaster):
    """The mean of its members' forecasts (each fitted on the same history)."""

    def __init__(self, members: tuple[Forecaster, ...]) -> None:
        self.members = members

    @property
    def name(self) -> str:  # type: ignore[override]
        return "+".join(m.name for m in self.members)

    def fit(self, y: np.ndarray, start: date | np.datetime64 | None = None) -> Self:
        self.fitted_ = [type(m)(**_params(m)).fit(y, start) for m in self.members]
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.mean([m.predict(horizon) for m in self.fitted_], axis=0)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"members": (SeasonalNaive(), WeekdayMean())}]


def _params(model: Forecaster) -> dict[str, Any]:
    """The constructor arguments of an unfitted model (public attributes not ending in _)."""
    return {k: v for k, v in vars(model).items() if not k.endswith("_")}
