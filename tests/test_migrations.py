"""Alembic migrations of the reporting schema: empty -> head equals the ORM, upgrades keep runs.

Runs on SQLite always and on PostgreSQL when STAFFCAST_TEST_POSTGRES_URL points at a server
(each test gets a fresh, empty database there, dropped afterwards).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text

import reports.schema as schema_module
from reports.publish import RunCounts, latest_published_run, publish_run, start_run
from reports.schema import (
    SCHEMA_REVISION,
    TABLES,
    VIEWS,
    Base,
    ReportingSchemaError,
    alembic_config,
    create_schema,
    current_view,
    downgrade_schema,
    head_revision,
    reporting_engine,
    schema_revision,
    table,
    upgrade_schema,
    view_sql,
)
from staffcast.cli import main
from tests.conftest import fresh_database
from tests.test_publish import AS_OF, COUNTS, result_frames

#: Tables and columns revision 0002 added (absent at 0001).
NEW_TABLES = ("demand_history", "hiring_plan")
NEW_COLUMNS = {
    "recruiting_target": ("acceptance_offers", "attrition_nurse_years", "attrition_separations"),
    "holiday_coverage": ("acceptance_offers",),
}
#: Tables and columns revision 0003 added (absent at 0002).
TABLES_0003 = ("data_quality_impact",)
COLUMNS_0003 = {"forecast_run": ("rows_excluded",)}
#: Columns revision 0004 added (absent at 0003).
COLUMNS_0004 = {"forecast_run": ("heartbeat_at", "current_since")}
#: Tables revision 0005 added (absent at 0004).
TABLES_0005 = ("forecast_score", "pool_outcome", "track_record_flag")
#: Tables added after revision 0001.
AFTER_0001 = (*NEW_TABLES, *TABLES_0003, *TABLES_0005)
#: Tables added after revision 0002.
AFTER_0002 = (*TABLES_0003, *TABLES_0005)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty reporting database (no tables), on SQLite and on PostgreSQL."""
    with fresh_database(request.param, tmp_path) as engine:
        yield engine


def shape_0002_frames(as_of: dt.date = AS_OF) -> dict[str, pd.DataFrame]:
    """A run's frames as revision 0002 knew them: no data_quality_impact."""
    frames = result_frames(as_of)
    for name in AFTER_0002:
        del frames[name]
    return frames


def old_shape_frames(as_of: dt.date = AS_OF) -> dict[str, pd.DataFrame]:
    """A run's frames as revision 0001 knew them: no demand_history, hiring_plan, new columns."""
    frames = shape_0002_frames(as_of)
    for name in NEW_TABLES:
        del frames[name]
    for name, columns in NEW_COLUMNS.items():
        frames[name] = frames[name].drop(columns=list(columns), errors="ignore")
    return frames


def publish_old_run(engine: Engine) -> str:
    """Publish a run into a database at revision 0001 (only tables and columns it has)."""
    run_id = start_run(engine, AS_OF, {"schema": "0001"}, None, "test", 182)
    publish_run(engine, run_id, old_shape_frames(), COUNTS)
    return run_id


def publish_0002_run(engine: Engine) -> str:
    """Publish a run into a database at revision 0002 (no impact, no rows_excluded)."""
    run_id = start_run(engine, AS_OF, {"schema": "0002"}, None, "test", 182)
    publish_run(engine, run_id, shape_0002_frames(), COUNTS)
    return run_id


