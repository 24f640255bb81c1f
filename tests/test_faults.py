"""Faults injected into real runs of `staffcast run` (subprocesses, real signals), on SQLite
and PostgreSQL: a SIGKILL and a SIGTERM as each stage begins, every refusing reporting
database this machine can stage, and two runs of one as_of (issue 12).

What is checked after each fault is described in benchmarks/fault_lab.py; the benchmark
benchmarks/faults.py runs many more trials of the same faults. The runs here share the
session's Prefect server (a run that starts its own is tested once, for what it leaves
behind), and a small agency with a short horizon, to keep the suite's time.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.fault_lab import (
    STAGES,
    Lab,
    Trial,
    pg_database,
    refusal_trials,
    signal_trial,
    two_runs_trial,
)
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lab(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    small_agency,  # type: ignore[no-untyped-def]
) -> Iterator[Lab]:
    """A lab on the session's small agency, with a published run already current."""
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / "home"
    source = f"sqlite:///{small_agency.path}"
    api = str(PREFECT_API_URL.value())
    if request.param == "sqlite":
        yield _ready(Lab(home, source, f"sqlite:///{home / 'reporting.db'}", api))
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set STAFFCAST_TEST_POSTGRES_URL")
    with pg_database(POSTGRES_URL) as url:
        yield _ready(Lab(home, source, url, api))


def _ready(lab: Lab) -> Lab:
    run, code = lab.run()
    assert code == 0, run.text()[-3000:]
    return lab


