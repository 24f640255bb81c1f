"""A busy or silent source database is retried with backoff, for a set time (staffcast.retry).

Real databases, real drivers: a SQLite file whose write lock another program holds (a child
process, so that both sqlite3 and the ADBC driver's own SQLite see the lock), a closed
localhost port for a PostgreSQL server that refuses connections, and, with
``STAFFCAST_TEST_POSTGRES_URL`` (skipped without it, except under ``CI``), a PostgreSQL source
that reports serialization failures for a while, and one with a wrong database or user. The
backoff schedule runs against the closed port with a fake clock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from staffcast.cli import main
from staffcast.errors import SourceUnavailable, ValidationFailed
from staffcast.mapping import mapping_from_data
from staffcast.retry import MAX_DELAY_SECONDS, read_source
from staffcast.run_control import EXIT_SOURCE
from staffcast.settings import Settings
from staffcast.source import RawTable, StreamedTable, table_chunks, transient_reason
from tests.conftest import AS_OF, POSTGRES_URL

TABLES = ("facilities", "shift_requests", "nurses", "shift_offers")


class Tries:
    """What read_source announced before each wait: (attempt, delay in seconds)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self.errors: list[SourceUnavailable] = []

    def __call__(self, attempt: int, delay: float, error: SourceUnavailable) -> None:
        self.seen.append((attempt, delay))
        self.errors.append(error)


def _settings(retry_s: float, delay_s: float = 0.2) -> Settings:
    return Settings(source_retry_seconds=retry_s, source_retry_delay_seconds=delay_s)


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from staffcast.demo_agency import build_demo_agency

    path = tmp_path_factory.mktemp("agency") / "ops.db"
    return build_demo_agency(path, AS_OF, facilities=4, years=0.3, seed=1).path


@pytest.fixture()
def refused_url() -> str:
    """A PostgreSQL URL on a localhost port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+psycopg://nobody:s3cret@127.0.0.1:{port}/agency"


@contextmanager
def write_lock(path: Path, release_after_s: float | None) -> Iterator[None]:
    """Another program holds a write lock on ``path`` (``BEGIN EXCLUSIVE``), released by a
    thread after ``release_after_s`` seconds (None: held until the block ends)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "db.execute('ROLLBACK')\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"

    def release() -> None:
        if holder.poll() is None and holder.stdin is not None:
            holder.stdin.write("\n")
            holder.stdin.flush()

    timer = threading.Timer(release_after_s, release) if release_after_s is not None else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        release()
        holder.stdin.close()
        holder.wait(timeout=10)


def _rows(tables: dict[str, RawTable]) -> dict[str, int]:
    return {name: sum(len(chunk) for chunk in table_chunks(t)) for name, t in tables.items()}


# --- SQLite: a write lock held by another program ------------------------------------------------


def test_a_locked_sqlite_source_is_read_once_the_lock_is_released(agency: Path) -> None:
    expected = _rows(read_source(f"sqlite:///{agency}", AS_OF, _settings(0)).tables)
    tries = Tries()
    started = time.monotonic()
    with write_lock(agency, release_after_s=1.5):
        extract = read_source(f"sqlite:///{agency}", AS_OF, _settings(30), notify=tries)
    assert time.monotonic() - started >= 1.4
    assert tries.seen and tries.seen[0] == (1, 0.2)
    assert all("write lock" in str(e) and e.transient for e in tries.errors)
    assert _rows(extract.tables) == expected


def test_a_lock_never_released_fails_after_the_budget_naming_the_lock(agency: Path) -> None:
    tries = Tries()
    with write_lock(agency, release_after_s=None), pytest.raises(SourceUnavailable) as info:
        read_source(f"sqlite:///{agency}", AS_OF, _settings(1), notify=tries)
    message = str(info.value)
    assert info.value.transient
    assert f"The operational database file '{agency}' is locked" in message
    assert "another program holds a write lock on it" in message
    assert "source URL" not in message  # the URL is right: the lock is the problem
    assert "Retried " in message and "STAFFCAST_SOURCE_RETRY_SECONDS=1)" in message
    assert "because another program holds a write lock on the SQLite file" in message
    assert "\n" not in message and tries.seen


def test_a_lock_taken_before_a_stream_is_read_is_waited_for(agency: Path) -> None:
    """shift_requests is streamed while validation reads it, after open_source returned: its
    query (ADBC SQLite) is retried until the first chunk arrives."""
    tries = Tries()
    extract = read_source(f"sqlite:///{agency}", AS_OF, _settings(30), notify=tries)
    requests = extract.tables["shift_requests"]
    assert isinstance(requests, StreamedTable) and not tries.seen
    with write_lock(agency, release_after_s=1.5):
        rows = sum(len(chunk) for chunk in requests)
    assert rows > 0 and tries.seen
    assert "write lock" in str(tries.errors[0])

    offers = read_source(f"sqlite:///{agency}", AS_OF, _settings(0.5)).tables["shift_offers"]
    with write_lock(agency, release_after_s=None), pytest.raises(SourceUnavailable) as info:
        list(table_chunks(offers))
    assert info.value.transient and "Retried " in str(info.value)
    assert "another program holds a write lock" in str(info.value)


