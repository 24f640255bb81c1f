"""Read what the pipeline needs from the operational database, as of a date.

Only the columns listed in :data:`SOURCE_COLUMNS` are ever selected: never names, phone numbers
or free text (minimum necessary). The source mapping (:mod:`staffcast.mapping`) says where each
table and column is in the agency's database; the SQL is built from it::

    SELECT "shift_id" AS "request_id", ..., (EXTRACT(EPOCH FROM end_time - start_time) / 3600)
        AS "shift_hours" FROM "scheduling"."shifts" WHERE <as_of cut>

(a mapped ``query`` is read as ``FROM (query) AS "src"``). Columns carry staffcast's names.

Decisions:

- **Shape first, all problems at once.** Before any row is read, every table and column is
  checked: tables with the inspector, SQL expressions and queries with a ``... LIMIT 0`` probe.
  One :class:`ValidationFailed` lists every missing table (with what the database has and close
  matches) and every missing column of every table (with the columns it has and close matches),
  or the database's own message for a query or expression that fails. The rule names
  (``required_tables``, ``required_columns``) and ``Source table '<name>'`` stay in the text:
  the validation summary reads them (``data_contracts.summary.stop_outcome``).
- **Native types.** PostgreSQL is read through the ADBC PostgreSQL driver, ``COPY`` streamed
  into Arrow record batches: timestamps (with and without zone), dates, booleans, integers and
  ``numeric(p, s)`` arrive typed (pandas ``ArrowDtype``; text as ``string[pyarrow]``), never
  cast to text. ``numeric`` without a precision (``EXTRACT(EPOCH FROM ...) / 3600``) arrives as
  float64 for shift_hours and as its exact decimal text for ids. shift_requests
  and shift_offers are streamed in chunks (:class:`StreamedTable`; from a folder of files,
  :class:`staffcast.source_files.StreamedFile`), the small tables read whole.
  SQLite is read through ADBC SQLite with every value cast to text (SQLite has no timestamp
  types, and any value may sit in any column). Other dialects go through SQLAlchemy.
- **The as_of cut runs in SQL, in the column's own type** (timestamptz, timestamp, date or
  text, from the catalog for table columns and from the probe for expressions and queries), so
  an index on requested_at serves it: ``requested_at < CAST('2025-11-04T06:00:00+00:00' AS
  timestamptz) OR requested_at IS NULL``. The query keeps a one-day margin; the exact cut
  happens after parsing (``data_contracts.validate``). A naive ``timestamp`` is compared with
  the later of the agency's local and the UTC wall time a day after as_of; a ``date`` with the
  day after as_of (hired_on: as_of itself, exact); text keeps today's rule, and keeps rows whose
  text does not start like an ISO date so that validation quarantines them instead of the query
  dropping them unseen. A cut column of another type (an epoch number) is not cut in SQL.
  On PostgreSQL the bound is written as a typed literal that staffcast formats itself from a
  date, not as a bind parameter: the ADBC driver cannot ``COPY``-stream a query with parameters
  (it buffers the whole result; 3 million rows took 1.4 GB instead of 0.2 GB). The plan is the
  same: the index is used.
- **Read-only.** The ADBC PostgreSQL session is set read-only; a mapped query is wrapped as a
  sub-query, so it is one SELECT.
- **Busy is not broken.** :func:`transient_reason` tells an error that may go away (a SQLite
  file another program holds a write lock on; a PostgreSQL server that refuses or closes
  connections, starts up or shuts down, or reports a serialization failure or deadlock) from
  one that will not (a missing file or table, a wrong password, a refused permission), and
  :class:`SourceUnavailable` carries it as ``transient``, the driver's error as its cause;
  :mod:`staffcast.retry` retries only the first kind. A locked SQLite file is reported as locked,
  never as missing tables.

The query functions take an open SQLAlchemy connection; they never create engines or sessions
(the PostgreSQL reader opens its own ADBC connections from the connection's URL).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeAlias
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from data_contracts.parsing import ParseOptions
from staffcast.errors import SourceUnavailable, ValidationFailed
from staffcast.mapping import (
    IDENTITY,
    OPTIONAL_TABLES,
    SOURCE_COLUMNS,
    ColumnSource,
    SourceMapping,
    TableMapping,
    close_matches,
)

__all__ = [
    "OPTIONAL_TABLES",
    "SOURCE_COLUMNS",
    "STREAMED_TABLES",
    "MissingColumn",
    "CachedTable",
    "ChunkedTable",
    "cache_streamed",
    "RawTable",
    "SourceExtract",
    "StreamedTable",
    "as_of_instant",
    "connect_source",
    "libpq_uri",
    "listing",
    "missing_columns_text",
    "native_frame",
    "read_source",
    "redact_url",
    "shape_stop",
    "table_chunks",
    "transient_reason",
]

logger = logging.getLogger(__name__)

_CHUNK_ROWS = 200_000
STREAMED_TABLES = frozenset({"shift_requests", "shift_offers"})
"""Tables read in chunks (millions of rows); the others are read whole."""

CUT_COLUMNS = {"shift_requests": "requested_at", "shift_offers": "offered_at", "nurses": "hired_on"}
"""The column each table is cut on at as_of (rows that did not exist yet are left out)."""

_NOTHING_PUBLISHED = "nothing was published"
_LISTED = 40
_SQLITE_BUSY_SECONDS = 1.0
"""How long one SQLite statement waits for another program's write lock before it fails (the
retries of :mod:`staffcast.retry` wait longer, with backoff)."""


@dataclass(frozen=True)
class StreamedTable:
    """A source table read in chunks when iterated: millions of rows are never all in memory
    at once (the contracts parse each chunk into compact typed columns).

    ``driver`` is ``sqlite`` (``database`` a file path; every value text) or ``postgresql``
    (``database`` a libpq URI, kept out of the repr: it may hold a password; values in their
    native Arrow types, see :func:`native_frame`).
    """

    database: str = field(repr=False)
    sql: str
    params: tuple[str, ...]
    columns: tuple[str, ...]
    chunk_rows: int = 1_000_000
    driver: str = "sqlite"

    def __iter__(self) -> Iterator[pd.DataFrame]:
        import adbc_driver_manager

        try:
            if self.driver == "postgresql":
                yield from self._postgresql()
            else:
                yield from self._sqlite()
        except (adbc_driver_manager.Error, OSError) as exc:  # OSError: a stream cut short
            text = " ".join(str(exc).split())
            password = sa.engine.make_url(self.database).password if "://" in self.database else ""
            if password:
                text = text.replace(str(password), "***")
            sqlite_file = self.database if self.driver == "sqlite" else None
            raise _read_failed(text[:400], exc, sqlite_file) from exc

    def narrowed(self, columns: tuple[str, ...]) -> StreamedTable:
        """The same rows with only ``columns`` (a cheap first pass over one column, such as the
        request ids that cross-chunk rules need)."""
        quoted = ", ".join(_sql_identifier(c) for c in columns)
        return replace(
            self, sql=f'SELECT {quoted} FROM ({self.sql}) AS "_narrowed"', columns=columns
        )

    def _sqlite(self) -> Iterator[pd.DataFrame]:
        import adbc_driver_sqlite.dbapi as adbc

        uri = f"file:{self.database}?mode=ro"
        with adbc.connect(uri) as connection, connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {round(_SQLITE_BUSY_SECONDS * 1000)}")
            cursor.adbc_statement.set_options(
                **{"adbc.sqlite.query.batch_rows": str(self.chunk_rows)}
            )
            cursor.execute(self.sql, self.params)
            empty = True
            for batch in cursor.fetch_record_batch():
                empty = False
                yield batch.to_pandas()
            if empty:
                yield pd.DataFrame(columns=list(self.columns), dtype="str")

    def _postgresql(self) -> Iterator[pd.DataFrame]:
        import adbc_driver_postgresql.dbapi as adbc

        with (
            adbc.connect(self.database, autocommit=True) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cursor.execute(self.sql, self.params or None)
            reader = cursor.fetch_record_batch()
            empty = True
            for batch in reader:
                empty = False
                yield native_frame(batch)
            if empty:
                yield native_frame(reader.schema)


class ChunkedTable(Protocol):
    """A table read in chunks when iterated: :class:`StreamedTable` (a database) or
    :class:`staffcast.source_files.StreamedFile` (a CSV or Parquet file)."""

    def __iter__(self) -> Iterator[pd.DataFrame]: ...

    def narrowed(self, columns: tuple[str, ...]) -> ChunkedTable:
        """The same rows with only ``columns``."""
        ...


RawTable: TypeAlias = pd.DataFrame | ChunkedTable


@dataclass(frozen=True)
class CachedTable:
    """A streamed table read once and kept in memory, chunk by chunk (``staffcast replay``
    validates the same extract at many as_ofs). Each pass hands out shallow copies, so what a
    reader adds to a chunk is not kept (pandas copies on write)."""

    chunks: tuple[pd.DataFrame, ...]

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for chunk in self.chunks:
            yield chunk.copy(deep=False)

    def narrowed(self, columns: tuple[str, ...]) -> CachedTable:
        """The same rows with only ``columns``."""
        return CachedTable(tuple(chunk[list(columns)] for chunk in self.chunks))


def cache_streamed(extract: SourceExtract, max_mb: float) -> tuple[SourceExtract, bool]:
    """The extract with its database tables read into memory (:class:`CachedTable`), or the
    extract unchanged when they would take more than ``max_mb`` MB; True when cached. Files
    (CSV, Parquet) stay streamed: reading a local file again costs the source nothing."""
    streamed = {n: t for n, t in extract.tables.items() if isinstance(t, StreamedTable)}
    if not streamed or max_mb <= 0:
        return extract, False
    cached: dict[str, RawTable] = {}
    total = 0
    for name, table in streamed.items():
        chunks: list[pd.DataFrame] = []
        for chunk in table:
            chunks.append(chunk)
            total += int(chunk.memory_usage(deep=True).sum())
            if total > max_mb * 2**20:
                return extract, False
        cached[name] = CachedTable(tuple(chunks))
    return replace(extract, tables={**extract.tables, **cached}), True


def table_chunks(table: RawTable) -> Iterator[pd.DataFrame]:
    """The frames of a raw table: itself, or its chunks when it is streamed."""
    if isinstance(table, pd.DataFrame):
        yield table
    else:
        yield from table


def _whole(table: RawTable) -> pd.DataFrame:
    chunks = list(table_chunks(table))
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


@dataclass(frozen=True)
class SourceExtract:
    """The raw rows of each source table that existed before ``as_of``, as read (or as they
    will be read, for streamed tables).

    Columns carry staffcast's names (the mapping already applied) and either text or the
    source's native types (timestamps, dates, booleans, numbers). ``options`` holds, per table,
    how its values are read (value maps, excluded values, timestamp formats); a table without
    an entry uses :data:`data_contracts.parsing.DEFAULT_OPTIONS`. ``described`` is the mapping
    in use, in words, one line per table, for ``staffcast validate`` (empty for a database read
    without a mapping; a folder adds a line naming each file and its delimiter).
    """

    as_of: date
    as_of_utc: pd.Timestamp
    tables: dict[str, RawTable]
    options: dict[str, ParseOptions] = field(default_factory=dict)
    described: str = ""

    def rows(self) -> dict[str, int]:
        """Rows read per table, for the tables already in memory (streamed ones are counted by
        the contracts as they read them)."""
        return {n: len(f) for n, f in self.tables.items() if isinstance(f, pd.DataFrame)}


def as_of_instant(as_of: date, agency_timezone: str) -> pd.Timestamp:
    """Midnight at the start of ``as_of`` in the agency's zone, as a UTC timestamp."""
    local = datetime.combine(as_of, time.min, tzinfo=ZoneInfo(agency_timezone))
    return pd.Timestamp(local).tz_convert("UTC")


