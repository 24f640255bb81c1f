"""The reporting database: every table and view of SPEC §6 in one typed module.

Dashboards, recruiters' spreadsheets and the HTML report read these tables; their names and
columns are a contract that may gain columns but never lose or rename them.

Units: demand in shifts (requests) per day unless a column says hours or week; pools and hires
in nurses; shares and probabilities as 0-1 floats; dates are local calendar dates (``date``);
timestamps are stored in UTC and read back as timezone-aware UTC ``datetime`` on every backend.

Each table holds the rows of every run; the ``current_<table>`` views show only the rows of
the current run, i.e. the published run with the greatest ``as_of`` (ties broken by the latest
``finished_at``, then by ``run_id``). A run that is still running, has failed, or was replaced
never shows through a view.

Beyond SPEC §6, ``validation_result`` (one row per run, source table and rule) holds each run's
data-contract summary; a run stopped by a batch rule keeps its rows there without publishing.

Beyond SPEC §6 too: ``demand_history`` (the demand behind each run's charts) and
``hiring_plan`` (month by month, next to ``recruiting_target``).

Primary keys are the "one row per" columns of SPEC §6. ``holiday_coverage`` also has ``date`` in
its key: with a horizon longer than a year the same holiday name occurs twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    Date,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    inspect,
    make_url,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "CHILD_TABLES",
    "TABLES",
    "VIEWS",
    "Base",
    "UtcDateTime",
    "advisory_lock_key",
    "ForecastRun",
    "QuarantinedRow",
    "ValidationRuleResult",
    "DemandForecast",
    "DemandHistory",
    "RegionalForecast",
    "ModelEvaluation",
    "OnCallPool",
    "RecruitingTarget",
    "HolidayCoverage",
    "HiringPlan",
    "create_schema",
    "current_view",
    "reporting_engine",
    "table",
    "view_sql",
]

RUN_STATUSES = ("running", "published", "failed")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A ``DateTime(timezone=True)`` that always stores UTC and always reads back aware UTC.

    SQLite has no time zones: SQLAlchemy stores the wall-clock text and drops the offset, so
    values are converted to UTC before they are written and get UTC attached when read.
    Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: reporting timestamps must be tz-aware")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# Reusable column types. The comment lands in PostgreSQL's catalog, where dashboard authors
# look for units.
RunIdKey = Annotated[
    str,
    mapped_column(
        String(40),
        ForeignKey("forecast_run.run_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
]
RunIdRef = Annotated[
    str,
    mapped_column(String(40), ForeignKey("forecast_run.run_id", ondelete="CASCADE"), index=True),
]
Key = Annotated[str, mapped_column(primary_key=True)]
DayKey = Annotated[dt.date, mapped_column(primary_key=True)]
Shifts = Annotated[float, mapped_column(comment="shifts (requests)")]
Nurses = Annotated[int, mapped_column(comment="nurses")]
Share = Annotated[float, mapped_column(comment="share or probability, 0-1")]
Days = Annotated[int, mapped_column(comment="days")]


class Base(DeclarativeBase):
    """Declarative base of the reporting tables; Python types map to portable SQL types."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {
        str: String(),
        int: Integer(),
        float: Float(),
        bool: Boolean(),
        dt.date: Date(),
        dt.datetime: UtcDateTime(),
        dict[str, Any]: JSON().with_variant(JSONB(), "postgresql"),
    }


class ForecastRun(Base):
    """One weekly (or backtest) run: its as_of date, parameters, status and row accounting."""

    __tablename__ = "forecast_run"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'published', 'failed')", name="status_known"),
        CheckConstraint(
            "status <> 'published' OR finished_at IS NOT NULL", name="published_finished"
        ),
    )

    run_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(index=True, comment="first forecast day (local date)")
    flow_run_id: Mapped[str | None]
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    parameters: Mapped[dict[str, Any]]
    code_version: Mapped[str]
    horizon_days: Mapped[Days]
    rows_extracted: Mapped[int | None] = mapped_column(comment="shift_requests rows read")
    rows_used: Mapped[int | None]
    rows_quarantined: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)


class QuarantinedRow(Base):
    """A source row that broke a row-level rule, with the rule and a short detail."""

    __tablename__ = "quarantined_row"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[RunIdRef]
    source_table: Mapped[str]
    source_key: Mapped[str | None]
    rule: Mapped[str]
    detail: Mapped[str | None] = mapped_column(Text)


