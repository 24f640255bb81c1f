"""Seconds and megabytes of the HTML report (and the targets CSV) for agencies of two sizes.

Usage (from the repository root):

    .venv/bin/python benchmarks/report_size.py                 # demo size and 500 facilities
    .venv/bin/python benchmarks/report_size.py --facilities 40 --repeat 1

For each size it publishes one synthetic run shaped like the weekly flow's (2 roles, 4 regions,
182-day forecast, 371 days of history, 26 weeks of pools, 16 holidays per region and role,
4 scenarios, 3 candidate models per series) into a fresh SQLite reporting database under
benchmarks/out/report-size/, then times :func:`reports.html_report.write_report` (best of
``--repeat``) with the default cap on facility charts, and once without the cap. The files stay
there to open in a browser. The report's budget: at most 5 MB and 10 s for the demo size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.html_report import MAX_FACILITY_CHARTS, write_report  # noqa: E402
from reports.publish import RunCounts, publish_run, start_run  # noqa: E402
from reports.schema import create_schema, reporting_engine  # noqa: E402
from reports.targets_csv import write_targets_csv  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "report-size"
AS_OF = dt.date(2026, 1, 5)
ROLES = ("RN", "LPN")
REGIONS = ("North", "South", "East", "West")
SCENARIOS = ("base", "low_acceptance", "high_attrition", "service_level_0.99")
HORIZON_DAYS = 182
HISTORY_DAYS = 371
WEEKS = 26
HOLIDAYS = 16
MODELS = ("seasonal_naive", "ets", "prophet")
QUANTILE_Z = {"p025": -1.96, "p10": -1.2816, "p50": 0.0, "p80": 0.8416, "p90": 1.2816}
QUANTILE_Z |= {"p95": 1.6449, "p975": 1.96}


def _daily_level(days: pd.DatetimeIndex, level: np.ndarray) -> np.ndarray:
    """Expected shifts per day for each series (rows) and day (columns): weekly and yearly cycle."""
    weekday = np.where(days.day_of_week >= 5, 0.7, 1.08)
    yearly = 1 + 0.15 * np.cos(2 * np.pi * (days.day_of_year.to_numpy() - 15) / 365.25)
    return level[:, None] * (weekday * yearly)[None, :]


def synthetic_run(facilities: int, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Frames for every reporting table, sized like a weekly run of ``facilities`` facilities."""
    rng = np.random.default_rng(seed)
    facility_ids = [f"F{index:04d}" for index in range(facilities)]
    region_of = {
        facility: REGIONS[index % len(REGIONS)] for index, facility in enumerate(facility_ids)
    }
    keys = pd.MultiIndex.from_product([facility_ids, ROLES], names=["facility_id", "role"])
    level = rng.lognormal(np.log(6), 0.8, len(keys)) * np.where(
        keys.get_level_values("role") == "RN", 1.0, 0.5
    )

    days = pd.date_range(AS_OF, periods=HORIZON_DAYS, freq="D")
    mean = _daily_level(days, level)
    forecast = pd.MultiIndex.from_product(
        [facility_ids, ROLES, days], names=["facility_id", "role", "date"]
    ).to_frame(index=False)
    forecast["mean"] = mean.ravel()
    spread = np.sqrt(forecast["mean"].to_numpy() * 1.3)
    for column, z in QUANTILE_Z.items():
        forecast[column] = np.maximum(forecast["mean"].to_numpy() + z * spread, 0.0)
    forecast["booked"] = 0
    forecast["hours_mean"] = forecast["mean"] * 11.5
    forecast["model"] = rng.choice(MODELS, len(keys)).repeat(HORIZON_DAYS)

    history_days = pd.date_range(AS_OF - dt.timedelta(days=HISTORY_DAYS), periods=HISTORY_DAYS)
    history = pd.MultiIndex.from_product(
        [facility_ids, ROLES, history_days], names=["facility_id", "role", "date"]
    ).to_frame(index=False)
    history["demand"] = rng.poisson(_daily_level(history_days, level)).ravel().astype(np.int64)

    regional = forecast.assign(region=forecast["facility_id"].map(region_of))
    regional = regional.groupby(["region", "role", "date"], as_index=False)[
        ["mean", *QUANTILE_Z]
    ].sum()

    week_starts = pd.date_range(AS_OF, periods=WEEKS, freq="7D")
    pool = pd.MultiIndex.from_product(
        [SCENARIOS, REGIONS, ROLES, week_starts], names=["scenario", "region", "role", "week_start"]
    ).to_frame(index=False)
    pool_size = rng.integers(20, 140, len(pool))
    pool = pool.assign(
        peak_day_p95=pool_size * 0.3,
        peak_day_mean=pool_size * 0.2,
        weekly_demand_mean=pool_size * 1.1,
        recommended_pool=pool_size,
        service_level=0.95,
        acceptance_rate=0.33,
        max_shifts_per_week=4,
        days_in_week=7,
        daily_pool=pool_size,
        weekly_pool=pool_size // 3,
    )

    targets = pd.MultiIndex.from_product(
        [SCENARIOS, REGIONS, ROLES], names=["scenario", "region", "role"]
    ).to_frame(index=False)
    hires = rng.integers(0, 30, len(targets))
    targets = targets.assign(
        current_pool=rng.integers(40, 120, len(targets)),
        target_pool=rng.integers(40, 140, len(targets)),
        expected_attrition=rng.uniform(1, 8, len(targets)).round(2),
        hires_needed=np.where(hires > 5, hires, 0),
        surplus=np.where(hires > 5, 0, 5 - hires),
        recruit_by=AS_OF,
        needed_by=AS_OF + dt.timedelta(days=97),
        acceptance_rate=rng.uniform(0.25, 0.4, len(targets)).round(3),
        annual_attrition=rng.uniform(0.1, 0.3, len(targets)).round(3),
        lead_time_days=97,
        expected_pool=rng.uniform(40, 120, len(targets)),
        late=hires % 7 == 0,
        window_start=AS_OF + dt.timedelta(days=97),
        window_end=AS_OF + dt.timedelta(days=153),
        acceptance_offers=rng.integers(0, 900, len(targets)),
        attrition_nurse_years=rng.uniform(10, 90, len(targets)).round(1),
        attrition_separations=rng.integers(0, 15, len(targets)),
    )

    holiday_dates = sorted(rng.choice(days, HOLIDAYS, replace=False))
    holidays = pd.MultiIndex.from_product(
        [range(HOLIDAYS), REGIONS, ROLES], names=["index", "region", "role"]
    ).to_frame(index=False)
    holidays = holidays.assign(
        scenario="base",
        holiday=[f"Holiday {index + 1}" for index in holidays["index"]],
        date=[holiday_dates[index] for index in holidays["index"]],
        expected_demand=rng.uniform(20, 200, len(holidays)),
        p90=rng.uniform(200, 260, len(holidays)),
        p95=rng.uniform(260, 300, len(holidays)),
        typical_demand=rng.uniform(20, 200, len(holidays)),
        uplift=rng.uniform(0.6, 1.3, len(holidays)),
        recommended_on_call=rng.integers(40, 200, len(holidays)),
        acceptance_rate=0.25,
        service_level=0.95,
        acceptance_offers=rng.integers(0, 80, len(holidays)),
    ).drop(columns="index")

    months = pd.date_range(AS_OF.replace(day=1), periods=6, freq="MS")
    plan = pd.MultiIndex.from_product(
        [SCENARIOS, REGIONS, ROLES, months], names=["scenario", "region", "role", "month"]
    ).to_frame(index=False)
    plan_hires = rng.integers(0, 12, len(plan))
    plan = plan.assign(
        arrival_start=plan["month"] + pd.Timedelta(days=97),
        arrival_end=plan["month"] + pd.Timedelta(days=128),
        pool_needed=rng.integers(40, 140, len(plan)),
        expected_pool=rng.uniform(40, 120, len(plan)),
        hires=plan_hires,
        cumulative_hires=plan_hires,
        beyond_horizon=plan["month"] >= months[4],
    )

    evaluation = pd.MultiIndex.from_product(
        [facility_ids, ROLES, MODELS], names=["facility_id", "role", "model"]
    ).to_frame(index=False)
    evaluation = evaluation.assign(
        mase=rng.uniform(0.5, 1.6, len(evaluation)),
        mae=rng.uniform(0.5, 3.0, len(evaluation)),
        coverage80=rng.uniform(0.6, 0.9, len(evaluation)),
        selected=np.tile([True, False, False], len(keys)),
        n_backtest_days=84,
    )

    quarantined = pd.DataFrame(
        {
            "source_table": "shift_requests",
            "source_key": [f"R{index}" for index in range(200)],
            "rule": rng.choice(["duplicate_request_id", "shift_hours_in_range"], 200),
            "detail": "synthetic",
        }
    )
    validation = pd.DataFrame(
        {
            "source_table": "shift_requests",
            "rule": [f"rule_{index:02d}" for index in range(30)],
            "level": "row",
            "description": "A synthetic rule.",
            "failed_rows": np.where(np.arange(30) < 3, 50, 0),
            "example": "R1",
        }
    )
    return {
        "demand_forecast": forecast,
        "demand_history": history,
        "regional_forecast": regional,
        "on_call_pool": pool,
        "recruiting_target": targets,
        "holiday_coverage": holidays,
        "hiring_plan": plan,
        "model_evaluation": evaluation,
        "quarantined_row": quarantined,
        "validation_result": validation,
    }


