"""Run lifecycle: cancelled and abandoned runs, a heartbeat, and which run is current.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``forecast_run`` gains:

- the statuses ``cancelled`` (a signal or a Prefect cancellation stopped the run; nothing of
  it was published) and ``abandoned`` (a ``running`` row whose heartbeat stopped: the process
  died without a word, and the next run said so);
- ``heartbeat_at``: refreshed by a running run every ``STAFFCAST_HEARTBEAT_SECONDS``;
- ``current_since``: when the run became the current run (NULL: it never did, e.g. a backfill
  of a week older than the current run's).

Every ``current_*`` view now shows the published run that became current last (greatest
``current_since``), instead of the published run with the greatest ``as_of``: a correcting
rerun of an earlier week takes over from a bad later one, while a backfill of older weeks
(``staffcast run --backfill``) leaves the current run alone. On upgrade the run that was
current keeps being current (its ``current_since`` is its ``finished_at``).

On SQLite a CHECK constraint cannot be altered, so ``forecast_run`` is rebuilt (new table, copy,
drop, rename) with foreign keys off (:func:`reports.schema.upgrade_schema` turns them off around
the migration, since a DROP of the parent would otherwise cascade to every run's rows). Views
are dropped first and re-created last on SQLite; on PostgreSQL they are replaced in place
(CREATE OR REPLACE VIEW keeps the readers' grants) and the constraint is swapped.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_BEFORE = (
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
)
#: Columns of the tables this revision creates or widens, in table order, after it.
COLUMNS: dict[str, tuple[str, ...]] = {"forecast_run": (*_BEFORE, "heartbeat_at", "current_since")}
#: Columns this revision appends to existing tables (the last ones of COLUMNS[table]).
ADDED: dict[str, tuple[str, ...]] = {"forecast_run": ("heartbeat_at", "current_since")}

STATUSES_BEFORE = ("running", "published", "failed")
STATUSES = (*STATUSES_BEFORE, "cancelled", "abandoned")

#: The current run from this revision on: the published run that became current last.
LATEST_RUN = (
    "SELECT r.run_id FROM forecast_run AS r WHERE r.status = 'published' "
    "AND r.current_since IS NOT NULL ORDER BY r.current_since DESC, r.run_id DESC LIMIT 1"
)
#: The current run before it (revision 0003): the published run with the greatest as_of.
LATEST_RUN_BEFORE = (
    "SELECT r.run_id FROM forecast_run AS r WHERE r.status = 'published' "
    "ORDER BY r.as_of DESC, r.finished_at DESC, r.run_id DESC LIMIT 1"
)


def _quote(name: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote(name)


def _sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _views() -> dict[str, tuple[str, ...]]:
    """Every reporting table (each has a ``current_`` view) with its columns at revision 0003,
    in order, from the migrations' own COLUMNS (so offline SQL works too)."""
    from reports.schema import migration_columns

    return migration_columns("0003")


def _view_body(name: str, columns: tuple[str, ...], latest: str) -> str:
    listed = ", ".join(f"t.{_quote(column)}" for column in columns)
    return f"SELECT {listed} FROM {_quote(name)} AS t WHERE t.run_id = ({latest})"


def _status_check(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{status}'" for status in statuses) + ")"


def _added(column: str) -> sa.Column[Any]:
    """A new column of forecast_run (a fresh object each call)."""
    return {
        "heartbeat_at": sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="last sign of life of a running run (UTC)",
        ),
        "current_since": sa.Column(
            "current_since",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when the run became the current run (NULL: it never did)",
        ),
    }[column]


def _columns(columns: tuple[str, ...]) -> list[sa.Column[Any]]:
    """forecast_run's columns among ``columns``, as revision 0003 and this one define them."""
    return [
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False, comment="first forecast day (local date)"),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("code_version", sa.String(), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False, comment="days"),
        sa.Column("rows_extracted", sa.Integer(), nullable=True),
        sa.Column("rows_used", sa.Integer(), nullable=True),
        sa.Column("rows_quarantined", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rows_excluded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        *(_added(column) for column in columns if column in ADDED["forecast_run"]),
    ]


