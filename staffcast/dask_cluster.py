"""The Dask cluster a run's forecast batches run on (STAFFCAST_DASK_ADDRESS or _WORKERS).

Only the forecast stage goes there: each batch of series histories (``series_id, date,
demand``) is one Prefect task run (flows.weekly_forecast.forecast_batch) submitted through
prefect-dask's ``DaskTaskRunner``, and its forecasts come back. Extract, validation, planning and
publishing stay in the run's process: no source row travels. The task runs go through the
runner itself, not a subflow: Prefect sends a flow run's parameters with every task run it
submits (and to its API), and a subflow's parameters would be the whole history.

**The Prefect API on the workers.** A task run on a Dask worker records its own state and logs
in the Prefect API. The run hands its API URL to the workers with each task run (in the Prefect
settings that travel with it) and, for a local cluster, puts it in the workers' environment
with the run's other Prefect settings (``PREFECT_HOME`` ...): no worker starts a temporary
Prefect server of its own, even when the run itself uses one. Before any batch is submitted
every worker is asked to reach that API and to say which staffcast and Python it runs; a worker
that cannot reach it (the local Prefect server staffcast starts listens on 127.0.0.1, which
workers on other machines cannot reach) or runs another version stops the run with one
paragraph, before any forecast.

**A local cluster belongs to the run.** It starts with signals held (a SIGTERM meanwhile is
acted on as soon as the cluster can be stopped) and is stopped on every exit path,
:class:`~staffcast.run_control.RunCancelled` included; its worker processes exit when the run's
process dies, even by SIGKILL (distributed's worker processes watch a pipe from their parent
and exit when it closes).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TypedDict

from staffcast import __version__
from staffcast.errors import StaffcastError
from staffcast.run_control import CANCELLATION

if TYPE_CHECKING:
    from distributed import Client, LocalCluster
    from prefect.futures import PrefectFuture
    from prefect_dask import DaskTaskRunner

__all__ = ["WorkerReport", "check_engine", "dask_task_runner", "release", "worker_report"]

_API_TIMEOUT_SECONDS = 10.0
_STOP_SECONDS = 0.5
"""How long a worker of a cancelled or failed run's local cluster gets to stop before SIGKILL."""


class WorkerReport(TypedDict):
    """What one Dask worker says about itself before the run sends it work."""

    staffcast: str
    python: str
    api_error: str | None
    """Why the worker cannot reach the Prefect API; None when it can."""


def check_engine(address: str | None, workers: int) -> None:
    """A clear error (before any work) when both a scheduler and a local cluster are asked for."""
    if address and workers:
        raise StaffcastError(
            f"STAFFCAST_DASK_ADDRESS ({address}) and STAFFCAST_DASK_WORKERS ({workers}) are "
            "both set: the forecast batches run either on the Dask scheduler at that address "
            "or on a local cluster of that many worker processes that the run starts, not "
            "both. Unset one of them; nothing was run."
        )


def worker_report(api_url: str) -> WorkerReport:
    """Run on each Dask worker: its staffcast and Python versions, and whether it reaches the
    Prefect API at ``api_url`` (any HTTP answer counts: an API that wants a key still answers)."""
    import httpx

    error: str | None = None
    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=_API_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {
        "staffcast": __version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "api_error": error,
    }


