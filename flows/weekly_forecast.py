"""The weekly run: extract -> validate -> demand -> forecast -> plan -> publish.

Deployed by prefect.yaml (Mondays 05:00 America/Chicago); ``staffcast run`` calls it directly.
Tasks are thin and typed; the work lives in staffcast.source, data_contracts, models and
reports. Forecast tasks each take a batch of series (``series_per_task``), never one series;
they run in the run's worker processes or, with ``dask_address`` or ``dask_workers`` set, on a
Dask cluster (staffcast.dask_cluster), where nothing but the batches goes.

The source is a database URL or a folder of CSV/Parquet files (``staffcast.source_files``). The
validation summary goes to a markdown artifact (key ``data-quality``) on every run and to the
``validation_result`` table: published with the run, or recorded on its own when a batch rule
stops the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import TerminationSignal
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner

from data_contracts.summary import impact_markdown, markdown_summary, summary_frame
from flows.run_progress import RunProgress
from models import demand as demand_model
from models.calendar import HolidayCalendar
from models.forecasting import (
    DEFAULT_COMBINATIONS,
    DEFAULT_MODELS,
    EngineConfig,
    EngineResult,
    forecast_many,
)
from models.plan import (
    BASE_SCENARIO,
    PlanInputs,
    Scenario,
    StaffingPlan,
    build_plan,
    parse_scenario,
)
from models.regional import (
    DemandSimulation,
    shared_day_cv,
    shared_level_cv,
    simulate_demand,
)
from models.staffing import StaffingParams
from reports import publish as publishing
from reports.html_report import write_report
from reports.reporting_db import preflight, refused
from reports.schema import reporting_engine
from reports.targets_csv import TARGET_COLUMNS, targets_csv_path, write_targets_csv
from reports.track_record import TrackRecord, score_published
from staffcast import __version__
from staffcast.dask_cluster import check_engine, dask_task_runner, release
from staffcast.die_with_parent import die_with_parent
from staffcast.errors import RunInProgress, SourceUnavailable, StaffcastError, ValidationFailed
from staffcast.mapping import SourceMapping, load_mapping
from staffcast.retry import read_source, retry_reason
from staffcast.run_control import CANCELLATION, Heartbeat, RunCancelled, wait_until
from staffcast.settings import Settings
from staffcast.source import SourceExtract, as_of_instant, redact_url

if TYPE_CHECKING:  # Great Expectations is imported by the validate task: Dask workers skip it
    from data_contracts.validate import ValidationResult

TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
HISTORY_DAYS = 371
"""Days of observed demand each run publishes (``demand_history``): a year and a week, so the
report can draw the same period last year (364 days back, same weekdays) beside the forecast."""


@dataclass(frozen=True)
class RunSummary:
    """What a finished run tells its caller."""

    run_id: str
    as_of: date
    reporting_url: str
    report_path: str
    rows_extracted: int
    rows_used: int
    rows_quarantined: int
    series: int
    stages: dict[str, dict[str, float | None]]
    targets_csv_path: str = ""
    rows_excluded: int = 0
    warnings: tuple[str, ...] = ()
    """Sentences about demand the plan may miss (bad rows hiding a region's requests)."""
    drift: tuple[str, ...] = ()
    """Sentences about track-record measures outside their band (reports.track_record)."""


def today_in(zone: str) -> date:
    """Today's date in the agency's zone (a run's default as_of)."""
    return datetime.now(ZoneInfo(zone)).date()


@task(**TASK_OPTIONS)
def extract(
    source_url: str, as_of: date, settings: Settings, mapping: SourceMapping | None = None
) -> SourceExtract:
    """Read the needed columns of the source tables (database URL or folder of files), through
    the agency's source mapping when it has one; a source that is busy or does not answer is
    tried again with backoff for settings.source_retry_seconds (staffcast.retry)."""
    logger = get_run_logger()

    def retrying(attempt: int, delay: float, error: SourceUnavailable) -> None:
        logger.warning(
            "The source is unavailable (%s); try %d in %.1f s",
            retry_reason(error),
            attempt + 1,
            delay,
        )

    result = read_source(source_url, as_of, settings, mapping, notify=retrying)
    logger.info("Extracted rows: %s", result.rows())
    return result


@task(**TASK_OPTIONS)
def validate(source: SourceExtract, settings: Settings) -> ValidationResult:
    """Run the data contracts; stops the run on batch-level failures."""
    from data_contracts.validate import validate_with_settings

    result = validate_with_settings(source, settings)
    extracted, used, quarantined = result.rows("shift_requests")
    logger = get_run_logger()
    logger.info(
        "shift_requests: %d extracted = %d used + %d quarantined + %d excluded",
        extracted,
        used,
        quarantined,
        result.excluded_rows("shift_requests"),
    )
    for warning in result.impact.warnings():
        logger.warning("Data quality: %s", warning)
    return result


@task(**TASK_OPTIONS)
def build_demand(
    validated: ValidationResult, source: SourceExtract, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily demand history per facility and role, and requests booked for later days;
    quarantined requests whose facility and date are known are put back (impute_lost_demand)."""
    assert validated.demand is not None  # counted as validation read the requests
    return demand_model.demand_from_counts(
        validated.demand,
        validated.tables["facilities"],
        source.as_of,
        imputed=validated.impact.imputed if settings.impute_lost_demand else None,
    )


@task(**TASK_OPTIONS)
def forecast_batch(
    history: pd.DataFrame,
    horizon: int,
    config: EngineConfig,
    start: pd.Timestamp,
    processes: Executor | None = None,
) -> EngineResult:
    """Forecast one batch of series (many series per task run).

    With ``processes`` the work runs in one of its worker processes: the flow's tasks run in
    threads, which Python's interpreter lock keeps on one core; the task run itself (state,
    retries, logs) stays in the flow. On a Dask cluster (staffcast.dask_cluster) the whole task
    run is on a Dask worker, which records it in the run's Prefect API.
    """
    if processes is None:
        return forecast_many(history, horizon, config=config, start=start)
    return processes.submit(forecast_many, history, horizon, config=config, start=start).result()


@contextmanager
def _forecast_processes(workers: int, batches: int) -> Iterator[Executor | None]:
    """A pool of ``workers`` processes (0: one per core) when there is more than one batch."""
    workers = min(workers or os.cpu_count() or 1, batches)
    if workers <= 1:
        yield None
        return
    # forkserver: worker processes do not inherit the flow's threads (Prefect's event loop).
    context = multiprocessing.get_context("forkserver")
    # A SIGKILLed run takes the forkserver and its workers with it (staffcast.die_with_parent).
    context.set_forkserver_preload(["staffcast._forkserver_preload"])
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent)
    try:
        yield pool
    except BaseException:
        # A cancelled or failed run stops its workers now, not after the batches queued.
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)
        raise
    else:
        pool.shutdown(wait=True)


@contextmanager
def _forecast_runner(
    settings: Settings, batches: int
) -> Iterator[tuple[TaskRunner[Any], Executor | None]]:
    """Where the forecast batches run, each a task run of :func:`forecast_batch`: on the Dask
    cluster the settings name (dask_address or dask_workers; staffcast.dask_cluster), else on
    the flow's own task runner with the run's pool of worker processes (forecast_workers)."""
    if settings.dask_address or settings.dask_workers:
        with dask_task_runner(settings.dask_address, settings.dask_workers) as runner:
            yield runner, None
        return
    context = FlowRunContext.get()
    if context is None:
        raise RuntimeError("The forecast batches run inside the weekly flow run.")
    with _forecast_processes(settings.forecast_workers, batches) as processes:
        yield context.task_runner, processes


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LARGE_BLOCK_BYTES = 1 << 20
"""Blocks this large or larger get pages of their own from the operating system, given back
as soon as they are freed (glibc's default threshold rises to 32 MB after the first large
free, after which a national agency's chunk-sized arrays reuse, and fragment, the heap: the
run's resident size grew with the agency, ~400 MB more at 2,000 facilities)."""


def _bound_heap() -> None:
    """Fix glibc's mmap threshold at :data:`LARGE_BLOCK_BYTES` for this process (no-op
    elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)


def _release_free_memory() -> None:
    """Hand memory freed by Python back to the operating system (glibc keeps freed pages of
    large frames for reuse, so a stage's peak would stay the run's resident size)."""
    gc.collect()  # frames in reference cycles (GX's validators) go now, not at some later time
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def engine_config(settings: Settings) -> EngineConfig:
    """The forecasting engine's configuration from the settings (a clear error if wrong)."""
    calendar = HolidayCalendar(
        settings.holiday_country,
        settings.holiday_subdivision,
        extra_days=tuple(sorted(settings.agency_days.items())),
    )
    try:
        calendar.validate()
        models, combinations = settings.forecast_models, settings.forecast_combinations
        return EngineConfig(
            calendar=calendar,
            models=DEFAULT_MODELS if models is None else tuple(models),
            combinations=DEFAULT_COMBINATIONS if combinations is None else tuple(combinations),
            origins=settings.backtest_origins,
            origin_step=settings.backtest_origin_step,
            max_backtest_days=settings.backtest_days,
            pooling=settings.selection_pooling,
        )
    except ValueError as exc:
        raise StaffcastError(f"Forecast settings are not usable: {exc}") from exc


@task(**TASK_OPTIONS)
def simulate(
    forecasts: pd.DataFrame,
    history: pd.DataFrame,
    backtest_errors: pd.DataFrame,
    settings: Settings,
) -> DemandSimulation:
    """Facility quantiles and regional demand from summed sample paths.

    The paths carry a shared day effect (estimated from history) and a shared level error
    (estimated from the forecasts' own backtests), so regional intervals reflect how the
    facilities of a region move together.
    """
    logger = get_run_logger()
    day_cv = shared_day_cv(history)
    level_cv = shared_level_cv(backtest_errors, history)
    logger.info(
        "Shared day effect (cv) per region and role: %s",
        ", ".join(f"{r}/{k} {v:.3f}" for (r, k), v in day_cv.items()),
    )
    logger.info(
        "Shared forecast level error (cv) per role: %s",
        ", ".join(f"{k} {v:.3f}" for k, v in level_cv.groupby(level="role").first().items()),
    )
    return simulate_demand(
        forecasts,
        None,
        n_paths=settings.sample_paths,
        seed=settings.seed,
        day_cv=day_cv,
        level_cv=level_cv,
    )


@task(**TASK_OPTIONS)
def plan(
    simulation: DemandSimulation,
    validated: ValidationResult,
    as_of: date,
    settings: Settings,
    calendar: HolidayCalendar,
    scenarios: tuple[Scenario, ...] = (),
) -> StaffingPlan:
    """On-call pools, recruiting targets and holiday coverage: 'base', then each scenario."""
    plans = [
        build_plan(
            simulation,
            {**validated.tables, "offers": validated.offers},
            _plan_inputs(as_of, settings, calendar, scenario),
        )
        for scenario in (None, *scenarios)
    ]
    first = plans[0]
    return StaffingPlan(
        pd.concat([p.on_call_pool for p in plans], ignore_index=True),
        pd.concat([p.recruiting_target for p in plans], ignore_index=True),
        pd.concat([p.holiday_coverage for p in plans], ignore_index=True),
        first.acceptance,
        first.attrition,
        pd.concat([p.hiring_plan for p in plans], ignore_index=True),
    )


def _parse_scenarios(texts: tuple[str, ...]) -> tuple[Scenario, ...]:
    """Scenarios from their text; a clear error (before any work) when one is malformed."""
    try:
        parsed = tuple(parse_scenario(t) for t in texts)
    except ValueError as exc:
        raise StaffcastError(f"--scenario: {exc}") from exc
    names = [s.name for s in parsed]
    if len(set(names)) < len(names):
        raise StaffcastError(f"--scenario: two scenarios are named the same ({names}).")
    return parsed


def _check_as_of(as_of: date, settings: Settings) -> None:
    """Refuse (before any work) an as_of after today in the agency's zone, unless allowed."""
    today = today_in(settings.agency_timezone)
    if as_of > today and not settings.allow_future_as_of:
        raise StaffcastError(
            f"as_of {as_of} is after today ({today} in {settings.agency_timezone}): a run for a "
            "future week sees demand that has not been requested yet and would become the "
            "current plan. Run for today or an earlier date, or pass --allow-future-as-of "
            "(STAFFCAST_ALLOW_FUTURE_AS_OF=true) if you mean it; nothing was published."
        )


def _check_region_staffing(settings: Settings) -> None:
    """A clear error (before any work) for a per-region override that is not a parameter."""
    for region, roles in settings.region_staffing.items():
        for role, values in roles.items():
            base = settings.staffing.get(role)
            if base is None:
                raise StaffcastError(
                    f"region_staffing[{region!r}] names role {role!r}; the roles are "
                    f"{', '.join(settings.staffing)}."
                )
            try:
                StaffingParams(**{**base.model_dump(), **values})
            except (TypeError, ValueError) as exc:
                raise StaffcastError(
                    f"region_staffing[{region!r}][{role!r}] = {values} is not usable: {exc}"
                ) from exc


def _plan_inputs(
    as_of: date, settings: Settings, calendar: HolidayCalendar, scenario: Scenario | None
) -> PlanInputs:
    return PlanInputs(
        as_of=as_of,
        params_by_role={
            role: StaffingParams(**p.model_dump()) for role, p in settings.staffing.items()
        },
        acceptance_lookback_days=settings.acceptance_lookback_days,
        min_offers=settings.min_offers_for_estimate,
        attrition_lookback_days=settings.attrition_lookback_days,
        min_pool_for_attrition=settings.min_pool_for_attrition,
        recruiting_window_weeks=settings.recruiting_window_weeks,
        calendar=calendar,
        scenario=scenario,
        region_overrides=settings.region_staffing,
    )


@task(**TASK_OPTIONS)
def track_record(
    reporting_url: str, as_of: date, history: pd.DataFrame, validated: ValidationResult
) -> TrackRecord:
    """Score the published runs of earlier weeks against the demand that came: forecasts,
    pools, drift (reports.track_record); read now, written with the run's publish."""
    engine = reporting_engine(reporting_url)
    try:
        record = score_published(
            engine, as_of, history, validated.offers, validated.tables["facilities"]
        )
    except sa.exc.DBAPIError as exc:
        raise refused(exc, reporting_url, "reading the track record") from exc
    finally:
        engine.dispose()
    logger = get_run_logger()
    logger.info(
        "Track record: %d forecast scores and %d pool weeks added; %d drift flag(s)",
        len(record.forecast_score),
        len(record.pool_outcome),
        len(record.flags),
    )
    for message in record.flags["message"]:
        logger.warning("Drift: %s", message)
    return record


@task(**TASK_OPTIONS)
def publish(
    reporting_url: str,
    run_id: str,
    tables: dict[str, pd.DataFrame],
    counts: dict[str, int],
    backfill: bool = False,
) -> None:
    """Write every table of the run in one transaction and flip it to published; signals
    are held during the COMMIT (run_control)."""
    engine = reporting_engine(reporting_url)
    try:
        publishing.publish_run(
            engine,
            run_id,
            tables,
            publishing.RunCounts(**counts),
            backfill=backfill,
            commit_guard=CANCELLATION.protected,
        )
    except ValueError as exc:  # the run was replaced or ended meanwhile: no traceback
        raise StaffcastError(f"Run {run_id} could not publish: {exc}.") from exc
    except sa.exc.DBAPIError as exc:  # one paragraph, in the task's log too
        raise refused(exc, reporting_url, "the run's writes") from exc
    finally:
        engine.dispose()


def series_batches(history: pd.DataFrame, series_per_task: int) -> list[pd.DataFrame]:
    """The forecast batches: ``series_per_task`` series each, in order of first appearance,
    with only the columns the engine reads (``series_id, date, demand``), which are all that
    travels to worker processes or a Dask cluster. A series' model choice is pooled with its
    batch (models.forecasting._select), so every engine gets the same batches."""
    ids = history["series_id"].unique()
    return [
        history.loc[
            history["series_id"].isin(ids[i : i + series_per_task]),
            ["series_id", "date", "demand"],
        ]
        for i in range(0, len(ids), series_per_task)
    ]


def _forecast_all(
    history: pd.DataFrame,
    booked: pd.DataFrame,
    validated: ValidationResult,
    as_of: date,
    settings: Settings,
    config: EngineConfig,
    stages: RunProgress,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Forecast every series in batches; closed facilities get zero after their last day.

    Returns the forecast, the backtest scores (model_evaluation) and the backtest errors.
    """
    batches = series_batches(history, settings.series_per_task)
    parameters = {"horizon": settings.horizon_days, "config": config, "start": pd.Timestamp(as_of)}
    with _forecast_runner(settings, len(batches)) as (runner, processes):
        futures = [
            runner.submit(forecast_batch, {"history": b, **parameters, "processes": processes})
            for b in batches
        ]
        position = {future: i for i, future in enumerate(futures)}
        finished: dict[int, EngineResult] = {}
        for done, future in enumerate(as_completed(futures), start=1):
            CANCELLATION.check()
            finished[position[future]] = future.result()  # a failed batch's error is raised now
            release(future)
            stages.within(
                "forecast", done / len(futures), f"Forecast: {done} of {len(futures)} batches"
            )
    # In the order submitted, whichever finished first: every engine publishes the same numbers.
    results = [finished[i] for i in range(len(batches))]
    forecast = pd.concat([r.forecast for r in results], ignore_index=True)
    evaluation = pd.concat([r.evaluation for r in results], ignore_index=True)
    backtest_errors = pd.concat([r.backtest_errors for r in results], ignore_index=True)

    series = history.drop_duplicates("series_id").set_index("series_id")
    forecast["facility_id"] = forecast["series_id"].map(series["facility_id"])
    forecast["role"] = forecast["series_id"].map(series["role"])
    forecast["region"] = forecast["series_id"].map(series["region"])
    facilities = validated.tables["facilities"].set_index("facility_id")
    closes = forecast["facility_id"].map(facilities["active_to"])
    closed = closes.notna() & (forecast["date"] > closes)
    forecast.loc[closed, "mean"] = 0.0
    forecast.loc[closed, "model"] = "closed"
    forecast = forecast.merge(
        booked[["series_id", "date", "booked"]], how="left", on=["series_id", "date"]
    )
    forecast["booked"] = forecast["booked"].fillna(0).astype(int)
    evaluation["facility_id"] = evaluation["series_id"].map(series["facility_id"])
    evaluation["role"] = evaluation["series_id"].map(series["role"])
    return forecast, evaluation, backtest_errors


@flow(name="weekly-forecast", log_prints=True)
def weekly_forecast(
    as_of: date | None = None,
    source_url: str | None = None,
    reporting_url: str | None = None,
    horizon_days: int | None = None,
    scenarios: list[str] | None = None,
    source_mapping: str | None = None,
    allow_future_as_of: bool | None = None,
    backfill: bool | None = None,
) -> RunSummary:
    """Forecast demand, size on-call pools and hiring targets, and publish them.

    Parameters default to the settings (``STAFFCAST_*``): as_of to today in the agency's zone,
    the source to the demo database, the reporting database to ``.staffcast/reporting.db``.
    ``scenarios`` ('name:parameter=value,...', see :func:`models.plan.parse_scenario`) are
    planned and stored beside 'base'. ``source_mapping`` is the YAML file mapping the agency's
    own tables, columns and codes (default: the setting; none: staffcast's own names).
    ``backfill`` publishes without taking over from a current run of a later as_of.

    SIGTERM and SIGINT (and a Prefect cancellation) cancel the run: see
    staffcast.run_control.
    """
    settings = settings_with(
        source_url=source_url,
        reporting_url=reporting_url,
        horizon_days=horizon_days,
        scenarios=scenarios,
        source_mapping=source_mapping,
        allow_future_as_of=allow_future_as_of,
        backfill=backfill,
    )
    _bound_heap()
    with _cancellable():
        return _weekly_run(settings, as_of)


def _cut_at(source: SourceExtract, as_of: date, zone: str) -> SourceExtract:
    """The extract as a run at ``as_of`` reads it (validation cuts at as_of). Validation takes
    the tables out of their dict and may change them: each run gets its own dict and its own
    (copy-on-write) frames, so the extract serves the next run unchanged."""
    tables = {
        name: frame.copy(deep=False) if isinstance(frame, pd.DataFrame) else frame
        for name, frame in source.tables.items()
    }
    return replace(source, as_of=as_of, as_of_utc=as_of_instant(as_of, zone), tables=tables)


def settings_with(
    *, scenarios: list[str] | None = None, source_mapping: str | None = None, **overrides: Any
) -> Settings:
    """The settings (``STAFFCAST_*``) with the flow parameters that were given (None: the
    setting's own value); ``scenarios`` and ``source_mapping`` as the flows take them (a list,
    a path's text)."""
    if scenarios is not None:
        overrides["scenarios"] = tuple(scenarios)
    if source_mapping is not None:
        overrides["source_mapping"] = Path(source_mapping)
    return Settings().model_copy(update={k: v for k, v in overrides.items() if v is not None})


@contextmanager
def _cancellable() -> Iterator[None]:
    """SIGTERM and SIGINT raise RunCancelled in the flow (in place of Prefect's handler, whose
    TerminationSignal no ``except Exception`` sees); the handlers before are put back after."""
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    CANCELLATION.check()  # a signal seen before the flow began
    CANCELLATION.reset()  # what an earlier flow of this process left
    CANCELLATION.install()
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _weekly_run(
    settings: Settings, as_of: date | None, source: SourceExtract | None = None
) -> RunSummary:
    """One weekly run. ``source``: an extract the caller read at a later as_of (``staffcast
    replay`` reads the source once for all its weeks): it is cut at this run's as_of, as
    every extract is (validation keeps only rows that existed before as_of)."""
    what_ifs = _parse_scenarios(settings.scenarios)
    _check_region_staffing(settings)
    check_engine(settings.dask_address, settings.dask_workers)
    config = engine_config(settings)  # a bad holiday or model setting stops before any work
    mapping = load_mapping(settings.source_mapping) if settings.source_mapping else None
    as_of = as_of or today_in(settings.agency_timezone)
    _check_as_of(as_of, settings)
    logger = get_run_logger()
    src_url, rep_url = settings.resolved_source_url, settings.resolved_reporting_url

    engine = reporting_engine(rep_url)
    stages = RunProgress(bar=settings.progress_bar)
    started: list[str] = []  # the run_id, once the run is recorded
    beat: Heartbeat | None = None
    try:
        preflight(engine, rep_url, settings.reporting_min_free_mb)
        try:
            recorded = publishing.record_pending(engine, settings.unrecorded_dir)
        except sa.exc.DBAPIError as exc:
            raise refused(exc, rep_url, "recording earlier runs' outcomes") from exc
        if recorded:
            logger.warning("Recorded the outcome of earlier run(s) %s", ", ".join(recorded))
        _start(engine, rep_url, as_of, settings, started)
        run_id = started[0]
        logger.info("Run %s for as_of %s started", run_id, as_of)
        beat = Heartbeat(
            functools.partial(_beat, engine, run_id, flow_run.get_id()),
            settings.heartbeat_seconds,
        )
        with beat:
            if source is None:
                read = functools.partial(extract, src_url, as_of, settings, mapping)
                source = stages.run("extract", read)
            else:
                source = _cut_at(source, as_of, settings.agency_timezone)
            validated = stages.run("validate", validate, source, settings)
            _release_free_memory()  # the chunks' frames are gone; give their pages back
            _data_quality_artifact(
                markdown_summary(
                    validated.outcomes, validated.counts, quarantine=validated.quarantine
                )
                + "\n\n"
                + impact_markdown(validated.impact.impact, validated.excluded)
            )
            history, booked = stages.run("demand", build_demand, validated, source, settings)
            if history.empty:  # validation's history_demand rule stops this first
                raise StaffcastError(
                    "No request counts as demand in the history before as_of, so there is "
                    "nothing to forecast; see `staffcast validate`. Nothing was published."
                )
            forecast, evaluation, backtest_errors = stages.run(
                "forecast",
                _forecast_all,
                history,
                booked,
                validated,
                as_of,
                settings,
                config,
                stages,
            )
            simulation = stages.run(
                "regional", simulate, forecast, history, backtest_errors, settings
            )
            staffing = stages.run(
                "plan", plan, simulation, validated, as_of, settings, config.calendar, what_ifs
            )
            record = stages.run("track_record", track_record, rep_url, as_of, history, validated)
            extracted, used, quarantined = validated.rows("shift_requests")
            excluded = validated.excluded_rows("shift_requests")
            counts = {
                "rows_extracted": extracted,
                "rows_used": used,
                "rows_quarantined": quarantined,
                "rows_excluded": excluded,
            }
            tables = {
                **_publishable(validated, history, simulation, forecast, evaluation, staffing),
                **record.tables(),
            }
            stages.run("publish", publish, rep_url, run_id, tables, counts, settings.backfill)
    except BaseException as exc:  # noqa: BLE001 - a cancellation is recorded too, then raised
        if not started:  # nothing of the run is in the database yet
            engine.dispose()
            raise
        raise _ended(engine, rep_url, started[0], exc, settings, stages) from None
    finally:
        if beat is not None and beat.last_error is not None:  # e.g. SQLite busy publishing
            logger.info("A heartbeat was missed: %s", str(beat.last_error).splitlines()[0][:200])
    try:
        settings.report_dir.mkdir(parents=True, exist_ok=True)
        report = stages.run("report", write_report, engine, settings.report_path(as_of), run_id)
        targets_csv = write_targets_csv(engine, targets_csv_path(report), run_id)
    except sa.exc.DBAPIError as exc:
        raise refused(
            exc,
            rep_url,
            "reading the run back for its report",
            f"Run {run_id} is published and current; `staffcast report` writes its report "
            "once the database answers.",
        ) from exc
    except RunCancelled as exc:
        raise RunCancelled(
            f"Run {run_id} is published and current; it was cancelled "
            f"({signal.Signals(exc.signum).name}) while its report was being written, so the "
            "report was not written: `staffcast report` writes it.",
            exc.signum,
        ) from None
    finally:
        engine.dispose()
    summary = RunSummary(
        run_id,
        as_of,
        redact_url(rep_url),
        str(Path(report).resolve()),
        extracted,
        used,
        quarantined,
        int(history["series_id"].nunique()),
        stages.timings,
        str(Path(targets_csv).resolve()),
        excluded,
        tuple(validated.impact.warnings()),
        tuple(record.flags["message"]),
    )
    create_markdown_artifact(
        _markdown(summary, staffing, record.flags), key="weekly-forecast-summary"
    )
    _table_artifacts(staffing, record.flags)
    stages.progress(1.0, "Weekly run: published")
    logger.info(
        "Published run %s: rows extracted %d = used %d + quarantined %d + excluded %d",
        run_id,
        extracted,
        used,
        quarantined,
        excluded,
    )
    return summary


def _start(
    engine: sa.Engine, url: str, as_of: date, settings: Settings, started: list[str]
) -> None:
    """Record the run as running and append its run_id to ``started``; with another run of
    as_of in progress, refuse or wait (settings.concurrent_run).

    A signal that lands while the row is being written is held until the run_id is handed
    out, so a cancelled run is always recorded as such."""
    parameters = {
        "as_of": as_of.isoformat(),
        "horizon_days": settings.horizon_days,
        "agency_timezone": settings.agency_timezone,
        "late_cancellation_hours": settings.late_cancellation_hours,
        "staffing": {role: p.model_dump() for role, p in settings.staffing.items()},
        "sample_paths": settings.sample_paths,
        "seed": settings.seed,
        "backfill": settings.backfill,
    }
    deadline = time.monotonic() + settings.concurrent_wait_seconds
    waited = False
    while True:
        try:
            with CANCELLATION.protected():
                started.append(
                    publishing.start_run(
                        engine,
                        as_of,
                        parameters,
                        str(flow_run.get_id() or ""),
                        __version__,
                        settings.horizon_days,
                        stale_after_seconds=settings.abandon_after_seconds,
                    )
                )
            return
        except RunInProgress as exc:
            if settings.concurrent_run != "wait" or time.monotonic() >= deadline:
                if waited:
                    raise RunInProgress(
                        f"{exc} This run waited {settings.concurrent_wait_seconds:g} s "
                        "(STAFFCAST_CONCURRENT_WAIT_SECONDS) for it.",
                        exc.run_id,
                    ) from None
                raise
            if not waited:
                get_run_logger().warning("Waiting for run %s to end", exc.run_id)
            waited = True
            wait_until(min(deadline, time.monotonic() + min(settings.heartbeat_seconds, 10)))
        except sa.exc.DBAPIError as exc:
            raise refused(exc, url, "recording the run's start") from exc


def _beat(engine: sa.Engine, run_id: str, prefect_run_id: str | None) -> bool:
    """One heartbeat: refresh heartbeat_at; True when Prefect says the run was cancelled."""
    publishing.heartbeat(engine, run_id)
    if not prefect_run_id:
        return False
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(str(prefect_run_id))).state
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def _in_stage(stages: RunProgress) -> str:
    return f" during stage {stages.current}" if stages.current else ""


def _ended(
    engine: sa.Engine,
    url: str,
    run_id: str,
    exc: BaseException,
    settings: Settings,
    stages: RunProgress,
) -> BaseException:
    """Record how the run ended (failed or cancelled) and return the error to raise.

    A database error becomes its one paragraph; an outcome the database cannot take is kept
    for the next run (settings.unrecorded_dir). A cancellation that landed during the
    publishing COMMIT leaves the run published: the error says so.
    """
    error: BaseException = exc
    if isinstance(exc, (KeyboardInterrupt, TerminationSignal)):
        signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
        CANCELLATION.signum = CANCELLATION.signum or signum
        error = CANCELLATION.error()
    elif CANCELLATION.requested and not isinstance(exc, RunCancelled):
        # The signal landed inside library code that raised an error of its own while it
        # unwound (a worker pool broken by the stop; Prefect's task engine when the signal
        # comes as it creates a task run: "Task run is not set"): the run was cancelled.
        error = CANCELLATION.error()
    elif isinstance(exc, sa.exc.DBAPIError):
        error = refused(exc, url, "the run's writes")
    if isinstance(error, RunCancelled):
        status = "cancelled"
        name = signal.Signals(error.signum).name
        error = RunCancelled(
            f"Run {run_id} was cancelled ({name}){_in_stage(stages)}: nothing of it was "
            "published, the previous run stays current, the run is recorded as cancelled, and "
            "every process it started was stopped. Run it again when you are ready.",
            error.signum,
        )
        try:
            published = publishing.run_status(engine, run_id) == "published"
        except sa.exc.SQLAlchemyError:
            published = False
        if published:
            return RunCancelled(
                f"The run was cancelled ({name}) just as its publish committed: run {run_id} "
                "is published and current, its report was not written (`staffcast report` "
                "writes it).",
                error.signum,
            )
    else:
        status = "failed"
        if isinstance(error, ValidationFailed):
            _record_stop(engine, run_id, error)
    text = (
        str(error)
        if isinstance(error, (StaffcastError, RunCancelled))
        else f"{type(error).__name__}: {error}"
    )
    if not publishing.mark_failed(engine, run_id, text, status):
        kept = publishing.record_later(settings.unrecorded_dir, run_id, status, text)
        get_run_logger().warning("Run %s outcome kept in %s for the next run", run_id, kept)
    engine.dispose()
    return error


def _data_quality_artifact(markdown: str) -> None:
    """The validation summary as the run's "data-quality" markdown artifact."""
    create_markdown_artifact(
        markdown, key="data-quality", description="Data contracts: rows and rules broken"
    )


def _record_stop(engine: sa.Engine, run_id: str, exc: ValidationFailed) -> None:
    """Keep the summary of a run a batch rule stopped: in the database and as an artifact.

    Never raises: the stop itself is what the caller must see.
    """
    try:
        publishing.record_validation(
            engine,
            run_id,
            summary_frame(exc.outcomes, exc.counts, stopped=str(exc)),
            impact=exc.impact,
        )
        markdown = markdown_summary(exc.outcomes, exc.counts, stopped=str(exc))
        if exc.impact is not None:
            markdown += "\n\n" + impact_markdown(exc.impact)
        _data_quality_artifact(markdown)
    except Exception:  # noqa: BLE001 - e.g. an unreachable Prefect API must not hide the stop
        get_run_logger().warning("Could not keep the validation summary", exc_info=True)


def _publishable(
    validated: ValidationResult,
    history: pd.DataFrame,
    simulation: DemandSimulation,
    forecast: pd.DataFrame,
    evaluation: pd.DataFrame,
    staffing: StaffingPlan,
) -> dict[str, pd.DataFrame]:
    """The frames of a run in the reporting tables' shape."""
    facility = simulation.facility.merge(
        forecast[["series_id", "date", "model"]], on=["series_id", "date"], how="left"
    )
    facility["date"] = facility["date"].dt.date
    regional = simulation.regional.assign(date=simulation.regional["date"].dt.date)
    recent = history[history["date"] >= history["date"].max() - pd.Timedelta(days=HISTORY_DAYS - 1)]
    observed = pd.DataFrame(
        {
            "facility_id": recent["facility_id"],
            "role": recent["role"],
            "date": recent["date"].dt.date,
            "demand": recent["demand"].astype("int64"),
        }
    )
    return {
        "demand_history": observed,
        "quarantined_row": validated.quarantine,
        "validation_result": summary_frame(validated.outcomes, validated.counts),
        "data_quality_impact": validated.impact.impact,
        "demand_forecast": facility.drop(columns=["series_id", "region"]),
        "regional_forecast": regional,
        "model_evaluation": evaluation.drop(columns=["series_id"]),
        "on_call_pool": staffing.on_call_pool,
        "recruiting_target": staffing.recruiting_target,
        "holiday_coverage": staffing.holiday_coverage,
        "hiring_plan": staffing.hiring_plan,
    }


def _json_cells(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows with plain JSON values (dates as ISO text, numbers rounded) for a table artifact."""
    rows = frame.to_dict(orient="records")
    return [
        {
            key: value.isoformat()
            if isinstance(value, date)
            else round(value, 3)
            if isinstance(value, float)
            else value
            for key, value in row.items()
        }
        for row in rows
    ]


def _table_artifacts(staffing: StaffingPlan, flags: pd.DataFrame) -> None:
    """Hiring targets (every scenario), base on-call pools and drift flags (one row each, none
    when nothing drifted) as Prefect table artifacts."""
    targets = staffing.recruiting_target[list(TARGET_COLUMNS)]
    create_table_artifact(
        _json_cells(targets),
        key="hiring-targets",
        description="Hires needed per scenario, region and role, and by when",
    )
    pools = staffing.on_call_pool
    pools = pools[pools["scenario"] == BASE_SCENARIO]
    create_table_artifact(
        _json_cells(pools[["week_start", "region", "role", "recommended_pool"]]),
        key="on-call-pools",
        description="Base scenario: nurses to hold on call per region, role and week",
    )
    create_table_artifact(
        _json_cells(flags),
        key="track-record-drift",
        description="Track record measures outside their band (drift), one row each",
    )


def _markdown(summary: RunSummary, staffing: StaffingPlan, flags: pd.DataFrame) -> str:
    targets = staffing.recruiting_target
    scenarios = sorted(set(targets["scenario"]) - {BASE_SCENARIO})
    targets = targets[targets["scenario"] == BASE_SCENARIO]
    lines = [
        f"# staffcast weekly run {summary.run_id} (as of {summary.as_of})",
        "",
        f"Rows extracted {summary.rows_extracted} = used {summary.rows_used} + "
        f"quarantined {summary.rows_quarantined} + excluded {summary.rows_excluded}; "
        f"{summary.series} series forecast.",
        "",
        *[f"**Warning:** {w}" for w in summary.warnings],
        *([""] if summary.warnings else []),
        *[f"**Drift:** {message}" for message in flags["message"]],
        *([""] if len(flags) else []),
        "| region | role | current pool | target pool | hires needed | recruit by |",
        "|---|---|---|---|---|---|",
    ]
    for row in targets.itertuples():
        lines.append(
            f"| {row.region} | {row.role} | {row.current_pool} | {row.target_pool} | "
            f"{row.hires_needed} | {row.recruit_by} |"
        )
    if scenarios:
        lines += ["", f"Scenarios stored beside base: {', '.join(scenarios)}."]
    lines += [
        "",
        f"Report: {summary.report_path}",
        f"Hiring targets (CSV): {summary.targets_csv_path}",
    ]
    return "\n".join(lines)


def run_summary_dict(summary: RunSummary) -> dict[str, Any]:
    """The summary as plain data (for JSON output)."""
    data = asdict(summary)
    data["as_of"] = summary.as_of.isoformat()
    return data


if __name__ == "__main__":
    weekly_forecast()
