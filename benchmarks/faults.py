"""Fault injection over many real weekly runs: signals in every stage, refusing databases, and
two runs of one as_of, on SQLite and PostgreSQL (issue 12).

Usage (from the repository root; PostgreSQL through a superuser URL):

    uv run python benchmarks/faults.py [--backend sqlite|postgresql|both] [--kills 20]
        [--terms 10] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Each trial is ``staffcast run`` in a subprocess (its own session, its own local Prefect server,
as a cron job runs it) on a small demo agency (8 facilities, 1.3 years). Signals go to the
run's process when the log shows the target stage beginning (``sigterm-group`` to its whole
process group, as systemd or a terminal's Ctrl-C would); stages are taken in turn. After each
fault: the previous run is still current with all its rows (or the faulted run published,
when the fault landed after its commit), the faulted run's status is recorded (cancelled, or
abandoned by the next run after a SIGKILL), the last line printed is one paragraph without a
traceback, no process carrying the lab's STAFFCAST_HOME is left, and the next run publishes.
The refusing-database cases must also exit with status 4 within 10 s of the start.

Prints one table per backend, per fault: trials / previous run intact / one paragraph / no
orphan / status recorded / next run ok / slowest exit (s); then every trial that failed a
check. See benchmarks/fault_lab.py for how each fault is staged.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.fault_lab import (  # noqa: E402
    AS_OF,
    STAGES,
    Lab,
    Trial,
    pg_database,
    refusal_trials,
    signal_trial,
    two_runs_trial,
)
from staffcast.demo_agency import build_demo_agency  # noqa: E402


def _mark(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def _table(trials: list[Trial]) -> str:
    groups: dict[tuple[str, str], list[Trial]] = defaultdict(list)
    for trial in trials:
        groups[(trial.backend, trial.fault)].append(trial)
    lines = [
        "| backend | fault | trials | stages hit | previous run intact | one paragraph | "
        "no orphan | status recorded | next run ok | slowest exit (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backend, fault), group in groups.items():
        n = len(group)
        paragraphs = [t.one_paragraph for t in group if t.one_paragraph is not None]
        stages = sorted({t.stage for t in group})
        slowest = max((t.exit_seconds or 0.0) for t in group)
        lines.append(
            f"| {backend} | {fault} | {n} | {', '.join(stages)} | "
            f"{sum(t.previous_intact for t in group)}/{n} | "
            + (f"{sum(paragraphs)}/{len(paragraphs)}" if paragraphs else "n/a")
            + f" | {sum(t.no_orphans for t in group)}/{n} | "
            f"{sum(t.status_ok for t in group)}/{n} | {_tried(t.next_ok for t in group)} | "
            f"{slowest:.1f} |"
        )
    return "\n".join(lines)


def _tried(results: Iterable[bool | None]) -> str:
    """'k/n' over the trials where the check was made, 'n/a' where none was."""
    made = [r for r in results if r is not None]
    return f"{sum(made)}/{len(made)}" if made else "n/a"


def _failed(trial: Trial) -> bool:
    checks = [trial.previous_intact, trial.no_orphans, trial.status_ok]
    if trial.one_paragraph is not None:
        checks.append(trial.one_paragraph)
    if trial.target == "preflight":  # a refusing database: one paragraph within 10 s
        checks.append((trial.exit_seconds or 99) <= 10)
    return not all(checks) or bool(trial.note)


def run_backend(
    backend: str, source_url: str, workdir: Path, kills: int, terms: int, admin_url: str | None
) -> list[Trial]:
    trials: list[Trial] = []
    home = workdir / f"home-{backend}"

    def go(reporting_url: str) -> None:
        lab = Lab(home, source_url, reporting_url)
        run, code = lab.run()
        assert code == 0, run.text()[-2000:]
        previous = lab.current_run()
        plan = [("sigkill", STAGES[i % len(STAGES)]) for i in range(kills)]
        plan += [("sigterm", STAGES[i % len(STAGES)]) for i in range(terms)]
        plan += [("sigterm-group", stage) for stage in ("validate", "forecast", "publish")]
        plan += [("sigint", stage) for stage in ("forecast", "publish")]
        for number, (fault, stage) in enumerate(plan, start=1):
            started = time.monotonic()
            trial = signal_trial(lab, fault, stage, previous or "")
            trials.append(trial)
            previous = lab.current_run()
            print(
                f"[{backend} {number}/{len(plan)}] {fault} at {stage} (hit {trial.stage}): "
                f"{'ok' if not _failed(trial) else 'CHECK FAILED ' + trial.note} "
                f"({time.monotonic() - started:.0f} s)",
                flush=True,
            )
        for trial in refusal_trials(lab, previous or "", admin_url):
            trials.append(trial)
            print(
                f"[{backend}] {trial.fault}: exit {trial.exit_code} in {trial.exit_seconds} s "
                f"{'ok' if not _failed(trial) else 'CHECK FAILED ' + trial.note}",
                flush=True,
            )
        for wait in (False, True):
            trial = two_runs_trial(lab, wait=wait)
            trials.append(trial)
            print(f"[{backend}] {trial.fault}: {'ok' if not _failed(trial) else trial.note}")

    if backend == "sqlite":
        go(f"sqlite:///{home / 'reporting.db'}")
    else:
        assert admin_url, "--postgres (or STAFFCAST_TEST_POSTGRES_URL) is needed"
        with pg_database(admin_url) as url:
            go(url)
    return trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILL trials per backend")
    parser.add_argument("--terms", type=int, default=10, help="SIGTERM trials per backend")
    parser.add_argument("--postgres", default=os.environ.get("STAFFCAST_TEST_POSTGRES_URL"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "faults.md")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="staffcast-faults-"))
    agency = build_demo_agency(workdir / "ops.db", AS_OF, facilities=8, years=1.3, seed=3)
    source_url = f"sqlite:///{agency.path}"
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    started = time.monotonic()
    trials: list[Trial] = []
    for backend in backends:
        trials += run_backend(backend, source_url, workdir, args.kills, args.terms, args.postgres)
    table = _table(trials)
    failed = [t for t in trials if _failed(t)]
    report = [
        f"# Fault injection ({len(trials)} trials, {(time.monotonic() - started) / 60:.1f} min)",
        "",
        table,
        "",
        f"Trials failing a check: {len(failed)}",
        *[f"- {t}" for t in failed],
    ]
    print("\n".join(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