@contextmanager
def dask_task_runner(address: str | None, workers: int) -> Iterator[DaskTaskRunner]:
    """A started ``DaskTaskRunner`` on the scheduler at ``address``, or on a LocalCluster of
    ``workers`` processes (one thread each) that lives as long as the block; inside a flow run
    (or with PREFECT_API_URL configured: task runs of no flow). Its workers were checked
    (:func:`worker_report`)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    check_engine(address, workers)
    if not address and workers < 1:
        raise StaffcastError(
            "A Dask cluster needs STAFFCAST_DASK_ADDRESS or STAFFCAST_DASK_WORKERS >= 1."
        )
    api_url = _prefect_api_url()
    # The API URL travels with every task run (Prefect serializes the current settings with it).
    with temporary_settings(updates={PREFECT_API_URL: api_url}), ExitStack() as stack:
        with CANCELLATION.protected():  # a cluster half started could not be stopped
            if address:
                runner = stack.enter_context(DaskTaskRunner(address=address))
            else:
                # Its scheduler and nannies live in the run's process; their INFO is not the run's.
                stack.enter_context(_log_level("distributed", logging.WARNING))
                cluster = stack.enter_context(_local_cluster(workers, api_url))
                runner = stack.enter_context(DaskTaskRunner(cluster=cluster))
            client = _connect(runner, address)
        _check_workers(client, api_url, address)
        yield runner


def release(future: PrefectFuture[Any]) -> None:
    """Drop a finished task run's result from the cluster once the run holds it: a worker lost
    later would otherwise compute it again (PrefectHQ/prefect#15442). Other futures: no-op."""
    drop = getattr(getattr(future, "wrapped_future", None), "release", None)
    if callable(drop):  # a distributed.Future's
        drop()


def _prefect_api_url() -> str:
    """The Prefect API this flow run records its state in (the configured one, or the
    temporary server Prefect started for this process when none is configured)."""
    from prefect.context import FlowRunContext
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        return str(configured)
    context = FlowRunContext.get()
    if context is None or context.client is None:
        raise StaffcastError(
            "The forecast batches run on Dask inside a flow run or with PREFECT_API_URL set."
        )
    return str(context.client.api_url)


@contextmanager
def _log_level(name: str, level: int) -> Iterator[None]:
    """Logger ``name`` at ``level`` or above for the block."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


@contextmanager
def _local_cluster(workers: int, api_url: str) -> Iterator[LocalCluster]:
    """A LocalCluster of ``workers`` processes of one thread, on 127.0.0.1 only, with the
    run's Prefect settings in their environment (they also inherit the run's environment);
    closed when the block ends, its workers stopped at once when it ends by an exception."""
    from distributed import LocalCluster
    from prefect.settings import get_current_settings

    environment = get_current_settings().to_environment_variables(exclude_unset=True)
    environment["PREFECT_API_URL"] = api_url
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env=environment,
        )
    except Exception as exc:  # noqa: BLE001 - e.g. a port or a worker that would not start
        raise StaffcastError(
            f"The local Dask cluster of {workers} worker processes (STAFFCAST_DASK_WORKERS) "
            f"did not start ({type(exc).__name__}: {exc}); nothing was published."
        ) from exc
    try:
        yield cluster
    except BaseException:
        # A cancelled or failed run stops its workers now: a nanny gives a busy worker 4 s.
        cluster.sync(_stop_now, list(cluster.workers.values()))
        raise
    finally:
        cluster.close()


async def _stop_now(nannies: list[Any]) -> None:
    await asyncio.gather(*(n.close(timeout=_STOP_SECONDS) for n in nannies))


def _connect(runner: DaskTaskRunner, address: str | None) -> Client:
    """The runner's Dask client, connected to the scheduler at ``address`` (or the cluster's)."""
    try:
        return runner.client
    except Exception as exc:  # noqa: BLE001 - e.g. OSError: timed out connecting
        where = f"at {address} (STAFFCAST_DASK_ADDRESS)" if address else "of the local cluster"
        raise StaffcastError(
            f"The Dask scheduler {where} did not answer ({type(exc).__name__}: {exc}). Start "
            "it (`dask scheduler`), or correct the address; nothing was published."
        ) from exc


def _check_workers(client: Client, api_url: str, address: str | None) -> None:
    """Every worker runs this staffcast and Python and reaches the Prefect API, or one
    paragraph says which does not and what to do."""
    where = f"the Dask scheduler at {address}" if address else "the local Dask cluster"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        reports: dict[str, WorkerReport] = client.run(worker_report, api_url)
    except Exception as exc:  # noqa: BLE001 - e.g. ModuleNotFoundError: staffcast
        raise StaffcastError(
            f"A worker of {where} could not run staffcast ({type(exc).__name__}: {exc}). "
            f"Every worker needs staffcast {__version__} installed from its lock (uv.lock) on "
            f"Python {python}; nothing was published."
        ) from exc
    if not reports:
        _logger().warning(
            "%s has no workers yet: the forecast batches wait for workers to join", where
        )
        return
    versions = {
        worker: f"staffcast {r['staffcast']} on Python {r['python']}"
        for worker, r in reports.items()
        if (r["staffcast"], r["python"]) != (__version__, python)
    }
    if versions:
        raise StaffcastError(
            f"Workers of {where} run another staffcast or Python than this run (staffcast "
            f"{__version__} on Python {python}): {_listed(versions)}. Install this version from "
            "its lock (uv.lock) on every worker, so every engine forecasts the same numbers; "
            "nothing was published."
        )
    unreachable = {worker: r["api_error"] for worker, r in reports.items() if r["api_error"]}
    if unreachable:
        raise StaffcastError(
            f"Workers of {where} cannot reach the Prefect API this run records its state in "
            f"({api_url}): {_listed(unreachable)}. Each batch is a Prefect task run that the "
            "worker records there itself. The local Prefect server staffcast starts when "
            "PREFECT_API_URL is unset listens on 127.0.0.1, which workers on other machines "
            "cannot reach: run a Prefect server they can reach (`prefect server start --host "
            "0.0.0.0`) or use Prefect Cloud, and set PREFECT_API_URL to it in the run's "
            "environment (e.g. http://this-host:4200/api; the workers get it from the run). "
            "Nothing was published."
        )
    _logger().info(
        "Forecast batches run on %s: %d worker(s), Prefect API %s", where, len(reports), api_url
    )


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger inside one (its lines reach the Prefect API), else the module's."""
    from prefect import get_run_logger
    from prefect.context import FlowRunContext

    return get_run_logger() if FlowRunContext.get() is not None else logging.getLogger(__name__)


def _listed(by_worker: dict[str, Any], most: int = 3) -> str:
    shown = [f"{worker} ({why})" for worker, why in sorted(by_worker.items())[:most]]
    more = len(by_worker) - most
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
