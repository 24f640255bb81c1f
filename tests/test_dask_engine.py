"""The forecast batches on a Dask cluster (issue 13): the whole weekly flow on a real
distributed.LocalCluster of two worker processes publishes the process pool's numbers, its
batches are task runs the workers record in the run's Prefect API, and a cancelled run leaves
no worker behind; a scheduler address and a local cluster together are one clear error."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import sqlalchemy as sa

from flows.weekly_forecast import weekly_forecast
from reports.schema import reporting_engine
from staffcast.dask_cluster import check_engine, worker_report
from staffcast.errors import StaffcastError
from staffcast.run_control import CANCELLATION, RunCancelled
from tests.conftest import AS_OF

pytestmark = pytest.mark.usefixtures("prefect_harness")

#: What a planner reads, keyed so that two runs' rows line up.
PUBLISHED = {
    "current_demand_forecast": ["facility_id", "role", "date"],
    "current_regional_forecast": ["region", "role", "date"],
    "current_model_evaluation": ["facility_id", "role", "model"],
    "current_on_call_pool": ["scenario", "region", "role", "week_start"],
    "current_recruiting_target": ["scenario", "region", "role"],
}


@pytest.fixture()
def four_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The small agency's 16 series in four batches; a short horizon and few paths (speed)."""
    monkeypatch.setenv("STAFFCAST_SERIES_PER_TASK", "4")
    monkeypatch.setenv("STAFFCAST_HORIZON_DAYS", "56")
    monkeypatch.setenv("STAFFCAST_SAMPLE_PATHS", "200")


def _published(url: str) -> dict[str, pd.DataFrame]:
    engine = reporting_engine(url)
    try:
        with engine.connect() as connection:
            return {
                view: pd.read_sql(sa.text(f"SELECT * FROM {view}"), connection)
                .drop(columns=["run_id"])
                .sort_values(keys, ignore_index=True)
                for view, keys in PUBLISHED.items()
            }
    finally:
        engine.dispose()


def _children() -> set[int]:
    """This process's descendants, but multiprocessing's resource tracker (one per process,
    started with the first worker process, kept until the process exits)."""
    found = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(process.cmdline()):
                found.add(process.pid)
        except psutil.Error:  # ended meanwhile
            continue
    return found


def _left(before: set[int], wait: float = 10.0) -> set[int]:
    """Processes started since ``before`` that are still alive after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _task_runs(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def _flow_run_id(url: str) -> str:
    engine = reporting_engine(url)
    try:
        with engine.connect() as connection:
            return str(
                connection.exec_driver_sql(
                    "SELECT flow_run_id FROM current_forecast_run"
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.usefixtures("four_batches")
def test_a_dask_cluster_publishes_the_numbers_of_the_process_pool(
    small_agency,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = f"sqlite:///{small_agency.path}"
    in_pool = f"sqlite:///{tmp_path / 'pool.db'}"
    on_dask = f"sqlite:///{tmp_path / 'dask.db'}"
    monkeypatch.setenv("STAFFCAST_FORECAST_WORKERS", "2")
    weekly_forecast(as_of=AS_OF, source_url=source, reporting_url=in_pool)

    before = _children()
    monkeypatch.setenv("STAFFCAST_DASK_WORKERS", "2")
    summary = weekly_forecast(as_of=AS_OF, source_url=source, reporting_url=on_dask)
    assert summary.series == 16
    assert not _left(before), "the run's LocalCluster outlived it"

    pool, dask = _published(in_pool), _published(on_dask)
    for view in PUBLISHED:
        assert len(dask[view]) > 0, view
        pd.testing.assert_frame_equal(dask[view], pool[view], check_exact=True, obj=view)
    # The workers recorded each batch's task run in the run's Prefect API themselves.
    batches = [r for r in _task_runs(_flow_run_id(on_dask)) if r.name.startswith("forecast_batch")]
    assert len(batches) == 4
    assert all(r.state is not None and r.state.is_completed() for r in batches)


@pytest.mark.slow
@pytest.mark.usefixtures("four_batches")
def test_a_run_cancelled_on_dask_stops_its_local_cluster(
    small_agency,  # type: ignore[no-untyped-def]
    staffcast_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM while the workers run the first batches: the run is cancelled within seconds
    and recorded as such, and no worker process is left."""
    monkeypatch.setenv("STAFFCAST_DASK_WORKERS", "2")
    reporting = f"sqlite:///{staffcast_home / 'reporting.db'}"
    before = _children()
    stop = threading.Event()
    signalled: list[float] = []

    def cancel_as_batches_run() -> None:
        while not stop.wait(0.05):
            if len(_children() - before) >= 2:  # the workers are up: batches follow at once
                stop.wait(4.0)
                signalled.append(time.monotonic())
                CANCELLATION.request(signal.SIGTERM)
                return

    watcher = threading.Thread(target=cancel_as_batches_run, daemon=True)
    watcher.start()
    try:
        with pytest.raises(RunCancelled, match="during stage forecast"):
            weekly_forecast(
                as_of=AS_OF, source_url=f"sqlite:///{small_agency.path}", reporting_url=reporting
            )
        assert signalled and time.monotonic() - signalled[0] < 10
    finally:
        stop.set()
        watcher.join(timeout=5)
        CANCELLATION.reset()  # the signal is this process's: later tests' runs must not see it
    assert not _left(before), "a cancelled run left its Dask workers behind"
    engine = reporting_engine(reporting)
    with engine.connect() as connection:
        status = connection.exec_driver_sql("SELECT status FROM forecast_run").scalar_one()
    engine.dispose()
    assert status == "cancelled"


