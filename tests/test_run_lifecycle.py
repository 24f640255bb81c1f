"""A run's life in the reporting database and in its process, piece by piece (issue 12):
heartbeat and abandoned runs, a second run of one as_of, outcomes kept for the next run,
cancellation held over a commit, the preflight and its one-paragraph refusals, the local
Prefect server, and the migration that brought the new statuses.

The whole runs, with real signals and refusing databases, are in tests/test_faults.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from reports import publish as publishing
from reports.reporting_db import classify, preflight, refused
from reports.schema import create_schema, reporting_engine, table, upgrade_schema
from staffcast.errors import ReportingUnavailable, RunInProgress, SourceUnavailable
from staffcast.prefect_server import LocalPrefectServer, OrchestrationUnavailable
from staffcast.run_control import (
    CANCELLATION,
    EXIT_CANCELLED,
    EXIT_IN_PROGRESS,
    EXIT_INTERRUPTED,
    EXIT_REPORTING,
    EXIT_SOURCE,
    Heartbeat,
    RunCancelled,
    exit_code,
)
from tests.conftest import fresh_database
from tests.test_publish import AS_OF, COUNTS, result_frames

TRACK_RECORD_TABLES = ("forecast_score", "pool_outcome", "track_record_flag")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with fresh_database(request.param, tmp_path) as engine:
        create_schema(engine)
        yield engine


def _status(engine: sa.Engine, run_id: str) -> tuple[str, str | None]:
    forecast_run = table("forecast_run")
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(forecast_run.c.status, forecast_run.c.error).where(
                forecast_run.c.run_id == run_id
            )
        ).one()
    return row.status, row.error


def _age(engine: sa.Engine, run_id: str, seconds: float) -> None:
    """Make a run's last sign of life ``seconds`` old (as if its process had died then)."""
    forecast_run = table("forecast_run")
    then = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    with engine.begin() as connection:
        connection.execute(
            sa.update(forecast_run)
            .where(forecast_run.c.run_id == run_id)
            .values(started_at=then, heartbeat_at=then)
        )


def test_a_silent_running_run_is_abandoned_by_the_next_and_a_live_one_refuses_it(
    engine: sa.Engine,
) -> None:
    dead = publishing.start_run(engine, AS_OF, {}, None, "test", 182)
    _age(engine, dead, 700)
    other_week = publishing.start_run(engine, AS_OF - dt.timedelta(days=7), {}, None, "t", 182)
    _age(engine, other_week, 700)

    live = publishing.start_run(engine, AS_OF, {}, None, "test", 182, stale_after_seconds=600)

    assert _status(engine, dead)[0] == "abandoned"
    assert "no heartbeat since" in (_status(engine, dead)[1] or "")
    assert _status(engine, other_week)[0] == "abandoned"  # any as_of
    with pytest.raises(RunInProgress, match=f"Run {live} for as_of {AS_OF} is in progress") as info:
        publishing.start_run(engine, AS_OF, {}, None, "test", 182, stale_after_seconds=600)
    assert info.value.run_id == live
    # Another week may run beside it; the heartbeat keeps the live one from being abandoned.
    publishing.start_run(engine, AS_OF + dt.timedelta(days=7), {}, None, "t", 182, 600)
    _age(engine, live, 700)
    publishing.heartbeat(engine, live)
    publishing.start_run(engine, AS_OF + dt.timedelta(days=14), {}, None, "t", 182, 600)
    assert _status(engine, live)[0] == "running"


def test_cancelled_and_failed_outcomes_and_the_ones_kept_for_the_next_run(
    engine: sa.Engine, tmp_path: Path
) -> None:
    cancelled = publishing.start_run(engine, AS_OF, {}, None, "test", 182)
    assert publishing.mark_failed(engine, cancelled, "cancelled (SIGTERM)", "cancelled")
    assert _status(engine, cancelled) == ("cancelled", "cancelled (SIGTERM)")

    lost = publishing.start_run(engine, AS_OF + dt.timedelta(days=7), {}, None, "test", 182)
    gone = reporting_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert not publishing.mark_failed(gone, lost, "the server went away")  # never raises
    gone.dispose()
    kept = publishing.record_later(tmp_path / "unrecorded", lost, "failed", "the server went away")
    assert kept.is_file() and _status(engine, lost)[0] == "running"

    assert publishing.record_pending(engine, tmp_path / "unrecorded") == [lost]
    status, error = _status(engine, lost)
    assert status == "failed" and error == "the server went away (recorded by a later run)"
    assert not kept.exists()
    assert publishing.record_pending(engine, tmp_path / "unrecorded") == []


