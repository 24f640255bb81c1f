"""Wall time and peak memory of ``staffcast validate`` on a 10-million-row PostgreSQL source.

Usage (from the repository root):

    uv run python benchmarks/validate_pg.py \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres [--profile]

The source is the PostgreSQL shape of ``benchmarks/source_shapes.py`` (schemas ``scheduling``
and ``hr``, native types: timestamptz, date, boolean, bigint ids; the agency's own names and
codes; extra CNA rows excluded by the mapping; ``shift_hours`` a SQL expression), written from
a demo agency of ``--facilities`` x ``--years`` (1300 x 3: about 10 million shifts and 8.6
million offers). The demo SQLite file is built once under benchmarks/out/ and the database
(``--database``) once on the server; both are reused while they exist (``--rebuild`` to redo).

Then it runs ``staffcast validate --source URL --mapping FILE --as-of DAY`` in a subprocess and
samples the resident memory of that process and all its children from /proc every 0.2 s. It
prints the command's summary, wall and CPU seconds and the peak RSS of the process tree; the
goal is 90 s and 4 GB (4096 MB). ``--profile`` runs the same work in this process instead,
traced step by step, and prints where the time and the memory go (extract, parse, duplicates,
rules, impact, the rest).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import source_shapes  # noqa: E402

GOAL_SECONDS = 90.0
GOAL_MB = 4096.0
SAMPLE_SECONDS = 0.2
NESTED_STEPS = {
    "parse_timestamps": "  parse: of which timestamps",
    "parse_dates": "  parse: of which dates",
}
"""Functions the parse functions call, timed inside the parse step."""
EXTRACT_STEP = "extract (driver + Arrow to pandas)"
OTHER_STEP = "other (split, quarantine, concat, counts)"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of ``pid`` and all its descendants, now."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _rss_kb(current)
        todo += _children(current)
    return total / 1024


def run_measured(command: list[str], env: dict[str, str]) -> tuple[int, str, float, float, float]:
    """Run ``command``: (exit status, output, wall seconds, CPU seconds, peak RSS MB of its
    process tree). CPU seconds (user + system, of the command and the children it waited for)
    do not depend on what else the machine runs; wall seconds do."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    peak = 0.0
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, tree_rss_mb(process.pid))
        time.sleep(SAMPLE_SECONDS)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    return process.returncode, "".join(output), wall, usage.ru_utime + usage.ru_stime, peak