# --- native Arrow values -------------------------------------------------------------------------


_MEASURES = frozenset({"shift_hours"})
"""Staffcast columns that are measures, not ids or codes (a ``numeric`` without precision is
read as a float there; elsewhere it stays exact text)."""


def _native_type(field_: pa.Field) -> pa.DataType:
    """The Arrow type a PostgreSQL column is handed on as: the driver's, except for ``numeric``
    (which the driver hands over as an opaque text extension type): ``decimal128(p, s)`` when
    its precision is known, float64 for a measure (``EXTRACT(EPOCH ...) / 3600`` has none), else
    the exact decimal text; other extension types become their storage type."""
    kind = field_.type
    if not isinstance(kind, pa.BaseExtensionType):
        return kind
    metadata = field_.metadata or {}
    if metadata.get(b"POSTGRESQL:type") == b"numeric":
        typmod = int(metadata.get(b"POSTGRESQL:typmod", b"-1"))
        if typmod >= 4:
            precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
            if 0 < precision <= 38:
                return pa.decimal128(precision, scale)
        if field_.name in _MEASURES:
            return pa.float64()
    return kind.storage_type


def _native_array(field_: pa.Field, array: pa.Array) -> pa.Array:
    wanted = _native_type(field_)
    if isinstance(array.type, pa.BaseExtensionType):
        array = array.storage
    if array.type == wanted:
        return array
    try:
        return pc.cast(array, wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # NaN in a numeric(p, s): keep text
        return array


def _pandas_dtype(arrow_type: pa.DataType) -> Any:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype("pyarrow")
    return pd.ArrowDtype(arrow_type)


def native_frame(data: pa.RecordBatch | pa.Schema) -> pd.DataFrame:
    """A record batch (or an empty one of a schema) as a frame of native typed columns: text as
    ``string[pyarrow]``, everything else as ``ArrowDtype`` (int64 ids stay exact with nulls,
    timestamps keep their zone or lack of one, dates stay dates)."""
    if isinstance(data, pa.Schema):
        arrays = [pa.array([], type=_native_type(f)) for f in data]
        names = data.names
    else:
        arrays = [_native_array(f, a) for f, a in zip(data.schema, data.columns, strict=True)]
        names = data.schema.names
    table = pa.Table.from_arrays(arrays, names=names)
    return table.to_pandas(types_mapper=_pandas_dtype)


# --- what is missing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingColumn:
    """A staffcast column the source lacks: its source column (None when not mapped) or its
    SQL expression with the database's error (``detail``)."""

    column: str
    source: str | None = None
    detail: str = ""
    expression: bool = False

    def explain(self, table: str, present: list[str]) -> str:
        """What is missing and what to do, in a clause."""
        key = f"tables.{table}.columns"
        if self.expression:
            return (
                f"{self.column} <- SQL {_short(self.source or '')} failed: the database says: "
                f"{self.detail} (fix {key}.{self.column})"
            )
        wanted = self.source or self.column
        close = close_matches(wanted, present, cutoff=0.7)
        hint = f"close: {_quoted(close)}; " if close else ""
        if self.source is None:
            return f"no column '{self.column}' ({hint}map it under {key})"
        looks_like_sql = re.search(r"[()]|\s[-+*/]\s", self.source) is not None
        sql = ' (a SQL expression is written {sql: "..."})' if looks_like_sql else ""
        return (
            f"{self.column} is mapped to '{self.source}', which it does not have "
            f"({hint}fix {key}.{self.column}){sql}"
        )


def _sql_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (SQLite and PostgreSQL alike)."""
    return '"' + name.replace('"', '""') + '"'


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _short(sql: str, limit: int = 80) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def listing(names: Iterable[str], limit: int = _LISTED, empty: str = "nothing") -> str:
    """Names for a message, the first ``limit`` of them."""
    names = list(names)
    if not names:
        return empty
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def missing_columns_text(
    table: str, where: str, missing: list[MissingColumn], present: list[str]
) -> str:
    """The sentence for one table's missing columns: ``Source table 'x' (where) is missing
    required column(s) a, b (rule: required_columns): ... It has: ...``."""
    details = "; ".join(m.explain(table, present) for m in missing)
    return (
        f"Source table '{table}'{where} is missing required column(s) "
        f"{', '.join(m.column for m in missing)} (rule: required_columns): {details}. It has: "
        f"{listing(present, empty='no columns')}."
    )


def shape_stop(problems: list[str], mapping: SourceMapping) -> ValidationFailed:
    """One stop for every missing table and column (each problem a sentence or two)."""
    where = f"the source mapping '{mapping.origin}'" if mapping.origin else "a source mapping"
    return ValidationFailed(
        " ".join(problems) + f" Rename the tables or columns in the source, or map them in "
        f"{where} (see docs/source-contract.md), then run again; {_NOTHING_PUBLISHED}."
    )


# --- the as_of cut -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cut:
    """Where a table is cut at as_of, as a bound for each type the column may have."""

    column: str
    instant: pd.Timestamp  # timestamptz: a UTC instant
    naive: datetime  # timestamp without zone
    day: date  # date
    text: str  # text holding ISO 8601


def _cuts(as_of: date, instant: pd.Timestamp) -> dict[str, _Cut]:
    """The cut of each table, one day after ``as_of`` (``instant``: its start, UTC), except a
    date hired_on, cut exactly at as_of (as the text rule always did)."""
    margin = instant + timedelta(days=1)
    local_next = datetime.combine(as_of + timedelta(days=1), time.min)
    naive = max(local_next, margin.tz_localize(None).to_pydatetime())
    text = margin.strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "shift_requests": _Cut("requested_at", margin, naive, as_of + timedelta(days=1), text),
        "shift_offers": _Cut("offered_at", margin, naive, as_of + timedelta(days=1), text),
        "nurses": _Cut("hired_on", margin, local_next, as_of, as_of.isoformat()),
    }


def _kind_of_type(kind: Any) -> str:
    """A catalog type as the cut sees it: timestamptz, timestamp, date, text or other."""
    if isinstance(kind, sa.DateTime):
        return "timestamptz" if kind.timezone else "timestamp"
    if isinstance(kind, sa.Date):
        return "date"
    if isinstance(kind, sa.String):
        return "text"
    return "other"


_PG_KINDS = {1184: "timestamptz", 1114: "timestamp", 1082: "date", 25: "text", 1043: "text"}
_PG_KINDS.update({1042: "text", 19: "text"})


def _kind_of_code(dialect: str, code: Any) -> str:
    """A probed column's type (a DBAPI type code) as the cut sees it (SQLite: always text, the
    way it stores timestamps)."""
    if dialect == "sqlite":
        return "text"
    if dialect == "postgresql" and isinstance(code, int):
        return _PG_KINDS.get(code, "other")
    return "other"


# --- planning the SELECT -------------------------------------------------------------------------


@dataclass
class _Plan:
    """The SELECT of one table: what to select under which name (and its type), from where."""

    table: str
    origin: str
    source: str  # the FROM clause
    items: list[tuple[str, str, str]]  # (SQL, staffcast name, kind)

    def item(self, column: str) -> tuple[str, str] | None:
        return next(((s, k) for s, c, k in self.items if c == column), None)


class _Shape:
    """Checks the source's shape against the mapping, collecting every problem."""

    def __init__(self, conn: Connection, mapping: SourceMapping) -> None:
        self.conn = conn
        self.mapping = mapping
        self.dialect = conn.dialect.name
        self.inspector = sa.inspect(conn)
        self.problems: list[str] = []
        self._quote = conn.dialect.identifier_preparer.quote_identifier

    def quote(self, name: str) -> str:
        return str(self._quote(name))

    def limit_0(self, sql: str) -> str:
        if self.dialect in ("postgresql", "sqlite", "mysql", "mariadb", "duckdb"):
            return f"{sql} LIMIT 0"
        return f"{sql} WHERE 1 = 0"

    def probe(self, sql: str) -> tuple[list[tuple[str, Any]], str | None]:
        """Run ``sql`` (returning no rows): (column names and type codes, None), or ([], the
        database's message) when it fails."""
        runner = self.conn.execution_options(no_parameters=True)
        try:
            if self.dialect == "sqlite":  # a failed SELECT leaves SQLite's transaction usable
                result = runner.exec_driver_sql(sql)
                description = result.cursor.description if result.cursor else None
                result.close()
            else:
                with self.conn.begin_nested():
                    result = runner.exec_driver_sql(sql)
                    description = result.cursor.description if result.cursor else None
                    result.close()
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated or transient_reason(exc):
                raise  # not a shape problem: read_source explains it
            state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
            if state == "42501":  # insufficient privilege: not a shape problem
                raise SourceUnavailable(
                    f"The database user may not read what the source mapping names "
                    f"({_database_says(exc)}). Grant it SELECT on the tables (or just the "
                    f"columns) staffcast reads; {_NOTHING_PUBLISHED}."
                ) from None
            return [], _database_says(exc)
        return [(str(d[0]), d[1]) for d in description or ()], None

    def existing(self, schema: str | None) -> list[str]:
        """Tables and views of ``schema`` (the default schema for None); [] when there is no
        such schema."""
        try:
            names = self.inspector.get_table_names(schema=schema)
            names += self.inspector.get_view_names(schema=schema)
            if self.dialect == "postgresql":
                names += self.inspector.get_materialized_view_names(schema=schema)
        except sa.exc.DBAPIError as exc:
            if transient_reason(exc):
                raise
            return []
        except NotImplementedError:
            return []
        return sorted(set(names))

    def plan(self, table: str) -> _Plan | None:
        """The SELECT of ``table``, or None after recording its problems (or when it is an
        optional table the source lacks: then ``None`` with no problem)."""
        mapped = self.mapping.table(table)
        if mapped.query is not None:
            origin = "query"
            source = f"({mapped.query}) AS {self.quote('src')}"
            found, error = self.probe(self.limit_0(f"SELECT * FROM {source}"))
            if error is not None:
                self.problems.append(
                    f"Source table '{table}' (query) cannot be read (rule: required_tables): "
                    f"the database says: {error} (fix tables.{table}.query)."
                )
                return None
            present = {name: _kind_of_code(self.dialect, code) for name, code in found}
        else:
            origin = mapped.table or table
            schema, _, name = origin.rpartition(".")
            if not self._exists(name, schema or None):
                if table in OPTIONAL_TABLES and not self.mapping.locates(table):
                    return None
                self.problems.append(self._missing_table(table, mapped, name, schema or None))
                return None
            columns = self.inspector.get_columns(name, schema=schema or None)
            present = {
                str(c["name"]): "text" if self.dialect == "sqlite" else _kind_of_type(c["type"])
                for c in columns
            }
            source = (self.quote(schema) + "." if schema else "") + self.quote(name)
        return self._columns(table, mapped, origin, source, present)

    def _exists(self, name: str, schema: str | None) -> bool:
        try:
            return bool(self.inspector.has_table(name, schema=schema))
        except sa.exc.DBAPIError as exc:  # SQLite: no attached database of that name
            if transient_reason(exc):  # a locked file has its tables all the same
                raise
            return False

    def _missing_table(
        self, table: str, mapped: TableMapping, name: str, schema: str | None
    ) -> str:
        where = f" ({mapped.table})" if mapped.table else ""
        there = self.existing(schema)
        close = [f"{schema}.{n}" if schema else n for n in close_matches(name, there)]
        for other in self._schemas():  # the same name in another schema
            if other != schema and name in self.existing(other):
                close.append(f"{other}.{name}")
        hint = f"close: {_quoted(close)}; " if close else ""
        if schema and not there and schema not in self._schemas():
            has = (
                f"there is no schema '{schema}' (schemas: {listing(self._schemas(), empty='none')})"
            )
        else:
            holder = f"schema '{schema}'" if schema else "the database"
            has = f"{holder} has: {listing(there, empty='no tables')}"
        key = f"fix tables.{table}.table" if mapped.table else f"name it under tables.{table}.table"
        needs = "" if mapped.table else " staffcast needs facilities, shift_requests and nurses."
        return (
            f"Source table '{table}'{where} does not exist in the operational database (rule: "
            f"required_tables): {hint}{has} ({key}).{needs}"
        )

    def _schemas(self) -> list[str]:
        if self.dialect == "sqlite":
            return []
        try:
            names = self.inspector.get_schema_names()
        except sa.exc.DBAPIError as exc:
            if transient_reason(exc):
                raise
            return []
        except NotImplementedError:
            return []
        hidden = {"information_schema", "pg_catalog", "pg_toast"}
        return [n for n in names if n not in hidden and not n.startswith("pg_temp")][:50]

    def _columns(
        self, table: str, mapped: TableMapping, origin: str, source: str, present: dict[str, str]
    ) -> _Plan | None:
        items: list[tuple[str, str, str]] = []
        missing: list[MissingColumn] = []
        folded: dict[str, list[str]] = {}
        for name in present:
            folded.setdefault(name.casefold(), []).append(name)
        for column in SOURCE_COLUMNS[table]:
            wanted: ColumnSource = mapped.source(column)
            if wanted.sql is not None:
                sql = f"({wanted.sql})"
                probed = f"SELECT {sql} AS {self.quote(column)} FROM {source}"
                found, error = self.probe(self.limit_0(probed))
                if error is not None:
                    missing.append(MissingColumn(column, wanted.sql, error, expression=True))
                    continue
                items.append((sql, column, _kind_of_code(self.dialect, found[0][1])))
                continue
            name = wanted.column or column
            if name not in present:
                same = folded.get(name.casefold(), [])
                if len(same) != 1:  # not there, even ignoring case (or ambiguous)
                    mapped_to = name if column in mapped.columns else None
                    missing.append(MissingColumn(column, mapped_to))
                    continue
                name = same[0]
            items.append((self.quote(name), column, present[name]))
        if missing:
            where = f" ({origin})" if origin != table else ""
            self.problems.append(missing_columns_text(table, where, missing, list(present)))
            return None
        plan = _Plan(table, origin, source, items)
        select = ", ".join(f"{s} AS {self.quote(c)}" for s, c, _ in items)
        _, error = self.probe(self.limit_0(f"SELECT {select} FROM {source}"))
        if error is not None:
            self.problems.append(
                f"Source table '{table}' ({origin}) cannot be read (rule: required_columns): "
                f"the database says: {error} (check tables.{table} in the source mapping)."
            )
            return None
        return plan


