"""The ``staffcast`` command line (SPEC §7).

Exit status 0 on success, 2 for usage errors, and for an expected failure one paragraph on
stderr (the last thing printed) with a status a scheduler can tell apart
(staffcast.run_control): 1 bad input, 3 source unavailable, 4 reporting database refused,
5 Prefect API unavailable, 6 another run of the as_of in progress, 143 cancelled (SIGTERM or
a Prefect cancellation), 130 interrupted (SIGINT). Unexpected errors keep their traceback:
they are bugs to report.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, suppress
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from staffcast.errors import SourceUnavailable, StaffcastError, ValidationFailed
from staffcast.run_control import CANCELLATION, EXPECTED, RunCancelled, exit_code

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from staffcast.mapping import SourceMapping
    from staffcast.settings import Settings
    from staffcast.source import SourceExtract


DEMO_SCENARIOS = ("fewer_accept:acceptance_rate=0.25",)
"""The demo's what-if: fewer nurses take a call (a flu season, a competitor paying more)."""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (use YYYY-MM-DD)") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="staffcast",
        description="Demand forecasts, on-call pools and hiring targets for a nurse staffing "
        "agency.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        help="folder for staffcast's files (default: STAFFCAST_HOME or ./.staffcast)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="make the demo agency and run the weekly flow on it")
    demo.add_argument("--facilities", type=int, default=40, help="facilities (default 40)")
    demo.add_argument("--years", type=float, default=3.0, help="years of history (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--as-of",
        type=_date,
        help="the demo's 'today' (default: this week's Monday, the weekly run)",
    )
    demo.add_argument(
        "--data-only", action="store_true", help="write the demo operational database and stop"
    )
    demo.add_argument(
        "--scenario",
        action="append",
        help=f"what-if stored beside base (repeatable; default {DEMO_SCENARIOS[0]!r})",
    )
    demo.add_argument("--scenario-file", type=Path, help="YAML file of scenarios (see the README)")

    run = commands.add_parser("run", help="run the weekly flow once")
    run.add_argument("--as-of", type=_date, help="first forecast day (default: today)")
    run.add_argument("--source", help="SQLAlchemy URL of the operational database")
    run.add_argument(
        "--mapping",
        type=Path,
        help="YAML source mapping: the agency's own tables, columns and codes "
        "(default: STAFFCAST_SOURCE_MAPPING; see docs/source-contract.md)",
    )
    run.add_argument("--reporting", help="SQLAlchemy URL of the reporting database")
    run.add_argument("--horizon", type=int, help="forecast horizon in days (default 182)")
    run.add_argument(
        "--allow-future-as-of",
        action="store_true",
        help="allow an as_of after today in the agency's zone (refused by default)",
    )
    run.add_argument(
        "--backfill",
        action="store_true",
        help="fill in a past week: publish without taking over from a current run of a later "
        "as_of (without it, the run published last is current)",
    )
    run.add_argument(
        "--scenario",
        action="append",
        help=(
            "what-if stored beside base, e.g. tight:service_level=0.9,acceptance_rate.RN=0.3 "
            "(repeatable)"
        ),
    )
    run.add_argument(
        "--scenario-file",
        type=Path,
        help="YAML file of scenarios: name -> {parameter[.ROLE]: value} (with --scenario too)",
    )

    replay = commands.add_parser(
        "replay",
        help="run the weekly flow at every week of a past span and publish them in order "
        "(a track record from day one)",
    )
    replay.add_argument("--from", dest="start", type=_date, required=True, help="first as_of")
    replay.add_argument("--to", dest="end", type=_date, required=True, help="last as_of")
    replay.add_argument(
        "--every", type=int, default=7, help="days between as_ofs (default 7: weekly)"
    )
    replay.add_argument("--source", help="SQLAlchemy URL or folder of the source")
    replay.add_argument("--mapping", type=Path, help="YAML source mapping (as for run)")
    replay.add_argument("--reporting", help="SQLAlchemy URL of the reporting database")
    replay.add_argument(
        "--allow-future-as-of", action="store_true", help="allow as_ofs after today (as for run)"
    )
    replay.add_argument("--scenario", action="append", help="what-if stored beside base")
    replay.add_argument("--scenario-file", type=Path, help="YAML file of scenarios")

    check = commands.add_parser(
        "validate", help="run the data contracts alone on a source and print a summary"
    )
    check.add_argument(
        "--source",
        required=True,
        help="SQLAlchemy URL of the operational database, or a folder of CSV/Parquet files",
    )
    check.add_argument(
        "--as-of", type=_date, help="the run's first day (default: today in the agency's zone)"
    )
    check.add_argument(
        "--mapping",
        type=Path,
        help="YAML source mapping (default: STAFFCAST_SOURCE_MAPPING; see docs/source-contract.md)",
    )

    fc = commands.add_parser("forecast", help="forecast any daily series in long format")
    fc.add_argument("--input", required=True, type=Path, help="CSV: series_id,date,demand")
    fc.add_argument("--horizon", required=True, type=int, help="days to forecast")
    fc.add_argument("--output", required=True, type=Path, help="CSV to write")
    fc.add_argument(
        "--country",
        help="holidays country code, e.g. US or GB (default: the holiday_country setting)",
    )
    fc.add_argument("--subdivision", help="holidays subdivision code, e.g. CA or ENG")

    rep = commands.add_parser(
        "report", help="write the HTML report and hiring-targets CSV of a published run"
    )
    rep.add_argument("--run-id", help="a published run (default: the current run)")
    rep.add_argument(
        "--reporting", help="SQLAlchemy URL of the reporting database (default: the setting)"
    )
    rep.add_argument(
        "--output",
        type=Path,
        help="HTML file to write (default: reports/staffcast-<as_of>.html in the home folder); "
        "the CSV goes beside it",
    )

    runs = commands.add_parser(
        "runs",
        help="list the latest runs: status (running, published, failed, cancelled, "
        "abandoned), times, which is current, and why a run did not publish",
    )
    runs.add_argument(
        "--reporting", help="SQLAlchemy URL of the reporting database (default: the setting)"
    )
    runs.add_argument("--limit", type=int, default=20, help="runs to list (default 20)")

    db = commands.add_parser(
        "db", help="manage the reporting database: schema upgrades and reader roles"
    )
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="migrate the reporting database to this version's schema (runs also do this)",
    )
    upgrade.add_argument(
        "--reporting", help="SQLAlchemy URL of the reporting database (default: the setting)"
    )
    reader = db_commands.add_parser(
        "grant-reader",
        help="PostgreSQL: let an existing role SELECT the current_* views and nothing else",
    )
    reader.add_argument("role", help="an existing PostgreSQL role (create it first)")
    reader.add_argument(
        "--reporting",
        help="SQLAlchemy URL of the reporting database, connecting as the tables' owner",
    )
    return parser


