"""The weekly flow end to end on a small demo agency, under one Prefect test harness."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.weekly_forecast import weekly_forecast
from reports import publish as publishing
from reports.schema import CHILD_TABLES, reporting_engine
from staffcast.errors import StaffcastError, ValidationFailed
from tests.conftest import AS_OF

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _count(engine: sa.Engine, table: str, where: str = "") -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table} {where}").scalar_one())


def _runs(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return list(
            conn.exec_driver_sql(
                "SELECT run_id, as_of, status FROM forecast_run ORDER BY started_at"
            )
        )


def _artifacts(flow_run_id: str) -> dict:
    """The latest artifact per key of one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    found: dict = {}
    for artifact in sorted(artifacts, key=lambda a: a.created):
        found[artifact.key] = artifact
    return found


def test_weekly_flow_publishes_pools_targets_and_reruns_replace(
    small_agency, staffcast_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = f"sqlite:///{small_agency.path}"
    reporting = f"sqlite:///{staffcast_home / 'reporting.db'}"
    monkeypatch.setenv("STAFFCAST_AGENCY_DAYS", json.dumps({"12-26": "Agency Boxing Day"}))
    first = weekly_forecast(as_of=AS_OF, source_url=source, reporting_url=reporting)
    engine = reporting_engine(reporting)

    assert first.rows_extracted == first.rows_used + first.rows_quarantined
    assert first.rows_quarantined == sum(len(v) for v in small_agency.bad_requests.values())
    assert Path(first.report_path).is_file()
    assert Path(first.targets_csv_path).read_text(encoding="utf-8-sig").count("\n") == 1 + 8
    with engine.connect() as conn:
        run = conn.exec_driver_sql("SELECT * FROM current_forecast_run").mappings().one()
        regions_roles = set(
            conn.exec_driver_sql("SELECT DISTINCT region, role FROM current_recruiting_target")
        )
        weeks = conn.exec_driver_sql(
            "SELECT region, role, count(*) FROM current_on_call_pool GROUP BY region, role"
        ).all()
        quarantined = set(
            conn.exec_driver_sql("SELECT source_key FROM current_quarantined_row").scalars()
        )
        negative = conn.exec_driver_sql(
            "SELECT count(*) FROM current_demand_forecast WHERE p025 < 0 OR p10 > p50 "
            "OR p50 > p90 OR p90 > p95 OR p95 > p975 OR mean < 0"
        ).scalar_one()
        days = conn.exec_driver_sql(
            "SELECT count(DISTINCT date) FROM current_regional_forecast"
        ).scalar_one()
    assert run["status"] == "published" and run["run_id"] == first.run_id
    assert run["rows_extracted"] == first.rows_extracted
    assert len(regions_roles) == 8  # 4 regions x RN, LPN
    assert {n for *_, n in weeks} == {26}  # as_of is a Monday: 26 whole weeks
    bad_ids = {i for ids in small_agency.bad_requests.values() for i in ids}
    assert quarantined == bad_ids
    assert negative == 0
    assert days == 182
    assert _count(engine, "current_holiday_coverage") > 0
    assert _count(engine, "current_model_evaluation", "WHERE selected") > 0
    with engine.connect() as conn:
        history = conn.exec_driver_sql(
            "SELECT count(DISTINCT date), max(date), min(demand), count(DISTINCT role) "
            "FROM current_demand_history"
        ).one()
        plan_rows = conn.exec_driver_sql(
            "SELECT region, role, count(*), sum(hires) FROM current_hiring_plan "
            "WHERE scenario = 'base' GROUP BY region, role"
        ).all()
        counted = conn.exec_driver_sql(
            "SELECT count(*) FROM current_recruiting_target WHERE acceptance_offers > 0 "
            "AND attrition_nurse_years > 0 AND attrition_separations IS NOT NULL"
        ).scalar_one()
    assert history[0] == 371 and str(history[1]) == str(AS_OF - timedelta(days=1))
    assert history[2] >= 0 and history[3] == 2
    assert len(plan_rows) == 8 and {n for _, _, n, _ in plan_rows} == {6}
    with engine.connect() as conn:  # one answer to "how many to hire", in every scenario
        disagreeing = conn.exec_driver_sql(
            "SELECT t.region, t.role, t.scenario, t.hires_needed, p.hires, p.month "
            "FROM current_recruiting_target t JOIN current_hiring_plan p "
            "ON p.region = t.region AND p.role = t.role AND p.scenario = t.scenario "
            "AND p.month = (SELECT min(month) FROM current_hiring_plan) "
            "WHERE p.hires <> t.hires_needed OR p.arrival_start <> t.window_start"
        ).all()
        first_month = str(
            conn.exec_driver_sql("SELECT min(month) FROM current_hiring_plan").scalar_one()
        )
    assert disagreeing == []
    assert first_month == str(AS_OF)  # months start at as_of, not the 1st of its month
    assert counted == 8  # the demo agency has offers and nurses in every region and role
    artifacts = _artifacts(run["flow_run_id"])
    expected = {"hiring-targets", "on-call-pools", "weekly-forecast-progress", "track-record-drift"}
    assert expected <= set(artifacts)
    drift = artifacts["track-record-drift"].data  # the first run: no record, so no drift
    assert (json.loads(drift) if isinstance(drift, str) else drift) == []
    assert artifacts["weekly-forecast-progress"].data == 100.0
    quality = str(artifacts["data-quality"].data)  # rows, rules, and what bad rows cost
    assert "| excluded |" in quality and "## What bad and excluded rows cost" in quality
    targets = artifacts["hiring-targets"].data
    assert len(json.loads(targets) if isinstance(targets, str) else targets) == 8

    pool_sql = (
        "SELECT region, role, week_start, recommended_pool FROM current_on_call_pool "
        "WHERE scenario = 'base'"
    )
    with engine.connect() as conn:
        pools_before = {tuple(r[:3]): r[3] for r in conn.exec_driver_sql(pool_sql)}
    strict_region = sorted({key[0] for key in pools_before})[0]
    monkeypatch.setenv(
        "STAFFCAST_REGION_STAFFING",
        json.dumps({strict_region: {"RN": {"service_level": 0.995}}}),
    )
    second = weekly_forecast(
        as_of=AS_OF,
        source_url=source,
        reporting_url=reporting,
        scenarios=["fewer_accept:acceptance_rate=0.2", "relaxed:service_level.RN=0.9"],
    )
    assert second.run_id != first.run_id
    for table in ("current_on_call_pool", "current_recruiting_target", "current_holiday_coverage"):
        with engine.connect() as conn:
            per_scenario = dict(
                conn.exec_driver_sql(
                    f"SELECT scenario, count(*) FROM {table} GROUP BY scenario"
                ).all()
            )
        assert set(per_scenario) == {"base", "fewer_accept", "relaxed"}, table
        assert len(set(per_scenario.values())) == 1, table
    with engine.connect() as conn:
        pools = dict(
            conn.exec_driver_sql(
                "SELECT scenario, sum(recommended_pool) FROM current_on_call_pool GROUP BY scenario"
            ).all()
        )
    assert pools["fewer_accept"] > pools["base"] > pools["relaxed"]
    with engine.connect() as conn:
        boxing = conn.exec_driver_sql(
            "SELECT count(*) FROM current_holiday_coverage "
            "WHERE holiday = 'Agency Boxing Day' AND scenario = 'base'"
        ).scalar_one()
    assert boxing == 8  # the agency's own day: every region and role
    with engine.connect() as conn:
        pools_after = {tuple(r[:3]): r[3] for r in conn.exec_driver_sql(pool_sql)}
    grown = {key for key in pools_before if pools_after[key] != pools_before[key]}
    assert grown and {(k[0], k[1]) for k in grown} == {(strict_region, "RN")}
    assert all(pools_after[k] > pools_before[k] for k in grown)
    assert [r[0] for r in _runs(engine)] == [second.run_id]
    for table in CHILD_TABLES:
        with engine.connect() as conn:
            ids = set(conn.exec_driver_sql(f"SELECT DISTINCT run_id FROM {table}").scalars())
        assert ids <= {second.run_id}, table


def test_failed_run_leaves_the_published_run_current(
    small_agency, staffcast_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = f"sqlite:///{small_agency.path}"
    reporting = f"sqlite:///{staffcast_home / 'reporting.db'}"
    good = weekly_forecast(as_of=AS_OF, source_url=source, reporting_url=reporting)
    engine = reporting_engine(reporting)
    rows_before = {t: _count(engine, f"current_{t}") for t in CHILD_TABLES}

    real_insert = publishing._insert_rows
    calls = {"n": 0}

    def failing_insert(connection, target, rows):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full (injected in the middle of publishing)")
        return real_insert(connection, target, rows)

    monkeypatch.setattr(publishing, "_insert_rows", failing_insert)
    monkeypatch.setenv("STAFFCAST_MAX_SOURCE_LAG_DAYS", "10")  # the same source a week later
    later = date.fromordinal(AS_OF.toordinal() + 7)
    with pytest.raises(RuntimeError, match="injected"):
        weekly_forecast(as_of=later, source_url=source, reporting_url=reporting)

    with engine.connect() as conn:
        current = conn.exec_driver_sql("SELECT run_id FROM current_forecast_run").scalar_one()
        failed = conn.exec_driver_sql(
            "SELECT status, error FROM forecast_run WHERE as_of = ?", (later,)
        ).one()
    assert current == good.run_id
    assert failed[0] == "failed" and "injected" in failed[1]
    assert {t: _count(engine, f"current_{t}") for t in CHILD_TABLES} == rows_before
    for table in CHILD_TABLES:
        assert _count(engine, table) == rows_before[table], f"partial rows left in {table}"


def test_batch_failure_stops_before_publishing(tmp_path: Path, staffcast_home: Path) -> None:
    from staffcast.demo_agency import build_demo_agency

    agency = build_demo_agency(tmp_path / "ops.db", AS_OF, facilities=4, years=0.3, seed=1)
    with sa.create_engine(f"sqlite:///{agency.path}").begin() as conn:
        conn.exec_driver_sql("UPDATE shift_requests SET role = 'CNA' WHERE rowid % 3 = 0")
    reporting = f"sqlite:///{staffcast_home / 'reporting.db'}"
    with pytest.raises(ValidationFailed, match="max_quarantine_share"):
        weekly_forecast(as_of=AS_OF, source_url=f"sqlite:///{agency.path}", reporting_url=reporting)
    engine = reporting_engine(reporting)
    assert [r[2] for r in _runs(engine)] == ["failed"]
    # Only the data-quality summary of the stopped run is kept; no view shows anything.
    assert all(_count(engine, t) == 0 for t in CHILD_TABLES if t != "validation_result")
    assert all(_count(engine, f"current_{t}") == 0 for t in CHILD_TABLES)
    with engine.connect() as conn:
        stop = conn.exec_driver_sql(
            "SELECT rule, level FROM validation_result WHERE rule = 'max_quarantine_share'"
        ).one()
    assert stop == ("max_quarantine_share", "batch")


@pytest.mark.postgres
def test_weekly_flow_publishes_to_postgresql(
    small_agency, staffcast_home: Path, tmp_path: Path
) -> None:
    """The production set-up: the run migrates a fresh PostgreSQL database and publishes."""
    from tests.conftest import fresh_database

    with fresh_database("postgresql", tmp_path) as engine:
        url = engine.url.render_as_string(hide_password=False)
        summary = weekly_forecast(
            as_of=AS_OF, source_url=f"sqlite:///{small_agency.path}", reporting_url=url
        )
        assert summary.reporting_url.startswith("postgresql+psycopg://")
        for view, expected in [
            ("current_recruiting_target", 8),
            ("current_on_call_pool", 8 * 26),
            ("current_hiring_plan", 8 * 6),
            ("current_demand_forecast", summary.series * 182),
        ]:
            assert _count(engine, view) == expected, view
        # Up to 371 days per series: a facility that opened later has fewer.
        assert 0 < _count(engine, "current_demand_history") <= summary.series * 371
        assert 'id="hiring-targets"' in Path(summary.report_path).read_text(encoding="utf-8")


def test_forecast_batches_in_worker_processes_match_the_flow_process() -> None:
    """forecast_workers > 1 moves the engine into processes; the numbers must not change."""
    import numpy as np
    import pandas as pd
    from prefect import flow, unmapped

    from flows.weekly_forecast import _forecast_processes, forecast_batch
    from models.calendar import HolidayCalendar
    from models.forecasting import EngineConfig

    rng = np.random.default_rng(5)
    days = pd.date_range("2025-01-06", periods=200, freq="D")
    history = pd.DataFrame(
        {
            "series_id": np.repeat([f"F{i}|RN" for i in range(6)], len(days)),
            "date": np.tile(days, 6),
            "demand": rng.poisson(5.0, 6 * len(days)).astype(float),
        }
    )
    batches = [history[history["series_id"].isin([f"F{i}|RN", f"F{i + 3}|RN"])] for i in range(3)]
    config = EngineConfig(calendar=HolidayCalendar(), origins=2)
    start = days[-1] + pd.Timedelta(days=1)

    @flow
    def forecast(workers: int) -> list[pd.DataFrame]:
        with _forecast_processes(workers, len(batches)) as processes:
            assert (processes is None) == (workers == 1)
            futures = forecast_batch.map(batches, 14, config, start, unmapped(processes))
            return [f.result().with_quantiles() for f in futures]

    in_flow, in_processes = forecast(1), forecast(2)
    for one, other in zip(in_flow, in_processes, strict=True):
        pd.testing.assert_frame_equal(one, other)


def test_the_clock_future_as_of_and_a_lagging_source_stop_before_publishing(
    small_agency, staffcast_home: Path
) -> None:
    from flows.weekly_forecast import today_in

    source = f"sqlite:///{small_agency.path}"
    reporting = f"sqlite:///{staffcast_home / 'reporting.db'}"
    future = today_in("America/Chicago") + timedelta(days=7)
    with pytest.raises(StaffcastError, match="is after today") as refused:
        weekly_forecast(as_of=future, source_url=source, reporting_url=reporting)
    assert "--allow-future-as-of" in str(refused.value)
    assert not Path(staffcast_home / "reporting.db").exists()  # refused before any work

    # The source's newest request is from AS_OF: a week later it lags by 7 days.
    later = AS_OF + timedelta(days=7)
    with pytest.raises(ValidationFailed, match="source_freshness") as stale:
        weekly_forecast(as_of=later, source_url=source, reporting_url=reporting)
    assert "days before as_of" in str(stale.value) and "Nothing was published" in str(stale.value)
    engine = reporting_engine(reporting)
    assert [r[2] for r in _runs(engine)] == ["failed"]
    assert _count(engine, "current_forecast_run") == 0
    with engine.connect() as conn:
        rule = conn.exec_driver_sql(
            "SELECT source_table, rule FROM validation_result WHERE level = 'batch' "
            "AND rule = 'source_freshness'"
        ).one()
    assert rule == ("shift_requests", "source_freshness")
    engine.dispose()