class ValidationRuleResult(Base):
    """How one data-contract rule fared on one source table in a run (the validation summary).

    Every rule evaluated has a row, passed ones with ``failed_rows`` 0. A run stopped by a batch
    rule keeps its rows although it never publishes (they show in the table, not in the
    ``current_validation_result`` view); a stop found before the rules ran (a missing file or
    column) has one row with the stop message as ``description``.
    """

    __tablename__ = "validation_result"
    __table_args__ = (CheckConstraint("level IN ('row', 'batch')", name="level_known"),)

    run_id: Mapped[RunIdKey]
    source_table: Mapped[Key]
    rule: Mapped[Key]
    level: Mapped[str] = mapped_column(String(8), comment="row (quarantine) or batch (stop)")
    description: Mapped[str] = mapped_column(Text)
    failed_rows: Mapped[int] = mapped_column(comment="source rows that broke the rule")
    example: Mapped[str | None] = mapped_column(Text)


class DemandForecast(Base):
    """Daily demand forecast per facility and role, in shifts; quantiles p025..p975."""

    __tablename__ = "demand_forecast"

    run_id: Mapped[RunIdKey]
    facility_id: Mapped[Key]
    role: Mapped[Key]
    date: Mapped[DayKey]
    mean: Mapped[Shifts]
    p025: Mapped[Shifts]
    p10: Mapped[Shifts]
    p50: Mapped[Shifts]
    p80: Mapped[Shifts]
    p90: Mapped[Shifts]
    p95: Mapped[Shifts]
    p975: Mapped[Shifts]
    booked: Mapped[int] = mapped_column(comment="shifts already requested for the day at as_of")
    hours_mean: Mapped[float | None] = mapped_column(comment="hours")
    model: Mapped[str]


class DemandHistory(Base):
    """Observed daily demand per facility and role before as_of, in shifts (SPEC demand).

    Each run stores the 53 weeks (371 days) before its as_of, so the report can draw
    history and the same period last year beside the forecast without the source database.
    """

    __tablename__ = "demand_history"

    run_id: Mapped[RunIdKey]
    facility_id: Mapped[Key]
    role: Mapped[Key]
    date: Mapped[DayKey]
    demand: Mapped[int] = mapped_column(comment="shifts (requests) on the day")


class RegionalForecast(Base):
    """Daily demand per region and role in shifts, quantiles from summed sample paths."""

    __tablename__ = "regional_forecast"

    run_id: Mapped[RunIdKey]
    region: Mapped[Key]
    role: Mapped[Key]
    date: Mapped[DayKey]
    mean: Mapped[Shifts]
    p025: Mapped[Shifts]
    p10: Mapped[Shifts]
    p50: Mapped[Shifts]
    p80: Mapped[Shifts]
    p90: Mapped[Shifts]
    p95: Mapped[Shifts]
    p975: Mapped[Shifts]


class ModelEvaluation(Base):
    """Backtest score of one candidate model on one series; ``selected`` marks the choice."""

    __tablename__ = "model_evaluation"

    run_id: Mapped[RunIdKey]
    facility_id: Mapped[Key]
    role: Mapped[Key]
    model: Mapped[Key]
    mase: Mapped[float | None] = mapped_column(comment="MASE vs seasonal-naive scale")
    mae: Mapped[float | None] = mapped_column(comment="shifts per day")
    coverage80: Mapped[float | None] = mapped_column(comment="share of actuals in 80% interval")
    selected: Mapped[bool]
    n_backtest_days: Mapped[int | None] = mapped_column(comment="days")


class OnCallPool(Base):
    """Recommended on-call pool per scenario, region, role and Monday-start week, in nurses."""

    __tablename__ = "on_call_pool"

    run_id: Mapped[RunIdKey]
    scenario: Mapped[Key]
    region: Mapped[Key]
    role: Mapped[Key]
    week_start: Mapped[DayKey]
    peak_day_p95: Mapped[Shifts]
    peak_day_mean: Mapped[Shifts]
    weekly_demand_mean: Mapped[float] = mapped_column(comment="shifts per week")
    recommended_pool: Mapped[Nurses]
    service_level: Mapped[Share]
    acceptance_rate: Mapped[Share]
    max_shifts_per_week: Mapped[int] = mapped_column(comment="shifts per nurse per week")
    days_in_week: Mapped[int] = mapped_column(comment="days of the week inside the horizon")
    daily_pool: Mapped[Nurses] = mapped_column(comment="pool the busiest day needs")
    weekly_pool: Mapped[Nurses] = mapped_column(comment="pool the weekly shift cap needs")