def _prepare_environment(home: Path | None, prefect: bool = True) -> None:
    """Point Prefect at a local home unless a Prefect server is configured; quiet libraries."""
    if home is not None:
        os.environ["STAFFCAST_HOME"] = str(home)
    if not prefect:
        return
    from staffcast.settings import Settings

    settings = Settings()
    if "PREFECT_API_URL" not in os.environ:
        settings.prefect_home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home.resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    logging.getLogger("cmdstanpy").disabled = True


class _NoTracebackForExpectedErrors(logging.Filter):
    """Prefect logs failed runs with their traceback; expected failures need only the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EXPECTED):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_expected_tracebacks() -> None:
    """Filter the loggers Prefect's engines log failures with (filters on loggers see records
    before any handler, whenever Prefect configures its handlers)."""
    flt = _NoTracebackForExpectedErrors()
    for name in (
        "prefect",
        "prefect.flow_runs",
        "prefect.task_runs",
        "prefect.flow_engine",
        "prefect.task_engine",
    ):
        logging.getLogger(name).addFilter(flt)


def this_monday(day: date) -> date:
    """The Monday on or before ``day``: the date of that week's scheduled run."""
    return day - timedelta(days=day.weekday())


def _demo(args: argparse.Namespace) -> int:
    from flows.weekly_forecast import today_in, weekly_forecast
    from staffcast.demo_agency import build_demo_agency
    from staffcast.settings import Settings

    settings = Settings()
    as_of = args.as_of or this_monday(today_in(settings.agency_timezone))
    agency = build_demo_agency(
        settings.demo_source_path,
        as_of,
        facilities=args.facilities,
        years=args.years,
        seed=args.seed,
    )
    print(
        f"Demo agency written to {agency.path.resolve()}: {agency.facilities} facilities, "
        f"{agency.shift_requests} shift requests, {agency.nurses} nurses, "
        f"{agency.shift_offers} shift offers."
    )
    if args.data_only:
        return 0
    _check_reporting(settings, None)
    with _prefect_api(settings):
        summary = weekly_forecast(
            as_of=as_of,
            allow_future_as_of=True,  # the demo's data is made for its own "today"
            source_url=f"sqlite:///{agency.path.resolve()}",
            scenarios=_scenarios(args, default=list(DEMO_SCENARIOS)),
        )
        CANCELLATION.finish()
    _print_summary(summary)
    return 0


