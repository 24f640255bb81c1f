"""data_quality_impact: the demand that quarantined and excluded requests would have carried.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-19

Adds the table ``data_quality_impact`` with its ``current_data_quality_impact`` view (one row
per run, source, region, role and facility: rows lost, recent shifts and hours lost, recent
shifts used, shifts put back, window length in days), and the column
``forecast_run.rows_excluded`` (shift_requests rows out of the agency's scope; NOT NULL,
server default 0, so runs published before it read 0 and extracted = used + quarantined +
excluded holds for them too).

``current_forecast_run`` is re-created with the new column appended: on PostgreSQL by CREATE OR
REPLACE VIEW, which keeps the grants readers hold on it; on SQLite by DROP VIEW + CREATE VIEW.
A downgrade must drop it (PostgreSQL cannot remove a view column, nor drop a column a view
reads); since the migration environment (env.py) finds the reader roles by their SELECT on
``current_forecast_run``, the downgrade grants SELECT on the re-created view to the roles that
held it, and env.py gives them back the rest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

#: Columns of the tables this revision creates or widens, in table order, after it.
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
        "rows_excluded",
    ),
    "data_quality_impact": (
        "run_id",
        "source",
        "region",
        "role",
        "facility_id",
        "rows",
        "recent_shifts_lost",
        "recent_hours_lost",
        "recent_shifts_used",
        "imputed_shifts",
        "window_days",
    ),
}

#: Columns this revision appends to existing tables (the last ones of COLUMNS[table]).
ADDED: dict[str, tuple[str, ...]] = {"forecast_run": ("rows_excluded",)}

#: The current run: the published run with the greatest as_of (then finished_at, run_id).
LATEST_RUN = (
    "SELECT r.run_id FROM forecast_run AS r WHERE r.status = 'published' "
    "ORDER BY r.as_of DESC, r.finished_at DESC, r.run_id DESC LIMIT 1"
)


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


def _readers(view: str) -> list[str]:
    """Roles other than the owner that may SELECT ``view`` by a direct grant (PostgreSQL only;
    none when writing SQL offline)."""
    context = op.get_context()
    if context.dialect.name != "postgresql" or context.as_sql:
        return []
    rows = op.get_bind().execute(
        sa.text(
            "SELECT DISTINCT r.rolname FROM pg_class AS c "
            "CROSS JOIN LATERAL aclexplode(c.relacl) AS a "
            "JOIN pg_roles AS r ON r.oid = a.grantee "
            "WHERE c.oid = to_regclass(:view) "
            "AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner "
            "ORDER BY r.rolname"
        ),
        {"view": view},
    )
    return list(rows.scalars())


def upgrade() -> None:
    op.add_column(
        "forecast_run",
        sa.Column(
            "rows_excluded",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="shift_requests rows set aside as out of the agency's scope (e.g. a role it "
            "does not staff)",
        ),
    )
    _create_view("forecast_run", COLUMNS["forecast_run"], replace=True)

    op.create_table(
        "data_quality_impact",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column(
            "source", sa.String(length=16), nullable=False, comment="quarantined or excluded"
        ),
        sa.Column(
            "region", sa.String(), nullable=False, comment="(unknown) when the facility is unknown"
        ),
        sa.Column(
            "role",
            sa.String(),
            nullable=False,
            comment="RN, LPN, or the source's own value (e.g. CNA)",
        ),
        sa.Column("facility_id", sa.String(), nullable=False, comment="(unknown) when unknown"),
        sa.Column(
            "rows",
            sa.Integer(),
            nullable=False,
            comment="shift_requests rows of this kind, all dates",
        ),
        sa.Column(
            "recent_shifts_lost",
            sa.Float(),
            nullable=False,
            comment="shifts (requests) these rows would have carried in the window (estimated)",
        ),
        sa.Column(
            "recent_hours_lost",
            sa.Float(),
            nullable=False,
            comment="hours these rows would have carried in the window (estimated)",
        ),
        sa.Column(
            "recent_shifts_used",
            sa.Integer(),
            nullable=False,
            comment="shifts (requests) counted from used rows of the facility and role in the "
            "window",
        ),
        sa.Column(
            "imputed_shifts",
            sa.Integer(),
            nullable=False,
            comment="lost shifts (requests) put back into the demand history, all dates",
        ),
        sa.Column(
            "window_days",
            sa.Integer(),
            nullable=False,
            comment="days before as_of counted as recent",
        ),
        sa.CheckConstraint(
            "source IN ('quarantined', 'excluded')",
            name=op.f("ck_data_quality_impact_source_known"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["forecast_run.run_id"],
            name=op.f("fk_data_quality_impact_run_id_forecast_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id",
            "source",
            "region",
            "role",
            "facility_id",
            name=op.f("pk_data_quality_impact"),
        ),
    )
    op.create_index(
        op.f("ix_data_quality_impact_run_id"), "data_quality_impact", ["run_id"], unique=False
    )
    _create_view("data_quality_impact", COLUMNS["data_quality_impact"])


def downgrade() -> None:
    op.execute(f"DROP VIEW {_quote('current_data_quality_impact')}")
    op.drop_table("data_quality_impact")  # its index goes with it
    for name, added in ADDED.items():
        readers = _readers(f"current_{name}")
        op.execute(f"DROP VIEW {_quote('current_' + name)}")  # it reads the columns to drop
        for column in reversed(added):
            op.drop_column(name, column)  # SQLite 3.35 or later
        _create_view(name, tuple(column for column in COLUMNS[name] if column not in added))
        if readers:
            op.execute(
                f"GRANT SELECT ON TABLE {_quote('current_' + name)} "
                f"TO {', '.join(_quote(role) for role in readers)}"
            )