def test_the_adbc_sqlite_reader_reports_a_lock_as_transient(agency: Path) -> None:
    table = StreamedTable(str(agency), "SELECT * FROM facilities", (), ("facility_id",))
    with write_lock(agency, release_after_s=None), pytest.raises(SourceUnavailable) as info:
        list(table)
    assert info.value.transient and "is locked: another program holds" in str(info.value)


# --- what is never retried -------------------------------------------------------------------


def test_a_missing_table_or_file_is_not_retried(agency: Path, tmp_path: Path) -> None:
    tries = Tries()
    sleeps: list[float] = []
    mapping = mapping_from_data({"tables": {"nurses": {"table": "staff"}}})
    with pytest.raises(ValidationFailed, match="required_tables"):
        read_source(
            f"sqlite:///{agency}", AS_OF, _settings(30), mapping, tries, sleep=sleeps.append
        )
    with pytest.raises(SourceUnavailable) as info:
        missing = f"sqlite:///{tmp_path / 'none.db'}"
        read_source(missing, AS_OF, _settings(30), notify=tries, sleep=sleeps.append)
    assert not info.value.transient and "does not exist" in str(info.value)
    assert not tries.seen and not sleeps


@pytest.mark.parametrize(
    ("text", "transient"),
    [
        # libpq tries every address of localhost: one refused, the other a wrong password
        (
            'connection to server at "localhost" (::1), port 5432 failed: Connection refused '
            'connection to server at "localhost" (127.0.0.1), port 5432 failed: FATAL:  '
            'password authentication failed for user "staffcast"',
            False,
        ),
        ('FATAL:  permission denied for database "agency"', False),
        ("[libpq] FATAL:  the database system is starting up", True),
        ("[libpq] FATAL:  the database system is shutting down", True),
        ("server closed the connection unexpectedly", True),
        ("[SQLite] Failed to prepare query: database is locked", True),
        ("unable to open database file", False),
    ],
)
def test_what_counts_as_transient_in_a_message_without_sqlstate(text: str, transient: bool) -> None:
    """The words of errors no test server can produce on demand (an ADBC stream's OSError)."""
    assert (transient_reason(OSError(text)) is not None) is transient


# --- PostgreSQL that refuses connections; the backoff schedule -----------------------------------


def test_a_refused_postgresql_connection_fails_after_the_budget(refused_url: str) -> None:
    tries = Tries()
    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as info:
        read_source(refused_url, AS_OF, _settings(1.0, 0.3), notify=tries)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert info.value.transient and 1.0 <= elapsed < 5
    assert message.startswith("Could not connect to the operational database at ")
    assert "Connection refused" in message and "s3cret" not in message
    assert "because the server refused the connection" in message
    assert f"Retried {len(tries.seen)} times over " in message
    assert [d for _, d in tries.seen][:2] == [0.3, 0.6]


