"""One agency in four source shapes: staffcast must publish the same plan from each.

Usage (from the repository root):

    uv run python benchmarks/source_shapes.py --facilities 40 --years 3 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres

``--postgres`` is a server URL (a superuser): shape b goes to a fresh database on it
(``--pg-database``, default staffcast_shapes), dropped afterwards unless ``--keep``. Without
``--postgres`` shape b is skipped. ``--horizon 28`` makes the four runs quicker.

From one seeded demo agency (:func:`staffcast.demo_agency.build_demo_agency`) it writes:

a. ``sqlite_text``: the demo file itself (text columns, staffcast's names, no mapping).
b. ``postgres_native``: the database of the README's worked example, read with
   ``docs/mapping-example.yaml`` itself: schemas ``scheduling`` (``sites``, ``shifts``,
   ``offer_log``) and ``hr`` (``staff``) with the agency's own names and native types
   (``timestamptz``, ``date``, ``boolean``, ``bigint`` ids: the demo's ids without their
   letter), codes of its own (``Registered Nurse``, ``Hospital``/``SNF``, shift status
   ``F``/``U``/``C``, offer reply ``A``/``D``/``N``), ``shift_hours`` only as
   ``end_time - start_time`` (a SQL expression in the mapping), and extra ``CNA`` shifts and
   staff that the mapping excludes. Loaded with COPY.
c. ``csv_folder``: ``;``-separated files with their own names and headers (other names, other
   case, surrounding blanks), shift_start as ``MM/DD/YYYY hh:mm AM/PM`` local facility time,
   other instants as PostgreSQL text in Chicago time (``2025-01-05 07:05:09-06``), time zones as
   ``CST``/``CDT``, on_call as ``yes``/``no``.
d. ``parquet_typed``: staffcast's names, typed columns (timestamps with a time zone, date32,
   bool, float64).

Shape b's mapping is docs/mapping-example.yaml (copied beside the data); shape c's is written
beside the data. The demo's deliberately bad rows
are written in every shape (the bad role as ``Unit Clerk`` where CNA is excluded, so that it is
still quarantined, not excluded), so the quarantined request ids (letter prefix aside) must match.

Then it runs ``staffcast run --source ... --mapping ... --reporting ...`` on each shape in a
subprocess (its own STAFFCAST_HOME and PREFECT_HOME) and compares the published tables
(demand_history, demand_forecast, regional_forecast, on_call_pool, recruiting_target,
hiring_plan, and the quarantined request ids). It prints one line per shape and exits 1 when a
shape differs from the SQLite one. Files go to benchmarks/out/shapes-<facilities>x<years>/.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from staffcast.source import SOURCE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
AGENCY_TIMEZONE = "America/Chicago"
SHAPES = ("sqlite_text", "postgres_native", "csv_folder", "parquet_typed")
BAD_ROWS = 12
"""Rows build_demo_agency appends after the good shift_requests (two per bad-row rule)."""
CNA_EVERY = 50
"""Shape b: one extra CNA shift per this many good demo shifts, and one CNA per 10 nurses."""
CNA_SHIFT_ID_BASE = 10**12
CNA_STAFF_ID_BASE = 10**9
BATCH_ROWS = 500_000
PUBLISHED_TABLES = (
    "demand_history",
    "demand_forecast",
    "regional_forecast",
    "on_call_pool",
    "recruiting_target",
    "hiring_plan",
)
"""Published tables compared across shapes (all columns but run_id), by primary key."""

DEMO_COLUMNS: dict[str, tuple[str, ...]] = {
    "facilities": (
        "facility_id",
        "name",
        "facility_type",
        "region",
        "timezone",
        "active_from",
        "active_to",
    ),
    "shift_requests": (
        "request_id",
        "facility_id",
        "role",
        "shift_start",
        "shift_hours",
        "requested_at",
        "status",
        "cancelled_at",
        "unit",
        "nurse_id",
        "notes",
    ),
    "nurses": (
        "nurse_id",
        "name",
        "phone",
        "role",
        "region",
        "on_call",
        "hired_on",
        "separated_on",
    ),
    "shift_offers": ("request_id", "nurse_id", "offered_at", "response"),
}


@dataclass(frozen=True)
class Shape:
    """One way of holding the agency: a source (URL or folder) and its mapping, if any."""

    name: str
    source: str
    mapping: Path | None = None
    excluded_requests: int = 0
    """Extra shift rows written that the mapping must exclude (not in the demo)."""
    excluded_nurses: int = 0
    write_seconds: float = 0.0


# --- reading the demo file ----------------------------------------------------------------------


def demo_batches(demo: Path, table: str, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The demo table as text, in file order, with its SQLite ``_rowid``, batch by batch."""
    import adbc_driver_sqlite.dbapi as adbc

    select = ", ".join(f'CAST("{c}" AS TEXT) AS "{c}"' for c in DEMO_COLUMNS[table])
    sql = f'SELECT rowid AS _rowid, {select} FROM "{table}" ORDER BY rowid'
    with adbc.connect(f"file:{demo}?mode=ro") as connection, connection.cursor() as cursor:
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        cursor.execute(sql)
        for batch in cursor.fetch_record_batch():
            yield _text_batch(batch)