def differences_from_orm(engine: Engine) -> list[object]:
    """What autogenerate would change to make the database the ORM metadata: [] when equal."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def row_counts(engine: Engine, names: tuple[str, ...]) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.execute(
                text(f"SELECT count(*) FROM {connection.dialect.identifier_preparer.quote(name)}")
            ).scalar_one()
            for name in names
        }


def columns_of(engine: Engine, name: str) -> list[str]:
    return [column["name"] for column in inspect(engine).get_columns(name)]


def view_run_ids(engine: Engine, name: str) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(current_view(name).c.run_id)).scalars())


def test_schema_revision_is_the_newest_migration() -> None:
    assert head_revision() == SCHEMA_REVISION


def test_upgrade_from_empty_gives_exactly_the_orm_schema(empty: Engine) -> None:
    create_schema(empty)

    assert differences_from_orm(empty) == []
    inspector = inspect(empty)
    assert set(inspector.get_table_names()) == {*TABLES, "alembic_version"}
    assert set(inspector.get_view_names()) == set(VIEWS)
    for name in TABLES:  # every view has its table's columns, in order
        assert columns_of(empty, f"current_{name}") == columns_of(empty, name), name
    if empty.dialect.name == "sqlite":  # the view bodies are the ORM's view_sql
        with empty.connect() as connection:
            rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type='view'"))
            stored = {name: sql for name, sql in rows}
        for name in TABLES:
            assert stored[f"current_{name}"].endswith(view_sql(name, empty.dialect)), name
    with empty.connect() as connection:
        assert schema_revision(connection) == SCHEMA_REVISION


def test_upgrade_from_0001_keeps_published_runs(empty: Engine) -> None:
    upgrade_schema(empty, "0001")
    assert not set(NEW_TABLES) & set(inspect(empty).get_table_names())
    assert "acceptance_offers" not in columns_of(empty, "recruiting_target")
    old_run = publish_old_run(empty)
    before = row_counts(empty, tuple(name for name in TABLES if name not in AFTER_0001))

    create_schema(empty)

    assert differences_from_orm(empty) == []
    assert row_counts(empty, TABLES) == {
        **before,
        **dict.fromkeys(AFTER_0001, 0),
    }
    for name in TABLES:
        expected = set() if name in AFTER_0001 else {old_run}
        assert view_run_ids(empty, name) == expected, name
    with empty.connect() as connection:
        for name, columns in NEW_COLUMNS.items():
            rows = connection.execute(select(current_view(name))).mappings().all()
            assert rows and all(row[column] is None for row in rows for column in columns)

    # The upgraded database takes a run of today's shape, which becomes current.
    later = AS_OF + dt.timedelta(days=7)
    new_run = start_run(empty, later, {}, None, "test", 182)
    frames = result_frames(later)
    frames["recruiting_target"]["acceptance_offers"] = [120, 0]
    publish_run(empty, new_run, frames, COUNTS)
    for name in TABLES:
        assert view_run_ids(empty, name) == {new_run}, name
    with empty.connect() as connection:
        offers = connection.execute(select(current_view("recruiting_target").c.acceptance_offers))
        assert sorted(offers.scalars()) == [0, 120]


def test_upgrade_from_0002_keeps_published_runs(empty: Engine) -> None:
    upgrade_schema(empty, "0002")
    assert "data_quality_impact" not in inspect(empty).get_table_names()
    assert "rows_excluded" not in columns_of(empty, "forecast_run")
    old_run = publish_0002_run(empty)
    before = row_counts(empty, tuple(name for name in TABLES if name not in AFTER_0002))

    change = upgrade_schema(empty)

    assert (change.before, change.after) == ("0002", SCHEMA_REVISION)
    assert differences_from_orm(empty) == []
    assert row_counts(empty, TABLES) == {**before, **dict.fromkeys(AFTER_0002, 0)}
    for name in TABLES:
        expected = set() if name in AFTER_0002 else {old_run}
        assert view_run_ids(empty, name) == expected, name
    old = latest_published_run(empty)
    assert old is not None and old["run_id"] == old_run
    assert (old["rows_extracted"], old["rows_used"], old["rows_quarantined"]) == (100, 98, 2)
    assert old["rows_excluded"] == 0  # the server default: the accounting still adds up
    assert columns_of(empty, "current_forecast_run")[-3:] == [
        "rows_excluded",
        *COLUMNS_0004["forecast_run"],
    ]

    # The upgraded database takes a run with an impact and excluded rows; it becomes current.
    later = AS_OF + dt.timedelta(days=7)
    new_run = start_run(empty, later, {}, None, "test", 182)
    counts = RunCounts(rows_extracted=107, rows_used=98, rows_quarantined=2, rows_excluded=7)
    publish_run(empty, new_run, result_frames(later), counts)
    for name in TABLES:
        assert view_run_ids(empty, name) == {new_run}, name
    current = latest_published_run(empty)
    assert current is not None and current["rows_excluded"] == 7
    with empty.connect() as connection:
        sources = connection.execute(select(current_view("data_quality_impact").c.source))
        assert sorted(sources.scalars()) == ["excluded"] + ["quarantined"] * 3


def test_downgrade_to_0002_and_back(empty: Engine) -> None:
    create_schema(empty)
    run_id = start_run(empty, AS_OF, {}, None, "test", 182)
    counts = RunCounts(rows_extracted=107, rows_used=98, rows_quarantined=2, rows_excluded=7)
    publish_run(empty, run_id, result_frames(AS_OF), counts)
    forecast_run_0002 = [
        name
        for name in columns_of(empty, "forecast_run")
        if name not in COLUMNS_0003["forecast_run"] + COLUMNS_0004["forecast_run"]
    ]

    change = downgrade_schema(empty, "0002")

    assert (change.before, change.after) == (SCHEMA_REVISION, "0002")
    inspector = inspect(empty)
    assert "data_quality_impact" not in inspector.get_table_names()
    assert "current_data_quality_impact" not in inspector.get_view_names()
    assert columns_of(empty, "forecast_run") == forecast_run_0002
    assert columns_of(empty, "current_forecast_run") == forecast_run_0002
    assert view_run_ids(empty, "forecast_run") == {run_id}

    upgrade_schema(empty)
    assert differences_from_orm(empty) == []
    assert view_run_ids(empty, "forecast_run") == {run_id}
    assert latest_published_run(empty)["rows_excluded"] == 0  # type: ignore[index]


def test_a_database_made_before_migrations_is_stamped_and_upgraded(empty: Engine) -> None:
    upgrade_schema(empty, "0001")  # the 0001 DDL: what the old create_schema built
    old_run = publish_old_run(empty)
    with empty.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
    before = row_counts(empty, tuple(name for name in TABLES if name not in AFTER_0001))

    create_schema(empty)

    with empty.connect() as connection:
        assert schema_revision(connection) == SCHEMA_REVISION
    assert differences_from_orm(empty) == []
    after = row_counts(empty, TABLES)
    assert after == {**before, **dict.fromkeys(AFTER_0001, 0)}
    assert view_run_ids(empty, "recruiting_target") == {old_run}
    assert latest_published_run(empty)["rows_excluded"] == 0  # type: ignore[index]


def test_a_database_made_at_0002_before_migrations_is_stamped_and_upgraded(
    empty: Engine,
) -> None:
    """What the create_schema of commit 3ca8c7f built (create_all of the 0002 tables)."""
    upgrade_schema(empty, "0002")
    old_run = publish_0002_run(empty)
    with empty.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
    before = row_counts(empty, tuple(name for name in TABLES if name not in AFTER_0002))

    change = upgrade_schema(empty)

    assert (change.before, change.after) == (None, SCHEMA_REVISION)
    assert differences_from_orm(empty) == []
    assert row_counts(empty, TABLES) == {**before, **dict.fromkeys(AFTER_0002, 0)}
    assert view_run_ids(empty, "hiring_plan") == {old_run}


def test_a_database_made_at_head_before_migrations_is_stamped_head(empty: Engine) -> None:
    """What the create_schema of commit 3ca8c7f built on an empty database: create_all."""
    Base.metadata.create_all(empty)
    with empty.begin() as connection:
        quote = connection.dialect.identifier_preparer.quote
        for name in TABLES:
            body = view_sql(name, connection.dialect)
            connection.exec_driver_sql(f"CREATE VIEW {quote('current_' + name)} AS {body}")

    change = upgrade_schema(empty)

    assert (change.before, change.after) == (None, SCHEMA_REVISION)
    assert differences_from_orm(empty) == []


@pytest.mark.parametrize("history_rows", [0, 1], ids=["empty", "with_rows"])
def test_an_early_build_with_the_new_tables_but_not_the_new_columns(
    empty: Engine, history_rows: int
) -> None:
    """A 0001 database that a development build gave demand_history and hiring_plan, but not
    the new columns (create_all adds tables, never columns)."""
    upgrade_schema(empty, "0001")
    with empty.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
        table("demand_history").create(connection)
        table("hiring_plan").create(connection)
    if history_rows:
        run_id = publish_old_run(empty)
        with empty.begin() as connection:
            connection.execute(
                table("demand_history")
                .insert()
                .values(run_id=run_id, facility_id="F1", role="RN", date=AS_OF, demand=3)
            )

    if not history_rows:  # empty leftovers are dropped and re-created by 0002
        create_schema(empty)
        assert differences_from_orm(empty) == []
        return
    with pytest.raises(ReportingSchemaError) as raised:
        create_schema(empty)
    message = str(raised.value)
    assert "no alembic_version table and a mix of two schemas" in message
    assert "demand_history: 1, hiring_plan: 0" in message
    assert "recruiting_target lacks column(s) acceptance_offers" in message
    assert "\n" not in message
    assert row_counts(empty, ("demand_history",)) == {"demand_history": 1}  # nothing changed
    assert "alembic_version" not in inspect(empty).get_table_names()


def test_an_unknown_table_set_is_refused_and_left_alone(empty: Engine) -> None:
    upgrade_schema(empty, "0001")
    with empty.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
        connection.exec_driver_sql("DROP VIEW current_holiday_coverage")
        connection.exec_driver_sql("DROP TABLE holiday_coverage")

    with pytest.raises(ReportingSchemaError, match="revision 0001, table holiday_coverage is miss"):
        create_schema(empty)
    assert "alembic_version" not in inspect(empty).get_table_names()


def test_a_revision_from_a_newer_staffcast_is_refused(empty: Engine) -> None:
    create_schema(empty)
    with empty.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(ReportingSchemaError, match="revision '0099'.*newer staffcast"):
        create_schema(empty)


def test_downgrade_to_0001_and_back(empty: Engine) -> None:
    create_schema(empty)
    run_id = start_run(empty, AS_OF, {}, None, "test", 182)
    publish_run(empty, run_id, result_frames(AS_OF), COUNTS)
    first = (
        schema_module._scripts().get_revision("0001").module.COLUMNS  # type: ignore[union-attr]
    )

    change = downgrade_schema(empty, "0001")

    assert (change.before, change.after) == (SCHEMA_REVISION, "0001")
    inspector = inspect(empty)
    assert set(inspector.get_table_names()) == {*first, "alembic_version"}
    assert set(inspector.get_view_names()) == {f"current_{name}" for name in first}
    for name, columns in first.items():
        assert columns_of(empty, name) == list(columns), name
        assert columns_of(empty, f"current_{name}") == list(columns), name
        assert view_run_ids(empty, name) == {run_id}, name

    upgrade_schema(empty)
    assert differences_from_orm(empty) == []
    assert view_run_ids(empty, "recruiting_target") == {run_id}

    downgrade_schema(empty, "base")
    inspector = inspect(empty)
    assert set(inspector.get_table_names()) == {"alembic_version"}
    assert inspector.get_view_names() == []


def test_create_schema_twice_is_a_no_op(empty: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    create_schema(empty)
    catalog = _catalog(empty)

    def must_not_migrate(engine: Engine, revision: str = "head") -> None:
        raise AssertionError("create_schema migrated a database already at head")

    monkeypatch.setattr(schema_module, "upgrade_schema", must_not_migrate)
    create_schema(empty)
    create_schema(empty)
    assert _catalog(empty) == catalog


def _catalog(engine: Engine) -> list[tuple[object, ...]]:
    """Every table, view, index and column definition, plus the revision."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        else:
            query = (
                "SELECT c.relkind, c.relname, c.xmin::text, a.attname, a.attnum "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                "WHERE n.nspname = current_schema() ORDER BY 2, 5"
            )
        rows = [tuple(row) for row in connection.execute(text(query))]
        return [*rows, (schema_revision(connection),)]


