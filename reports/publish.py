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

import datetime as dt
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Connection, Engine, Table, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from reports.schema import CHILD_TABLES, advisory_lock_key, current_view, table

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
) -> str:
    """Record a new run as ``running`` and return its run_id (``YYYYMMDD-<12 hex>``).

    ``as_of`` is the run's first forecast day (local date); ``horizon_days`` its forecast
    length in days. ``parameters`` is stored as JSON (values JSON cannot hold are stored as
    text). Committed in its own transaction, so the row survives a crash of the run.
    """
    if isinstance(as_of, dt.datetime) or not isinstance(as_of, dt.date):
        raise TypeError(f"as_of must be a datetime.date, got {as_of!r}")
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    run_id = f"{as_of:%Y%m%d}-{uuid.uuid4().hex[:12]}"
    forecast_run = table("forecast_run")
    with engine.begin() as connection:
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
    table: Table
    names: list[str]
    columns: list[list[Any]]
    n_rows: int

    def chunks(self, size: int) -> Iterator[_Rows]:
        """The rows, ``size`` at a time (built lazily to bound memory)."""
        for start in range(0, self.n_rows, size):
            parts = [values[start : start + size] for values in self.columns]
            yield _Rows(tuple(self.names), list(zip(*parts, strict=True)))


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
    """Check ``frame`` against table ``name`` and turn it into per-column lists of Python values.

    A frame without rows and without columns (``pd.DataFrame()``) stands for no rows.
    """
    target = table(name)
    if frame.empty and len(frame.columns) == 0:
        return _PreparedTable(target, [], [], 0)
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

    names: list[str] = []
    columns: list[list[Any]] = []
    for column in target.columns:
        if column.name == "run_id":
            values: list[Any] = [run_id] * len(frame)
        elif column.name in frame_columns:
            try:
                values = _converter(column)(frame[column.name])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}.{column.name}: {exc}") from exc
            if not column.nullable and None in values:
                raise ValueError(
                    f"{name}.{column.name}: {values.count(None)} missing value(s) in a NOT NULL "
                    f"column (first at row {values.index(None)})"
                )
        else:
            continue
        names.append(column.name)
        columns.append(values)
    return _PreparedTable(target, names, columns, len(frame))


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


def _lock_publishing(connection: Connection) -> None:
    """Serialize publishers on PostgreSQL (SQLite serializes writers by itself)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": advisory_lock_key("staffcast.reporting.publish")},
        )


def publish_run(
    engine: Engine,
    run_id: str,
    tables: Mapping[str, pd.DataFrame],
    counts: RunCounts,
) -> None:
    """Write a running run's result frames and flip it to ``published``, in one transaction.

    ``tables`` maps child table names (:data:`reports.schema.CHILD_TABLES`) to frames whose
    columns are a subset of the table's columns that includes every NOT NULL one; ``run_id`` is
    added when missing. A table left out, or given as ``pd.DataFrame()``, gets no rows (older
    callers pass no ``data_quality_impact``). Frames are checked before anything is written: an
    unknown table or column, a missing required column, a missing value in a NOT NULL column or
    a fraction in an integer column raises ``ValueError`` naming the table and column.

    In the transaction: every other run with the same ``as_of`` is deleted (children first,
    so it works without foreign-key cascades too), the frames are inserted, and the run gets
    ``status='published'``, ``finished_at`` and ``counts`` (``rows_excluded`` is written only
    when it is not 0, the column's server default: so a caller without exclusions can still
    publish into a database of revision 0002 or older, as the migration tests do). Any error
    rolls everything back: the previously published run stays current and the failed run stays
    ``running`` until :func:`mark_failed`.
    """
    unknown = sorted(set(tables) - set(CHILD_TABLES))
    if unknown:
        raise ValueError(
            f"not reporting tables: {', '.join(unknown)} (known: {', '.join(CHILD_TABLES)})"
        )
    prepared = [_prepare(name, tables[name], run_id) for name in CHILD_TABLES if name in tables]

    started = time.perf_counter()
    forecast_run = table("forecast_run")
    with engine.begin() as connection:
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
            connection.execute(delete(forecast_run).where(forecast_run.c.run_id.in_(replaced)))

        for item in prepared:
            for rows in item.chunks(INSERT_CHUNK_ROWS):
                _insert_rows(connection, item.table, rows)

        values: dict[str, Any] = {
            "status": "published",
            "finished_at": _now(),
            "rows_extracted": counts.rows_extracted,
            "rows_used": counts.rows_used,
            "rows_quarantined": counts.rows_quarantined,
            "error": None,
        }
        if counts.rows_excluded:  # else the column keeps its server default, 0
            values["rows_excluded"] = counts.rows_excluded
        flipped = connection.execute(
            update(forecast_run)
            .where(forecast_run.c.run_id == run_id, forecast_run.c.status == "running")
            .values(**values)
        )
        if flipped.rowcount != 1:
            raise RuntimeError(f"run {run_id!r} changed while publishing; nothing was published")
    logger.info(
        "published run %s (as_of %s): %s; replaced %d earlier run(s) in %.1f s",
        run_id,
        run.as_of,
        ", ".join(f"{item.table.name}={item.n_rows}" for item in prepared) or "no rows",
        len(replaced),
        time.perf_counter() - started,
    )


def mark_failed(engine: Engine, run_id: str, error: str) -> None:
    """Mark a run ``failed`` with its error (first 4000 characters) and ``finished_at``.

    Meant for error handlers, so it never raises: a run that is gone (replaced by a later run
    of the same as_of) is skipped, a published run is left published, and a database error is
    logged instead of hiding the failure being recorded.
    """
    forecast_run = table("forecast_run")
    try:
        with engine.begin() as connection:
            result = connection.execute(
                update(forecast_run)
                .where(forecast_run.c.run_id == run_id, forecast_run.c.status != "published")
                .values(status="failed", finished_at=_now(), error=str(error)[:MAX_ERROR_CHARS])
            )
    except SQLAlchemyError:
        logger.exception("could not mark run %s as failed", run_id)
        return
    if result.rowcount == 0:
        logger.warning("run %s not marked failed: it is gone or already published", run_id)


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
        prepared = [_prepare("validation_result", frame, run_id)]
    except ValueError:
        logger.exception("could not record the validation summary of run %s", run_id)
        return
    if impact is not None:
        try:
            prepared.append(_prepare("data_quality_impact", impact, run_id))
        except ValueError:
            logger.exception("could not record the data-quality impact of run %s", run_id)
    try:
        with engine.begin() as connection:
            for item in prepared:
                connection.execute(delete(item.table).where(item.table.c.run_id == run_id))
                for rows in item.chunks(INSERT_CHUNK_ROWS):
                    _insert_rows(connection, item.table, rows)
    except (SQLAlchemyError, ValueError):
        logger.exception("could not record the validation summary of run %s", run_id)
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
