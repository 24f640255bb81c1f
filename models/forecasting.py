"""The forecasting engine: candidates, selection by rolling-origin backtests, calibrated quantiles.

Data shapes (STYLE 1): history is a long frame ``series_id, date, demand`` (demand per day,
consecutive days per series, >= 0; shifts in the weekly run); forecasts are long frames
``series_id, date, mean, model, size, zero_share`` (``size`` and ``zero_share`` turn the mean
into a distribution, see :func:`distribution_quantiles`); evaluations are one row per series
and candidate.

How a series is forecast:

1. **Fallbacks first** (each is the model name in the output):
   - ``inactive``: no demand on the last 8 weeks, a gap at least twice as long as any earlier
     one (a facility that closed; an intermittent series used to long gaps is not): zero.
   - ``level_shift``: the last 4 weeks differ from the 8 before by more than half and far beyond
     noise (a contract won or lost last month): the history before the shift is dropped, and
     the rest of the steps run on what is left (usually the short-history rule below); the
     model name is then ``level_shift`` or ``level_shift:<model>``.
   - ``short_history``: too little history for backtests (under ``MIN_FIT_DAYS`` + 14 days,
     e.g. a facility new this month, or 3 days): the mean of each weekday over the whole weeks
     seen (the plain mean under one week), with a wide dispersion (``SHORT_HISTORY_SIZE``).
   - All-zero history: zero. Intermittent series (most days zero) are selected by RMSSE (step
     3); the candidates include a flat recent rate, and amounts (hours) get a hurdle at zero.
2. **Backtests**: every candidate model (:data:`DEFAULT_MODELS`) and combination
   (:data:`DEFAULT_COMBINATIONS`, the mean of their members) is fitted at ``origins`` rolling
   origins ``origin_step`` days apart (four, a quarter apart: the last year), the last one
   ``backtest_days`` before the end, and forecasts the ``backtest_days`` after each origin
   (``backtest_days`` = the horizon, at least 14 and at most ``max_backtest_days``). Models that
   know no calendar borrow the calendar GLM's holiday effects (:func:`_fit_predict`).
3. **Selection** by MASE: mean absolute error over the backtests divided by the in-sample mean
   absolute error of the lag-7 seasonal naive forecast. Each series' score is shrunk toward the
   mean score of the series forecast in the same call (``pooling``, :func:`_select`); the lowest
   wins, ties go to the simpler. Intermittent series (more than half the recent days zero) are
   selected by RMSSE (root mean squared error on the same scale) instead, as in the M5
   competition: absolute error rewards forecasting zero every day, and staffing needs the mean
   rate, not the median day.
4. **Calibration**: the winner's backtest forecasts and actuals fix the series' dispersion: the
   negative-binomial size ``r`` (count series: variance ``m + m**2 / r``, integer quantiles) or
   the gamma shape (series with fractional values, e.g. hours: variance ``m**2 / shape``, with
   a hurdle at zero for the share of recent zero days) that minimises the mean pinball loss
   over :data:`QUANTILES` on the backtests, separately for each lead band of
   :data:`LEAD_BANDS` (never narrower further out). Quantiles are thus calibrated on
   out-of-sample errors, never negative, ordered, and count-valued for counts.
5. The winner is refitted on the whole history and forecasts the horizon.

Nothing here does I/O or imports Prefect or SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from models.calendar import HolidayCalendar
from models.count_distribution import QUANTILE_COLUMNS, QUANTILES, floored_quantiles
from models.forecasters import (
    SEASON,
    CalendarGLM,
    Forecaster,
    HoltWinters,
    ProphetModel,
    RecentMean,
    SeasonalNaive,
    WeekdayMean,
)
from models.metrics import pinball_loss

INACTIVE_DAYS = 8 * SEASON
MIN_FIT_DAYS = 8 * SEASON
MIN_BACKTEST_DAYS = 14
INTERMITTENT_ZERO_SHARE = 0.5
"""A series with more zero days than this share (last backtest window) is intermittent."""
MAX_ZERO_SHARE = 0.95
SHORT_HISTORY_SIZE = 2.0
"""NB size (gamma shape) for short histories: variance m + m**2/2, wide on purpose."""

HolidayPrior = tuple[tuple[str, float], ...]
"""Holiday effects (log units) pooled over the series of one call: column name -> effect."""

POOLED_HOLIDAY_RIDGE = 3.0
"""Days of data a pooled holiday effect weighs in one series' fit: a facility that saw a
holiday three times mostly keeps the pooled effect (its own three days are noisy)."""


def _calendar_glm(calendar: HolidayCalendar, prior: HolidayPrior) -> CalendarGLM:
    if prior:
        return CalendarGLM(
            calendar=calendar, holiday_ridge=POOLED_HOLIDAY_RIDGE, holiday_prior=prior
        )
    return CalendarGLM(calendar=calendar)


MODEL_FACTORIES: dict[str, Callable[[HolidayCalendar, HolidayPrior], Forecaster]] = {
    "seasonal_naive": lambda cal, prior: SeasonalNaive(),
    "weekday_mean": lambda cal, prior: WeekdayMean(),
    "recent_mean": lambda cal, prior: RecentMean(),
    "holt_winters": lambda cal, prior: HoltWinters(),
    "holt_winters_14": lambda cal, prior: HoltWinters(season=14),
    "calendar_glm": _calendar_glm,
    "prophet": lambda cal, prior: ProphetModel(calendar=cal),
}
"""Every model the engine can use, by name, in order of simplicity (ties go to the earlier)."""

DEFAULT_MODELS: tuple[str, ...] = (
    "seasonal_naive",
    "weekday_mean",
    "recent_mean",
    "holt_winters",
    "holt_winters_14",
    "calendar_glm",
)
"""Candidates of the weekly run. Prophet is available (``models=(..., "prophet")``) but off by
default: it costs ~25x the calendar GLM per fit and did not win in benchmarks/accuracy.py."""


def pooled_holiday_effects(
    histories: Sequence[tuple[np.ndarray, np.datetime64]], calendar: HolidayCalendar
) -> HolidayPrior:
    """Each holiday's effect pooled over many series, weighted by the information behind it.

    One calendar GLM per series (at least 8 weeks, not all zero); a holiday's pooled effect is
    the information-weighted mean of the series' own (lightly shrunk) effects.
    """
    total: dict[str, float] = {}
    weight: dict[str, float] = {}
    for y, start in histories:
        if y.size < MIN_FIT_DAYS or not np.any(y):
            continue
        model = CalendarGLM(calendar=calendar).fit(y, start)
        if model.zero_ or not model.holiday_columns_:
            continue
        effects = model.coef_[-len(model.holiday_columns_) :]
        for name, effect, info in zip(
            model.holiday_columns_, effects, model.holiday_info_, strict=True
        ):
            total[name] = total.get(name, 0.0) + float(effect) * float(info)
            weight[name] = weight.get(name, 0.0) + float(info)
    return tuple(sorted((n, total[n] / weight[n]) for n in total if weight[n] > 0))


CALENDAR_MODELS = frozenset({"calendar_glm", "prophet"})
"""Models that learn holiday effects themselves; the others borrow the calendar GLM's."""
HOLIDAY_KEY = "_holidays"

