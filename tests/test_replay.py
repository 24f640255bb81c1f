"""The track record end to end on the small agency: `staffcast replay`, scoring, pools held.

One reporting database is filled by a replay of four weeks (two, interrupted, then all four
through the console command: it resumes), then checked: every (earlier run, day) pair scored
once, scores equal to a recomputation from the published forecasts and the demand the last
run counted, pools judged once per week with the week's realised acceptance, and a replayed
week identical to a run of that week on its own.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats

from flows.replay import replay, replay_dates
from flows.weekly_forecast import weekly_forecast
from reports.schema import reporting_engine
from staffcast.errors import StaffcastError
from tests.conftest import AS_OF, fresh_database
from tests.test_cli import _staffcast

pytestmark = pytest.mark.usefixtures("prefect_harness")

WEEKS = [AS_OF - timedelta(weeks=k) for k in (3, 2, 1, 0)]


DATES = {"as_of", "scored_by", "judged_by", "date", "first_day", "last_day", "week_start"}
DATES |= {"scored_as_of", "pool_as_of"}


def _frame(engine: sa.Engine, sql: str, **params: object) -> pd.DataFrame:
    """Rows of a raw query, date columns as Timestamps (SQLite gives raw SQL text)."""
    with engine.connect() as connection:
        result = connection.execute(sa.text(sql), params)
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    for column in DATES & set(frame.columns):
        frame[column] = pd.to_datetime(frame[column])
    return frame


@pytest.fixture(scope="module")
def replayed(small_agency, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Four weekly runs published by replay: the first two, then (resuming) all four."""
    home = tmp_path_factory.mktemp("replay")
    source = f"sqlite:///{small_agency.path}"
    reporting = f"sqlite:///{home / 'reporting.db'}"
    first = replay(start=WEEKS[0], end=WEEKS[1], source_url=source, reporting_url=reporting)
    assert [s.as_of for s in first.published] == WEEKS[:2]
    result = _staffcast(
        [
            "replay",
            "--from",
            str(WEEKS[0]),
            "--to",
            str(WEEKS[-1]),
            "--source",
            source,
            "--reporting",
            reporting,
        ],
        home / "home",
    )
    return home, source, reporting, result


def test_replay_resumes_shows_progress_and_publishes_every_week(replayed) -> None:  # type: ignore[no-untyped-def]
    _, _, reporting, result = replayed
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "2 of 4 as_ofs are already published (skipped); resuming at" in output
    assert "Replay 1/2: as_of 2025-10-27 published" in output
    assert "Replay 2/2: as_of 2025-11-03 published" in output
    assert "2 run(s) published, 2 already published (skipped), 0 stopped" in result.stdout
    runs = _frame(
        reporting_engine(reporting),
        "SELECT as_of, status FROM forecast_run ORDER BY as_of",
    )
    assert runs["as_of"].tolist() == [pd.Timestamp(d) for d in WEEKS]
    assert set(runs["status"]) == {"published"}


def test_every_earlier_run_and_day_is_scored_once(replayed) -> None:  # type: ignore[no-untyped-def]
    engine = reporting_engine(replayed[2])
    scores = _frame(
        engine,
        "SELECT r.as_of AS scored_by, s.* FROM forecast_score s "
        "JOIN forecast_run r ON r.run_id = s.run_id WHERE s.level = 'region'",
    )
    runs = _frame(engine, "SELECT run_id, as_of FROM forecast_run ORDER BY as_of")
    for run in runs.itertuples():
        mine = scores[scores["scored_run_id"] == run.run_id]
        days = [
            d
            for row in mine.drop_duplicates(["scored_by", "first_day", "last_day"]).itertuples()
            for d in pd.date_range(row.first_day, row.last_day)
        ]
        expected = pd.date_range(run.as_of, pd.Timestamp(AS_OF), inclusive="left")
        assert sorted(days) == list(expected), run.as_of  # each day once, none missing
        # the days are scored by the first run after them
        for row in mine.itertuples():
            assert row.scored_by > row.last_day
            assert row.scored_by - timedelta(days=7) <= row.first_day
    lead = scores.assign(lead=(scores["first_day"] - scores["scored_as_of"]).dt.days + 1)
    assert set(scores["lead_band"]) == {"1-7", "8-28"}
    assert (lead.loc[lead["lead_band"] == "1-7", "lead"] <= 7).all()