def test_two_runs_starting_together_migrate_once(empty: Engine) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait(timeout=30)
            create_schema(empty)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert differences_from_orm(empty) == []
    with empty.connect() as connection:
        versions = connection.execute(select(func.count()).select_from(text("alembic_version")))
        assert versions.scalar_one() == 1


def test_offline_sql_for_review(capsys: pytest.CaptureFixture[str]) -> None:
    command.upgrade(alembic_config(url="postgresql+psycopg://"), "0001:head", sql=True)
    sql = capsys.readouterr().out
    assert "CREATE TABLE demand_history" in sql
    assert "CREATE OR REPLACE VIEW current_recruiting_target AS SELECT" in sql
    assert "ALTER TABLE holiday_coverage ADD COLUMN acceptance_offers INTEGER" in sql
    assert "CREATE TABLE data_quality_impact" in sql
    assert "CREATE OR REPLACE VIEW current_forecast_run AS SELECT" in sql
    assert "ALTER TABLE forecast_run ADD COLUMN rows_excluded INTEGER DEFAULT 0 NOT NULL" in sql
    assert "CREATE VIEW current_data_quality_impact AS SELECT" in sql


def test_db_upgrade_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli' / 'reporting.db'}"
    assert main(["--home", str(tmp_path / "home"), "db", "upgrade", "--reporting", url]) == 0
    assert f"migrated from schema revision (none) to {SCHEMA_REVISION}" in capsys.readouterr().out
    assert main(["--home", str(tmp_path / "home"), "db", "upgrade", "--reporting", url]) == 0
    assert "no change" in capsys.readouterr().out


def test_db_upgrade_command_explains_a_schema_it_cannot_migrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'reporting.db'}"
    engine = reporting_engine(url)
    try:
        create_schema(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    finally:
        engine.dispose()

    assert main(["--home", str(tmp_path / "home"), "db", "upgrade", "--reporting", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("staffcast: The reporting database is at schema revision '0099'")
    assert "Traceback" not in err and err.count("\n") == 1