DEFAULT_COMBINATIONS: tuple[tuple[str, ...], ...] = (
    ("calendar_glm", "holt_winters"),
    ("holt_winters", "holt_winters_14"),
)
"""Combinations scored beside the single models: the mean of the members' forecasts."""

LEAD_BANDS: tuple[tuple[int, int], ...] = ((0, 30), (30, 60), (60, 10_000))
"""Lead-time bands (days after the last fitted day, 0-based) calibrated separately."""

_SIZE_GRID = np.concatenate([np.geomspace(0.3, 3000.0, 23), [np.inf]])
_SHAPE_GRID = np.geomspace(0.5, 20000.0, 24)
_NORMAL_Z = stats.norm.ppf(QUANTILES)


@dataclass(frozen=True)
class EngineConfig:
    """What the engine tries and how it backtests (days)."""

    calendar: HolidayCalendar = field(default_factory=HolidayCalendar)
    models: tuple[str, ...] = DEFAULT_MODELS
    combinations: tuple[tuple[str, ...], ...] = DEFAULT_COMBINATIONS
    origins: int = 4
    origin_step: int = 91
    max_backtest_days: int = 91
    pooling: float = 0.75

    def __post_init__(self) -> None:
        unknown = [
            m for m in (*self.models, *sum(self.combinations, ())) if m not in MODEL_FACTORIES
        ]
        if unknown:
            raise ValueError(
                f"unknown model {unknown[0]!r}; the engine knows {', '.join(MODEL_FACTORIES)}."
            )
        if self.origins < 1 or self.origin_step < 1:
            raise ValueError("origins and origin_step must be at least 1.")
        if not 0.0 <= self.pooling <= 1.0:
            raise ValueError(f"pooling must be between 0 and 1, got {self.pooling}.")

    def candidates(self) -> list[tuple[str, tuple[str, ...]]]:
        """(name, member models) in order of simplicity: single models, then combinations."""
        singles = [(m, (m,)) for m in self.models]
        combos = [("+".join(c), c) for c in self.combinations if set(c) <= set(self.models)]
        return singles + combos


