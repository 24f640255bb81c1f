"""The track record in the reporting database: what a run scores of earlier runs, and what a
report reads back.

A run at as_of ``A`` scores (:func:`score_published`):

- **forecasts**: every published run ``R`` with ``R.as_of < A`` (within :data:`RECORD_DAYS`),
  on its forecast days before ``A`` that no other published run has scored yet (of another
  as_of: a rerun of ``A`` replaces its own scores), at facility and at region level, against
  the demand of this run's history (the same definition of demand, only what existed before
  ``A``). Each (earlier run, day) pair is thus scored once, by the first run after the day;
  an earlier run published late (a backfill) is scored from its first day on by the next run.
- **pools**: every Monday-start week that ended before ``A``, not judged yet, for which a
  published run with as_of on or before its Monday published pools (the latest such run), with
  the acceptance rate of the week's offers (``models.track_record.achieved_service_level``).
- **drift**: the flags of ``models.track_record.drift_flags`` over the record as this run sees
  it (runs published with an earlier as_of, and its own new rows).

Everything is read before the run publishes and written in its publish transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Select, func, select

from models.plan import BASE_SCENARIO
from models.track_record import (
    FORECAST_WEEKS,
    QUANTILE_COLUMNS,
    SERVICE_WEEKS,
    SUM_COLUMNS,
    achieved_service_level,
    drift_flags,
    score_forecasts,
    weekly_acceptance,
)
from reports.schema import table

RECORD_DAYS = 371
"""How far back (days before as_of) a run looks for earlier runs to score and pools to judge."""
REGION_ROW = "*"
"""``facility_id`` of region-level forecast_score rows."""

_SCORE_KEYS = ["scored_run_id", "as_of"]


@dataclass(frozen=True)
class TrackRecord:
    """What one run adds to the track record (frames in the reporting tables' shape)."""

    forecast_score: pd.DataFrame
    pool_outcome: pd.DataFrame
    flags: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "forecast_score": self.forecast_score,
            "pool_outcome": self.pool_outcome,
            "track_record_flag": self.flags,
        }


def _frame(connection: Connection, statement: Select[Any], columns: list[str]) -> pd.DataFrame:
    rows = connection.execute(statement).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _columns(name: str) -> list[str]:
    """The columns a run's frame for table ``name`` carries (publish adds ``run_id``)."""
    return [c.name for c in table(name).columns if c.name != "run_id"]


def _published_before(as_of: dt.date) -> Select[Any]:
    """Run ids published with an as_of before ``as_of`` (a subquery)."""
    runs = table("forecast_run")
    return select(runs.c.run_id).where(runs.c.status == "published", runs.c.as_of < as_of)


def _earlier_runs(connection: Connection, as_of: dt.date) -> pd.DataFrame:
    runs = table("forecast_run")
    since = as_of - dt.timedelta(days=RECORD_DAYS)
    statement = (
        select(runs.c.run_id, runs.c.as_of, runs.c.horizon_days)
        .where(runs.c.status == "published", runs.c.as_of < as_of, runs.c.as_of >= since)
        .order_by(runs.c.as_of)
    )
    return _frame(connection, statement, ["run_id", "as_of", "horizon_days"])


def _scored_days(
    connection: Connection, as_of: dt.date, scored: Iterable[str]
) -> dict[str, set[dt.date]]:
    """The days of each earlier run that published runs of another as_of already scored."""
    scores, runs = table("forecast_score"), table("forecast_run")
    statement = (
        select(scores.c.scored_run_id, scores.c.first_day, scores.c.last_day)
        .distinct()
        .join(runs, runs.c.run_id == scores.c.run_id)
        .where(
            runs.c.status == "published",
            runs.c.as_of != as_of,
            scores.c.level == "region",
            scores.c.scored_run_id.in_(list(scored)),
        )
    )
    days: dict[str, set[dt.date]] = {}
    for run_id, first, last in connection.execute(statement):
        span = days.setdefault(run_id, set())
        span.update(d.date() for d in pd.date_range(first, last))
    return days


