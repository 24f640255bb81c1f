"""Accuracy and cost of our forecasting engine against seasonal naive, Prophet and AutoETS.

Usage (from the repository root; statsforecast lives in the ``bench`` dependency group):

    python3 -m uv run --group bench python benchmarks/accuracy.py
    python3 -m uv run --group bench python benchmarks/accuracy.py --only pbj --quick

Prints three markdown tables and writes them to ``benchmarks/out/accuracy.md`` (a run with
``--only``/``--quick`` to ``accuracy-<only>-quick.md`` and the like); progress goes to stderr.
``--quick`` (2 ambulance areas x 6 origins, 2 PBJ series x 2 origins, 100 cost series) is for
iterating on the script, not for quoting. The metric functions at the top are pure and
import nothing beyond numpy, so a test can import them without statsforecast or Prophet.

Methods (every one sees the same training days; every forecast and quantile is floored at 0):

- ours: ``forecast_many(history, horizon, calendar=HolidayCalendar(...)).with_quantiles()``,
  one call per origin (the series of one as_of, as a weekly run sees them: the engine pools
  model choice across the series of a call), one series per (area, origin),
  ``series_id = f"{area}|{origin:%Y-%m-%d}"``; the cost table makes one call for all 2000.
- seasonal naive: the last 7 days repeated; normal quantiles with sd = sd of the in-sample lag-7
  differences times sqrt(k + 1), k = (h - 1) // 7 (the textbook seasonal-naive interval).
- Prophet: ``Prophet()`` with defaults plus ``add_country_holidays`` ("GB" for the ambulance
  areas, "US" for PBJ); mean = ``yhat``, quantiles from ``predictive_samples`` (1000 draws);
  fitted in 2 worker processes. Prophet takes no subdivision here, so its English holidays lack
  Easter Monday and the August bank holiday (``holidays`` "GB" without subdiv "ENG").
- AutoETS: statsforecast ``AutoETS(season_length=7)``, mean = point forecast, quantiles from the
  prediction intervals at levels 60, 80, 90, 95 (level L gives quantiles (1 - L/100) / 2 and
  1 - (1 - L/100) / 2, so p025/p975 = 95, p10/p90 = 80, p80 = hi-60, p95 = hi-90).

The 7 quantile levels are 0.025, 0.1, 0.5, 0.8, 0.9, 0.95, 0.975 (columns p025 ... p975).
Scaled pinball = the mean over the 7 levels of the pinball loss, divided by the MASE scale.

Table 1, ambulance (data/real/ambulance_daily.csv), protocol of Monks et al. 2023: areas BNSSG,
Cornwall, Devon, Dorset, Gloucestershire, Somerset, Wiltshire (not Trust, not OOA). 41 origins
every 7 days from 2019-01-01 (last 2019-10-08); training from 2013-12-30 through the day before
the origin (expanding); horizon 84 days; holidays GB, subdivision ENG. For each (area, origin,
h), h = 7, 14, ..., 84: MASE = MAE over forecast days 1..h / the in-sample MAE of the lag-7
seasonal naive on the area's series through 2018-12-31 (fixed per area); coverage80 = share of
days 1..h with the actual strictly inside (p10, p90), coverage95 likewise with (p025, p975);
scaled pinball over days 1..h. All averaged over areas, origins and h. Two noise floors computed
from the data: "Poisson floor" = mean over areas of sqrt(2 mu / pi) / scale, mu = the area's
mean daily count in 2019 (the MASE of knowing the true mean if counts were Poisson); "in-sample
oracle" = per area a least-squares fit of log(count) on intercept, day of week, 6 yearly Fourier
pairs, linear trend, GB-ENG holiday dummies for the day, the day before and the day after, and
Dec 24/25/26/31 and Jan 1 dummies, fitted on 2017-01-01..2019-12-31 including the test year; its
2019 MAE / scale averaged over areas (what a calendar model could do even seeing the future).
Monks et al. used eight series (the seven areas plus the Trust total).

Table 2, nurse staffing (data/real/pbj_daily_*.csv, CMS PBJ): per facility and role (3 x RN,
LPN) two blocks, total hours = employee + contract hours and contract hours alone (intermittent).
Origins every 91 days from 2023-01-02 while origin + 91 days <= the series' last date; horizon
91; training = the 1096 days before the origin; holidays US. Facility 495241 has no rows for
2020Q1 and 2021Q3: rather than invent those days, its training windows start no earlier than the
day after its last gap (2021-10-01), so its early origins train on less than 1096 days. (The 61
unreported zero days of 495177 in 2020-11/12 are real rows and stay in.) Per (series, origin):
MASE = MAE over the 91 days / in-sample lag-7 seasonal-naive MAE of the training window; scaled
pinball likewise; coverage80 = share of days with p10 <= actual <= p90. Averaged over series and
origins; a (series, origin) whose training window has scale 0 is left out (counted in the table).
Then "ours / best peer" for MASE and pinball (goal <= 0.9).

Table 3, cost: 2000 synthetic series of 1096 days of daily shift counts (numpy seed 7: lognormal
level with median 4, from ~0.2 to ~40; weekday profile; yearly sinusoid of amplitude 0-20%; US
holidays at 60% of demand; negative-binomial noise), horizon 182. Wall seconds of our engine
(forecast_many + with_quantiles) and of AutoETS (n_jobs=-1, with the interval levels) on all
2000; Prophet on a random sample of 40 series with 2 workers, extrapolated to 2000. Goal: ours
<= 240 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from models import metrics

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "real"
OUT = ROOT / "benchmarks" / "out"

QUANTILES: tuple[float, ...] = (0.025, 0.1, 0.5, 0.8, 0.9, 0.95, 0.975)
QUANTILE_COLUMNS: tuple[str, ...] = ("p025", "p10", "p50", "p80", "p90", "p95", "p975")
P025, P10, P90, P975 = 0, 1, 4, 6  # positions of the interval bounds in QUANTILES
SEASON = 7

AMBULANCE_AREAS = (
    "BNSSG",
    "Cornwall",
    "Devon",
    "Dorset",
    "Gloucestershire",
    "Somerset",
    "Wiltshire",
)
AMBULANCE_HORIZON = 84
AMBULANCE_HORIZONS: tuple[int, ...] = tuple(range(7, AMBULANCE_HORIZON + 1, 7))
AMBULANCE_FIRST_ORIGIN = pd.Timestamp("2019-01-01")
AMBULANCE_ORIGINS = 41
AMBULANCE_SCALE_END = pd.Timestamp("2018-12-31")

PBJ_FACILITIES = ("335513", "495177", "495241")
PBJ_ROLES = ("LPN", "RN")
PBJ_HORIZON = 91
PBJ_FIRST_ORIGIN = pd.Timestamp("2023-01-02")
PBJ_TRAIN_DAYS = 1096

COST_SERIES = 2000
COST_DAYS = 1096
COST_HORIZON = 182
COST_PROPHET_SAMPLE = 40
COST_GOAL_SECONDS = 240.0

ETS_LEVELS: tuple[int, ...] = (60, 80, 90, 95)
PROPHET_WORKERS = 2


# --- metrics: pure functions of arrays ---------------------------------------------------------


def seasonal_naive_scale(y: np.ndarray, season: int = SEASON) -> float:
    """In-sample MAE of the lag-``season`` naive forecast (same unit as ``y``); nan if too short."""
    y = np.asarray(y, dtype=float)
    if len(y) <= season:
        return float("nan")
    return float(np.mean(np.abs(y[season:] - y[:-season])))


def pinball_loss(actual: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Pinball loss per day over the :data:`QUANTILES` (``[n, H]`` from ``[n, H, levels]``)."""
    return metrics.pinball_loss(actual, quantiles, QUANTILES)


