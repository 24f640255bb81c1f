"""Extract and data contracts: as_of cut, minimum necessary columns, quarantine, stops."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from data_contracts.validate import validate_extract
from staffcast.errors import SourceUnavailable, ValidationFailed
from staffcast.source import SOURCE_COLUMNS, as_of_instant, connect_source, read_source

TZ = "America/Chicago"
AS_OF = date(2025, 3, 10)


def _source(path: Path, requests: list[tuple], facilities: list[tuple] | None = None) -> str:
    """A tiny operational database in the SPEC §2 schema (plus columns never to be read)."""
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE facilities (facility_id TEXT, name TEXT, facility_type TEXT, region TEXT,
            timezone TEXT, active_from TEXT, active_to TEXT);
        CREATE TABLE shift_requests (request_id TEXT, facility_id TEXT, role TEXT,
            shift_start TEXT, shift_hours REAL, requested_at TEXT, status TEXT,
            cancelled_at TEXT, unit TEXT, nurse_id TEXT, notes TEXT);
        CREATE TABLE nurses (nurse_id TEXT, name TEXT, phone TEXT, role TEXT, region TEXT,
            on_call INTEGER, hired_on TEXT, separated_on TEXT);
        CREATE TABLE shift_offers (request_id TEXT, nurse_id TEXT, offered_at TEXT,
            response TEXT);
        """
    )
    con.executemany(
        "INSERT INTO facilities VALUES (?,?,?,?,?,?,?)",
        facilities or [("F1", "Lakeview <b>", "hospital", "North", TZ, "2020-01-01", None)],
    )
    con.executemany(
        "INSERT INTO shift_requests VALUES (?,?,?,?,?,?,?,?,'ICU',NULL,'call Ann 555-0100')",
        requests,
    )
    con.executemany(
        "INSERT INTO nurses VALUES (?,?,?,?,?,?,?,?)",
        [
            ("N1", "Ann", "555-0100", "RN", "North", 1, "2021-01-01", None),
            ("N2", "Bob", "555-0101", "RN", "North", 1, "2024-01-01", "2023-01-01"),
            ("N3", "Cy", "555-0102", "RN", "North", 1, "2025-04-01", None),
        ],  # hired after as_of
    )
    con.execute(
        "INSERT INTO shift_offers VALUES ('R1','N1','2025-03-01T10:00:00+00:00','accepted')"
    )
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def _good(i: int, start: str = "2025-03-05T07:00:00-06:00", **kw) -> tuple:
    row = {
        "request_id": f"R{i}",
        "facility_id": "F1",
        "role": "RN",
        "shift_start": start,
        "shift_hours": 12.0,
        "requested_at": "2025-03-01T12:00:00+00:00",
        "status": "filled",
        "cancelled_at": None,
    }
    row.update(kw)
    return tuple(row.values())


def _validate(url: str, max_share: float = 0.5):
    engine = connect_source(url)
    with engine.connect() as conn:
        extract = read_source(conn, AS_OF, TZ)
    return extract, validate_extract(extract, TZ, max_share, 14)


def test_reads_only_needed_columns_and_cuts_at_as_of(tmp_path: Path) -> None:
    later = "2025-03-12T07:00:00-05:00"
    url = _source(
        tmp_path / "ops.db",
        [
            _good(1),
            # 23:59 on 03-09 in Chicago: seen; as_of midnight: not yet; naive = agency time.
            _good(2, start=later, requested_at="2025-03-10T04:59:00+00:00"),
            _good(3, start=later, requested_at="2025-03-10T05:00:00+00:00"),
            _good(4, start=later, requested_at="2025-03-10 00:30"),
        ],
    )
    extract, result = _validate(url)
    for table, frame in extract.tables.items():
        assert list(frame.columns) == list(SOURCE_COLUMNS[table])
        assert not {"name", "phone", "notes", "unit"} & set(frame.columns)
    assert set(result.tables["shift_requests"]["request_id"]) == {"R1", "R2"}
    assert result.rows("shift_requests") == (2, 2, 0)
    assert list(result.tables["nurses"]["nurse_id"]) == ["N1"]  # N2 quarantined, N3 not hired
    assert result.quarantine.query("source_table == 'nurses'")["rule"].tolist() == [
        "separated_before_hired"
    ]


