"""Nulls and blanks in every required field are quarantined under a rule that names the field.

Great Expectations' set and range expectations skip nulls, so each required field has its own
not-null rule (see :mod:`data_contracts.suites`). Each case starts from a tiny clean extract held
in memory, breaks one field of one row, and checks the rule the row is quarantined under and
that every table still balances (extracted = used + quarantined + excluded). Optional fields may
be missing, but a value there that cannot be read is quarantined too, never silently dropped.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from data_contracts.validate import ValidationResult, validate_extract
from staffcast.source import SourceExtract, as_of_instant

TZ = "America/Chicago"
AS_OF = date(2025, 3, 10)
NULLS = {"null": None, "empty": "", "blank": "  \t "}

Tables = dict[str, pd.DataFrame]


def tiny_tables() -> Tables:
    """A clean agency: five facilities (requests at F1 only), 40 recent RN requests, eight
    nurses, six offers; small enough to break one row per field in one run."""
    facilities = pd.DataFrame(
        {
            "facility_id": [f"F{i}" for i in range(1, 6)],
            "facility_type": ["hospital", "nursing_home"] * 2 + ["hospital"],
            "region": ["North"] * 5,
            "timezone": [TZ] * 5,
            "active_from": ["2020-01-01"] * 5,
            "active_to": [None] * 5,
        }
    )
    n = 40
    stamps = pd.date_range("2025-02-20 07:00", periods=n, freq="12h", tz=TZ)
    requests = pd.DataFrame(
        {
            "request_id": [f"R{i}" for i in range(n)],
            "facility_id": ["F1"] * n,
            "role": ["RN"] * n,
            "shift_start": [t.isoformat() for t in stamps],
            "shift_hours": ["12"] * n,
            "requested_at": [(t - pd.Timedelta(days=2)).isoformat() for t in stamps],
            "status": ["filled", "cancelled", "filled", "unfilled"] * (n // 4),
            "cancelled_at": [None, "2025-02-19T09:00:00Z", None, None] * (n // 4),
        }
    )
    nurses = pd.DataFrame(
        {
            "nurse_id": [f"N{i}" for i in range(1, 9)],
            "role": ["RN", "RN", "LPN", "RN"] * 2,
            "region": ["North"] * 8,
            "on_call": ["1", "true", "0", "yes"] * 2,
            "hired_on": ["2021-01-01", "2022-05-01", "2023-07-15", "2024-02-29"] * 2,
            "separated_on": [None] * 8,
        }
    )
    offers = pd.DataFrame(
        {
            "request_id": ["R0", "R2", "R3", "R4", "R6", "R7"],
            "offered_at": ["2025-02-27T10:00:00+00:00"] * 6,
            "response": ["accepted", "declined", "no_response"] * 2,
        }
    )
    return {
        "facilities": facilities,
        "shift_requests": requests,
        "nurses": nurses,
        "shift_offers": offers,
    }


def run(tables: Tables) -> ValidationResult:
    """Validate ``tables`` as an in-memory extract; every table must balance."""
    extract = SourceExtract(as_of=AS_OF, as_of_utc=as_of_instant(AS_OF, TZ), tables=tables)
    result = validate_extract(extract, TZ, 0.5, 14)
    for table, counts in result.counts.items():
        assert counts["extracted"] == (
            counts["used"] + counts["quarantined"] + counts.get("excluded", 0)
        ), table
    return result


def put(tables: Tables, table: str, row: int, **values: object) -> None:
    """Set values of one row (columns turned to object first, so any value fits)."""
    frame = tables[table]
    for column, value in values.items():
        frame[column] = frame[column].astype(object)
        frame.at[row, column] = value


def rule_of(result: ValidationResult, table: str, key: str) -> tuple[str, str]:
    """(rule, detail) of the one quarantine entry of ``key`` in ``table``."""
    q = result.quarantine
    entry = q[(q["source_table"] == table) & (q["source_key"] == key)]
    assert len(entry) == 1, q.to_dict("records")
    return entry.iloc[0]["rule"], entry.iloc[0]["detail"]


def test_the_tiny_agency_is_clean() -> None:
    result = run(tiny_tables())
    assert result.quarantine.empty, result.quarantine.to_dict("records")
    assert result.rows("shift_requests") == (40, 40, 0)
    assert result.rows("nurses") == (8, 8, 0)


def quarantined(result: ValidationResult) -> dict[tuple[str, str], str]:
    q = result.quarantine
    return dict(zip(zip(q["source_table"], q["source_key"], strict=True), q["rule"], strict=True))


# (table, field, row broken, its key once broken, the rule expected): one row per field.
REQUIRED = [
    ("facilities", "facility_id", 1, "row 1", "facility_id_present"),
    ("facilities", "region", 2, "F3", "region_present"),
    ("facilities", "timezone", 3, "F4", "timezone_missing"),
    ("shift_requests", "request_id", 2, "row 2", "request_id_present"),
    ("shift_requests", "facility_id", 3, "R3", "facility_id_missing"),
    ("shift_requests", "role", 4, "R4", "role_missing"),
    ("shift_requests", "shift_start", 5, "R5", "shift_start_missing"),
    ("shift_requests", "shift_hours", 6, "R6", "shift_hours_missing"),
    ("shift_requests", "requested_at", 7, "R7", "requested_at_missing"),
    ("shift_requests", "status", 8, "R8", "status_missing"),
    ("shift_requests", "cancelled_at", 1, "R1", "cancelled_without_cancelled_at"),  # cancelled
    ("nurses", "nurse_id", 1, "row 1", "nurse_id_present"),
    ("nurses", "role", 2, "N3", "role_missing"),
    ("nurses", "region", 3, "N4", "region_missing"),
    ("nurses", "on_call", 4, "N5", "on_call_missing"),
    ("nurses", "hired_on", 5, "N6", "hired_on_missing"),
    ("shift_offers", "request_id", 1, "row 1", "request_id_missing"),
    ("shift_offers", "offered_at", 2, "R3", "offered_at_missing"),
    ("shift_offers", "response", 3, "R4", "response_missing"),
]


@pytest.mark.parametrize("null", list(NULLS), ids=str)
def test_a_missing_required_field_is_quarantined_under_a_rule_naming_it(null: str) -> None:
    tables = tiny_tables()
    for table, field, row, _, rule in REQUIRED:
        assert field in rule
        put(tables, table, row, **{field: NULLS[null]})
    result = run(tables)
    assert quarantined(result) == {(t, key): rule for t, _, _, key, rule in REQUIRED}


def test_native_missing_values_are_missing_too() -> None:
    tables = tiny_tables()
    requests, nurses = tables["shift_requests"], tables["nurses"]
    requests["shift_start"] = pd.to_datetime(requests["shift_start"], utc=True)
    requests.loc[1, "shift_start"] = pd.NaT
    requests["shift_hours"] = requests["shift_hours"].astype(float)
    requests.loc[2, "shift_hours"] = float("nan")
    nurses["hired_on"] = pd.to_datetime(nurses["hired_on"])
    nurses.loc[1, "hired_on"] = pd.NaT
    flags = {"1": True, "true": True, "0": False, "yes": True}
    nurses["on_call"] = nurses["on_call"].map(flags).astype("boolean")
    nurses.loc[2, "on_call"] = pd.NA
    result = run(tables)
    assert quarantined(result) == {
        ("shift_requests", "R1"): "shift_start_missing",
        ("shift_requests", "R2"): "shift_hours_missing",
        ("nurses", "N2"): "hired_on_missing",
        ("nurses", "N3"): "on_call_missing",
    }


UNREADABLE = [
    ("facilities", "active_from", 1, "F2", "someday", "active_from_unparseable"),
    ("facilities", "active_to", 2, "F3", "2024-13-45", "active_to_unparseable"),
    ("shift_requests", "shift_start", 2, "R2", "next tuesday", "shift_start_unparseable"),
    ("shift_requests", "requested_at", 3, "R3", "yesterday", "requested_at_unparseable"),
    ("shift_requests", "shift_hours", 4, "R4", "twelve", "shift_hours_unparseable"),
    ("shift_requests", "cancelled_at", 6, "R6", "soon", "cancelled_at_unparseable"),  # filled
    ("shift_requests", "cancelled_at", 5, "R5", "later", "cancelled_at_unparseable"),  # cancelled
    ("nurses", "on_call", 1, "N2", "maybe", "on_call_unparseable"),
    ("nurses", "hired_on", 2, "N3", "the spring", "hired_on_unparseable"),
    ("nurses", "separated_on", 3, "N4", "never", "separated_on_unparseable"),
    ("shift_offers", "offered_at", 1, "R2", "at noon", "offered_at_unparseable"),
]


def test_an_unreadable_value_is_quarantined_with_what_the_source_said() -> None:
    tables = tiny_tables()
    for table, field, row, _, value, _ in UNREADABLE:
        put(tables, table, row, **{field: value})
    result = run(tables)
    assert quarantined(result) == {(t, key): rule for t, _, _, key, _, rule in UNREADABLE}
    details = dict(
        zip(
            zip(result.quarantine["source_table"], result.quarantine["source_key"], strict=True),
            result.quarantine["detail"],
            strict=True,
        )
    )
    for table, field, _, key, value, rule in UNREADABLE:
        assert details[(table, key)].startswith(f"{rule}: {field}={value!r}"), details[(table, key)]


OPTIONAL = [
    ("facilities", "facility_type", 0),
    ("facilities", "active_from", 1),
    ("facilities", "active_to", 2),
    ("shift_requests", "cancelled_at", 0),  # filled: no cancellation time needed
    ("shift_requests", "cancelled_at", 2),
    ("nurses", "separated_on", 0),
]


@pytest.mark.parametrize("null", list(NULLS), ids=str)
def test_optional_fields_may_be_missing(null: str) -> None:
    tables = tiny_tables()
    for table, field, row in OPTIONAL:
        put(tables, table, row, **{field: NULLS[null]})
    result = run(tables)
    assert result.quarantine.empty, result.quarantine.to_dict("records")


def test_far_future_end_dates_mean_no_end() -> None:
    tables = tiny_tables()
    put(tables, "facilities", 0, active_to="9999-12-31")
    put(tables, "nurses", 0, separated_on="9999-12-31")
    put(tables, "nurses", 1, hired_on="9999-12-31")
    result = run(tables)
    assert pd.isna(result.tables["facilities"].set_index("facility_id").loc["F1", "active_to"])
    assert pd.isna(result.tables["nurses"].set_index("nurse_id").loc["N1", "separated_on"])
    rule, detail = rule_of(result, "nurses", "N2")
    assert rule == "hired_on_unparseable" and "'9999-12-31'" in detail


def test_requests_without_an_id_are_not_duplicates_of_each_other() -> None:
    tables = tiny_tables()
    put(tables, "shift_requests", 2, request_id=None)
    put(tables, "shift_requests", 3, request_id="  ")
    put(tables, "shift_requests", 4, request_id="R5")  # a real duplicate, conflicting
    result = run(tables)
    for key in ("row 2", "row 3"):
        rule, detail = rule_of(result, "shift_requests", key)
        assert rule == "request_id_present"
        assert "duplicate" not in detail
    q = result.quarantine
    assert list(q.loc[q["source_key"] == "R5", "rule"]) == ["duplicate_request_id"] * 2
