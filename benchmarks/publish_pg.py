"""Time of publishing one run of a 500-facility agency to PostgreSQL.

Usage (from the repository root):

    .venv/bin/python benchmarks/publish_pg.py                     # the local test server
    .venv/bin/python benchmarks/publish_pg.py --reporting postgresql+psycopg://u@host/db

Builds synthetic result frames sized like a 500-facility agency (1,000 facility-role series:
182 forecast days and 371 history days each, 6 candidate models, 10 regions), then, in a
scratch database created on the server of ``--reporting`` (dropped afterwards, so a real
reporting database never gets a fake run), times: create_schema on an empty database and at
head, publish_run of the run, and publish_run of a re-run of the same as_of (which deletes the
first run's rows in the same transaction). Prints rows and insert seconds per table.
``--in-place`` publishes into the ``--reporting`` database itself instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table, create_engine, make_url

import reports.publish as publish_module
from reports.publish import RunCounts, publish_run, start_run
from reports.schema import create_schema, reporting_engine

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
AS_OF = dt.date(2026, 1, 5)
QUANTILES = {"p025": 0.3, "p10": 0.5, "p50": 0.95, "p80": 1.25, "p90": 1.45, "p95": 1.6}


def agency_frames(facilities: int = 500, seed: int = 1) -> dict[str, pd.DataFrame]:
    """Result frames of one run for ``facilities`` facilities x RN/LPN in 10 regions."""
    rng = np.random.default_rng(seed)
    roles = ["RN", "LPN"]
    regions = [f"Region {i:02d}" for i in range(10)]
    facility_ids = [f"F{i:04d}" for i in range(facilities)]
    days = pd.date_range(AS_OF, periods=182, freq="D")
    n_series = len(facility_ids) * len(roles)

    demand = pd.MultiIndex.from_product(
        [facility_ids, roles, days], names=["facility_id", "role", "date"]
    ).to_frame(index=False)
    mean = rng.gamma(2.0, 1.5, len(demand))
    demand["mean"] = mean
    for column, factor in QUANTILES.items():
        demand[column] = mean * factor
    demand["p975"] = mean * 1.8
    demand["booked"] = rng.integers(0, 3, len(demand))
    demand["hours_mean"] = mean * 12
    demand["model"] = "ets"

    history = pd.MultiIndex.from_product(
        [facility_ids, roles, pd.date_range(AS_OF - dt.timedelta(days=371), periods=371)],
        names=["facility_id", "role", "date"],
    ).to_frame(index=False)
    history["demand"] = rng.poisson(3, len(history))

    models = ["ets", "theta", "naive", "seasonal_naive", "arima", "ets+theta"]
    evaluation = pd.MultiIndex.from_product(
        [facility_ids, roles, models], names=["facility_id", "role", "model"]
    ).to_frame(index=False)
    evaluation["mase"] = rng.uniform(0.5, 1.5, len(evaluation))
    evaluation["mae"] = rng.uniform(0.5, 3, len(evaluation))
    evaluation["coverage80"] = rng.uniform(0.6, 0.9, len(evaluation))
    evaluation["selected"] = evaluation["model"] == "ets"
    evaluation["n_backtest_days"] = 364

    regional = pd.MultiIndex.from_product(
        [regions, roles, days], names=["region", "role", "date"]
    ).to_frame(index=False)
    regional["mean"] = rng.gamma(20, 5, len(regional))
    for column, factor in QUANTILES.items():
        regional[column] = regional["mean"] * factor
    regional["p975"] = regional["mean"] * 1.8

    region_roles = pd.MultiIndex.from_product([regions, roles], names=["region", "role"])
    weeks = pd.date_range(AS_OF, periods=26, freq="7D")
    pool = pd.MultiIndex.from_product(
        [regions, roles, weeks], names=["region", "role", "week_start"]
    ).to_frame(index=False)
    pool = pool.assign(
        scenario="base",
        peak_day_p95=12.0,
        peak_day_mean=8.0,
        weekly_demand_mean=50.0,
        recommended_pool=rng.integers(20, 60, len(pool)),
        service_level=0.95,
        acceptance_rate=0.35,
        max_shifts_per_week=4,
        days_in_week=7,
        daily_pool=30,
        weekly_pool=13,
    )
    recruiting = region_roles.to_frame(index=False).assign(
        scenario="base",
        current_pool=30,
        target_pool=40,
        expected_attrition=2.5,
        hires_needed=12,
        surplus=0,
        recruit_by=AS_OF,
        needed_by=AS_OF + dt.timedelta(days=97),
        acceptance_rate=0.35,
        annual_attrition=0.25,
        lead_time_days=97,
        expected_pool=27.5,
        late=False,
        window_start=AS_OF + dt.timedelta(days=97),
        window_end=AS_OF + dt.timedelta(days=153),
        acceptance_offers=400,
        attrition_nurse_years=30.0,
        attrition_separations=7,
    )
    holidays = pd.MultiIndex.from_product(
        [range(16), regions, roles], names=["number", "region", "role"]
    ).to_frame(index=False)
    holidays["holiday"] = "Holiday " + holidays["number"].astype(str)
    holidays["date"] = pd.Timestamp(AS_OF) + pd.to_timedelta(holidays.pop("number") * 11, "D")
    holidays = holidays.assign(
        scenario="base",
        expected_demand=10.0,
        p90=14.0,
        p95=16.0,
        typical_demand=9.0,
        uplift=1.1,
        recommended_on_call=45,
        acceptance_rate=0.245,
        service_level=0.95,
        acceptance_offers=120,
    )
    months = pd.date_range(AS_OF.replace(day=1), periods=6, freq="MS")
    hiring = pd.MultiIndex.from_product(
        [regions, roles, months], names=["region", "role", "month"]
    ).to_frame(index=False)
    hiring = hiring.assign(
        scenario="base",
        arrival_start=hiring["month"] + pd.Timedelta(days=97),
        arrival_end=hiring["month"] + pd.Timedelta(days=128),
        pool_needed=40,
        expected_pool=30.5,
        hires=3,
        cumulative_hires=9,
        beyond_horizon=False,
    )
    quarantined = pd.DataFrame(
        {
            "source_table": "shift_requests",
            "source_key": [f"R{i}" for i in range(n_series)],
            "rule": "shift_hours_in_range",
            "detail": "shift_hours=30",
        }
    )
    validation = pd.DataFrame(
        {
            "source_table": "shift_requests",
            "rule": [f"rule_{i:02d}" for i in range(30)],
            "level": "row",
            "description": "A rule of the data contracts.",
            "failed_rows": rng.integers(0, 5, 30),
            "example": None,
        }
    )
    return {
        "quarantined_row": quarantined,
        "validation_result": validation,
        "demand_forecast": demand,
        "demand_history": history,
        "regional_forecast": regional,
        "model_evaluation": evaluation,
        "on_call_pool": pool,
        "recruiting_target": recruiting,
        "holiday_coverage": holidays,
        "hiring_plan": hiring,
    }


@contextmanager
def scratch_database(url: str, in_place: bool) -> Iterator[Engine]:
    """A reporting engine on a new database beside ``url``'s (dropped after), or on ``url``."""
    if in_place:
        engine = reporting_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"staffcast_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = reporting_engine(make_url(url).set(database=name).render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def timed_publish(
    engine: Engine, frames: dict[str, pd.DataFrame]
) -> tuple[float, dict[str, float]]:
    """Seconds of start_run + publish_run, and insert seconds per table."""
    per_table: dict[str, float] = defaultdict(float)
    real_insert = publish_module._insert_rows

    def insert(connection: Connection, target: Table, rows: Any) -> None:
        started = time.perf_counter()
        real_insert(connection, target, rows)
        per_table[target.name] += time.perf_counter() - started

    publish_module._insert_rows = insert  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        run_id = start_run(engine, AS_OF, {"benchmark": "publish_pg"}, None, "bench", 182)
        counts = RunCounts(1_000_000, 1_000_000 - 1000, 1000)
        publish_run(engine, run_id, frames, counts)
        return time.perf_counter() - started, dict(per_table)
    finally:
        publish_module._insert_rows = real_insert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reporting", default=DEFAULT_URL, help="PostgreSQL SQLAlchemy URL")
    parser.add_argument("--facilities", type=int, default=500)
    parser.add_argument(
        "--in-place", action="store_true", help="publish into --reporting itself (not a scratch db)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    frames = agency_frames(args.facilities)
    print(f"built frames in {time.perf_counter() - started:.1f} s")

    with scratch_database(args.reporting, args.in_place) as engine:
        started = time.perf_counter()
        create_schema(engine)
        print(f"create_schema, empty database: {1000 * (time.perf_counter() - started):.0f} ms")
        repeats = 20
        started = time.perf_counter()
        for _ in range(repeats):
            create_schema(engine)
        at_head = 1000 * (time.perf_counter() - started) / repeats
        print(f"create_schema, at head (mean of {repeats}): {at_head:.1f} ms")

        for label in ("first run", "re-run of the same as_of (replaces the first)"):
            seconds, per_table = timed_publish(engine, frames)
            print(f"\npublish_run, {label}: {seconds:.1f} s")
            for name, frame in frames.items():
                print(f"  {name:<18} {len(frame):>9,} rows  {per_table.get(name, 0):6.2f} s")
            total = sum(len(frame) for frame in frames.values())
            print(f"  {'total':<18} {total:>9,} rows  {sum(per_table.values()):6.2f} s inserting")


if __name__ == "__main__":
    main()