class RecruitingTarget(Base):
    """Hires needed per scenario, region and role, and by when; a surplus is not a hire."""

    __tablename__ = "recruiting_target"
    __table_args__ = (
        CheckConstraint("hires_needed >= 0", name="hires_needed_nonnegative"),
        CheckConstraint("surplus >= 0", name="surplus_nonnegative"),
    )

    run_id: Mapped[RunIdKey]
    scenario: Mapped[Key]
    region: Mapped[Key]
    role: Mapped[Key]
    current_pool: Mapped[Nurses]
    target_pool: Mapped[Nurses]
    expected_attrition: Mapped[float] = mapped_column(comment="nurses lost over the lead time")
    hires_needed: Mapped[Nurses]
    surplus: Mapped[Nurses]
    recruit_by: Mapped[dt.date]
    needed_by: Mapped[dt.date]
    acceptance_rate: Mapped[Share]
    annual_attrition: Mapped[Share]
    lead_time_days: Mapped[Days]
    expected_pool: Mapped[float] = mapped_column(comment="nurses left after the lead time")
    late: Mapped[bool] = mapped_column(comment="recruit_by would have been before as_of")
    window_start: Mapped[dt.date] = mapped_column(comment="first week a hire today can serve")
    window_end: Mapped[dt.date] = mapped_column(comment="end of the recruiting window")
    note: Mapped[str | None] = mapped_column(Text)
    acceptance_offers: Mapped[int | None] = mapped_column(
        comment="shift offers behind acceptance_rate (0: the configured prior alone)"
    )
    attrition_nurse_years: Mapped[float | None] = mapped_column(
        comment="nurse-years of employment behind annual_attrition (0: the prior alone)"
    )
    attrition_separations: Mapped[int | None] = mapped_column(
        comment="nurses who left in the attrition lookback"
    )


class HolidayCoverage(Base):
    """On-call nurses recommended for each holiday in the horizon, per region and role."""

    __tablename__ = "holiday_coverage"

    run_id: Mapped[RunIdKey]
    scenario: Mapped[Key]
    holiday: Mapped[Key]
    date: Mapped[DayKey]
    region: Mapped[Key]
    role: Mapped[Key]
    expected_demand: Mapped[Shifts]
    p90: Mapped[Shifts]
    p95: Mapped[Shifts]
    typical_demand: Mapped[float | None] = mapped_column(comment="shifts on a typical same weekday")
    uplift: Mapped[float | None] = mapped_column(comment="expected / typical demand")
    recommended_on_call: Mapped[Nurses]
    acceptance_rate: Mapped[Share]
    service_level: Mapped[Share]
    acceptance_offers: Mapped[int | None] = mapped_column(
        comment="holiday offers behind acceptance_rate (0: everyday rate x holiday factor)"
    )


class HiringPlan(Base):
    """Month-by-month hiring plan per scenario, region and role for the next six months.

    ``hires`` are the nurses to start recruiting in ``month``; they are on call ``lead_time_days``
    later, in time for the weeks of ``arrival_start``..``arrival_end``. Attrition of the pool and
    of earlier hires is included, so later months show the replacements a steady pool needs.
    """

    __tablename__ = "hiring_plan"

    run_id: Mapped[RunIdKey]
    scenario: Mapped[Key]
    region: Mapped[Key]
    role: Mapped[Key]
    month: Mapped[DayKey] = mapped_column(comment="first day of the month to start recruiting")
    arrival_start: Mapped[dt.date] = mapped_column(comment="first day these hires are on call")
    arrival_end: Mapped[dt.date] = mapped_column(comment="day after the arrival window")
    pool_needed: Mapped[Nurses] = mapped_column(
        comment="largest weekly pool needed in the arrival window"
    )
    expected_pool: Mapped[float] = mapped_column(
        comment="nurses expected on call at arrival_end without this month's hires"
    )
    hires: Mapped[Nurses] = mapped_column(comment="nurses to start recruiting this month")
    cumulative_hires: Mapped[Nurses]
    beyond_horizon: Mapped[bool] = mapped_column(
        comment="arrival window lies past the forecast horizon: need carried from its last weeks"
    )


