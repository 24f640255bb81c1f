"""Regional demand simulation: exact facility distributions and coherent regional paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from models.regional import (
    QUANTILE_COLUMNS,
    QUANTILES,
    floored_mean,
    floored_quantiles,
    regional_weekly,
    shared_day_cv,
    shared_level_cv,
    simulate_demand,
    week_start,
)

START = pd.Timestamp("2026-01-07")  # a Wednesday


def make_forecast(
    specs: list[tuple[str, str, str, float, int]],
    n_days: int = 14,
    booked_days: int = 0,
) -> pd.DataFrame:
    """specs: (series_id, region, role, mean, booked); booked applies to the first booked_days."""
    dates = pd.date_range(START, periods=n_days, freq="D")
    rows = [
        {
            "series_id": sid,
            "facility_id": sid.split("-")[0],
            "role": role,
            "region": region,
            "date": day,
            "mean": mean,
            "booked": booked if j < booked_days else 0,
        }
        for sid, region, role, mean, booked in specs
        for j, day in enumerate(dates)
    ]
    return pd.DataFrame(rows)


# --- exact facility distributions -------------------------------------------------------------


def test_floored_mean_hand_case_poisson() -> None:
    # D ~ Poisson(2), booked 3: E[max(D, 3)] = 2 + 3 P(0) + 2 P(1) + 1 P(2).
    p = stats.poisson.pmf([0, 1, 2], 2.0)
    expected = 2.0 + 3 * p[0] + 2 * p[1] + 1 * p[2]
    got = floored_mean(np.array([2.0]), np.array([np.inf]), np.array([3]))
    assert got[0] == pytest.approx(expected, rel=1e-12)
    assert got[0] == pytest.approx(3.2180, abs=1e-4)


def test_floored_mean_matches_brute_force_negbin() -> None:
    m, r, b = 4.0, 1.5, 6
    k = np.arange(2000)
    pmf = stats.nbinom.pmf(k, r, r / (r + m))
    brute = float((np.maximum(k, b) * pmf).sum())
    assert floored_mean(np.array([m]), np.array([r]), np.array([b]))[0] == pytest.approx(brute)


def test_zero_mean_with_booking_is_the_booking() -> None:
    q = floored_quantiles(np.array([0.0, 0.0]), np.array([np.inf, 2.0]), np.array([2, 0]))
    assert q.tolist() == [[2.0] * 7, [0.0] * 7]
    assert floored_mean(np.array([0.0]), np.array([3.0]), np.array([2])).tolist() == [2.0]


def test_floored_quantiles_match_scipy() -> None:
    rng = np.random.default_rng(5)
    m = rng.gamma(1.0, 4.0, 400)
    r = np.where(rng.random(400) < 0.3, np.inf, rng.lognormal(0, 1.5, 400))
    got = floored_quantiles(m, r, np.zeros(400, dtype=int))
    q = np.array(QUANTILES)[None, :]
    finite = ~np.isinf(r)
    ref = np.empty_like(got)
    ref[finite] = stats.nbinom.ppf(q, r[finite, None], r[finite, None] / (r + m)[finite, None])
    ref[~finite] = stats.poisson.ppf(q, m[~finite, None])
    np.testing.assert_array_equal(got, ref)


def test_floored_quantiles_large_mean_falls_back_to_scipy() -> None:
    got = floored_quantiles(np.array([1500.0]), np.array([np.inf]), np.array([0]))
    np.testing.assert_array_equal(got[0], stats.poisson.ppf(QUANTILES, 1500.0))


# --- simulate_demand ------------------------------------------------------------------------------


def small_sim(n_paths: int = 400, seed: int = 0):
    forecast = make_forecast(
        [
            ("A1-RN", "north", "RN", 2.0, 3),
            ("A2-RN", "north", "RN", 0.5, 1),
            ("A3-RN", "north", "RN", 4.0, 0),
            ("A1-LPN", "north", "LPN", 1.0, 0),
            ("B1-RN", "south", "RN", 3.0, 2),
        ],
        booked_days=3,
    )
    size = pd.Series({"A1-RN": 2.0, "A2-RN": np.inf, "A3-RN": 0.7, "A1-LPN": 5.0, "B1-RN": np.inf})
    return forecast, size, simulate_demand(forecast, size, n_paths=n_paths, seed=seed)


def test_shapes_columns_and_types() -> None:
    forecast, _, sim = small_sim()
    assert list(sim.facility.columns) == [
        "series_id",
        "facility_id",
        "role",
        "region",
        "date",
        "mean",
        *QUANTILE_COLUMNS,
        "booked",
    ]
    assert list(sim.regional.columns) == ["region", "role", "date", "mean", *QUANTILE_COLUMNS]
    assert len(sim.facility) == len(forecast)
    assert set(sim.paths) == {("north", "LPN"), ("north", "RN"), ("south", "RN")}
    for path in sim.paths.values():
        assert path.dtype == np.int32
        assert path.shape == (400, 14)
    assert len(sim.dates) == 14 and sim.dates[0] == START


def test_regional_paths_respect_bookings_and_mean() -> None:
    _, _, sim = small_sim(n_paths=4000)
    north = sim.paths[("north", "RN")]
    assert (north[:, :3] >= 3 + 1).all()  # booked 3 + 1 on the first three days
    regional = sim.regional.query("region == 'north' and role == 'RN'")
    # sample mean of the paths is close to the exact regional mean (sd of the mean ~ 0.1)
    np.testing.assert_allclose(north.mean(axis=0), regional["mean"].to_numpy(), atol=0.4)


def test_single_facility_negbin_moments() -> None:
    forecast = make_forecast([("F-RN", "r", "RN", 4.0, 0)], n_days=7)
    sim = simulate_demand(forecast, pd.Series({"F-RN": 2.0}), n_paths=20_000, seed=3)
    draws = sim.paths[("r", "RN")].ravel()
    assert draws.mean() == pytest.approx(4.0, abs=0.05)
    assert draws.var() == pytest.approx(4.0 + 16.0 / 2.0, rel=0.05)  # m + m^2 / r = 12


def test_regional_p95_is_less_than_sum_of_facility_p95() -> None:
    specs = [(f"F{i}-RN", "r", "RN", 3.0, 0) for i in range(20)]
    forecast = make_forecast(specs, n_days=7)
    size = pd.Series({s[0]: 3.0 for s in specs})
    sim = simulate_demand(forecast, size, n_paths=2000, seed=1)
    facility_sum = sim.facility.groupby("date")["p95"].sum().to_numpy()
    assert (sim.regional["p95"].to_numpy() < facility_sum).all()


def test_reproducible_and_stable_per_region() -> None:
    forecast, size, sim = small_sim(seed=7)
    again = simulate_demand(forecast, size, n_paths=400, seed=7)
    for key, path in sim.paths.items():
        np.testing.assert_array_equal(path, again.paths[key])
    other = simulate_demand(forecast, size, n_paths=400, seed=8)
    assert not np.array_equal(sim.paths[("north", "RN")], other.paths[("north", "RN")])
    # dropping the south region leaves the north paths unchanged
    north_only = forecast[forecast["region"] == "north"]
    reduced = simulate_demand(north_only, size, n_paths=400, seed=7)
    np.testing.assert_array_equal(reduced.paths[("north", "RN")], sim.paths[("north", "RN")])


def test_regional_weekly() -> None:
    _, _, sim = small_sim()
    weekly = regional_weekly(sim)
    north = weekly.query("region == 'north' and role == 'RN'")
    # 2026-01-07 is a Wednesday: 5 days, 7 days, 2 days
    assert north["days_in_week"].tolist() == [5, 7, 2]
    assert north["week_start"].dt.day_of_week.eq(0).all()
    daily = sim.regional.query("region == 'north' and role == 'RN'")["mean"].to_numpy()
    np.testing.assert_allclose(
        north["mean"], [daily[:5].sum(), daily[5:12].sum(), daily[12:].sum()]
    )
    sums = sim.paths[("north", "RN")][:, :5].sum(axis=1)
    assert north["p95"].iloc[0] == np.quantile(sums, 0.95, method="inverted_cdf")


def test_week_start_is_monday_on_or_before() -> None:
    days = pd.DatetimeIndex(["2026-01-05", "2026-01-07", "2026-01-11", "2026-01-12"])
    assert week_start(days).strftime("%Y-%m-%d").tolist() == [
        "2026-01-05",
        "2026-01-05",
        "2026-01-05",
        "2026-01-12",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="booked"), "missing the columns"),
        (lambda f: f.assign(mean=-1.0), "'mean' must be finite"),
        (lambda f: f.assign(booked=1.5), "'booked' must be a whole number"),
        (lambda f: f.iloc[1:], "covers 13 of the 14"),
        (lambda f: f[f["date"] != START + pd.Timedelta(days=5)], "consecutive"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "two rows"),
        (lambda f: f.iloc[:0], "empty"),
    ],
)
def test_bad_forecast_is_rejected(change, message: str) -> None:
    forecast = make_forecast([("A-RN", "r", "RN", 1.0, 0), ("B-RN", "r", "RN", 1.0, 0)])
    size = pd.Series({"A-RN": 1.0, "B-RN": 1.0})
    with pytest.raises(ValueError, match=message):
        simulate_demand(change(forecast), size)


def test_bad_size_is_rejected() -> None:
    forecast = make_forecast([("A-RN", "r", "RN", 1.0, 0)])
    with pytest.raises(ValueError, match="no dispersion"):
        simulate_demand(forecast, pd.Series({"other": 1.0}))
    with pytest.raises(ValueError, match="must be > 0"):
        simulate_demand(forecast, pd.Series({"A-RN": 0.0}))


# --- properties -----------------------------------------------------------------------------------

facility_spec = st.tuples(
    st.sampled_from(["north", "south"]),
    st.sampled_from(["RN", "LPN"]),
    st.floats(0.0, 30.0),
    st.integers(0, 12),
    st.one_of(st.just(np.inf), st.floats(0.05, 50.0)),
)


@settings(max_examples=50, deadline=None)
@given(specs=st.lists(facility_spec, min_size=1, max_size=6), seed=st.integers(0, 2**31))
def test_simulation_properties(specs, seed: int) -> None:
    rows = [(f"F{i}-{role}", region, role, m, b) for i, (region, role, m, b, _) in enumerate(specs)]
    forecast = make_forecast(rows, n_days=5, booked_days=2)
    size = pd.Series({f"F{i}-{s[1]}": s[4] for i, s in enumerate(specs)})
    sim = simulate_demand(forecast, size, n_paths=50, seed=seed)

    for frame in (sim.facility, sim.regional):
        q = frame[list(QUANTILE_COLUMNS)].to_numpy()
        assert (np.diff(q, axis=1) >= 0).all()  # p025 <= ... <= p975
        assert (q >= 0).all()
        assert (frame["mean"] >= 0).all()
    q = sim.facility[list(QUANTILE_COLUMNS)].to_numpy()
    assert (q >= sim.facility["booked"].to_numpy()[:, None]).all()
    assert (sim.facility["mean"] >= sim.facility["booked"] - 1e-9).all()

    facility_sum = sim.facility.groupby(["region", "role", "date"])["mean"].sum()
    regional = sim.regional.set_index(["region", "role", "date"])["mean"]
    np.testing.assert_allclose(regional.loc[facility_sum.index], facility_sum, rtol=1e-12)

    booked_sum = sim.facility.groupby(["region", "role", "date"])["booked"].sum()
    for (region, role), path in sim.paths.items():
        floor = booked_sum.loc[(region, role)].to_numpy()
        assert (path >= floor).all()
        low = sim.regional.query("region == @region and role == @role")["p025"].to_numpy()
        assert (low >= floor).all()


def test_a_size_column_widens_later_days() -> None:
    """The engine's per-day dispersion (wider with lead time) reaches the regional paths."""
    dates = pd.date_range("2026-01-05", periods=20, freq="D")
    forecast = pd.DataFrame(
        {
            "series_id": "F1|RN",
            "facility_id": "F1",
            "role": "RN",
            "region": "North",
            "date": dates,
            "mean": 20.0,
            "booked": 0,
            "size": np.where(np.arange(20) < 10, np.inf, 2.0),
        }
    )
    sim = simulate_demand(forecast, None, n_paths=4000, seed=1)
    spread = (sim.regional["p90"] - sim.regional["p10"]).to_numpy()
    assert spread[10:].min() > 2 * spread[:10].max()
    with pytest.raises(ValueError, match="size column"):
        simulate_demand(forecast.drop(columns="size"), None)


