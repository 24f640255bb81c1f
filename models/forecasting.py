"""The forecasting engine: candidate models, selection by backtest, count-valued quantiles.

Data shapes (STYLE 1): history is a long frame ``series_id, date, demand`` (demand in shifts per
day, consecutive days per series); forecasts are long frames ``series_id, date, mean, model``
plus a negative-binomial ``size`` per series that carries the uncertainty.

How a series is forecast (first engine; issue "Forecasting engine" extends it):

1. Every candidate in :data:`CANDIDATES` is fitted on the history minus the last
   ``2 * backtest_days`` days and on the history minus the last ``backtest_days`` days, and
   predicts the next ``backtest_days`` days (two rolling origins).
2. Each is scored by MASE: mean absolute error divided by the in-sample mean absolute error of
   the lag-7 seasonal naive forecast. The lowest mean MASE wins (ties go to the simpler model).
3. Uncertainty: daily demand is negative binomial with the forecast mean and a size ``r``
   estimated from the winner's multi-step backtest errors (variance = m + m^2 / r; r = inf is
   Poisson). The first origin's errors size the interval scored on the second origin, so the
   reported coverage is out of sample.
4. The winner is refitted on the whole history and predicts the horizon.

Fallbacks: a series with less than ``MIN_BACKTEST_HISTORY`` days is forecast by the mean of
its history ("short_history"); a series with no demand in its last 8 weeks is forecast as zero
("inactive"). Nothing here does I/O or imports Prefect.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd

from models.count_distribution import QUANTILE_COLUMNS, floored_quantiles

SEASON = 7
MIN_BACKTEST_HISTORY = 8 * SEASON
INACTIVE_DAYS = 8 * SEASON


class Forecaster(ABC):
    """One model: the constructor stores parameters, ``fit`` learns, ``predict`` forecasts.

    ``fit`` never mutates its input; fitted state lives in attributes ending in ``_``.
    """

    name: str = "forecaster"

    @abstractmethod
    def fit(self, y: np.ndarray) -> Self:
        """Learn from daily demand ``y`` (shifts per day, consecutive days, oldest first)."""

    @abstractmethod
    def predict(self, horizon: int) -> np.ndarray:
        """Mean demand for the ``horizon`` days after the last fitted day (shifts, >= 0)."""

    @classmethod
    def test_params(cls) -> list[dict[str, object]]:
        """Constructor arguments the generic model tests use."""
        return [{}]


class SeasonalNaive(Forecaster):
    """Repeat the last week: each day's forecast is the demand 7 days before (the benchmark)."""

    name = "seasonal_naive"

    def fit(self, y: np.ndarray) -> Self:
        self.last_season_ = np.asarray(y[-SEASON:], dtype=float).copy()
        return self

    def predict(self, horizon: int) -> np.ndarray:
        reps = -(-horizon // SEASON)
        return np.tile(self.last_season_, reps)[:horizon]


class WeekdayMean(Forecaster):
    """Mean of the same weekday over the last ``weeks`` weeks: robust for small noisy counts."""

    name = "weekday_mean"

    def __init__(self, weeks: int = 8) -> None:
        self.weeks = weeks

    def fit(self, y: np.ndarray) -> Self:
        y = np.asarray(y, dtype=float)
        n = min(len(y) // SEASON, self.weeks) * SEASON
        recent = y[len(y) - n :].reshape(-1, SEASON)
        self.profile_ = recent.mean(axis=0)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        reps = -(-horizon // SEASON)
        return np.tile(self.profile_, reps)[:horizon]

    @classmethod
    def test_params(cls) -> list[dict[str, object]]:
        return [{"weeks": 4}, {"weeks": 8}]


class HoltWinters(Forecaster):
    """Holt-Winters exponential smoothing with additive weekly seasonality (statsmodels).

    Fitted on at most the last ``max_days`` days; the level follows trend and yearly swings.
    """

    name = "holt_winters"

    def __init__(self, max_days: int = 365) -> None:
        self.max_days = max_days

    def fit(self, y: np.ndarray) -> Self:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        y = np.asarray(y[-self.max_days :], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = ExponentialSmoothing(
                y,
                trend=None,
                seasonal="add",
                seasonal_periods=SEASON,
                initialization_method="heuristic",
            ).fit(use_brute=False)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.clip(np.asarray(self.model_.forecast(horizon), dtype=float), 0.0, None)

    @classmethod
    def test_params(cls) -> list[dict[str, object]]:
        return [{"max_days": 120}, {"max_days": 365}]


CANDIDATES: tuple[type[Forecaster], ...] = (SeasonalNaive, WeekdayMean, HoltWinters)
"""Candidates in order of simplicity (ties go to the earlier one)."""


def seasonal_naive_scale(y: np.ndarray) -> float:
    """In-sample mean absolute error of the lag-7 seasonal naive forecast (MASE denominator)."""
    y = np.asarray(y, dtype=float)
    if len(y) <= SEASON:
        return float(np.mean(np.abs(y))) or 1.0
    scale = float(np.mean(np.abs(y[SEASON:] - y[:-SEASON])))
    return scale if scale > 0 else (float(np.mean(np.abs(y))) or 1.0)


def negbin_size(actual: np.ndarray, mean: np.ndarray) -> float:
    """Negative-binomial size r from forecast errors by moments (inf = Poisson is enough)."""
    mean = np.clip(np.asarray(mean, dtype=float), 0.0, None)
    excess = float(np.mean((np.asarray(actual, dtype=float) - mean) ** 2 - mean))
    m = float(np.mean(mean))
    if excess <= 1e-9 or m <= 0:
        return float("inf")
    return max(m * m / excess, 0.2)


@dataclass(frozen=True)
class EngineResult:
    """Forecasts, uncertainty and backtest scores for a batch of series."""

    forecast: pd.DataFrame  # series_id, date, mean, model
    size: pd.Series  # negative-binomial size per series_id
    evaluation: pd.DataFrame  # series_id, model, mase, mae, coverage80, selected, n_backtest_days


def _backtest(y: np.ndarray, model: type[Forecaster], days: int) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts and actuals of two rolling origins, each ``days`` long (oldest first)."""
    predictions, actuals = [], []
    for end in (len(y) - 2 * days, len(y) - days):
        predictions.append(model().fit(y[:end]).predict(days))
        actuals.append(y[end : end + days])
    return np.stack(predictions), np.stack(actuals)


def _coverage80(actual: np.ndarray, mean: np.ndarray, size: float) -> float:
    bounds = floored_quantiles(mean, np.full(len(mean), size), np.zeros(len(mean)), (0.1, 0.9))
    return float(np.mean((actual >= bounds[:, 0]) & (actual <= bounds[:, 1])))


def forecast_series(
    y: np.ndarray, horizon: int, backtest_days: int = 28
) -> tuple[np.ndarray, str, float, list[dict[str, object]]]:
    """Forecast one series: (mean for ``horizon`` days, model name, size, evaluation rows)."""
    y = np.asarray(y, dtype=float)
    if len(y) >= INACTIVE_DAYS and not np.any(y[-INACTIVE_DAYS:]):
        return np.zeros(horizon), "inactive", float("inf"), []
    if len(y) < MIN_BACKTEST_HISTORY + 2 * backtest_days:
        level = float(np.mean(y)) if len(y) else 0.0
        size = negbin_size(y, np.full(len(y), level)) if len(y) > 1 else float("inf")
        return np.full(horizon, level), "short_history", size, []

    rows: list[dict[str, object]] = []
    best: tuple[float, str, type[Forecaster], float] | None = None
    for model in CANDIDATES:
        predicted, actual = _backtest(y, model, backtest_days)
        scale = seasonal_naive_scale(y[: len(y) - 2 * backtest_days])
        mae = float(np.mean(np.abs(actual - predicted)))
        size_first = negbin_size(actual[0], predicted[0])
        rows.append(
            {
                "model": model.name,
                "mase": mae / scale,
                "mae": mae,
                "coverage80": _coverage80(actual[1], predicted[1], size_first),
                "n_backtest_days": 2 * backtest_days,
                "size": negbin_size(actual.ravel(), predicted.ravel()),
            }
        )
        if best is None or mae / scale < best[0] - 1e-12:
            best = (mae / scale, model.name, model, rows[-1]["size"])  # type: ignore[assignment]
    assert best is not None
    _, name, model, size = best
    for row in rows:
        row["selected"] = row["model"] == name
        row.pop("size")
    mean = model().fit(y).predict(horizon)
    return np.clip(mean, 0.0, None), name, float(size), rows


def forecast_many(
    history: pd.DataFrame, horizon: int, backtest_days: int = 28, start: pd.Timestamp | None = None
) -> EngineResult:
    """Forecast every series in ``history`` (``series_id, date, demand``) for ``horizon`` days.

    Each series' forecast starts the day after its own last date, or at ``start`` when given
    (the run's as_of: a series that ended earlier, e.g. a closed facility, is carried forward
    to it).
    """
    missing = {"series_id", "date", "demand"} - set(history.columns)
    if missing:
        raise ValueError(f"history is missing column(s) {sorted(missing)}")
    frames: list[pd.DataFrame] = []
    sizes: dict[str, float] = {}
    evaluations: list[dict[str, object]] = []
    for sid, group in history.sort_values(["series_id", "date"]).groupby("series_id", sort=False):
        y = group["demand"].to_numpy(dtype=float)
        last = pd.Timestamp(group["date"].iloc[-1])
        first_day = start if start is not None else last + pd.Timedelta(days=1)
        gap = max(0, (first_day - last).days - 1)
        mean, model, size, rows = forecast_series(y, horizon + gap, backtest_days)
        frames.append(
            pd.DataFrame(
                {
                    "series_id": sid,
                    "date": pd.date_range(first_day, periods=horizon, freq="D"),
                    "mean": mean[gap:],
                    "model": model,
                }
            )
        )
        sizes[sid] = size
        evaluations.extend({"series_id": sid, **row} for row in rows)
    forecast = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["series_id", "date", "mean", "model"])
    )
    evaluation = pd.DataFrame(
        evaluations,
        columns=["series_id", "model", "mase", "mae", "coverage80", "selected", "n_backtest_days"],
    )
    return EngineResult(forecast, pd.Series(sizes, name="size", dtype=float), evaluation)


def with_quantiles(forecast: pd.DataFrame, size: pd.Series) -> pd.DataFrame:
    """Add ``p025 … p975`` columns (shifts) to a forecast frame from each series' size."""
    mean = forecast["mean"].to_numpy(dtype=float)
    sizes = forecast["series_id"].map(size).to_numpy(dtype=float)
    q = floored_quantiles(mean, sizes, np.zeros(len(mean)))
    return forecast.assign(**{c: q[:, i] for i, c in enumerate(QUANTILE_COLUMNS)})