#: Tables that hang off forecast_run, in insertion order (delete in reverse or any order).
CHILD_TABLES: tuple[str, ...] = (
    "quarantined_row",
    "validation_result",
    "demand_forecast",
    "demand_history",
    "regional_forecast",
    "model_evaluation",
    "on_call_pool",
    "recruiting_target",
    "holiday_coverage",
    "hiring_plan",
)
#: Every reporting table, parent first.
TABLES: tuple[str, ...] = ("forecast_run", *CHILD_TABLES)
#: Every ``current_*`` view, in creation order.
VIEWS: tuple[str, ...] = tuple(f"current_{name}" for name in TABLES)

# Column-only Table objects for the views, so ``select(current_view(...))`` returns typed values
# (dates as ``date`` on SQLite too). They live in their own MetaData: create_all never sees them.
_view_metadata = MetaData()
for _name in TABLES:
    Table(
        f"current_{_name}",
        _view_metadata,
        *(
            Column(column.name, column.type, nullable=column.nullable, comment=column.comment)
            for column in Base.metadata.tables[_name].columns
        ),
    )


def table(name: str) -> Table:
    """The reporting table called ``name`` (``forecast_run`` or one of :data:`CHILD_TABLES`)."""
    try:
        return Base.metadata.tables[name]
    except KeyError:
        raise KeyError(f"unknown reporting table {name!r}; known: {', '.join(TABLES)}") from None


def current_view(name: str) -> Table:
    """The ``current_<name>`` view as a selectable Table; ``name`` may include the prefix."""
    view_name = name if name.startswith("current_") else f"current_{name}"
    try:
        return _view_metadata.tables[view_name]
    except KeyError:
        raise KeyError(f"unknown reporting view {view_name!r}; known: {', '.join(VIEWS)}") from None


def view_sql(name: str, dialect: Dialect) -> str:
    """The SELECT behind view ``current_<name>``, valid on SQLite and PostgreSQL.

    The latest run is found by one scalar subquery (evaluated once per query), and the child
    rows through the index on ``run_id``.
    """
    quote = dialect.identifier_preparer.quote
    base = table(name)
    columns = ", ".join(f"t.{quote(column.name)}" for column in base.columns)
    latest_run = (
        "SELECT r.run_id FROM forecast_run AS r WHERE r.status = 'published' "
        "ORDER BY r.as_of DESC, r.finished_at DESC, r.run_id DESC LIMIT 1"
    )
    return f"SELECT {columns} FROM {quote(name)} AS t WHERE t.run_id = ({latest_run})"


def advisory_lock_key(label: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock named ``label``."""
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "big", signed=True)


def _create_views(connection: Connection) -> None:
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    for name in TABLES:
        view_name = f"current_{name}"
        body = view_sql(name, dialect)
        if dialect.name == "sqlite":
            stored = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = :name"),
                {"name": view_name},
            ).scalar_one_or_none()
            if stored is not None and not stored.rstrip().endswith(body):
                # An older definition (e.g. before a column was added): replace it.
                connection.exec_driver_sql(f"DROP VIEW {quote(view_name)}")
            connection.exec_driver_sql(f"CREATE VIEW IF NOT EXISTS {quote(view_name)} AS {body}")
        elif dialect.name == "postgresql":
            connection.exec_driver_sql(f"CREATE OR REPLACE VIEW {quote(view_name)} AS {body}")
        else:
            if view_name not in set(inspect(connection).get_view_names()):
                connection.exec_driver_sql(f"CREATE VIEW {quote(view_name)} AS {body}")


def create_schema(engine: Engine) -> None:
    """Create every reporting table, index and ``current_*`` view that does not exist yet.

    Idempotent and cheap: safe to call at the start of every run. On PostgreSQL it runs in one
    transaction under an advisory lock, so two runs starting together do not race.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": advisory_lock_key("staffcast.reporting.schema")},
            )
        Base.metadata.create_all(connection, checkfirst=True)
        _create_views(connection)


def _enable_sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def reporting_engine(url: str) -> Engine:
    """An Engine for the reporting database at SQLAlchemy ``url``.

    For a SQLite file the parent folder is created, and every connection enforces foreign keys
    (``PRAGMA foreign_keys=ON``) so deleting a run cascades to its rows. PostgreSQL URLs should
    use the psycopg 3 driver (``postgresql+psycopg://...``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    return create_engine(parsed, pool_pre_ping=True)
