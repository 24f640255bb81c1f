"""Write one run's results to the reporting database, all or nothing.

A run's life in ``forecast_run``: :func:`start_run` inserts it as ``running`` (committed at once,
so a killed run leaves a trace); :func:`publish_run` writes every result table and flips the
run to ``published`` in one transaction; :func:`mark_failed` records why a run did not publish, and
:func:`record_validation` keeps the validation summary (and the data-quality impact) of a run
that a batch rule stopped.
Until the flip, the ``current_*`` views keep showing the previous published run, and if the
publishing transaction fails nothing of it is left behind.

Re-running an ``as_of`` replaces that date's earlier run (published, failed or still running):
the replacement happens inside the publishing transaction, so the earlier results stay current
until the new ones are complete.

Works on SQLite and PostgreSQL (psycopg 3). Schema creation is separate: call
:func:`reports.schema.create_schema` first. On PostgreSQL with psycopg 3 the rows go in by
``COPY ... FROM STDIN (FORMAT BINARY)`` on the publishing transaction's own connection (a
500-facility run: 4.5 s instead of 12.6 s, benchmarks/publish_pg.py); elsewhere, and for a table
with a column type COPY is not set up for here (JSON), by ``executemany``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Table,
    delete,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from reports.schema import (
    CHILD_TABLES,
    SCORED_RUN_COLUMNS,
    advisory_lock_key,
    current_view,
    table,
)

__all__ = [
    "INSERT_CHUNK_ROWS",
    "MAX_ERROR_CHARS",
    "RunCounts",
    "latest_published_run",
    "mark_failed",
    "publish_run",
    "record_validation",
    "start_run",
]

logger = logging.getLogger(__name__)

#: Rows sent to the database per ``executemany`` or ``COPY`` (bounds memory for large frames).
INSERT_CHUNK_ROWS = 20_000
#: ``forecast_run.error`` keeps at most this many characters.
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class RunCounts:
    """shift_requests accounting for one run, in rows: extracted = used + quarantined + excluded.

    ``rows_excluded`` are rows set aside as out of the agency's scope (e.g. a role it does not
    staff); it defaults to 0, so ``RunCounts(extracted, used, quarantined)`` still works.
    """

    rows_extracted: int
    rows_used: int
    rows_quarantined: int
    rows_excluded: int = 0

    def __post_init__(self) -> None:
        counts = (self.rows_extracted, self.rows_used, self.rows_quarantined, self.rows_excluded)
        if min(counts) < 0:
            raise ValueError(f"row counts must be >= 0, got {self}")
        accounted = self.rows_used + self.rows_quarantined + self.rows_excluded
        if self.rows_extracted != accounted:
            raise ValueError(
                f"accounting invariant broken: rows_extracted={self.rows_extracted} but "
                f"rows_used + rows_quarantined + rows_excluded = {accounted}"
            )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json_safe(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so dates, paths and numpy scalars are stored as text/numbers."""

    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        return str(value)

    return json.loads(json.dumps(dict(parameters), default=default))


def start_run(
    engine: Engine,
    as_of: dt.date,
    parameters: dict[str, Any],
    flow_run_id: str | None,
    code_version: str,
    horizon_days: int,
    stale_after_seconds: float | None = None,
) -> str:
    """Record a new run as ``running`` and return its run_id (``YYYYMMDD-<12 hex>``).

    ``as_of`` is the run's first forecast day (local date); ``horizon_days`` its forecast
    length in days. ``parameters`` is stored as JSON (values JSON cannot hold are stored as
    text). Committed in its own transaction, so the row survives a crash of the run.

    With ``stale_after_seconds``, in the same transaction and under a lock (an advisory lock on
    PostgreSQL, the write lock on SQLite): every ``running`` row whose heartbeat (or start,
    without one) is older than that is marked ``abandoned`` (:func:`abandon_stale`), and a
    ``running`` row left for the same as_of means a run in progress:
    :class:`staffcast.errors.RunInProgress` is raised and nothing is written.
    """
    if isinstance(as_of, dt.datetime) or not isinstance(as_of, dt.date):
        raise TypeError(f"as_of must be a datetime.date, got {as_of!r}")
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    run_id = f"{as_of:%Y%m%d}-{uuid.uuid4().hex[:12]}"
    forecast_run = table("forecast_run")
    with engine.begin() as connection:
        if stale_after_seconds is not None:
            _lock(connection, "staffcast.reporting.start")
            abandon_stale(connection, stale_after_seconds)
            _refuse_in_progress(connection, as_of)
        connection.execute(
            insert(forecast_run).values(
                run_id=run_id,
                as_of=as_of,
                flow_run_id=flow_run_id,
                status="running",
                started_at=_now(),
                parameters=_json_safe(parameters),
                code_version=code_version,
                horizon_days=int(horizon_days),
            )
        )
    logger.info("started run %s (as_of %s)", run_id, as_of)
    return run_id


