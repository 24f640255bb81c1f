"""Demand by the SPEC definition, on hand-built frames."""

from __future__ import annotations

from datetime import date

import pandas as pd

from models.demand import counted_requests, daily_demand

AS_OF = date(2025, 3, 10)
AS_OF_UTC = pd.Timestamp("2025-03-10 05:00", tz="UTC")  # midnight in Chicago (CDT from 03-09)


def _requests(rows: list[dict]) -> pd.DataFrame:
    base = {
        "facility_id": "F1",
        "role": "RN",
        "shift_hours": 12.0,
        "status": "filled",
        "cancelled_at": pd.NaT,
    }
    frame = pd.DataFrame([{**base, **r} for r in rows])
    for col in ("shift_start", "cancelled_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _facilities(**overrides) -> pd.DataFrame:
    row = {
        "facility_id": "F1",
        "region": "North",
        "timezone": "America/Chicago",
        "active_from": pd.Timestamp("2020-01-01"),
        "active_to": pd.NaT,
    }
    row.update(overrides)
    return pd.DataFrame([row])


def test_unfilled_counts_and_early_cancellation_does_not() -> None:
    requests = _requests(
        [
            {"shift_start": "2025-03-05 13:00", "status": "filled"},
            {"shift_start": "2025-03-05 13:00", "status": "unfilled"},
            {
                "shift_start": "2025-03-05 13:00",
                "status": "cancelled",
                "cancelled_at": "2025-03-03 13:00",
            },  # two days notice: not demand
            {
                "shift_start": "2025-03-05 13:00",
                "status": "cancelled",
                "cancelled_at": "2025-03-05 01:00",
            },  # 12 hours notice: demand
        ]
    ).assign(timezone="America/Chicago")
    counted = counted_requests(requests, AS_OF_UTC, late_cancellation_hours=24)
    assert len(counted) == 3


def test_cancellation_after_as_of_is_still_live() -> None:
    requests = _requests(
        [
            {
                "shift_start": "2025-03-20 13:00",
                "status": "cancelled",
                "cancelled_at": "2025-03-12 13:00",
            },
        ]
    ).assign(timezone="America/Chicago")
    assert len(counted_requests(requests, AS_OF_UTC, 24)) == 1


def test_local_date_in_facility_zone_across_dst() -> None:
    # 2025-03-09 is the spring-forward day in Chicago. 04:30 UTC on 03-09 is 22:30 on 03-08
    # local (CST); 05:30 UTC on 03-10 is 00:30 on 03-10 local (CDT).
    requests = _requests(
        [
            {"shift_start": "2025-03-09 04:30"},
            {"shift_start": "2025-03-10 04:30"},
        ]
    ).assign(timezone="America/Chicago")
    counted = counted_requests(requests, AS_OF_UTC, 24)
    assert list(counted["date"].dt.date) == [date(2025, 3, 8), date(2025, 3, 9)]


def test_daily_demand_fills_zero_days_and_splits_booked() -> None:
    requests = _requests(
        [
            {"shift_start": "2025-03-01 14:00"},
            {"shift_start": "2025-03-01 20:00", "shift_hours": 8.0},
            {"shift_start": "2025-03-04 14:00", "role": "LPN"},
            {"shift_start": "2025-03-12 14:00"},  # booked for after as_of
        ]
    )
    history, booked = daily_demand(
        requests,
        _facilities(active_from=pd.Timestamp("2025-02-27")),
        AS_OF,
        AS_OF_UTC,
        history_days=30,
        late_cancellation_hours=24,
    )
    rn = history[history["series_id"] == "F1:RN"]
    assert rn["date"].min() == pd.Timestamp("2025-02-27")  # active_from, not the first request
    assert rn["date"].max() == pd.Timestamp("2025-03-09")  # the day before as_of
    assert rn.set_index("date").loc["2025-03-01", "demand"] == 2
    assert rn.set_index("date").loc["2025-03-01", "hours"] == 20.0
    assert rn["demand"].sum() == 2 and (rn["demand"] >= 0).all()
    assert set(history["region"]) == {"North"}
    assert booked.to_dict("records") == [
        {
            "series_id": "F1:RN",
            "facility_id": "F1",
            "role": "RN",
            "date": pd.Timestamp("2025-03-12"),
            "booked": 1,
        }
    ]


def test_closed_facility_history_ends_at_active_to() -> None:
    requests = _requests([{"shift_start": "2025-02-01 14:00"}])
    history, _ = daily_demand(
        requests,
        _facilities(active_to=pd.Timestamp("2025-02-15")),
        AS_OF,
        AS_OF_UTC,
        history_days=60,
        late_cancellation_hours=24,
    )
    assert history["date"].max() == pd.Timestamp("2025-02-15")


def test_one_facility_with_categorical_ids_builds_its_history() -> None:
    """A source with one facility: ids arrive as categories from parsing, and mapping a
    one-category column once returned categories of dates that could not be compared."""
    requests = _requests(
        [{"shift_start": "2025-03-03 13:00"}, {"shift_start": "2025-03-05 13:00"}]
    ).astype({"facility_id": "category", "role": "category", "status": "category"})
    facilities = _facilities().astype({"facility_id": "category"})
    history, booked = daily_demand(requests, facilities, AS_OF, AS_OF_UTC, 10, 24.0)
    assert history["demand"].sum() == 2 and booked.empty
    assert str(history["date"].min().date()) == "2025-02-28"  # as_of - 10 days
    assert (history["region"] == "North").all()