BACKTEST_ERROR_COLUMNS = ["series_id", "origin", "days", "forecast", "actual"]


@dataclass(frozen=True)
class EngineResult:
    """Forecasts, uncertainty and backtest scores for a batch of series."""

    forecast: pd.DataFrame  # series_id, date, mean, model, size (dispersion that day), zero_share
    size: pd.Series  # dispersion per series_id in the first lead band (NB size or gamma shape)
    family: pd.Series  # 'negbin' or 'gamma' per series_id
    evaluation: pd.DataFrame  # series_id, model, mase, mae, coverage80, selected, n_backtest_days
    # series_id, origin (first backtest day), days, forecast and actual (totals over the days) of
    # the nested choose-then-forecast procedure: what models.regional.shared_level_cv reads.
    backtest_errors: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=BACKTEST_ERROR_COLUMNS)
    )

    def with_quantiles(self) -> pd.DataFrame:
        """The forecast with ``p025 … p975`` columns, in the units of the history."""
        return with_quantiles(self.forecast, self.size, self.family)


def seasonal_naive_scale(y: np.ndarray) -> float:
    """In-sample mean absolute error of the lag-7 seasonal naive forecast (MASE denominator)."""
    y = np.asarray(y, dtype=float)
    if len(y) <= SEASON:
        return float(np.mean(np.abs(y))) if len(y) and np.any(y) else 1.0
    scale = float(np.mean(np.abs(y[SEASON:] - y[:-SEASON])))
    return scale if scale > 0 else (float(np.mean(np.abs(y))) or 1.0)


def distribution_quantiles(
    mean: np.ndarray,
    size: np.ndarray,
    family: np.ndarray,
    levels: Sequence[float] = QUANTILES,
    zero_share: np.ndarray | None = None,
) -> np.ndarray:
    """Quantiles (n, len(levels)) of each row's distribution: integer for 'negbin' rows.

    'negbin' rows are counts with variance ``m + m**2 / size`` (``size = inf`` is Poisson).

    'gamma' rows are a hurdle model: no demand with probability ``zero_share`` (default 0),
    otherwise gamma with mean ``mean / (1 - zero_share)`` and shape ``size``, so the overall
    mean stays ``mean`` and intermittent amounts (agency hours, zero most days) keep their
    zeros in the lower quantiles.
    """
    mean = np.asarray(mean, dtype=float)
    size = np.asarray(size, dtype=float)
    zero = np.zeros(mean.size) if zero_share is None else np.asarray(zero_share, dtype=float)
    gamma = np.asarray(family) == "gamma"
    out = np.zeros((mean.size, len(levels)))
    counts = ~gamma
    if counts.any():
        out[counts] = floored_quantiles(
            mean[counts], size[counts], np.zeros(int(counts.sum())), tuple(levels)
        )
    rows = gamma & (mean > 0)
    if rows.any():
        shape = size[rows, None]
        pi = np.clip(zero[rows, None], 0.0, MAX_ZERO_SHARE)
        level = np.asarray(levels)[None, :]
        positive = np.clip((level - pi) / (1.0 - pi), 0.0, 1.0)
        q = stats.gamma.ppf(positive, shape, scale=mean[rows, None] / (1.0 - pi) / shape)
        out[rows] = np.where(level <= pi, 0.0, q)
    return out


