"""Database sources with their own names and native types, read through a source mapping.

PostgreSQL (``@pytest.mark.postgres``: needs ``STAFFCAST_TEST_POSTGRES_URL``; skipped without
it, except under ``CI``, where it fails): an agency schema ``scheduling.shifts(shift_id bigint,
start_time timestamptz, ...)``, ``scheduling.sites``, ``hr.staff`` (boolean on_call, date
hire_date), ``scheduling.offers``, read end to end by ``open_source`` with the mapping and
validated; the as_of cut runs in SQL in the column's own type and uses the index. SQLite tests
(tables, queries and SQL expressions through a mapping; every missing table and column at once)
run everywhere.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml

from data_contracts.validate import validate_extract
from staffcast.errors import ValidationFailed
from staffcast.mapping import SourceMapping, load_mapping, mapping_from_data
from staffcast.source import (
    SOURCE_COLUMNS,
    StreamedTable,
    as_of_instant,
    libpq_uri,
    read_source,
)
from staffcast.source_files import open_source
from tests.conftest import POSTGRES_URL

TZ = "America/Chicago"
AS_OF = date(2025, 11, 3)
AS_OF_UTC = as_of_instant(AS_OF, TZ)  # 2025-11-03 06:00 UTC
NEVER_READ = {"site_name", "full_name", "phone", "notes"}
DAYS = 40

MAPPING_YAML = """
tables:
  facilities:
    table: scheduling.sites
    columns:
      facility_id: site_code
      facility_type: site_type
      region: region_name
      timezone: tz
      active_from: opened_on
      active_to: closed_on
    values:
      facility_type: {Hospital: hospital, SNF: nursing_home}
  shift_requests:
    table: scheduling.shifts
    columns:
      request_id: shift_id
      facility_id: site_code
      role: job_title
      shift_start: start_time
      shift_hours: {sql: "EXTRACT(EPOCH FROM end_time - start_time) / 3600"}
      requested_at: created_at
      status: shift_status
    values:
      role: {Registered Nurse: RN, LPN: LPN}
      status: {F: filled, U: unfilled, C: cancelled}
    exclude:
      role: [CNA]
  nurses:
    table: hr.staff
    columns:
      nurse_id: staff_id
      role: job_title
      region: region_name
      hired_on: hire_date
      separated_on: term_date
    values:
      role: {Registered Nurse: RN}
    exclude:
      role: [CNA]
  shift_offers:
    table: scheduling.offers
    columns:
      request_id: shift_id
    values:
      response: {A: accepted, D: declined, N: no_response}
"""

SITES = [
    ("F1", "Lakeview North", "Hospital", "North", "America/Chicago", date(2020, 1, 1), None),
    ("F2", "Pine Court", "SNF", "North", "America/Chicago", date(2021, 5, 1), None),
    ("F3", "Harbor View", "Hospital", "East", "America/New_York", date(2019, 3, 1), None),
]
TITLES = ("Registered Nurse", "LPN", "CNA")


def _shifts() -> list[tuple]:
    """Three shifts a day per site for DAYS days before as_of (one in three a CNA), plus rows
    the as_of cut must handle: requested a day or more after as_of (dropped in SQL), within the
    day's margin (dropped after parsing) and without requested_at (kept, quarantined)."""
    rows = []
    shift_id = 10_000
    for day in range(DAYS):
        for site, _, _, _, zone, _, _ in SITES:
            for n, title in enumerate(TITLES):
                local = datetime.combine(AS_OF - timedelta(days=DAYS - day), datetime.min.time())
                start = (local + timedelta(hours=7 + n)).replace(tzinfo=ZoneInfo(zone))
                created = start - timedelta(days=2, hours=n)
                status = "FUC"[shift_id % 7 % 3] if shift_id % 7 < 3 else "F"
                cancelled = created + timedelta(hours=1) if status == "C" else None
                rows.append(
                    (shift_id, site, title, start, start + timedelta(hours=12), created, status)
                    + (cancelled, 12.0, "call Ann 555-0100")
                )
                shift_id += 1
    start = datetime(2025, 11, 10, 7, tzinfo=ZoneInfo(TZ))
    for created in (
        AS_OF_UTC + timedelta(days=2),
        AS_OF_UTC + timedelta(days=3),
        AS_OF_UTC + timedelta(hours=2),
        None,
    ):
        rows.append(
            (shift_id, "F1", "LPN", start, start + timedelta(hours=8), created, "U", None, 8.0, "")
        )
        shift_id += 1
    return rows


