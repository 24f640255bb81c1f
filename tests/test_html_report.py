"""The HTML report: hiring targets first, everything escaped, a clear error with nothing to show."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from reports.html_report import write_report
from reports.publish import RunCounts, publish_run, start_run
from reports.schema import create_schema, reporting_engine

AS_OF = dt.date(2026, 1, 5)
EVIL_REGION = "<script>alert('x')</script>"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = reporting_engine(f"sqlite:///{tmp_path / 'reporting.db'}")
    create_schema(engine)
    return engine


def publish_small_run(engine: Engine) -> str:
    """Two regions (one with a hostile name), one role, two weeks, one holiday."""
    regions = ["North", EVIL_REGION]
    weeks = [AS_OF, AS_OF + dt.timedelta(days=7)]
    pool = pd.DataFrame(
        [
            {
                "scenario": "base",
                "region": region,
                "role": "RN",
                "week_start": week,
                "peak_day_p95": 6.0,
                "peak_day_mean": 4.0,
                "weekly_demand_mean": 25.0,
                "recommended_pool": 20 + i,
                "service_level": 0.95,
                "acceptance_rate": 0.35,
                "max_shifts_per_week": 4,
                "days_in_week": 7,
                "daily_pool": 20 + i,
                "weekly_pool": 8,
            }
            for i, (region, week) in enumerate((r, w) for r in regions for w in weeks)
        ]
    )
    recruiting = pd.DataFrame(
        {
            "scenario": ["base", "base", "low_acceptance"],
            "region": ["North", EVIL_REGION, "North"],
            "role": "RN",
            "current_pool": [18, 30, 18],
            "target_pool": [25, 27, 31],
            "expected_attrition": [1.5, 2.0, 1.5],
            "hires_needed": [9, 0, 15],
            "surplus": [0, 1, 0],
            "recruit_by": [AS_OF, AS_OF, AS_OF],
            "needed_by": [dt.date(2026, 4, 12)] * 3,
            "acceptance_rate": [0.35, 0.35, 0.25],
            "annual_attrition": 0.25,
            "lead_time_days": 97,
            "expected_pool": [16.5, 28.0, 16.5],
            "late": False,
            "window_start": [dt.date(2026, 4, 12)] * 3,
            "window_end": [dt.date(2026, 6, 7)] * 3,
        }
    )
    holidays = pd.DataFrame(
        {
            "scenario": "base",
            "holiday": ["Martin Luther King Jr. Day"],
            "date": [dt.date(2026, 1, 19)],
            "region": "North",
            "role": "RN",
            "expected_demand": [3.0],
            "p90": [5.0],
            "p95": [6.0],
            "typical_demand": [4.0],
            "uplift": [0.75],
            "recommended_on_call": [24],
            "acceptance_rate": [0.245],
            "service_level": [0.95],
        }
    )
    quarantined = pd.DataFrame(
        {
            "source_table": "shift_requests",
            "source_key": ["R1", "R2", "R3"],
            "rule": ["duplicate_request_id", "duplicate_request_id", "shift_hours_in_range"],
            "detail": None,
        }
    )
    run_id = start_run(engine, AS_OF, {}, None, "test", 182)
    publish_run(
        engine,
        run_id,
        {
            "quarantined_row": quarantined,
            "on_call_pool": pool,
            "recruiting_target": recruiting,
            "holiday_coverage": holidays,
        },
        RunCounts(rows_extracted=103, rows_used=100, rows_quarantined=3),
    )
    return run_id


def test_report_shows_hiring_targets_first_and_escapes_names(
    engine: Engine, tmp_path: Path
) -> None:
    run_id = publish_small_run(engine)
    path = write_report(engine, tmp_path / "out" / "report.html")

    page = path.read_text(encoding="utf-8")
    assert run_id in page and "2026-01-05" in page
    assert "<script>" not in page  # the hostile region name is escaped everywhere
    assert "&lt;script&gt;" in page
    assert page.index("Hiring targets") < page.index("On-call pool") < page.index("Holiday")
    hiring = page[page.index("Hiring targets") : page.index("On-call pool")]
    assert "Recruit by" in hiring and "2026-04-12" in hiring
    assert "low_acceptance" not in page and ">15<" not in hiring  # base scenario only
    assert "Martin Luther King Jr. Day" in page
    assert "duplicate_request_id" in page
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_report_for_a_given_run(engine: Engine, tmp_path: Path) -> None:
    run_id = publish_small_run(engine)
    page = write_report(engine, tmp_path / "r.html", run_id=run_id).read_text(encoding="utf-8")
    assert run_id in page
    with pytest.raises(ValueError, match="not in the reporting database"):
        write_report(engine, tmp_path / "r.html", run_id="20260105-nope")


def test_report_without_a_published_run_raises_a_clear_error(
    engine: Engine, tmp_path: Path
) -> None:
    start_run(engine, AS_OF, {}, None, "test", 182)  # running, never published
    with pytest.raises(ValueError, match="No published run"):
        write_report(engine, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()