def with_quantiles(
    forecast: pd.DataFrame, size: pd.Series, family: pd.Series | None = None
) -> pd.DataFrame:
    """Add ``p025 … p975`` columns to a forecast frame from each series' dispersion.

    A ``size`` column in ``forecast`` (per day, as the engine writes it) wins over ``size``;
    a ``zero_share`` column sets the hurdle of 'gamma' series (see :func:`distribution_quantiles`).
    """
    mean = forecast["mean"].to_numpy(dtype=float)
    sizes = (
        forecast["size"].to_numpy(dtype=float)
        if "size" in forecast.columns
        else forecast["series_id"].map(size).to_numpy(dtype=float)
    )
    families = (
        forecast["series_id"].map(family).to_numpy(dtype=object)
        if family is not None
        else np.full(len(forecast), "negbin", dtype=object)
    )
    zero = forecast["zero_share"].to_numpy(dtype=float) if "zero_share" in forecast else None
    q = distribution_quantiles(mean, sizes, families, zero_share=zero)
    return forecast.assign(**{c: q[:, i] for i, c in enumerate(QUANTILE_COLUMNS)})


def _fast_quantiles(
    mean: np.ndarray, size: float, family: str, zero_share: np.ndarray
) -> np.ndarray:
    """Quantiles at :data:`QUANTILES` for calibration: exact for small counts, else approximate.

    Counts with mean >= 30 use the Cornish-Fisher expansion of the negative binomial with a
    continuity correction (off by one shift on ~2% of rows, 150x faster than the exact
    quantile); smaller counts and gamma amounts are exact.
    """
    if family == "gamma":
        sizes, families = np.full(mean.size, size), np.full(mean.size, family)
        return distribution_quantiles(mean, sizes, families, zero_share=zero_share)
    out = np.empty((mean.size, len(QUANTILES)))
    large = mean >= 30.0
    small = ~large
    out[small] = floored_quantiles(
        mean[small], np.full(int(small.sum()), size), np.zeros(int(small.sum()))
    )
    m = mean[large, None]
    variance = m + (m * m / size if np.isfinite(size) else 0.0)
    sd = np.sqrt(variance)
    skew = (2.0 * m / size + 1.0) / sd if np.isfinite(size) else 1.0 / sd
    z = _NORMAL_Z[None, :]
    out[large] = np.maximum(np.ceil(m + sd * (z + (z * z - 1.0) * skew / 6.0) - 0.5), 0.0)
    return out


def is_inactive(y: np.ndarray) -> bool:
    """No demand on the last ``INACTIVE_DAYS`` days, a gap twice as long as any before it.

    A facility that closed or stopped using the agency stays at zero; an intermittent series
    whose history already had gaps this long is not declared inactive for one more.
    """
    y = np.asarray(y, dtype=float)
    nonzero = np.flatnonzero(y)
    if nonzero.size == 0:
        return True
    current_gap = y.size - 1 - nonzero[-1]
    if current_gap < INACTIVE_DAYS:
        return False
    earlier_gaps = np.diff(nonzero) - 1
    longest = int(earlier_gaps.max()) if earlier_gaps.size else 0
    return bool(current_gap >= 2 * longest)


def level_shift_start(y: np.ndarray) -> int | None:
    """Index where a recent level shift starts, or None.

    A shift is declared when the mean of the last 28 days differs from the mean of the 56 days
    before by more than 50% (and at least 1 per day) and by more than 5 standard errors of
    weekly totals; it starts where the cumulative deviation from the older mean peaks.
    """
    y = np.asarray(y, dtype=float)
    if y.size < 12 * SEASON:
        return None
    recent, before = y[-4 * SEASON :], y[-12 * SEASON : -4 * SEASON]
    old, new = before.mean(), recent.mean()
    if abs(new - old) < max(0.5 * old, 1.0):
        return None
    weekly = before.reshape(-1, SEASON).sum(axis=1)
    se = max(float(np.std(weekly, ddof=1)), np.sqrt(max(weekly.mean(), 1.0))) / SEASON
    if abs(new - old) < 5.0 * se * np.sqrt(1 / 4 + 1 / 8):
        return None
    window = y[-8 * SEASON :] - old
    cusum = np.cumsum(window[::-1])[::-1]  # deviation from the old mean from each day to the end
    offset = int(np.argmax(np.abs(cusum) if new > old else np.abs(np.minimum(cusum, 0))))
    return y.size - 8 * SEASON + offset


