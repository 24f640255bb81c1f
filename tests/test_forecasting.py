"""The forecasting engine: one contract for every model, fallbacks, quantiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.count_distribution import QUANTILE_COLUMNS, floored_quantiles
from models.forecasting import (
    CANDIDATES,
    SeasonalNaive,
    forecast_many,
    forecast_series,
    negbin_size,
    with_quantiles,
)


def _weekly_series(days: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weekday = np.array([6, 6, 5, 5, 6, 3, 2], dtype=float)
    return rng.poisson(np.tile(weekday, days // 7 + 1)[:days]).astype(float)


@pytest.mark.parametrize(("model", "params"), [(m, p) for m in CANDIDATES for p in m.test_params()])
def test_every_model_keeps_the_contract(model, params) -> None:
    y = _weekly_series()
    original = y.copy()
    fitted = model(**params).fit(y)
    forecast = fitted.predict(30)
    assert np.array_equal(y, original), "fit must not mutate its input"
    assert forecast.shape == (30,)
    assert np.all(forecast >= 0) and np.all(np.isfinite(forecast))
    assert [k for k in vars(fitted) if k.endswith("_")], "fitted state ends in _"


def test_seasonal_naive_repeats_the_last_week() -> None:
    y = np.arange(14, dtype=float)
    assert list(SeasonalNaive().fit(y).predict(9)) == [7, 8, 9, 10, 11, 12, 13, 7, 8]


def test_selection_prefers_a_better_model_than_naive_on_noisy_counts() -> None:
    mean, model, size, rows = forecast_series(_weekly_series(500), horizon=14)
    scores = {r["model"]: r["mase"] for r in rows}
    assert model != "seasonal_naive"
    assert scores[model] == min(scores.values()) < scores["seasonal_naive"]
    assert sum(r["selected"] for r in rows) == 1
    assert size > 5  # Poisson-like data: little overdispersion


def test_fallbacks_short_history_and_inactive() -> None:
    mean, model, _, rows = forecast_series(np.array([2.0, 4.0, 3.0]), horizon=5)
    assert model == "short_history" and np.allclose(mean, 3.0) and rows == []
    y = np.concatenate([_weekly_series(200), np.zeros(60)])
    mean, model, _, _ = forecast_series(y, horizon=5)
    assert model == "inactive" and not mean.any()


def test_forecast_many_starts_each_series_at_start_and_adds_quantiles() -> None:
    dates = pd.date_range("2024-01-01", periods=300, freq="D")
    history = pd.concat(
        [
            pd.DataFrame({"series_id": "a", "date": dates, "demand": _weekly_series(300)}),
            pd.DataFrame({"series_id": "b", "date": dates[:250], "demand": _weekly_series(250, 1)}),
        ]
    )
    start = dates[-1] + pd.Timedelta(days=1)
    result = forecast_many(history, horizon=10, start=start)
    assert result.forecast.groupby("series_id")["date"].min().eq(start).all()
    assert len(result.forecast) == 20
    out = with_quantiles(result.forecast, result.size)
    q = out[list(QUANTILE_COLUMNS)].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all() and (q >= 0).all()
    assert set(result.evaluation["series_id"]) == {"a", "b"}


def test_negbin_size_recovers_overdispersion() -> None:
    rng = np.random.default_rng(1)
    r, m = 4.0, 10.0
    draws = rng.negative_binomial(r, r / (r + m), size=20000)
    assert negbin_size(draws, np.full(len(draws), m)) == pytest.approx(r, rel=0.1)
    assert negbin_size(np.full(10, 3.0), np.full(10, 3.0)) == float("inf")


@settings(max_examples=60, deadline=None)
@given(
    mean=st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=20),
    size=st.one_of(st.just(float("inf")), st.floats(0.2, 1000)),
)
def test_quantiles_are_ordered_counts_and_never_negative(mean, size) -> None:
    q = floored_quantiles(np.array(mean), np.full(len(mean), size), np.zeros(len(mean)))
    assert (q >= 0).all()
    assert (np.diff(q, axis=1) >= 0).all()
    assert np.array_equal(q, np.round(q))