def _lock(connection: Connection, label: str) -> None:
    """Hold a lock named ``label`` until the transaction ends: an advisory lock on PostgreSQL,
    the database's write lock on SQLite (BEGIN IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_lock_key(label)}
        )
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def abandon_stale(connection: Connection, stale_after_seconds: float) -> list[str]:
    """Mark ``abandoned`` every running run silent for over ``stale_after_seconds``.

    Silent: its ``heartbeat_at`` (its ``started_at`` when it has none, as runs of older
    versions) is older than that. Returns the run_ids marked.
    """
    forecast_run = table("forecast_run")
    cutoff = _now() - dt.timedelta(seconds=stale_after_seconds)
    rows = connection.execute(
        select(forecast_run.c.run_id, forecast_run.c.heartbeat_at, forecast_run.c.started_at).where(
            forecast_run.c.status == "running"
        )
    ).all()
    stale = [row for row in rows if (row.heartbeat_at or row.started_at) < cutoff]
    for row in stale:
        last = row.heartbeat_at or row.started_at
        connection.execute(
            update(forecast_run)
            .where(forecast_run.c.run_id == row.run_id, forecast_run.c.status == "running")
            .values(
                status="abandoned",
                finished_at=_now(),
                error=(
                    f"abandoned: no heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC (over "
                    f"{stale_after_seconds:g} s); the process running it died or was killed"
                ),
            )
        )
        logger.warning("run %s abandoned: no heartbeat since %s", row.run_id, last)
    return [row.run_id for row in stale]


def _refuse_in_progress(connection: Connection, as_of: dt.date) -> None:
    from staffcast.errors import RunInProgress

    forecast_run = table("forecast_run")
    running = connection.execute(
        select(forecast_run.c.run_id, forecast_run.c.started_at, forecast_run.c.heartbeat_at)
        .where(forecast_run.c.status == "running", forecast_run.c.as_of == as_of)
        .order_by(forecast_run.c.started_at)
    ).first()
    if running is not None:
        beat = running.heartbeat_at or running.started_at
        raise RunInProgress(
            f"Run {running.run_id} for as_of {as_of} is in progress (started "
            f"{running.started_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat "
            f"{beat:%H:%M:%S} UTC), so this run did not start. Wait for it to finish, or set "
            "STAFFCAST_CONCURRENT_RUN=wait to have a second run wait for the first; a run whose "
            "process died is marked abandoned once its heartbeat is older than "
            "STAFFCAST_ABANDON_AFTER_SECONDS.",
            running.run_id,
        )


def heartbeat(engine: Engine, run_id: str) -> None:
    """Refresh a running run's ``heartbeat_at`` (its sign of life)."""
    forecast_run = table("forecast_run")
    with engine.begin() as connection:
        connection.execute(
            update(forecast_run)
            .where(forecast_run.c.run_id == run_id, forecast_run.c.status == "running")
            .values(heartbeat_at=_now())
        )


# --- frame -> rows of Python values ------------------------------------------------------------


def _nan_to_none(values: np.ndarray) -> list[Any]:
    missing = np.isnan(values)
    if not missing.any():
        return values.tolist()
    boxed = values.astype(object)
    boxed[missing] = None
    return boxed.tolist()