@dataclass
class _Backtest:
    """One series' backtests: forecasts per candidate (origins x days) and the actuals."""

    actual: np.ndarray
    predicted: dict[str, np.ndarray]
    scale: float
    ends: list[int] = field(default_factory=list)  # index of each origin's first day, ascending


def _fit_predict(
    members: tuple[str, ...],
    fitted: dict[str, Any],
    y: np.ndarray,
    start: np.datetime64,
    horizon: int,
    calendar: HolidayCalendar,
    prior: HolidayPrior = (),
) -> np.ndarray:
    """Mean forecast of ``members`` fitted on ``y``; ``fitted`` caches forecasts by model name.

    Models that know no calendar (all but the calendar GLM and Prophet) are multiplied by the
    calendar GLM's holiday factors, so every candidate forecasts Christmas as a holiday: a
    backtest window rarely holds one, so selection alone would not keep holiday effects.
    """
    for name in members:
        if name in fitted:
            continue
        if MODEL_FACTORIES[name] is _calendar_glm:
            # the very model the holiday factors come from: fitted once per history
            forecast = _holiday_glm(fitted, y, start, calendar, prior).predict(horizon)
        else:
            forecast = MODEL_FACTORIES[name](calendar, prior).fit(y, start).predict(horizon)
        if name not in CALENDAR_MODELS:
            glm = _holiday_glm(fitted, y, start, calendar, prior)
            forecast = forecast * glm.holiday_factor(horizon)
        fitted[name] = forecast
    return np.mean([fitted[m] for m in members], axis=0)


def _holiday_glm(
    fitted: dict[str, Any],
    y: np.ndarray,
    start: np.datetime64,
    calendar: HolidayCalendar,
    prior: HolidayPrior,
) -> CalendarGLM:
    """The calendar GLM fitted on ``y`` (cached in ``fitted``): the holiday factors' source."""
    if HOLIDAY_KEY not in fitted:
        fitted[HOLIDAY_KEY] = _calendar_glm(calendar, prior).fit(y, start)
    glm = fitted[HOLIDAY_KEY]
    assert isinstance(glm, CalendarGLM)
    return glm


def _backtest(
    y: np.ndarray, start: np.datetime64, config: EngineConfig, days: int, prior: HolidayPrior
) -> _Backtest | None:
    ends = [len(y) - days - j * config.origin_step for j in range(config.origins)]
    ends = sorted(e for e in ends if e >= MIN_FIT_DAYS)
    if not ends:
        return None
    candidates = config.candidates()
    predicted: dict[str, list[np.ndarray]] = {name: [] for name, _ in candidates}
    for end in ends:
        fitted: dict[str, Any] = {}
        for name, members in candidates:
            predicted[name].append(
                _fit_predict(members, fitted, y[:end], start, days, config.calendar, prior)
            )
    actual = np.stack([y[e : e + days] for e in ends])
    return _Backtest(
        actual,
        {name: np.clip(np.stack(p), 0.0, None) for name, p in predicted.items()},
        seasonal_naive_scale(y),
        ends,
    )


@dataclass
class _SeriesPlan:
    """What the engine knows and decides about one series, step by step."""

    series_id: str
    y: np.ndarray
    start: np.datetime64
    family: str
    model: str = ""
    mean: np.ndarray | None = None
    size: float = np.nan  # set by a fallback or by calibration (the first lead band)
    sizes: np.ndarray | None = None  # one per lead band, from calibration
    zero_share: float = 0.0  # hurdle of a 'gamma' series: share of recent days with none
    backtest: _Backtest | None = None
    intermittent: bool = False
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    origin_scores: dict[str, np.ndarray] = field(default_factory=dict)  # metric per origin
    selected: str = ""
    calibration: np.ndarray | None = None  # (origins, days): forecasts calibration is fitted on


