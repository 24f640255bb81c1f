"""Wall time, memory and CPU of the weekly run, stage by stage.

Usage (from the repository root; psutil lives in the ``bench`` dependency group):

    uv run python benchmarks/weekly_run.py demo                  # `staffcast demo`, end to end
    python3 -m uv run --group bench python benchmarks/weekly_run.py scale --facilities 500 --years 3

``demo`` runs the real console command twice in a fresh STAFFCAST_HOME (the first run pays for
Prefect's one-time database migration) and reports each wall time. ``scale`` builds a demo
agency of the given size, then runs the weekly flow on it in this process and prints per stage
its seconds, the flow process's peak resident memory, and the peak memory and CPU seconds of the
whole process tree: this process and every descendant (the forecast workers and their
forkserver, the Prefect server Prefect starts when PREFECT_API_URL is unset), sampled every
0.2 s in a background thread (:class:`ProcessTreeSampler`). Memory is the sum of resident set
sizes, so pages shared between processes count once per process. CPU seconds (user + system)
include descendants that exited during the run: a process's own times and those of the children
it reaped (``children_user``/``children_system``) are summed over the live tree, so a worker's
time moves into its parent's when it ends instead of being lost.

In the same run, Prophet (defaults + the agency's country holidays, one fit and a forecast of
the run's horizon with 1000 sample paths: ``_prophet_one`` of benchmarks/accuracy.py) is fitted
to ``--prophet-series`` of the same series, on the demand history the run forecast from, one
after another in this process; its CPU seconds per series (this process and the Stan processes
it starts) are set beside staffcast's, for the whole run and for its forecast stage alone.
Files go to benchmarks/out/ (ignored by git).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from flows.weekly_forecast import RunSummary

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def _demo(as_of: date) -> None:
    home = Path(tempfile.mkdtemp(prefix="staffcast-bench-"))
    try:
        for attempt in ("first (fresh Prefect home)", "second (warm Prefect home)"):
            started = time.perf_counter()
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "staffcast.cli",
                    "--home",
                    str(home),
                    "demo",
                    "--as-of",
                    as_of.isoformat(),
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=ROOT,
            )
            wall = time.perf_counter() - started
            if result.returncode != 0:
                sys.exit(f"staffcast demo failed:\n{result.stderr[-3000:]}")
            stages = next(
                (line.strip() for line in result.stdout.splitlines() if "stages:" in line), ""
            )
            print(f"staffcast demo, {attempt}: {wall:.1f} s wall; {stages}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


class ProcessTreeSampler:
    """This process and all its descendants, sampled every ``interval_s`` seconds in a
    background thread (``with ProcessTreeSampler() as tree: ...``).

    Each sample is (Unix time s, summed resident memory MB, CPU seconds). CPU seconds are user +
    system of every live process plus the times of the children each has reaped, so the total
    only grows: a worker that ends moves its time into its parent's children times (the
    forkserver's, or this process's RUSAGE_CHILDREN). Only a process whose parent died before
    it, and was then reaped outside the tree, is lost. ``cpu_by_kind`` splits the CPU seconds
    between the first and the last sample by kind of process (:meth:`kind`).
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        try:
            import psutil
        except ImportError:
            sys.exit(
                "psutil is missing: it is in the bench dependency group, run "
                "`python3 -m uv run --group bench python benchmarks/weekly_run.py scale ...`"
            )
        self._psutil = psutil
        self.root = psutil.Process()
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, float]] = []
        self.cpu_by_kind: dict[str, float] = {}
        self._first_cpu_by_kind: dict[str, float] | None = None
        self.pids: set[int] = set()
        self._kinds: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-tree", daemon=True)

    def __enter__(self) -> ProcessTreeSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def kind(self, process: Any) -> str:
        """'flow process', 'Prefect server' or 'workers and other children' (by command line)."""
        if process.pid == self.root.pid:
            return "flow process"
        if process.pid not in self._kinds:
            try:
                command = " ".join(process.cmdline())
            except self._psutil.Error:
                command = ""
            server = "uvicorn" in command or "prefect.server" in command
            self._kinds[process.pid] = "Prefect server" if server else "workers and other children"
        return self._kinds[process.pid]

    def sample(self) -> None:
        """One sample of the tree's memory and CPU seconds."""
        psutil = self._psutil
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            processes = [self.root]
        rss = 0
        cpu: dict[str, float] = {}
        for process in processes:
            try:
                with process.oneshot():
                    memory = process.memory_info().rss
                    times = process.cpu_times()
            except psutil.Error:  # ended between the listing and the reading
                continue
            seconds = times.user + times.system + times.children_user + times.children_system
            rss += memory
            kind = self.kind(process)
            cpu[kind] = cpu.get(kind, 0.0) + seconds
            self.pids.add(process.pid)
        self.samples.append((time.time(), rss / 2**20, sum(cpu.values())))
        if self._first_cpu_by_kind is None:
            self._first_cpu_by_kind = cpu
        self.cpu_by_kind = {k: v - self._first_cpu_by_kind.get(k, 0.0) for k, v in cpu.items()}

    def peak_mb(self, start: float = -np.inf, end: float = np.inf) -> float:
        """The largest summed resident memory (MB) sampled between two Unix times (s); a
        window shorter than the interval gets the memory at its middle."""
        times, rss, _ = (np.array(column) for column in zip(*self.samples, strict=True))
        inside = (times >= start) & (times <= end)
        if inside.any():
            return float(rss[inside].max())
        return float(np.interp((start + end) / 2, times, rss))

    def cpu_s(self, start: float, end: float) -> float:
        """CPU seconds of the tree between two Unix times (s), interpolated between samples."""
        times, _, cpu = (np.array(column) for column in zip(*self.samples, strict=True))
        return float(np.interp(end, times, cpu) - np.interp(start, times, cpu))