def prefix_means(values: np.ndarray, horizons: Sequence[int]) -> np.ndarray:
    """Mean of ``values[:, :h]`` for each h in ``horizons``: ``[n, H]`` -> ``[n, len(h)]``."""
    values = np.asarray(values, dtype=float)
    h = np.asarray(horizons, dtype=int)
    if h.min() < 1 or h.max() > values.shape[1]:
        raise ValueError(f"horizons must lie in 1..{values.shape[1]}, got {list(horizons)}")
    return np.cumsum(values, axis=1)[:, h - 1] / h


def interval_hits(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, strict: bool
) -> np.ndarray:
    """1.0 where the actual lies inside the interval (open if ``strict``, else closed), else 0.0."""
    if strict:
        return ((actual > lower) & (actual < upper)).astype(float)
    return ((actual >= lower) & (actual <= upper)).astype(float)


def protocol_scores(
    actual: np.ndarray,
    mean: np.ndarray,
    quantiles: np.ndarray,
    scale: np.ndarray,
    horizons: Sequence[int],
    strict: bool,
) -> dict[str, float]:
    """MASE, scaled pinball and interval coverage averaged over forecasts and horizon prefixes.

    ``actual`` and ``mean`` are ``[n, H]`` (demand per day), ``quantiles`` ``[n, H, 7]`` at
    :data:`QUANTILES`, ``scale`` ``[n]`` the MASE denominator of each forecast. Every metric is
    first taken over days 1..h of each forecast, for each h in ``horizons``, then averaged over
    forecasts and h. Forecasts whose scale is not positive and finite are left out
    (``n_left_out``); ``n`` counts the forecasts used.
    """
    actual = np.asarray(actual, dtype=float)
    scale = np.asarray(scale, dtype=float)
    keep = np.isfinite(scale) & (scale > 0)
    a, s = actual[keep], scale[keep][:, None]
    m, q = np.asarray(mean, dtype=float)[keep], np.asarray(quantiles, dtype=float)[keep]
    if not keep.any():
        nan = float("nan")
        scores = {"mase": nan, "pinball": nan, "coverage80": nan, "coverage95": nan}
        return {**scores, "n": 0.0, "n_left_out": float(len(scale))}
    return {
        "mase": float(np.mean(prefix_means(np.abs(a - m), horizons) / s)),
        "pinball": float(np.mean(prefix_means(pinball_loss(a, q), horizons) / s)),
        "coverage80": float(
            np.mean(prefix_means(interval_hits(a, q[..., P10], q[..., P90], strict), horizons))
        ),
        "coverage95": float(
            np.mean(prefix_means(interval_hits(a, q[..., P025], q[..., P975], strict), horizons))
        ),
        "n": float(keep.sum()),
        "n_left_out": float((~keep).sum()),
    }


