"""A lab for injecting faults into real weekly runs (used by benchmarks/faults.py and
tests/test_faults.py).

Each run is the real ``staffcast run`` command in a subprocess of its own session, on a small
demo agency, writing to a SQLite file or a PostgreSQL database. Faults are real: SIGKILL,
SIGTERM and SIGINT sent when the run's log shows a stage beginning; a reporting database that
is read-only, full, corrupt, locked, refusing the login's writes or gone; a second run of the
same as_of. After each fault the lab checks what a scheduler and a planner would:

- the previous run is intact: still current, its rows all there, and no rows of the faulted
  run in any table (unless that run had published before the fault landed);
- the faulted run's status is recorded (``cancelled`` at once, ``abandoned`` by the next run
  after a SIGKILL, or ``published`` when the fault came after its commit);
- the last thing printed is one paragraph (``staffcast: ...``), without a traceback;
- no process the run started is left (every process carrying the lab's STAFFCAST_HOME);
- the next run publishes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reports.schema import CHILD_TABLES, current_view, reporting_engine, table  # noqa: E402

AS_OF = date(2025, 11, 3)
#: The log line that ends the stage before each stage (the stage begins right after it).
STAGE_STARTS: dict[str, str] = {
    "extract": r"Run \S+ for as_of \S+ started",
    "validate": r"Stage extract:",
    "demand": r"Stage validate:",
    "forecast": r"Stage demand:",
    "regional": r"Stage forecast:",
    "plan": r"Stage regional:",
    "publish": r"Stage plan:",
    "report": r"Stage publish:",
}
STAGES = tuple(STAGE_STARTS)
#: Validation tables keep the rows of a run that never published (by design).
_KEPT_FOR_STOPPED_RUNS = {"validation_result", "data_quality_impact", "quarantined_row"}


@dataclass
class Run:
    """One ``staffcast run`` subprocess and its combined output."""

    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 120) -> bool:
        """Wait until the log matches ``pattern`` (True) or the run ends first (False)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            if regex.search(self.text()):
                return True
            if self.process.poll() is not None:
                return bool(regex.search(self.text()))
            time.sleep(0.01)
        return False

    def wait(self, timeout: float = 300) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        self.ended = self.ended or time.monotonic()
        return code

    def last_line(self) -> str:
        lines = [line for line in self.text().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def one_paragraph(self) -> bool:
        """The last line is staffcast's paragraph and no traceback was printed."""
        return self.last_line().startswith("staffcast: ") and "Traceback" not in self.text()

    def stage_reached(self) -> str:
        """The stage the run was in at the end (after the last 'Stage X:' line)."""
        text = self.text()
        reached = "startup"
        for stage, pattern in STAGE_STARTS.items():
            if re.search(pattern, text):
                reached = stage
        if re.search(r"Stage report:", text):
            reached = "done"
        return reached

    def run_id(self) -> str | None:
        found = re.search(r"Run (\d{8}-[0-9a-f]{12})", self.text())
        return found.group(1) if found else None


@dataclass
class Lab:
    """A small agency, a reporting database and a staffcast home for fault trials."""

    home: Path
    source_url: str
    reporting_url: str
    prefect_api_url: str | None = None
    """None: each run starts its own local Prefect server (what a cron job does)."""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return sa.make_url(self.reporting_url).get_backend_name()

    def environment(self, **extra: str) -> dict[str, str]:
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("STAFFCAST_", "PREFECT_API_URL", "PREFECT_HOME"))
        }
        environment.update(
            {
                "STAFFCAST_HOME": str(self.home),
                "PREFECT_HOME": str(self.home / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_LOGGING_LEVEL": "INFO",
                # A killed run is abandoned after 2 s without a heartbeat (the default is 10
                # minutes); the heartbeat beats every second.
                "STAFFCAST_HEARTBEAT_SECONDS": "1",
                "STAFFCAST_ABANDON_AFTER_SECONDS": "3",
                "STAFFCAST_SOURCE_RETRY_SECONDS": "0",
                "STAFFCAST_HORIZON_DAYS": "56",
                "STAFFCAST_SAMPLE_PATHS": "200",
                **self.env,
                **extra,
            }
        )
        if self.prefect_api_url:
            environment["PREFECT_API_URL"] = self.prefect_api_url
        return environment

    def start(self, *args: str, reporting_url: str | None = None, **extra: str) -> Run:
        """Start ``staffcast run`` (in its own session, so the lab can signal its group)."""
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"run-{uuid.uuid4().hex[:8]}.log"
        command = [
            sys.executable,
            "-m",
            "staffcast.cli",
            "run",
            "--as-of",
            AS_OF.isoformat(),
            "--source",
            self.source_url,
            "--reporting",
            reporting_url or self.reporting_url,
            *args,
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.environment(**extra),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Run(process, log)

    def run(self, *args: str, timeout: float = 300, **extra: str) -> tuple[Run, int]:
        run = self.start(*args, **extra)
        return run, run.wait(timeout)

    # --- what the reporting database says -------------------------------------------------

    @contextlib.contextmanager
    def engine(self) -> Iterator[sa.Engine]:
        engine = reporting_engine(self.reporting_url)
        try:
            yield engine
        finally:
            engine.dispose()

    def current_run(self) -> str | None:
        with self.engine() as engine, engine.connect() as connection:
            return connection.execute(
                sa.select(current_view("forecast_run").c.run_id)
            ).scalar_one_or_none()

    def status(self, run_id: str | None) -> str | None:
        if run_id is None:
            return None
        forecast_run = table("forecast_run")
        with self.engine() as engine, engine.connect() as connection:
            return connection.execute(
                sa.select(forecast_run.c.status).where(forecast_run.c.run_id == run_id)
            ).scalar_one_or_none()

    def intact(self, previous: str, faulted: str | None) -> bool:
        """The previous run is current with its rows, unless the faulted run published; no
        table holds rows of a faulted run that did not publish (validation kept aside)."""
        with self.engine() as engine, engine.connect() as connection:
            current = connection.execute(
                sa.select(current_view("forecast_run").c.run_id)
            ).scalar_one_or_none()
            forecast_run = table("forecast_run")
            statuses = dict(
                connection.execute(sa.select(forecast_run.c.run_id, forecast_run.c.status)).all()
            )
            published_per_as_of = connection.execute(
                sa.select(sa.func.count())
                .select_from(forecast_run)
                .where(forecast_run.c.status == "published")
                .group_by(forecast_run.c.as_of)
            ).scalars()
            if any(count > 1 for count in published_per_as_of):
                return False
            if current == previous:
                expected_current = True
            else:
                expected_current = faulted is not None and current == faulted
            rows = connection.execute(
                sa.select(sa.func.count()).select_from(current_view("regional_forecast"))
            ).scalar_one()
            if faulted is not None and statuses.get(faulted) != "published":
                for name in CHILD_TABLES:
                    if name in _KEPT_FOR_STOPPED_RUNS:
                        continue
                    child = table(name)
                    stray = connection.execute(
                        sa.select(sa.func.count())
                        .select_from(child)
                        .where(child.c.run_id == faulted)
                    ).scalar_one()
                    if stray:
                        return False
        return expected_current and rows > 0

    def orphans(self, wait: float = 5.0) -> list[str]:
        """Processes still carrying this lab's home (after up to ``wait`` seconds)."""
        deadline = time.monotonic() + wait
        while True:
            left = processes_with_env("STAFFCAST_HOME", str(self.home))
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.2)


def processes_with_env(key: str, value: str) -> list[str]:
    """``pid command`` of every live process (not this one) whose environment has key=value."""
    wanted = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if wanted not in environ:
                continue
            status = (entry / "stat").read_text()
            if ") Z " in status:  # a zombie holds no memory; its parent reaps it
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            continue
        found.append(f"{entry.name} {command}")
    return found


@dataclass
class Trial:
    """One fault and what was found after it."""

    backend: str
    fault: str
    target: str
    stage: str = ""
    exit_code: int | None = None
    exit_seconds: float | None = None
    previous_intact: bool = False
    one_paragraph: bool | None = None
    no_orphans: bool = False
    status: str | None = None
    status_ok: bool = False
    next_ok: bool | None = None
    """Whether the next run published (None: no next run was tried, the fault still held)."""
    note: str = ""
    log: str = ""
    """The faulted run's log file."""


def signal_trial(lab: Lab, fault: str, stage: str, previous: str, check_next: bool = True) -> Trial:
    """Send ``fault`` (sigkill, sigterm, sigint, sigterm-group) when ``stage`` begins."""
    trial = Trial(lab.backend, fault, stage)
    run = lab.start()
    trial.log = str(run.log)
    if not run.wait_for(STAGE_STARTS[stage], timeout=180):
        run.wait()
        trial.note = f"run ended before {stage} (rc {run.process.returncode})"
        trial.stage = run.stage_reached()
        return trial
    trial.stage = run.stage_reached()
    signum = {"sigkill": signal.SIGKILL, "sigint": signal.SIGINT}.get(fault, signal.SIGTERM)
    sent = time.monotonic()
    if fault == "sigterm-group":
        os.killpg(run.process.pid, signum)
    else:
        os.kill(run.process.pid, signum)
    trial.exit_code = run.wait(120)
    trial.exit_seconds = round(time.monotonic() - sent, 2)
    faulted = run.run_id()
    trial.previous_intact = lab.intact(previous, faulted)
    trial.no_orphans = not lab.orphans()
    if fault != "sigkill":
        trial.one_paragraph = run.one_paragraph()
        trial.status = lab.status(faulted)
        after_commit = trial.status == "published"
        trial.status_ok = trial.status == "cancelled" or after_commit
        expected = 130 if fault == "sigint" else 143
        if trial.exit_code != expected:
            trial.note = f"exit {trial.exit_code}, expected {expected}"
    if fault == "sigkill":
        time.sleep(3.2)  # past STAFFCAST_ABANDON_AFTER_SECONDS without a heartbeat
    if check_next or fault == "sigkill":
        nxt = lab.start()
        # The next run marks a killed run abandoned as it starts; its publish then replaces
        # every earlier run of the same as_of, so the status is read in between.
        nxt.wait_for(STAGE_STARTS["extract"], timeout=180)
        if fault == "sigkill":
            trial.status = lab.status(faulted)
            trial.status_ok = trial.status in ("abandoned", "published")
        code = nxt.wait()
        trial.next_ok = code == 0 and lab.current_run() == nxt.run_id()
        if not trial.next_ok:
            trial.note += f" next run rc {code}: {nxt.last_line()[:200]}"
    return trial


def refusal_trial(
    lab: Lab,
    fault: str,
    previous: str | None,
    reporting_url: str | None = None,
    during: str | None = None,
    **extra: str,
) -> tuple[Trial, Run]:
    """A run against a refusing reporting database: one paragraph, exit 4, within 10 s."""
    trial = Trial(lab.backend, fault, during or "preflight")
    run = lab.start(reporting_url=reporting_url, **extra)
    trial.exit_code = run.wait(180)
    trial.exit_seconds = round((run.ended or time.monotonic()) - run.started, 2)
    trial.stage = run.stage_reached()
    trial.one_paragraph = run.one_paragraph()
    trial.no_orphans = not lab.orphans()
    trial.previous_intact = previous is None or lab.intact(previous, run.run_id())
    trial.status = lab.status(run.run_id()) if during else None
    trial.status_ok = trial.status in (None, "failed")
    if trial.exit_code != 4:
        trial.note = f"exit {trial.exit_code}: {run.last_line()[:200]}"
    return trial, run


# --- refusing databases --------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_lock_held(path: Path) -> Iterator[None]:
    """Another process holds the write lock (BEGIN EXCLUSIVE) on a SQLite file."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        yield
    finally:
        holder.kill()
        holder.wait()


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path | None]:
    """A tmpfs of ``megabytes`` mounted on ``folder`` (None where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill_disk(folder: Path, leave_bytes: int) -> None:
    """Fill the file system of ``folder`` up to ``leave_bytes`` free."""
    import shutil

    free = shutil.disk_usage(folder).free - leave_bytes
    if free > 0:
        with (folder / "filler").open("wb") as out:
            out.write(b"\0" * free)


def remount_read_only(folder: Path) -> bool:
    return (
        subprocess.run(
            ["mount", "-o", "remount,ro", str(folder)], capture_output=True, check=False
        ).returncode
        == 0
    )


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def pg_select_only_login(url: str) -> Iterator[str]:
    """A login role that may only SELECT the reporting tables; yields its URL."""
    parsed = sa.make_url(url)
    role = f"staffcast_ro_{uuid.uuid4().hex[:8]}"
    admin = _admin(url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        connection.exec_driver_sql(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        connection.exec_driver_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    try:
        yield parsed.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
            )
            connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
            connection.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


@contextlib.contextmanager
def pg_read_only(url: str) -> Iterator[None]:
    """The database turned read-only for new sessions (as a standby would be)."""
    name = sa.make_url(url).database
    admin = _admin(url)
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
        )
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" RESET default_transaction_read_only'
            )
        admin.dispose()


@contextlib.contextmanager
def pg_table_locked(url: str) -> Iterator[None]:
    """Another session holds an ACCESS EXCLUSIVE lock on forecast_run."""
    engine = sa.create_engine(url)
    connection = engine.connect()
    transaction = connection.begin()
    connection.exec_driver_sql("LOCK TABLE forecast_run IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        transaction.rollback()
        connection.close()
        engine.dispose()


def pg_terminate_when(run: Run, pattern: str, url: str, seconds: float = 4.0) -> bool:
    """When the run's log matches ``pattern``, end every session of its database for a few
    seconds (the server going away under the run). True when the pattern was seen."""
    if not run.wait_for(pattern, timeout=180):
        return False
    name = sa.make_url(url).database
    admin = _admin(url)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and run.process.poll() is None:
            with admin.connect() as connection:
                connection.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            time.sleep(0.05)
    finally:
        admin.dispose()
    return True


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); yields its URL."""
    name = f"staffcast_faults_{uuid.uuid4().hex[:10]}"
    admin = _admin(admin_url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()


def refusal_trials(lab: Lab, previous: str, admin_url: str | None = None) -> list[Trial]:
    """Every refusing-database case this backend can stage here."""
    trials: list[Trial] = []
    if lab.backend == "sqlite":
        path = Path(sa.make_url(lab.reporting_url).database or "")
        trials.append(
            refusal_trial(
                lab, "read-only URI", previous, f"sqlite:///file:{path}?mode=ro&uri=true"
            )[0]
        )
        corrupt = lab.home / "corrupt.db"
        corrupt.write_bytes(b"not a database, an export someone saved here\n" * 200)
        trials.append(refusal_trial(lab, "corrupt file", previous, f"sqlite:///{corrupt}")[0])
        with sqlite_lock_held(path):
            locked, run = refusal_trial(lab, "lock held", None)
        locked.previous_intact = lab.intact(previous, run.run_id())  # readable again
        trials.append(locked)
        trials.append(
            refusal_trial(
                lab, "disk full (preflight)", previous, STAFFCAST_REPORTING_MIN_FREE_MB="100000000"
            )[0]
        )
        with small_disk(lab.home / "small-disk", 16) as disk:
            if disk is not None:
                url = f"sqlite:///{disk / 'reporting.db'}"
                lab.run(reporting_url=url, STAFFCAST_REPORTING_MIN_FREE_MB="0")  # one run, then
                # the disk fills up
                fill_disk(disk, leave_bytes=384 * 1024)
                trial, run = refusal_trial(
                    lab,
                    "disk full (publish)",
                    None,
                    url,
                    during="publish",
                    STAFFCAST_REPORTING_MIN_FREE_MB="0",
                )
                trials.append(trial)
        with small_disk(lab.home / "ro-disk", 8) as disk:
            if disk is not None:
                url = f"sqlite:///{disk / 'reporting.db'}"
                # A database there, then the mount turns read-only.
                lab.run(reporting_url=url, STAFFCAST_REPORTING_MIN_FREE_MB="0")
                if remount_read_only(disk):
                    trials.append(
                        refusal_trial(
                            lab,
                            "read-only mount",
                            None,
                            url,
                            STAFFCAST_REPORTING_MIN_FREE_MB="0",
                        )[0]
                    )
        return trials
    assert admin_url is not None
    gone = sa.make_url(lab.reporting_url).set(host="127.0.0.1", port=9)
    trials.append(
        refusal_trial(
            lab, "server gone (before)", previous, gone.render_as_string(hide_password=False)
        )[0]
    )
    with pg_select_only_login(lab.reporting_url) as url:
        trials.append(refusal_trial(lab, "permission denied", previous, url)[0])
    with pg_read_only(lab.reporting_url):
        trials.append(refusal_trial(lab, "read-only database", previous)[0])
    with pg_table_locked(lab.reporting_url):
        locked, run = refusal_trial(lab, "lock held", None)
    locked.previous_intact = lab.intact(previous, run.run_id())
    trials.append(locked)
    run = lab.start()
    trial = Trial(lab.backend, "server gone (publish)", "publish")
    pg_terminate_when(run, STAGE_STARTS["publish"], lab.reporting_url)
    trial.exit_code = run.wait()
    trial.exit_seconds = round((run.ended or time.monotonic()) - run.started, 2)
    trial.stage = run.stage_reached()
    trial.one_paragraph = run.one_paragraph()
    trial.no_orphans = not lab.orphans()
    trial.previous_intact = lab.intact(previous, run.run_id())
    nxt, code = lab.run()  # records the outcome the database refused, then publishes
    trial.status = lab.status(run.run_id())
    trial.next_ok = code == 0
    trial.status_ok = trial.status in (None, "failed")  # replaced by the next run, or failed
    if trial.exit_code != 4:
        trial.note = f"exit {trial.exit_code}: {run.last_line()[:200]}"
    trials.append(trial)
    return trials


def two_runs_trial(lab: Lab, wait: bool = False) -> Trial:
    """Two runs of the same as_of started together. By default one publishes and the other
    exits 6 with one paragraph naming the first; with STAFFCAST_CONCURRENT_RUN=wait the second
    waits for the first and publishes after it."""
    trial = Trial(lab.backend, "two runs of one as_of" + (" (wait)" if wait else ""), "start")
    extra = {"STAFFCAST_CONCURRENT_RUN": "wait"} if wait else {}
    runs = [lab.start(**extra)]
    time.sleep(0.3)
    runs.append(lab.start(**extra))
    codes = [run.wait() for run in runs]
    trial.exit_code = max(codes)
    trial.exit_seconds = round(max((r.ended or 0) - r.started for r in runs), 2)
    trial.no_orphans = not lab.orphans()
    current = lab.current_run()
    if wait:
        trial.next_ok = codes == [0, 0] and current in {r.run_id() for r in runs}
        trial.status_ok = trial.next_ok
        trial.one_paragraph = None
    else:
        published = [r for r, c in zip(runs, codes, strict=True) if c == 0]
        refused = [r for r, c in zip(runs, codes, strict=True) if c == 6]
        trial.next_ok = len(published) == 1 and current == published[0].run_id()
        trial.status_ok = sorted(codes) == [0, 6]
        trial.one_paragraph = bool(refused) and all(
            r.one_paragraph() and (published[0].run_id() or "?") in r.last_line()
            for r in refused
            if published
        )
        trial.status = "refused" if refused else None
    trial.previous_intact = trial.next_ok
    if not trial.status_ok:
        trial.note = f"exit codes {codes}: " + " | ".join(r.last_line()[:150] for r in runs)
    return trial