_HOLD_A_CLUSTER = """
import json, os, time
from staffcast.dask_cluster import dask_task_runner
def seen():
    return [os.getpid(), os.environ.get("PREFECT_HOME"), os.environ.get("PREFECT_API_URL")]
with dask_task_runner(None, 2) as runner:
    print(json.dumps(list(runner.client.run(seen).values())), flush=True)
    time.sleep(120)
"""


def test_the_workers_of_a_killed_run_exit_with_it(tmp_path: Path) -> None:
    """The local cluster's workers get the run's Prefect home and API; SIGKILL leaves no
    cleanup to the run: the workers see their parent go (distributed's parent pipe) and exit
    by themselves."""
    import json
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    api = str(PREFECT_API_URL.value())
    home = str(tmp_path / "prefect")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_CLUSTER],
        env={**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": home},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None
        seen = json.loads(holder.stdout.readline() or "[]")
        assert len(seen) == 2, "the cluster did not start"
        assert all(s[1:] == [home, api] for s in seen), seen
        workers = [s[0] for s in seen]
    finally:
        holder.kill()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if psutil.pid_exists(p) and not _zombie(p)]
    assert not alive, "worker processes outlived their SIGKILLed run"


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def test_a_scheduler_and_a_local_cluster_together_are_one_clear_error(
    small_agency,  # type: ignore[no-untyped-def]
    staffcast_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(StaffcastError, match="both set"):
        check_engine("tcp://127.0.0.1:8786", 2)
    check_engine("tcp://127.0.0.1:8786", 0)
    check_engine(None, 2)

    monkeypatch.setenv("STAFFCAST_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    monkeypatch.setenv("STAFFCAST_DASK_WORKERS", "2")
    with pytest.raises(StaffcastError, match="STAFFCAST_DASK_ADDRESS.*both set") as refused:
        weekly_forecast(
            as_of=AS_OF,
            source_url=f"sqlite:///{small_agency.path}",
            reporting_url=f"sqlite:///{staffcast_home / 'reporting.db'}",
        )
    assert "Unset one of them" in str(refused.value)
    assert not (staffcast_home / "reporting.db").exists()  # refused before any work


def test_a_worker_says_when_it_cannot_reach_the_prefect_api() -> None:
    """What each worker is asked before the run sends it work (staffcast.dask_cluster)."""
    from prefect.settings import PREFECT_API_URL

    from staffcast import __version__

    reachable = worker_report(str(PREFECT_API_URL.value()))
    assert reachable["api_error"] is None and reachable["staffcast"] == __version__
    unreachable = worker_report("http://127.0.0.1:9/api")  # the discard port: refused
    assert unreachable["api_error"] is not None and "Connect" in unreachable["api_error"]
