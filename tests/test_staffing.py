"""Staffing decisions: exact hand-worked cases, properties and one Monte Carlo check."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from models.regional import simulate_demand
from models.staffing import (
    StaffingParams,
    acceptance_by_group,
    estimate_acceptance,
    estimate_attrition,
    hiring_plan,
    holiday_coverage,
    on_call_pool,
    pool_coverage,
    recruiting_target,
    smallest_pool,
)

# --- smallest_pool ------------------------------------------------------------------------------


def test_deterministic_demand_exact() -> None:
    # P(Bin(10, .5) >= 3) = 0.9453 < 0.95 <= P(Bin(11, .5) >= 3) = 0.9673
    assert smallest_pool(np.array([3] * 5), 0.5, 0.95) == 11
    assert pool_coverage(np.array([3]), 10, 0.5) == pytest.approx(0.9453, abs=1e-4)
    assert pool_coverage(np.array([3]), 11, 0.5) == pytest.approx(0.9673, abs=1e-4)


def test_pool_coverage_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    demand = rng.poisson(30, 300)
    for pool in (0, 1, 29, 60, 90, 200):
        for a in (0.2, 0.5, 1.0):
            expected = float(np.mean(stats.binom.sf(demand - 1, pool, a)))
            assert pool_coverage(demand, pool, a) == pytest.approx(expected, abs=1e-12)


def test_no_demand_needs_no_pool() -> None:
    assert smallest_pool(np.zeros(100, dtype=np.int32), 0.3, 0.99) == 0
    # 95 of 100 days without demand already meet 0.95
    assert smallest_pool(np.array([0] * 95 + [4] * 5), 0.3, 0.95) == 0


def test_certain_acceptance_gives_the_demand_quantile() -> None:
    demand = np.arange(100)
    assert smallest_pool(demand, 1.0, 0.95) == 94  # P(D <= 94) = 0.95 exactly
    rng = np.random.default_rng(2)
    demand = rng.poisson(12, 500)
    for level in (0.5, 0.8, 0.9, 0.95):
        expected = np.quantile(demand, level, method="inverted_cdf")
        assert smallest_pool(demand, 1.0, level) == expected


def test_mixture_of_demands() -> None:
    # half the days 0, half 2; a = 0.5: P(cover) = 0.5 + 0.5 P(Bin(N, .5) >= 2) >= 0.9
    # needs P(Bin(N, .5) >= 2) >= 0.8: N=4 gives 11/16 = 0.6875, N=5 gives 26/32 = 0.8125
    assert smallest_pool(np.array([0, 2]), 0.5, 0.9) == 5


@pytest.mark.parametrize(
    ("demand", "a", "sl"),
    [
        (np.array([1, -1]), 0.5, 0.9),
        (np.array([1.5]), 0.5, 0.9),
        (np.array([], dtype=int), 0.5, 0.9),
        (np.array([1]), 0.0, 0.9),
        (np.array([1]), 0.5, 1.0),
    ],
)
def test_smallest_pool_rejects_bad_input(demand: np.ndarray, a: float, sl: float) -> None:
    with pytest.raises(ValueError):
        smallest_pool(demand, a, sl)


demand_samples = st.lists(st.integers(0, 40), min_size=1, max_size=60).map(np.array)


@settings(max_examples=50, deadline=None)
@given(
    demand=demand_samples,
    a=st.floats(0.05, 1.0),
    levels=st.tuples(st.floats(0.01, 0.99), st.floats(0.01, 0.99)).map(sorted),
)
def test_higher_service_level_never_shrinks_the_pool(demand, a: float, levels) -> None:
    low, high = levels
    assert smallest_pool(demand, a, low) <= smallest_pool(demand, a, high)


@settings(max_examples=50, deadline=None)
@given(
    demand=demand_samples,
    rates=st.tuples(st.floats(0.05, 1.0), st.floats(0.05, 1.0)).map(sorted),
    sl=st.floats(0.01, 0.99),
)
def test_higher_acceptance_never_grows_the_pool(demand, rates, sl: float) -> None:
    low, high = rates
    assert smallest_pool(demand, high, sl) <= smallest_pool(demand, low, sl)


@settings(max_examples=50, deadline=None)
@given(demand=demand_samples, a=st.floats(0.05, 1.0), sl=st.floats(0.01, 0.99))
def test_smallest_pool_is_the_smallest(demand, a: float, sl: float) -> None:
    n = smallest_pool(demand, a, sl)
    assert pool_coverage(demand, n, a) >= sl - 1e-9
    if n > 0:
        assert pool_coverage(demand, n - 1, a) < sl


def test_monte_carlo_service_level_is_achieved() -> None:
    """Poisson(5) demand, a = 0.4, sl = 0.9: simulate calls with the recommended pool."""
    rng = np.random.default_rng(11)
    planning = rng.poisson(5.0, 20_000)
    pool = smallest_pool(planning, 0.4, 0.9)
    k = np.arange(60)
    exact = float(stats.poisson.pmf(k, 5.0) @ stats.binom.sf(k - 1, pool, 0.4))
    assert exact >= 0.9 and pool == 22  # P(cover | N=21) = 0.890, P(cover | N=22) = 0.909

    demand = rng.poisson(5.0, 20_000)
    accepted = rng.binomial(pool, 0.4, 20_000)
    achieved = float((accepted >= demand).mean())
    assert achieved >= 0.9 - 0.015
    assert abs(achieved - 0.9) <= 0.015


# --- on_call_pool -------------------------------------------------------------------------------


def test_weekly_cap_binds() -> None:
    # demand 2 every day, a = 1: each day needs 2 nurses, the week 14 shifts / 4 = 4 nurses
    dates = pd.date_range("2026-01-05", periods=14)  # two full Monday-start weeks
    params = StaffingParams(service_level=0.95, acceptance_rate=1.0, max_shifts_per_week=4)
    weeks = on_call_pool(np.full((20, 14), 2, dtype=np.int32), dates, params)
    assert weeks["week_start"].tolist() == [pd.Timestamp("2026-01-05"), pd.Timestamp("2026-01-12")]
    assert weeks["daily_pool"].tolist() == [2, 2]
    assert weeks["weekly_pool"].tolist() == [4, 4]
    assert weeks["recommended_pool"].tolist() == [4, 4]
    assert weeks["weekly_demand_mean"].tolist() == [14.0, 14.0]
    assert weeks["peak_day_p95"].tolist() == [2.0, 2.0]


def test_partial_weeks_use_the_days_present() -> None:
    dates = pd.date_range("2026-01-07", periods=7)  # Wednesday to Tuesday
    params = StaffingParams(service_level=0.95, acceptance_rate=1.0, max_shifts_per_week=4)
    weeks = on_call_pool(np.full((10, 7), 2, dtype=np.int32), dates, params)
    assert weeks["days_in_week"].tolist() == [5, 2]
    assert weeks["weekly_pool"].tolist() == [3, 1]  # ceil(10 / 4), ceil(4 / 4)
    assert weeks["recommended_pool"].tolist() == [3, 2]


def test_daily_constraint_binds_and_columns() -> None:
    dates = pd.date_range("2026-01-05", periods=7)
    paths = np.zeros((100, 7), dtype=np.int32)
    paths[:, 2] = np.arange(100) % 10  # Wednesday: 0..9 equally likely
    params = StaffingParams(service_level=0.9, acceptance_rate=0.5, max_shifts_per_week=4)
    weeks = on_call_pool(paths, dates, params)
    assert list(weeks.columns) == [
        "week_start",
        "days_in_week",
        "peak_day_p95",
        "peak_day_mean",
        "weekly_demand_mean",
        "daily_pool",
        "weekly_pool",
        "recommended_pool",
        "service_level",
        "acceptance_rate",
        "max_shifts_per_week",
    ]
    row = weeks.iloc[0]
    assert row["peak_day_p95"] == 9.0
    assert row["peak_day_mean"] == pytest.approx(4.5)
    assert row["weekly_pool"] == 2  # weekly 0.9 quantile 8 shifts: ceil(8 / 4)
    assert row["recommended_pool"] == smallest_pool(paths[:, 2], 0.5, 0.9) > 2


# --- acceptance ---------------------------------------------------------------------------------


def test_acceptance_shrinks_toward_prior() -> None:
    offers = pd.DataFrame({"response": ["accepted"] * 5 + ["declined"] * 3 + ["no_response"] * 2})
    est = estimate_acceptance(offers, prior=0.35, min_offers=50)
    assert est.n_offers == 10 and est.accepted == 5
    assert est.observed_rate == pytest.approx(0.5)
    assert est.rate == pytest.approx((5 + 0.35 * 50) / 60)  # 0.375
    assert estimate_acceptance(offers, prior=0.35, min_offers=0).rate == pytest.approx(0.5)
    empty = estimate_acceptance(offers.iloc[:0], prior=0.35, min_offers=50)
    assert empty.rate == 0.35 and empty.observed_rate is None and empty.n_offers == 0


def test_acceptance_rejects_unknown_responses() -> None:
    with pytest.raises(ValueError, match="maybe"):
        estimate_acceptance(pd.DataFrame({"response": ["accepted", "maybe"]}), 0.35, 10)


def test_acceptance_by_group_with_holidays() -> None:
    offers = pd.DataFrame(
        {
            "region": ["n"] * 6 + ["s"] * 2,
            "role": ["RN"] * 4 + ["LPN"] * 2 + ["RN"] * 2,
            "response": [
                "accepted",
                "declined",
                "accepted",
                "no_response",
                "accepted",
                "accepted",
                "declined",
                "declined",
            ],
            "is_holiday": [False, False, True, True, False, False, False, False],
        }
    )
    out = acceptance_by_group(
        offers, ["region", "role"], {"RN": 0.3, "LPN": 0.4}, 10, holiday_priors={"RN": 0.2}
    )
    assert list(out.columns) == [
        "region",
        "role",
        "is_holiday",
        "rate",
        "n_offers",
        "accepted",
        "observed_rate",
    ]
    got = out.set_index(["region", "role", "is_holiday"])
    assert got.loc[("n", "RN", False), "rate"] == pytest.approx((1 + 3) / 12)
    assert got.loc[("n", "RN", True), "rate"] == pytest.approx((1 + 2) / 12)
    assert got.loc[("n", "LPN", False), "rate"] == pytest.approx((2 + 4) / 12)
    assert got.loc[("s", "RN", False), "observed_rate"] == 0.0
    assert got.loc[("s", "RN", False), "n_offers"] == 2
    plain = acceptance_by_group(
        offers.drop(columns="is_holiday"), ["region", "role"], {"RN": 0.3, "LPN": 0.4}, 10
    )
    assert len(plain) == 3 and "is_holiday" not in plain.columns


def test_offers_counted_beforehand_estimate_like_one_row_each() -> None:
    """models.plan.offer_counts hands acceptance_by_group counts (``n``), not offers: the
    estimates are those of one row per offer. The holiday flag is the facility's local day,
    and offers sent before the window are not counted."""
    from models.plan import offer_counts

    facilities = pd.DataFrame(
        {
            "facility_id": ["F1", "F2"],
            "region": ["north", "west"],
            "timezone": ["America/Chicago", "America/Los_Angeles"],
        }
    )
    utc = "UTC"
    offers = pd.DataFrame(
        {
            "facility_id": pd.Categorical(["F1", "F1", "F2", "F2", "F1", "F2"]),
            "role": pd.Categorical(["RN", "RN", "RN", "LPN", "RN", "RN"]),
            # 03:00 UTC on Jul 5 is the evening of Jul 4 in Chicago and in Los Angeles;
            # 06:00 UTC on Jul 5 is Jul 5 in Chicago, still Jul 4 in Los Angeles.
            "shift_start": pd.to_datetime(
                [
                    "2026-07-05 03:00",
                    "2026-07-05 06:00",
                    "2026-07-05 06:00",
                    "2026-07-06 12:00",
                    "2026-07-01 12:00",
                    "2026-07-05 03:00",
                ]
            ).tz_localize(utc),
            "response": pd.Categorical(
                ["accepted", "declined", "accepted", "no_response", "accepted", "declined"]
            ),
            "offered_at": pd.to_datetime(
                ["2026-06-20"] * 5 + ["2026-05-01"]  # the last is before the window
            ).tz_localize(utc),
        }
    )
    counted = offer_counts(
        offers,
        facilities,
        {date(2026, 7, 4): "Independence Day"},
        pd.Timestamp("2026-06-01", tz=utc),
    )
    assert counted["n"].sum() == 5
    holiday = counted[counted["is_holiday"]]
    assert sorted(zip(holiday["region"], holiday["response"], holiday["n"], strict=True)) == [
        ("north", "accepted", 1),
        ("west", "accepted", 1),
    ]
    one_each = pd.DataFrame(
        {
            "region": ["north", "north", "west", "west", "north"],
            "role": ["RN", "RN", "RN", "LPN", "RN"],
            "response": ["accepted", "declined", "accepted", "no_response", "accepted"],
            "is_holiday": [True, False, True, False, False],
        }
    )
    priors = {"RN": 0.3, "LPN": 0.4}
    pd.testing.assert_frame_equal(
        acceptance_by_group(counted, ["region", "role"], priors, 10),
        acceptance_by_group(one_each, ["region", "role"], priors, 10),
    )


# --- attrition ----------------------------------------------------------------------------------


def nurses_frame() -> pd.DataFrame:
    rows = [
        # nurse, role, region, on_call, hired_on, separated_on
        ("n1", "RN", "north", True, "2020-01-01", None),  # 365 days exposed, in pool
        ("n2", "RN", "north", True, "2020-01-01", "2025-07-02"),  # 182 days, 1 separation
        ("n3", "RN", "north", False, "2025-07-02", None),  # 183 days, not on call
        ("n4", "RN", "north", True, "2026-01-01", None),  # hired on as_of: not seen
        ("n5", "RN", "north", True, "2024-03-01", "2026-01-01"),  # leaves on as_of: active
        ("n6", "RN", "north", True, "2019-01-01", "2024-06-01"),  # left before the window
        ("n7", "LPN", "south", True, "2023-01-01", "2025-03-01"),  # 59 days, 1 separation
    ]
    frame = pd.DataFrame(
        rows, columns=["nurse_id", "role", "region", "on_call", "hired_on", "separated_on"]
    )
    frame["hired_on"] = pd.to_datetime(frame["hired_on"])
    frame["separated_on"] = pd.to_datetime(frame["separated_on"])
    return frame


def test_attrition_hand_case() -> None:
    out = estimate_attrition(
        nurses_frame(), date(2026, 1, 1), 365, prior={"RN": 0.25, "LPN": 0.3}, min_pool=20
    )
    north = out.set_index(["region", "role"]).loc[("north", "RN")]
    assert north["current_pool"] == 2  # n1 and n5
    assert north["separations"] == 1
    assert north["exposure_years"] == pytest.approx((365 + 182 + 183 + 365) / 365)  # 3.0
    assert north["average_head_count"] == pytest.approx(3.0)
    assert north["observed_attrition"] == pytest.approx(1 / 3)
    assert north["annual_attrition"] == pytest.approx((1 + 0.25 * 20) / (3 + 20))
    south = out.set_index(["region", "role"]).loc[("south", "LPN")]
    assert south["current_pool"] == 0
    assert south["exposure_years"] == pytest.approx(59 / 365)
    assert south["annual_attrition"] == pytest.approx((1 + 0.3 * 20) / (59 / 365 + 20))


def test_attrition_accepts_date_objects() -> None:
    nurses = nurses_frame()
    as_dates = nurses.assign(
        hired_on=[d.date() for d in nurses["hired_on"]],
        separated_on=[None if pd.isna(d) else d.date() for d in nurses["separated_on"]],
    )
    args = (date(2026, 1, 1), 365, 0.25, 20)
    pd.testing.assert_frame_equal(
        estimate_attrition(as_dates, *args), estimate_attrition(nurses, *args)
    )


def test_attrition_without_exposure_uses_prior_and_caps() -> None:
    nurses = nurses_frame()
    out = estimate_attrition(nurses, pd.Timestamp("2026-01-01"), 365, prior=0.25, min_pool=0)
    south = out.set_index(["region", "role"]).loc[("south", "LPN")]
    assert south["annual_attrition"] == 0.99  # 6.2 separations per nurse-year, capped
    late = nurses.assign(hired_on=pd.Timestamp("2027-01-01"), separated_on=pd.NaT)
    empty = estimate_attrition(late, date(2026, 1, 1), 365, prior=0.25, min_pool=20)
    assert empty["observed_attrition"].isna().all()
    assert (empty["annual_attrition"] == 0.25).all()
    assert (empty["current_pool"] == 0).all()


# --- recruiting ---------------------------------------------------------------------------------

FAST = StaffingParams(time_to_hire_days=14, onboarding_days=7)  # 21-day lead time
AS_OF = date(2026, 1, 5)  # a Monday: the window opens on Monday 2026-01-26


def pool_weeks(values: list[int], first: str = "2026-01-05") -> pd.DataFrame:
    starts = pd.date_range(first, periods=len(values), freq="7D")
    return pd.DataFrame({"week_start": starts, "recommended_pool": values})


def test_recruiting_surplus() -> None:
    weeks = pool_weeks([5, 5, 5, 10, 12, 15, 11, 30])  # window: 01-26 .. 02-16 -> 10, 12, 15, 11
    out = recruiting_target(weeks, 20, 0.0, FAST, AS_OF, window_weeks=4)
    assert out["target_pool"] == 15
    assert out["expected_attrition"] == 0.0
    assert out["hires_needed"] == 0 and out["surplus"] == 5
    assert out["needed_by"] == date(2026, 1, 26)
    assert out["recruit_by"] == AS_OF and out["late"] is False
    assert out["lead_time_days"] == 21 and out["note"] == ""


def test_recruiting_hires() -> None:
    weeks = pool_weeks([5, 5, 5, 9, 9, 15, 11, 30])
    out = recruiting_target(weeks, 10, 0.3, FAST, AS_OF, window_weeks=4)
    lost = 10 * (1 - 0.7 ** (21 / 365))
    assert out["expected_attrition"] == pytest.approx(lost)  # about 0.203 nurses
    assert out["expected_pool"] == pytest.approx(10 - lost)
    assert out["hires_needed"] == math.ceil(15 - (10 - lost)) == 6
    assert out["surplus"] == 0
    assert out["needed_by"] == date(2026, 2, 9)  # first week above 9.8 nurses
    assert out["recruit_by"] == date(2026, 1, 19)  # 21 days earlier
    assert out["late"] is False
    assert set(out) >= {
        "current_pool",
        "target_pool",
        "expected_attrition",
        "expected_pool",
        "hires_needed",
        "surplus",
        "needed_by",
        "recruit_by",
        "late",
        "lead_time_days",
        "acceptance_rate",
        "annual_attrition",
        "note",
    }


def test_recruiting_late_when_window_is_beyond_horizon() -> None:
    weeks = pool_weeks([8, 12])  # the horizon ends before the window opens
    out = recruiting_target(weeks, 10, 0.0, FAST, AS_OF, window_weeks=4)
    assert "beyond the forecast horizon" in out["note"]
    assert out["target_pool"] == 12 and out["hires_needed"] == 2
    assert out["needed_by"] == date(2026, 1, 12)
    assert out["recruit_by"] == AS_OF and out["late"] is True


def test_recruiting_window_cut_short() -> None:
    weeks = pool_weeks([5, 5, 5, 10, 12])  # only 2 of the 4 window weeks exist
    out = recruiting_target(weeks, 0, 0.0, FAST, AS_OF, window_weeks=4)
    assert "2 of 4 weeks" in out["note"]
    assert out["target_pool"] == 12 and out["hires_needed"] == 12


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.integers(0, 60), min_size=1, max_size=12),
    current=st.integers(0, 80),
    attrition=st.tuples(st.floats(0.0, 0.95), st.floats(0.0, 0.95)).map(sorted),
    lead=st.integers(0, 120),
)
def test_more_attrition_never_lowers_hires(values, current: int, attrition, lead: int) -> None:
    params = StaffingParams(time_to_hire_days=lead, onboarding_days=0)
    weeks = pool_weeks(values)
    low = recruiting_target(weeks, current, attrition[0], params, AS_OF, window_weeks=3)
    high = recruiting_target(weeks, current, attrition[1], params, AS_OF, window_weeks=3)
    assert high["hires_needed"] >= low["hires_needed"]
    assert high["surplus"] <= low["surplus"]
    assert min(high["hires_needed"], high["surplus"]) == 0


def _plan(
    weeks: pd.DataFrame,
    current: int,
    attrition: float,
    params: StaffingParams = FAST,
    months: int = 6,
    window_weeks: int = 4,
) -> pd.DataFrame:
    target = recruiting_target(weeks, current, attrition, params, AS_OF, window_weeks)
    return hiring_plan(weeks, current, attrition, params, AS_OF, target, months=months)


def test_hiring_plan_hand_case() -> None:
    # 15 weeks from Monday 2026-01-05 (as_of); lead 21 days; no attrition; a 4-week window.
    values = [5, 5, 5, 10, 12, 15, 11, 14, 16, 13, 12, 20, 18, 17, 19]
    weeks = pool_weeks(values)
    target = recruiting_target(weeks, 10, 0.0, FAST, AS_OF, window_weeks=4)
    plan = hiring_plan(weeks, 10, 0.0, FAST, AS_OF, target, months=3)
    # Months run from as_of: Jan 5, Feb 5, Mar 5 (not Jan 1, Feb 1, Mar 1).
    assert plan["month"].tolist() == [date(2026, 1, 5), date(2026, 2, 5), date(2026, 3, 5)]
    # The first month is the target: window 01-26 .. 02-23 (weeks 10, 12, 15, 11), 15 - 10 = 5.
    assert target["hires_needed"] == 5 and target["target_pool"] == 15
    # Then recruiting from 02-05 arrives 02-26 .. 03-26 (weeks 16, 13, 12, 20), from 03-05
    # arrives 03-26 .. 04-26 (weeks 18, 17, 19, then past the forecast: the last 4 weeks' 20).
    assert plan["arrival_start"].tolist() == [
        date(2026, 1, 26),
        date(2026, 2, 26),
        date(2026, 3, 26),
    ]
    assert plan["arrival_end"].tolist() == [date(2026, 2, 23), date(2026, 3, 26), date(2026, 4, 26)]
    assert plan["pool_needed"].tolist() == [15, 20, 20]
    assert plan["expected_pool"].tolist() == [10.0, 15.0, 20.0]
    assert plan["hires"].tolist() == [5, 5, 0]
    assert plan["cumulative_hires"].tolist() == [5, 10, 10]
    assert plan["beyond_horizon"].tolist() == [False, False, True]


def test_the_first_month_is_the_recruiting_target() -> None:
    """One answer: the plan's first month hires what the target says, for the target's window,
    whatever the pool, the attrition or the lead time."""
    rng = np.random.default_rng(8)
    for _ in range(30):
        weeks = pool_weeks(rng.integers(0, 60, 26).tolist())
        params = StaffingParams(time_to_hire_days=int(rng.integers(0, 90)), onboarding_days=7)
        current, attrition = int(rng.integers(0, 80)), float(rng.uniform(0, 0.6))
        target = recruiting_target(weeks, current, attrition, params, AS_OF, window_weeks=8)
        first = hiring_plan(weeks, current, attrition, params, AS_OF, target).iloc[0]
        assert first["hires"] == target["hires_needed"]
        assert first["pool_needed"] == target["target_pool"]
        assert first["arrival_start"] == target["window_start"]
        assert first["arrival_end"] == target["window_end"]
        assert first["month"] == AS_OF


def test_a_target_of_another_run_is_refused() -> None:
    weeks = pool_weeks([20] * 26)
    target = recruiting_target(weeks, 20, 0.1, FAST, AS_OF, window_weeks=8)
    with pytest.raises(ValueError, match="another as_of or lead time"):
        hiring_plan(weeks, 20, 0.1, FAST, date(2026, 1, 12), target)


def test_hiring_plan_replaces_leavers_month_by_month() -> None:
    plan = _plan(pool_weeks([20] * 26), 20, 0.3)
    assert len(plan) == 6
    # A steady need: each month hires what attrition took since the last arrival.
    assert (plan["hires"] >= 0).all() and plan["hires"].sum() >= 2
    monthly_loss = 20 * (1 - 0.7 ** (31 / 365))
    assert plan["hires"].iloc[1:].max() <= math.ceil(monthly_loss) + 1
    assert plan["cumulative_hires"].tolist() == plan["hires"].cumsum().tolist()
    assert plan["beyond_horizon"].tolist()[-1] is True  # June is past 26 weeks


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.integers(0, 60), min_size=1, max_size=30),
    current=st.integers(0, 80),
    attrition=st.tuples(st.floats(0.0, 0.95), st.floats(0.0, 0.95)).map(sorted),
    lead=st.integers(0, 120),
)
def test_hiring_plan_more_attrition_never_hires_fewer(values, current, attrition, lead) -> None:
    params = StaffingParams(time_to_hire_days=lead, onboarding_days=0)
    weeks = pool_weeks(values)
    low = _plan(weeks, current, attrition[0], params)
    high = _plan(weeks, current, attrition[1], params)
    assert (high["cumulative_hires"] >= low["cumulative_hires"]).all()
    assert (low["hires"] >= 0).all()
    if attrition[0] == 0.0:  # without attrition the plan hires exactly the growth
        growth = max(0, int(low["pool_needed"].max()) - current)
        assert int(low["cumulative_hires"].iloc[-1]) == growth


# --- holidays -----------------------------------------------------------------------------------


def test_holiday_coverage_hand_case() -> None:
    # mean 0 with bookings: demand is exactly the booked count (2 a day, 6 on Christmas, 9 on
    # New Year's Day). Christmas 2026 is a Friday; its references skip New Year's Day.
    dates = pd.date_range("2026-12-01", "2027-01-20")
    booked = pd.Series(2, index=dates)
    booked[pd.Timestamp("2026-12-25")] = 6
    booked[pd.Timestamp("2027-01-01")] = 9
    forecast = pd.DataFrame(
        {
            "series_id": "F-RN",
            "facility_id": "F",
            "role": "RN",
            "region": "north",
            "date": dates,
            "mean": 0.0,
            "booked": booked.to_numpy(),
        }
    )
    sim = simulate_demand(forecast, pd.Series({"F-RN": np.inf}), n_paths=50, seed=0)
    params = {"RN": StaffingParams(acceptance_rate=0.5, holiday_acceptance_factor=0.7)}
    holidays = {date(2026, 12, 25): "Christmas Day", date(2027, 1, 1): "New Year's Day"}
    out = holiday_coverage(sim, holidays, params)
    assert out["holiday"].tolist() == ["Christmas Day", "New Year's Day"]
    christmas = out.iloc[0]
    assert christmas["date"] == pd.Timestamp("2026-12-25")
    assert christmas["expected_demand"] == 6.0
    assert christmas["p90"] == 6.0 and christmas["p95"] == 6.0
    assert christmas["typical_demand"] == 2.0  # 12-11, 12-18, 01-08, 01-15
    assert christmas["uplift"] == 3.0
    assert christmas["acceptance_rate"] == pytest.approx(0.35)
    assert christmas["recommended_on_call"] == smallest_pool(np.array([6]), 0.35, 0.95)
    new_year = out.iloc[1]
    assert new_year["typical_demand"] == 2.0  # 12-18 and 01-08, 01-15 (12-25 skipped)
    assert new_year["uplift"] == 4.5

    override = holiday_coverage(sim, holidays, params, acceptance={("north", "RN"): 0.9})
    assert override["acceptance_rate"].iloc[0] == pytest.approx(0.63)
    assert override["recommended_on_call"].iloc[0] < christmas["recommended_on_call"]


def test_holiday_outside_horizon_and_missing_role() -> None:
    dates = pd.date_range("2026-03-01", periods=10)
    forecast = pd.DataFrame(
        {
            "series_id": "F-LPN",
            "facility_id": "F",
            "role": "LPN",
            "region": "r",
            "date": dates,
            "mean": 1.0,
            "booked": 0,
        }
    )
    sim = simulate_demand(forecast, pd.Series({"F-LPN": 2.0}), n_paths=20)
    assert holiday_coverage(
        sim, {date(2026, 7, 4): "Independence Day"}, {"LPN": StaffingParams()}
    ).empty
    with pytest.raises(ValueError, match="LPN"):
        holiday_coverage(sim, {}, {"RN": StaffingParams()})


def test_every_staffing_default_has_a_unit_and_a_source() -> None:
    """Issue 5: each parameter says its unit and cites a source or says it is an assumption."""
    from staffcast.settings import RoleStaffing

    for name, field in RoleStaffing.model_fields.items():
        text = field.description or ""
        assert "Source:" in text or "Assumption:" in text, name
        assert any(unit in text for unit in ("(0-1)", "(days)", "(shifts)")), name


def test_staffing_params_are_validated() -> None:
    with pytest.raises(ValueError, match="service_level"):
        StaffingParams(service_level=1.0)
    with pytest.raises(ValueError, match="max_shifts_per_week"):
        StaffingParams(max_shifts_per_week=0)
    assert StaffingParams().lead_time_days == 97


def test_parse_scenario_reads_roles_and_rejects_mistakes() -> None:
    from models.plan import parse_scenario
    from models.staffing import StaffingParams

    scenario = parse_scenario("tight:service_level=0.9,acceptance_rate.RN=0.3,onboarding_days=7")
    base = StaffingParams(acceptance_rate=0.4)
    rn, lpn = scenario.params_for("RN", base), scenario.params_for("LPN", base)
    assert (rn.service_level, rn.acceptance_rate, rn.onboarding_days) == (0.9, 0.3, 7)
    assert (lpn.service_level, lpn.acceptance_rate) == (0.9, 0.4)
    assert scenario.forces("acceptance_rate", "RN") and not scenario.forces(
        "acceptance_rate", "LPN"
    )
    for text, message in (
        ("service_level=0.9", "must look like name:"),
        ("base:service_level=0.9", "not 'base'"),
        ("x:speed=3", "parameter among service_level"),
        ("x:service_level=high", "'high' is not a number"),
        ("x:service_level=1.5", "service_level"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_scenario(text)
