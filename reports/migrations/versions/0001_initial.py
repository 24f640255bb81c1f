"""The reporting schema as first released: nine tables and their current_* views.

Revision ID: 0001
Revises:
Create Date: 2026-01-05

The schema of reports/schema.py at commit 75d72f1, written out: this file must never change
with the ORM. ``COLUMNS`` is the frozen column order of each table; the ``current_*`` views are
built from it, and reports.schema uses it to recognise a database made before migrations
(by the old ``create_schema``) as revision 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

#: Columns of each table at this revision, in table order (parent first).
COLUMNS: dict[str, tuple[str, ...]] = {
    "forecast_run": (
        "run_id",
        "as_of",
        "flow_run_id",
        "status",
        "started_at",
        "finished_at",
        "parameters",
        "code_version",
        "horizon_days",
        "rows_extracted",
        "rows_used",
        "rows_quarantined",
        "error",
    ),
    "quarantined_row": ("id", "run_id", "source_table", "source_key", "rule", "detail"),
    "validation_result": (
        "run_id",
        "source_table",
        "rule",
        "level",
        "description",
        "failed_rows",
        "example",
    ),
    "demand_forecast": (
        "run_id",
        "facility_id",
        "role",
        "date",
        "mean",
        "p025",
        "p10",
        "p50",
        "p80",
        "p90",
        "p95",
        "p975",
        "booked",
        "hours_mean",
        "model",
    ),
    "regional_forecast": (
        "run_id",
        "region",
        "role",
        "date",
        "mean",
        "p025",
        "p10",
        "p50",
        "p80",
        "p90",
        "p95",
        "p975",
    ),
    "model_evaluation": (
        "run_id",
        "facility_id",
        "role",
        "model",
        "mase",
        "mae",
        "coverage80",
        "selected",
        "n_backtest_days",
    ),
    "on_call_pool": (
        "run_id",
        "scenario",
        "region",
        "role",
        "week_start",
        "peak_day_p95",
        "peak_day_mean",
        "weekly_demand_mean",
        "recommended_pool",
        "service_level",
        "acceptance_rate",
        "max_shifts_per_week",
        "days_in_week",
        "daily_pool",
        "weekly_pool",
    ),
    "recruiting_target": (
        "run_id",
        "scenario",
        "region",
        "role",
        "current_pool",
        "target_pool",
        "expected_attrition",
        "hires_needed",
        "surplus",
        "recruit_by",
        "needed_by",
        "acceptance_rate",
        "annual_attrition",
        "lead_time_days",
        "expected_pool",
        "late",
        "window_start",
        "window_end",
        "note",
    ),
    "holiday_coverage": (
        "run_id",
        "scenario",
        "holiday",
        "date",
        "region",
        "role",
        "expected_demand",
        "p90",
        "p95",
        "typical_demand",
        "uplift",
        "recommended_on_call",
        "acceptance_rate",
        "service_level",
    ),
}

#: The current run: the published run with the greatest as_of (then finished_at, run_id).
LATEST_RUN = (
    "SELECT r.run_id FROM forecast_run AS r WHERE r.status = 'published' "
    "ORDER BY r.as_of DESC, r.finished_at DESC, r.run_id DESC LIMIT 1"
)

SHIFTS = "shifts (requests)"
NURSES = "nurses"
SHARE = "share or probability, 0-1"


def _run_id() -> sa.Column[str]:
    return sa.Column("run_id", sa.String(length=40), nullable=False)


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"],
        ["forecast_run.run_id"],
        name=op.f(f"fk_{table}_run_id_forecast_run"),
        ondelete="CASCADE",
    )


def _index_run_id(table: str) -> None:
    op.create_index(op.f(f"ix_{table}_run_id"), table, ["run_id"], unique=False)


def _quantiles() -> list[sa.Column[float]]:
    return [
        sa.Column(name, sa.Float(), nullable=False, comment=SHIFTS)
        for name in ("mean", "p025", "p10", "p50", "p80", "p90", "p95", "p975")
    ]


def create_view(name: str) -> None:
    """``CREATE VIEW current_<name>``: the rows of the current run, columns of this revision."""
    quote = op.get_context().dialect.identifier_preparer.quote
    columns = ", ".join(f"t.{quote(column)}" for column in COLUMNS[name])
    op.execute(
        f"CREATE VIEW {quote('current_' + name)} AS SELECT {columns} "
        f"FROM {quote(name)} AS t WHERE t.run_id = ({LATEST_RUN})"
    )


def upgrade() -> None:
    op.create_table(
        "forecast_run",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False, comment="first forecast day (local date)"),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("code_version", sa.String(), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False, comment="days"),
        sa.Column(
            "rows_extracted", sa.Integer(), nullable=True, comment="shift_requests rows read"
        ),
        sa.Column("rows_used", sa.Integer(), nullable=True),
        sa.Column("rows_quarantined", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status <> 'published' OR finished_at IS NOT NULL",
            name=op.f("ck_forecast_run_published_finished"),
        ),
        sa.CheckConstraint(
            "status IN ('running', 'published', 'failed')",
            name=op.f("ck_forecast_run_status_known"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_forecast_run")),
    )
    op.create_index(op.f("ix_forecast_run_as_of"), "forecast_run", ["as_of"], unique=False)

    op.create_table(
        "quarantined_row",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        _run_id(),
        sa.Column("source_table", sa.String(), nullable=False),
        sa.Column("source_key", sa.String(), nullable=True),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        _run_fk("quarantined_row"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_row")),
    )
    _index_run_id("quarantined_row")

    op.create_table(
        "validation_result",
        _run_id(),
        sa.Column("source_table", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column(
            "level", sa.String(length=8), nullable=False, comment="row (quarantine) or batch (stop)"
        ),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "failed_rows", sa.Integer(), nullable=False, comment="source rows that broke the rule"
        ),
        sa.Column("example", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "level IN ('row', 'batch')", name=op.f("ck_validation_result_level_known")
        ),
        _run_fk("validation_result"),
        sa.PrimaryKeyConstraint(
            "run_id", "source_table", "rule", name=op.f("pk_validation_result")
        ),
    )
    _index_run_id("validation_result")

    op.create_table(
        "demand_forecast",
        _run_id(),
        sa.Column("facility_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        *_quantiles(),
        sa.Column(
            "booked",
            sa.Integer(),
            nullable=False,
            comment="shifts already requested for the day at as_of",
        ),
        sa.Column("hours_mean", sa.Float(), nullable=True, comment="hours"),
        sa.Column("model", sa.String(), nullable=False),
        _run_fk("demand_forecast"),
        sa.PrimaryKeyConstraint(
            "run_id", "facility_id", "role", "date", name=op.f("pk_demand_forecast")
        ),
    )
    _index_run_id("demand_forecast")

    op.create_table(
        "regional_forecast",
        _run_id(),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        *_quantiles(),
        _run_fk("regional_forecast"),
        sa.PrimaryKeyConstraint(
            "run_id", "region", "role", "date", name=op.f("pk_regional_forecast")
        ),
    )
    _index_run_id("regional_forecast")

    op.create_table(
        "model_evaluation",
        _run_id(),
        sa.Column("facility_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("mase", sa.Float(), nullable=True, comment="MASE vs seasonal-naive scale"),
        sa.Column("mae", sa.Float(), nullable=True, comment="shifts per day"),
        sa.Column(
            "coverage80", sa.Float(), nullable=True, comment="share of actuals in 80% interval"
        ),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("n_backtest_days", sa.Integer(), nullable=True, comment="days"),
        _run_fk("model_evaluation"),
        sa.PrimaryKeyConstraint(
            "run_id", "facility_id", "role", "model", name=op.f("pk_model_evaluation")
        ),
    )
    _index_run_id("model_evaluation")

    op.create_table(
        "on_call_pool",
        _run_id(),
        sa.Column("scenario", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("peak_day_p95", sa.Float(), nullable=False, comment=SHIFTS),
        sa.Column("peak_day_mean", sa.Float(), nullable=False, comment=SHIFTS),
        sa.Column("weekly_demand_mean", sa.Float(), nullable=False, comment="shifts per week"),
        sa.Column("recommended_pool", sa.Integer(), nullable=False, comment=NURSES),
        sa.Column("service_level", sa.Float(), nullable=False, comment=SHARE),
        sa.Column("acceptance_rate", sa.Float(), nullable=False, comment=SHARE),
        sa.Column(
            "max_shifts_per_week", sa.Integer(), nullable=False, comment="shifts per nurse per week"
        ),
        sa.Column(
            "days_in_week",
            sa.Integer(),
            nullable=False,
            comment="days of the week inside the horizon",
        ),
        sa.Column("daily_pool", sa.Integer(), nullable=False, comment="pool the busiest day needs"),
        sa.Column(
            "weekly_pool", sa.Integer(), nullable=False, comment="pool the weekly shift cap needs"
        ),
        _run_fk("on_call_pool"),
        sa.PrimaryKeyConstraint(
            "run_id", "scenario", "region", "role", "week_start", name=op.f("pk_on_call_pool")
        ),
    )
    _index_run_id("on_call_pool")

    op.create_table(
        "recruiting_target",
        _run_id(),
        sa.Column("scenario", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("current_pool", sa.Integer(), nullable=False, comment=NURSES),
        sa.Column("target_pool", sa.Integer(), nullable=False, comment=NURSES),
        sa.Column(
            "expected_attrition",
            sa.Float(),
            nullable=False,
            comment="nurses lost over the lead time",
        ),
        sa.Column("hires_needed", sa.Integer(), nullable=False, comment=NURSES),
        sa.Column("surplus", sa.Integer(), nullable=False, comment=NURSES),
        sa.Column("recruit_by", sa.Date(), nullable=False),
        sa.Column("needed_by", sa.Date(), nullable=False),
        sa.Column("acceptance_rate", sa.Float(), nullable=False, comment=SHARE),
        sa.Column("annual_attrition", sa.Float(), nullable=False, comment=SHARE),
        sa.Column("lead_time_days", sa.Integer(), nullable=False, comment="days"),
        sa.Column(
            "expected_pool", sa.Float(), nullable=False, comment="nurses left after the lead time"
        ),
        sa.Column(
            "late",
            sa.Boolean(),
            nullable=False,
            comment="recruit_by would have been before as_of",
        ),
        sa.Column(
            "window_start", sa.Date(), nullable=False, comment="first week a hire today can serve"
        ),
        sa.Column("window_end", sa.Date(), nullable=False, comment="end of the recruiting window"),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "hires_needed >= 0", name=op.f("ck_recruiting_target_hires_needed_nonnegative")
        ),
        sa.CheckConstraint("surplus >= 0", name=op.f("ck_recruiting_target_surplus_nonnegative")),
        _run_fk("recruiting_target"),
        sa.PrimaryKeyConstraint(
            "run_id", "scenario", "region", "role", name=op.f("pk_recruiting_target")
        ),
    )
    _index_run_id("recruiting_target")

    op.create_table(
        "holiday_coverage",
        _run_id(),
        sa.Column("scenario", sa.String(), nullable=False),
        sa.Column("holiday", sa.String(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("expected_demand", sa.Float(), nullable=False, comment=SHIFTS),
        sa.Column("p90", sa.Float(), nullable=False, comment=SHIFTS),
        sa.Column("p95", sa.Float(), nullable=False, comment=SHIFTS),
        sa.Column(
            "typical_demand",
            sa.Float(),
            nullable=True,
            comment="shifts on a typical same weekday",
        ),
        sa.Column("uplift", sa.Float(), nullable=True, comment="expected / typical demand"),
        sa.Column("recommended_on_call", sa.Integer(), nullable=False, comment=NURSES),
        sa.Column("acceptance_rate", sa.Float(), nullable=False, comment=SHARE),
        sa.Column("service_level", sa.Float(), nullable=False, comment=SHARE),
        _run_fk("holiday_coverage"),
        sa.PrimaryKeyConstraint(
            "run_id",
            "scenario",
            "holiday",
            "date",
            "region",
            "role",
            name=op.f("pk_holiday_coverage"),
        ),
    )
    _index_run_id("holiday_coverage")

    for name in COLUMNS:
        create_view(name)


def downgrade() -> None:
    quote = op.get_context().dialect.identifier_preparer.quote
    for name in reversed(COLUMNS):
        op.execute(f"DROP VIEW {quote('current_' + name)}")
    for name in reversed(COLUMNS):
        op.drop_table(name)  # its indexes go with it