SHIFTS = _shifts()
LATE = 2  # shifts requested a day or more after as_of: not selected
STAFF = [
    (500 + i, f"Nurse {i}", "555-0100", TITLES[i % 3], ["North", "East"][i % 2], i % 4 == 0)
    + (date(2023, 1, 1) + timedelta(days=i), None)
    for i in range(30)
] + [(600, "New Hire", "555-0199", "LPN", "North", False, AS_OF, None)]
OFFERS = [
    (row[0], 500 + i % 30, row[5] + timedelta(hours=1), "ADN"[i % 3])
    for i, row in enumerate(SHIFTS[: 3 * 3 * DAYS])
    if i % 2 == 0
]

SCHEMA = """
CREATE SCHEMA scheduling;
CREATE SCHEMA hr;
CREATE TABLE scheduling.sites (
    site_code text, site_name text, site_type text, region_name text, tz text,
    opened_on date, closed_on date);
CREATE TABLE scheduling.shifts (
    shift_id bigint NOT NULL, site_code text, job_title text, start_time timestamptz,
    end_time timestamptz, created_at timestamptz, shift_status char(1), cancelled_at timestamptz,
    scheduled_hours numeric(4, 2), notes text);
CREATE INDEX shifts_created_at ON scheduling.shifts (created_at);
CREATE TABLE hr.staff (
    staff_id bigint NOT NULL, full_name text, phone text, job_title text, region_name text,
    on_call boolean, hire_date date, term_date date);
CREATE TABLE scheduling.offers (
    shift_id bigint NOT NULL, staff_id bigint, offered_at timestamptz, response text);
"""


def _postgres_server() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI"):
        pytest.fail("CI is set but STAFFCAST_TEST_POSTGRES_URL is not: these tests must run")
    pytest.skip(
        "PostgreSQL not configured: set STAFFCAST_TEST_POSTGRES_URL, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
    )


@pytest.fixture(scope="module")
def pg_agency() -> Iterator[str]:
    """A fresh PostgreSQL database holding the agency's own schema (dropped afterwards)."""
    server = _postgres_server()
    name = f"source_native_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(SCHEMA)
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO scheduling.sites VALUES (%s, %s, %s, %s, %s, %s, %s)", SITES
                )
                cursor.executemany(
                    "INSERT INTO scheduling.shifts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    SHIFTS,
                )
                cursor.executemany(
                    "INSERT INTO hr.staff VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", STAFF
                )
                cursor.executemany("INSERT INTO scheduling.offers VALUES (%s, %s, %s, %s)", OFFERS)
            conn.exec_driver_sql("ANALYZE")
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="module")
def mapping(tmp_path_factory: pytest.TempPathFactory) -> SourceMapping:
    path = tmp_path_factory.mktemp("mapping") / "agency.yaml"
    path.write_text(MAPPING_YAML, encoding="utf-8")
    return load_mapping(path)


def _frame(table: object) -> pd.DataFrame:
    if isinstance(table, StreamedTable):
        return pd.concat(list(table), ignore_index=True)
    assert isinstance(table, pd.DataFrame)
    return table


