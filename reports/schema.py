"""The reporting database: every table and view of SPEC §6 in one typed module.

Dashboards, recruiters' spreadsheets and the HTML report read these tables; their names and
columns are a contract that may gain columns but never lose or rename them.

Units: demand in shifts (requests) per day unless a column says hours or week; pools and hires
in nurses; shares and probabilities as 0-1 floats; dates are local calendar dates (``date``);
timestamps are stored in UTC and read back as timezone-aware UTC ``datetime`` on every backend.

Each table holds the rows of every run; the ``current_<table>`` views show only the rows of
the current run, i.e. the published run that became current last (greatest
``forecast_run.current_since``). A run becomes current when it publishes, unless it is a
backfill (``staffcast run --backfill``) of an as_of older than the current run's: so a
correcting rerun of an earlier week takes over from a bad later one, and backfilling history
leaves the current plan alone. A run that is still running, has failed, was cancelled or
abandoned, or was replaced never shows through a view.

Reading several views: each view picks the current run when its statement runs, and a publish
may commit between two statements. So a reader that needs one run across views either reads
them in one statement (joins and UNIONs of views see one snapshot), or, on PostgreSQL, runs its
statements in one REPEATABLE READ transaction::

    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        with connection.begin():
            forecast = connection.execute(select(current_view("demand_forecast"))).all()
            pools = connection.execute(select(current_view("on_call_pool"))).all()

Under PostgreSQL's default READ COMMITTED, separate statements can mix two runs
(tests/test_db_roles.py shows the two safe patterns under a concurrent publish). On SQLite,
statements between an explicit ``BEGIN`` and ``COMMIT`` share one snapshot. On PostgreSQL a
reader role needs SELECT on the views only (``staffcast db grant-reader``, reports/db_admin.py).

The schema changes only by Alembic migrations (reports/migrations/versions): the ORM tables
below are the schema of revision :data:`SCHEMA_REVISION`, and :func:`create_schema`, called at
the start of every run, migrates a database up to it. A change to a table needs a new migration
and a new SCHEMA_REVISION; tests/test_migrations.py checks that the migrated schema equals the
tables here.

Beyond SPEC §6, ``validation_result`` (one row per run, source table and rule) holds each run's
data-contract summary; a run stopped by a batch rule keeps its rows there without publishing.

Beyond SPEC §6 too: ``demand_history`` (the demand behind each run's charts) and
``hiring_plan`` (month by month, next to ``recruiting_target``); ``data_quality_impact`` (the
demand that each run's quarantined and excluded shift_requests rows would have carried, kept
like ``validation_result`` for a run a batch rule stopped); ``forecast_run.rows_excluded``;
the track record (revision 0005): ``forecast_score`` (earlier runs' forecasts against the
demand that came), ``pool_outcome`` (did earlier runs' on-call pools hold) and
``track_record_flag`` (drift). Their ``current_`` views show what the current run scored; the
whole record is the rows of every published run (each pair is scored once).

Primary keys are the "one row per" columns of SPEC §6. ``holiday_coverage`` also has ``date`` in
its key: with a horizon longer than a year the same holiday name occurs twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from staffcast.errors import StaffcastError

if TYPE_CHECKING:  # alembic is imported when a migration runs, not by every reader
    from alembic.config import Config
    from alembic.script import ScriptDirectory

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
    "DataQualityImpact",
    "ForecastScore",
    "PoolOutcome",
    "TrackRecordFlag",
    "SCORED_RUN_COLUMNS",
    "SCHEMA_REVISION",
    "ReportingSchemaError",
    "SchemaChange",
    "alembic_config",
    "create_schema",
    "current_view",
    "downgrade_schema",
    "head_revision",
    "reporting_engine",
    "schema_revision",
    "table",
    "upgrade_schema",
    "view_sql",
]

RUN_STATUSES = ("running", "published", "failed", "cancelled", "abandoned")


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
    """One weekly (or backtest) run: its as_of date, parameters, status and row accounting.

    Row accounting of shift_requests (rows): extracted = used + quarantined + excluded.
    ``rows_excluded`` came with revision 0003 and is the last column for that reason: runs
    published before it read 0. Revision 0004 added ``heartbeat_at`` and ``current_since`` and
    the statuses ``cancelled`` (stopped by a signal or a Prefect cancellation) and
    ``abandoned`` (a running row whose heartbeat stopped, marked so by a later run).
    """

    __tablename__ = "forecast_run"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'published', 'failed', 'cancelled', 'abandoned')",
            name="status_known",
        ),
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
    rows_excluded: Mapped[int] = mapped_column(
        server_default=text("0"),
        comment="shift_requests rows set aside as out of the agency's scope (e.g. a role it "
        "does not staff)",
    )
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(
        comment="last sign of life of a running run (UTC)"
    )
    current_since: Mapped[dt.datetime | None] = mapped_column(
        comment="when the run became the current run (NULL: it never did)"
    )


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


class DataQualityImpact(Base):
    """Demand that a run's quarantined and excluded shift_requests rows would have carried.

    One row per source (``quarantined``: the row broke a row rule; ``excluded``: out of the
    agency's scope by its choice, e.g. a CNA request), region, role and facility; ``(unknown)``
    stands for a region or facility nobody knows. Shifts are requests. "Recent" is the
    ``window_days`` days before as_of (the same on every row of a run). A region and role's loss
    share is ``sum(recent_shifts_lost) / (sum(recent_shifts_used) + sum(recent_shifts_lost))``
    over its quarantined rows; facilities of an affected region and role that lost nothing may
    have a row with ``rows`` 0 so that the used shifts are complete. Excluded rows are shown,
    never warned about, and never put back.
    """

    __tablename__ = "data_quality_impact"
    __table_args__ = (
        CheckConstraint("source IN ('quarantined', 'excluded')", name="source_known"),
    )

    run_id: Mapped[RunIdKey]
    source: Mapped[Key] = mapped_column(String(16), comment="quarantined or excluded")
    region: Mapped[Key] = mapped_column(comment="(unknown) when the facility is unknown")
    role: Mapped[Key] = mapped_column(comment="RN, LPN, or the source's own value (e.g. CNA)")
    facility_id: Mapped[Key] = mapped_column(comment="(unknown) when unknown")
    rows: Mapped[int] = mapped_column(comment="shift_requests rows of this kind, all dates")
    recent_shifts_lost: Mapped[float] = mapped_column(
        comment="shifts (requests) these rows would have carried in the window (estimated)"
    )
    recent_hours_lost: Mapped[float] = mapped_column(
        comment="hours these rows would have carried in the window (estimated)"
    )
    recent_shifts_used: Mapped[int] = mapped_column(
        comment="shifts (requests) counted from used rows of the facility and role in the window"
    )
    imputed_shifts: Mapped[int] = mapped_column(
        comment="lost shifts (requests) put back into the demand history, all dates"
    )
    window_days: Mapped[int] = mapped_column(comment="days before as_of counted as recent")


class ForecastScore(Base):
    """How an earlier published run's daily forecasts did once their days had passed.

    Stored by the run that scored them (``run_id``): each run scores, for every earlier
    published run (``scored_run_id``, of ``scored_as_of``), the realised days before its own
    as_of that no other published run has scored yet, so each (earlier run, day) pair is scored
    once and a rerun of an as_of replaces its own scores. ``level`` is ``facility`` (one row per
    facility and role; ``region`` is the facility's) or ``region`` (``facility_id`` is ``*``).
    A row holds sums over the days of one Monday-start week (``week_start``) within one lead
    band (``lead_band``: lead day = days after the scored run's as_of + 1; bands 1-7, 8-28,
    29-91, 92-182), from ``first_day`` to ``last_day``; ratios are taken over any span by adding
    rows: bias = forecast_total / actual_total - 1, WAPE = abs_error / actual_total, MASE =
    abs_error / naive_abs_error (seasonal naive: the same weekday of the last week before the
    scored run's as_of), pinball = pinball_total / days, coverage = in_p10_p90 / days.
    """

    __tablename__ = "forecast_score"
    __table_args__ = (CheckConstraint("level IN ('facility', 'region')", name="level_known"),)

    run_id: Mapped[RunIdKey]
    level: Mapped[Key] = mapped_column(String(16), comment="facility or region")
    region: Mapped[Key]
    facility_id: Mapped[Key] = mapped_column(comment="* on region rows")
    role: Mapped[Key]
    scored_run_id: Mapped[Key] = mapped_column(
        String(40), index=True, comment="the earlier run whose forecasts are scored"
    )
    scored_as_of: Mapped[dt.date] = mapped_column(comment="as_of of the scored run")
    lead_band: Mapped[Key] = mapped_column(String(16), comment="lead days, e.g. 1-7")
    week_start: Mapped[DayKey] = mapped_column(comment="Monday of the scored days")
    first_day: Mapped[dt.date] = mapped_column(comment="first scored day of the row")
    last_day: Mapped[dt.date] = mapped_column(comment="last scored day of the row")
    days: Mapped[Days]
    actual_total: Mapped[float] = mapped_column(comment="shifts (requests) realised")
    forecast_total: Mapped[float] = mapped_column(comment="shifts forecast (sum of means)")
    abs_error: Mapped[float] = mapped_column(comment="sum of |mean - actual|, shifts")
    naive_abs_error: Mapped[float] = mapped_column(
        comment="sum of |seasonal naive - actual|, shifts"
    )
    pinball_total: Mapped[float] = mapped_column(
        comment="sum over days of the mean pinball loss of p025..p975, shifts"
    )
    in_p10_p90: Mapped[int] = mapped_column(comment="days with p10 <= actual <= p90")
    under_p95: Mapped[int] = mapped_column(comment="days with actual <= p95")


class PoolOutcome(Base):
    """Did a published on-call pool hold? One row per past week, scenario, region and role.

    The pool is the one published for the week by the latest published run whose as_of is on
    or before the week's Monday (``pool_run_id``); the week is judged once, by the first run
    after its last day. ``covered`` is the sum over the week's days of P(Binomial(pool, a) >=
    the day's realised demand), ``a`` the acceptance rate the week's offers showed (accepted /
    offers, offers for shifts of the week, by the facility's local day); every day of a week
    whose total exceeded pool x max_shifts_per_week counts 0. The achieved service level over
    any span is sum(covered) / sum(days), beside the promised ``service_level``.
    """

    __tablename__ = "pool_outcome"

    run_id: Mapped[RunIdKey]
    scenario: Mapped[Key]
    region: Mapped[Key]
    role: Mapped[Key]
    week_start: Mapped[DayKey]
    pool_run_id: Mapped[str] = mapped_column(
        String(40), index=True, comment="the run that published the pool"
    )
    pool_as_of: Mapped[dt.date]
    recommended_pool: Mapped[Nurses]
    service_level: Mapped[Share] = mapped_column(comment="promised; share 0-1")
    max_shifts_per_week: Mapped[int] = mapped_column(comment="shifts per nurse per week")
    offers: Mapped[int] = mapped_column(comment="offers for shifts of the week")
    accepted: Mapped[int] = mapped_column(comment="of them accepted")
    acceptance_rate: Mapped[Share]
    days: Mapped[Days]
    actual_total: Mapped[int] = mapped_column(comment="shifts (requests) realised in the week")
    peak_day: Mapped[int] = mapped_column(comment="shifts on the week's busiest day")
    covered: Mapped[float] = mapped_column(comment="expected days covered (sum of P)")
    over_cap: Mapped[bool] = mapped_column(comment="the week's total exceeded the shift cap")


class TrackRecordFlag(Base):
    """A measure of the track record that left its band at a run (drift; never fatal).

    ``measure``: ``coverage_p10_p90`` (share of realised days inside [p10, p90], region level,
    the last 8 scored weeks), ``bias`` (forecast / actual - 1, region level, the same weeks),
    or ``service_level`` (achieved service level of the base pools over the last 13 judged
    weeks, against ``low`` = the promise minus 3 points).
    """

    __tablename__ = "track_record_flag"

    run_id: Mapped[RunIdKey]
    measure: Mapped[Key] = mapped_column(String(32))
    region: Mapped[Key]
    role: Mapped[Key]
    weeks: Mapped[int] = mapped_column(comment="weeks the measure covers")
    value: Mapped[float]
    low: Mapped[float | None] = mapped_column(comment="lower end of the band")
    high: Mapped[float | None] = mapped_column(comment="upper end of the band")
    message: Mapped[str] = mapped_column(Text)


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
    "data_quality_impact",
    "forecast_score",
    "pool_outcome",
    "track_record_flag",
)
#: Child tables that also name an earlier run (column): that run's replacement deletes them.
SCORED_RUN_COLUMNS: dict[str, str] = {
    "forecast_score": "scored_run_id",
    "pool_outcome": "pool_run_id",
}
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
        "AND r.current_since IS NOT NULL ORDER BY r.current_since DESC, r.run_id DESC LIMIT 1"
    )
    return f"SELECT {columns} FROM {quote(name)} AS t WHERE t.run_id = ({latest_run})"


def advisory_lock_key(label: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock named ``label``."""
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "big", signed=True)


class ReportingSchemaError(StaffcastError):
    """The reporting database has a shape no migration path starts from; nothing was changed."""


#: Alembic scripts of the reporting schema (shipped inside the package).
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The migration whose schema the ORM tables of this module are (a test checks it is the head).
SCHEMA_REVISION = "0005"
#: Revision of a database created before migrations by the old ``create_schema``.
FIRST_REVISION = "0001"
_SCHEMA_LOCK = "staffcast.reporting.schema"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config for the reporting migrations, without an ini file.

    Pass the open ``connection`` to migrate inside its transaction (what
    :func:`upgrade_schema` does), or a ``url`` for Alembic commands that open their own.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration's revision id (read from the scripts; see :data:`SCHEMA_REVISION`)."""
    head = _scripts().get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def schema_revision(connection: Connection) -> str | None:
    """The database's revision (``alembic_version``), or None where migrations never ran."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def _check_known(revision: str) -> None:
    """Refuse a database that a newer staffcast migrated past this version's migrations."""
    from alembic.util import CommandError

    try:
        _scripts().get_revision(revision)
    except CommandError:
        raise ReportingSchemaError(
            f"The reporting database is at schema revision {revision!r}, which this staffcast "
            f"does not know (its newest is {SCHEMA_REVISION!r}): a newer staffcast has migrated "
            "it. Run the newer staffcast, or point --reporting (STAFFCAST_REPORTING_URL) at "
            "another database; nothing was changed."
        ) from None


def _lock_schema(connection: Connection) -> None:
    """Hold the schema lock until the transaction ends: an advisory lock on PostgreSQL, the
    write lock (BEGIN IMMEDIATE) on SQLite, so two runs starting together migrate once."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_lock_key(_SCHEMA_LOCK)}
        )
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _schema_shape(connection: Connection, names: set[str]) -> dict[str, set[str]]:
    """Columns of the tables among ``names`` that exist (views are not tables here)."""
    inspector = inspect(connection)
    present = names & set(inspector.get_table_names())
    return {name: {column["name"] for column in inspector.get_columns(name)} for name in present}


def _differences(found: dict[str, set[str]], expected: dict[str, set[str]]) -> list[str]:
    lines = [f"table {name} is missing" for name in sorted(set(expected) - set(found))]
    lines += [f"table {name} is not expected" for name in sorted(set(found) - set(expected))]
    for name in sorted(set(found) & set(expected)):
        missing = sorted(expected[name] - found[name])
        extra = sorted(found[name] - expected[name])
        if missing:
            lines.append(f"{name} lacks column(s) {', '.join(missing)}")
        if extra:
            lines.append(f"{name} has unexpected column(s) {', '.join(extra)}")
    return lines


def _revision_shapes() -> list[tuple[str, dict[str, set[str]]]]:
    """``(revision, {table: columns})`` after each migration, oldest first.

    Built from each migration's frozen ``COLUMNS`` (every table it creates or widens, as it is
    after that migration); tables are never dropped, so later entries only add or widen.
    """
    shapes: list[tuple[str, dict[str, set[str]]]] = []
    shape: dict[str, set[str]] = {}
    for script in reversed(list(_scripts().walk_revisions())):
        columns: dict[str, tuple[str, ...]] = script.module.COLUMNS
        shape = {**shape, **{name: set(names) for name, names in columns.items()}}
        shapes.append((script.revision, shape))
    return shapes


def migration_columns(revision: str) -> dict[str, tuple[str, ...]]:
    """Every table at ``revision`` with its columns in order, from the migrations' COLUMNS."""
    columns: dict[str, tuple[str, ...]] = {}
    for script in reversed(list(_scripts().walk_revisions())):
        columns.update(script.module.COLUMNS)
        if script.revision == revision:
            return columns
    raise KeyError(f"no migration {revision!r}")


def _adopt_unversioned(connection: Connection, config: Config) -> None:
    """Stamp a database built before migrations (no ``alembic_version``) at the revision its
    tables match: 0001 (the first release), 0002 (made by create_all of commit 3ca8c7f), or
    head (made by create_all of this version). The migrations after it run next.

    A development build between 0001 and 0002 (0001 tables plus empty ``demand_history`` and
    ``hiring_plan``, without the new columns) gets the two empty tables dropped and is
    stamped 0001. Anything else raises :class:`ReportingSchemaError`; nothing is changed.
    """
    from alembic import command

    shapes = _revision_shapes()
    first = shapes[0][1]
    head = {name: {column.name for column in table(name).columns} for name in TABLES}
    known_tables = set(head).union(*(shape for _, shape in shapes))
    found = _schema_shape(connection, known_tables)
    if not found:
        return  # an empty database: the migrations create everything
    if found == head:
        command.stamp(config, "head")
        return
    for revision, shape in reversed(shapes):
        if found == shape:
            command.stamp(config, revision)
            return
    new_tables = set(head) - set(first)
    early_build = {name: columns for name, columns in found.items() if name not in new_tables}
    if early_build == first and set(found) - set(first) <= new_tables:
        leftovers = sorted(set(found) - set(first))
        counts = {
            name: connection.execute(select(func.count()).select_from(table(name))).scalar_one()
            for name in leftovers
        }
        if not any(counts.values()):
            quote = connection.dialect.identifier_preparer.quote
            for name in leftovers:
                connection.exec_driver_sql(f"DROP VIEW IF EXISTS {quote('current_' + name)}")
                connection.exec_driver_sql(f"DROP TABLE {quote(name)}")
            command.stamp(config, FIRST_REVISION)
            return
        raise ReportingSchemaError(
            "The reporting database has no alembic_version table and a mix of two schemas: "
            f"the tables of revision {FIRST_REVISION}, and {' and '.join(leftovers)} of "
            "a later revision holding rows "
            f"({', '.join(f'{name}: {count}' for name, count in counts.items())}); "
            f"{'; '.join(_differences(found, head))}. A development build wrote them. Empty "
            f"{' and '.join(leftovers)} (DELETE FROM each; the next run writes them again) and "
            "run again; nothing was changed."
        )
    closest = min(
        [*shapes, (SCHEMA_REVISION, head)],
        key=lambda item: len(_differences(found, item[1])),
    )
    raise ReportingSchemaError(
        "The reporting database has staffcast tables but no alembic_version table, and they "
        f"match no known schema: compared with revision {closest[0]}, "
        f"{'; '.join(_differences(found, closest[1]))}. Nothing was changed. Point "
        "--reporting (STAFFCAST_REPORTING_URL) at a new database, or fix the tables by hand "
        f"and stamp them (alembic stamp, see reports/migrations/env.py)."
    )


@dataclass(frozen=True)
class SchemaChange:
    """A migration's outcome: ``before`` is None where the database had no revision."""

    before: str | None
    after: str | None


def upgrade_schema(engine: Engine, revision: str = "head") -> SchemaChange:
    """Migrate the reporting database up to ``revision`` (default: this version's schema).

    In one transaction under the schema lock: a database made before migrations is recognised
    and stamped (see :func:`_adopt_unversioned`), the migrations run, and on PostgreSQL every
    reader role gets SELECT on the reader views (env.py). A failure rolls everything back.
    """
    from alembic import command

    with _migrating(engine) as connection:
        _lock_schema(connection)
        before = schema_revision(connection)
        config = alembic_config(connection)
        if before is None:
            _adopt_unversioned(connection, config)
        else:
            _check_known(before)
        command.upgrade(config, revision)
        return SchemaChange(before, schema_revision(connection))


def downgrade_schema(engine: Engine, revision: str) -> SchemaChange:
    """Migrate the reporting database down to ``revision`` (``base``: drop everything).

    Columns and tables that the older revision lacks are dropped with their data.
    """
    from alembic import command

    with _migrating(engine) as connection:
        _lock_schema(connection)
        before = schema_revision(connection)
        if before is not None:
            _check_known(before)
        command.downgrade(alembic_config(connection), revision)
        return SchemaChange(before, schema_revision(connection))


@contextlib.contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for a migration.

    On SQLite, foreign keys are off during it (a migration that rebuilds a table drops the
    parent of every run's rows, which would cascade), checked before the commit
    (``PRAGMA foreign_key_check``), and on again afterwards. The pragma only takes effect
    outside a transaction, hence this order.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # ends SQLAlchemy's autobegun (empty) transaction
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise ReportingSchemaError(
                            f"The migration would leave a {broken[0]} row without its run "
                            f"({broken[2]}); nothing was changed."
                        )
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def create_schema(engine: Engine) -> None:
    """Bring the reporting database to this version's schema: tables, indexes, views.

    Idempotent and cheap: safe to call at the start of every run. When the database is already
    at the head revision it costs one read of ``alembic_version``; otherwise
    :func:`upgrade_schema` migrates it, under a lock (an advisory lock on PostgreSQL, the write
    lock on SQLite) so two runs starting together do not race.
    """
    with engine.connect() as connection:
        current = schema_revision(connection)
    if current != SCHEMA_REVISION:
        upgrade_schema(engine)


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
