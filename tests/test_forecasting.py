"""The forecasting engine: selection, calibrated quantiles, fallbacks, and real-data accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import HolidayCalendar
from models.count_distribution import QUANTILE_COLUMNS, floored_quantiles
from models.forecasting import (
    EngineConfig,
    forecast_many,
    level_shift_start,
    seasonal_naive_scale,
)

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
START = pd.Timestamp("2023-01-02")  # a Monday


def _weekly_series(days: int = 400, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weekday = np.array([6, 6, 5, 5, 6, 3, 2], dtype=float) * scale
    return rng.poisson(np.tile(weekday, days // 7 + 1)[:days]).astype(float)


def _history(**series: np.ndarray) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame(
                {"series_id": sid, "date": pd.date_range(START, periods=len(y)), "demand": y}
            )
            for sid, y in series.items()
        ],
        ignore_index=True,
    )


def _one(y: np.ndarray, horizon: int = 28) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = forecast_many(_history(s=y), horizon)
    return result.with_quantiles(), result.evaluation


def test_selection_scores_every_candidate_and_keeps_the_best() -> None:
    out, evaluation = _one(_weekly_series(500))
    assert set(evaluation["model"]) == {name for name, _ in EngineConfig().candidates()}
    assert {"calendar_glm", "holt_winters", "calendar_glm+holt_winters"} <= set(evaluation["model"])
    chosen = evaluation[evaluation["selected"]]
    assert len(chosen) == 1
    assert chosen["mase"].iloc[0] == evaluation["mase"].min()
    assert chosen["model"].iloc[0] != "seasonal_naive"
    assert out["model"].iloc[0] == chosen["model"].iloc[0]
    assert 0.5 <= chosen["coverage80"].iloc[0] <= 1.0


def test_quantiles_are_ordered_counts_never_negative_and_calibrated() -> None:
    """Negative-binomial demand (size 3): the engine's p10-p90 covers ~80% of the future."""
    rng = np.random.default_rng(11)
    weekday = np.tile([8.0, 8, 7, 7, 8, 4, 3], 200)[:1000]
    r = 3.0
    draws = {f"s{i}": rng.negative_binomial(r, r / (r + weekday)).astype(float) for i in range(12)}
    histories = {sid: y[:910] for sid, y in draws.items()}
    out = forecast_many(_history(**histories), 90).with_quantiles()
    q = out[list(QUANTILE_COLUMNS)].to_numpy()
    assert (q >= 0).all() and (np.diff(q, axis=1) >= 0).all() and np.array_equal(q, q.round())
    actual = np.concatenate([y[910:] for y in draws.values()])
    inside = (actual >= out["p10"].to_numpy()) & (actual <= out["p90"].to_numpy())
    below_median = actual <= out["p50"].to_numpy()
    assert 0.74 <= inside.mean() <= 0.9  # discrete quantiles cover a little more than 80%
    assert 0.45 <= below_median.mean() <= 0.65


def test_fractional_series_get_continuous_quantiles() -> None:
    y = _weekly_series(400, seed=2) * 7.5 + 0.25  # hours, not counts
    out, _ = _one(y)
    q = out[list(QUANTILE_COLUMNS)].to_numpy()
    assert (q > 0).all() and (np.diff(q, axis=1) >= 0).all()
    assert not np.array_equal(q, q.round())


def test_fallback_three_days_of_history() -> None:
    out, evaluation = _one(np.array([2.0, 4.0, 3.0]))
    assert (out["model"] == "short_history").all() and evaluation.empty
    assert np.allclose(out["mean"], 3.0)
    assert (out["p975"] >= 8).all(), "a new facility's interval is wide"


def test_fallback_all_zero_and_closed_facility() -> None:
    out, _ = _one(np.zeros(200))
    assert (out["model"] == "inactive").all() and not out[list(QUANTILE_COLUMNS)].any().any()
    closed = np.concatenate([_weekly_series(300), np.zeros(60)])
    out, _ = _one(closed)
    assert (out["model"] == "inactive").all() and not out["mean"].any()


def test_fallback_intermittent_series_keeps_its_rate() -> None:
    """Most days zero (a rate of 0.15 shifts a day): mean near the rate, counts, not all zero."""
    y = np.random.default_rng(5).poisson(0.15, 700).astype(float)
    out, evaluation = _one(y, horizon=56)
    assert out["mean"].mean() == pytest.approx(0.15, abs=0.08)
    assert (out["p50"] == 0).all() and (out["p975"] >= 1).all()
    assert evaluation["selected"].sum() == 1