def ambulance_protocol_scores(
    actual: np.ndarray,
    mean: np.ndarray,
    quantiles: np.ndarray,
    scale: np.ndarray,
    horizons: Sequence[int] = AMBULANCE_HORIZONS,
) -> dict[str, float]:
    """Monks et al. 2023 scores: h = 7, 14, ..., 84 prefixes; coverage strictly inside.

    ``actual``/``mean`` ``[n, 84]`` dispatches per day, ``quantiles`` ``[n, 84, 7]``, ``scale``
    ``[n]`` (the area's in-sample lag-7 naive MAE through 2018-12-31, repeated per forecast).
    """
    return protocol_scores(actual, mean, quantiles, scale, horizons, strict=True)


def window_scores(
    actual: np.ndarray, mean: np.ndarray, quantiles: np.ndarray, scale: np.ndarray
) -> dict[str, float]:
    """PBJ scores: one window of the whole horizon per forecast; coverage with closed bounds."""
    horizon = np.asarray(actual).shape[1]
    return protocol_scores(actual, mean, quantiles, scale, (horizon,), strict=False)


def poisson_floor(mu: np.ndarray, scale: np.ndarray) -> float:
    """Mean over series of sqrt(2 mu / pi) / scale: the MASE of the true mean under Poisson."""
    return float(np.mean(np.sqrt(2.0 * np.asarray(mu, dtype=float) / np.pi) / scale))


# --- peers' math: pure functions ---------------------------------------------------------------


