"""A year of track record for the demo agency: `staffcast replay` over 52 weeks, then the demo.

Usage (from the repository root; psutil lives in the ``bench`` dependency group):

    python3 -m uv run --group bench python benchmarks/replay_year.py [--weeks 52] [--as-of D]

In a fresh STAFFCAST_HOME (benchmarks/out/replay-year): ``staffcast demo --data-only`` writes
the demo agency for as_of (default: this week's Monday), ``staffcast replay --from
<as_of - weeks> --to <as_of - 1 week>`` runs and publishes a weekly run for each past week,
and ``staffcast demo`` runs this week's, as a new agency would on its first day. Each command
is a real console process; the wall time and the peak memory of its process tree (summed
resident sets, sampled every 0.2 s: benchmarks/weekly_run.py's ProcessTreeSampler) are
printed, then what the reporting database holds: forecast scores, judged pool weeks, drift
flags, and whether the report shows the track record.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.weekly_run import ProcessTreeSampler  # noqa: E402
from staffcast.cli import this_monday  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "replay-year"


def _timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run ``staffcast <command>``; (wall seconds, peak MB of the process tree)."""
    with ProcessTreeSampler() as tree, log.open("w") as stream:
        began = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "staffcast.cli", *command],
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            check=False,
        )
        ended = time.time()
    if done.returncode != 0:
        sys.exit(f"staffcast {' '.join(command)} exited {done.returncode}: see {log}")
    return ended - began, tree.peak_mb(began, ended)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--as-of", type=date.fromisoformat, default=this_monday(date.today()))
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    env = {**os.environ, "STAFFCAST_HOME": str(OUT / "home"), "STAFFCAST_PROGRESS_BAR": "false"}
    as_of: date = args.as_of
    first, last = as_of - timedelta(weeks=args.weeks), as_of - timedelta(weeks=1)
    steps = [
        ("demo --data-only", ["demo", "--data-only", "--as-of", str(as_of)]),
        (
            f"replay {first} .. {last}",
            ["replay", "--from", str(first), "--to", str(last), "--allow-future-as-of"],
        ),
        ("demo", ["demo", "--as-of", str(as_of)]),
    ]
    for i, (name, command) in enumerate(steps):
        seconds, peak = _timed(command, env, OUT / f"step{i}.log")
        print(f"{name}: {seconds:.1f} s wall, peak {peak:,.0f} MB (process tree)", flush=True)
    engine = sa.create_engine(f"sqlite:///{OUT / 'home' / 'reporting.db'}")
    with engine.connect() as connection:
        runs = connection.execute(
            sa.text("SELECT count(*) FROM forecast_run WHERE status = 'published'")
        ).scalar_one()
        scores = connection.execute(
            sa.text(
                "SELECT count(DISTINCT scored_run_id), sum(days), min(first_day), max(last_day) "
                "FROM forecast_score WHERE level = 'region'"
            )
        ).one()
        pools = connection.execute(
            sa.text(
                "SELECT count(DISTINCT week_start), min(week_start), max(week_start), "
                "sum(covered) / sum(days), avg(service_level) FROM pool_outcome "
                "WHERE scenario = 'base'"
            )
        ).one()
        flags = connection.execute(
            sa.text("SELECT message FROM current_track_record_flag ORDER BY region, role")
        ).scalars()
        flag_lines = list(flags)
    print(f"published runs: {runs}")
    print(
        f"forecast_score: {scores[0]} runs scored, {scores[1]} region-days, "
        f"days {scores[2]} .. {scores[3]}"
    )
    print(
        f"pool_outcome (base): {pools[0]} weeks judged ({pools[1]} .. {pools[2]}), "
        f"achieved {pools[3]:.3f} against {pools[4]:.3f} promised"
    )
    print(f"drift flags of the current run: {len(flag_lines)}")
    for line in flag_lines:
        print(f"  {line}")
    report = OUT / "home" / "reports" / f"staffcast-{as_of}.html"
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    shown = "present" if 'id="track-record"' in text or "id='track-record'" in text else "MISSING"
    print(f"report {report}: track-record section {shown}")


if __name__ == "__main__":
    main()