def test_the_cli_prints_each_retry_and_one_paragraph(
    refused_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STAFFCAST_SOURCE_RETRY_SECONDS", "0.5")
    monkeypatch.setenv("STAFFCAST_SOURCE_RETRY_DELAY_SECONDS", "0.2")
    code = main(["validate", "--source", refused_url, "--as-of", AS_OF.isoformat()])
    out, err = capsys.readouterr()
    assert code == EXIT_SOURCE and "Traceback" not in out + err and "s3cret" not in out + err
    *retries, paragraph = err.strip().splitlines()
    assert retries[0] == (
        "staffcast: the source is unavailable, the server refused the connection (not running, "
        "or not listening yet); try 2 in 0.2 s (retrying for up to 0.5 s)"
    )
    assert paragraph.startswith("staffcast: Could not connect to the operational database")
    assert "STAFFCAST_SOURCE_RETRY_SECONDS=0.5) because the server refused" in paragraph


class FakeTime:
    """A clock that moves only when slept on (tries take no time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("budget", "first", "waits"),
    [
        (60, 1, [1, 2, 4, 8, 15, 15, 15]),  # doubled, at most 15 s, ends on the budget
        (50, 1, [1, 2, 4, 8, 15, 15, 5]),  # the last wait is cut to the budget
        (10, 4, [4, 6]),
        (3, 15, [3]),
        (0.5, 0.1, [0.1, 0.2, 0.2]),
    ],
)
def test_the_backoff_doubles_up_to_15_s_and_never_sleeps_past_the_budget(
    refused_url: str, budget: float, first: float, waits: list[float]
) -> None:
    fake, tries = FakeTime(), Tries()
    with pytest.raises(SourceUnavailable) as info:
        settings = _settings(budget, first)
        read_source(refused_url, AS_OF, settings, notify=tries, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == pytest.approx(waits)
    assert sum(fake.sleeps) == pytest.approx(budget)
    assert [a for a, _ in tries.seen] == list(range(1, len(waits) + 1))
    assert max(fake.sleeps) <= MAX_DELAY_SECONDS
    times = "1 time" if len(waits) == 1 else f"{len(waits)} times"
    assert f"Retried {times} over {budget:.1f} s" in str(info.value)


def test_a_budget_of_0_means_no_retry(refused_url: str) -> None:
    fake = FakeTime()
    with pytest.raises(SourceUnavailable) as info:
        read_source(refused_url, AS_OF, _settings(0), sleep=fake.sleep, clock=fake.clock)
    assert info.value.transient and not fake.sleeps
    assert "Retried" not in str(info.value)


# --- a PostgreSQL server: serialization failures for a while; a wrong database or user ---------


def _postgres_server() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI"):
        pytest.fail("CI is set but STAFFCAST_TEST_POSTGRES_URL is not: these tests must run")
    pytest.skip(
        "PostgreSQL not configured: set STAFFCAST_TEST_POSTGRES_URL, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
    )


BUSY_UNTIL = """
CREATE FUNCTION {name}(t timestamptz) RETURNS boolean LANGUAGE plpgsql {volatility} AS $$
BEGIN
    IF clock_timestamp() < t THEN
        RAISE EXCEPTION 'could not serialize access due to concurrent update'
            USING ERRCODE = '40001';
    END IF;
    RETURN true;
END $$
"""
"""A serialization failure (SQLSTATE 40001) until ``t``. VOLATILE: raised as rows are read (the
ADBC reader's stream); IMMUTABLE: raised when the query is planned (psycopg's shape probe)."""
BUSY = {"busy_reading": "VOLATILE", "busy_planning": "IMMUTABLE"}


@pytest.fixture(scope="module")
def pg_source(agency: Path) -> Iterator[str]:
    """The demo agency copied into a fresh PostgreSQL database (dropped afterwards)."""
    server = _postgres_server()
    name = f"source_retry_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        with sa.create_engine(f"sqlite:///{agency}").connect() as sqlite:
            for table in TABLES:
                pd.read_sql_table(table, sqlite).to_sql(table, engine, index=False)
        with engine.begin() as conn:
            for function, volatility in BUSY.items():
                conn.exec_driver_sql(BUSY_UNTIL.format(name=function, volatility=volatility))
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("busy", sorted(BUSY))
def test_serialization_failures_are_retried_until_the_read_succeeds(
    pg_source: str, busy: str
) -> None:
    until = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    query = f"SELECT * FROM facilities WHERE {busy}('{until}')"  # 40001 for 1.5 s
    mapping = mapping_from_data({"tables": {"facilities": {"query": query}}})
    tries = Tries()
    extract = read_source(pg_source, AS_OF, _settings(30), mapping, tries)
    facilities = extract.tables["facilities"]
    assert isinstance(facilities, pd.DataFrame) and len(facilities) == 4
    assert tries.seen and all(e.transient for e in tries.errors)
    assert "could not serialize access" in str(tries.errors[0])
    driver = OSError if busy == "busy_reading" else sa.exc.DBAPIError  # ADBC stream or psycopg
    assert isinstance(tries.errors[0].__cause__, driver)

    never = f"SELECT * FROM facilities WHERE {busy}('infinity')"
    mapping = mapping_from_data({"tables": {"facilities": {"query": never}}})
    with pytest.raises(SourceUnavailable) as info:
        read_source(pg_source, AS_OF, _settings(0.5, 0.1), mapping)
    assert info.value.transient
    assert "because the server reported a serialization failure (SQLSTATE 40001)" in str(info.value)


@pytest.mark.postgres
def test_a_wrong_database_or_user_is_not_retried(pg_source: str) -> None:
    tries = Tries()
    url = sa.make_url(pg_source)
    for wrong in (url.set(database="no_such_agency"), url.set(username="no_such_user")):
        text = wrong.render_as_string(hide_password=False)
        with pytest.raises(SourceUnavailable) as info:
            read_source(text, AS_OF, _settings(30), None, tries)
        assert not info.value.transient and "does not exist" in str(info.value)
        assert "Retried" not in str(info.value)
    assert not tries.seen


@pytest.mark.postgres
def test_a_user_without_select_is_not_retried(pg_source: str) -> None:
    role = f"no_grants_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_source, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    try:
        tries = Tries()
        url = sa.make_url(pg_source).set(username=role, password=None)
        with pytest.raises(SourceUnavailable) as info:
            read_source(url.render_as_string(), AS_OF, _settings(30), None, tries)
        assert not info.value.transient and "permission denied" in str(info.value)
        assert "may not read" in str(info.value) and not tries.seen
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()