def _float_values(series: pd.Series) -> list[Any]:
    return _nan_to_none(series.to_numpy(dtype="float64", na_value=np.nan))


def _int_values(series: pd.Series) -> list[Any]:
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy(dtype="int64").tolist()
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    present = ~np.isnan(values)
    if not np.all(np.isfinite(values[present]) & (values[present] == np.round(values[present]))):
        bad = values[present][values[present] != np.round(values[present])]
        raise ValueError(f"not whole numbers, e.g. {bad[0]!r}")
    boxed = np.full(values.shape, None, dtype=object)
    boxed[present] = values[present].astype("int64")
    return boxed.tolist()


def _bool_values(series: pd.Series) -> list[Any]:
    if pd.api.types.is_bool_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy(dtype=bool).tolist()
    return series.astype("boolean").to_numpy(dtype=object, na_value=None).tolist()


def _by_unique(series: pd.Series, convert: Callable[[Any], Any]) -> list[Any]:
    """Convert each distinct value once (dates repeat thousands of times per frame)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.empty(len(uniques) + 1, dtype=object)
    lookup[:-1] = [convert(value) for value in uniques]
    lookup[-1] = None
    return lookup[codes].tolist()


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    stamp = pd.Timestamp(value)
    if stamp != stamp.normalize():
        raise ValueError(f"{value!r} has a time of day; expected a calendar date")
    return stamp.date()


def _to_datetime(value: Any) -> dt.datetime:
    return pd.Timestamp(value).to_pydatetime()


def _date_values(series: pd.Series) -> list[Any]:
    return _by_unique(series, _to_date)


def _datetime_values(series: pd.Series) -> list[Any]:
    return _by_unique(series, _to_datetime)


def _str_values(series: pd.Series) -> list[Any]:
    values = series.to_numpy(dtype=object, na_value=None).tolist()
    if all(value is None or type(value) is str for value in values):
        return values
    return [value if value is None or isinstance(value, str) else str(value) for value in values]


def _object_values(series: pd.Series) -> list[Any]:
    return [
        None if isinstance(value, float) and math.isnan(value) else value
        for value in series.to_numpy(dtype=object, na_value=None).tolist()
    ]


def _converter(column: Column[Any]) -> Callable[[pd.Series], list[Any]]:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return _object_values
    if python_type is bool:
        return _bool_values
    if python_type is int:
        return _int_values
    if python_type is float:
        return _float_values
    if python_type is dt.datetime:
        return _datetime_values
    if python_type is dt.date:
        return _date_values
    if python_type is str:
        return _str_values
    return _object_values


@dataclass(frozen=True)
class _Rows:
    """A chunk of one table's rows: the column names, and one tuple of values per row."""

    names: tuple[str, ...]
    values: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.names, row, strict=True)) for row in self.values]


@dataclass(frozen=True)
class _PreparedTable:
    """A frame checked against its table, turned into Python values one chunk at a time (a
    national agency's forecast and history run to millions of rows: a Python object per value
    for all of them at once would cost gigabytes)."""

    name: str
    table: Table
    frame: pd.DataFrame
    run_id: str
    names: list[str]

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def checked(self) -> _PreparedTable:
        """This table after turning every value once (for small frames that must be known to
        fit before a transaction starts)."""
        for _ in self.chunks(INSERT_CHUNK_ROWS):
            pass
        return self

    def chunks(self, size: int) -> Iterator[_Rows]:
        """The rows, ``size`` at a time; ``ValueError`` naming the table and column for a value
        its column cannot hold (a missing value in a NOT NULL column, a fraction in an integer
        column, a date with a time of day)."""
        for start in range(0, len(self.frame), size):
            part = self.frame.iloc[start : start + size]
            yield _Rows(tuple(self.names), list(zip(*self._columns(part, start), strict=True)))

    def _columns(self, part: pd.DataFrame, start: int) -> list[list[Any]]:
        columns = []
        for name in self.names:
            column = self.table.c[name]
            if name == "run_id":
                columns.append([self.run_id] * len(part))
                continue
            try:
                values = _converter(column)(part[name])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{self.name}.{name}: {exc}") from exc
            if not column.nullable and None in values:
                missing = max(int(self.frame[name].isna().sum()), values.count(None))
                raise ValueError(
                    f"{self.name}.{name}: {missing} missing value(s) in a NOT NULL column "
                    f"(first at row {start + values.index(None)})"
                )
            columns.append(values)
        return columns


