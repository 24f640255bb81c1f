"""End to end: a pool sized from our forecast of a known process achieves the service level.

A region of 12 facilities whose daily RN requests follow a known process (weekday pattern,
negative-binomial noise, a shared day effect of cv 0.10) for three years. The engine forecasts
the next 28 days from the history alone, the regional paths carry the estimated shared day
effect and shared level error, and the pool of each day is sized with :func:`smallest_pool` at
95%. Then the future is drawn many times from the true process with nurses accepting at 35%,
and the share of days whose requests were all covered is the achieved service level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecasting import forecast_many
from models.regional import shared_day_cv, shared_level_cv, simulate_demand
from models.staffing import smallest_pool

FACILITIES, HISTORY, HORIZON = 12, 3 * 364, 28
WEEKDAY = np.array([1.1, 1.1, 1.05, 1.0, 1.0, 0.75, 0.7])
LEVELS = np.linspace(4.0, 12.0, FACILITIES)
SIZE, DAY_CV, ACCEPTANCE, SERVICE = 6.0, 0.10, 0.35, 0.95


def _true_process(rng: np.random.Generator, days: int, start: int, draws: int) -> np.ndarray:
    """Requests (draws, facilities, days) of the known process from day number ``start``."""
    weekday = WEEKDAY[(start + np.arange(days)) % 7]
    mean = LEVELS[:, None] * weekday[None, :]
    shared = rng.gamma(1 / DAY_CV**2, DAY_CV**2, (draws, 1, days))
    rate = rng.gamma(SIZE, mean[None] / SIZE, (draws, FACILITIES, days)) * shared
    return rng.poisson(rate)


def _one_replication(seed: int) -> float:
    """History -> our forecast -> pools -> the true future: the achieved service level."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-02")  # a Monday: day number 0 is weekday 0
    history = _true_process(rng, HISTORY, 0, 1)[0]
    dates = pd.date_range(start, periods=HISTORY, freq="D")
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"F{i:02d}|RN" for i in range(FACILITIES)], HISTORY),
            "facility_id": np.repeat([f"F{i:02d}" for i in range(FACILITIES)], HISTORY),
            "role": "RN",
            "region": "North",
            "date": np.tile(dates, FACILITIES),
            "demand": history.ravel().astype(float),
        }
    )
    result = forecast_many(frame[["series_id", "date", "demand"]], HORIZON)
    facts = frame.drop_duplicates("series_id").set_index("series_id")
    forecast = result.forecast.assign(
        facility_id=lambda f: f["series_id"].map(facts["facility_id"]),
        role="RN",
        region="North",
        booked=0,
    )
    day_cv = shared_day_cv(frame)
    assert day_cv.loc[("North", "RN")] == pytest.approx(DAY_CV, abs=0.04)
    level_cv = shared_level_cv(result.backtest_errors, frame)
    assert 0.0 <= level_cv.loc[("North", "RN")] < 0.1  # a stable process: small level errors
    paths = simulate_demand(
        forecast, None, n_paths=4000, seed=1, day_cv=day_cv, level_cv=level_cv
    ).paths
    regional = paths[("North", "RN")]
    pools = np.array([smallest_pool(regional[:, d], ACCEPTANCE, SERVICE) for d in range(HORIZON)])

    future = _true_process(rng, HORIZON, HISTORY, 20_000).sum(axis=1)  # (draws, days)
    accepted = rng.binomial(pools[None, :], ACCEPTANCE, future.shape)
    return float((accepted >= future).mean())


def test_pool_from_our_forecast_achieves_the_service_level() -> None:
    """Six independent agencies: on average within 1 point of 95%, each within 2.5 points.

    One agency's achieved level moves with its forecast's level error (about +-2%, shared by its
    facilities). The paths carry that error's *spread* (``shared_level_cv``, 0 to 5% here), not
    its sign, which no forecast knows, hence the wider band per agency. Measured:
    0.960, 0.955, 0.954, 0.964, 0.934, 0.968; mean 0.956 (without the level effect 0.955).
    """
    achieved = np.array([_one_replication(seed) for seed in range(1, 7)])
    assert SERVICE - 0.01 <= achieved.mean() <= SERVICE + 0.01, achieved
    assert (np.abs(achieved - SERVICE) <= 0.025).all(), achieved