def test_fallback_level_shift_last_month() -> None:
    """A contract won 3 weeks ago doubles demand: the forecast follows the new level."""
    y = _weekly_series(400, seed=6)
    y[-21:] = _weekly_series(21, seed=7, scale=2.0)
    assert level_shift_start(y) is not None
    assert level_shift_start(_weekly_series(400, seed=6)) is None
    out, _ = _one(y)
    assert out["model"].iloc[0] == "level_shift"
    assert out["mean"].mean() == pytest.approx(2 * 33 / 7, rel=0.2)


def test_forecast_many_starts_each_series_at_start() -> None:
    history = _history(a=_weekly_series(300), b=_weekly_series(250, 1))
    start = START + pd.Timedelta(days=300)
    result = forecast_many(history, horizon=10, start=start)
    assert result.forecast.groupby("series_id")["date"].min().eq(start).all()
    assert len(result.forecast) == 20
    assert set(result.evaluation["series_id"]) == {"a", "b"}


def test_engine_config_rejects_unknown_models() -> None:
    with pytest.raises(ValueError, match="unknown model 'arima'"):
        EngineConfig(models=("seasonal_naive", "arima"))


def test_prophet_can_be_a_candidate() -> None:
    config = EngineConfig(models=("seasonal_naive", "prophet"), combinations=(), origins=1)
    result = forecast_many(_history(s=_weekly_series(200)), 14, config=config)
    assert set(result.evaluation["model"]) == {"seasonal_naive", "prophet"}


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


@settings(max_examples=25, deadline=None)
@given(
    y=st.lists(st.integers(0, 40), min_size=1, max_size=160),
    horizon=st.integers(1, 40),
)
def test_any_series_gets_a_sane_forecast(y, horizon) -> None:
    out, _ = _one(np.array(y, dtype=float), horizon)
    q = out[list(QUANTILE_COLUMNS)].to_numpy()
    assert len(out) == horizon
    assert np.isfinite(out["mean"]).all() and (out["mean"] >= 0).all()
    assert (q >= 0).all() and (np.diff(q, axis=1) >= 0).all()


def test_smoke_accuracy_on_real_ambulance_data() -> None:
    """CI smoke test of the benchmark protocol (2 areas, 4 origins): beats seasonal naive."""
    data = pd.read_csv(REAL / "ambulance_daily.csv", parse_dates=["date"])
    origins = pd.date_range("2019-01-01", periods=4, freq="70D")
    frames, actuals, scales, naive = [], {}, {}, {}
    for area in ("Cornwall", "Dorset"):
        s = data[data["region"] == area].set_index("date")["dispatches"].astype(float)
        train = s[:"2018-12-31"].to_numpy()
        scales[area] = seasonal_naive_scale(train)
        for origin in origins:
            sid = f"{area}|{origin:%Y-%m-%d}"
            past = s[s.index < origin]
            frames.append(
                pd.DataFrame({"series_id": sid, "date": past.index, "demand": past.to_numpy()})
            )
            actuals[sid] = s[origin : origin + pd.Timedelta(days=83)].to_numpy()
            naive[sid] = np.tile(past.to_numpy()[-7:], 12)
    calendar = HolidayCalendar("GB", "ENG")
    out = forecast_many(pd.concat(frames), 84, calendar=calendar).with_quantiles()
    mase, naive_mase, inside = [], [], []
    for sid, group in out.groupby("series_id"):
        scale = scales[sid.split("|")[0]]
        mase.append(np.mean(np.abs(actuals[sid] - group["mean"].to_numpy())) / scale)
        naive_mase.append(np.mean(np.abs(actuals[sid] - naive[sid])) / scale)
        inside.append(
            np.mean((actuals[sid] > group["p10"].to_numpy()) & (actuals[sid] < group["p90"]))
        )
    assert np.mean(mase) < 0.75 < np.mean(naive_mase)
    assert 0.7 <= np.mean(inside) <= 0.9


def test_intermittent_hours_keep_their_zeros() -> None:
    """Agency hours: zero on most days, 8-12 hours otherwise: p50 is 0, p95 is a shift."""
    rng = np.random.default_rng(8)
    y = np.where(rng.random(700) < 0.25, rng.uniform(8, 12, 700).round(2), 0.0)
    out, _ = _one(y, horizon=56)
    assert (out["p10"] == 0).all() and (out["p50"] == 0).all()
    assert (out["p95"] >= 6).mean() > 0.9  # holidays may differ (sparse evidence, shrunk)
    assert out["mean"].mean() == pytest.approx(0.25 * 10, rel=0.3)


def test_a_gap_no_longer_than_earlier_gaps_is_not_a_closure() -> None:
    from models.forecasting import is_inactive

    y = np.zeros(400)
    y[[10, 100, 190, 280]] = 5.0  # gaps of ~90 days, then 119 days of zeros
    assert not is_inactive(y)
    y2 = np.ones(400)
    y2[-60:] = 0
    assert is_inactive(y2)