def _explain(trial: Trial, lab: Lab) -> str:
    """The trial and the end of its faulted run's log (else of the lab's latest run)."""
    logs = sorted((lab.home / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)
    path = Path(trial.log) if trial.log else (logs[-1] if logs else None)
    tail = path.read_text(errors="replace")[-3000:] if path is not None else ""
    return f"{trial}\n--- log of the faulted run ---\n{tail}"


def test_a_kill_or_a_sigterm_as_each_stage_begins(lab: Lab) -> None:
    """SIGKILL (the next run marks the run abandoned) and SIGTERM (cancelled at once, exit 143
    with one paragraph) take the stages in turn, the other way round on the other backend, so
    CI sees a kill and a SIGTERM in every stage. Every time the previous run stays current
    with its rows, no process is left, and the next run publishes. (benchmarks/faults.py runs
    both in every stage on each backend, many times.)"""
    previous = lab.current_run()
    assert previous is not None
    first = 0 if lab.backend == "sqlite" else 1
    for number, stage in enumerate(STAGES):
        fault = ("sigkill", "sigterm")[(number + first) % 2]
        trial = signal_trial(lab, fault, stage, previous, check_next=False)
        assert trial.previous_intact, _explain(trial, lab)
        assert trial.no_orphans, _explain(trial, lab)
        assert trial.status_ok, _explain(trial, lab)
        if fault == "sigterm":
            assert trial.one_paragraph, _explain(trial, lab)
            assert trial.exit_code == 143, _explain(trial, lab)
            assert trial.exit_seconds is not None and trial.exit_seconds < 10
        else:
            assert trial.next_ok, _explain(trial, lab)
        previous = lab.current_run() or previous
    run, code = lab.run()
    assert code == 0, run.text()[-3000:]


def test_every_refusing_database_ends_in_one_paragraph(lab: Lab) -> None:
    previous = lab.current_run()
    assert previous is not None
    trials = refusal_trials(lab, previous, POSTGRES_URL)
    kinds = {trial.fault for trial in trials}
    if lab.backend == "sqlite":
        assert {"read-only URI", "corrupt file", "lock held", "disk full (preflight)"} <= kinds
    else:
        assert {
            "server gone (before)",
            "server gone (publish)",
            "permission denied",
            "read-only database",
            "lock held",
        } <= kinds
    for trial in trials:
        assert trial.exit_code == 4, _explain(trial, lab)
        assert trial.one_paragraph, _explain(trial, lab)
        assert trial.previous_intact, _explain(trial, lab)
        assert trial.no_orphans, _explain(trial, lab)
        assert trial.status_ok, _explain(trial, lab)
        if trial.target == "preflight":
            assert trial.exit_seconds is not None and trial.exit_seconds <= 10, trial
    gone = [trial for trial in trials if trial.fault == "server gone (publish)"]
    assert all(trial.next_ok for trial in gone)


def test_two_runs_of_the_same_as_of_started_together(lab: Lab) -> None:
    """One publishes, the other exits 6 naming it; with STAFFCAST_CONCURRENT_RUN=wait both
    publish, one after the other."""
    trial = two_runs_trial(lab)
    assert trial.status_ok and trial.exit_code == 6, trial
    assert trial.one_paragraph, trial
    assert trial.next_ok and trial.no_orphans, trial
    if lab.backend == "sqlite":
        waited = two_runs_trial(lab, wait=True)
        assert waited.status_ok and waited.no_orphans, waited


def test_a_run_with_its_own_prefect_server_leaves_nothing_behind(
    tmp_path: Path,
    small_agency,  # type: ignore[no-untyped-def]
) -> None:
    """No PREFECT_API_URL: the run starts a local Prefect server (and, with four batches, a
    pool of forecast workers). SIGTERM, and a SIGKILL of the main process alone, leave no
    process behind; the killed run is abandoned by the next, which publishes."""
    home = tmp_path / "home"
    lab = Lab(
        home,
        f"sqlite:///{small_agency.path}",
        f"sqlite:///{home / 'reporting.db'}",
        env={"STAFFCAST_SERIES_PER_TASK": "4", "STAFFCAST_FORECAST_WORKERS": "2"},
    )
    _ready(lab)
    previous = lab.current_run()
    assert previous is not None
    for fault in ("sigterm", "sigkill"):
        run = lab.start()
        assert run.wait_for(r"forecast_batch-\w+' - Finished", 180), run.text()[-2000:]
        started = time.monotonic()
        os.kill(run.process.pid, signal.SIGTERM if fault == "sigterm" else signal.SIGKILL)
        code = run.wait(60)
        assert time.monotonic() - started < 10
        assert code == (143 if fault == "sigterm" else -9), run.text()[-2000:]
        assert not lab.orphans(), lab.orphans()
        assert lab.intact(previous, run.run_id())
    time.sleep(3.2)
    nxt, code = lab.run()
    assert code == 0, nxt.text()[-2000:]


def test_a_cancellation_from_prefect_cancels_the_run(
    tmp_path: Path,
    small_agency,  # type: ignore[no-untyped-def]
) -> None:
    """Cancelling the flow run in Prefect (the UI, `prefect flow-run cancel`) stops the run as
    SIGTERM would: the heartbeat sees the state and cancels it."""
    from uuid import UUID

    import sqlalchemy as sa
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Cancelling

    from reports.schema import table

    home = tmp_path / "home"
    lab = _ready(
        Lab(
            home,
            f"sqlite:///{small_agency.path}",
            f"sqlite:///{home / 'reporting.db'}",
            str(PREFECT_API_URL.value()),
        )
    )
    previous = lab.current_run()
    run = lab.start()
    assert run.wait_for(r"Stage extract:", 180)
    forecast_run = table("forecast_run")
    with lab.engine() as engine, engine.connect() as connection:
        flow_run_id = connection.execute(
            sa.select(forecast_run.c.flow_run_id).where(forecast_run.c.run_id == run.run_id())
        ).scalar_one()
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Cancelling(), force=True)
    code = run.wait(60)
    assert code == 143, run.text()[-3000:]
    assert run.one_paragraph(), run.text()[-3000:]
    assert lab.status(run.run_id()) == "cancelled"
    assert lab.intact(previous or "", run.run_id())
