"""Wall time and peak memory of the weekly run, stage by stage.

Usage (from the repository root):

    uv run python benchmarks/weekly_run.py demo                  # `staffcast demo`, end to end
    uv run python benchmarks/weekly_run.py scale --facilities 500 --years 3

``demo`` runs the real console command twice in a fresh STAFFCAST_HOME (the first run pays for
Prefect's one-time database migration) and reports each wall time. ``scale`` builds a demo
agency of the given size, then runs the weekly flow on it in this process and prints seconds and
peak resident memory per stage. Files go to benchmarks/out/ (ignored by git).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

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


def _scale(
    facilities: int, years: float, as_of: date, keep: bool, reporting_url: str | None = None
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

    from flows.weekly_forecast import weekly_forecast

    started = time.perf_counter()
    summary = weekly_forecast(
        as_of=as_of, source_url=f"sqlite:///{source}", reporting_url=reporting_url
    )
    wall = time.perf_counter() - started
    print(
        f"\nweekly run on {facilities} facilities x {years:g} years: {summary.series} series, "
        f"{summary.rows_extracted:,} requests extracted = {summary.rows_used:,} used + "
        f"{summary.rows_quarantined:,} quarantined"
    )
    print(f"{'stage':<10} {'seconds':>9} {'peak RSS MB':>12}")
    for name, metrics in summary.stages.items():
        print(f"{name:<10} {metrics['seconds']:>9.1f} {metrics['peak_rss_mb'] or 0:>12.0f}")
    peak = max((m["peak_rss_mb"] or 0) for m in summary.stages.values())
    print(f"{'flow':<10} {wall:>9.1f} {peak:>12.0f}   (flow wall incl. Prefect overhead)")
    _published_rows(reporting_url, summary.run_id)


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
    args = parser.parse_args()
    if args.mode == "demo":
        _demo(args.as_of)
    else:
        _scale(args.facilities, args.years, args.as_of, args.keep, args.reporting)


if __name__ == "__main__":
    main()