def _database_says(exc: sa.exc.DBAPIError) -> str:
    """The database's own error message in one line (its hint too, never the SQL)."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        hint = getattr(diag, "message_hint", None)
        return " ".join(f"{primary}{f' (hint: {hint})' if hint else ''}".split())
    text = str(orig if orig is not None else exc)
    first = text.strip().splitlines()[0] if text.strip() else type(orig).__name__
    hints = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("HINT:")]
    return " ".join(" ".join([first, *hints]).split())


# --- errors worth retrying -----------------------------------------------------------------------

_LOCKED = "another program holds a write lock on the SQLite file"
_REFUSED = "the server refused the connection (not running, or not listening yet)"
_CLOSED = "the server closed the connection"
_ENDED = "an administrator shut the server down or ended the session (SQLSTATE 57P01)"
_STARTING = "the server is starting up or shutting down"
_TRANSIENT_STATES = {
    "40001": "the server reported a serialization failure (SQLSTATE 40001)",
    "40P01": "the server reported a deadlock (SQLSTATE 40P01)",
    "57P01": _ENDED,
    "57P02": "the server restarted after a crash (SQLSTATE 57P02)",
    "57P03": _STARTING,
    "53300": "the server has no free connection slots (SQLSTATE 53300)",
    "08000": _CLOSED,
    "08001": _REFUSED,
    "08003": _CLOSED,
    "08006": _CLOSED,
}
"""PostgreSQL SQLSTATEs worth a retry: concurrency conflicts, a server going down or coming up,
a connection lost. Any other SQLSTATE is taken at its word (the same query fails again)."""
_NEVER_TRANSIENT = re.compile(
    r"authentication failed|no pg_hba\.conf entry|permission denied|no such table"
    r"|unable to open database file"
    r'|(role|database|relation|schema|table|column) "[^"]*" does not exist',
    re.IGNORECASE,
)
"""Words of an error that a retry cannot fix, even when it also names a refused connection
(libpq tries every address of ``localhost``: ::1 refused, then 127.0.0.1 wrong password)."""
_TRANSIENT_PHRASES = (
    (r"database is (locked|busy)|database table is locked|SQLITE_(BUSY|LOCKED)", _LOCKED),
    (r"connection refused|could not connect to server", _REFUSED),
    (r"terminating connection due to administrator command", _ENDED),
    (r"database system is (starting up|shutting down|in recovery|not yet accepting)", _STARTING),
    (r"timeout expired|connection timed out", "the server did not answer"),
    (r"too many clients already|remaining connection slots", _TRANSIENT_STATES["53300"]),
    (r"could not serialize access|conflict with recovery", _TRANSIENT_STATES["40001"]),
    (r"deadlock detected", _TRANSIENT_STATES["40P01"]),
    (
        r"server closed the connection|connection reset by peer|could not (receive|send) data"
        r"|no connection to the server|connection is (closed|lost)|consuming input failed"
        r"|SSL SYSCALL error",
        _CLOSED,
    ),
)
"""Words of an error without a SQLSTATE (a connection that failed, SQLite, an ADBC stream) that
a retry may fix (matched ignoring case), with the reason given."""


def transient_reason(error: BaseException | None) -> str | None:
    """Why reading the source again later may work, in a few words ("another program holds a
    write lock on the SQLite file"), or None when it will fail the same way.

    ``error`` is a driver's error: SQLAlchemy's (sqlite3, psycopg), an ADBC driver's, or the
    ``OSError`` of an ADBC stream cut short. Transient: a SQLite file locked by another program
    (``database is locked``, SQLITE_BUSY); a PostgreSQL server that refuses connections,
    closes them, is starting up or shutting down (SQLSTATE 57P01-57P03), or reports a
    serialization failure (40001) or deadlock (40P01). Not transient: a missing file, table or
    database, a wrong user or password, a refused permission, and every other error.
    """
    if error is None:
        return None
    invalidated = isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    text = f"{getattr(error, 'sqlite_errorname', '')} {error}"
    if state:
        return _TRANSIENT_STATES.get(str(state))
    if _NEVER_TRANSIENT.search(text):
        return None
    found = (reason for words, reason in _TRANSIENT_PHRASES if re.search(words, text, re.I))
    return next(found, _CLOSED if invalidated else None)


def _locked(path: str, says: str) -> SourceUnavailable:
    return SourceUnavailable(
        f"The operational database file '{path}' is locked: another program holds a write lock "
        f"on it (SQLite: {says}), so staffcast cannot read it until that program commits or "
        "closes (a long import, or a database tool with an open transaction); "
        f"{_NOTHING_PUBLISHED}.",
        transient=True,
    )


def _read_failed(says: str, error: BaseException, sqlite_file: str | None) -> SourceUnavailable:
    """One paragraph for a source database that failed while being read; ``says`` is the
    driver's message, in one line, without a password."""
    reason = transient_reason(error)
    if reason == _LOCKED and sqlite_file:
        return _locked(sqlite_file, says)
    advice = (
        "The server may be restarting or busy: run again once it answers"
        if reason
        else "Check that the source URL points at the agency's database, that it is reachable "
        "and that the user may read the source tables"
    )
    return SourceUnavailable(
        f"Could not read the operational database ({says}). {advice}; {_NOTHING_PUBLISHED}.",
        transient=reason is not None,
    )


# --- reading -------------------------------------------------------------------------------------


def _cut_postgresql(sql: str, kind: str, cut: _Cut) -> str | None:
    """The WHERE clause of the as_of cut on PostgreSQL: a typed literal staffcast formats from
    a date (never user text), so the planner can use an index on the column."""
    if kind == "timestamptz":
        bound = f"CAST('{cut.instant.isoformat()}' AS timestamptz)"
    elif kind == "timestamp":
        bound = f"CAST('{cut.naive.isoformat(sep=' ')}' AS timestamp)"
    elif kind == "date":
        bound = f"CAST('{cut.day.isoformat()}' AS date)"
    elif kind == "text":
        text = f"CAST({sql} AS text)"
        return (
            f"{text} COLLATE \"C\" < '{cut.text}' OR {sql} IS NULL"
            f" OR {text} !~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'"
        )
    else:
        return None
    return f"{sql} < {bound} OR {sql} IS NULL"


def _select_sql(plan: _Plan, quote: Any, where: str | None, text: bool = False) -> str:
    items = (f"CAST({s} AS TEXT)" if text else s for s, _, _ in plan.items)
    select = ", ".join(f"{s} AS {quote(c)}" for s, (_, c, _) in zip(items, plan.items, strict=True))
    sql = f"SELECT {select} FROM {plan.source}"
    return sql + (f" WHERE {where}" if where else "")


def _read_postgresql(conn: Connection, plan: _Plan, cut: _Cut | None) -> RawTable:
    quote = conn.dialect.identifier_preparer.quote_identifier
    where = None
    if cut is not None and (item := plan.item(cut.column)) is not None:
        where = _cut_postgresql(item[0], item[1], cut)
        if where is None:
            logger.info("%s: %s is not a date or time; cut after parsing", plan.table, cut.column)
    sql = _select_sql(plan, quote, where)
    columns = tuple(c for _, c, _ in plan.items)
    streamed = StreamedTable(libpq_uri(conn.engine.url), sql, (), columns, driver="postgresql")
    return streamed if plan.table in STREAMED_TABLES else _whole(streamed)


def _read_sqlite(database: str, plan: _Plan, cut: _Cut | None) -> RawTable:
    """The selection read through ADBC SQLite straight into Arrow (5x faster, 3x less memory
    than SQLAlchemy rows), every value as text."""

    where: str | None = None
    params: tuple[str, ...] = ()
    if cut is not None and (item := plan.item(cut.column)) is not None:
        # Text that does not start like an ISO date cannot be compared with the cutoff: it is
        # kept, so that the contracts quarantine it instead of the query dropping it unseen.
        column = item[0]
        where = (
            f"{column} < ? OR {column} IS NULL"
            f" OR {column} NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'"
        )
        params = (cut.text,)
    sql = _select_sql(plan, _sql_identifier, where, text=True)
    streamed = StreamedTable(database, sql, params, tuple(c for _, c, _ in plan.items))
    return streamed if plan.table in STREAMED_TABLES else _whole(streamed)


def _read_sqlalchemy(conn: Connection, plan: _Plan, cut: _Cut | None) -> pd.DataFrame:
    """Any other dialect: the same SELECT through SQLAlchemy's DBAPI cursor, the cut bound as a
    parameter of the column's type."""
    quote = conn.dialect.identifier_preparer.quote_identifier
    style = conn.dialect.paramstyle
    marker = "\x00cut\x00"
    where: str | None = None
    value: Any = None
    if cut is not None and (item := plan.item(cut.column)) is not None:
        sql, kind = item
        if kind == "text":
            where = f"{sql} < {marker} OR {sql} IS NULL OR NOT ({sql} LIKE '____-__-__%')"
            value = cut.text
        elif kind in ("timestamptz", "timestamp", "date"):
            where = f"{sql} < {marker} OR {sql} IS NULL"
            value = {
                "timestamptz": cut.instant.to_pydatetime(),
                "timestamp": cut.naive,
                "date": cut.day,
            }[kind]
    statement = _select_sql(plan, quote, where)
    columns = [c for _, c, _ in plan.items]
    if value is None:
        result = conn.execution_options(no_parameters=True).exec_driver_sql(statement)
    else:
        if style in ("format", "pyformat"):  # a literal % (LIKE, user SQL) is written %%
            statement = statement.replace("%", "%%")
        placeholders = {"qmark": "?", "format": "%s", "numeric": ":1", "numeric_dollar": "$1"}
        params: tuple[Any, ...] | dict[str, Any] = (value,)
        if style in ("named", "pyformat"):
            params = {"as_of_cut": value}
        placeholder = placeholders.get(style, ":as_of_cut" if style == "named" else "%(as_of_cut)s")
        result = conn.exec_driver_sql(statement.replace(marker, placeholder), params)
    # Plain DBAPI tuples in chunks: SQLAlchemy Row objects cost 4x more, and a chunk's Python
    # objects are freed once it is a DataFrame.
    chunks = []
    while result.cursor is not None:
        rows = result.cursor.fetchmany(_CHUNK_ROWS)
        if not rows:
            break
        chunks.append(pd.DataFrame.from_records(rows, columns=columns))
    result.close()
    if not chunks:
        return pd.DataFrame(columns=columns)
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def read_source(
    conn: Connection,
    as_of: date,
    agency_timezone: str,
    mapping: SourceMapping | None = None,
) -> SourceExtract:
    """Read the needed columns of every source table, cut one day after ``as_of`` (margin).

    ``mapping`` says where each table and column is (default: staffcast's own names). The
    exact as_of cut happens after parsing (``data_contracts.validate``); the query only keeps
    the database from sending years of rows the run cannot see.

    Raises :class:`ValidationFailed` listing every missing table and column (nothing is read
    then), :class:`SourceUnavailable` when the database cannot be read, and
    :class:`staffcast.mapping.MappingError` for a mapping that names files.
    """
    mapping = mapping or IDENTITY
    mapping.check_kind("database")
    instant = as_of_instant(as_of, agency_timezone)
    cuts = _cuts(as_of, instant)
    database = conn.engine.url.database
    try:
        shape = _Shape(conn, mapping)
        plans = {table: shape.plan(table) for table in SOURCE_COLUMNS}
        if shape.problems:
            raise shape_stop(shape.problems, mapping)
        tables: dict[str, RawTable] = {}
        for table, plan in plans.items():
            cut = cuts.get(table)
            if plan is None:  # an optional table the source does not have
                tables[table] = pd.DataFrame(columns=list(SOURCE_COLUMNS[table]))
            elif conn.dialect.name == "postgresql":
                tables[table] = _read_postgresql(conn, plan, cut)
            elif conn.dialect.name == "sqlite" and database and database != ":memory:":
                tables[table] = _read_sqlite(database, plan, cut)
            else:
                tables[table] = _read_sqlalchemy(conn, plan, cut)
    except sa.exc.DBAPIError as exc:
        sqlite_file = database if conn.dialect.name == "sqlite" else None
        raise _read_failed(_database_says(exc), exc, sqlite_file) from exc
    return SourceExtract(
        as_of=as_of,
        as_of_utc=instant,
        tables=tables,
        options={table: mapping.parse_options(table) for table in SOURCE_COLUMNS},
        described=mapping.describe() if mapping.tables else "",
    )


def libpq_uri(url: sa.URL | str) -> str:
    """A SQLAlchemy PostgreSQL URL (``postgresql+psycopg://u:p@h:5432/db?sslmode=require``) as
    a libpq URI for the ADBC driver: user, password, database and every query option
    percent-encoded (libpq takes the same options psycopg passes on)."""
    url = sa.engine.make_url(url) if isinstance(url, str) else url
    auth = quote(url.username or "", safe="")
    if url.password is not None:
        auth += ":" + quote(str(url.password), safe="")
    host = url.host or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = (f"{auth}@" if auth else "") + host + (f":{url.port}" if url.port else "")
    database = quote(url.database or "", safe="")
    pairs = [
        (key, item)
        for key, value in url.query.items()
        for item in (value if isinstance(value, tuple) else (value,))
    ]
    query = f"?{urlencode(pairs)}" if pairs else ""
    return f"postgresql://{netloc}/{database}{query}"


def connect_source(url: str) -> sa.Engine:
    """An engine on the operational database; fails with a clear message when unreachable.

    A SQLite file must exist already: staffcast never creates an empty source database.
    """
    try:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = parsed.database or ""
            if path in ("", ":memory:") or not Path(path).is_file():
                raise SourceUnavailable(
                    f"The operational database file '{path}' does not exist (source URL "
                    f"'{url}'). Run `staffcast demo` to make the demo agency, or pass "
                    "--source with the URL of the agency's database."
                )
        # SQLite waits briefly for another program's lock; staffcast.retry waits longer
        waits = parsed.get_backend_name() == "sqlite" and "timeout" not in parsed.query
        engine = sa.create_engine(
            url, connect_args={"timeout": _SQLITE_BUSY_SECONDS} if waits else {}
        )
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise SourceUnavailable(
            f"The source URL '{redact_url(url)}' is not a valid SQLAlchemy database URL ({exc}). "
            "Use a URL such as sqlite:///path/to/ops.db or "
            "postgresql+psycopg://user@host/dbname."
        ) from exc
    except sa.exc.OperationalError as exc:
        says = _database_says(exc)
        reason = transient_reason(exc)
        if reason == _LOCKED:
            raise _locked(parsed.database or "", says) from exc
        advice = (
            "The server may be down, restarting or busy: check that it is running and "
            "reachable at that host and port"
            if reason
            else "Check the host, port, database name, user and password"
        )
        raise SourceUnavailable(
            f"Could not connect to the operational database at '{redact_url(url)}' ({says}). "
            f"{advice}; {_NOTHING_PUBLISHED}.",
            transient=reason is not None,
        ) from exc
    return engine


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages, logs and summaries."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url
