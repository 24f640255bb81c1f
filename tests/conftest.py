"""Shared test set-up: Prefect in a throwaway home, one session-scoped test harness."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url

_PREFECT_HOME = tempfile.mkdtemp(prefix="staffcast-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.pop("PREFECT_API_URL", None)
logging.getLogger("cmdstanpy").disabled = True

POSTGRES_URL = os.environ.get("STAFFCAST_TEST_POSTGRES_URL")
"""A PostgreSQL 15 server for the reporting-database tests (a superuser; .ci/run starts one)."""

AS_OF = date(2025, 11, 3)
"""A Monday: the as_of every small-agency test uses."""


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def small_agency(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small demo agency (8 facilities, about 1.3 years) in a session-wide temp folder."""
    from staffcast.demo_agency import build_demo_agency

    path = tmp_path_factory.mktemp("agency") / "ops.db"
    return build_demo_agency(path, AS_OF, facilities=8, years=1.3, seed=3)


@pytest.fixture()
def staffcast_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STAFFCAST_HOME pointed at a fresh folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("STAFFCAST_HOME", str(home))
    return home


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """An empty reporting database: a SQLite file, or a new PostgreSQL database (dropped after)."""
    from reports.schema import reporting_engine

    if backend == "sqlite":
        engine = reporting_engine(f"sqlite:///{tmp_path / f'reporting-{uuid.uuid4().hex}.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip(
            "PostgreSQL not configured: set STAFFCAST_TEST_POSTGRES_URL, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
        )
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"staffcast_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = reporting_engine(
        make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    )
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
