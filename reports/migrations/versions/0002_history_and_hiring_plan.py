"""demand_history and hiring_plan; observation counts behind acceptance and attrition.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-12

Adds the tables ``demand_history`` and ``hiring_plan`` with their ``current_*`` views, and the
nullable columns ``recruiting_target.acceptance_offers``, ``.attrition_nurse_years``,
``.attrition_separations`` and ``holiday_coverage.acceptance_offers``. Rows of earlier runs
keep NULL there.

The two views over the widened tables are re-created with the new columns appended: on
PostgreSQL by CREATE OR REPLACE VIEW, which keeps the grants readers hold on them; on SQLite
by DROP VIEW + CREATE VIEW. A downgrade must drop them (PostgreSQL cannot remove view columns);
the reader grants are given back by the migration environment (env.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

#: Columns of the tables this revision creates or widens, in table order, after it.
COLUMNS: dict[str, tuple[str, ...]] = {
    "demand_history": ("run_id", "facility_id", "role", "date", "demand"),
    "hiring_plan": (
        "run_id",
        "scenario",
        "region",
        "role",
        "month",
        "arrival_start",
        "arrival_end",
        "pool_needed",
        "expected_pool",
        "hires",
        "cumulative_hires",
        "beyond_horizon",
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
        "acceptance_offers",
        "attrition_nurse_years",
        "attrition_separations",
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
        "acceptance_offers",
    ),
}

#: Columns this revision appends to existing tables (the last ones of COLUMNS[table]).
ADDED: dict[str, tuple[str, ...]] = {
    "recruiting_target": ("acceptance_offers", "attrition_nurse_years", "attrition_separations"),
    "holiday_coverage": ("acceptance_offers",),
}


def _added_columns(table: str) -> list[sa.Column[int] | sa.Column[float]]:
    """New Column objects for ``ADDED[table]`` (a Column belongs to one Table only)."""
    columns: dict[str, list[sa.Column[int] | sa.Column[float]]] = {
        "recruiting_target": [
            sa.Column(
                "acceptance_offers",
                sa.Integer(),
                nullable=True,
                comment="shift offers behind acceptance_rate (0: the configured prior alone)",
            ),
            sa.Column(
                "attrition_nurse_years",
                sa.Float(),
                nullable=True,
                comment="nurse-years of employment behind annual_attrition (0: the prior alone)",
            ),
            sa.Column(
                "attrition_separations",
                sa.Integer(),
                nullable=True,
                comment="nurses who left in the attrition lookback",
            ),
        ],
        "holiday_coverage": [
            sa.Column(
                "acceptance_offers",
                sa.Integer(),
                nullable=True,
                comment="holiday offers behind acceptance_rate (0: everyday rate x holiday factor)",
            ),
        ],
    }
    return columns[table]


#: The current run: the published run with the greatest as_of (then finished_at, run_id).
LATEST_RUN = (
    "SELECT r.run_id FROM forecast_run AS r WHERE r.status = 'published' "
    "ORDER BY r.as_of DESC, r.finished_at DESC, r.run_id DESC LIMIT 1"
)

NURSES = "nurses"


def _quote(name: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote(name)


def _view_body(name: str, columns: tuple[str, ...]) -> str:
    listed = ", ".join(f"t.{_quote(column)}" for column in columns)
    return f"SELECT {listed} FROM {_quote(name)} AS t WHERE t.run_id = ({LATEST_RUN})"


def _create_view(name: str, columns: tuple[str, ...], replace: bool = False) -> None:
    """CREATE (OR REPLACE, on PostgreSQL) VIEW current_<name> over ``columns``."""
    view = _quote(f"current_{name}")
    if replace and op.get_context().dialect.name == "postgresql":
        op.execute(f"CREATE OR REPLACE VIEW {view} AS {_view_body(name, columns)}")
        return
    if replace:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.execute(f"CREATE VIEW {view} AS {_view_body(name, columns)}")


def _run_key(table: str) -> tuple[sa.Column[str], sa.ForeignKeyConstraint]:
    return (
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["forecast_run.run_id"],
            name=op.f(f"fk_{table}_run_id_forecast_run"),
            ondelete="CASCADE",
        ),
    )


def upgrade() -> None:
    op.create_table(
        "demand_history",
        *_run_key("demand_history"),
        sa.Column("facility_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("demand", sa.Integer(), nullable=False, comment="shifts (requests) on the day"),
        sa.PrimaryKeyConstraint(
            "run_id", "facility_id", "role", "date", name=op.f("pk_demand_history")
        ),
    )
    op.create_index(op.f("ix_demand_history_run_id"), "demand_history", ["run_id"], unique=False)

    op.create_table(
        "hiring_plan",
        *_run_key("hiring_plan"),
        sa.Column("scenario", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column(
            "month", sa.Date(), nullable=False, comment="first day of the month to start recruiting"
        ),
        sa.Column(
            "arrival_start", sa.Date(), nullable=False, comment="first day these hires are on call"
        ),
        sa.Column("arrival_end", sa.Date(), nullable=False, comment="day after the arrival window"),
        sa.Column(
            "pool_needed",
            sa.Integer(),
            nullable=False,
            comment="largest weekly pool needed in the arrival window",
        ),
        sa.Column(
            "expected_pool",
            sa.Float(),
            nullable=False,
            comment="nurses expected on call at arrival_end without this month's hires",
        ),
        sa.Column(
            "hires", sa.Integer(), nullable=False, comment="nurses to start recruiting this month"
        ),
        sa.Column("cumulative_hires", sa.Integer(), nullable=False, comment=NURSES),
        sa.Column(
            "beyond_horizon",
            sa.Boolean(),
            nullable=False,
            comment="arrival window lies past the forecast horizon: need carried from its last "
            "weeks",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "scenario", "region", "role", "month", name=op.f("pk_hiring_plan")
        ),
    )
    op.create_index(op.f("ix_hiring_plan_run_id"), "hiring_plan", ["run_id"], unique=False)

    for name in ADDED:
        for column in _added_columns(name):
            op.add_column(name, column)
        _create_view(name, COLUMNS[name], replace=True)
    _create_view("demand_history", COLUMNS["demand_history"])
    _create_view("hiring_plan", COLUMNS["hiring_plan"])


def downgrade() -> None:
    op.execute(f"DROP VIEW {_quote('current_hiring_plan')}")
    op.execute(f"DROP VIEW {_quote('current_demand_history')}")
    for name, added in ADDED.items():
        op.execute(f"DROP VIEW {_quote('current_' + name)}")  # it reads the columns to drop
        for column in reversed(added):
            op.drop_column(name, column)  # SQLite 3.35 or later
        _create_view(name, tuple(column for column in COLUMNS[name] if column not in added))
    op.drop_table("hiring_plan")
    op.drop_table("demand_history")