def ensure_source(
    facilities: int, years: float, as_of: date, seed: int, server: str, database: str, rebuild: bool
) -> source_shapes.Shape:
    """The demo file and the PostgreSQL shape, built when missing (or with ``rebuild``)."""
    folder = source_shapes.OUT / f"agency-{facilities}x{years:g}"
    demo = folder / "ops.db"
    mapping = folder / "postgres-mapping.yaml"
    url = source_shapes.database_url(server, database)
    if not rebuild and source_shapes.postgres_shape_present(url):
        source_shapes.write_mapping(
            mapping,
            source_shapes.postgres_mapping(),
            "PostgreSQL shape (benchmarks/validate_pg.py)",
        )
        print(f"reusing database {database}", flush=True)
        return source_shapes.Shape("postgres_native", url, mapping)
    if rebuild or not demo.exists():
        from staffcast.demo_agency import build_demo_agency

        started = time.perf_counter()
        agency = build_demo_agency(demo, as_of, facilities, years, seed)
        print(
            f"built {demo}: {agency.shift_requests:,} shift_requests, {agency.shift_offers:,} "
            f"offers in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    source_shapes.create_database(server, database, replace=True)
    print(f"writing the PostgreSQL shape to database {database} ...", flush=True)
    shape = source_shapes.write_postgres(
        demo, url, mapping, progress=lambda text: print(f"  {text}", flush=True)
    )
    print(f"wrote it in {shape.write_seconds:.0f} s", flush=True)
    return source_shapes.Shape("postgres_native", url, mapping)


def _row_counts(url: str) -> str:
    import psycopg

    with psycopg.connect(source_shapes.libpq_url(url)) as connection:
        counts = [
            (name, connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
            for name in (
                "scheduling.sites",
                "scheduling.shifts",
                "hr.staff",
                "scheduling.offer_log",
            )
        ]
    return ", ".join(f"{name} {count:,}" for name, count in counts)


class _Tracer:
    """Seconds and memory per step of ``staffcast validate``'s work, by wrapping the functions
    of data_contracts that do it: getting chunks from the driver (extract), the parse functions
    (parse), duplicate detection, the rules (Great Expectations) and the impact. A thread samples
    the resident memory every 50 ms and charges it to the innermost step running."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.stack: list[str] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _Tracer:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            step = self.stack[-1] if self.stack else OTHER_STEP
            self.peak[step] = max(self.peak.get(step, 0.0), _rss_mb("VmRSS"))

    def run(self, step: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        self.stack.append(step)
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.stack.pop()
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - started
            self.peak[step] = max(self.peak.get(step, 0.0), _rss_mb("VmRSS"))

    def timed(self, step: str | Callable[..., str], function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            label = step(*args, **kwargs) if callable(step) else step
            return self.run(label, function, *args, **kwargs)

        return wrapper

    def chunks(self, function: Any) -> Any:
        """table_chunks, timing only the time spent getting each chunk (the driver's part)."""

        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            iterator = iter(function(*args, **kwargs))
            while True:
                try:
                    chunk = self.run(EXTRACT_STEP, next, iterator)
                except StopIteration:
                    return
                yield chunk

        return wrapper


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _profile(shape: source_shapes.Shape, as_of: date) -> None:
    """The validate command's work in this process, traced: seconds and memory per step."""
    from data_contracts import validate as validate_module
    from data_contracts.validate import validate_with_settings
    from staffcast.settings import Settings
    from staffcast.source_files import open_source

    tracer = _Tracer()
    parsing = validate_module.parsing
    patches = [(validate_module, "table_chunks", tracer.chunks(validate_module.table_chunks))]
    for table in ("facilities", "shift_requests", "nurses", "shift_offers"):
        name = f"parse_{table}"
        patches.append((parsing, name, tracer.timed(f"parse {table}", getattr(parsing, name))))
    for name, step in NESTED_STEPS.items():
        if hasattr(parsing, name):
            patches.append((parsing, name, tracer.timed(step, getattr(parsing, name))))
    patches.append((parsing, "duplicate_kind", tracer.timed("duplicates", parsing.duplicate_kind)))
    patches.append(
        (
            validate_module,
            "_run_rules",
            tracer.timed(
                lambda _, table, *a, **k: f"rules {table} (GX)", validate_module._run_rules
            ),
        )
    )
    impact = validate_module.demand_impact
    if hasattr(impact, "assess"):
        patches.append((impact, "assess", tracer.timed("impact", impact.assess)))
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    settings = Settings()
    try:
        with tracer:
            started = time.perf_counter()
            extract = tracer.run(
                "open_source (queries prepared)",
                open_source,
                shape.source,
                as_of,
                settings.agency_timezone,
                source_shapes.load_mapping(shape.mapping),
            )
            validate_with_settings(extract, settings)
            wall = time.perf_counter() - started
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"\nin process: {wall:.1f} s wall, {cpu.ru_utime + cpu.ru_stime:.1f} s CPU, peak RSS "
        f"{_rss_mb('VmHWM'):,.0f} MB"
    )
    print(f"  {'step':<42} {'seconds':>8} {'peak RSS during it, MB':>23}")
    nested = set(NESTED_STEPS.values())
    for step, seconds in tracer.seconds.items():
        print(f"  {step:<42} {seconds:8.1f} {tracer.peak.get(step, 0.0):23,.0f}")
    rest = wall - sum(v for k, v in tracer.seconds.items() if k not in nested)
    print(f"  {OTHER_STEP:<42} {rest:8.1f} {tracer.peak.get(OTHER_STEP, 0.0):23,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facilities", type=int, default=1300)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 30))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("STAFFCAST_TEST_POSTGRES_URL"),
        help="SQLAlchemy URL of a PostgreSQL server, as a superuser "
        "(default: STAFFCAST_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--database", default="staffcast_bench10m")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the demo file and database")
    parser.add_argument("--profile", action="store_true", help="trace the work in process instead")
    args = parser.parse_args()
    if not args.postgres:
        parser.error("--postgres (or STAFFCAST_TEST_POSTGRES_URL) is required")

    shape = ensure_source(
        args.facilities,
        args.years,
        args.as_of,
        args.seed,
        args.postgres,
        args.database,
        args.rebuild,
    )
    print(f"source: {_row_counts(shape.source)}", flush=True)
    if args.profile:
        _profile(shape, args.as_of)
        return
    command = [
        sys.executable,
        "-m",
        "staffcast.cli",
        "validate",
        "--source",
        shape.source,
        "--mapping",
        str(shape.mapping),
        "--as-of",
        args.as_of.isoformat(),
    ]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    status, output, wall, cpu, peak = run_measured(command, env)
    print(output.rstrip())
    print(
        f"\nstaffcast validate on {shape.source.rsplit('/', 1)[-1]}: exit {status}, "
        f"{wall:.1f} s wall (goal <= {GOAL_SECONDS:.0f} s; {cpu:.1f} s CPU, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), peak RSS of the process tree "
        f"{peak:,.0f} MB (goal <= {GOAL_MB:,.0f} MB): "
        + ("within the goals" if wall <= GOAL_SECONDS and peak <= GOAL_MB else "MISSES the goals")
    )
    sys.exit(status)


if __name__ == "__main__":
    main()