def _required_columns(target: Table) -> list[str]:
    """Columns a frame must provide: NOT NULL, no default, not an autoincrement id, not run_id."""
    return [
        column.name
        for column in target.columns
        if not column.nullable
        and column.default is None
        and column.server_default is None
        and column is not target.autoincrement_column
        and column.name != "run_id"
    ]


def _prepare(name: str, frame: pd.DataFrame, run_id: str) -> _PreparedTable:
    """Check ``frame``'s columns against table ``name``; its values are checked as they are
    turned into rows (:meth:`_PreparedTable.chunks`).

    A frame without rows and without columns (``pd.DataFrame()``) stands for no rows.
    """
    target = table(name)
    if frame.empty and len(frame.columns) == 0:
        return _PreparedTable(name, target, frame, run_id, [])
    frame_columns = [str(column) for column in frame.columns]
    if len(set(frame_columns)) != len(frame_columns):
        duplicated = sorted({c for c in frame_columns if frame_columns.count(c) > 1})
        raise ValueError(f"{name}: duplicated columns {', '.join(duplicated)}")
    unknown = [column for column in frame_columns if column not in target.c]
    if unknown:
        raise ValueError(
            f"{name}: column(s) not in the reporting table: {', '.join(unknown)} "
            f"(table columns: {', '.join(target.c.keys())})"
        )
    missing = [column for column in _required_columns(target) if column not in frame_columns]
    if missing:
        raise ValueError(f"{name}: required column(s) missing from the frame: {', '.join(missing)}")
    if "run_id" in frame_columns:
        others = set(frame["run_id"].dropna().astype(str)) - {run_id}
        if others or frame["run_id"].isna().any():
            raise ValueError(f"{name}: run_id column holds other values than {run_id!r}")

    names = [c.name for c in target.columns if c.name == "run_id" or c.name in frame_columns]
    return _PreparedTable(name, target, frame, run_id, names)


#: PostgreSQL types (pg_type oids) that binary COPY writes here, with the Python values
#: _prepare makes for them: bool, int8, int4, text, float8, varchar, date, timestamptz.
_COPY_TYPE_OIDS = frozenset({16, 20, 23, 25, 701, 1043, 1082, 1184})