def test_a_signal_during_the_commit_is_acted_on_after_it(engine: sa.Engine) -> None:
    """The COMMIT is protected: the run publishes, then RunCancelled is raised."""
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    CANCELLATION.reset()
    CANCELLATION.install()
    run_id = publishing.start_run(engine, AS_OF, {}, None, "test", 182)

    @contextlib.contextmanager
    def signal_inside_commit() -> Iterator[None]:
        with CANCELLATION.protected():
            os.kill(os.getpid(), signal.SIGTERM)  # seen and held while the COMMIT runs
            yield

    try:
        with pytest.raises(RunCancelled):
            publishing.publish_run(
                engine, run_id, result_frames(AS_OF), COUNTS, commit_guard=signal_inside_commit
            )
        assert _status(engine, run_id)[0] == "published"

        # Seen before the commit: nothing is published.
        CANCELLATION.reset()
        second = publishing.start_run(engine, AS_OF, {}, None, "test", 182)
        CANCELLATION.signum = signal.SIGTERM  # a signal held earlier, not yet raised
        with pytest.raises(RunCancelled):
            publishing.publish_run(
                engine, second, result_frames(AS_OF), COUNTS, commit_guard=CANCELLATION.protected
            )
        assert _status(engine, second)[0] == "running"
        assert publishing.latest_published_run(engine)["run_id"] == run_id  # type: ignore[index]
    finally:
        CANCELLATION.reset()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def test_exit_codes_tell_the_classes_of_failure_apart() -> None:
    assert exit_code(SourceUnavailable("x")) == EXIT_SOURCE == 3
    assert exit_code(ReportingUnavailable("x")) == EXIT_REPORTING == 4
    assert exit_code(OrchestrationUnavailable("x")) == 5
    assert exit_code(RunInProgress("x", "r")) == EXIT_IN_PROGRESS == 6
    assert exit_code(RunCancelled("x", signal.SIGTERM)) == EXIT_CANCELLED == 143
    assert exit_code(RunCancelled("x", signal.SIGINT)) == EXIT_INTERRUPTED == 130


def test_the_heartbeat_beats_and_survives_a_missed_beat() -> None:
    beats: list[int] = []

    def beat() -> bool:
        beats.append(1)
        if len(beats) == 2:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        return False

    with Heartbeat(beat, 0.05) as heart:
        deadline = dt.datetime.now() + dt.timedelta(seconds=5)
        while len(beats) < 4 and dt.datetime.now() < deadline:
            pass
    assert len(beats) >= 4 and heart.beats >= 3
    assert heart.last_error is not None


def test_preflight_refuses_in_one_paragraph(tmp_path: Path) -> None:
    ok = tmp_path / "ok.db"
    engine = reporting_engine(f"sqlite:///{ok}")
    preflight(engine, f"sqlite:///{ok}")  # creates the schema, writes nothing
    engine.dispose()
    with sqlite3.connect(ok) as connection:
        assert connection.execute("SELECT count(*) FROM forecast_run").fetchone() == (0,)

    cases = {
        f"sqlite:///file:{ok}?mode=ro&uri=true": "read-only",
        f"sqlite:///{tmp_path / 'corrupt.db'}": "not a SQLite database",
    }
    (tmp_path / "corrupt.db").write_bytes(b"a spreadsheet export\n" * 300)
    for url, said in cases.items():
        engine = reporting_engine(url)
        with pytest.raises(ReportingUnavailable) as info:
            preflight(engine, url)
        engine.dispose()
        message = str(info.value)
        assert said in message and "\n" not in message
        assert "Nothing was published; the previous run stays current." in message
    engine = reporting_engine(f"sqlite:///{ok}")
    with pytest.raises(ReportingUnavailable, match="its disk has .* MB free"):
        preflight(engine, f"sqlite:///{ok}", min_free_mb=1e12)
    engine.dispose()