def _forecast_rows(
    connection: Connection, name: str, keys: list[str], run: Any, days: list[dt.date]
) -> pd.DataFrame:
    """``name``'s rows (demand_forecast or regional_forecast) of an earlier run (a row of
    ``_earlier_runs``) on ``days`` (sorted), with the run's id and as_of."""
    source = table(name)
    columns = [*keys, "date", "mean", *QUANTILE_COLUMNS]
    statement = select(*(source.c[c] for c in columns)).where(
        source.c.run_id == run.run_id,
        source.c.date >= days[0],
        source.c.date <= days[-1],
    )
    frame = _frame(connection, statement, columns)
    frame = frame[frame["date"].isin(set(days))]
    return frame.assign(scored_run_id=run.run_id, as_of=run.as_of)


def _score_forecasts(
    connection: Connection,
    as_of: dt.date,
    runs: pd.DataFrame,
    history: pd.DataFrame,
    facilities: pd.DataFrame,
) -> pd.DataFrame:
    """forecast_score rows for the earlier runs' days not scored yet, one earlier run at a time
    (a national agency's run has millions of forecast rows; only the sums are kept)."""
    columns = _columns("forecast_score")
    scored = _scored_days(connection, as_of, runs["run_id"])
    first = pd.Timestamp(runs["as_of"].min()) - pd.Timedelta(days=7)
    recent = history[history["date"] >= first]
    actual = recent[["facility_id", "role", "date", "demand"]]
    regional = recent.groupby(["region", "role", "date"], as_index=False)["demand"].sum()
    region_of = facilities.set_index("facility_id")["region"]
    parts = []
    for run in runs.itertuples():
        end = min(as_of, run.as_of + dt.timedelta(days=int(run.horizon_days)))
        done = scored.get(run.run_id, set())
        days = [d.date() for d in pd.date_range(run.as_of, end, inclusive="left")]
        days = [d for d in days if d not in done]
        if not days:
            continue
        # the demand of the scored days and of the week before the run (its seasonal naive)
        naive_week = pd.date_range(run.as_of - dt.timedelta(days=7), run.as_of, inclusive="left")
        needed = pd.DatetimeIndex(days).append(naive_week)
        facility = score_forecasts(
            _forecast_rows(connection, "demand_forecast", ["facility_id", "role"], run, days),
            actual[actual["date"].isin(needed)],
            ["facility_id", "role"],
        )
        facility["region"] = facility["facility_id"].map(region_of).fillna("(unknown)")
        region = score_forecasts(
            _forecast_rows(connection, "regional_forecast", ["region", "role"], run, days),
            regional[regional["date"].isin(needed)],
            ["region", "role"],
        )
        parts += [
            facility.assign(level="facility"),
            region.assign(level="region", facility_id=REGION_ROW),
        ]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True).rename(columns={"as_of": "scored_as_of"})
    return out[columns]