def test_scores_are_the_published_forecasts_against_the_demand_that_came(replayed) -> None:  # type: ignore[no-untyped-def]
    engine = reporting_engine(replayed[2])
    first, last = (
        _frame(engine, "SELECT run_id FROM forecast_run WHERE as_of = :d", d=d)["run_id"][0]
        for d in (WEEKS[0], WEEKS[-1])
    )
    facility = _frame(
        engine,
        "SELECT * FROM forecast_score WHERE scored_run_id = :r AND level = 'facility'",
        r=first,
    )
    forecast = _frame(engine, "SELECT * FROM demand_forecast WHERE run_id = :r", r=first)
    history = _frame(engine, "SELECT * FROM demand_history WHERE run_id = :r", r=last)
    for row in facility.sample(5, random_state=1).itertuples():
        days = pd.date_range(row.first_day, row.last_day)
        key = {"facility_id": row.facility_id, "role": row.role}
        f = forecast[
            (forecast[list(key)] == pd.Series(key)).all(axis=1) & forecast["date"].isin(days)
        ]
        h = history[(history[list(key)] == pd.Series(key)).all(axis=1) & history["date"].isin(days)]
        assert len(f) == len(h) == row.days
        merged = f.merge(h, on=["facility_id", "role", "date"])
        assert row.actual_total == pytest.approx(merged["demand"].sum())
        assert row.forecast_total == pytest.approx(merged["mean"].sum())
        assert row.abs_error == pytest.approx((merged["mean"] - merged["demand"]).abs().sum())
        inside = (merged["demand"] >= merged["p10"]) & (merged["demand"] <= merged["p90"])
        assert row.in_p10_p90 == int(inside.sum())
    # region rows are the region's facilities summed (actual), against the regional forecast
    region = _frame(
        engine,
        "SELECT region, role, sum(actual_total) AS actual FROM forecast_score "
        "WHERE scored_run_id = :r AND level = :level GROUP BY region, role",
        r=first,
        level="region",
    ).set_index(["region", "role"])
    summed = _frame(
        engine,
        "SELECT region, role, sum(actual_total) AS actual FROM forecast_score "
        "WHERE scored_run_id = :r AND level = :level GROUP BY region, role",
        r=first,
        level="facility",
    ).set_index(["region", "role"])
    assert region["actual"].to_dict() == pytest.approx(summed["actual"].to_dict())


def test_each_past_week_pool_is_judged_once_with_that_weeks_acceptance(
    replayed, small_agency
) -> None:  # type: ignore[no-untyped-def]
    engine = reporting_engine(replayed[2])
    held = _frame(
        engine,
        "SELECT r.as_of AS judged_by, o.* FROM pool_outcome o "
        "JOIN forecast_run r ON r.run_id = o.run_id",
    )
    base = held[held["scenario"] == "base"]
    assert sorted(set(base["week_start"])) == [pd.Timestamp(d) for d in WEEKS[:3]]
    assert not base.duplicated(["region", "role", "week_start"]).any()
    assert (base["pool_as_of"] == base["week_start"]).all()  # that week's own run
    assert (base["judged_by"] == base["week_start"] + pd.Timedelta(days=7)).all()
    # the pool is the one published for the week; covered is the mean binomial tail
    row = base.sort_values("actual_total").iloc[-1]
    pool = _frame(
        engine,
        "SELECT recommended_pool FROM on_call_pool WHERE run_id = :r AND scenario = 'base' "
        "AND region = :g AND role = :k AND week_start = :w",
        r=row["pool_run_id"],
        g=row["region"],
        k=row["role"],
        w=row["week_start"].date(),
    )["recommended_pool"][0]
    assert row["recommended_pool"] == pool
    assert row["acceptance_rate"] == pytest.approx(row["accepted"] / row["offers"])
    assert row["offers"] > 0 and row["days"] == 7
    demand = _frame(
        engine,
        "SELECT h.date, sum(h.demand) AS demand FROM demand_history h "
        "JOIN forecast_run r ON r.run_id = h.run_id AND r.as_of = :last "
        "WHERE h.role = :k AND h.date >= :w AND h.date < :e AND h.facility_id IN "
        "(SELECT DISTINCT facility_id FROM forecast_score WHERE level = 'facility' "
        "AND region = :g) GROUP BY h.date",
        last=WEEKS[-1],
        k=row["role"],
        g=row["region"],
        w=row["week_start"].date(),
        e=(row["week_start"] + pd.Timedelta(days=7)).date(),
    )["demand"].to_numpy()
    assert demand.sum() == row["actual_total"] and demand.max() == row["peak_day"]
    tail = stats.binom.sf(demand - 1, pool, row["acceptance_rate"])
    expected = np.where(demand <= 0, 1.0, tail).sum()
    assert row["covered"] == pytest.approx(0.0 if row["over_cap"] else expected)