def _correlated_history(cv: float, n_facilities: int = 12, days: int = 364, seed: int = 0):
    """Facilities of one region whose daily demand shares a Gamma(mean 1, cv) day effect."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2025-01-06", periods=days, freq="D")
    shared = rng.gamma(1 / cv**2, cv**2, days) if cv > 0 else np.ones(days)
    weekday = np.where(dates.day_of_week >= 5, 0.6, 1.0)
    frames = []
    for i in range(n_facilities):
        mean = 8.0 * weekday * shared
        frames.append(
            pd.DataFrame(
                {
                    "series_id": f"F{i}|RN",
                    "region": "North",
                    "role": "RN",
                    "date": dates,
                    "demand": rng.poisson(mean).astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_shared_day_cv_recovers_a_known_day_effect() -> None:
    assert shared_day_cv(_correlated_history(0.15)).loc[("North", "RN")] == pytest.approx(
        0.15, abs=0.03
    )
    assert shared_day_cv(_correlated_history(0.0)).loc[("North", "RN")] < 0.03


def _twenty_facilities() -> pd.DataFrame:
    """20 facilities of one region, 14 days, each NB(mean 6, size 5): regional mean 120."""
    dates = pd.date_range("2026-01-05", periods=14, freq="D")
    return pd.DataFrame(
        {
            "series_id": np.repeat([f"F{i}|RN" for i in range(20)], 14),
            "facility_id": np.repeat([f"F{i}" for i in range(20)], 14),
            "role": "RN",
            "region": "North",
            "date": np.tile(dates, 20),
            "mean": 6.0,
            "booked": 0,
            "size": 5.0,
        }
    )


def test_a_shared_day_effect_widens_the_region_but_not_the_facilities() -> None:
    """Regional p95 grows with co-movement; facility quantiles and the regional mean do not."""
    forecast = _twenty_facilities()
    cv = pd.Series([0.2], index=pd.MultiIndex.from_tuples([("North", "RN")]))
    independent = simulate_demand(forecast, None, n_paths=4000, seed=3)
    shared = simulate_demand(forecast, None, n_paths=4000, seed=3, day_cv=cv)
    assert shared.regional["mean"].equals(independent.regional["mean"])
    assert shared.facility["p95"].equals(independent.facility["p95"])
    assert (shared.regional["p95"] > independent.regional["p95"]).all()
    path = shared.paths[("North", "RN")]
    assert path.mean() == pytest.approx(120, rel=0.02)  # sum of the facility means
    # Variance: 20 facilities x NB(6, 5) (kept exactly) plus their covariances 6^2 * 0.2^2 each
    expected_var = 20 * (6 + 36 / 5) + 20 * 19 * 36 * 0.2**2
    assert path.var() == pytest.approx(expected_var, rel=0.1)


def _level_errors(level_cv: float, regions: int = 6, facilities: int = 10, seed: int = 0):
    """Backtest totals whose actuals share a Gamma(mean 1, level_cv) level per region and origin."""
    rng = np.random.default_rng(seed)
    rows, series = [], []
    for r in range(regions):
        for i in range(facilities):
            series.append({"series_id": f"R{r}F{i}|RN", "region": f"R{r}", "role": "RN"})
        for origin in pd.date_range("2025-01-06", periods=4, freq="91D"):
            level = rng.gamma(1 / level_cv**2, level_cv**2) if level_cv > 0 else 1.0
            for i in range(facilities):
                forecast = 100.0 + 20 * i
                own = rng.gamma(100.0, 1 / 100.0)  # cv 0.1, independent per facility
                rows.append(
                    {
                        "series_id": f"R{r}F{i}|RN",
                        "origin": origin,
                        "days": 91,
                        "forecast": forecast,
                        "actual": forecast * level * own,
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(series)


def test_shared_level_cv_recovers_a_known_level_error() -> None:
    errors, series = _level_errors(0.10)
    cv = shared_level_cv(errors, series)
    assert len(cv) == 6 and cv.nunique() == 1  # pooled over the regions of a role
    assert cv.iloc[0] == pytest.approx(0.10, abs=0.035)
    independent = shared_level_cv(*_level_errors(0.0))
    assert independent.iloc[0] < 0.04
    # No backtests (every series short): no level effect, and every group still listed.
    empty = shared_level_cv(errors.iloc[:0], series)
    assert (empty == 0).all() and len(empty) == 6


def test_a_shared_level_effect_correlates_days_but_keeps_facilities() -> None:
    forecast = _twenty_facilities()
    cv = pd.Series([0.2], index=pd.MultiIndex.from_tuples([("North", "RN")]))
    independent = simulate_demand(forecast, None, n_paths=6000, seed=3)
    level = simulate_demand(forecast, None, n_paths=6000, seed=3, level_cv=cv)
    assert level.facility["p95"].equals(independent.facility["p95"])
    assert level.regional["mean"].equals(independent.regional["mean"])
    path = level.paths[("North", "RN")].astype(float)
    day_var = 20 * (6 + 36 / 5) + 20 * 19 * 36 * 0.2**2
    assert path.var(axis=0).mean() == pytest.approx(day_var, rel=0.1)
    # One level per path for the whole horizon: days a week apart co-vary by (sum of means)^2 cv^2
    across = np.cov(path[:, 0], path[:, 7])[0, 1]
    assert across == pytest.approx(120**2 * 0.2**2, rel=0.15)
    flat = independent.paths[("North", "RN")].astype(float)
    assert abs(np.corrcoef(flat[:, 0], flat[:, 7])[0, 1]) < 0.05