def _arrow(frame: pd.DataFrame, column: str) -> pa.DataType:
    dtype = frame[column].dtype
    assert isinstance(dtype, pd.ArrowDtype), (column, dtype)
    return dtype.pyarrow_dtype


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.mark.postgres
def test_native_postgresql_source_through_a_mapping(pg_agency: str, mapping: SourceMapping) -> None:
    extract = open_source(pg_agency, AS_OF, TZ, mapping)

    assert extract.described == mapping.describe()
    assert extract.options["shift_requests"].exclude == {"role": frozenset({"CNA"})}
    assert extract.options["shift_offers"].values["response"]["A"] == "accepted"
    requests = extract.tables["shift_requests"]
    assert isinstance(requests, StreamedTable)  # streamed, password kept out of its repr
    assert "created_at" in requests.sql and "scheduled_hours" not in requests.sql
    frames = {t: _frame(extract.tables[t]) for t in SOURCE_COLUMNS}
    for table, frame in frames.items():
        assert list(frame.columns) == list(SOURCE_COLUMNS[table])
        assert not NEVER_READ & set(frame.columns)

    shifts = frames["shift_requests"]
    assert len(shifts) == len(SHIFTS) - LATE  # the margin row and the NULL row are kept
    assert shifts["requested_at"].isna().sum() == 1
    assert _arrow(shifts, "request_id") == pa.int64()
    assert _arrow(shifts, "shift_start") == pa.timestamp("us", tz="UTC")
    assert _arrow(shifts, "requested_at") == pa.timestamp("us", tz="UTC")
    assert _arrow(shifts, "shift_hours") == pa.float64()
    assert shifts["shift_hours"].iloc[0] == 12.0
    assert shifts["role"].dtype == pd.StringDtype("pyarrow")
    assert shifts["status"].iloc[0] in {"F", "U", "C"}  # codes as the source has them
    nurses = frames["nurses"]
    assert len(nurses) == len(STAFF) - 1  # hired on as_of: not yet
    assert _arrow(nurses, "on_call") == pa.bool_()
    assert _arrow(nurses, "hired_on") == pa.date32()
    assert _arrow(frames["facilities"], "active_from") == pa.date32()
    assert len(frames["shift_offers"]) == len(OFFERS)

    # The validation, loosely: every read row is accounted for, the excluded CNA shifts among
    # them once the parsing layer reads the mapping's options.
    result = validate_extract(open_source(pg_agency, AS_OF, TZ, mapping), TZ, 0.5, 14)
    counts = result.counts["shift_requests"]
    assert counts["extracted"] in (len(SHIFTS) - LATE - 1, len(SHIFTS) - LATE)  # exact cut
    assert (
        counts["used"] + counts["quarantined"] + counts.get("excluded", 0) == (counts["extracted"])
    )
    assert counts["used"] > 0 and result.counts["facilities"]["used"] == len(SITES)


@pytest.mark.postgres
def test_the_as_of_cut_uses_the_index(pg_agency: str, mapping: SourceMapping) -> None:
    extract = open_source(pg_agency, AS_OF, TZ, mapping)
    requests = extract.tables["shift_requests"]
    assert isinstance(requests, StreamedTable)
    assert "CAST('2025-11-04T06:00:00+00:00' AS timestamptz)" in requests.sql
    engine = sa.create_engine(pg_agency)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            runner = conn.execution_options(no_parameters=True)
            plan = "\n".join(r[0] for r in runner.exec_driver_sql("EXPLAIN " + requests.sql))
    finally:
        engine.dispose()
    assert "shifts_created_at" in plan, plan