def test_refusals_are_classified_and_passwords_hidden() -> None:
    def error(message: str, sqlstate: str | None = None) -> sa.exc.DBAPIError:
        orig = Exception(message)
        orig.sqlstate = sqlstate  # type: ignore[attr-defined]
        return sa.exc.OperationalError("SELECT 1", {}, orig)

    assert classify(error("attempt to write a readonly database")).kind == "read-only"
    assert classify(error("x", "25006")).kind == "read-only"  # type: ignore[union-attr]
    assert classify(error("permission denied for table forecast_run", "42501")).kind == (  # type: ignore[union-attr]
        "permission denied"
    )
    assert classify(error("database or disk is full")).kind == "disk full"  # type: ignore[union-attr]
    assert classify(error("could not extend file: No space left", "53100")).kind == "disk full"  # type: ignore[union-attr]
    assert classify(error("terminating connection due to administrator command", "57P01")).kind == (  # type: ignore[union-attr]
        "server gone"
    )
    assert classify(error("file is not a database")).kind == "corrupt"  # type: ignore[union-attr]
    assert classify(error("database is locked")).kind == "lock held"  # type: ignore[union-attr]
    assert classify(error("something new")) is None
    message = str(
        refused(
            error('password authentication failed for user "staffcast" (s3cret)', "28P01"),
            "postgresql+psycopg://staffcast:s3cret@db/reports",
            "the run's start",
        )
    )
    assert "s3cret" not in message and "***" in message
    assert "refused the run's start: the server refused the login" in message


def test_the_local_prefect_server_explains_a_start_it_could_not_make(tmp_path: Path) -> None:
    server = LocalPrefectServer(tmp_path / "prefect", startup_seconds=0.2)
    with pytest.raises(OrchestrationUnavailable) as info:
        server.start()
    message = str(info.value)
    assert "did not start within 0.2 s" in message and "PREFECT_API_URL" in message
    assert "\n" not in message
    assert server.process is None  # stopped, not left behind


def test_upgrade_to_0004_keeps_the_current_run_current(tmp_path: Path) -> None:
    """Before 0004 the greatest as_of was current; a backfill published after it stays aside."""
    engine = reporting_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade_schema(engine, "0003")

    def frames_0003(as_of: dt.date) -> dict[str, pd.DataFrame]:  # no track record yet
        frames = result_frames(as_of)
        return {k: v for k, v in frames.items() if k not in TRACK_RECORD_TABLES}

    newer = publishing.start_run(engine, AS_OF + dt.timedelta(days=7), {}, None, "t", 182)
    publishing.publish_run(engine, newer, frames_0003(AS_OF + dt.timedelta(days=7)), COUNTS)
    older = publishing.start_run(engine, AS_OF, {}, None, "t", 182)
    publishing.publish_run(engine, older, frames_0003(AS_OF), COUNTS)
    failed = publishing.start_run(engine, AS_OF - dt.timedelta(days=7), {}, None, "t", 182)
    publishing.mark_failed(engine, failed, "boom")
    with engine.connect() as connection:
        before = sorted(
            connection.execute(sa.text("SELECT run_id FROM current_regional_forecast")).scalars()
        )

    upgrade_schema(engine)

    assert publishing.latest_published_run(engine)["run_id"] == newer  # type: ignore[index]
    with engine.connect() as connection:
        after = sorted(
            connection.execute(sa.text("SELECT run_id FROM current_regional_forecast")).scalars()
        )
        assert after == before
        rows = connection.execute(sa.text("SELECT count(*) FROM demand_forecast")).scalar_one()
        assert rows > 0  # the table rebuild did not cascade to the runs' rows
        assert connection.execute(sa.text("PRAGMA foreign_keys")).scalar_one() == 1
    cancelled = publishing.start_run(engine, AS_OF, {}, None, "t", 182)
    assert publishing.mark_failed(engine, cancelled, "SIGTERM", "cancelled")
    engine.dispose()


def test_sqlite_pragma_is_restored_for_pooled_connections(tmp_path: Path) -> None:
    engine = reporting_engine(f"sqlite:///{tmp_path / 'r.db'}")
    create_schema(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    engine.dispose()


def test_a_child_of_the_local_server_dies_with_its_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: what stops the local Prefect server when staffcast is SIGKILLed."""
    script = (
        "import subprocess, sys, time\n"
        "from staffcast.die_with_parent import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " preexec_fn=die_with_parent, start_new_session=True)\n"
        "print(child.pid, flush=True)\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parents[1]
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = dt.datetime.now() + dt.timedelta(seconds=5)
    while dt.datetime.now() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, os.WNOHANG)
        status = Path(f"/proc/{child}/stat")
        if not status.exists() or ") Z " in status.read_text():
            break
    else:
        pytest.fail("the child outlived its SIGKILLed parent")
