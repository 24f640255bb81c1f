"""``staffcast replay``: the weekly run at every as_of of a past span, published in order.

A new agency has no history of runs, so no track record; its own data can give it one on day
one. The replay runs the weekly flow at ``start``, ``start + every``, ... up to ``end``, each
run seeing only what existed before its as_of, and publishes them oldest first (as backfills:
a current run of a later as_of stays current), so every run scores the ones before it
(reports.track_record).

- **Read once.** The source is read once, at ``end`` (the latest as_of), its database tables
  kept in memory (up to ``settings.replay_cache_mb``; a larger source, or a folder of files, is
  read again for each week, and the log says so); every week's run cuts that extract at its
  own as_of, exactly as a run of that week would have cut the source (validation keeps only
  rows that existed before as_of; cancellations and hires after it had not happened yet).
- **Resumable.** An as_of that already has a published run is skipped: a replay that was
  interrupted (or failed at some week) goes on from where it stopped when run again.
- **Progress.** One line per week (as_of, run id, seconds) on the run's log, and a Prefect
  progress artifact.
- **A week that cannot run** (a batch rule stops it, e.g. too little history in the first
  weeks of a young agency) is recorded as failed like any stopped run, named in the summary,
  and the replay goes on; any other error (the source or the reporting database refused, a
  cancellation) stops the replay with its paragraph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import cast
from uuid import UUID

import sqlalchemy as sa
from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.weekly_forecast import (
    RunSummary,
    _bound_heap,
    _cancellable,
    _check_as_of,
    _parse_scenarios,
    _release_free_memory,
    _weekly_run,
    extract,
    settings_with,
)
from reports.reporting_db import refused
from reports.schema import create_schema, reporting_engine, table
from staffcast.errors import StaffcastError, ValidationFailed
from staffcast.mapping import load_mapping
from staffcast.settings import Settings
from staffcast.source import StreamedTable, cache_streamed


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay did: runs published now, as_ofs skipped (published before), weeks that
    a batch rule stopped (as_of and the rule's paragraph), and the seconds it took."""

    published: tuple[RunSummary, ...]
    skipped: tuple[date, ...]
    stopped: tuple[tuple[date, str], ...] = ()
    seconds: float = 0.0
    read_seconds: float = 0.0


def replay_dates(start: date, end: date, every: int) -> list[date]:
    """``start, start + every, ...`` up to and including ``end``."""
    if every < 1:
        raise StaffcastError(f"--every {every}: give a number of days, 1 or more (7: weekly).")
    if end < start:
        raise StaffcastError(f"--to {end} is before --from {start}: nothing to replay.")
    return [start + timedelta(days=d) for d in range(0, (end - start).days + 1, every)]


def published_as_ofs(url: str, dates: list[date]) -> set[date]:
    """The as_ofs of ``dates`` that already have a published run."""
    engine = reporting_engine(url)
    try:
        create_schema(engine)
        runs = table("forecast_run")
        with engine.connect() as connection:
            found = connection.execute(
                sa.select(runs.c.as_of).where(runs.c.status == "published", runs.c.as_of.in_(dates))
            )
            return set(found.scalars())
    except sa.exc.DBAPIError as exc:
        raise refused(exc, url, "reading which weeks are published") from exc
    finally:
        engine.dispose()


@flow(name="replay", log_prints=True)
def replay(
    start: date,
    end: date,
    every: int = 7,
    source_url: str | None = None,
    reporting_url: str | None = None,
    scenarios: list[str] | None = None,
    source_mapping: str | None = None,
    allow_future_as_of: bool | None = None,
) -> ReplaySummary:
    """Run and publish the weekly flow at every ``every`` days from ``start`` to ``end``.

    Parameters as :func:`flows.weekly_forecast.weekly_forecast`; every run is a backfill.
    """
    settings = settings_with(
        source_url=source_url,
        reporting_url=reporting_url,
        scenarios=scenarios,
        source_mapping=source_mapping,
        allow_future_as_of=allow_future_as_of,
        backfill=True,
    )
    _bound_heap()
    with _cancellable():
        return _replay(settings, replay_dates(start, end, every))


def _replay(settings: Settings, dates: list[date]) -> ReplaySummary:
    logger = get_run_logger()
    began = time.perf_counter()
    _parse_scenarios(settings.scenarios)  # a malformed scenario stops before any work
    _check_as_of(dates[-1], settings)
    done = published_as_ofs(settings.resolved_reporting_url, dates)
    todo = [d for d in dates if d not in done]
    if done:
        logger.info(
            "%d of %d as_ofs are already published (skipped)%s",
            len(done),
            len(dates),
            f"; resuming at {todo[0]}" if todo else "",
        )
    if not todo:
        return ReplaySummary((), tuple(sorted(done)))
    mapping = load_mapping(settings.source_mapping) if settings.source_mapping else None
    read = time.perf_counter()
    source = extract(settings.resolved_source_url, todo[-1], settings, mapping)
    database = any(isinstance(t, StreamedTable) for t in source.tables.values())
    source, cached = cache_streamed(source, settings.replay_cache_mb)
    read_seconds = time.perf_counter() - read
    if database and not cached:
        logger.warning(
            "The source's tables take more than STAFFCAST_REPLAY_CACHE_MB (%g MB): each week "
            "reads them from the database again",
            settings.replay_cache_mb,
        )
    else:
        logger.info(
            "Read the source once, as of %s, in %.1f s%s",
            todo[-1],
            read_seconds,
            "" if database else " (its files are read from disk again for each week)",
        )
    # Called from sync code, Prefect's sync-compatible function returns the id itself.
    progress = cast(
        UUID,
        create_progress_artifact(0.0, key="replay-progress", description="staffcast replay"),
    )
    published: list[RunSummary] = []
    stopped: list[tuple[date, str]] = []
    for number, as_of in enumerate(todo, start=1):
        week_began = time.perf_counter()
        try:
            summary = _weekly_run(settings, as_of, source=source)
        except ValidationFailed as exc:
            stopped.append((as_of, str(exc)))
            logger.warning("Replay %d/%d: as_of %s stopped: %s", number, len(todo), as_of, exc)
        else:
            published.append(summary)
            logger.info(
                "Replay %d/%d: as_of %s published as run %s in %.1f s",
                number,
                len(todo),
                as_of,
                summary.run_id,
                time.perf_counter() - week_began,
            )
        update_progress_artifact(progress, 100.0 * number / len(todo))
        _release_free_memory()
    return ReplaySummary(
        tuple(published),
        tuple(sorted(done)),
        tuple(stopped),
        time.perf_counter() - began,
        read_seconds,
    )