@pytest.mark.postgres
def test_cut_follows_the_column_type(pg_agency: str) -> None:
    """A naive timestamp, a date and text (through a query and expressions) are each cut in
    their own type; text that is not ISO-like is kept for validation to quarantine."""
    engine = sa.create_engine(pg_agency)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE public.shift_requests AS SELECT 'R' || shift_id AS request_id, "
            "site_code AS facility_id, 'RN' AS role, start_time AS shift_start, "
            "scheduled_hours AS shift_hours, created_at AT TIME ZONE 'America/Chicago' AS "
            "requested_at, 'filled' AS status, cancelled_at FROM scheduling.shifts"
        )
    agency = yaml.safe_load(MAPPING_YAML)["tables"]
    base = {"facilities": agency["facilities"], "nurses": agency["nurses"]}
    kinds = {
        "timestamp": "requested_at",
        "date": {"sql": "CAST(requested_at AS date)"},
        "text": {
            "sql": "CASE WHEN request_id = 'R10000' THEN 'last Tuesday' ELSE "
            "to_char(requested_at, 'YYYY-MM-DD\"T\"HH24:MI:SS') END"
        },
    }
    try:
        for kind, requested_at in kinds.items():
            tables = {
                **base,
                "shift_requests": {
                    "query": "SELECT * FROM public.shift_requests",
                    "columns": {"requested_at": requested_at},
                },
            }
            mapping = mapping_from_data({"tables": tables})
            with engine.connect() as conn:
                extract = read_source(conn, AS_OF, TZ, mapping)
            requests = extract.tables["shift_requests"]
            assert isinstance(requests, StreamedTable)
            frame = _frame(requests)
            if kind == "timestamp":
                assert "CAST('2025-11-04 06:00:00' AS timestamp)" in requests.sql
                assert _arrow(frame, "requested_at") == pa.timestamp("us")
                assert _arrow(frame, "shift_hours") == pa.decimal128(4, 2)
                assert len(frame) == len(SHIFTS) - LATE
            elif kind == "date":
                assert "CAST('2025-11-04' AS date)" in requests.sql
                assert _arrow(frame, "requested_at") == pa.date32()
                assert len(frame) == len(SHIFTS) - LATE
            else:
                assert "COLLATE \"C\" < '2025-11-04T06:00:00'" in requests.sql
                assert "last Tuesday" in set(frame["requested_at"].dropna())
                assert len(frame) == len(SHIFTS) - LATE
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE public.shift_requests")
        engine.dispose()


@pytest.mark.postgres
def test_every_missing_table_and_column_at_once(pg_agency: str) -> None:
    mapping = mapping_from_data(
        {
            "tables": {
                "facilities": {"table": "scheduling.site"},
                "shift_requests": {
                    "table": "scheduling.shifts",
                    "columns": {
                        "request_id": "shift_id",
                        "facility_id": "site_code",
                        "role": "job_title",
                        "shift_hours": {"sql": "EXTRACT(EPOCH FROM end_tme - start_time) / 3600"},
                        "requested_at": "created_at",
                        "status": "shift_status",
                    },
                },
                "nurses": {"table": "hr.staff", "columns": {"nurse_id": "staff_id"}},
                "shift_offers": {"query": "SELECT shift_id FROM scheduling.offer"},
            }
        }
    )
    with pytest.raises(ValidationFailed) as info:
        open_source(pg_agency, AS_OF, TZ, mapping)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("Source table 'facilities' (scheduling.site) does not exist")
    assert "(rule: required_tables): close: 'scheduling.sites', 'scheduling.shifts';" in message
    assert (
        "Source table 'shift_requests' (scheduling.shifts) is missing required column(s) "
        "shift_start, shift_hours (rule: required_columns)"
    ) in message
    assert "no column 'shift_start' (close: 'start_time', 'shift_status'; map it under " in message
    assert 'column "end_tme" does not exist' in message
    assert "fix tables.shift_requests.columns.shift_hours" in message
    assert (
        "Source table 'nurses' (hr.staff) is missing required column(s) role, region, hired_on, "
        "separated_on (rule: required_columns)"
    ) in message
    assert "(close: 'region_name'" in message and "(close: 'hire_date'" in message
    assert "Source table 'shift_offers' (query) cannot be read" in message
    assert 'relation "scheduling.offer" does not exist' in message
    assert "It has: shift_id, site_code, job_title, start_time" in message


@pytest.mark.postgres
def test_the_postgresql_session_is_read_only(pg_agency: str, mapping: SourceMapping) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    uri = libpq_uri(pg_agency)
    with adbc.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        with pytest.raises(Exception, match="read-only"):
            cursor.execute("CREATE TABLE public.nope (a int)")


# --- everywhere -------------------------------------------------------------------------------


