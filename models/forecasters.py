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

import logging
import warnings
from abc import ABC, abstractmethod
from datetime import date
from typing import Any, Self

import numpy as np
import pandas as pd

from models.calendar import HolidayCalendar

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
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        y = np.asarray(y[-self.max_days :], dtype=float)
        self.flat_ = None
        if len(y) < 2 * self.season + 2 or not np.any(y):
            self.flat_ = float(y.mean()) if y.size else 0.0
            return self
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = ExponentialSmoothing(
                y,
                trend=None,
                seasonal="add",
                seasonal_periods=self.season,
                initialization_method="heuristic",
            ).fit(use_brute=False)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        if self.flat_ is not None:
            return np.full(horizon, self.flat_)
        return np.clip(np.asarray(self.model_.forecast(horizon), dtype=float), 0.0, None)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"max_days": 120}, {"max_days": 365, "season": 14}]


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
        columns = [np.ones(days.size)]
        weekday = (days.astype("datetime64[D]").view("int64") + 3) % 7  # Monday = 0
        columns.extend((weekday == k).astype(float) for k in range(1, SEASON))
        day_of_year = (days - days.astype("datetime64[Y]")).astype(int)
        angle = 2.0 * np.pi * day_of_year / 365.25
        for k in range(1, self.yearly_terms_ + 1):
            columns.extend((np.sin(k * angle), np.cos(k * angle)))
        if self.trend_:
            columns.append((days - end).astype(float) / 365.25)
        if self.holiday_columns_:
            features, names = self.calendar_.features(days)
            index = {n: i for i, n in enumerate(names)}
            zero = np.zeros(days.size)
            columns.extend(
                features[:, index[n]] if n in index else zero for n in self.holiday_columns_
            )
        return np.column_stack(columns)

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
            features, names = self.calendar_.features(days)
            self.holiday_columns_ = [n for i, n in enumerate(names) if features[:, i].any()]
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
        for _ in range(iterations):
            eta = np.clip(x @ coef, -30.0, 30.0)
            mu = np.exp(eta)
            w = mu * weights
            z = eta + (y - mu) / mu
            gram = (x * w[:, None]).T @ x + np.diag(penalty)
            new = np.linalg.solve(gram, (x * w[:, None]).T @ z + penalty * target)
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
