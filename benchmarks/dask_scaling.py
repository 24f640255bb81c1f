"""How the forecast stage scales on a Dask LocalCluster: seconds and efficiency per worker count.

Usage (from the repository root; one command, its table on stdout):

    python3 -m uv run python benchmarks/dask_scaling.py                  # 1 and 2 workers
    python3 -m uv run python benchmarks/dask_scaling.py --workers 1 8 16 --series 2048 \\
        --series-per-task 64 --time-limit 3600                           # a 16-core machine

The history is the weekly run's own: a demo agency with two series (RN, LPN) per facility,
enough facilities for ``--series`` series and ``--years`` of history, read, validated and turned
into daily demand as the run does (cached in benchmarks/out/, so a second call skips it). Its
series go into batches of ``--series-per-task`` (the run's ``series_per_task``) exactly as the
run makes them (flows.weekly_forecast.series_batches), and for each worker count k a fresh
LocalCluster of k worker processes of one thread (staffcast.dask_cluster, the run's own code)
forecasts every batch as a Prefect task run, recorded in a local Prefect server the script
starts. Per k it prints the seconds to start the cluster and warm its workers (import
staffcast), the wall seconds of the forecast (first batch submitted to last forecast back) and
the efficiency T1 / (k x Tk) (against the smallest k when 1 is not in the list).

Give every worker several batches of equal size: with B batches and k workers the last round
leaves workers idle unless k divides B (the default 1000 series in batches of 250 make four).
``--time-limit`` (seconds, the whole script) stops waiting and prints the rows measured so far.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
AS_OF = date(2025, 11, 3)


@dataclass
class Row:
    workers: int
    start_s: float | None = None
    forecast_s: float | None = None
    note: str = ""


def _prepare_environment(home: Path) -> None:
    """A throwaway Prefect home, set before Prefect is imported; quiet task-run lines."""
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _history(series: int, years: float, seed: int) -> Any:
    """``series_id, date, demand`` of ``series`` demo series, through the run's own stages."""
    import pandas as pd

    cache = OUT / f"dask-scaling-history-{series}s-{years:g}y-seed{seed}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    from data_contracts.validate import validate_with_settings
    from flows.weekly_forecast import build_demand
    from staffcast.demo_agency import build_demo_agency
    from staffcast.retry import read_source
    from staffcast.settings import Settings

    started = time.perf_counter()
    facilities = max(4, math.ceil(series / 2))
    with tempfile.TemporaryDirectory(prefix="staffcast-scaling-") as folder:
        agency = build_demo_agency(
            Path(folder) / "ops.db", AS_OF, facilities=facilities, years=years, seed=seed
        )
        settings = Settings(history_days=math.ceil(years * 365.25))
        source = read_source(f"sqlite:///{agency.path}", AS_OF, settings)
        validated = validate_with_settings(source, settings)
        history, _ = build_demand.fn(validated, source, settings)  # the run's own demand step
    ids = sorted(history["series_id"].unique())[:series]
    history = history.loc[history["series_id"].isin(ids), ["series_id", "date", "demand"]]
    history = history.reset_index(drop=True)
    OUT.mkdir(parents=True, exist_ok=True)
    history.to_parquet(cache)
    print(
        f"history: {len(ids)} series from {facilities} demo facilities in "
        f"{time.perf_counter() - started:.0f} s (cached in {cache.relative_to(ROOT)})",
        file=sys.stderr,
    )
    return history


def _warm() -> None:
    """On each worker: import what a batch needs, so the timing is the forecast's."""
    import flows.weekly_forecast  # noqa: F401


def _measure(workers: int, batches: list[Any], horizon: int, deadline: float) -> Row:
    """Forecast every batch on a fresh LocalCluster of ``workers`` processes."""
    import pandas as pd
    from prefect.futures import as_completed

    from flows.weekly_forecast import forecast_batch
    from models.calendar import HolidayCalendar
    from models.forecasting import EngineConfig
    from staffcast.dask_cluster import dask_task_runner, release

    row = Row(workers)
    config = EngineConfig(calendar=HolidayCalendar())
    start = pd.Timestamp(AS_OF)
    began = time.perf_counter()
    with dask_task_runner(None, workers) as runner:
        runner.client.run(_warm)
        row.start_s = time.perf_counter() - began
        began = time.perf_counter()
        futures = [
            runner.submit(
                forecast_batch,
                {
                    "history": batch,
                    "horizon": horizon,
                    "config": config,
                    "start": start,
                    "processes": None,
                },
            )
            for batch in batches
        ]
        try:
            for future in as_completed(futures, timeout=max(1.0, deadline - time.monotonic())):
                future.result()
                release(future)
        except TimeoutError:
            row.note = "stopped at the time limit"
            return row
        row.forecast_s = time.perf_counter() - began
    return row


def _table(rows: list[Row], series: int, batches: int, per_task: int) -> str:
    measured = [r for r in rows if r.forecast_s is not None]
    base = min(measured, key=lambda r: r.workers) if measured else None
    lines = [
        f"Forecast stage on a Dask LocalCluster: {series} series in {batches} batches of "
        f"{per_task}, {os.cpu_count()} CPU cores",
        "",
        "| workers | cluster start + warm-up (s) | forecast (s) | speed-up | efficiency |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if row.forecast_s is None or base is None or base.forecast_s is None:
            lines.append(f"| {row.workers} | {_s(row.start_s)} | {row.note or '-'} | | |")
            continue
        speedup = base.workers * base.forecast_s / row.forecast_s
        lines.append(
            f"| {row.workers} | {_s(row.start_s)} | {row.forecast_s:.1f} | {speedup:.2f}x | "
            f"{speedup / row.workers:.0%} |"
        )
    if base is not None and base.workers != 1:
        lines += ["", f"Speed-up and efficiency against {base.workers} worker(s) x its time."]
    return "\n".join(lines)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--series-per-task", type=int, default=250)
    parser.add_argument("--years", type=float, default=3.0, help="years of history")
    parser.add_argument("--horizon", type=int, default=182, help="forecast days")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--time-limit", type=float, default=3600, help="seconds for the whole script"
    )
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.time_limit

    with tempfile.TemporaryDirectory(prefix="staffcast-scaling-prefect-") as home:
        _prepare_environment(Path(home))
        from flows.weekly_forecast import series_batches
        from staffcast.prefect_server import local_prefect_api

        history = _history(args.series, args.years, args.seed)
        batches = series_batches(history, args.series_per_task)
        series = int(history["series_id"].nunique())
        rows: list[Row] = []
        with local_prefect_api(Path(home), startup_seconds=180):
            for workers in args.workers:
                if time.monotonic() >= deadline:
                    rows.append(Row(workers, note="not run: time limit"))
                    continue
                rows.append(_measure(workers, batches, args.horizon, deadline))
                print(f"measured {rows[-1]}", file=sys.stderr)
    print(_table(rows, series, len(batches), args.series_per_task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
