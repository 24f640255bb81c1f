"""Every forecasting model keeps the same contract; the calendar knows its holidays."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from models.calendar import HolidayCalendar
from models.forecasters import (
    CalendarGLM,
    Combination,
    HoltWinters,
    ProphetModel,
    RecentMean,
    SeasonalNaive,
    WeekdayMean,
)

MODELS = (
    SeasonalNaive,
    WeekdayMean,
    RecentMean,
    HoltWinters,
    CalendarGLM,
    ProphetModel,
    Combination,
)
START = date(2023, 1, 2)


def _weekly_series(days: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weekday = np.array([6, 6, 5, 5, 6, 3, 2], dtype=float)
    return rng.poisson(np.tile(weekday, days // 7 + 1)[:days]).astype(float)


@pytest.mark.parametrize(("model", "params"), [(m, p) for m in MODELS for p in m.test_params()])
@pytest.mark.parametrize("days", [400, 20, 3])
def test_every_model_keeps_the_contract(model, params, days) -> None:
    y = _weekly_series(days)
    original = y.copy()
    unfitted = model(**params)
    before = dict(vars(unfitted))
    fitted = unfitted.fit(y, START)
    forecast = fitted.predict(30)
    assert np.array_equal(y, original), "fit must not mutate its input"
    assert forecast.shape == (30,)
    assert np.all(forecast >= 0) and np.all(np.isfinite(forecast))
    assert [k for k in vars(fitted) if k.endswith("_")], "fitted state ends in _"
    assert all(vars(fitted)[k] is v for k, v in before.items()), "fit keeps the parameters"


@pytest.mark.parametrize(
    "model", [SeasonalNaive, WeekdayMean, RecentMean, HoltWinters, CalendarGLM]
)
def test_all_zero_history_forecasts_zero(model) -> None:
    assert not model().fit(np.zeros(120), START).predict(14).any()


def test_seasonal_naive_repeats_the_last_week() -> None:
    y = np.arange(14, dtype=float)
    assert list(SeasonalNaive().fit(y).predict(9)) == [7, 8, 9, 10, 11, 12, 13, 7, 8]


def test_calendar_glm_learns_weekdays_and_a_holiday() -> None:
    """Three Christmases at a third of a normal day: the next one is forecast low."""
    days = np.arange(np.datetime64("2021-12-01"), np.datetime64("2024-12-01"))
    weekday = (days.view("int64") + 3) % 7
    mean = np.where(weekday >= 5, 20.0, 40.0)
    christmas = np.isin(
        days, np.array(["2021-12-25", "2022-12-25", "2023-12-25"], dtype="datetime64[D]")
    )
    mean = np.where(christmas, mean / 3, mean)
    y = np.random.default_rng(3).poisson(mean).astype(float)
    model = CalendarGLM(calendar=HolidayCalendar("US")).fit(y, days[0])
    forecast = model.predict(40)  # 2024-12-01 .. 2025-01-09
    forecast_days = days[-1] + 1 + np.arange(40)
    xmas = forecast[forecast_days == np.datetime64("2024-12-25")][0]
    same_weekday = forecast[forecast_days == np.datetime64("2024-12-18")][0]
    assert xmas < 0.6 * same_weekday
    saturday = forecast[forecast_days == np.datetime64("2024-12-07")][0]
    tuesday = forecast[forecast_days == np.datetime64("2024-12-10")][0]
    assert saturday == pytest.approx(20, rel=0.15) and tuesday == pytest.approx(40, rel=0.15)


def test_calendar_glm_is_robust_to_a_block_of_unreported_days() -> None:
    """Two months of zeros (unreported, as in PBJ file 495177) do not drag the level down."""
    y = _weekly_series(800, seed=4) * 10
    y[300:361] = 0.0
    forecast = CalendarGLM().fit(y, START).predict(28)
    assert forecast.mean() == pytest.approx(y[-56:].mean(), rel=0.1)


def test_holiday_calendar_has_observed_dates_agency_days_and_subdivisions() -> None:
    us = HolidayCalendar("US").days(date(2026, 7, 1), date(2026, 12, 31))
    assert us[date(2026, 7, 4)].startswith("Independence Day")
    assert "observed" in us[date(2026, 7, 3)]  # Saturday holiday observed on Friday
    assert us[date(2026, 11, 27)] == "Black Friday"
    assert us[date(2026, 12, 24)] == "Christmas Eve" and us[date(2026, 12, 31)] == "New Year's Eve"
    england = HolidayCalendar("GB", "ENG").days(date(2019, 1, 1), date(2019, 12, 31))
    scotland = HolidayCalendar("GB", "SCT").days(date(2019, 1, 1), date(2019, 12, 31))
    assert date(2019, 4, 22) in england and date(2019, 4, 22) not in scotland  # Easter Monday
    assert date(2019, 11, 29) not in england  # Black Friday is a US agency day only


def test_holiday_features_mark_the_day_and_its_window() -> None:
    days = np.arange(np.datetime64("2025-12-22"), np.datetime64("2025-12-29"))
    x, names = HolidayCalendar("US").features(days)
    column = {n: x[:, i] for i, n in enumerate(names)}
    assert list(column["day:Christmas Day"]) == [0, 0, 0, 1, 0, 0, 0]
    assert list(column["day:Christmas Eve"]) == [0, 0, 1, 0, 0, 0, 0]
    assert list(column["before:1"]) == [0, 1, 0, 0, 0, 0, 0]  # the 23rd, before Christmas Eve
    assert list(column["after:1"]) == [0, 0, 0, 0, 1, 0, 0]


def test_unknown_country_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="XX"):
        HolidayCalendar("XX").validate()


def test_agency_days_join_the_calendar_every_year_or_once() -> None:
    calendar = HolidayCalendar(
        "US", extra_days=(("07-03", "Summer picnic"), ("2026-12-26", "Shutdown"), ("02-29", "Leap"))
    )
    calendar.validate()
    days = calendar.days(date(2025, 1, 1), date(2026, 12, 31))
    assert days[date(2025, 7, 3)] == "Summer picnic"
    assert days[date(2026, 7, 3)] == "Independence Day (observed)"  # a public name wins
    assert days[date(2026, 12, 26)] == "Shutdown" and date(2025, 12, 26) not in days
    assert date(2025, 2, 28) not in days and date(2025, 3, 1) not in days  # no Feb 29 in 2025
    assert days[date(2025, 12, 25)] == "Christmas Day"  # public holidays stay
    _, names = calendar.features(np.arange("2025-07-01", "2025-07-06", dtype="datetime64[D]"))
    assert "day:Summer picnic" in names
    for bad in (("13-01", "x"), ("2026-02-30", "x"), ("July 3", "x")):
        with pytest.raises(ValueError, match="is not a date: use MM-DD"):
            HolidayCalendar("US", extra_days=(bad,)).validate()


def test_holt_winters_matches_statsmodels_bit_for_bit() -> None:
    """HoltWinters runs statsmodels' and scipy's own routines without their wrappers: the
    forecast must be exactly ExponentialSmoothing(...).fit(use_brute=False).forecast(), so a
    new statsmodels, scipy or pandas that changes those routines fails here, not silently."""
    from models.forecasters import _statsmodels_holt_winters

    rng = np.random.default_rng(3)
    days = np.arange(400)
    series = [
        rng.poisson(5 + 3 * np.sin(2 * np.pi * days / 7)).astype(float),
        rng.poisson(0.4, 60).astype(float),  # sparse and short
        np.r_[np.zeros(200), rng.poisson(12, 200)].astype(float),  # a level shift
        rng.gamma(2.0, 3.0, 365) * (1 + (days[:365] % 7 == 5)),  # fractional, weekend-heavy
    ]
    for y in series:
        for season in (7, 14):
            ours = HoltWinters(season=season).fit(y).predict(30)
            model = _statsmodels_holt_winters(y[-HoltWinters().max_days :], season)
            theirs = np.clip(np.asarray(model.forecast(30), dtype=float), 0.0, None)
            np.testing.assert_array_equal(ours, theirs)