def seasonal_naive_forecast(
    y: np.ndarray, horizon: int, season: int = SEASON
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal naive mean ``[horizon]`` and normal quantiles ``[horizon, 7]``, floored at 0.

    sd = sample sd of the in-sample lag-``season`` differences, widened by sqrt(k + 1) with
    k = (h - 1) // season the number of whole seasons before day h.
    """
    y = np.asarray(y, dtype=float)
    steps = np.arange(horizon)
    mean = y[-season:][steps % season]
    sd = float(np.std(y[season:] - y[:-season], ddof=1))
    widen = np.sqrt(steps // season + 1.0)
    z = np.array([NormalDist().inv_cdf(q) for q in QUANTILES])
    quantiles = mean[:, None] + z[None, :] * sd * widen[:, None]
    return np.clip(mean, 0.0, None), np.clip(quantiles, 0.0, None)


def ets_column(q: float, model: str = "AutoETS") -> str:
    """statsforecast's column holding quantile ``q`` (0.5 is the point forecast)."""
    if abs(q - 0.5) < 1e-12:
        return model
    level = round(abs(1.0 - 2.0 * q) * 100)
    if level not in ETS_LEVELS:
        raise ValueError(f"quantile {q} needs interval level {level}, not in {ETS_LEVELS}")
    return f"{model}-{'lo' if q < 0.5 else 'hi'}-{level}"


def calendar_design(dates: pd.DatetimeIndex, holidays: set[date]) -> np.ndarray:
    """Design matrix of the in-sample oracle: one row per date, see the module docstring."""
    days = (dates - dates[0]).days.to_numpy(dtype=float)
    columns = [np.ones(len(dates))]
    columns += [np.asarray(dates.day_of_week == d, dtype=float) for d in range(1, 7)]
    for k in range(1, 7):
        angle = 2.0 * np.pi * k * days / 365.25
        columns += [np.sin(angle), np.cos(angle)]
    columns.append(days / 365.25)
    one_day = pd.Timedelta(days=1)
    for shift in (pd.Timedelta(0), one_day, -one_day):  # the day, the day before, the day after
        columns.append(np.array([d.date() in holidays for d in dates + shift], dtype=float))
    for month, day in ((12, 24), (12, 25), (12, 26), (12, 31), (1, 1)):
        columns.append(np.asarray((dates.month == month) & (dates.day == day), dtype=float))
    return np.column_stack(columns)


def oracle_mae(y: np.ndarray, design: np.ndarray, fit: np.ndarray, score: np.ndarray) -> float:
    """MAE on rows ``score`` of exp(least-squares fit of log y on ``design`` over rows ``fit``)."""
    log_y = np.log(np.maximum(np.asarray(y, dtype=float), 0.5))
    beta, *_ = np.linalg.lstsq(design[fit], log_y[fit], rcond=None)
    return float(np.mean(np.abs(np.exp(design[score] @ beta) - y[score])))


# --- cases: one per (area, origin) -------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One forecast to make: the training days before ``origin`` and what happened after."""

    series_id: str  # f"{area}|{origin:%Y-%m-%d}"
    area: str
    origin: pd.Timestamp  # first forecast day
    history: np.ndarray  # demand on the len(history) consecutive days before origin
    actual: np.ndarray  # demand on the horizon's days (empty where nothing is scored)
    scale: float  # MASE denominator (demand per day)

    @property
    def start(self) -> pd.Timestamp:
        """First training day."""
        return self.origin - pd.Timedelta(days=len(self.history))


@dataclass(frozen=True)
class Holidays:
    """Holiday settings of a dataset, for our engine and for Prophet."""

    country: str
    subdivision: str | None
    prophet_country: str


Forecast = tuple[np.ndarray, np.ndarray]  # mean [n, H], quantiles [n, H, 7]
Method = Callable[[list[Case], int, Holidays], Forecast]


def _load() -> str:
    """The machine's 1-minute load average, as text."""
    return f"{os.getloadavg()[0]:.1f}"


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _daily(frame: pd.DataFrame, column: str) -> pd.Series:
    """``column`` by date with every day from the first to the last (missing days are NaN)."""
    series = frame.set_index("date")[column].astype(float).sort_index()
    return series.reindex(pd.date_range(series.index[0], series.index[-1], freq="D"))


def ambulance_cases(frame: pd.DataFrame, areas: Sequence[str], origins: int) -> list[Case]:
    """Expanding-window cases of the Monks et al. protocol (see the module docstring)."""
    cases: list[Case] = []
    starts = pd.date_range(AMBULANCE_FIRST_ORIGIN, periods=origins, freq="7D")
    for area in areas:
        series = _daily(frame[frame["region"] == area], "dispatches")
        if series.isna().any():
            raise ValueError(f"ambulance area {area} has missing days")
        scale = seasonal_naive_scale(series[:AMBULANCE_SCALE_END].to_numpy())
        for origin in starts:
            end = origin + pd.Timedelta(days=AMBULANCE_HORIZON - 1)
            actual = series[origin:end].to_numpy()
            if len(actual) < AMBULANCE_HORIZON:
                raise ValueError(f"{area}: no {AMBULANCE_HORIZON} days of actuals from {origin}")
            cases.append(
                Case(
                    f"{area}|{origin:%Y-%m-%d}",
                    area,
                    origin,
                    series[series.index < origin].to_numpy(),
                    actual,
                    scale,
                )
            )
    return cases


def pbj_series(frames: Sequence[pd.DataFrame], block: str) -> dict[str, pd.Series]:
    """Daily ``total`` (employee + contract) or ``contract`` hours per ``facility/role``."""
    out: dict[str, pd.Series] = {}
    for frame in frames:
        for (facility, role), group in frame.groupby(["facility_id", "role"], sort=True):
            hours = group.assign(
                total=group["employee_hours"] + group["contract_hours"],
                contract=group["contract_hours"],
            )
            out[f"{facility}/{role}"] = _daily(hours, block)
    return out


def pbj_cases(series: dict[str, pd.Series], max_origins: int | None = None) -> list[Case]:
    """Rolling 1096-day windows every 91 days; training starts after a series' last gap."""
    cases: list[Case] = []
    step = pd.Timedelta(days=PBJ_HORIZON)
    for area, y in series.items():
        gaps = y.index[y.isna()]
        usable_from = gaps[-1] + pd.Timedelta(days=1) if len(gaps) else y.index[0]
        origin, made = PBJ_FIRST_ORIGIN, 0
        while origin + step <= y.index[-1] and (max_origins is None or made < max_origins):
            start = max(origin - pd.Timedelta(days=PBJ_TRAIN_DAYS), usable_from)
            history = y[start : origin - pd.Timedelta(days=1)].to_numpy()
            actual = y[origin : origin + step - pd.Timedelta(days=1)].to_numpy()
            scale = seasonal_naive_scale(history)
            cases.append(Case(f"{area}|{origin:%Y-%m-%d}", area, origin, history, actual, scale))
            origin, made = origin + step, made + 1
    return cases


def synthetic_cases(n_series: int, seed: int = 7) -> list[Case]:
    """``n_series`` synthetic daily shift-count series of 1096 days (see the module docstring)."""
    import holidays

    rng = np.random.default_rng(seed)
    dates = pd.date_range("2023-01-01", periods=COST_DAYS, freq="D")
    us = holidays.country_holidays("US", years=range(2023, 2027), observed=True)
    holiday = np.array([d.date() in us for d in dates])
    level = rng.lognormal(np.log(4.0), 1.4, n_series)
    weekday = np.clip(1.0 + rng.normal(0.0, 0.15, (n_series, 7)), 0.3, None)
    weekday[:, 5:] *= rng.uniform(0.5, 1.0, (n_series, 1))
    weekday /= weekday.mean(axis=1, keepdims=True)
    amplitude = rng.uniform(0.0, 0.2, n_series)
    phase = rng.uniform(0.0, 2.0 * np.pi, n_series)
    yearly = 1.0 + amplitude[:, None] * np.sin(
        2.0 * np.pi * dates.day_of_year.to_numpy()[None, :] / 365.25 + phase[:, None]
    )
    mu = level[:, None] * weekday[:, dates.day_of_week] * yearly * np.where(holiday, 0.6, 1.0)
    size = rng.uniform(3.0, 30.0, (n_series, 1))
    counts = rng.negative_binomial(size, size / (size + mu)).astype(float)
    origin = dates[-1] + pd.Timedelta(days=1)
    return [
        Case(f"s{i:04d}|{origin:%Y-%m-%d}", f"s{i:04d}", origin, counts[i], np.zeros(0), np.nan)
        for i in range(n_series)
    ]


# --- methods ---------------------------------------------------------------------------------


def history_frame(cases: Sequence[Case]) -> pd.DataFrame:
    """The long ``series_id, date, demand`` frame of every case's training days."""
    return pd.DataFrame(
        {
            "series_id": np.repeat([c.series_id for c in cases], [len(c.history) for c in cases]),
            "date": np.concatenate(
                [pd.date_range(c.start, periods=len(c.history), freq="D") for c in cases]
            ),
            "demand": np.concatenate([c.history for c in cases]).astype(float),
        }
    )


def from_long(
    frame: pd.DataFrame, cases: Sequence[Case], horizon: int, mean: str, quantiles: Sequence[str]
) -> Forecast:
    """Arrays ``[n, H]`` and ``[n, H, 7]`` in case order from a long ``series_id, date`` frame."""
    wanted = pd.MultiIndex.from_arrays(
        [
            np.repeat([c.series_id for c in cases], horizon),
            np.concatenate([pd.date_range(c.origin, periods=horizon, freq="D") for c in cases]),
        ],
        names=["series_id", "date"],
    )
    table = frame.set_index(["series_id", "date"])[[mean, *quantiles]].reindex(wanted)
    if table.isna().any().any():
        missing = table[table.isna().any(axis=1)].index[:3].tolist()
        raise ValueError(f"forecast lacks {table.isna().any(axis=1).sum()} rows, e.g. {missing}")
    values = np.clip(table.to_numpy(dtype=float), 0.0, None)
    n = len(cases)
    return values[:, 0].reshape(n, horizon), values[:, 1:].reshape(n, horizon, len(quantiles))


def run_ours(cases: list[Case], horizon: int, holidays: Holidays) -> Forecast:
    """Our engine: one ``forecast_many`` call per origin, as one weekly run would make.

    Series forecast together share the pooled part of model selection, so every call holds
    only the series of one origin (all areas at one as_of): no series' choice can see
    backtests that reach past its own origin.
    """
    from models.calendar import HolidayCalendar
    from models.forecasting import forecast_many

    calendar = HolidayCalendar(country=holidays.country, subdivision=holidays.subdivision)
    origins = sorted({c.origin for c in cases})
    _progress(f"ours: {len(cases)} series in {len(origins)} runs (one per origin), h={horizon}")
    frames = []
    for i, origin in enumerate(origins, start=1):
        batch = [c for c in cases if c.origin == origin]
        result = forecast_many(history_frame(batch), horizon=horizon, calendar=calendar)
        frames.append(result.with_quantiles())
        if i % max(1, len(origins) // 10) == 0 or i == len(origins):
            _progress(f"ours: {i}/{len(origins)} runs")
    return from_long(pd.concat(frames), cases, horizon, "mean", QUANTILE_COLUMNS)


def run_seasonal_naive(cases: list[Case], horizon: int, holidays: Holidays) -> Forecast:
    """Seasonal naive (lag 7) with its textbook normal interval."""
    pairs = [seasonal_naive_forecast(c.history, horizon) for c in cases]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def run_autoets(cases: list[Case], horizon: int, holidays: Holidays) -> Forecast:
    """statsforecast AutoETS(season_length=7) on every case, all cores."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    frame = history_frame(cases).rename(
        columns={"series_id": "unique_id", "date": "ds", "demand": "y"}
    )
    _progress(f"autoets: {len(cases)} series, horizon {horizon}")
    model = StatsForecast(models=[AutoETS(season_length=SEASON)], freq="D", n_jobs=-1)
    forecast = model.forecast(df=frame, h=horizon, level=list(ETS_LEVELS))
    forecast = forecast.rename(columns={"unique_id": "series_id", "ds": "date"})
    columns = [ets_column(q) for q in QUANTILES]
    return from_long(forecast, cases, horizon, "AutoETS", columns)


def _quiet_worker() -> None:
    """Silence cmdstanpy, Prophet's plotly notice and pandas' future warnings in a worker."""
    import pandas.errors

    logging.getLogger("cmdstanpy").disabled = True
    logging.getLogger("prophet.plot").disabled = True
    warnings.filterwarnings("ignore", category=pandas.errors.Pandas4Warning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _prophet_one(
    start: pd.Timestamp, y: np.ndarray, horizon: int, country: str, seed: int
) -> Forecast:
    """Fit Prophet (defaults + country holidays) to one series: mean [H], quantiles [H, 7]."""
    from prophet import Prophet

    _quiet_worker()
    days = pd.date_range(start, periods=len(y), freq="D")
    model = Prophet()
    model.add_country_holidays(country_name=country)
    model.fit(pd.DataFrame({"ds": days, "y": np.asarray(y, dtype=float)}))
    future = pd.DataFrame({"ds": pd.date_range(days[-1] + pd.Timedelta(days=1), periods=horizon)})
    samples = model.uncertainty_samples
    model.uncertainty_samples = 0  # yhat alone, without a second round of sampling
    mean = model.predict(future)["yhat"].to_numpy()
    model.uncertainty_samples = samples
    np.random.seed(seed)
    draws = model.predictive_samples(future)["yhat"]  # [H, samples]
    quantiles = np.quantile(draws, QUANTILES, axis=1).T
    return np.clip(mean, 0.0, None), np.clip(quantiles, 0.0, None)


def run_prophet(cases: list[Case], horizon: int, holidays: Holidays) -> Forecast:
    """Prophet per case, in :data:`PROPHET_WORKERS` processes."""
    n = len(cases)
    means = np.zeros((n, horizon))
    quantiles = np.zeros((n, horizon, len(QUANTILES)))
    every = max(1, n // 10)
    with ProcessPoolExecutor(max_workers=PROPHET_WORKERS, initializer=_quiet_worker) as pool:
        futures = {
            pool.submit(_prophet_one, c.start, c.history, horizon, holidays.prophet_country, i): i
            for i, c in enumerate(cases)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            means[futures[future]], quantiles[futures[future]] = future.result()
            if done % every == 0 or done == n:
                _progress(f"prophet: {done}/{n} fits")
    return means, quantiles


def timed(
    method: Method, cases: list[Case], horizon: int, holidays: Holidays
) -> tuple[Forecast, float]:
    """``method``'s forecast and its wall seconds."""
    started = time.perf_counter()
    forecast = method(cases, horizon, holidays)
    return forecast, time.perf_counter() - started


PEERS: dict[str, Method] = {
    "seasonal naive (lag 7)": run_seasonal_naive,
    "Prophet (defaults + country holidays)": run_prophet,
    "AutoETS (statsforecast, season 7)": run_autoets,
}
OURS = "ours (forecast_many)"


def run_all(
    cases: list[Case], horizon: int, holidays: Holidays
) -> dict[str, tuple[Forecast, float]]:
    """Every method on ``cases``, one after another (so that their timings do not overlap)."""
    results: dict[str, tuple[Forecast, float]] = {}
    for name, method in {OURS: run_ours, **PEERS}.items():
        results[name] = timed(method, cases, horizon, holidays)
        _progress(f"{name}: {results[name][1]:.1f} s, load {_load()}")
    return results


# --- tables ----------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats with 3 decimals, None as a dash."""

    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return "nan" if np.isnan(value) else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _stack_actual(cases: Sequence[Case]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([c.actual for c in cases]), np.array([c.scale for c in cases])


def ambulance_floors(frame: pd.DataFrame, areas: Sequence[str]) -> tuple[float, float]:
    """(Poisson floor, in-sample oracle) MASE over ``areas`` (see the module docstring)."""
    import holidays

    england = set(holidays.country_holidays("GB", subdiv="ENG", years=range(2016, 2021)))
    mus, scales, oracle = [], [], []
    for area in areas:
        series = _daily(frame[frame["region"] == area], "dispatches")
        scale = seasonal_naive_scale(series[:AMBULANCE_SCALE_END].to_numpy())
        window = series["2017-01-01":"2019-12-31"]
        dates = pd.DatetimeIndex(window.index)
        test = np.asarray(dates.year == 2019)
        design = calendar_design(dates, england)
        fit = np.ones(len(dates), dtype=bool)
        oracle.append(oracle_mae(window.to_numpy(), design, fit, test) / scale)
        mus.append(float(window[test].mean()))
        scales.append(scale)
    return poisson_floor(np.array(mus), np.array(scales)), float(np.mean(oracle))


def ambulance_section(quick: bool) -> str:
    """Table 1: the ambulance areas under the Monks et al. 2023 protocol."""
    frame = pd.read_csv(DATA / "ambulance_daily.csv", parse_dates=["date"])
    areas = AMBULANCE_AREAS[:2] if quick else AMBULANCE_AREAS
    cases = ambulance_cases(frame, areas, 6 if quick else AMBULANCE_ORIGINS)
    _progress(f"ambulance: {len(areas)} areas, {len(cases)} forecasts of {AMBULANCE_HORIZON} days")
    results = run_all(cases, AMBULANCE_HORIZON, Holidays("GB", "ENG", "GB"))
    actual, scale = _stack_actual(cases)
    rows: list[list[object]] = []
    for name, ((mean, quantiles), seconds) in results.items():
        s = ambulance_protocol_scores(actual, mean, quantiles, scale)
        rows.append(
            [name, s["mase"], s["pinball"], s["coverage80"], s["coverage95"], f"{seconds:.1f}"]
        )
    rows.append(["Monks et al. 2023 (published, 8 series)", 0.68, None, 0.847, 0.965, None])
    rows.append(["goal", "<= 0.63", None, "0.80 ± 0.03", "0.95 ± 0.02", None])
    poisson, oracle = ambulance_floors(frame, areas)
    rows.append(["noise floor: Poisson (true 2019 mean)", poisson, None, None, None, None])
    rows.append(["noise floor: in-sample oracle (fit incl. 2019)", oracle, None, None, None, None])
    header = ["method", "MASE", "scaled pinball", "cov80", "cov95", "seconds"]
    title = (
        f"## 1. Ambulance dispatches, Monks et al. 2023 protocol\n\n{len(areas)} areas x "
        f"{len(cases) // len(areas)} weekly origins from 2019-01-01, horizon 84, expanding "
        "window; scores averaged over areas, origins and h = 7, 14, ..., 84."
    )
    return f"{title}\n\n{markdown_table(header, rows)}"


def _ratio_row(rows: list[list[object]], ours: str) -> list[object]:
    """ "ours / best peer" for MASE (column 1) and pinball (column 2)."""
    mine = next(r for r in rows if r[0] == ours)
    peers = [r for r in rows if r[0] != ours]
    best_mase = min(float(r[1]) for r in peers)  # type: ignore[arg-type]
    best_pinball = min(float(r[2]) for r in peers)  # type: ignore[arg-type]
    return [
        "ours / best peer (goal <= 0.9)",
        float(mine[1]) / best_mase,  # type: ignore[arg-type]
        float(mine[2]) / best_pinball,  # type: ignore[arg-type]
        None,
        None,
    ]


def pbj_block(series: dict[str, pd.Series], label: str, quick: bool) -> str:
    """One block of table 2: every method on one kind of PBJ hours."""
    if quick:
        series = dict(list(series.items())[:2])
    cases = pbj_cases(series, 2 if quick else None)
    _progress(f"pbj {label}: {len(series)} series, {len(cases)} forecasts of {PBJ_HORIZON} days")
    results = run_all(cases, PBJ_HORIZON, Holidays("US", None, "US"))
    actual, scale = _stack_actual(cases)
    rows: list[list[object]] = []
    left_out = 0.0
    for name, ((mean, quantiles), seconds) in results.items():
        s = window_scores(actual, mean, quantiles, scale)
        rows.append([name, s["mase"], s["pinball"], s["coverage80"], f"{seconds:.1f}"])
        left_out = s["n_left_out"]
    rows.append(_ratio_row(rows, OURS))
    note = f"; {left_out:.0f} left out for scale 0" if left_out else ""
    header = ["method", "MASE", "scaled pinball", "cov80", "seconds"]
    return (
        f"### {label}: {len(series)} series, {len(cases)} forecasts{note}\n\n"
        f"{markdown_table(header, rows)}"
    )


def pbj_section(quick: bool) -> str:
    """Table 2: nurse hours of three nursing homes (CMS PBJ), total and contract."""
    frames = [
        pd.read_csv(DATA / f"pbj_daily_{f}.csv", parse_dates=["date"], dtype={"facility_id": str})
        for f in PBJ_FACILITIES
    ]
    title = (
        "## 2. Nursing-home nurse hours (CMS PBJ)\n\nOrigins every 91 days from 2023-01-02, "
        "horizon 91, training the 1096 days before the origin (495241: from 2021-10-01, after "
        "its last missing quarter); MASE and pinball scaled by the training window's lag-7 "
        "naive MAE; cov80 = share of days with p10 <= actual <= p90."
    )
    blocks = [
        pbj_block(pbj_series(frames, "total"), "Total hours (employee + contract)", quick),
        pbj_block(pbj_series(frames, "contract"), "Contract (agency) hours", quick),
    ]
    return "\n\n".join([title, *blocks])


def cost_section(quick: bool) -> str:
    """Table 3: wall seconds on synthetic daily shift counts."""
    n = 100 if quick else COST_SERIES
    sample_size = 4 if quick else COST_PROPHET_SAMPLE
    cases = synthetic_cases(n)
    us = Holidays("US", None, "US")
    _progress(f"cost: {n} synthetic series of {COST_DAYS} days, horizon {COST_HORIZON}")
    _, ours = timed(run_ours, cases, COST_HORIZON, us)
    ours_load = _load()
    _progress(f"ours: {ours:.1f} s, load {ours_load}")
    _, ets = timed(run_autoets, cases, COST_HORIZON, us)
    ets_load = _load()
    _progress(f"autoets: {ets:.1f} s, load {ets_load}")
    pick = np.random.default_rng(7).choice(n, size=sample_size, replace=False)
    _, prophet = timed(run_prophet, [cases[i] for i in sorted(pick)], COST_HORIZON, us)
    prophet_all = prophet * n / sample_size
    rows = [
        [OURS, n, f"{ours:.1f}", 1.0, ours_load],
        ["AutoETS (statsforecast, n_jobs=-1)", n, f"{ets:.1f}", ours / ets, ets_load],
        [
            f"Prophet, 2 workers: {sample_size} fitted in {prophet:.1f} s, extrapolated",
            n,
            f"{prophet_all:.0f}",
            ours / prophet_all,
            _load(),
        ],
        [
            f"goal: ours <= {COST_GOAL_SECONDS:.0f} s on {COST_SERIES}",
            COST_SERIES,
            None,
            None,
            None,
        ],
    ]
    header = ["method", "series", "seconds", "ours / method", "load at end"]
    title = (
        f"## 3. Cost\n\n{n} synthetic series of {COST_DAYS} daily shift counts (seed 7), "
        f"horizon {COST_HORIZON}, {os.cpu_count()} CPU cores; wall seconds including quantiles. "
        "Load at end = the machine's 1-minute load average when the method finished (above the "
        "core count, something else was competing for the CPUs)."
    )
    return f"{title}\n\n{markdown_table(header, rows)}"


def _require_engine() -> None:
    """Fail before any peer runs if our engine's API is not importable."""
    try:
        from models.calendar import HolidayCalendar  # noqa: F401
        from models.forecasting import forecast_many  # noqa: F401
    except ImportError as error:
        raise SystemExit(f"our engine is not importable ({error}); nothing to benchmark") from error


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["ambulance", "pbj", "cost"])
    parser.add_argument("--quick", action="store_true", help="a small run to check the script")
    args = parser.parse_args(argv)
    _require_engine()
    sections = {"ambulance": ambulance_section, "pbj": pbj_section, "cost": cost_section}
    started = time.perf_counter()
    texts = []
    for name, section in sections.items():
        if args.only in (None, name):
            texts.append(section(args.quick))
            print(texts[-1] + "\n", flush=True)
    mode = " (--quick: not for quoting)" if args.quick else ""
    header = f"# Forecast accuracy and cost{mode}\n\nRun {time.strftime('%Y-%m-%d %H:%M')}."
    OUT.mkdir(parents=True, exist_ok=True)
    path = (
        OUT / f"accuracy{'-' + args.only if args.only else ''}{'-quick' if args.quick else ''}.md"
    )
    path.write_text("\n\n".join([header, *texts]) + "\n")
    _progress(f"done in {time.perf_counter() - started:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