def test_bad_rows_are_quarantined_with_their_rule(tmp_path: Path) -> None:
    rows = [_good(i) for i in range(1, 31)] + [
        _good(100, role=" rn "),  # repaired: whitespace and case
        _good(101, start="2025-03-05 07:00"),  # repaired: naive local time
        _good(102, facility_id="F999"),
        _good(103, role="CNA"),
        _good(104, status="pending"),
        _good(105, shift_hours=0.0),
        _good(106, shift_hours=25.0),
        _good(107, start="not a time"),
        _good(108, requested_at="2025-03-08T12:00:00+00:00"),  # 3 days after the shift
        _good(109, status="cancelled"),  # no cancelled_at
        _good(1),  # identical copy of R1: one used
        _good(2, shift_hours=8.0),  # conflicts with R2: both quarantined
    ]
    _, result = _validate(_source(tmp_path / "ops.db", rows))
    q = result.quarantine.query("source_table == 'shift_requests'")
    rules = dict(zip(q["source_key"], q["rule"], strict=False))
    assert rules == {
        "R102": "unknown_facility",
        "R103": "role_not_in_set",
        "R104": "status_not_in_set",
        "R105": "shift_hours_out_of_range",
        "R106": "shift_hours_out_of_range",
        "R107": "shift_start_unparseable",
        "R108": "requested_after_shift_start",
        "R109": "cancelled_without_cancelled_at",
        "R1": "duplicate_request_id",
        "R2": "duplicate_request_id",
    }
    assert (q["source_key"] == "R2").sum() == 2 and (q["source_key"] == "R1").sum() == 1
    extracted, used, quarantined = result.rows("shift_requests")
    assert extracted == len(rows) == used + quarantined
    used_frame = result.tables["shift_requests"].set_index("request_id")
    assert used_frame.loc["R100", "role"] == "RN"
    assert used_frame.loc["R101", "shift_start"] == pd.Timestamp("2025-03-05 13:00", tz="UTC")


def test_too_many_quarantined_rows_stop_the_run(tmp_path: Path) -> None:
    rows = [_good(1), _good(2), _good(3, role="CNA")]
    with pytest.raises(ValidationFailed, match=r"max_quarantine_share.*role_not_in_set"):
        _validate(_source(tmp_path / "ops.db", rows), max_share=0.1)


def test_stale_extract_stops_with_table_rule_and_example(tmp_path: Path) -> None:
    rows = [_good(1, requested_at="2025-01-02T12:00:00+00:00", start="2025-01-05T07:00:00-06:00")]
    with pytest.raises(ValidationFailed) as info:
        _validate(_source(tmp_path / "ops.db", rows))
    message = str(info.value)
    assert "shift_requests" in message and "recent_requests" in message
    assert "2025-01-02" in message and "before publishing" in message


def test_missing_column_stops_with_a_clear_message(tmp_path: Path) -> None:
    url = _source(tmp_path / "ops.db", [_good(1)])
    with sa.create_engine(url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE shift_requests RENAME COLUMN shift_hours TO hours")
    with pytest.raises(ValidationFailed, match=r"'shift_requests' is missing .*shift_hours"):
        _validate(url)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        connect_source(f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()


def test_as_of_instant_is_midnight_in_the_agency_zone() -> None:
    assert as_of_instant(date(2025, 1, 6), TZ) == pd.Timestamp("2025-01-06 06:00", tz="UTC")
    assert as_of_instant(date(2025, 7, 7), TZ) == pd.Timestamp("2025-07-07 05:00", tz="UTC")


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        (  # cancelled two days ahead: no demand (issue 12, a facility whose requests all are)
            [
                _good(i, status="cancelled", cancelled_at="2025-03-03T07:00:00+00:00")
                for i in (1, 2)
            ],
            "before the shift: 2;",
        ),
        (  # only bookings ahead (a new client): nothing before as_of to forecast from
            [_good(1, start="2025-03-12T07:00:00-05:00", requested_at="2025-03-09T12:00:00+00:00")],
            "on or after as_of: 1;",
        ),
    ],
)
def test_a_source_without_past_demand_stops_with_rule_history_demand(
    tmp_path: Path, rows: list[tuple], why: str
) -> None:
    """The weekly run failed on these with pandas' 'No objects to concatenate' (no series)."""
    with pytest.raises(ValidationFailed) as info:
        _validate(_source(tmp_path / "ops.db", rows))
    message = str(info.value)
    assert "'shift_requests'" in message and "'history_demand'" in message and why in message
    assert "\n" not in message
    late = _good(1, status="cancelled", cancelled_at="2025-03-05T01:00:00+00:00")  # 12 h ahead
    _, result = _validate(_source(tmp_path / "late.db", [late]))
    assert result.rows("shift_requests") == (1, 1, 0)
