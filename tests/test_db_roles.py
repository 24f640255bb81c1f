"""Reader roles and readers on PostgreSQL: views only, and one run at a time while publishing.

The PostgreSQL tests need STAFFCAST_TEST_POSTGRES_URL (a superuser, as in CI): each creates a
database and a LOGIN role with a unique name, and drops both afterwards (roles are
cluster-wide).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, create_engine, make_url, select
from sqlalchemy.exc import ProgrammingError

import reports.publish as publish_module
from reports.db_admin import READER_VIEWS, ReaderGrantError, grant_reader
from reports.publish import publish_run, start_run
from reports.schema import (
    SCHEMA_REVISION,
    TABLES,
    create_schema,
    current_view,
    downgrade_schema,
    upgrade_schema,
)
from staffcast.cli import main
from tests.conftest import POSTGRES_URL, fresh_database
from tests.test_publish import AS_OF, COUNTS, result_frames

#: Relations a reader must not touch at all.
PRIVATE = (*TABLES, "alembic_version", "current_quarantined_row")


@pytest.fixture()
def database(tmp_path: Path) -> Iterator[Engine]:
    """A fresh PostgreSQL reporting database at head with one published run."""
    with fresh_database("postgresql", tmp_path) as engine:
        create_schema(engine)
        run_id = start_run(engine, AS_OF, {}, None, "test", 182)
        publish_run(engine, run_id, result_frames(AS_OF), COUNTS)
        yield engine


@pytest.fixture()
def role(database: Engine) -> Iterator[str]:
    """A new LOGIN role (unique name), dropped after the test and its database."""
    assert POSTGRES_URL
    name = f"staffcast_reader_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'not-a-secret'")
    try:
        yield name
    finally:
        database.dispose()
        with admin.connect() as connection:
            database_name = database.url.database
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
            connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
        admin.dispose()


@pytest.fixture()
def as_role(database: Engine, role: str) -> Iterator[Engine]:
    """An engine on the test database that logs in as ``role``."""
    url = database.url.set(username=role, password="not-a-secret")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def refused(engine: Engine, statement: str) -> bool:
    """True when PostgreSQL refuses ``statement`` for lack of privilege."""
    with engine.connect() as connection:
        try:
            connection.exec_driver_sql(statement)
        except ProgrammingError as exc:
            return "permission denied" in str(exc.orig)
        finally:
            connection.rollback()
    return False


@pytest.mark.postgres
def test_a_reader_reads_the_views_and_nothing_else(
    database: Engine, role: str, as_role: Engine
) -> None:
    grant = grant_reader(database, role)

    assert grant.views == READER_VIEWS
    assert "current_quarantined_row" not in grant.views
    assert "current_data_quality_impact" in grant.views  # facility counts, no row keys
    assert grant.leaks == ()
    frames = result_frames(AS_OF)
    with as_role.connect() as connection:
        for view in READER_VIEWS:
            count = connection.exec_driver_sql(f"SELECT count(*) FROM {view}").scalar_one()
            name = view.removeprefix("current_")
            assert count == (1 if name == "forecast_run" else len(frames[name])), view
    for name in PRIVATE:
        assert refused(as_role, f"SELECT * FROM {name}"), name
    for name in TABLES:
        assert refused(as_role, f"DELETE FROM {name}"), name
        assert refused(as_role, f"UPDATE {name} SET run_id = run_id"), name
        assert refused(as_role, f"INSERT INTO {name} (run_id) VALUES ('x')"), name
        assert refused(as_role, f"TRUNCATE {name}"), name
    for view in READER_VIEWS:  # the views are auto-updatable: SELECT only
        assert refused(as_role, f"DELETE FROM {view}"), view
    assert refused(as_role, "CREATE TABLE public.mine (x int)")
    assert refused(as_role, "CREATE VIEW public.mine AS SELECT 1")


@pytest.mark.postgres
def test_grant_reader_is_idempotent_and_revokes_what_else_the_role_had(
    database: Engine, role: str, as_role: Engine
) -> None:
    with database.begin() as connection:
        for statement in (
            f'GRANT SELECT, INSERT ON recruiting_target TO "{role}"',
            f'GRANT ALL ON quarantined_row, current_quarantined_row TO "{role}"',
            f'GRANT UPDATE ON current_forecast_run TO "{role}"',
            f'GRANT SELECT (run_id) ON demand_forecast TO "{role}"',
            f'GRANT USAGE ON SEQUENCE quarantined_row_id_seq TO "{role}"',
            f'GRANT CREATE ON SCHEMA public TO "{role}"',
        ):
            connection.exec_driver_sql(statement)
    assert not refused(as_role, "SELECT * FROM recruiting_target")

    first = grant_reader(database, role)
    second = grant_reader(database, role)

    assert first == second
    assert first.leaks == ()
    assert refused(as_role, "SELECT * FROM recruiting_target")
    assert refused(as_role, "SELECT run_id FROM demand_forecast")
    assert refused(as_role, "SELECT * FROM current_quarantined_row")
    assert refused(as_role, "UPDATE current_forecast_run SET error = 'x'")
    assert refused(as_role, "SELECT nextval('quarantined_row_id_seq')")
    assert refused(as_role, "CREATE TABLE public.mine (x int)")
    assert not refused(as_role, "SELECT * FROM current_recruiting_target")


@pytest.mark.postgres
def test_grants_through_public_are_reported_and_fail_the_command(
    database: Engine, role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with database.begin() as connection:
        connection.exec_driver_sql("GRANT SELECT ON recruiting_target TO PUBLIC")

    grant = grant_reader(database, role)
    assert grant.leaks == ("SELECT on recruiting_target",)

    url = database.url.render_as_string(hide_password=False)
    assert main(["db", "grant-reader", role, "--reporting", url]) == 1
    captured = capsys.readouterr()
    assert f"Role {role} may SELECT {len(READER_VIEWS)} views" in captured.out
    assert "still holds SELECT on recruiting_target" in captured.err


@pytest.mark.postgres
def test_grant_reader_refuses_what_it_cannot_do_safely(database: Engine, role: str) -> None:
    with pytest.raises(ReaderGrantError, match="There is no PostgreSQL role 'nobody_here_"):
        grant_reader(database, f"nobody_here_{uuid.uuid4().hex[:8]}")
    with pytest.raises(ReaderGrantError, match="superuser"):
        grant_reader(database, str(make_url(POSTGRES_URL or "").username))
    with database.begin() as connection:
        connection.exec_driver_sql(f'ALTER TABLE forecast_run OWNER TO "{role}"')
    with pytest.raises(ReaderGrantError, match="owns the reporting tables"):
        grant_reader(database, role)


@pytest.mark.postgres
def test_grant_reader_needs_the_schema_at_head(tmp_path: Path, role: str) -> None:
    with fresh_database("postgresql", tmp_path) as engine:
        with pytest.raises(
            ReaderGrantError, match=f"revision none, not {SCHEMA_REVISION}.*db upgrade"
        ):
            grant_reader(engine, role)
        upgrade_schema(engine, "0001")
        with pytest.raises(ReaderGrantError, match=f"revision 0001, not {SCHEMA_REVISION}"):
            grant_reader(engine, role)
        upgrade_schema(engine, "0002")
        with pytest.raises(ReaderGrantError, match=f"revision 0002, not {SCHEMA_REVISION}"):
            grant_reader(engine, role)


def test_sqlite_has_no_roles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'reporting.db'}"
    with fresh_database("sqlite", tmp_path) as engine:
        create_schema(engine)
        with pytest.raises(ReaderGrantError, match="sqlite, which has no roles"):
            grant_reader(engine, "dashboards")
    assert main(["--home", str(tmp_path), "db", "grant-reader", "dashboards", "--reporting", url])
    err = capsys.readouterr().err
    assert err.startswith("staffcast: The reporting database is sqlite, which has no roles")
    assert "file permissions" in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.postgres
def test_migrations_keep_readers_reading(tmp_path: Path, role: str) -> None:
    """A role that read the 0001 views reads the views 0002 and 0003 add, and keeps them on
    downgrade (0003's downgrade re-creates current_forecast_run, by which readers are found)."""
    with fresh_database("postgresql", tmp_path) as engine:
        upgrade_schema(engine, "0001")
        with engine.begin() as connection:  # what a reader of the 0001 schema held
            connection.exec_driver_sql(
                f'GRANT SELECT ON current_forecast_run, current_recruiting_target TO "{role}"'
            )
        reader = create_engine(engine.url.set(username=role, password="not-a-secret"))
        try:
            assert refused(reader, "SELECT * FROM current_demand_forecast")

            create_schema(engine)
            for view in (*READER_VIEWS, "current_recruiting_target"):
                assert not refused(reader, f"SELECT * FROM {view}"), view
            assert "current_data_quality_impact" in READER_VIEWS
            assert refused(reader, "SELECT * FROM current_quarantined_row")
            assert not refused(reader, "SELECT rows_excluded FROM current_forecast_run")

            downgrade_schema(engine, "0002")  # drops and re-creates current_forecast_run
            assert not refused(reader, "SELECT * FROM current_forecast_run")
            assert not refused(reader, "SELECT * FROM current_hiring_plan")
            upgrade_schema(engine)
            assert not refused(reader, "SELECT * FROM current_data_quality_impact")

            downgrade_schema(engine, "0001")  # drops and re-creates current_recruiting_target
            assert not refused(reader, "SELECT * FROM current_recruiting_target")
            assert not refused(reader, "SELECT * FROM current_forecast_run")
        finally:
            reader.dispose()


# --- readers during a publish ----------------------------------------------------------------

#: Views the reader checks together; every run has rows in each.
CHECKED = ("forecast_run", "demand_forecast", "regional_forecast", "on_call_pool", "hiring_plan")


def big_frames(as_of: dt.date, facilities: int = 60) -> dict[str, pd.DataFrame]:
    """result_frames with a demand_forecast of ``facilities`` x 2 roles x 182 days."""
    frames = result_frames(as_of)
    keys = pd.MultiIndex.from_product(
        [
            [f"F{i:03d}" for i in range(facilities)],
            ["RN", "LPN"],
            pd.date_range(as_of, periods=182, freq="D"),
        ],
        names=["facility_id", "role", "date"],
    ).to_frame(index=False)
    template = frames["demand_forecast"].iloc[0]
    for column in frames["demand_forecast"].columns:
        if column not in keys:
            keys[column] = template[column]
    keys["mean"] = np.linspace(0, 5, len(keys))
    frames["demand_forecast"] = keys
    return frames


def one_statement(connection: Connection) -> dict[str, set[str]]:
    """run_ids per view, from one SELECT (one snapshot even under READ COMMITTED)."""
    query = " UNION ALL ".join(
        f"SELECT '{name}' AS view, run_id FROM (SELECT DISTINCT run_id FROM current_{name}) AS v"
        for name in CHECKED
    )
    seen: dict[str, set[str]] = {name: set() for name in CHECKED}
    for view, run_id in connection.exec_driver_sql(query):
        seen[view].add(run_id)
    return seen


def repeatable_read(engine: Engine) -> dict[str, set[str]]:
    """run_ids per view, one SELECT per view inside one REPEATABLE READ transaction."""
    seen: dict[str, set[str]] = {}
    connection = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    with connection, connection.begin():
        for name in CHECKED:
            run_ids = connection.execute(select(current_view(name).c.run_id).distinct())
            seen[name] = set(run_ids.scalars())
            connection.exec_driver_sql("SELECT pg_sleep(0.005)")  # let a publish commit
    return seen


def single_run(seen: dict[str, set[str]]) -> str:
    """The one run every view showed; fails on a mix or a view without rows."""
    runs = set().union(*seen.values())
    assert len(runs) == 1 and all(seen.values()), f"mixed or partial snapshot: {seen}"
    return runs.pop()


@pytest.mark.postgres
def test_readers_see_one_whole_run_while_a_new_one_publishes(
    database: Engine, role: str, as_role: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant_reader(database, role)
    old = start_run(database, AS_OF, {}, None, "test", 182)  # replaces the fixture's run
    publish_run(database, old, big_frames(AS_OF), COUNTS)

    # The first insert of each publish waits until the reader has looked once, so a read
    # during an open publishing transaction is certain; later chunks go at full speed.
    writing, looked = threading.Event(), threading.Event()
    real_insert = publish_module._insert_rows

    def insert(connection: Connection, target: Any, rows: list[dict[str, Any]]) -> None:
        if not writing.is_set():
            writing.set()
            assert looked.wait(timeout=60)
        real_insert(connection, target, rows)

    monkeypatch.setattr(publish_module, "_insert_rows", insert)
    monkeypatch.setattr(publish_module, "INSERT_CHUNK_ROWS", 2_000)
    published: list[str] = []
    failures: list[BaseException] = []

    def publisher() -> None:
        try:
            for days in (7, 14, 14):  # two newer weeks, then a re-run replacing the last
                as_of = AS_OF + dt.timedelta(days=days)
                run_id = start_run(database, as_of, {}, None, "test", 182)
                publish_run(database, run_id, big_frames(as_of), COUNTS)
                published.append(run_id)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            failures.append(exc)
            looked.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    seen: list[str] = []
    try:
        assert writing.wait(timeout=60)
        with as_role.connect() as connection:
            during = {single_run(one_statement(connection)), single_run(repeatable_read(as_role))}
        looked.set()
        assert during == {old}  # the new run's rows are written but not committed: invisible

        with as_role.connect() as connection:
            while thread.is_alive():
                seen.append(single_run(one_statement(connection)))
                seen.append(single_run(repeatable_read(as_role)))
                connection.rollback()
    finally:
        looked.set()
        thread.join(timeout=120)
    assert failures == []
    with as_role.connect() as connection:
        final = {single_run(one_statement(connection)), single_run(repeatable_read(as_role))}
    assert final == {published[-1]}
    assert len(seen) >= 10, "the reader hardly ran while publishing"
    assert set(seen) <= {old, *published}
    assert {old, published[-1]} <= {*during, *seen, *final}
