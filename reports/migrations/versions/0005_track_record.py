"""The track record: earlier runs' forecasts and pools against what came, and drift flags.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Adds three tables, each with its ``current_`` view (the rows the current run stored):

- ``forecast_score``: per scoring run, earlier published run (``scored_run_id``), level
  (facility or region), series, lead band and Monday-start week, the sums that forecast
  accuracy is computed from (days, actual and forecast totals, absolute errors against the
  forecast and a seasonal-naive one, pinball loss, interval hits);
- ``pool_outcome``: per judging run, past week, scenario, region and role, the pool published
  for the week and how it held (acceptance the week's offers showed, expected days covered);
- ``track_record_flag``: measures that left their band (drift), one row per measure, region
  and role.

Nothing existing changes: the downgrade drops the views and the tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

#: Columns of the tables this revision creates, in table order, after it.
COLUMNS: dict[str, tuple[str, ...]] = {
    "forecast_score": (
        "run_id",
        "level",
        "region",
        "facility_id",
        "role",
        "scored_run_id",
        "scored_as_of",
        "lead_band",
        "week_start",
        "first_day",
        "last_day",
        "days",
        "actual_total",
        "forecast_total",
        "abs_error",
        "naive_abs_error",
        "pinball_total",
        "in_p10_p90",
        "under_p95",
    ),
    "pool_outcome": (
        "run_id",
        "scenario",
        "region",
        "role",
        "week_start",
        "pool_run_id",
        "pool_as_of",
        "recommended_pool",
        "service_level",
        "max_shifts_per_week",
        "offers",
        "accepted",
        "acceptance_rate",
        "days",
        "actual_total",
        "peak_day",
        "covered",
        "over_cap",
    ),
    "track_record_flag": (
        "run_id",
        "measure",
        "region",
        "role",
        "weeks",
        "value",
        "low",
        "high",
        "message",
    ),
}

#: The current run (as revision 0004 defines it): the published run that became current last.
LATEST_RUN = (
    "SELECT r.run_id FROM forecast_run AS r WHERE r.status = 'published' "
    "AND r.current_since IS NOT NULL ORDER BY r.current_since DESC, r.run_id DESC LIMIT 1"
)


def _quote(name: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote(name)


def _create_view(name: str, columns: tuple[str, ...]) -> None:
    listed = ", ".join(f"t.{_quote(column)}" for column in columns)
    op.execute(
        f"CREATE VIEW {_quote('current_' + name)} AS SELECT {listed} FROM {_quote(name)} AS t "
        f"WHERE t.run_id = ({LATEST_RUN})"
    )


def upgrade() -> None:
    op.create_table(
        "forecast_score",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False, comment="facility or region"),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("facility_id", sa.String(), nullable=False, comment="* on region rows"),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column(
            "scored_run_id",
            sa.String(length=40),
            nullable=False,
            comment="the earlier run whose forecasts are scored",
        ),
        sa.Column("scored_as_of", sa.Date(), nullable=False, comment="as_of of the scored run"),
        sa.Column("lead_band", sa.String(length=16), nullable=False, comment="lead days, e.g. 1-7"),
        sa.Column("week_start", sa.Date(), nullable=False, comment="Monday of the scored days"),
        sa.Column("first_day", sa.Date(), nullable=False, comment="first scored day of the row"),
        sa.Column("last_day", sa.Date(), nullable=False, comment="last scored day of the row"),
        sa.Column("days", sa.Integer(), nullable=False, comment="days"),
        sa.Column("actual_total", sa.Float(), nullable=False, comment="shifts (requests) realised"),
        sa.Column(
            "forecast_total", sa.Float(), nullable=False, comment="shifts forecast (sum of means)"
        ),
        sa.Column(
            "abs_error", sa.Float(), nullable=False, comment="sum of |mean - actual|, shifts"
        ),
        sa.Column(
            "naive_abs_error",
            sa.Float(),
            nullable=False,
            comment="sum of |seasonal naive - actual|, shifts",
        ),
        sa.Column(
            "pinball_total",
            sa.Float(),
            nullable=False,
            comment="sum over days of the mean pinball loss of p025..p975, shifts",
        ),
        sa.Column(
            "in_p10_p90", sa.Integer(), nullable=False, comment="days with p10 <= actual <= p90"
        ),
        sa.Column("under_p95", sa.Integer(), nullable=False, comment="days with actual <= p95"),
        sa.CheckConstraint(
            "level IN ('facility', 'region')", name=op.f("ck_forecast_score_level_known")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["forecast_run.run_id"],
            name=op.f("fk_forecast_score_run_id_forecast_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id",
            "level",
            "region",
            "facility_id",
            "role",
            "scored_run_id",
            "lead_band",
            "week_start",
            name=op.f("pk_forecast_score"),
        ),
    )
    op.create_index(op.f("ix_forecast_score_run_id"), "forecast_score", ["run_id"], unique=False)
    op.create_index(
        op.f("ix_forecast_score_scored_run_id"), "forecast_score", ["scored_run_id"], unique=False
    )
    op.create_table(
        "pool_outcome",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("scenario", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column(
            "pool_run_id",
            sa.String(length=40),
            nullable=False,
            comment="the run that published the pool",
        ),
        sa.Column("pool_as_of", sa.Date(), nullable=False),
        sa.Column("recommended_pool", sa.Integer(), nullable=False, comment="nurses"),
        sa.Column("service_level", sa.Float(), nullable=False, comment="promised; share 0-1"),
        sa.Column(
            "max_shifts_per_week", sa.Integer(), nullable=False, comment="shifts per nurse per week"
        ),
        sa.Column("offers", sa.Integer(), nullable=False, comment="offers for shifts of the week"),
        sa.Column("accepted", sa.Integer(), nullable=False, comment="of them accepted"),
        sa.Column(
            "acceptance_rate", sa.Float(), nullable=False, comment="share or probability, 0-1"
        ),
        sa.Column("days", sa.Integer(), nullable=False, comment="days"),
        sa.Column(
            "actual_total",
            sa.Integer(),
            nullable=False,
            comment="shifts (requests) realised in the week",
        ),
        sa.Column(
            "peak_day", sa.Integer(), nullable=False, comment="shifts on the week's busiest day"
        ),
        sa.Column(
            "covered", sa.Float(), nullable=False, comment="expected days covered (sum of P)"
        ),
        sa.Column(
            "over_cap",
            sa.Boolean(),
            nullable=False,
            comment="the week's total exceeded the shift cap",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["forecast_run.run_id"],
            name=op.f("fk_pool_outcome_run_id_forecast_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "scenario", "region", "role", "week_start", name=op.f("pk_pool_outcome")
        ),
    )
    op.create_index(
        op.f("ix_pool_outcome_pool_run_id"), "pool_outcome", ["pool_run_id"], unique=False
    )
    op.create_index(op.f("ix_pool_outcome_run_id"), "pool_outcome", ["run_id"], unique=False)
    op.create_table(
        "track_record_flag",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("weeks", sa.Integer(), nullable=False, comment="weeks the measure covers"),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=True, comment="lower end of the band"),
        sa.Column("high", sa.Float(), nullable=True, comment="upper end of the band"),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["forecast_run.run_id"],
            name=op.f("fk_track_record_flag_run_id_forecast_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "measure", "region", "role", name=op.f("pk_track_record_flag")
        ),
    )
    op.create_index(
        op.f("ix_track_record_flag_run_id"), "track_record_flag", ["run_id"], unique=False
    )
    _create_view("forecast_score", COLUMNS["forecast_score"])
    _create_view("pool_outcome", COLUMNS["pool_outcome"])
    _create_view("track_record_flag", COLUMNS["track_record_flag"])


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.execute(f"DROP VIEW {_quote('current_' + name)}")
        op.drop_table(name)  # its indexes go with it
