"""Nulls and blanks anywhere: the books still balance and every used request is demand.

Great Expectations' set and range expectations skip nulls unless told otherwise, so a row with a
missing role or facility could pass every contract and then vanish before the daily demand.
This property test puts nulls and blanks in every column of every table and checks, for each
table, rows extracted = used + quarantined + excluded, that no used row lacks a required field,
and that every used request that counts as demand reaches the daily demand (history + booked).
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_contracts.validate import validate_extract
from models.demand import counted_requests, daily_demand
from staffcast.errors import ValidationFailed
from staffcast.source import SOURCE_COLUMNS, SourceExtract, as_of_instant

TZ = "America/Chicago"
AS_OF = date(2025, 3, 10)
HISTORY_DAYS = 120
REQUIRED = {
    "facilities": ("facility_id", "region", "timezone"),
    "shift_requests": (
        "request_id",
        "facility_id",
        "role",
        "shift_start",
        "shift_hours",
        "requested_at",
        "status",
    ),
    "nurses": ("nurse_id", "role", "region", "hired_on"),
    "shift_offers": ("request_id", "offered_at", "response"),
}


def _tables() -> dict[str, pd.DataFrame]:
    facilities = pd.DataFrame(
        {
            "facility_id": ["F1", "F2", "F3"],
            "facility_type": ["hospital", "nursing_home", "hospital"],
            "region": ["North", "North", "South"],
            "timezone": [TZ, TZ, "America/New_York"],
            "active_from": ["2020-01-01", "2021-06-01", "2020-01-01"],
            "active_to": [None, None, None],
        }
    )
    rows = []
    statuses = ["filled", "unfilled", "cancelled", "filled"]
    for i in range(24):
        day = AS_OF - timedelta(days=40 - 3 * i)  # 16 past days, 8 booked ahead
        status = statuses[i % 4]
        rows.append(
            {
                "request_id": f"R{i}",
                "facility_id": f"F{1 + i % 3}",
                "role": "RN" if i % 2 else "LPN",
                "shift_start": f"{day}T07:00:00",
                "shift_hours": "12" if i % 5 else "8.5",
                "requested_at": f"{min(day, AS_OF) - timedelta(days=3)}T12:00:00+00:00",
                "status": status,
                "cancelled_at": (
                    f"{day - timedelta(days=i % 3)}T01:00:00+00:00"
                    if status == "cancelled"
                    else None
                ),
            }
        )
    requests = pd.DataFrame(rows)
    nurses = pd.DataFrame(
        {
            "nurse_id": ["N1", "N2", "N3", "N4"],
            "role": ["RN", "LPN", "RN", "LPN"],
            "region": ["North", "North", "South", "South"],
            "on_call": ["1", "true", "0", "yes"],
            "hired_on": ["2021-01-01", "2022-05-01", "2023-01-01", "2024-01-01"],
            "separated_on": [None, "2024-12-01", None, None],
        }
    )
    offers = pd.DataFrame(
        {
            "request_id": ["R0", "R1", "R2", "R3", "R4"],
            "offered_at": [f"2025-02-0{d}T10:00:00+00:00" for d in range(1, 6)],
            "response": ["accepted", "declined", "no_response", "accepted", "declined"],
        }
    )
    return {
        "facilities": facilities,
        "shift_requests": requests,
        "nurses": nurses,
        "shift_offers": offers,
    }


CELLS = [(table, column) for table, columns in SOURCE_COLUMNS.items() for column in columns]


@st.composite
def holes(draw: st.DrawFn) -> list[tuple[str, str, int, str | None]]:
    """Where to punch nulls and blanks: (table, column, row, value)."""
    sizes = {name: len(frame) for name, frame in _tables().items()}
    count = draw(st.integers(1, 10))
    picks = []
    for _ in range(count):
        table, column = draw(st.sampled_from(CELLS))
        row = draw(st.integers(0, sizes[table] - 1))
        value = draw(st.sampled_from([None, "", "   "]))
        picks.append((table, column, row, value))
    return picks


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(holes())
def test_nulls_and_blanks_anywhere_keep_the_books(
    punched: list[tuple[str, str, int, str | None]],
) -> None:
    tables = _tables()
    for table, column, row, value in punched:
        tables[table].loc[row, column] = value
    extract = SourceExtract(AS_OF, as_of_instant(AS_OF, TZ), tables)
    try:
        result = validate_extract(
            extract, TZ, 1.0, 60, history_days=HISTORY_DAYS, max_region_loss_share=1.0
        )
    except ValidationFailed as stop:  # e.g. every facility broken: a batch rule, named
        assert "Source table '" in str(stop) and "rule" in str(stop)
        return

    for table, counts in result.counts.items():
        assert counts["extracted"] == counts["used"] + counts["quarantined"] + counts.get(
            "excluded", 0
        ), (table, counts)
        used = result.tables[table]
        for column in REQUIRED[table]:
            assert used[column].notna().all(), (table, column, used[column].tolist())

    requests = result.tables["shift_requests"]
    assert (requests.loc[requests["status"] == "cancelled", "cancelled_at"]).notna().all()
    facilities = result.tables["facilities"]
    as_of_utc = as_of_instant(AS_OF, TZ)
    zones = facilities.set_index("facility_id")["timezone"]
    counted = counted_requests(
        requests.assign(timezone=requests["facility_id"].map(zones)), as_of_utc, 24.0
    )
    history, booked = daily_demand(requests, facilities, AS_OF, as_of_utc, HISTORY_DAYS, 24.0)
    reached = int(history["demand"].sum()) + int(booked["booked"].sum())
    assert reached == len(counted), (reached, len(counted))
    assert counted["date"].notna().all()
