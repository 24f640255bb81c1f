"""Alembic environment of the reporting database (run by Alembic, not imported by staffcast).

The normal way in is :func:`reports.schema.create_schema` (every run calls it) or
``staffcast db upgrade``: both pass their open connection in ``config.attributes["connection"]``
so the migrations run inside their transaction and advisory lock. Without a connection the
URL comes from the ``sqlalchemy.url`` option, else from the staffcast settings
(``STAFFCAST_REPORTING_URL``, default ``reporting.db`` in ``STAFFCAST_HOME``).

After the migrations, on PostgreSQL, every role that reads ``current_forecast_run`` gets SELECT
on the reader views too, so a migration that adds a view keeps ``staffcast db grant-reader``
roles working (:func:`reports.db_admin.extend_reader_grants`).

A new revision (e.g. after adding a column to reports/schema.py)::

    .venv/bin/python -c "from alembic import command; from reports.schema import alembic_config;
    command.revision(alembic_config(url='sqlite:///tmp/r.db'), 'what changed',
    autogenerate=True, rev_id='0003')"

then edit it: write the ``current_*`` view bodies out from a frozen column list (see 0002),
never from the live ORM, and check it on SQLite and PostgreSQL (tests/test_migrations.py).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from reports.db_admin import extend_reader_grants
from reports.schema import Base, reporting_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "postgresql":
            extend_reader_grants(connection)


def run_migrations_online() -> None:
    """Migrate through the caller's connection, or open one for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from staffcast.settings import Settings

        url = Settings().resolved_reporting_url
    engine = reporting_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    """Write the migration SQL instead of running it (``--sql``), for a DBA to review."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