def _rebuild_sqlite(statuses: tuple[str, ...], columns: tuple[str, ...]) -> None:
    """Rebuild forecast_run on SQLite with ``statuses`` allowed and ``columns`` kept."""
    if (
        not op.get_context().as_sql
        and op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar()
    ):
        raise RuntimeError("revision 0004 must run with foreign keys off on SQLite")
    op.create_table(
        "_forecast_run_new",
        *_columns(columns),
        sa.CheckConstraint(_status_check(statuses), name=op.f("ck_forecast_run_status_known")),
        sa.CheckConstraint(
            "status <> 'published' OR finished_at IS NOT NULL",
            name=op.f("ck_forecast_run_published_finished"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_forecast_run")),
    )
    listed = ", ".join(_quote(column) for column in columns)
    op.execute(f"INSERT INTO _forecast_run_new ({listed}) SELECT {listed} FROM forecast_run")
    op.execute("DROP TABLE forecast_run")
    op.execute("ALTER TABLE _forecast_run_new RENAME TO forecast_run")
    op.create_index(op.f("ix_forecast_run_as_of"), "forecast_run", ["as_of"], unique=False)


def upgrade() -> None:
    views = _views()
    if _sqlite():
        for name in views:
            op.execute(f"DROP VIEW {_quote('current_' + name)}")
        _rebuild_sqlite(STATUSES, _BEFORE)
    else:
        op.drop_constraint(op.f("ck_forecast_run_status_known"), "forecast_run", type_="check")
        op.create_check_constraint(
            op.f("ck_forecast_run_status_known"), "forecast_run", _status_check(STATUSES)
        )
    for column in ADDED["forecast_run"]:
        op.add_column("forecast_run", _added(column))
    # The run that was current stays current.
    op.execute(
        f"UPDATE forecast_run SET current_since = finished_at WHERE run_id = ({LATEST_RUN_BEFORE})"
    )
    views["forecast_run"] = COLUMNS["forecast_run"]
    create = "CREATE VIEW" if _sqlite() else "CREATE OR REPLACE VIEW"  # keeps readers' grants
    for name, columns in views.items():
        body = _view_body(name, columns, LATEST_RUN)
        op.execute(f"{create} {_quote('current_' + name)} AS {body}")


def downgrade() -> None:
    views = _views()
    views["forecast_run"] = _BEFORE
    readers = _readers("current_forecast_run")
    # Runs 0003 cannot hold are recorded as failed, with why.
    op.execute(
        "UPDATE forecast_run SET status = 'failed', error = COALESCE(error, status) "
        "WHERE status IN ('cancelled', 'abandoned')"
    )
    if _sqlite():
        for name in views:
            op.execute(f"DROP VIEW {_quote('current_' + name)}")
        _rebuild_sqlite(STATUSES_BEFORE, _BEFORE)
    else:
        for name, columns in views.items():  # off the new columns first (same view columns)
            if name != "forecast_run":
                body = _view_body(name, columns, LATEST_RUN_BEFORE)
                op.execute(f"CREATE OR REPLACE VIEW {_quote('current_' + name)} AS {body}")
        op.execute(f"DROP VIEW {_quote('current_forecast_run')}")  # it reads the columns
        for column in reversed(ADDED["forecast_run"]):
            op.drop_column("forecast_run", column)
        op.drop_constraint(op.f("ck_forecast_run_status_known"), "forecast_run", type_="check")
        op.create_check_constraint(
            op.f("ck_forecast_run_status_known"), "forecast_run", _status_check(STATUSES_BEFORE)
        )
    for name, columns in views.items():
        if _sqlite() or name == "forecast_run":
            body = _view_body(name, columns, LATEST_RUN_BEFORE)
            op.execute(f"CREATE VIEW {_quote('current_' + name)} AS {body}")
    if readers:
        op.execute(
            f"GRANT SELECT ON TABLE {_quote('current_forecast_run')} "
            f"TO {', '.join(_quote(role) for role in readers)}"
        )


def _readers(view: str) -> list[str]:
    """Roles other than the owner that may SELECT ``view`` by a direct grant (PostgreSQL)."""
    if _sqlite():
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