def _judge_pools(
    connection: Connection,
    as_of: dt.date,
    runs: pd.DataFrame,
    history: pd.DataFrame,
    offers: pd.DataFrame,
    facilities: pd.DataFrame,
) -> pd.DataFrame:
    """pool_outcome rows for the weeks that ended before as_of and were not judged yet."""
    outcome_columns = _columns("pool_outcome")
    first = runs["as_of"].min()
    monday = first + dt.timedelta(days=(7 - first.weekday()) % 7)
    weeks = [d.date() for d in pd.date_range(monday, as_of - dt.timedelta(days=7), freq="7D")]
    if not weeks:
        return pd.DataFrame(columns=outcome_columns)
    pools, outcomes, done = table("on_call_pool"), table("pool_outcome"), table("forecast_run")
    judged = _frame(
        connection,
        select(outcomes.c.scenario, outcomes.c.region, outcomes.c.role, outcomes.c.week_start)
        .join(done, done.c.run_id == outcomes.c.run_id)
        .where(
            done.c.status == "published", done.c.as_of != as_of, outcomes.c.week_start >= weeks[0]
        ),
        ["scenario", "region", "role", "week_start"],
    )
    # each week's pools: from the latest run with as_of on or before its Monday
    ordered = runs.sort_values("as_of")
    by_run: dict[int, list[dt.date]] = {}
    for week in weeks:
        at = int((ordered["as_of"] <= week).sum()) - 1
        if at >= 0:
            by_run.setdefault(at, []).append(week)
    columns = [
        "scenario",
        "region",
        "role",
        "week_start",
        "recommended_pool",
        "service_level",
        "max_shifts_per_week",
    ]
    parts = []
    for at, run_weeks in by_run.items():
        run = ordered.iloc[at]
        statement = select(*(pools.c[c] for c in columns)).where(
            pools.c.run_id == run["run_id"], pools.c.week_start.in_(run_weeks)
        )
        parts.append(
            _frame(connection, statement, columns).assign(
                pool_run_id=run["run_id"], pool_as_of=run["as_of"]
            )
        )
    published = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if published.empty:
        return pd.DataFrame(columns=outcome_columns)
    if not judged.empty:
        seen = published.merge(judged, how="left", indicator=True)["_merge"] == "both"
        published = published[~seen.to_numpy()]
    start = pd.Timestamp(weeks[0])
    recent = history[(history["date"] >= start) & (history["date"] < pd.Timestamp(as_of))]
    demand = recent.groupby(["region", "role", "date"], as_index=False)["demand"].sum()
    since = pd.Timestamp(start).tz_localize("UTC") - pd.Timedelta(days=1)
    acceptance = weekly_acceptance(offers[offers["shift_start"] >= since], facilities)
    held = achieved_service_level(published, demand, acceptance)
    return held[outcome_columns]