def _copy_type_oids(connection: Connection, target: Table, names: tuple[str, ...]) -> list[int]:
    """The pg_type oids of ``names`` in ``target`` as the database has them, in that order.

    Read from the catalog rather than derived from the ORM types, so binary COPY always sends
    the exact binary format of each column (an int8 into an int4 column would be refused).
    """
    quoted = connection.dialect.identifier_preparer.format_table(target)
    result = connection.execute(
        text(
            "SELECT attname, atttypid::int FROM pg_catalog.pg_attribute "
            "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"table": quoted},
    )
    oids: dict[str, int] = {name: oid for name, oid in result}
    return [oids.get(name, 0) for name in names]


def _can_copy(connection: Connection, target: Table, names: tuple[str, ...]) -> bool:
    """COPY is used on psycopg 3 when no left-out column has a client-side default to fill."""
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        return False
    return all(
        column.name in names or (column.default is None and column.onupdate is None)
        for column in target.columns
    )


def _processed(
    row: tuple[Any, ...], processors: Sequence[tuple[int, Callable[[Any], Any]]]
) -> list[Any]:
    processed = list(row)
    for index, processor in processors:
        processed[index] = processor(processed[index])
    return processed


def _copy_rows(connection: Connection, target: Table, rows: _Rows, oids: list[int]) -> None:
    """Binary ``COPY`` of ``rows`` into ``target`` on the transaction's own psycopg connection.

    Values pass the columns' SQLAlchemy bind processors first (what ``executemany`` applies),
    and psycopg errors are raised as SQLAlchemy's (a duplicate key as ``IntegrityError``), as
    ``executemany`` raises them.
    """
    dialect = connection.dialect
    processors = [
        (index, processor)
        for index, name in enumerate(rows.names)
        if (processor := target.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        is not None
    ]
    values: Sequence[Sequence[Any]] = rows.values
    if processors:
        values = [_processed(row, processors) for row in rows.values]
    quote = dialect.identifier_preparer.quote
    statement = (
        f"COPY {dialect.identifier_preparer.format_table(target)} "
        f"({', '.join(quote(name) for name in rows.names)}) FROM STDIN (FORMAT BINARY)"
    )
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None, "the connection was closed"
    dbapi = dialect.loaded_dbapi
    try:
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(oids)
            for row in values:
                copy.write_row(row)
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=dialect) from exc


def _insert_rows(connection: Connection, target: Table, rows: _Rows) -> None:
    """Write one chunk of ``rows`` into ``target``: binary ``COPY`` on PostgreSQL with psycopg 3
    where every column's type allows it, one ``executemany`` everywhere else."""
    if _can_copy(connection, target, rows.names):
        oids = _copy_type_oids(connection, target, rows.names)
        if _COPY_TYPE_OIDS.issuperset(oids):
            _copy_rows(connection, target, rows, oids)
            return
    connection.execute(insert(target), rows.as_dicts())


def _has_column(connection: Connection, target: Table, name: str) -> bool:
    return any(column["name"] == name for column in inspect(connection).get_columns(target.name))


def _lock_publishing(connection: Connection) -> None:
    """Serialize publishers on PostgreSQL (SQLite serializes writers by itself)."""
    if connection.dialect.name == "postgresql":
        _lock(connection, "staffcast.reporting.publish")


def publish_run(
    engine: Engine,
    run_id: str,
    tables: Mapping[str, pd.DataFrame],
    counts: RunCounts,
    backfill: bool = False,
    commit_guard: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> None:
    """Write a running run's result frames and flip it to ``published``, in one transaction.

    ``tables`` maps child table names (:data:`reports.schema.CHILD_TABLES`) to frames whose
    columns are a subset of the table's columns that includes every NOT NULL one; ``run_id`` is
    added when missing. A table left out, or given as ``pd.DataFrame()``, gets no rows (older
    callers pass no ``data_quality_impact``). An unknown table or column or a missing required
    column raises ``ValueError`` before anything is written; a missing value in a NOT NULL
    column or a fraction in an integer column raises it as the rows are turned into Python
    values, chunk by chunk (so memory does not grow with the rows), and the transaction rolls
    back. Either names the table and column.

    In the transaction: every other run with the same ``as_of`` is deleted (children first,
    so it works without foreign-key cascades too; the track record that later runs kept of
    it, :data:`reports.schema.SCORED_RUN_COLUMNS`, goes too: its forecasts are gone), the
    frames are inserted, and the run gets
    ``status='published'``, ``finished_at`` and ``counts`` (``rows_excluded`` is written only
    when it is not 0, the column's server default: so a caller without exclusions can still
    publish into a database of revision 0002 or older, as the migration tests do). Any error
    rolls everything back: the previously published run stays current and the failed run stays
    ``running`` until :func:`mark_failed`.

    The run becomes the current run (``current_since``) unless ``backfill`` is set and its
    as_of is older than the current run's. ``commit_guard`` wraps the COMMIT (the run's
    cancellation holds signals there: see staffcast.run_control).
    """
    unknown = sorted(set(tables) - set(CHILD_TABLES))
    if unknown:
        raise ValueError(
            f"not reporting tables: {', '.join(unknown)} (known: {', '.join(CHILD_TABLES)})"
        )
    prepared = [_prepare(name, tables[name], run_id) for name in CHILD_TABLES if name in tables]

    started = time.perf_counter()
    forecast_run = table("forecast_run")
    with engine.connect() as connection, connection.begin() as transaction:
        _lock_publishing(connection)
        run = connection.execute(
            select(forecast_run.c.as_of, forecast_run.c.status).where(
                forecast_run.c.run_id == run_id
            )
        ).one_or_none()
        if run is None:
            raise ValueError(
                f"run {run_id!r} is not in forecast_run: start it with start_run() first "
                "(or a later run for the same as_of replaced it)"
            )
        if run.status != "running":
            raise ValueError(f"run {run_id!r} is {run.status!r}; only a running run can publish")

        replaced = (
            connection.execute(
                select(forecast_run.c.run_id).where(
                    forecast_run.c.as_of == run.as_of, forecast_run.c.run_id != run_id
                )
            )
            .scalars()
            .all()
        )
        if replaced:
            for name in reversed(CHILD_TABLES):
                child = table(name)
                connection.execute(delete(child).where(child.c.run_id.in_(replaced)))
            for name, column in SCORED_RUN_COLUMNS.items():  # what later runs scored of them
                child = table(name)
                connection.execute(delete(child).where(child.c[column].in_(replaced)))
            connection.execute(delete(forecast_run).where(forecast_run.c.run_id.in_(replaced)))

        for item in prepared:
            for rows in item.chunks(INSERT_CHUNK_ROWS):
                _insert_rows(connection, item.table, rows)

        current = connection.execute(
            select(forecast_run.c.as_of).where(
                forecast_run.c.run_id
                == select(current_view("forecast_run").c.run_id).scalar_subquery()
            )
        ).scalar_one_or_none()
        takes_over = not backfill or current is None or run.as_of >= current

        values: dict[str, Any] = {
            "status": "published",
            "finished_at": _now(),
            "rows_extracted": counts.rows_extracted,
            "rows_used": counts.rows_used,
            "rows_quarantined": counts.rows_quarantined,
            "error": None,
        }
        if takes_over and _has_column(connection, forecast_run, "current_since"):
            values["current_since"] = values["finished_at"]  # (a database before 0004 lacks it)
        if counts.rows_excluded:  # else the column keeps its server default, 0
            values["rows_excluded"] = counts.rows_excluded
        flipped = connection.execute(
            update(forecast_run)
            .where(forecast_run.c.run_id == run_id, forecast_run.c.status == "running")
            .values(**values)
        )
        if flipped.rowcount != 1:
            raise RuntimeError(f"run {run_id!r} changed while publishing; nothing was published")
        with commit_guard():
            transaction.commit()
    logger.info(
        "published run %s (as_of %s%s): %s; replaced %d earlier run(s) in %.1f s",
        run_id,
        run.as_of,
        "" if takes_over else ", a backfill: the current run stays current",
        ", ".join(f"{item.table.name}={item.n_rows}" for item in prepared) or "no rows",
        len(replaced),
        time.perf_counter() - started,
    )


def mark_failed(engine: Engine, run_id: str, error: str, status: str = "failed") -> bool:
    """Mark a run ``failed`` (or ``cancelled``) with its error (first 4000 characters) and
    ``finished_at``; True when the database took it.

    Meant for error handlers, so it never raises: a run that is gone (replaced by a later run
    of the same as_of) is skipped, a published run is left published, and a database error is
    logged (one line) and answered False instead of hiding the failure being recorded; the
    caller may keep the outcome for the next run (:func:`record_later`).
    """
    if status not in ("failed", "cancelled"):
        raise ValueError(f"a run ends failed or cancelled, not {status!r}")
    forecast_run = table("forecast_run")
    try:
        with engine.begin() as connection:
            result = connection.execute(
                update(forecast_run)
                .where(
                    forecast_run.c.run_id == run_id,
                    forecast_run.c.status.in_(("running", "abandoned")),
                )
                .values(status=status, finished_at=_now(), error=str(error)[:MAX_ERROR_CHARS])
            )
    except SQLAlchemyError as exc:
        logger.warning(
            "could not mark run %s as %s: %s", run_id, status, str(exc).splitlines()[0][:300]
        )
        return False
    if result.rowcount == 0:
        logger.warning("run %s not marked %s: it is gone or already ended", run_id, status)
    return True


def record_later(folder: Path, run_id: str, status: str, error: str) -> Path:
    """Keep a run's outcome in ``folder`` for the next run to record (the database refused)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.json"
    ended = {"run_id": run_id, "status": status, "error": error[:MAX_ERROR_CHARS]}
    path.write_text(json.dumps({**ended, "finished_at": _now().isoformat()}))
    return path


def record_pending(engine: Engine, folder: Path) -> list[str]:
    """Record the outcomes earlier runs kept in ``folder`` (:func:`record_later`); returns
    the run_ids recorded. A file is removed once the database holds its outcome."""
    recorded = []
    forecast_run = table("forecast_run")
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            ended = json.loads(path.read_text())
            finished = dt.datetime.fromisoformat(ended["finished_at"])
            run_id, status = str(ended["run_id"]), str(ended["status"])
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring %s: not a run outcome staffcast wrote", path)
            continue
        with engine.begin() as connection:
            connection.execute(
                update(forecast_run)
                .where(
                    forecast_run.c.run_id == run_id,
                    forecast_run.c.status.in_(("running", "abandoned")),
                )
                .values(
                    status=status,
                    finished_at=finished,
                    error=f"{ended.get('error', '')} (recorded by a later run)"[:MAX_ERROR_CHARS],
                )
            )
        path.unlink(missing_ok=True)
        recorded.append(run_id)
    return recorded


def run_status(engine: Engine, run_id: str) -> str | None:
    """The run's status, or None when it is not in forecast_run."""
    forecast_run = table("forecast_run")
    with engine.connect() as connection:
        return connection.execute(
            select(forecast_run.c.status).where(forecast_run.c.run_id == run_id)
        ).scalar_one_or_none()


def record_validation(
    engine: Engine, run_id: str, frame: pd.DataFrame, impact: pd.DataFrame | None = None
) -> None:
    """Store the validation summary of a run that will not publish, in its own transaction.

    ``frame`` has the columns of ``validation_result`` (see
    :func:`data_contracts.summary.summary_frame`); rows already stored for ``run_id`` are
    replaced. ``impact``, when given, has the columns of ``data_quality_impact`` (the demand the
    run's quarantined and excluded rows would have carried) and replaces that run's impact rows
    too, so a stop caused by one region losing too much demand is explained in the database;
    with ``impact=None`` stored impact rows are left alone. Published runs get both through
    :func:`publish_run` instead. The rows of a run that never publishes stay out of the
    ``current_*`` views and go when a later run of the same as_of publishes.

    Meant for error handlers, like :func:`mark_failed`: it never raises. A database error, or a
    frame that does not fit its table, is logged instead of hiding the failure being recorded;
    an impact frame that does not fit is logged and left out, the summary is still stored.
    """
    try:
        prepared = [_prepare("validation_result", frame, run_id).checked()]
    except ValueError:
        logger.exception("could not record the validation summary of run %s", run_id)
        return
    if impact is not None:
        try:
            prepared.append(_prepare("data_quality_impact", impact, run_id).checked())
        except ValueError:
            logger.exception("could not record the data-quality impact of run %s", run_id)
    try:
        with engine.begin() as connection:
            for item in prepared:
                connection.execute(delete(item.table).where(item.table.c.run_id == run_id))
                for rows in item.chunks(INSERT_CHUNK_ROWS):
                    _insert_rows(connection, item.table, rows)
    except (SQLAlchemyError, ValueError) as exc:
        logger.warning(
            "could not record the validation summary of run %s: %s",
            run_id,
            str(exc).splitlines()[0][:300],
        )
        return
    logger.info(
        "recorded %s for run %s",
        " and ".join(f"{item.n_rows} {item.table.name} row(s)" for item in prepared),
        run_id,
    )


def latest_published_run(engine: Engine) -> dict[str, Any] | None:
    """The current run (what ``current_forecast_run`` shows) as a dict, or None if none."""
    with engine.connect() as connection:
        row = connection.execute(select(current_view("forecast_run"))).mappings().first()
    return dict(row) if row is not None else None