def _prepare(
    sid: str,
    y: np.ndarray,
    start: np.datetime64,
    horizon: int,
    config: EngineConfig,
    prior: HolidayPrior = (),
) -> _SeriesPlan:
    """Apply the fallbacks; otherwise run and score the backtests of every candidate."""
    family = "negbin" if np.all(np.mod(y, 1.0) == 0) else "gamma"
    plan = _SeriesPlan(sid, y, start, family)
    if y.size == 0 or not np.any(y) or is_inactive(y):
        plan.model, plan.mean, plan.size = "inactive", np.zeros(horizon), np.inf
        return plan
    shift = level_shift_start(y)
    if shift is not None:
        plan.y, plan.start, plan.model = y[shift:], start + shift, "level_shift"
    y = plan.y
    if family == "gamma":
        plan.zero_share = float(np.mean(y[-config.max_backtest_days :] == 0))
    days = min(max(horizon, MIN_BACKTEST_DAYS), config.max_backtest_days, y.size - MIN_FIT_DAYS)
    plan.backtest = (
        _backtest(y, plan.start, config, days, prior) if days >= MIN_BACKTEST_DAYS else None
    )
    if plan.backtest is None:
        plan.model = plan.model or "short_history"
        plan.mean = WeekdayMean(weeks=len(y) // SEASON).fit(y).predict(horizon)
        plan.size = SHORT_HISTORY_SIZE
        return plan
    plan.intermittent = bool(np.mean(y[-config.max_backtest_days :] == 0) > INTERMITTENT_ZERO_SHARE)
    for name, predicted in plan.backtest.predicted.items():
        error = plan.backtest.actual - predicted
        mae = float(np.mean(np.abs(error)))
        plan.scores[name] = {
            "mae": mae,
            "mase": mae / plan.backtest.scale,
            "rmsse": float(np.sqrt(np.mean(error**2))) / plan.backtest.scale,
        }
        per_origin = (
            np.sqrt(np.mean(error**2, axis=1)) if plan.intermittent else np.mean(np.abs(error), 1)
        )
        plan.origin_scores[name] = per_origin / plan.backtest.scale
    return plan


def _select(plans: list[_SeriesPlan], pooling: float) -> None:
    """Choose each backtested series' model by its own score shrunk toward the batch's.

    One series' backtests are few and noisy (a level shift near an origin can crown the wrong
    model), so the score is ``(1 - pooling) * own + pooling * mean over the batch`` (series of
    the same kind: intermittent or not), with MASE, or RMSSE for intermittent series.
    """
    for intermittent in (False, True):
        group = [p for p in plans if p.backtest is not None and p.intermittent == intermittent]
        metric = "rmsse" if intermittent else "mase"
        if not group:
            continue
        names = list(group[0].scores)
        own = np.array([[p.scores[n][metric] for n in names] for p in group])
        pooled = np.mean(np.minimum(own, 1e6), axis=0)
        score = (1.0 - pooling) * own + pooling * pooled[None, :]
        for plan, row in zip(group, score, strict=True):
            plan.selected = names[int(np.argmin(row))]  # first minimum = simplest
            plan.model = f"{plan.model}:{plan.selected}" if plan.model else plan.selected
            plan.calibration = _nested_forecasts(plan, names, pooled, pooling)


def _nested_forecasts(
    plan: _SeriesPlan, names: list[str], pooled: np.ndarray, pooling: float
) -> np.ndarray:
    """Backtest forecasts of the whole choose-then-forecast procedure, origin by origin.

    At each origin the model is chosen on the *other* origins (with the same pooling), so the
    errors the dispersion is calibrated on include the cost of sometimes choosing wrong: the
    winner's own backtest errors are optimistic (it won partly by luck on those very days).
    """
    assert plan.backtest is not None
    per_origin = np.array([plan.origin_scores[n] for n in names])  # (candidates, origins)
    origins = per_origin.shape[1]
    rows = []
    for k in range(origins):
        others = np.delete(per_origin, k, axis=1) if origins > 1 else per_origin
        score = (1.0 - pooling) * others.mean(axis=1) + pooling * pooled
        rows.append(plan.backtest.predicted[names[int(np.argmin(score))]][k])
    return np.stack(rows)


def _fit_selected(
    plan: _SeriesPlan, horizon: int, config: EngineConfig, prior: HolidayPrior = ()
) -> None:
    """Refit the selected candidate on the whole (post-shift) history and forecast."""
    members = dict(config.candidates())[plan.selected]
    mean = _fit_predict(members, {}, plan.y, plan.start, horizon, config.calendar, prior)
    plan.mean = np.clip(mean, 0.0, None)


def _calibrate(plans: list[_SeriesPlan]) -> None:
    """Set each backtested plan's dispersion per lead band to the least pinball loss.

    For each band of :data:`LEAD_BANDS`, the grid value whose quantiles have the least mean
    pinball loss on the backtest days of that lead time wins. A band the backtests do not
    reach takes the previous band's value, and a later band is never narrower than an earlier
    one (uncertainty does not shrink with lead time).
    """
    todo = [p for p in plans if p.backtest is not None]
    for family, grid in (("negbin", _SIZE_GRID), ("gamma", _SHAPE_GRID)):
        group = [p for p in todo if p.family == family]
        if not group:
            continue
        chosen = np.full((len(group), len(LEAD_BANDS)), np.nan)
        coverage = np.full(len(group), np.nan)
        for band, (low, high) in enumerate(LEAD_BANDS):
            preds, actuals, owners = [], [], []
            for i, plan in enumerate(group):
                assert plan.backtest is not None
                assert plan.calibration is not None
                preds.append(plan.calibration[:, low:high].ravel())
                actuals.append(plan.backtest.actual[:, low:high].ravel())
                owners.append(np.full(preds[-1].size, i))
            pred, actual = np.concatenate(preds), np.concatenate(actuals)
            owner = np.concatenate(owners)
            zero = np.array([p.zero_share for p in group])[owner]
            rows = np.bincount(owner, minlength=len(group))
            if not rows.any():
                continue
            loss = np.empty((len(group), grid.size))
            inside80 = np.empty((len(group), grid.size))
            for j, value in enumerate(grid):
                q = _fast_quantiles(pred, float(value), family, zero)
                loss[:, j] = np.bincount(owner, pinball_loss(actual, q, QUANTILES), len(group))
                inside = (actual >= q[:, 1]) & (actual <= q[:, 4])
                inside80[:, j] = np.bincount(owner, inside, len(group))
            best = np.argmin(loss, axis=1)
            reached = rows > 0
            chosen[reached, band] = grid[best[reached]]
            if band == 0:
                coverage = inside80[np.arange(len(group)), best] / np.maximum(rows, 1)
        for i, plan in enumerate(group):
            sizes = pd.Series(chosen[i]).ffill().to_numpy()
            plan.sizes = np.minimum.accumulate(sizes)
            plan.size = float(plan.sizes[0])
            plan.scores[plan.selected]["coverage80"] = float(coverage[i])


def _evaluation(plans: list[_SeriesPlan]) -> pd.DataFrame:
    """One row per backtested series and candidate (the model_evaluation table's rows)."""
    rows = [
        {
            "series_id": plan.series_id,
            "model": name,
            "mase": score["mase"],
            "mae": score["mae"],
            "coverage80": score.get("coverage80"),
            "selected": name == plan.selected,
            "n_backtest_days": plan.backtest.actual.size if plan.backtest is not None else None,
        }
        for plan in plans
        for name, score in plan.scores.items()
    ]
    columns = ["series_id", "model", "mase", "mae", "coverage80", "selected", "n_backtest_days"]
    return pd.DataFrame(rows, columns=columns)


def _backtest_errors(plans: list[_SeriesPlan]) -> pd.DataFrame:
    """Per series and backtest origin: total nested forecast and total actual demand."""
    rows = []
    for plan in plans:
        if plan.backtest is None or plan.calibration is None:
            continue
        days = plan.backtest.actual.shape[1]
        for k, end in enumerate(plan.backtest.ends):
            rows.append(
                {
                    "series_id": plan.series_id,
                    "origin": pd.Timestamp(plan.start + end),
                    "days": days,
                    "forecast": float(plan.calibration[k].sum()),
                    "actual": float(plan.backtest.actual[k].sum()),
                }
            )
    return pd.DataFrame(rows, columns=BACKTEST_ERROR_COLUMNS)


def _size_by_day(plan: _SeriesPlan, gap: int, horizon: int) -> np.ndarray:
    """The plan's dispersion on each forecast day, by lead time (days after its last day)."""
    lead = gap + np.arange(horizon)
    if plan.sizes is None:
        return np.full(horizon, plan.size)
    band = np.searchsorted([high for _, high in LEAD_BANDS], lead, side="right")
    return plan.sizes[np.minimum(band, len(LEAD_BANDS) - 1)]


def _forecast_frame(
    plans: list[_SeriesPlan], first_days: list[pd.Timestamp], gaps: list[int], horizon: int
) -> pd.DataFrame:
    """The forecast rows of every plan, one block of ``horizon`` days per series, in order.

    Built column by column (one frame, not one per series and a concat: the same frame).
    """
    columns = ["series_id", "date", "mean", "model", "size", "zero_share"]
    if not plans:
        return pd.DataFrame(columns=columns)
    ranges: dict[pd.Timestamp, pd.DatetimeIndex] = {}
    for first_day in first_days:
        if first_day not in ranges:
            ranges[first_day] = pd.date_range(first_day, periods=horizon, freq="D")
    dates = ranges[first_days[0]].append([ranges[first_day] for first_day in first_days[1:]])
    means = [
        plan.mean[gap:] if plan.mean is not None else np.zeros(horizon)
        for plan, gap in zip(plans, gaps, strict=True)
    ]
    return pd.DataFrame(
        {
            "series_id": np.repeat(np.array([p.series_id for p in plans], dtype=object), horizon),
            "date": dates,
            "mean": np.concatenate(means).astype(float, copy=False),
            "model": np.repeat(np.array([p.model for p in plans], dtype=object), horizon),
            "size": np.concatenate(
                [_size_by_day(plan, gap, horizon) for plan, gap in zip(plans, gaps, strict=True)]
            ).astype(float, copy=False),
            "zero_share": np.repeat(np.array([p.zero_share for p in plans], dtype=float), horizon),
        },
        columns=columns,
    )


def forecast_many(
    history: pd.DataFrame,
    horizon: int,
    *,
    calendar: HolidayCalendar | None = None,
    config: EngineConfig | None = None,
    start: pd.Timestamp | date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EngineResult:
    """Forecast every series in ``history`` (``series_id, date, demand``) for ``horizon`` days.

    Each series' forecast starts the day after its own last date, or at ``start`` when given
    (the run's as_of: a series that ended earlier, e.g. a closed facility, is carried forward
    to it). ``calendar`` sets the holidays (default US); ``config`` everything else. Series
    forecast in one call share the pooled part of model selection (:func:`_select`): pass the
    series of one run together. ``progress(done, total)`` is called after each series'
    backtests.
    """
    missing = {"series_id", "date", "demand"} - set(history.columns)
    if missing:
        raise ValueError(f"history is missing column(s) {sorted(missing)}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 day, got {horizon}.")
    config = config or EngineConfig(calendar=calendar or HolidayCalendar())
    if calendar is not None and config.calendar != calendar:
        config = replace(config, calendar=calendar)
    ordered = history.sort_values(["series_id", "date"])
    groups = list(ordered.groupby("series_id", sort=False))
    plans: list[_SeriesPlan] = []
    first_days: list[pd.Timestamp] = []
    gaps: list[int] = []
    with threadpool_limits(1):  # many tiny matrix solves: BLAS threads would only contend
        prior = pooled_holiday_effects(
            [
                (g["demand"].to_numpy(dtype=float), np.datetime64(g["date"].iloc[0].date(), "D"))
                for _, g in groups
            ],
            config.calendar,
        )
        for done, (sid, group) in enumerate(groups, start=1):
            dates = pd.DatetimeIndex(group["date"])
            last = dates[-1]
            first_day = pd.Timestamp(start) if start is not None else last + pd.Timedelta(days=1)
            gap = max(0, (first_day - last).days - 1)
            first = np.datetime64(dates[0].date(), "D")
            y = group["demand"].to_numpy(dtype=float)
            plans.append(_prepare(str(sid), y, first, horizon + gap, config, prior))
            first_days.append(first_day)
            gaps.append(gap)
            if progress is not None:
                progress(done, len(groups))
        _select(plans, config.pooling)
        for plan, gap in zip(plans, gaps, strict=True):
            if plan.mean is None:
                _fit_selected(plan, horizon + gap, config, prior)
        _calibrate(plans)
    forecast = _forecast_frame(plans, first_days, gaps, horizon)
    size = pd.Series({p.series_id: p.size for p in plans}, name="size", dtype=float)
    family = pd.Series({p.series_id: p.family for p in plans}, name="family", dtype=object)
    return EngineResult(forecast, size, family, _evaluation(plans), _backtest_errors(plans))