def test_a_replayed_week_is_the_run_of_that_week_and_a_rerun_replaces_its_scores(
    replayed, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _, source, reporting, _ = replayed
    engine = reporting_engine(reporting)
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    weekly_forecast(as_of=WEEKS[1], source_url=source, reporting_url=alone)
    for name, order in (
        ("demand_forecast", "facility_id, role, date"),
        ("on_call_pool", "scenario, region, role, week_start"),
    ):
        sql = (
            f"SELECT t.* FROM {name} t JOIN forecast_run r ON r.run_id = t.run_id "
            f"WHERE r.as_of = :d ORDER BY {order}"
        )
        replayed_rows = _frame(engine, sql, d=WEEKS[1]).drop(columns="run_id")
        alone_rows = _frame(reporting_engine(alone), sql, d=WEEKS[1]).drop(columns="run_id")
        pd.testing.assert_frame_equal(replayed_rows, alone_rows)

    old = _frame(engine, "SELECT run_id FROM forecast_run WHERE as_of = :d", d=WEEKS[2])["run_id"][
        0
    ]
    before = _frame(engine, "SELECT * FROM forecast_score WHERE run_id = :r", r=old)
    rerun = weekly_forecast(
        as_of=WEEKS[2], source_url=source, reporting_url=reporting, backfill=True
    )
    after = _frame(engine, "SELECT * FROM forecast_score WHERE run_id = :r", r=rerun.run_id)
    key = ["level", "region", "facility_id", "role", "scored_run_id", "lead_band", "week_start"]
    pd.testing.assert_frame_equal(
        before.drop(columns="run_id").sort_values(key, ignore_index=True),
        after.drop(columns="run_id").sort_values(key, ignore_index=True),
    )
    gone = _frame(
        engine,
        "SELECT count(*) AS n FROM forecast_score WHERE run_id = :r OR scored_run_id = :r",
        r=old,
    )["n"][0]
    assert gone == 0  # its own scores, and what the next run scored of it, went with it


def test_replay_dates_and_their_errors() -> None:
    assert replay_dates(date(2026, 1, 5), date(2026, 1, 26), 7) == [
        date(2026, 1, 5),
        date(2026, 1, 12),
        date(2026, 1, 19),
        date(2026, 1, 26),
    ]
    assert replay_dates(date(2026, 1, 5), date(2026, 1, 11), 7) == [date(2026, 1, 5)]
    with pytest.raises(StaffcastError, match="before --from"):
        replay_dates(date(2026, 1, 5), date(2026, 1, 4), 7)
    with pytest.raises(StaffcastError, match="--every 0"):
        replay_dates(date(2026, 1, 5), date(2026, 1, 26), 0)


@pytest.mark.postgres
def test_replay_scores_and_replaces_on_postgresql(small_agency, tmp_path: Path) -> None:
    """The track record's reads and the replacement of what later runs scored, on PostgreSQL."""
    with fresh_database("postgresql", tmp_path) as engine:
        url = engine.url.render_as_string(hide_password=False)
        source = f"sqlite:///{small_agency.path}"
        done = replay(start=WEEKS[1], end=WEEKS[3], source_url=source, reporting_url=url)
        assert [s.as_of for s in done.published] == WEEKS[1:]
        counts = _frame(
            engine,
            "SELECT r.as_of, count(DISTINCT s.scored_run_id) AS runs, sum(s.days) AS days "
            "FROM forecast_score s JOIN forecast_run r ON r.run_id = s.run_id "
            "WHERE s.level = 'region' GROUP BY r.as_of ORDER BY r.as_of",
        )
        assert counts["runs"].tolist() == [1, 2]  # each later run scores every earlier one
        regions_roles = len(_frame(engine, "SELECT DISTINCT region, role FROM on_call_pool"))
        assert counts["days"].tolist() == [7 * regions_roles, 14 * regions_roles]
        judged = _frame(engine, "SELECT DISTINCT week_start FROM pool_outcome")
        assert sorted(judged["week_start"]) == [pd.Timestamp(d) for d in WEEKS[1:3]]

        middle = done.published[1].run_id
        weekly_forecast(as_of=WEEKS[2], source_url=source, reporting_url=url, backfill=True)
        left = _frame(
            engine,
            "SELECT count(*) AS n FROM forecast_score WHERE scored_run_id = :r",
            r=middle,
        )["n"][0]
        assert left == 0
        assert len(_frame(engine, "SELECT * FROM current_forecast_score")) > 0


def test_a_week_a_data_rule_stops_is_named_and_the_replay_goes_on(
    small_agency, tmp_path: Path
) -> None:
    """Weeks before the agency's first request stop on a batch rule; the replay names them,
    records them as failed, and publishes the weeks after."""
    first_day = AS_OF - timedelta(days=int(1.3 * 365) + 7)  # before the history begins
    start = first_day - timedelta(days=first_day.weekday())
    reporting = f"sqlite:///{tmp_path / 'reporting.db'}"
    done = replay(
        start=start,
        end=start + timedelta(weeks=1),
        source_url=f"sqlite:///{small_agency.path}",
        reporting_url=reporting,
    )
    assert [as_of for as_of, _ in done.stopped] == [start, start + timedelta(weeks=1)]
    assert all("Nothing was published" in reason for _, reason in done.stopped)
    runs = _frame(reporting_engine(reporting), "SELECT as_of, status FROM forecast_run")
    assert set(runs["status"]) == {"failed"} and len(runs) == 2


def test_the_source_is_read_once_and_each_week_gets_it_unchanged(small_agency) -> None:
    from staffcast.source import CachedTable, StreamedTable, cache_streamed, table_chunks
    from staffcast.source_files import open_source

    extract = open_source(f"sqlite:///{small_agency.path}", AS_OF, "America/Chicago", None)
    streamed = [n for n, t in extract.tables.items() if isinstance(t, StreamedTable)]
    assert "shift_requests" in streamed
    cached, kept = cache_streamed(extract, max_mb=512)
    assert kept and all(isinstance(cached.tables[n], CachedTable) for n in streamed)
    for name in streamed:
        once = pd.concat(list(table_chunks(extract.tables[name])), ignore_index=True)
        first = pd.concat(list(table_chunks(cached.tables[name])), ignore_index=True)
        first["added_by_a_reader"] = 1  # what one week's run does to its frames ...
        for chunk in cached.tables[name]:
            chunk.iloc[:, 0] = "changed"
        again = pd.concat(list(table_chunks(cached.tables[name])), ignore_index=True)
        pd.testing.assert_frame_equal(again, once)  # ... the next week does not see
        narrow = cached.tables[name].narrowed(
            ("facility_id",) if "facility_id" in once else (once.columns[0],)
        )
        assert list(next(iter(narrow)).columns) == list(narrow.chunks[0].columns)
    too_big, kept = cache_streamed(extract, max_mb=0.001)
    assert not kept and too_big is extract