def _flow_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters ``run`` and ``replay`` share, from their options (None: the
    settings')."""
    return {
        "source_url": args.source,
        "reporting_url": args.reporting,
        "scenarios": _scenarios(args),
        "source_mapping": str(args.mapping) if args.mapping is not None else None,
        "allow_future_as_of": True if args.allow_future_as_of else None,
    }


def _run(args: argparse.Namespace) -> int:
    from flows.weekly_forecast import weekly_forecast
    from staffcast.settings import Settings

    settings = Settings()
    options = _flow_options(args)
    _check_reporting(settings, args.reporting)
    with _prefect_api(settings):
        summary = weekly_forecast(
            as_of=args.as_of,
            horizon_days=args.horizon,
            backfill=True if args.backfill else None,
            **options,
        )
        CANCELLATION.finish()
    _print_summary(summary)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from flows.replay import replay
    from staffcast.settings import Settings

    settings = Settings()
    options = _flow_options(args)
    _check_reporting(settings, args.reporting)
    with _prefect_api(settings):
        summary = replay(start=args.start, end=args.end, every=args.every, **options)
        CANCELLATION.finish()
    print(
        f"\nReplay {args.start} .. {args.end} every {args.every} days: "
        f"{len(summary.published)} run(s) published, {len(summary.skipped)} already published "
        f"(skipped), {len(summary.stopped)} stopped by a data rule; "
        f"{summary.seconds:.0f} s (source read once in {summary.read_seconds:.1f} s)."
    )
    for as_of, reason in summary.stopped:
        print(f"  {as_of}: {reason}")
    if summary.published:
        last = summary.published[-1]
        print(f"  last run: {last.run_id} (as of {last.as_of}); report: {last.report_path}")
    return 0


def _check_reporting(settings: Settings, url: str | None) -> None:
    """The reporting database's preflight, before the Prefect server starts: a database that
    refuses costs a second or two."""
    from reports.reporting_db import preflight
    from reports.schema import reporting_engine

    url = url or settings.resolved_reporting_url
    engine = reporting_engine(url)
    try:
        preflight(engine, url, settings.reporting_min_free_mb)
    finally:
        engine.dispose()


def _prefect_api(settings: Settings) -> AbstractContextManager[str]:
    """The configured Prefect API, or a local server staffcast starts and stops."""
    from staffcast.prefect_server import local_prefect_api

    return local_prefect_api(settings.prefect_home, settings.prefect_server_startup_seconds)


def _scenarios(args: argparse.Namespace, default: list[str] | None = None) -> list[str] | None:
    """Scenarios from --scenario and --scenario-file, in that order (None: the settings')."""
    texts = list(args.scenario or [])
    if args.scenario_file is not None:
        texts += scenarios_from_yaml(args.scenario_file)
    if not texts:
        return default
    return texts


def scenarios_from_yaml(path: Path) -> list[str]:
    """A YAML scenario file as ``name:parameter=value,...`` texts (checked by the flow).

    The file maps each scenario name to its parameters, a role after a dot for one role::

        fewer_accept:
          acceptance_rate: 0.25
        tight:
          service_level: 0.9
          acceptance_rate.RN: 0.3
    """
    import yaml

    shape = (
        "map each scenario name to its parameters, e.g. 'tight: {service_level: 0.9, "
        "acceptance_rate.RN: 0.3}'"
    )
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise StaffcastError(f"--scenario-file {path}: cannot read it ({exc.strerror}).") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise StaffcastError(f"--scenario-file {path}: not valid YAML{line}; {shape}.") from exc
    if not isinstance(data, dict) or not data:
        raise StaffcastError(f"--scenario-file {path}: no scenarios found; {shape}.")
    texts = []
    for name, values in data.items():
        if not isinstance(values, dict) or not values:
            raise StaffcastError(
                f"--scenario-file {path}: scenario {name!r} has no parameters; {shape}."
            )
        body = ",".join(f"{key}={value}" for key, value in values.items())
        texts.append(f"{name}:{body}")
    return texts


def _print_summary(summary) -> None:  # type: ignore[no-untyped-def]
    print(
        f"\nPublished run {summary.run_id} (as of {summary.as_of}).\n"
        f"  shift_requests: {summary.rows_extracted} extracted = {summary.rows_used} used + "
        f"{summary.rows_quarantined} quarantined + {summary.rows_excluded} excluded\n"
        f"  series forecast: {summary.series}\n"
        f"  reporting database: {summary.reporting_url}\n"
        f"  report: {summary.report_path}\n"
        f"  hiring targets (CSV): {summary.targets_csv_path}\n"
        "  stages: "
        + ", ".join(f"{name} {m['seconds']:.1f} s" for name, m in summary.stages.items())
    )
    for warning in summary.warnings:
        print(f"  Warning: {warning}")
    for drift in summary.drift:
        print(f"  Drift: {drift}")


def _validate(args: argparse.Namespace) -> int:
    """The data contracts alone, without Prefect: exit 0 when the data is usable (quarantined
    rows included), 1 when a batch rule stops it (the summary still goes to stdout).

    Prints the mapping in use, a few sample values per column as the source gave them, rows per
    table (extracted = used + quarantined + excluded), the rules broken, and the demand that
    quarantined and excluded rows would have carried.
    """
    from data_contracts.summary import format_summary, impact_text
    from data_contracts.validate import validate_with_settings
    from staffcast.mapping import load_mapping
    from staffcast.settings import Settings
    from staffcast.source import redact_url

    settings = Settings()
    if args.mapping is not None:
        settings = settings.model_copy(update={"source_mapping": args.mapping})
    zone = settings.agency_timezone
    as_of = args.as_of or datetime.now(ZoneInfo(zone)).date()
    mapping = load_mapping(settings.source_mapping) if settings.source_mapping else None
    header = (
        f"staffcast validate: source {redact_url(args.source)}, as of {as_of} "
        f"(rows before midnight {zone})\n"
    )
    described = mapping.describe() if mapping is not None else ""
    try:
        extract = _open_source_with_retries(args.source, as_of, settings, mapping)
        header += _mapping_text(settings.source_mapping, extract.described or described)
        result = validate_with_settings(extract, settings)
    except ValidationFailed as exc:
        if "Mapping:" not in header:
            header += _mapping_text(settings.source_mapping, described)
        lost = impact_text(exc.impact) if exc.impact is not None else None
        print(header + format_summary(exc.outcomes, exc.counts, stopped=str(exc), impact=lost))
        raise
    lost = impact_text(result.impact.impact, result.excluded)
    print(
        header
        + _samples_text(result.samples)
        + format_summary(result.outcomes, result.counts, quarantine=result.quarantine, impact=lost)
    )
    return 0


def _mapping_text(path: Path | None, described: str) -> str:
    """The mapping in use, for the validate header."""
    if path is None:
        return "Mapping: none (staffcast's own table and column names).\n\n"
    body = "\n".join(f"  {line}" for line in described.splitlines() if line.strip())
    return f"Mapping: {path}\n{body}\n\n"


def _samples_text(samples: dict[str, dict[str, list[str]]], width: int = 60) -> str:
    """A few values per column as the source gave them (first rows read)."""
    lines = ["Sample values per column (as read, before repairs):"]
    for table, columns in samples.items():
        lines.append(f"  {table}:")
        for column, values in columns.items():
            shown = ", ".join(repr(v) for v in values) or "(all missing)"
            if len(shown) > width:
                shown = shown[: width - 3] + "..."
            lines.append(f"    {column}: {shown}")
    return "\n".join(lines) + "\n\n"


def _open_source_with_retries(
    source: str, as_of: date, settings: Settings, mapping: SourceMapping | None = None
) -> SourceExtract:
    """open_source, tried again with backoff for settings.source_retry_seconds while the
    database is busy or does not answer (staffcast.retry); each wait is announced on stderr."""
    from staffcast.retry import read_source, retry_reason

    def announce(attempt: int, delay: float, error: SourceUnavailable) -> None:
        print(
            f"staffcast: the source is unavailable, {retry_reason(error)}; try {attempt + 1} "
            f"in {delay:.1f} s (retrying for up to {settings.source_retry_seconds:g} s)",
            file=sys.stderr,
        )

    return read_source(source, as_of, settings, mapping, notify=announce)


def _forecast(args: argparse.Namespace) -> int:
    from staffcast.forecast_file import forecast_file
    from staffcast.settings import Settings

    settings = Settings()
    country = args.country or settings.holiday_country
    subdivision = (
        args.subdivision if args.country else (args.subdivision or settings.holiday_subdivision)
    )
    rows = forecast_file(args.input, args.horizon, args.output, country, subdivision)
    print(f"Wrote {rows} forecast rows to {args.output}")
    return 0


def _report(args: argparse.Namespace) -> int:
    """``staffcast report``: the HTML report and the targets CSV of a published run."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import DBAPIError

    from reports.html_report import published_run, write_report
    from reports.reporting_db import refused
    from reports.schema import SCHEMA_REVISION, reporting_engine, schema_revision
    from reports.targets_csv import targets_csv_path, write_targets_csv
    from staffcast.settings import Settings
    from staffcast.source import redact_url

    settings = Settings()
    url = args.reporting or settings.resolved_reporting_url
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]  # sqlite:///file:x?mode=ro
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not Path(database).expanduser().is_file()
    ):
        raise StaffcastError(
            f"The reporting database file {database} does not exist: run "
            "`staffcast run` or `staffcast demo` first, or pass --reporting."
        )
    engine = reporting_engine(url)
    try:
        with engine.connect() as connection:
            revision = schema_revision(connection)
        if revision != SCHEMA_REVISION:
            raise StaffcastError(
                f"The reporting database at {redact_url(url)} is at schema revision "
                f"{revision or '(none: no staffcast tables)'}, and this staffcast reads "
                f"{SCHEMA_REVISION}: run `staffcast db upgrade` (or a weekly run) first."
            )
        try:
            run = published_run(engine, args.run_id)
        except ValueError as exc:
            raise StaffcastError(str(exc)) from exc
        html_path = args.output or settings.report_path(run["as_of"])
        csv_path = targets_csv_path(html_path)
        started = time.perf_counter()
        write_report(engine, html_path, run["run_id"])
        write_targets_csv(engine, csv_path, run["run_id"])
    except DBAPIError as exc:  # unreachable, refused, or a file that is not a database
        raise refused(exc, url, "reading the run", "No report was written.") from exc
    finally:
        engine.dispose()
    print(
        f"Report of run {run['run_id']} (as of {run['as_of']}) written in "
        f"{time.perf_counter() - started:.1f} s:\n  {html_path.resolve()} "
        f"({html_path.stat().st_size / 1e6:.2f} MB)\n  {csv_path.resolve()}"
    )
    return 0


def _runs(args: argparse.Namespace) -> int:
    """``staffcast runs``: the latest runs, newest first, without Prefect."""
    import sqlalchemy as sa

    from reports.reporting_db import refused, sqlite_path
    from reports.schema import current_view, reporting_engine, table
    from staffcast.settings import Settings
    from staffcast.source import redact_url

    settings = Settings()
    url = args.reporting or settings.resolved_reporting_url
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StaffcastError(f"The reporting database file {path} does not exist: no runs yet.")
    engine = reporting_engine(url)
    forecast_run = table("forecast_run")
    try:
        with engine.connect() as connection:
            current = connection.execute(
                sa.select(current_view("forecast_run").c.run_id)
            ).scalar_one_or_none()
            rows = connection.execute(
                sa.select(forecast_run).order_by(forecast_run.c.started_at.desc()).limit(args.limit)
            ).all()
    except sa.exc.DBAPIError as exc:
        raise refused(exc, url, "reading its runs", "Nothing was changed.") from exc
    finally:
        engine.dispose()
    print(f"Runs in {redact_url(url)} (newest first; * is the current run):")
    for row in rows:
        last = row.finished_at or row.heartbeat_at or row.started_at
        label = "finished" if row.finished_at else "last heartbeat"
        why = (row.error or "").strip().splitlines()[0][:90] if row.error else ""
        silent = (datetime.now(ZoneInfo("UTC")) - last).total_seconds()
        if row.status == "running" and silent > settings.abandon_after_seconds:
            why = (
                f"silent for {silent / 60:.0f} min: its process died; the next run marks it "
                "abandoned"
            )
        print(
            f"{'*' if row.run_id == current else ' '} {row.run_id}  as of {row.as_of}  "
            f"{row.status:<9}  started {row.started_at:%Y-%m-%d %H:%M} UTC, {label} "
            f"{last:%H:%M:%S}" + (f"  {why}" if why else "")
        )
    return 0


def _db(args: argparse.Namespace) -> int:
    """``staffcast db upgrade`` and ``staffcast db grant-reader``, without Prefect."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from reports.reporting_db import refused
    from reports.schema import reporting_engine
    from staffcast.settings import Settings
    from staffcast.source import redact_url

    url = args.reporting or Settings().resolved_reporting_url
    engine = reporting_engine(url)
    try:
        if args.db_command == "upgrade":
            return _db_upgrade(engine, redact_url(url))
        return _db_grant_reader(engine, args.role)
    except (OperationalError, ProgrammingError) as exc:
        raise refused(
            exc,
            url,
            f"`staffcast db {args.db_command}`",
            "Connect as the owner of the reporting tables; nothing was changed.",
        ) from exc
    finally:
        engine.dispose()


def _db_upgrade(engine: Engine, shown_url: str) -> int:
    from reports.schema import upgrade_schema

    change = upgrade_schema(engine)
    if change.before == change.after:
        print(f"Reporting database {shown_url} is at schema revision {change.after}; no change.")
    else:
        print(
            f"Reporting database {shown_url} migrated from schema revision "
            f"{change.before or '(none)'} to {change.after}."
        )
    return 0


def _db_grant_reader(engine: Engine, role: str) -> int:
    from reports.db_admin import grant_reader

    grant = grant_reader(engine, role)
    print(
        f"Role {grant.role} may SELECT {len(grant.views)} views in schema {grant.schema}: "
        f"{', '.join(grant.views)}; no table, no writes."
    )
    if grant.leaks:
        print(
            f"staffcast: role {grant.role} still holds {', '.join(grant.leaks)} through a role "
            "it is a member of or a grant to PUBLIC; revoke those (staffcast only revokes "
            "direct grants).",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``staffcast`` console script."""
    args = _parser().parse_args(argv)
    _prepare_environment(
        args.home, prefect=args.command not in ("validate", "db", "report", "runs")
    )
    handlers = {
        "demo": _demo,
        "run": _run,
        "replay": _replay,
        "validate": _validate,
        "forecast": _forecast,
        "report": _report,
        "runs": _runs,
        "db": _db,
    }
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.command in ("demo", "run", "replay"):
            CANCELLATION.reset()
            CANCELLATION.install()
            _quiet_expected_tracebacks()
        return handlers[args.command](args)
    except EXPECTED as exc:
        CANCELLATION.finish()
        _flush_logs()
        print(f"staffcast: {exc}", file=sys.stderr)
        if isinstance(exc, RunCancelled):
            _exit_soon(exit_code(exc))
        return exit_code(exc)
    finally:
        CANCELLATION.finish()
        # What the run did is decided: a SIGTERM while the process winds down is held by the
        # finished cancellation handler (the exit status stays the run's; not SIG_IGN, which
        # processes started later would inherit), SIGINT gets its handler back.
        if before[signal.SIGTERM] is signal.SIG_DFL and args.command in ("demo", "run", "replay"):
            del before[signal.SIGTERM]
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _exit_soon(code: int, seconds: float = 5.0) -> None:
    """A cancelled run has recorded its outcome and printed its paragraph: should the
    interpreter's shutdown then wait on a thread a library left behind (seen once in CI, a
    SIGTERM between two stages), the process still ends, with the run's exit code."""
    _flush_logs()
    timer = threading.Timer(seconds, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


def _flush_logs() -> None:
    """Let log lines of the failed run reach the terminal before the paragraph."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()


if __name__ == "__main__":
    sys.exit(main())