def _cpu_s_self_and_reaped() -> float:
    """User + system seconds of this process (all threads) and of its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def _keep_history(weekly: ModuleType) -> dict[str, pd.DataFrame]:
    """The demand history the run forecasts (``series_id, date, demand``), kept from the flow's
    demand stage for Prophet: the same days the engine learns from, without a second extract."""
    kept: dict[str, pd.DataFrame] = {}
    build_demand: Callable[..., Any] = weekly.build_demand

    def keeping(*args: Any, **kwargs: Any) -> Any:
        result = build_demand(*args, **kwargs)
        kept["history"] = result[0]  # (history, booked)
        return result

    weekly.build_demand = keeping  # type: ignore[attr-defined]
    return kept


def _prophet_cpu_s(
    history: pd.DataFrame, count: int, horizon: int, country: str
) -> tuple[float, list[str], list[int]]:
    """Prophet's mean CPU seconds per series on ``count`` series spread over the sorted ids,
    one after another in this process; also the series and their days of history."""
    logging.getLogger("prophet.plot").disabled = True  # "Importing plotly failed"
    logging.getLogger("cmdstanpy").disabled = True
    import prophet.forecaster  # it sets the "prophet" logger to INFO as it loads
    from accuracy import _prophet_one  # the accuracy benchmark's Prophet, run the same way

    prophet.forecaster.logger.setLevel(logging.WARNING)  # "Disabling daily seasonality"

    ids = sorted(history["series_id"].unique())
    picks = sorted({ids[int(i)] for i in np.linspace(0, len(ids) - 1, min(count, len(ids)))})
    cpu = 0.0
    days = []
    for seed, series_id in enumerate(picks):
        one = history[history["series_id"] == series_id].sort_values("date")
        days.append(len(one))
        before = _cpu_s_self_and_reaped()
        _prophet_one(one["date"].iloc[0], one["demand"].to_numpy(float), horizon, country, seed)
        cpu += _cpu_s_self_and_reaped() - before
    return cpu / len(picks), picks, days


def _scale(
    facilities: int,
    years: float,
    as_of: date,
    keep: bool,
    reporting_url: str | None = None,
    prophet_series: int = 5,
) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    home = OUT / f"agency-{facilities}x{years:g}"
    os.environ["STAFFCAST_HOME"] = str(home)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    (home / "prefect").mkdir(parents=True, exist_ok=True)

    from staffcast.demo_agency import build_demo_agency

    source = home / "ops.db"
    started = time.perf_counter()
    if not (keep and source.exists()):
        agency = build_demo_agency(source, as_of, facilities=facilities, years=years, seed=11)
        print(
            f"built agency: {agency.facilities} facilities, {agency.shift_requests:,} "
            f"shift_requests, {agency.nurses:,} nurses, {agency.shift_offers:,} offers in "
            f"{time.perf_counter() - started:.1f} s ({source.stat().st_size / 1e6:.0f} MB)"
        )
    if reporting_url is None:
        reporting = home / "reporting.db"
        reporting.unlink(missing_ok=True)
        reporting_url = f"sqlite:///{reporting}"

    import flows.weekly_forecast as weekly

    kept = _keep_history(weekly)
    with ProcessTreeSampler() as tree:
        began = time.time()
        summary = weekly.weekly_forecast(
            as_of=as_of, source_url=f"sqlite:///{source}", reporting_url=reporting_url
        )
        ended = time.time()
    wall = ended - began
    print(
        f"\nweekly run on {facilities} facilities x {years:g} years: {summary.series} series, "
        f"{summary.rows_extracted:,} requests extracted = {summary.rows_used:,} used + "
        f"{summary.rows_quarantined:,} quarantined"
    )
    print(
        f"{'stage':<15} {'seconds':>8} {'flow peak MB':>13} {'tree peak MB':>13} {'tree CPU s':>11}"
    )
    staged = 0.0
    windows = []
    for name, metrics in summary.stages.items():
        start = metrics.get("started_at")
        seconds = metrics["seconds"] or 0.0
        tree_mb, tree_cpu = "-", "-"
        if start is not None:
            windows.append((start, start + seconds))
            cpu = tree.cpu_s(start, start + seconds)
            staged += cpu
            tree_mb, tree_cpu = f"{tree.peak_mb(start, start + seconds):.0f}", f"{cpu:.1f}"
        print(
            f"{name:<15} {seconds:>8.1f} {metrics['peak_rss_mb'] or 0:>13.0f} {tree_mb:>13} "
            f"{tree_cpu:>11}"
        )
    total_cpu = tree.cpu_s(began, ended)
    flow_peak = max((m["peak_rss_mb"] or 0) for m in summary.stages.values())
    outside = [mb for t, mb, _ in tree.samples if not any(a <= t <= b for a, b in windows)]
    if windows and outside:
        print(
            f"{'outside stages':<15} {'-':>8} {'-':>13} {max(outside):>13.0f} "
            f"{total_cpu - staged:>11.1f}   (Prefect start-up, artifacts, between stages)"
        )
    print(
        f"{'whole run':<15} {wall:>8.1f} {flow_peak:>13.0f} {tree.peak_mb():>13.0f} "
        f"{total_cpu:>11.1f}   (wall incl. Prefect overhead)"
    )
    split = " + ".join(f"{kind} {cpu:.1f}" for kind, cpu in sorted(tree.cpu_by_kind.items()))
    print(
        f"process tree: {len(tree.pids)} processes (this one and its descendants, sampled every "
        f"{tree.interval_s:g} s); CPU s during the run {total_cpu:.1f} = {split}"
    )
    _published_rows(reporting_url, summary.run_id)
    if prophet_series > 0:
        _versus_prophet(kept, summary, tree, total_cpu, prophet_series)


def _versus_prophet(
    kept: dict[str, pd.DataFrame],
    summary: RunSummary,
    tree: ProcessTreeSampler,
    total_cpu: float,
    count: int,
) -> None:
    """CPU seconds per series: staffcast's (whole run, forecast stage) beside Prophet's."""
    from staffcast.settings import Settings

    if "history" not in kept:
        sys.exit("The run's demand history was not kept: has the flow's build_demand changed?")
    settings = Settings()
    prophet, picks, days = _prophet_cpu_s(
        kept["history"], count, settings.horizon_days, settings.holiday_country
    )
    forecast = summary.stages.get("forecast", {})
    rows = [("whole run, process tree", total_cpu / summary.series)]
    start, seconds = forecast.get("started_at"), forecast.get("seconds")
    if start is not None and seconds is not None:
        cpu = tree.cpu_s(start, start + seconds)
        rows.append(("forecast stage, process tree", cpu / summary.series))
    print(
        f"\nCPU seconds per series: staffcast ({summary.series} series) and Prophet "
        f"({len(picks)} of the same series, {min(days)} to {max(days)} days of history, horizon "
        f"{settings.horizon_days} days)"
    )
    print(
        f"{'staffcast measured over':<30} {'staffcast':>10} {'Prophet':>10} "
        f"{'staffcast/Prophet':>18}"
    )
    for label, ours in rows:
        print(f"{label:<30} {ours:>10.3f} {prophet:>10.3f} {ours / prophet:>18.2f}")
    print(
        f"Prophet: defaults + {settings.holiday_country} holidays, one fit and a "
        f"{settings.horizon_days}-day forecast with 1000 sample paths per series, no backtests; "
        f"series {', '.join(picks)}"
    )


def _published_rows(url: str, run_id: str) -> None:
    """Rows the run published, per table (the figure to quote beside the publish time)."""
    from sqlalchemy import func, select

    from reports.schema import CHILD_TABLES, reporting_engine, table

    engine = reporting_engine(url)
    total = 0
    with engine.connect() as connection:
        for name in CHILD_TABLES:
            child = table(name)
            rows = connection.execute(
                select(func.count()).select_from(child).where(child.c.run_id == run_id)
            ).scalar_one()
            total += rows
            print(f"  {name:<20} {rows:>10,} rows")
    engine.dispose()
    print(f"  {'total':<20} {total:>10,} rows published to {engine.url.get_backend_name()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["demo", "scale"])
    parser.add_argument("--facilities", type=int, default=500)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 30))
    parser.add_argument("--keep", action="store_true", help="reuse an agency already built")
    parser.add_argument(
        "--reporting",
        help="reporting database URL (default: a fresh SQLite file beside the agency)",
    )
    parser.add_argument(
        "--prophet-series",
        type=int,
        default=5,
        help="series Prophet is fitted to for its CPU seconds per series (0: none; default 5)",
    )
    args = parser.parse_args()
    if args.mode == "demo":
        _demo(args.as_of)
    else:
        _scale(
            args.facilities, args.years, args.as_of, args.keep, args.reporting, args.prophet_series
        )


if __name__ == "__main__":
    main()
