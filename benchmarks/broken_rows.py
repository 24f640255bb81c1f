"""What 5% of broken requests do to the plan, with and without putting lost demand back.

Usage (from the repository root):

    uv run python benchmarks/broken_rows.py [--facilities 40] [--share 0.05]

Builds the demo agency (seeded), copies it, and makes ``--share`` of its shift_requests rows
unreadable in the copy (``shift_start`` set to text no parser reads, spread evenly over the
rows), then runs the weekly flow three times: on the clean source, on the broken one, and on
the broken one with ``STAFFCAST_IMPUTE_LOST_DEMAND=false``. It prints, per run, the rows
quarantined, total base hires, total target pool and total pool-weeks, and their difference
from the clean plan, then the warnings the broken run printed. The goal (issue 11): within 2%
of the clean plan's hires and pools, or a warning in words a recruiter understands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _totals(reporting: str) -> dict[str, float]:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(reporting)
    with engine.connect() as conn:
        targets = pd.read_sql(
            "SELECT hires_needed, target_pool FROM current_recruiting_target "
            "WHERE scenario = 'base'",
            conn,
        )
        pools = pd.read_sql(
            "SELECT recommended_pool FROM current_on_call_pool WHERE scenario = 'base'", conn
        )
    engine.dispose()
    return {
        "hires": float(targets["hires_needed"].sum()),
        "target pool": float(targets["target_pool"].sum()),
        "pool-weeks": float(pools["recommended_pool"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facilities", type=int, default=40)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 30))
    parser.add_argument("--share", type=float, default=0.05, help="share of rows to break")
    parser.add_argument(
        "--offset", type=int, default=3, help="which rows: rowid modulo 1/share equals this"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="staffcast-broken-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["STAFFCAST_HOME"] = str(work / "home")
    import logging

    logging.getLogger("cmdstanpy").disabled = True
    from flows.weekly_forecast import weekly_forecast
    from staffcast.demo_agency import build_demo_agency

    clean = build_demo_agency(
        work / "clean.db", args.as_of, facilities=args.facilities, years=args.years, seed=7
    ).path
    broken = work / "broken.db"
    shutil.copy(clean, broken)
    every = max(1, round(1 / args.share))
    with sqlite3.connect(broken) as con:
        changed = con.execute(
            f"UPDATE shift_requests SET shift_start = 'see notes' "
            f"WHERE rowid % {every} = {args.offset % every}"
        ).rowcount
    print(f"{changed:,} shift_requests rows made unreadable (1 in {every}).")

    runs = [("clean", clean, True), ("broken, put back", broken, True)]
    runs.append(("broken, not put back", broken, False))
    results = {}
    warnings: tuple[str, ...] = ()
    for name, source, impute in runs:
        os.environ["STAFFCAST_IMPUTE_LOST_DEMAND"] = "true" if impute else "false"
        reporting = f"sqlite:///{work / (name.replace(' ', '_').replace(',', '') + '.db')}"
        started = time.perf_counter()
        summary = weekly_forecast(
            as_of=args.as_of, source_url=f"sqlite:///{source}", reporting_url=reporting
        )
        seconds = time.perf_counter() - started
        results[name] = (summary.rows_quarantined, _totals(reporting), seconds)
        if name == "broken, put back":
            warnings = summary.warnings

    base = results["clean"][1]
    print()
    print(f"{'run':<30} {'quarantined':>11} {'hires':>14} {'target pool':>16} {'pool-weeks':>16}")
    for name, (quarantined, totals, seconds) in results.items():
        name = f"{name} ({seconds:.0f} s)"
        cells = []
        for key in ("hires", "target pool", "pool-weeks"):
            change = (totals[key] - base[key]) / base[key] if base[key] else 0.0
            cells.append(f"{totals[key]:>7.0f} ({change:+.1%})")
        print(f"{name:<30} {quarantined:>11,} " + " ".join(f"{c:>16}" for c in cells))
    print()
    print("Warnings of the broken run:" if warnings else "No warnings.")
    for warning in warnings:
        print(f"  {warning}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