def _text_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """ADBC types an all-NULL column of a batch as null: every column but _rowid as text."""
    arrays = [
        col if name == "_rowid" or pa.types.is_string(col.type) else col.cast(pa.string())
        for name, col in zip(batch.schema.names, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def demo_table(demo: Path, table: str) -> pa.Table:
    """A whole demo table as text (small tables, or small agencies)."""
    batches = list(demo_batches(demo, table))
    if not batches:
        names = ["_rowid", *DEMO_COLUMNS[table]]
        types = [pa.int64()] + [pa.string()] * len(DEMO_COLUMNS[table])
        return pa.schema(list(zip(names, types, strict=True))).empty_table()
    return pa.Table.from_batches(batches)


def _count(demo: Path, table: str) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{demo}?mode=ro", uri=True) as connection:
        return int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


# --- column helpers -------------------------------------------------------------------------------


def _recode(values: pa.Array | pa.ChunkedArray, codes: dict[str, str]) -> pa.Array:
    """Values replaced through ``codes``; values not in it (and nulls) kept."""
    keys = pa.array(list(codes), pa.string())
    index = pc.index_in(values, value_set=keys)
    mapped = pc.take(pa.array(list(codes.values()), pa.string()), index)
    return pc.if_else(pc.is_null(index), values, mapped)


def _instants(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The demo's ISO texts with an offset (``...T07:00:00-06:00``, ``...+00:00``) as UTC."""
    return pc.strptime(text, format="%Y-%m-%dT%H:%M:%S%z", unit="s", error_is_null=False)


def _dates(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=False).cast(pa.date32())


def _digits(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The number of an id such as ``R0000123`` (the letter prefix dropped), as int64."""
    return pc.utf8_slice_codeunits(text, 1).cast(pa.int64())


def _local_pg_text(instants: pa.Array, zone: str = AGENCY_TIMEZONE) -> pa.Array:
    """PostgreSQL's text of a timestamptz in session zone ``zone``: ``2025-01-05 07:05:09-06``."""
    local = instants.cast(pa.timestamp("s", tz=zone))
    text = pc.strftime(local, format="%Y-%m-%d %H:%M:%S%z")
    return pc.utf8_slice_codeunits(text, 0, -2)  # -0600 -> -06 (whole-hour offsets here)


def key_number(keys: pd.Series) -> pd.Series:
    """Request or nurse ids as numbers, letter prefix aside (``R0000123`` and ``123`` -> 123)."""
    return pd.to_numeric(keys.astype(str).str.extract(r"(\d+)\s*$")[0], errors="coerce").astype(
        "Int64"
    )


# --- shape b: PostgreSQL with native types and its own names --------------------------------------

PG_SCHEMA = """
DROP SCHEMA IF EXISTS scheduling CASCADE;
DROP SCHEMA IF EXISTS hr CASCADE;
CREATE SCHEMA scheduling;
CREATE SCHEMA hr;
CREATE TABLE scheduling.sites (
    site_code text NOT NULL, site_name text, site_type text, region_name text, tz text,
    opened_on date, closed_on date);
CREATE TABLE scheduling.shifts (
    shift_id bigint NOT NULL, site_code text, job_title text, start_time timestamptz,
    end_time timestamptz, created_at timestamptz, shift_status char(1), cancelled_at timestamptz,
    unit_name text, staff_id bigint, notes text);
CREATE TABLE hr.staff (
    staff_id bigint NOT NULL, full_name text, phone text, job_title text, region_name text,
    on_call boolean, hire_date date, term_date date);
CREATE TABLE scheduling.offer_log (
    shift_id bigint NOT NULL, staff_id bigint, sent_at timestamptz, reply text, channel text);
"""
PG_INDEXES = """
CREATE INDEX shifts_created_at ON scheduling.shifts (created_at);
CREATE INDEX shifts_site ON scheduling.shifts (site_code);
CREATE INDEX offer_log_sent_at ON scheduling.offer_log (sent_at);
CREATE INDEX staff_hire_date ON hr.staff (hire_date);
"""
PG_ROLES = {"RN": "Registered Nurse", "LPN": "LPN", "CNA": "Unit Clerk"}
"""The demo's bad role CNA becomes a title the mapping neither maps nor excludes."""
PG_FACILITY_TYPES = {"hospital": "Hospital", "nursing_home": "SNF"}
PG_STATUSES = {"filled": "F", "unfilled": "U", "cancelled": "C", "pending": "P"}
PG_RESPONSES = {"accepted": "A", "declined": "D", "no_response": "N"}
SHIFT_HOURS_SQL = "EXTRACT(EPOCH FROM (end_time - start_time)) / 3600"


EXAMPLE_MAPPING = Path(__file__).resolve().parents[1] / "docs" / "mapping-example.yaml"
"""Shape b is the database of the README's worked example, read with that very mapping."""


def postgres_mapping() -> dict[str, Any]:
    """The mapping of shape b: docs/mapping-example.yaml, as data."""
    import yaml

    return dict(yaml.safe_load(EXAMPLE_MAPPING.read_text(encoding="utf-8")))


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string (for psycopg itself)."""
    import sqlalchemy as sa

    parsed = sa.make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def database_url(server_url: str, database: str) -> str:
    """``server_url`` pointed at another database."""
    import sqlalchemy as sa

    return sa.make_url(server_url).set(database=database).render_as_string(hide_password=False)


def create_database(server_url: str, database: str, replace: bool = True) -> str:
    """Create ``database`` on the server (dropped first with ``replace``); returns its URL."""
    import psycopg

    with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
        if replace:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{database}"')
    return database_url(server_url, database)


def drop_database(server_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _copy(cursor: Any, target: str, table: pa.Table | pa.RecordBatch) -> None:
    """COPY ``table`` (columns in the target's order) into ``target`` as CSV."""
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False))
    columns = ", ".join(table.schema.names)
    with cursor.copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getbuffer())


def _pg_sites(raw: pa.Table) -> pa.Table:
    return pa.table(
        {
            "site_code": raw["facility_id"],
            "site_name": raw["name"],
            "site_type": _recode(raw["facility_type"], PG_FACILITY_TYPES),
            "region_name": raw["region"],
            "tz": raw["timezone"],
            "opened_on": raw["active_from"],
            "closed_on": raw["active_to"],
        }
    )


def _pg_shifts(raw: pa.RecordBatch, n_good: int) -> tuple[pa.Table, int]:
    """Shifts of one batch, plus one CNA copy (new id) per CNA_EVERY good rows."""
    start = _instants(raw["shift_start"])
    seconds = pc.multiply(raw["shift_hours"].cast(pa.float64()), 3600.0).cast(pa.int64())
    end = pc.add(start, seconds.cast(pa.duration("s")))
    shifts = pa.table(
        {
            "shift_id": _digits(raw["request_id"]),
            "site_code": raw["facility_id"],
            "job_title": _recode(raw["role"], PG_ROLES),
            "start_time": raw["shift_start"],
            "end_time": end,
            "created_at": raw["requested_at"],
            "shift_status": _recode(raw["status"], PG_STATUSES),
            "cancelled_at": raw["cancelled_at"],
            "unit_name": raw["unit"],
            "staff_id": _digits(raw["nurse_id"]),
            "notes": raw["notes"],
        }
    )
    rowid = raw["_rowid"]
    pick = _every(rowid, CNA_EVERY, n_good)
    cna = shifts.filter(pick)
    if cna.num_rows:
        cna = cna.set_column(
            0, "shift_id", pc.add(pc.filter(rowid, pick).cast(pa.int64()), CNA_SHIFT_ID_BASE)
        )
        cna = cna.set_column(2, "job_title", pa.array(["CNA"] * cna.num_rows, pa.string()))
        cna = cna.set_column(9, "staff_id", pa.nulls(cna.num_rows, pa.int64()))
        shifts = pa.concat_tables([shifts, cna])
    return shifts, cna.num_rows


def _every(rowid: pa.Array, every: int, up_to: int) -> pa.Array:
    """Rows whose SQLite rowid is a multiple of ``every`` and at most ``up_to``."""
    ids = rowid.to_numpy(zero_copy_only=False)
    return pa.array((ids % every == 0) & (ids <= up_to))


def _pg_staff(raw: pa.Table) -> tuple[pa.Table, int]:
    staff = pa.table(
        {
            "staff_id": _digits(raw["nurse_id"]),
            "full_name": raw["name"],
            "phone": raw["phone"],
            "job_title": _recode(raw["role"], PG_ROLES),
            "region_name": raw["region"],
            "on_call": pc.equal(raw["on_call"], "1"),
            "hire_date": raw["hired_on"],
            "term_date": raw["separated_on"],
        }
    )
    pick = _every(raw["_rowid"].combine_chunks(), 10, 10**18)
    cna = staff.filter(pick)
    cna = cna.set_column(0, "staff_id", pc.add(cna["staff_id"], CNA_STAFF_ID_BASE))
    cna = cna.set_column(3, "job_title", pa.array(["CNA"] * cna.num_rows, pa.string()))
    return pa.concat_tables([staff, cna]), cna.num_rows


def _pg_offers(raw: pa.RecordBatch) -> pa.Table:
    return pa.table(
        {
            "shift_id": _digits(raw["request_id"]),
            "staff_id": _digits(raw["nurse_id"]),
            "sent_at": raw["offered_at"],
            "reply": _recode(raw["response"], PG_RESPONSES),
            "channel": pa.array(["sms"] * raw.num_rows, pa.string()),
        }
    )


def write_postgres(
    demo: Path,
    url: str,
    mapping_path: Path,
    progress: Callable[[str], None] | None = None,
) -> Shape:
    """Shape b into the (existing, empty or staffcast-shaped) database at ``url``."""
    import psycopg

    started = time.perf_counter()
    n_good = _count(demo, "shift_requests") - BAD_ROWS
    excluded = 0
    with psycopg.connect(libpq_url(url)) as connection, connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute(PG_SCHEMA)
        _copy(cursor, "scheduling.sites", _pg_sites(demo_table(demo, "facilities")))
        staff, excluded_nurses = _pg_staff(demo_table(demo, "nurses"))
        _copy(cursor, "hr.staff", staff)
        written = 0
        for batch in demo_batches(demo, "shift_requests"):
            shifts, cna = _pg_shifts(batch, n_good)
            _copy(cursor, "scheduling.shifts", shifts)
            excluded += cna
            written += shifts.num_rows
            if progress:
                progress(f"shifts: {written:,} rows")
        for batch in demo_batches(demo, "shift_offers"):
            _copy(cursor, "scheduling.offer_log", _pg_offers(batch))
        if progress:
            progress("indexes")
        cursor.execute(PG_INDEXES)
        connection.commit()
        cursor.execute("ANALYZE")
        connection.commit()
    write_mapping(
        mapping_path, postgres_mapping(), "PostgreSQL shape (benchmarks/source_shapes.py)"
    )
    return Shape(
        "postgres_native",
        url,
        mapping_path,
        excluded_requests=excluded,
        excluded_nurses=excluded_nurses,
        write_seconds=time.perf_counter() - started,
    )


def postgres_shape_present(url: str) -> bool:
    """Whether the database at ``url`` already holds shape b (scheduling.shifts with rows)."""
    import psycopg

    try:
        with psycopg.connect(libpq_url(url)) as connection:
            row = connection.execute(
                "SELECT to_regclass('scheduling.shifts') IS NOT NULL"
                " AND to_regclass('scheduling.offer_log') IS NOT NULL"
                " AND to_regclass('hr.staff') IS NOT NULL"
            ).fetchone()
            if not (row and row[0]):
                return False
            return connection.execute("SELECT count(*) FROM hr.staff").fetchone()[0] > 0
    except psycopg.OperationalError:
        return False


def write_mapping(path: Path, mapping: dict[str, Any], what: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Source mapping of the {what}; written by the script, do not edit.\n"
    path.write_text(
        header + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return path


# --- shape c: a CSV folder with its own headers and formats --------------------------------------

CSV_DELIMITER = ";"
CSV_FILES = {
    "facilities": "Sites.csv",
    "shift_requests": "shift_export.csv",
    "nurses": "staff_roster.csv",
    "shift_offers": "offer_log.csv",
}
# Header written per demo column: a mapped name, or staffcast's name in another case/with blanks.
CSV_HEADERS: dict[str, dict[str, str]] = {
    "facilities": {
        "facility_id": " Facility ID ",
        "name": "Facility Name",
        "facility_type": "FACILITY_TYPE",
        "region": " Region",
        "timezone": "Time Zone",
        "active_from": "Active From",
        "active_to": "Active To ",
    },
    "shift_requests": {
        "request_id": " Request # ",
        "facility_id": "Facility ID",
        "role": "ROLE",
        "shift_start": "Shift Start (local)",
        "shift_hours": " Shift_Hours ",
        "requested_at": "Requested At",
        "status": "Status",
        "cancelled_at": "Cancelled At",
        "unit": "Unit",
        "notes": "Notes",
    },
    "nurses": {
        "nurse_id": "Employee #",
        "name": "Name",
        "phone": "Phone",
        "role": "Role",
        "region": "REGION",
        "on_call": "On Call?",
        "hired_on": "Hire Date",
        "separated_on": "Termination Date",
    },
    "shift_offers": {
        "request_id": "Request #",
        "nurse_id": "Employee #",
        "offered_at": "Offered At",
        "response": "Response",
    },
}
CSV_SHIFT_START_FORMAT = "%m/%d/%Y %I:%M %p"


def csv_mapping() -> dict[str, Any]:
    """The mapping of shape c: file names, renamed headers, delimiter and formats."""
    tables: dict[str, Any] = {}
    for table, headers in CSV_HEADERS.items():
        columns = {
            column: header.strip()
            for column, header in headers.items()
            if column in SOURCE_COLUMNS[table]
            and header.strip().lower() != column  # case and blanks alone need no mapping
        }
        tables[table] = {"file": CSV_FILES[table], "delimiter": CSV_DELIMITER, "columns": columns}
    tables["shift_requests"]["formats"] = {"shift_start": [CSV_SHIFT_START_FORMAT]}
    return {"tables": tables}


def _csv_columns(table: str, raw: pa.Table | pa.RecordBatch) -> pa.Table:
    headers = CSV_HEADERS[table]
    columns: dict[str, pa.Array] = {}
    for column, header in headers.items():
        values = raw[column]
        if column == "shift_start":
            local = _instants(values).cast(pa.timestamp("s", tz=AGENCY_TIMEZONE))
            values = pc.strftime(local, format=CSV_SHIFT_START_FORMAT)
        elif column in ("requested_at", "cancelled_at", "offered_at"):
            values = _local_pg_text(_instants(values))
        elif column == "timezone":
            rows = raw["_rowid"].to_numpy(zero_copy_only=False)
            values = pa.array(np.where(rows % 3 == 0, "CDT", "CST"))
        elif column == "on_call":
            values = _recode(values, {"1": "yes", "0": "no"})
        elif column == "shift_hours":
            values = pc.utf8_replace_slice(values, 0, 0, " ")  # ' 12.0': blanks are stripped
        columns[header] = values
    return pa.table(columns)


def write_csv_folder(demo: Path, folder: Path) -> Shape:
    """Shape c: one ``;``-separated UTF-8 file per table, plus ``mapping.yaml``."""
    started = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    options = pa_csv.WriteOptions(delimiter=CSV_DELIMITER, quoting_style="needed")
    for table, name in CSV_FILES.items():
        with pa_csv.CSVWriter(folder / name, _csv_schema(table), write_options=options) as writer:
            for batch in demo_batches(demo, table):
                writer.write_table(_csv_columns(table, batch))
    mapping = write_mapping(folder / "mapping.yaml", csv_mapping(), "CSV folder shape")
    return Shape("csv_folder", str(folder), mapping, write_seconds=time.perf_counter() - started)


def _csv_schema(table: str) -> pa.Schema:
    return pa.schema([(header, pa.string()) for header in CSV_HEADERS[table].values()])


# --- shape d: Parquet with typed columns ----------------------------------------------------------


def _parquet_table(table: str, raw: pa.Table) -> pa.Table:
    wanted = [c for c in DEMO_COLUMNS[table] if c not in ("name", "phone")]
    columns: dict[str, pa.Array] = {}
    for column in wanted:
        values = raw[column]
        if column == "shift_start":  # instants in the facility's zone
            values = _instants(values).cast(pa.timestamp("us", tz=AGENCY_TIMEZONE))
        elif column in ("requested_at", "cancelled_at", "offered_at"):
            values = _instants(values).cast(pa.timestamp("us", tz="UTC"))
        elif column in ("active_from", "active_to", "hired_on", "separated_on"):
            values = _dates(values)
        elif column == "on_call":
            values = pc.equal(values, "1")
        elif column == "shift_hours":
            values = values.cast(pa.float64())
        columns[column] = values
    return pa.table(columns)


def write_parquet_folder(demo: Path, folder: Path) -> Shape:
    """Shape d: one Parquet file per table, staffcast's names, typed columns, no mapping."""
    started = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for table in DEMO_COLUMNS:
        pq.write_table(_parquet_table(table, demo_table(demo, table)), folder / f"{table}.parquet")
    return Shape("parquet_typed", str(folder), write_seconds=time.perf_counter() - started)


def sqlite_shape(demo: Path) -> Shape:
    """Shape a: the demo SQLite file itself."""
    return Shape("sqlite_text", f"sqlite:///{Path(demo).resolve()}")


def build_shapes(demo: Path, folder: Path, postgres_url: str | None) -> list[Shape]:
    """All four shapes of the agency in ``demo`` (PostgreSQL only with ``postgres_url``)."""
    shapes = [sqlite_shape(demo)]
    if postgres_url:
        shapes.append(write_postgres(demo, postgres_url, folder / "postgres-mapping.yaml"))
    shapes.append(write_csv_folder(demo, folder / "csv"))
    shapes.append(write_parquet_folder(demo, folder / "parquet"))
    return shapes


# --- comparing at the level of the contracts and the daily demand --------------------------------


FACILITY_COLUMNS = (
    "facility_id",
    "facility_type",
    "region",
    "timezone",
    "active_from",
    "active_to",
)


EXTRACTED_KEYS: dict[str, list[str]] = {
    "history": ["series_id", "date"],
    "booked": ["series_id", "date"],
    "facilities": ["facility_id"],
    "nurses": ["nurse_id"],
}
"""Row keys of the compared frames (others: every column that is not a float)."""


@dataclass
class Extracted:
    """What the contracts and the demand model made of one shape."""

    shape: str
    counts: dict[str, dict[str, int]]
    frames: dict[str, pd.DataFrame]
    seconds: float


def load_mapping(path: Path | None) -> Any:
    if path is None:
        return None
    from staffcast.mapping import load_mapping as load

    return load(path)


def extract_and_validate(shape: Shape, as_of: date) -> Extracted:
    """What the weekly run's extract, validate and demand stages make of one shape, in process
    and outside a flow run: open_source with the shape's mapping, the contracts with the
    settings' thresholds, and the flow's own demand step (lost requests put back as it does)."""
    from data_contracts.validate import validate_with_settings
    from flows.weekly_forecast import build_demand
    from staffcast.settings import Settings
    from staffcast.source_files import open_source

    settings = Settings()
    started = time.perf_counter()
    extract = open_source(
        shape.source, as_of, settings.agency_timezone, load_mapping(shape.mapping)
    )
    result = validate_with_settings(extract, settings, keep_rows=True)
    history, booked = build_demand.fn(result, extract, settings)
    seconds = time.perf_counter() - started
    tables = result.tables
    nurses = tables["nurses"]
    offers = tables["shift_offers"]
    quarantine = result.quarantine
    frames = {
        "history": _plain(history),
        "booked": _plain(booked),
        "facilities": _plain(tables["facilities"][list(FACILITY_COLUMNS)]),
        "nurses": _plain(
            nurses[["nurse_id", "role", "region", "on_call", "hired_on", "separated_on"]].assign(
                nurse_id=key_number(nurses["nurse_id"])
            )
        ),
        "offers": _plain(
            offers[["request_id", "offered_at", "response"]].assign(
                request_id=key_number(offers["request_id"])
            )
        ),
        "quarantine": _plain(
            pd.DataFrame(
                {
                    "source_table": quarantine["source_table"].astype(str),
                    "key": key_number(quarantine["source_key"]),
                    "rule": quarantine["rule"].astype(str),
                }
            )
        ),
    }
    return Extracted(shape.name, result.counts, frames, seconds)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as text and timestamps in UTC, so frames from any source compare."""
    out = frame.reset_index(drop=True).copy()
    for column in out.columns:
        values = out[column]
        if isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object:
            out[column] = (
                values.astype(object)
                .where(values.notna(), None)
                .map(lambda v: None if v is None else str(v))
            )
        elif isinstance(values.dtype, pd.StringDtype):
            out[column] = values.astype(object).where(values.notna(), None)
        elif isinstance(values.dtype, pd.DatetimeTZDtype):
            out[column] = values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return out


def compare_extracted(reference: Extracted, other: Extracted) -> str | None:
    """The first difference between two shapes' contracts and demand, or None."""
    for name in reference.frames:
        keys = EXTRACTED_KEYS.get(name)
        difference = first_difference(name, reference.frames[name], other.frames[name], keys)
        if difference:
            return difference
    return None


# --- comparing frames -----------------------------------------------------------------------------


def first_difference(
    name: str, left: pd.DataFrame, right: pd.DataFrame, keys: list[str] | None = None
) -> str | None:
    """None when the frames hold the same rows (any order); else the first difference, in words.

    Rows are matched on ``keys`` (default: every column that is not a float). Floats must agree
    to 1e-9 (relative); everything else exactly.
    """
    if list(left.columns) != list(right.columns):
        return f"{name}: columns differ: {list(left.columns)} vs {list(right.columns)}"
    if keys is None:
        keys = [c for c in left.columns if not pd.api.types.is_float_dtype(left[c].dtype)]
    if not keys:
        keys = list(left.columns)
    lft = _sortable(left, keys)
    rgt = _sortable(right, keys)
    merged = lft.merge(rgt, on=keys, how="outer", suffixes=("", " (other)"), indicator=True)
    alone = merged[merged["_merge"] != "both"]
    if len(alone):
        row = alone.iloc[0]
        side = "only in the reference" if row["_merge"] == "left_only" else "only in this shape"
        described = ", ".join(f"{k}={row[k]}" for k in keys)
        return (
            f"{name}: {len(left)} vs {len(right)} rows, {len(alone)} unmatched; first "
            f"{side}: {described}"
        )
    for column in (c for c in left.columns if c not in keys):
        a, b = merged[column], merged[f"{column} (other)"]
        if pd.api.types.is_float_dtype(a.dtype) and pd.api.types.is_float_dtype(b.dtype):
            same = np.isclose(
                a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=1e-12, equal_nan=True
            )
        else:
            same = ((a == b) | (a.isna() & b.isna())).to_numpy(bool)
        if not same.all():
            at = int(np.flatnonzero(~same)[0])
            row = merged.iloc[at]
            described = ", ".join(f"{k}={row[k]}" for k in keys)
            return (
                f"{name}.{column}: {int((~same).sum())} rows differ; first at {described}: "
                f"{a.iloc[at]!r} vs {b.iloc[at]!r}"
            )
    return None


def _sortable(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for key in keys:
        if out[key].dtype == object:
            out[key] = out[key].astype(str)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def published_tables(reporting_url: str) -> dict[str, pd.DataFrame]:
    """The current run's rows of the compared tables (run_id dropped), and quarantined keys."""
    import sqlalchemy as sa

    from reports.schema import reporting_engine

    engine = reporting_engine(reporting_url)
    frames: dict[str, pd.DataFrame] = {}
    try:
        with engine.connect() as connection:
            for name in PUBLISHED_TABLES:
                frame = pd.read_sql(sa.text(f"SELECT * FROM current_{name}"), connection)
                frames[name] = _published(frame.drop(columns=["run_id", "id"], errors="ignore"))
            quarantine = pd.read_sql(
                sa.text("SELECT source_table, source_key, rule FROM current_quarantined_row"),
                connection,
            )
            run = pd.read_sql(sa.text("SELECT * FROM current_forecast_run"), connection)
    finally:
        engine.dispose()
    frames["quarantined_row"] = pd.DataFrame(
        {
            "source_table": quarantine["source_table"].astype(str),
            "key": key_number(quarantine["source_key"]),
            "rule": quarantine["rule"].astype(str),
        }
    )
    frames["forecast_run"] = run
    return frames


def _published(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: None if v is None else str(v))
    return out


def compare_published(
    reference: dict[str, pd.DataFrame], other: dict[str, pd.DataFrame]
) -> str | None:
    from reports.schema import table

    for name in (*PUBLISHED_TABLES, "quarantined_row"):
        if name == "quarantined_row":
            keys = ["source_table", "key", "rule"]
        else:
            keys = [c.name for c in table(name).primary_key.columns if c.name != "run_id"]
        difference = first_difference(name, reference[name], other[name], keys)
        if difference:
            return difference
    return None


# --- running the weekly flow through the CLI -----------------------------------------------------


@dataclass
class FlowRun:
    shape: Shape
    seconds: float
    stages: str
    counts: dict[str, int]
    tables: dict[str, pd.DataFrame] | None
    error: str = ""


def run_cli(
    shape: Shape,
    as_of: date,
    home: Path,
    prefect_home: Path,
    horizon: int | None,
    env: dict[str, str] | None = None,
) -> FlowRun:
    """``staffcast run`` on one shape in a subprocess; the published tables read back."""
    home.mkdir(parents=True, exist_ok=True)
    reporting = f"sqlite:///{(home / 'reporting.db').resolve()}"
    command = [
        sys.executable,
        "-m",
        "staffcast.cli",
        "--home",
        str(home),
        "run",
        "--as-of",
        as_of.isoformat(),
        "--source",
        shape.source,
        "--reporting",
        reporting,
    ]
    if shape.mapping is not None:
        command += ["--mapping", str(shape.mapping)]
    if horizon:
        command += ["--horizon", str(horizon)]
    environment = {
        **os.environ,
        "STAFFCAST_HOME": str(home),
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **(env or {}),
    }
    environment.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=environment, check=False
    )
    seconds = time.perf_counter() - started
    stages = next((ln.strip() for ln in result.stdout.splitlines() if "stages:" in ln), "")
    if result.returncode != 0:
        error = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return FlowRun(shape, seconds, stages, {}, None, " | ".join(error[-3:])[-600:])
    tables = published_tables(reporting)
    run = tables.pop("forecast_run")
    counts = {
        c.removeprefix("rows_"): int(run.iloc[0][c])
        for c in run.columns
        if c.startswith("rows_") and pd.notna(run.iloc[0][c])
    }
    return FlowRun(shape, seconds, stages, counts, tables)


def _warm_prefect(prefect_home: Path) -> None:
    """Start Prefect's local server once, so the first shape does not pay its migration."""
    code = "from prefect import flow\n@flow\ndef warm(): return 1\nwarm()\n"
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)


# --- main -----------------------------------------------------------------------------------------


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facilities", type=int, default=40)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 30))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres",
        help="SQLAlchemy URL of a PostgreSQL server (a superuser): shape b goes to a new "
        "database on it (--pg-database); without it shape b is skipped",
    )
    parser.add_argument("--pg-database", default="staffcast_shapes")
    parser.add_argument("--horizon", type=int, help="forecast horizon in days (default: 182)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the shapes and homes (and the database)"
    )
    args = parser.parse_args()

    folder = OUT / f"shapes-{args.facilities}x{args.years:g}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    from staffcast.demo_agency import build_demo_agency

    started = time.perf_counter()
    agency = build_demo_agency(
        folder / "ops.db", args.as_of, args.facilities, args.years, args.seed
    )
    print(
        f"demo agency: {agency.facilities} facilities x {args.years:g} years, "
        f"{agency.shift_requests:,} shift_requests, {agency.nurses:,} nurses, "
        f"{agency.shift_offers:,} offers ({time.perf_counter() - started:.1f} s)"
    )
    pg_url = None
    if args.postgres:
        pg_url = create_database(args.postgres, args.pg_database)
    shapes = build_shapes(agency.path, folder, pg_url)
    for shape in shapes:
        extra = (
            f" (+{shape.excluded_requests:,} CNA shifts, +{shape.excluded_nurses:,} CNA staff "
            "to exclude)"
            if shape.excluded_requests
            else ""
        )
        print(f"wrote {shape.name:<16} in {shape.write_seconds:5.1f} s{extra}")

    prefect_home = folder / "prefect"
    prefect_home.mkdir()
    _warm_prefect(prefect_home)
    runs = []
    for shape in shapes:
        print(f"running staffcast run on {shape.name} ...", flush=True)
        runs.append(
            run_cli(shape, args.as_of, folder / f"home-{shape.name}", prefect_home, args.horizon)
        )

    reference = runs[0]
    rows = [
        ["shape", "extracted", "used", "quarantined", "excluded", "seconds", "stages", "identical"]
    ]
    all_same = reference.tables is not None
    for run in runs:
        c = run.counts
        if run.tables is None:
            verdict = f"no: the run failed: {run.error}"
            all_same = False
        elif run is reference:
            verdict = "(reference)"
        else:
            difference = (
                compare_published(reference.tables, run.tables)
                if reference.tables
                else ("the reference run failed")
            )
            verdict = "yes" if difference is None else f"no: {difference}"
            all_same = all_same and difference is None
        rows.append(
            [
                run.shape.name,
                f"{c.get('extracted', 0):,}",
                f"{c.get('used', 0):,}",
                f"{c.get('quarantined', 0):,}",
                f"{c.get('excluded', 0):,}" if "excluded" in c else "-",
                f"{run.seconds:.1f}",
                _extract_validate(run.stages),
                verdict,
            ]
        )
    print()
    _print_table(rows)
    print(f"\nidentical across shapes: {'yes' if all_same else 'no'}")
    if args.postgres and not args.keep:
        drop_database(args.postgres, args.pg_database)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0 if all_same else 1)


def _extract_validate(stages: str) -> str:
    """'extract 1.2 + validate 3.4 s' from the CLI's stages line."""
    found = dict(re.findall(r"(\w+) ([\d.]+) s", stages))
    if "extract" not in found:
        return "-"
    return f"extract {found['extract']} + validate {found.get('validate', '?')} s"


if __name__ == "__main__":
    main()