def test_libpq_uri_keeps_credentials_options_and_sockets() -> None:
    assert (
        libpq_uri("postgresql+psycopg://u%40x:p%3Aw%2Fd@db.example:6543/agency?sslmode=require")
        == "postgresql://u%40x:p%3Aw%2Fd@db.example:6543/agency?sslmode=require"
    )
    assert (
        libpq_uri("postgresql+psycopg://u@/agency?host=/var/run/postgresql&options=-c%20x%3D1")
        == "postgresql://u@/agency?host=%2Fvar%2Frun%2Fpostgresql&options=-c+x%3D1"
    )
    assert libpq_uri("postgresql://[::1]:5432/db").startswith("postgresql://[::1]:5432/db")


def _sqlite_agency(path: Path) -> str:
    """A small agency in SQLite under its own names (text columns, as SQLite stores them)."""
    with sqlite3.connect(path) as con:
        con.execute(
            "CREATE TABLE sites (site_code, site_name, site_type, region_name, tz, opened_on,"
            " closed_on)"
        )
        con.executemany("INSERT INTO sites VALUES (?, ?, ?, ?, ?, ?, ?)", SITES)
        con.execute(
            "CREATE TABLE shifts (shift_id INTEGER, site_code, job_title, start_time, end_time,"
            " created_at TEXT, shift_status, cancelled_at, scheduled_hours REAL, notes)"
        )
        con.executemany(
            "INSERT INTO shifts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                tuple(v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v for v in row)
                for row in SHIFTS
            ],
        )
        con.execute(
            "CREATE TABLE staff (staff_id, full_name, phone, job_title, region_name, on_call,"
            " hire_date, term_date)"
        )
        con.executemany("INSERT INTO staff VALUES (?, ?, ?, ?, ?, ?, ?, ?)", STAFF)
    return f"sqlite:///{path}"


SQLITE_MAPPING = {
    "tables": {
        "facilities": {
            "table": "sites",
            "columns": {
                "facility_id": "site_code",
                "facility_type": "site_type",
                "region": "region_name",
                "timezone": "tz",
                "active_from": "opened_on",
                "active_to": "closed_on",
            },
            "values": {"facility_type": {"Hospital": "hospital", "SNF": "nursing_home"}},
        },
        "shift_requests": {
            "query": "SELECT * FROM shifts WHERE site_code <> 'F9'",
            "columns": {
                "request_id": "shift_id",
                "facility_id": "SITE_CODE",  # another case: matched when unambiguous
                "role": "job_title",
                "shift_start": "start_time",
                "shift_hours": {"sql": "(julianday(end_time) - julianday(start_time)) * 24"},
                "requested_at": "created_at",
                "status": "shift_status",
            },
            "values": {"status": {"F": "filled", "U": "unfilled", "C": "cancelled"}},
            "exclude": {"role": ["CNA"]},
        },
        "nurses": {
            "table": "staff",
            "columns": {
                "nurse_id": "staff_id",
                "role": "job_title",
                "region": "region_name",
                "hired_on": "hire_date",
                "separated_on": "term_date",
            },
        },
    }
}


def test_sqlite_source_through_a_mapping(tmp_path: Path) -> None:
    url = _sqlite_agency(tmp_path / "ops.db")
    mapping = mapping_from_data(SQLITE_MAPPING)
    extract = open_source(url, AS_OF, TZ, mapping)
    frames = {t: _frame(extract.tables[t]) for t in SOURCE_COLUMNS}
    for table, frame in frames.items():
        assert list(frame.columns) == list(SOURCE_COLUMNS[table])
        assert not NEVER_READ & set(frame.columns)
    shifts = frames["shift_requests"]
    assert len(shifts) == len(SHIFTS) - LATE
    assert shifts["request_id"].iloc[0] == "10000"  # text, as SQLite is read
    assert float(shifts["shift_hours"].iloc[0]) == pytest.approx(12.0)
    assert len(frames["nurses"]) == len(STAFF) - 1
    assert len(frames["shift_offers"]) == 0  # optional and not in the mapping: empty
    assert "shift_requests <- query (SELECT * FROM shifts WHERE site_code <> 'F9')" in (
        extract.described
    )
    result = validate_extract(open_source(url, AS_OF, TZ, mapping), TZ, 0.5, 14)
    assert result.counts["facilities"]["used"] == len(SITES)