def _best_of(repeat: int, action) -> float:  # type: ignore[no-untyped-def]
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def measure(facilities: int, repeat: int) -> list[str]:
    folder = OUT / f"{facilities}-facilities"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    engine = reporting_engine(f"sqlite:///{folder / 'reporting.db'}")
    create_schema(engine)
    frames = synthetic_run(facilities)
    started = time.perf_counter()
    run_id = start_run(engine, AS_OF, {}, None, "benchmark", HORIZON_DAYS)
    publish_run(engine, run_id, frames, RunCounts(10_200, 10_000, 200))
    published = time.perf_counter() - started

    capped = folder / "report.html"
    uncapped = folder / "report-all-charts.html"
    lines = [
        f"{facilities} facilities x {len(ROLES)} roles ({facilities * len(ROLES)} series), "
        f"{len(frames['demand_forecast']):,} forecast rows, "
        f"{len(frames['demand_history']):,} history rows; published in {published:.1f} s"
    ]
    seconds = _best_of(repeat, lambda: write_report(engine, capped))
    lines.append(
        f"  write_report (max_facility_charts={MAX_FACILITY_CHARTS}): {seconds:.2f} s, "
        f"{capped.stat().st_size / 1e6:.2f} MB -> {capped.relative_to(ROOT)}"
    )
    seconds = _best_of(1, lambda: write_report(engine, uncapped, max_facility_charts=None))
    lines.append(
        f"  write_report (all {facilities * len(ROLES)} charts): {seconds:.2f} s, "
        f"{uncapped.stat().st_size / 1e6:.2f} MB"
    )
    targets = folder / "targets.csv"
    seconds = _best_of(repeat, lambda: write_targets_csv(engine, targets))
    lines.append(f"  write_targets_csv: {seconds:.3f} s, {targets.stat().st_size / 1e3:.1f} kB")
    engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facilities", type=int, nargs="+", default=[40, 500])
    parser.add_argument("--repeat", type=int, default=3, help="time the best of this many runs")
    arguments = parser.parse_args()
    for facilities in arguments.facilities:
        print("\n".join(measure(facilities, arguments.repeat)), flush=True)


if __name__ == "__main__":
    main()
