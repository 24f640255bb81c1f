"""Scores of earlier forecasts and pools against what came (models.track_record), hand-worked."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.track_record import (
    QUANTILE_COLUMNS,
    achieved_service_level,
    drift_flags,
    lead_band,
    score_forecasts,
    score_ratios,
    weekly_acceptance,
)

AS_OF = date(2026, 3, 2)  # a Monday


def _forecast(days: int, mean: float, low: float, high: float, p95: float) -> pd.DataFrame:
    dates = pd.date_range(AS_OF, periods=days)
    frame = pd.DataFrame(
        {
            "scored_run_id": "r1",
            "as_of": AS_OF,
            "facility_id": "F1",
            "role": "RN",
            "date": dates,
            "mean": mean,
        }
    )
    for column in QUANTILE_COLUMNS:
        frame[column] = mean
    frame["p10"], frame["p90"], frame["p95"] = low, high, p95
    frame["p975"] = max(p95, mean)
    return frame


def _actual(first: str, values: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "facility_id": "F1",
            "role": "RN",
            "date": pd.date_range(first, periods=len(values)),
            "demand": values,
        }
    )


def test_lead_bands() -> None:
    assert lead_band(np.array([1, 7, 8, 28, 29, 91, 92, 182, 183])).tolist() == [
        "1-7",
        "1-7",
        "8-28",
        "8-28",
        "29-91",
        "29-91",
        "92-182",
        "92-182",
        "",
    ]


def test_a_week_scored_by_hand() -> None:
    # Last week before as_of: 4 a day. This week: 2, 4, 6, 8, 4, 4, 0; forecast 4 a day with
    # [p10, p90] = [3, 6] and p95 = 7; day 8 onward is not realised yet.
    forecast = _forecast(10, mean=4.0, low=3.0, high=6.0, p95=7.0)
    actual = _actual("2026-02-23", [4] * 7 + [2, 4, 6, 8, 4, 4, 0])
    sums = score_forecasts(forecast, actual, ["facility_id", "role"])
    assert len(sums) == 1
    row = sums.iloc[0]
    assert row["lead_band"] == "1-7" and row["as_of"] == AS_OF and row["days"] == 7
    assert row["actual_total"] == 28 and row["forecast_total"] == 28
    assert row["abs_error"] == 2 + 0 + 2 + 4 + 0 + 0 + 4
    assert row["naive_abs_error"] == 12  # the naive forecast is also 4 a day
    assert row["in_p10_p90"] == 4  # 4, 6, 4, 4 (2, 8 and 0 are outside)
    assert row["under_p95"] == 6  # all but 8
    ratios = score_ratios(sums, ["facility_id", "role"]).iloc[0]
    assert ratios["bias"] == 0.0
    assert ratios["wape"] == pytest.approx(12 / 28)
    assert ratios["mae"] == pytest.approx(12 / 7)
    assert ratios["mase"] == pytest.approx(1.0)
    assert ratios["coverage_p10_p90"] == pytest.approx(4 / 7)
    assert ratios["coverage_p95"] == pytest.approx(6 / 7)
    # pinball on the day with demand 8: levels against (4, 3, 4, 4, 6, 7, 7)
    levels = np.array(list(QUANTILE_COLUMNS.values()))
    day = np.array([4, 3, 4, 4, 6, 7, 7], dtype=float)
    assert set(QUANTILE_COLUMNS) == {"p025", "p10", "p50", "p80", "p90", "p95", "p975"}
    expected = np.mean(np.maximum(levels * (8 - day), (levels - 1) * (8 - day)))
    one_day = score_forecasts(
        forecast[forecast["date"] == "2026-03-05"], actual, ["facility_id", "role"]
    )
    assert one_day.iloc[0]["pinball_total"] == pytest.approx(expected)


def test_sums_add_up_over_spans_and_bands() -> None:
    forecast = _forecast(40, mean=5.0, low=3.0, high=7.0, p95=8.0)
    rng = np.random.default_rng(2)
    actual = _actual("2026-02-23", rng.poisson(5, 7 + 35).tolist())
    sums = score_forecasts(forecast, actual, ["facility_id", "role"])
    # one row per band and Monday-start week, with its first and last day
    assert sums["lead_band"].tolist() == ["1-7", "8-28", "8-28", "8-28", "29-91"]
    assert sums["days"].tolist() == [7] * 5
    assert (sums["first_day"] == sums["week_start"]).all()
    assert (sums["last_day"] == sums["week_start"] + pd.Timedelta(days=6)).all()
    assert score_ratios(sums, ["lead_band"])["days"].tolist() == [7, 7, 21]
    whole = score_ratios(sums, ["facility_id"]).iloc[0]
    realised = actual["demand"].to_numpy()[7:]
    assert whole["days"] == 35
    assert whole["wape"] == pytest.approx(np.abs(realised - 5).sum() / realised.sum())
    assert whole["bias"] == pytest.approx(5 * 35 / realised.sum() - 1)


def test_days_not_yet_realised_or_without_a_naive_week_are_left_out() -> None:
    forecast = _forecast(14, mean=3.0, low=1.0, high=5.0, p95=6.0)
    actual = _actual("2026-02-27", [3] * 5)  # Fri..Tue: the naive week is incomplete
    sums = score_forecasts(forecast, actual, ["facility_id", "role"])
    assert sums.empty or int(sums["days"].sum()) == 0
    assert score_forecasts(forecast.iloc[0:0], actual, ["facility_id", "role"]).empty


def _pools(pool: int, cap: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": "north",
            "role": "RN",
            "scenario": "base",
            "week_start": [pd.Timestamp("2026-03-02")],
            "recommended_pool": pool,
            "service_level": 0.95,
            "max_shifts_per_week": cap,
        }
    )


def _region_demand(values: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": "north",
            "role": "RN",
            "date": pd.date_range("2026-03-02", periods=len(values)),
            "demand": values,
        }
    )


def test_a_pool_held_by_hand() -> None:
    # 10 nurses; the week's offers were accepted 3 times in 10 (a = 0.3). Demand 0, 1, 2, 3.
    accepted = pd.DataFrame(
        {
            "region": "north",
            "role": "RN",
            "week_start": [pd.Timestamp("2026-03-02")],
            "offers": 10,
            "accepted": 3,
        }
    )
    out = achieved_service_level(_pools(10), _region_demand([0, 1, 2, 3]), accepted)
    row = out.iloc[0]
    p_at_least = [1.0] + [1 - stats.binom.cdf(d - 1, 10, 0.3) for d in (1, 2, 3)]
    # by hand: P(X >= 1) = 1 - 0.7**10; P(X >= 2) = that - 10 * 0.3 * 0.7**9
    assert p_at_least[1] == pytest.approx(1 - 0.7**10)
    assert p_at_least[2] == pytest.approx(1 - 0.7**10 - 10 * 0.3 * 0.7**9)
    assert row["days"] == 4 and row["acceptance_rate"] == pytest.approx(0.3)
    assert row["covered"] == pytest.approx(sum(p_at_least))
    assert not row["over_cap"] and row["service_level"] == 0.95
    assert row["covered"] / row["days"] < 0.95  # 3 requests a day is a lot for 10 at 30%


def test_a_week_over_the_shift_cap_did_not_hold_and_a_week_without_offers_is_not_judged() -> None:
    accepted = pd.DataFrame(
        {
            "region": "north",
            "role": "RN",
            "week_start": [pd.Timestamp("2026-03-02")],
            "offers": 4,
            "accepted": 4,
        }
    )
    over = achieved_service_level(_pools(2, cap=3), _region_demand([2, 2, 2, 1]), accepted)
    assert bool(over.iloc[0]["over_cap"]) and over.iloc[0]["covered"] == 0.0  # 7 > 2 x 3
    held = achieved_service_level(_pools(2, cap=4), _region_demand([2, 2, 2, 1]), accepted)
    assert held.iloc[0]["covered"] == pytest.approx(4.0)  # everyone accepts: covered for sure
    none = achieved_service_level(
        _pools(2), _region_demand([1]), accepted.assign(offers=0, accepted=0)
    )
    assert none.empty
    assert math.isclose(float(held.iloc[0]["acceptance_rate"]), 1.0)


def test_offers_count_in_the_week_of_the_shift_on_the_facilitys_calendar() -> None:
    facilities = pd.DataFrame(
        {
            "facility_id": ["F1", "F2"],
            "region": ["north", "west"],
            "timezone": ["America/Chicago", "America/Los_Angeles"],
        }
    )
    offers = pd.DataFrame(
        {
            "facility_id": ["F1", "F1", "F2", "F2"],
            "role": "RN",
            # Monday 03:00 UTC is Sunday evening in Chicago: the week before
            "shift_start": pd.to_datetime(
                ["2026-03-09 03:00", "2026-03-09 15:00", "2026-03-09 15:00", "2026-03-10 15:00"],
                utc=True,
            ),
            "response": ["accepted", "declined", "accepted", "no_response"],
        }
    )
    weekly = weekly_acceptance(offers, facilities)
    assert weekly.to_dict("records") == [
        {
            "region": "north",
            "role": "RN",
            "week_start": date(2026, 3, 2),
            "offers": 1,
            "accepted": 1,
        },
        {
            "region": "north",
            "role": "RN",
            "week_start": date(2026, 3, 9),
            "offers": 1,
            "accepted": 0,
        },
        {
            "region": "west",
            "role": "RN",
            "week_start": date(2026, 3, 9),
            "offers": 2,
            "accepted": 1,
        },
    ]


def _region_weeks(weeks: int, actual: float, forecast: float, inside: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": "north",
            "role": "RN",
            "week_start": [date(2026, 1, 5) + pd.Timedelta(weeks=w) for w in range(weeks)],
            "days": 7,
            "actual_total": actual,
            "forecast_total": forecast,
            "abs_error": abs(actual - forecast),
            "naive_abs_error": 10.0,
            "pinball_total": 1.0,
            "in_p10_p90": inside,
            "under_p95": 7,
        }
    )


def _outcomes(weeks: int, covered: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": "north",
            "role": "RN",
            "week_start": [date(2026, 1, 5) + pd.Timedelta(weeks=w) for w in range(weeks)],
            "days": 7,
            "covered": covered,
            "service_level": 0.95,
        }
    )


def test_drift_is_flagged_outside_the_bands_and_not_on_too_few_weeks() -> None:
    none = pd.DataFrame(columns=_outcomes(1, 7).columns)
    steady = drift_flags(_region_weeks(10, 100, 103, 6), _outcomes(13, 7 * 0.95))
    assert steady.empty  # coverage 6/7 = 0.86, bias 3%, achieved = promised
    # the last 8 weeks: 12% high and only 3 days in 7 inside the interval
    drifted = drift_flags(
        pd.concat([_region_weeks(2, 100, 100, 6), _region_weeks(10, 100, 112, 3).iloc[2:]]),
        none,
    )
    assert drifted["measure"].tolist() == ["coverage_p10_p90", "bias"]
    assert drifted["weeks"].tolist() == [8, 8]
    assert drifted["value"].tolist() == pytest.approx([3 / 7, 0.12])
    assert "too narrow" in drifted["message"].iloc[0]
    assert "12% above" in drifted["message"].iloc[1]
    # achieved 0.91 against 0.95 promised: more than 3 points under
    short = drift_flags(pd.DataFrame(columns=steady.columns), _outcomes(13, 7 * 0.91))
    assert short[["measure", "weeks"]].to_dict("records") == [
        {"measure": "service_level", "weeks": 13}
    ]
    assert short["value"].iloc[0] == pytest.approx(0.91)
    assert short["low"].iloc[0] == pytest.approx(0.92)
    assert "91.0% of days" in short["message"].iloc[0]
    assert drift_flags(_region_weeks(7, 100, 150, 0), _outcomes(7, 0.0)).empty  # too few weeks
    # 20% high on a small region: 8 weeks x 10 shifts, 16 over, within 2 sd of Poisson noise
    small = drift_flags(_region_weeks(8, 10, 12, 6), none)
    assert small.empty


def test_pool_columns_pass_through_with_the_weeks_totals() -> None:
    accepted = pd.DataFrame(
        {
            "region": "north",
            "role": "RN",
            "week_start": [pd.Timestamp("2026-03-02")],
            "offers": 10,
            "accepted": 5,
        }
    )
    pools = _pools(4).assign(pool_run_id="r0", pool_as_of=date(2026, 2, 23))
    out = achieved_service_level(pools, _region_demand([1, 3, 2]), accepted)
    row = out.iloc[0]
    assert (row["pool_run_id"], row["pool_as_of"]) == ("r0", date(2026, 2, 23))
    assert (row["offers"], row["accepted"], row["actual_total"], row["peak_day"]) == (10, 5, 6, 3)
    assert row["week_start"] == date(2026, 3, 2)