def test_sqlite_every_missing_table_and_column_at_once(tmp_path: Path) -> None:
    url = _sqlite_agency(tmp_path / "ops.db")
    broken = {
        "tables": {
            **SQLITE_MAPPING["tables"],
            "facilities": {"table": "site"},
            "nurses": {"table": "staff"},
            "shift_offers": {"table": "offers"},
        }
    }
    broken["tables"]["shift_requests"] = {
        **SQLITE_MAPPING["tables"]["shift_requests"],
        "query": None,
        "table": "shifts",
        "columns": {
            **SQLITE_MAPPING["tables"]["shift_requests"]["columns"],
            "shift_start": "start_tme",
            "shift_hours": {"sql": "julianday(end_tme)"},
        },
    }
    with pytest.raises(ValidationFailed) as info:
        open_source(url, AS_OF, TZ, mapping_from_data(broken))
    message = str(info.value)
    assert "\n" not in message
    assert "Source table 'facilities' (site) does not exist" in message
    assert "close: 'sites'" in message
    assert "shift_start is mapped to 'start_tme', which it does not have (close: 'start_time';" in (
        message
    )
    assert "no such column: end_tme" in message
    assert "Source table 'nurses' (staff) is missing required column(s) nurse_id" in message
    assert "Source table 'shift_offers' (offers) does not exist" in message
    assert message.count("(rule: required_tables)") == 2
    assert message.count("(rule: required_columns)") == 2


def test_sql_in_a_mapping_refused_for_folders(tmp_path: Path) -> None:
    from staffcast.mapping import MappingError

    with pytest.raises(
        MappingError, match=r"tables\.shift_requests\.columns\.shift_hours is a SQL"
    ):
        open_source(str(tmp_path), AS_OF, TZ, mapping_from_data(SQLITE_MAPPING))


def test_the_sqlalchemy_path_reads_the_same(tmp_path: Path) -> None:
    """Dialects without an ADBC reader go through SQLAlchemy with the cut as a bound parameter;
    here an in-memory SQLite connection with the agency's file attached as schema ``agency``."""
    path = tmp_path / "ops.db"
    _sqlite_agency(path)
    tables = {
        name: {**entry, "table": f"agency.{entry['table']}"} if "table" in entry else entry
        for name, entry in SQLITE_MAPPING["tables"].items()
    }
    tables["shift_requests"] = {
        **tables["shift_requests"],
        "query": "SELECT * FROM agency.shifts WHERE site_code <> 'F9'",
    }
    mapping = mapping_from_data({"tables": tables})
    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"ATTACH DATABASE '{path}' AS agency")
            extract = read_source(conn, AS_OF, TZ, mapping)
    finally:
        engine.dispose()
    frames = {t: _frame(extract.tables[t]) for t in SOURCE_COLUMNS}
    assert len(frames["shift_requests"]) == len(SHIFTS) - LATE
    assert len(frames["nurses"]) == len(STAFF) - 1
    assert list(frames["facilities"].columns) == list(SOURCE_COLUMNS["facilities"])
    assert frames["shift_requests"]["shift_hours"].iloc[0] == pytest.approx(12.0)


def test_an_unreachable_postgresql_stream_is_a_transient_source_error() -> None:
    from staffcast.errors import SourceUnavailable

    uri = libpq_uri("postgresql+psycopg://bob:s3cret@127.0.0.1:9/agency")
    table = StreamedTable(uri, "SELECT 1 AS a", (), ("a",), driver="postgresql")
    assert "s3cret" not in repr(table)
    with pytest.raises(SourceUnavailable) as info:
        list(table)
    assert info.value.transient and "s3cret" not in str(info.value)
    assert "Could not read the operational database" in str(info.value)