def _record_before(
    connection: Connection, as_of: dt.date, weeks: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Region-level forecast_score and base pool_outcome rows of runs published with an
    earlier as_of, for weeks starting at most ``weeks`` weeks before as_of."""
    since = as_of - dt.timedelta(weeks=weeks)
    earlier = _published_before(as_of)
    scores, outcomes = table("forecast_score"), table("pool_outcome")
    score_columns = ["region", "role", "week_start", *SUM_COLUMNS]
    region = _frame(
        connection,
        select(*(scores.c[c] for c in score_columns)).where(
            scores.c.level == "region",
            scores.c.week_start >= since,
            scores.c.run_id.in_(earlier),
        ),
        score_columns,
    )
    outcome_columns = ["region", "role", "week_start", "days", "covered", "service_level"]
    base = _frame(
        connection,
        select(*(outcomes.c[c] for c in outcome_columns)).where(
            outcomes.c.scenario == BASE_SCENARIO,
            outcomes.c.week_start >= since,
            outcomes.c.run_id.in_(earlier),
        ),
        outcome_columns,
    )
    return region, base


def score_published(
    engine: Engine,
    as_of: dt.date,
    history: pd.DataFrame,
    offers: pd.DataFrame,
    facilities: pd.DataFrame,
) -> TrackRecord:
    """What a run at ``as_of`` adds to the track record (see the module's docstring).

    ``history``: the run's daily demand (``facility_id, region, role, date, demand``);
    ``offers``: its used offers with their request (``ValidationResult.offers``);
    ``facilities``: its validated facilities (``facility_id, region, timezone``).
    """
    with engine.connect() as connection:
        runs = _earlier_runs(connection, as_of)
        if runs.empty:
            scores = pd.DataFrame(columns=_columns("forecast_score"))
            held = pd.DataFrame(columns=_columns("pool_outcome"))
        else:
            scores = _score_forecasts(connection, as_of, runs, history, facilities)
            held = _judge_pools(connection, as_of, runs, history, offers, facilities)
        # the flags take the latest weeks *with* a record, which may lie further back than
        # their count when weekly runs were missed: read half a year more than they need
        weeks = max(FORECAST_WEEKS, SERVICE_WEEKS) + 30
        region_before, base_before = _record_before(connection, as_of, weeks)
    region_now = scores.loc[scores["level"] == "region", region_before.columns]
    base_now = held.loc[held["scenario"] == BASE_SCENARIO, base_before.columns]
    flags = drift_flags(
        pd.concat([region_before, region_now], ignore_index=True),
        pd.concat([base_before, base_now], ignore_index=True),
    )
    return TrackRecord(scores, held, flags)


# --- reading the record back (the report) ---------------------------------------------------


def _record_runs(as_of: dt.date) -> Select[Any]:
    """Run ids of the record as of ``as_of``: published runs with as_of on or before it."""
    runs = table("forecast_run")
    return select(runs.c.run_id).where(runs.c.status == "published", runs.c.as_of <= as_of)


def accuracy_by_band(connection: Connection, as_of: dt.date, weeks: int) -> pd.DataFrame:
    """Sums of forecast_score per level, region, role and lead band over the weeks starting in
    the ``weeks`` weeks before as_of, from the record as of ``as_of``."""
    scores = table("forecast_score")
    keys = [scores.c.level, scores.c.region, scores.c.role, scores.c.lead_band]
    statement = (
        select(*keys, *(func.sum(scores.c[c]).label(c) for c in SUM_COLUMNS))
        .where(
            scores.c.run_id.in_(_record_runs(as_of)),
            scores.c.week_start >= as_of - dt.timedelta(weeks=weeks),
        )
        .group_by(*keys)
    )
    return _frame(connection, statement, ["level", "region", "role", "lead_band", *SUM_COLUMNS])


def weekly_against_actual(connection: Connection, as_of: dt.date, weeks: int) -> pd.DataFrame:
    """Region-level sums per region, role, week and lead band for the weeks starting in the
    ``weeks`` weeks before as_of (the report's chart), from the record as of ``as_of``."""
    scores = table("forecast_score")
    keys = [scores.c.region, scores.c.role, scores.c.week_start, scores.c.lead_band]
    columns = ["days", "actual_total", "forecast_total", "in_p10_p90"]
    statement = (
        select(*keys, *(func.sum(scores.c[c]).label(c) for c in columns))
        .where(
            scores.c.run_id.in_(_record_runs(as_of)),
            scores.c.level == "region",
            scores.c.week_start >= as_of - dt.timedelta(weeks=weeks),
        )
        .group_by(*keys)
    )
    return _frame(connection, statement, ["region", "role", "week_start", "lead_band", *columns])


def service_levels(connection: Connection, as_of: dt.date, spans: tuple[int, ...]) -> pd.DataFrame:
    """Achieved against promised service level per scenario, region and role over the last
    ``spans`` weeks each: ``scenario, region, role, weeks_<n>, achieved_<n>, promised_<n>``."""
    outcomes = table("pool_outcome")
    longest = max(spans)
    columns = ["scenario", "region", "role", "week_start", "days", "covered", "service_level"]
    frame = _frame(
        connection,
        select(*(outcomes.c[c] for c in columns)).where(
            outcomes.c.run_id.in_(_record_runs(as_of)),
            outcomes.c.week_start >= as_of - dt.timedelta(weeks=longest),
        ),
        columns,
    )
    keys = ["scenario", "region", "role"]
    if frame.empty:
        return pd.DataFrame(columns=keys)
    frame["promised_days"] = frame["service_level"] * frame["days"]
    out = frame[keys].drop_duplicates().set_index(keys)
    for weeks in spans:
        recent = frame[frame["week_start"] >= as_of - dt.timedelta(weeks=weeks)]
        sums = recent.groupby(keys).agg(
            weeks=("week_start", "nunique"),
            days=("days", "sum"),
            covered=("covered", "sum"),
            promised_days=("promised_days", "sum"),
        )
        out[f"weeks_{weeks}"] = sums["weeks"]
        out[f"achieved_{weeks}"] = sums["covered"] / sums["days"]
        out[f"promised_{weeks}"] = sums["promised_days"] / sums["days"]
    return out.reset_index().sort_values(keys, ignore_index=True)


def flags_of(connection: Connection, run_id: str) -> pd.DataFrame:
    """The drift flags a run raised."""
    flags = table("track_record_flag")
    columns = ["measure", "region", "role", "weeks", "value", "low", "high", "message"]
    statement = (
        select(*(flags.c[c] for c in columns))
        .where(flags.c.run_id == run_id)
        .order_by(flags.c.region, flags.c.role, flags.c.measure)
    )
    return _frame(connection, statement, columns)
