"""Time and peak memory of the data contracts on a large source.

Usage (from the repository root):

    uv run python benchmarks/validation.py --facilities 1300 --years 3    # ~10M shift_requests

Builds (once, reused afterwards) a demo agency of that size under benchmarks/out/, then reads
and validates every source table exactly as ``staffcast validate`` and the weekly run do, and
prints rows, seconds per step and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facilities", type=int, default=1300)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 30))
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    path = ROOT / "benchmarks" / "out" / f"agency-{args.facilities}x{args.years:g}" / "ops.db"
    if not path.exists():
        from staffcast.demo_agency import build_demo_agency

        started = time.perf_counter()
        build_demo_agency(path, args.as_of, args.facilities, args.years, args.seed)
        print(f"built {path} in {time.perf_counter() - started:.0f} s")

    from data_contracts.validate import validate_extract
    from staffcast.source import connect_source, read_source

    timezone = "America/Chicago"
    baseline = _peak_mb()
    started = time.perf_counter()
    engine = connect_source(f"sqlite:///{path}")
    with engine.connect() as conn:
        extract = read_source(conn, args.as_of, timezone)
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = validate_extract(extract, timezone, max_quarantine_share=0.1, recent_days=14)
    check_seconds = time.perf_counter() - started

    for table, c in result.counts.items():
        print(
            f"  {table:<15} extracted {c['extracted']:>11,} = used {c['used']:>11,} "
            f"+ quarantined {c['quarantined']:,}"
        )
    print(f"read     {read_seconds:6.1f} s")
    print(f"validate {check_seconds:6.1f} s")
    print(f"total    {read_seconds + check_seconds:6.1f} s")
    print(f"peak RSS {_peak_mb():,.0f} MB (after imports: {baseline:,.0f} MB)")


if __name__ == "__main__":
    main()
