"""What bad and excluded rows cost: lost demand per region and role, put back, warned about."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from data_contracts.impact import loss_warnings, region_shares
from data_contracts.parsing import ParseOptions
from data_contracts.validate import validate_extract
from models.demand import daily_demand
from staffcast.errors import ValidationFailed
from staffcast.source import SourceExtract, as_of_instant

TZ = "America/Chicago"
AS_OF = date(2025, 3, 10)
DAYS = 56


def _facilities() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "facility_id": ["F1", "F2", "F3"],
            "facility_type": ["hospital", "hospital", "nursing_home"],
            "region": ["North", "North", "South"],
            "timezone": [TZ, TZ, "America/New_York"],
            "active_from": ["2020-01-01"] * 3,
            "active_to": [None] * 3,
        }
    )


def _requests(per_day: dict[str, int], role: str = "RN", prefix: str = "R") -> pd.DataFrame:
    """``per_day`` requests a day per facility over the DAYS before as_of, 07:00 local,
    requested two days ahead at noon UTC."""
    rows = []
    for facility, count in per_day.items():
        for day in range(DAYS):
            shift_day = AS_OF - timedelta(days=DAYS - day)
            for k in range(count):
                rows.append(
                    {
                        "request_id": f"{prefix}{facility}-{day}-{k}",
                        "facility_id": facility,
                        "role": role,
                        "shift_start": f"{shift_day}T07:00:00",
                        "shift_hours": "12",
                        "requested_at": f"{shift_day - timedelta(days=2)}T12:00:00+00:00",
                        "status": "filled",
                        "cancelled_at": None,
                    }
                )
    return pd.DataFrame(rows)


def _extract(requests: pd.DataFrame, options: dict[str, ParseOptions] | None = None):
    nurses = pd.DataFrame(
        {
            "nurse_id": ["N1", "N2"],
            "role": ["RN", "RN"],
            "region": ["North", "South"],
            "on_call": ["1", "1"],
            "hired_on": ["2021-01-01", "2021-01-01"],
            "separated_on": [None, None],
        }
    )
    offers = pd.DataFrame(columns=["request_id", "offered_at", "response"])
    return SourceExtract(
        as_of=AS_OF,
        as_of_utc=as_of_instant(AS_OF, TZ),
        tables={
            "facilities": _facilities(),
            "shift_requests": requests,
            "nurses": nurses,
            "shift_offers": offers,
        },
        options=options or {},
    )


def _validate(requests: pd.DataFrame, **kwargs):
    kwargs.setdefault("max_region_loss_share", 0.5)
    options = kwargs.pop("options", None)
    return validate_extract(_extract(requests, options), TZ, 0.5, 14, history_days=DAYS, **kwargs)


def _break(requests: pd.DataFrame, every: int, column: str, value: str) -> pd.DataFrame:
    broken = requests.copy()
    broken.loc[broken.index[::every], column] = value
    return broken


def _history_total(result, imputed: bool) -> pd.Series:
    history, _ = daily_demand(
        result.tables["shift_requests"],
        result.tables["facilities"],
        AS_OF,
        as_of_instant(AS_OF, TZ),
        DAYS,
        24.0,
        imputed=result.impact.imputed if imputed else None,
    )
    return history.groupby(history["facility_id"].astype(str))["demand"].sum()


def test_clean_source_loses_nothing() -> None:
    result = _validate(_requests({"F1": 4, "F2": 2, "F3": 3}))
    assert region_shares(result.impact.impact).empty
    assert result.impact.imputed.empty
    assert result.impact.warnings() == []


def test_unreadable_shift_start_is_put_back_on_its_date() -> None:
    clean = _requests({"F1": 4, "F2": 2, "F3": 3})
    broken = _break(clean, 10, "shift_start", "not a time")
    expected = _validate(clean)
    result = _validate(broken)
    lost = (broken["shift_start"] == "not a time").sum()
    assert result.counts["shift_requests"]["quarantined"] == lost
    assert result.impact.imputed.shape[0] == lost
    # Lead time is two days for every request, so the estimated weeks are the true ones and
    # every request is put back in its own week.
    pd.testing.assert_series_equal(
        _history_total(result, imputed=True), _history_total(expected, imputed=False)
    )
    assert not result.impact.imputed["exact"].any()
    assert (_history_total(result, imputed=False) < _history_total(expected, False)).all()
    shares = region_shares(result.impact.impact).set_index(["region", "role"])
    assert shares.loc[("North", "RN"), "share"] == pytest.approx(0.1, abs=0.02)
    assert shares.loc[("North", "RN"), "used"] + shares.loc[("North", "RN"), "lost"] == (
        pytest.approx(28 * 6)
    )
    warnings = result.impact.warnings()
    assert warnings and warnings[0].startswith(("North RN", "South RN"))
    assert "of the last 28 days' demand" in warnings[0]


def test_one_region_losing_too_much_stops_the_run() -> None:
    requests = _requests({"F1": 6, "F2": 6, "F3": 1})
    south = requests.index[requests["facility_id"] == "F3"]
    requests.loc[south[::4], "shift_hours"] = "lots"  # a quarter of South's requests
    with pytest.raises(ValidationFailed) as stop:
        _validate(requests, max_region_loss_share=0.10)
    message = str(stop.value)
    assert "max_region_loss_share" in message and "South RN" in message
    assert "Nothing was published" in message
    assert stop.value.impact is not None and len(stop.value.impact)
    # Agency-wide the same rows are under 2%: the old rule alone would have let it through.
    assert len(south[::4]) / len(requests) < 0.02


def test_rows_of_an_unknown_facility_are_lost_without_a_region() -> None:
    requests = _requests({"F1": 2})
    requests.loc[requests.index[:5], "facility_id"] = "F9"
    result = _validate(requests)
    impact = result.impact.impact
    unknown = impact[impact["facility_id"] == "F9"]
    assert unknown["region"].tolist() == ["(unknown)"]
    assert unknown["imputed_shifts"].sum() == 0
    assert result.impact.imputed.empty


def test_estimated_dates_follow_the_weeks_own_days() -> None:
    """Put back in the estimated week, on the days of it that had demand."""
    from models.demand import _spread_over_weeks

    weeks = 60
    dates = pd.date_range("2024-01-01", periods=7 * weeks)  # starts on a Monday
    weekday_demand = [6, 6, 6, 6, 6, 0, 0]  # weekdays only
    history = pd.DataFrame(
        {
            "series_id": "F1:RN",
            "facility_id": "F1",
            "role": "RN",
            "date": dates,
            "demand": weekday_demand * weeks,
            "hours": [12.0 * d for d in weekday_demand] * weeks,
        }
    )
    saturdays = dates[dates.day_of_week == 5]  # estimated dates all land on Saturdays
    spread = pd.DataFrame(
        {"facility_id": "F1", "role": "RN", "date": saturdays.repeat(3), "shift_hours": 12.0}
    )
    added_rows = _spread_over_weeks(history, spread, dates[0], dates[-1] + pd.Timedelta(days=1))
    out = (
        pd.concat([history, added_rows[history.columns]], ignore_index=True)
        .groupby(["series_id", "facility_id", "role", "date"], as_index=False)[["demand", "hours"]]
        .sum()
    )
    weekly = out.groupby(out["date"] - pd.to_timedelta(out["date"].dt.day_of_week, "D"))["demand"]
    assert (weekly.sum() == 33).all()  # each week's level restored: 30 + 3
    by_day = out.groupby(out["date"].dt.day_of_week)["demand"].sum()
    assert by_day.loc[5] == 0 and by_day.loc[6] == 0  # weekends stay empty
    added = by_day.loc[0:4] - 6 * weeks
    assert added.sum() == 3 * weeks and added.min() > 0.1 * 3 * weeks  # spread, not piled
    assert out["hours"].sum() == pytest.approx(12.0 * out["demand"].sum())
    again = _spread_over_weeks(history, spread, dates[0], dates[-1] + pd.Timedelta(days=1))
    pd.testing.assert_frame_equal(added_rows, again)  # seeded


def test_identical_copies_carry_no_lost_demand() -> None:
    requests = _requests({"F1": 2})
    requests = pd.concat([requests, requests.iloc[:3]], ignore_index=True)
    result = _validate(requests)
    assert result.counts["shift_requests"]["quarantined"] == 3
    assert region_shares(result.impact.impact)["lost"].sum() == 0


def test_excluded_roles_are_counted_apart_and_never_warned_about() -> None:
    nurses = _requests({"F1": 3})
    aides = _requests({"F1": 2}, role="CNA", prefix="C")
    options = {"shift_requests": ParseOptions(exclude={"role": frozenset({"cna"})})}
    result = _validate(pd.concat([nurses, aides], ignore_index=True), options=options)
    counts = result.counts["shift_requests"]
    assert counts["excluded"] == len(aides)
    assert counts["extracted"] == counts["used"] + counts["quarantined"] + counts["excluded"]
    assert counts["quarantined"] == 0
    assert result.excluded.to_dict("records") == [
        {"source_table": "shift_requests", "column": "role", "value": "CNA", "rows": len(aides)}
    ]
    excluded = result.impact.impact[result.impact.impact["source"] == "excluded"]
    assert excluded["recent_shifts_lost"].sum() == pytest.approx(28 * 2)
    assert result.impact.warnings() == []
    assert result.impact.imputed.empty


def test_warning_threshold_is_one_percent() -> None:
    impact = pd.DataFrame(
        {
            "source": ["quarantined", "quarantined"],
            "region": ["North", "South"],
            "role": ["RN", "RN"],
            "facility_id": ["F1", "F3"],
            "rows": [1, 3],
            "recent_shifts_lost": [1.0, 3.0],
            "recent_hours_lost": [12.0, 36.0],
            "recent_shifts_used": [199, 97],
            "imputed_shifts": [1, 0],
            "window_days": [28, 28],
        }
    )
    warnings = loss_warnings(impact)
    assert len(warnings) == 1 and warnings[0].startswith("South RN: 3.0%")
