"""5% of requests broken: the plan stays within 2% of the clean plan, and says what was lost."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from flows.weekly_forecast import weekly_forecast
from reports.schema import reporting_engine
from tests.conftest import AS_OF

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _plan(reporting: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    engine = reporting_engine(reporting)
    try:
        with engine.connect() as conn:
            pools = pd.read_sql(
                "SELECT region, role, week_start, recommended_pool FROM current_on_call_pool "
                "WHERE scenario = 'base'",
                conn,
            )
            targets = pd.read_sql(
                "SELECT region, role, target_pool, hires_needed FROM current_recruiting_target "
                "WHERE scenario = 'base'",
                conn,
            )
            impact = pd.read_sql("SELECT * FROM current_data_quality_impact", conn)
    finally:
        engine.dispose()
    return pools, targets, impact


def test_five_percent_broken_rows_keep_the_plan_within_two_percent(
    small_agency, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAFFCAST_HOME", str(tmp_path / "home"))
    broken = tmp_path / "broken.db"
    shutil.copy(small_agency.path, broken)
    with sqlite3.connect(broken) as con:
        changed = con.execute(
            "UPDATE shift_requests SET shift_start = 'see notes' WHERE rowid % 20 = 7"
        ).rowcount
    clean_db = f"sqlite:///{tmp_path / 'clean-reporting.db'}"
    broken_db = f"sqlite:///{tmp_path / 'broken-reporting.db'}"

    clean = weekly_forecast(
        as_of=AS_OF, source_url=f"sqlite:///{small_agency.path}", reporting_url=clean_db
    )
    hurt = weekly_forecast(as_of=AS_OF, source_url=f"sqlite:///{broken}", reporting_url=broken_db)

    assert hurt.rows_quarantined >= clean.rows_quarantined + changed * 0.99
    clean_pools, clean_targets, _ = _plan(clean_db)
    pools, targets, impact = _plan(broken_db)
    total_pool = clean_pools["recommended_pool"].sum()
    assert abs(pools["recommended_pool"].sum() - total_pool) <= 0.02 * total_pool
    total_target = clean_targets["target_pool"].sum()
    assert abs(targets["target_pool"].sum() - total_target) <= 0.02 * total_target
    hires = clean_targets["hires_needed"].sum()
    assert abs(targets["hires_needed"].sum() - hires) <= max(1, 0.02 * hires)

    # The loss is measured per region and role, put back, and said out loud.
    quarantined = impact[impact["source"] == "quarantined"]
    assert quarantined["imputed_shifts"].sum() >= changed * 0.9
    assert hurt.warnings and all("in quarantine" in w for w in hurt.warnings)
    with sa.create_engine(broken_db).connect() as conn:
        run = conn.exec_driver_sql(
            "SELECT rows_extracted, rows_used, rows_quarantined, rows_excluded "
            "FROM current_forecast_run"
        ).one()
    assert run[0] == run[1] + run[2] + run[3]
