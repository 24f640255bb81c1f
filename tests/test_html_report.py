"""The HTML report and the hiring-targets CSV: order, escaping, charts, caps, old runs, NULLs."""

from __future__ import annotations

import csv
import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from reports import charts
from reports.html_report import write_report
from reports.publish import RunCounts, publish_run, start_run
from reports.schema import create_schema, reporting_engine
from reports.targets_csv import TARGET_COLUMNS, write_targets_csv
from tests.test_publish import result_frames

AS_OF = dt.date(2026, 1, 5)
EVIL_REGION = "<script>alert('x')</script>"
EVIL_FACILITY = "<img src=x onerror=alert(1)>"
EVIL_HOLIDAY = 'Founders" onmouseover="alert(2)'
SECTION_IDS = ["hiring", "pool", "holidays", "track-record", "facilities", "quality", "accuracy"]
COUNTS = RunCounts(rows_extracted=103, rows_used=100, rows_quarantined=3)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = reporting_engine(f"sqlite:///{tmp_path / 'reporting.db'}")
    create_schema(engine)
    return engine


@pytest.fixture(scope="module")
def default_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(run_id, report path) of one published run of :func:`run_frames`, shared read-only."""
    folder = tmp_path_factory.mktemp("report")
    engine = reporting_engine(f"sqlite:///{folder / 'reporting.db'}")
    create_schema(engine)
    run_id = publish(engine, run_frames())
    path = write_report(engine, folder / "out" / "report.html")
    engine.dispose()
    return run_id, path


@pytest.fixture
def page(default_report: tuple[str, Path]) -> str:
    return default_report[1].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def track_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of one published run of the publish tests' frames, which carry track-record
    rows (forecast_score, pool_outcome, track_record_flag), shared read-only."""
    folder = tmp_path_factory.mktemp("track")
    engine = reporting_engine(f"sqlite:///{folder / 'reporting.db'}")
    create_schema(engine)
    publish(engine, result_frames(AS_OF))
    path = write_report(engine, folder / "report.html")
    engine.dispose()
    return path.read_text(encoding="utf-8")


def run_frames(
    as_of: dt.date = AS_OF,
    facilities: tuple[str, ...] = ("F1", EVIL_FACILITY),
    regions: tuple[str, ...] = ("North", EVIL_REGION),
    roles: tuple[str, ...] = ("RN", "LPN"),
    horizon_days: int = 28,
    weeks: int = 26,
    hires: int = 9,
) -> dict[str, pd.DataFrame]:
    """Frames for every reporting table; facility i's demand level is 10 * (i + 1) shifts/day."""
    level = {facility: 10.0 * (index + 1) for index, facility in enumerate(facilities)}
    days = pd.date_range(as_of, periods=horizon_days, freq="D")
    forecast = pd.MultiIndex.from_product(
        [facilities, roles, days], names=["facility_id", "role", "date"]
    ).to_frame(index=False)
    mean = forecast["facility_id"].map(level).to_numpy(dtype=float)
    forecast["mean"] = mean
    for column, factor in [("p025", 0.5), ("p10", 0.7), ("p50", 1.0), ("p80", 1.2)]:
        forecast[column] = mean * factor
    for column, factor in [("p90", 1.3), ("p95", 1.4), ("p975", 1.5)]:
        forecast[column] = mean * factor
    forecast["booked"] = 0
    forecast["model"] = np.where(forecast["role"] == "RN", "ets", "seasonal_naive")

    history_days = pd.date_range(as_of - dt.timedelta(days=371), periods=371, freq="D")
    history = pd.MultiIndex.from_product(
        [facilities, roles, history_days], names=["facility_id", "role", "date"]
    ).to_frame(index=False)
    history["demand"] = history["facility_id"].map(level).astype(np.int64)

    week_starts = pd.date_range(as_of, periods=weeks, freq="7D")
    pool = pd.MultiIndex.from_product(
        [regions, roles, week_starts], names=["region", "role", "week_start"]
    ).to_frame(index=False)
    pool = pool.assign(
        scenario="base",
        peak_day_p95=6.0,
        peak_day_mean=4.0,
        weekly_demand_mean=25.0,
        recommended_pool=20 + np.arange(len(pool)) % 7,
        service_level=0.95,
        acceptance_rate=0.35,
        max_shifts_per_week=4,
        days_in_week=7,
        daily_pool=20,
        weekly_pool=8,
    )
    pairs = [(region, role) for region in regions for role in roles]
    recruiting = pd.DataFrame(
        [
            {
                "scenario": scenario,
                "region": region,
                "role": role,
                "current_pool": 18,
                "target_pool": 25,
                "expected_attrition": 1.5,
                "hires_needed": (hires if index == 0 else 0) + extra,
                "surplus": 0 if index == 0 else 1,
                "recruit_by": as_of,
                "needed_by": as_of + dt.timedelta(days=97),
                "acceptance_rate": 0.3127,
                "annual_attrition": 0.16,
                "lead_time_days": 97,
                "expected_pool": 16.5,
                "late": index == 0,
                "window_start": as_of + dt.timedelta(days=97),
                "window_end": as_of + dt.timedelta(days=153),
                "note": "new region" if index == 1 else None,
            }
            for scenario, extra in [("base", 0), ("low_acceptance", 6)]
            for index, (region, role) in enumerate(pairs)
        ]
    )
    holidays = pd.DataFrame(
        {
            "scenario": "base",
            "holiday": ["Presidents Day", EVIL_HOLIDAY],
            "date": [as_of + dt.timedelta(days=20), as_of + dt.timedelta(days=3)],
            "region": regions[0],
            "role": roles[0],
            "expected_demand": [3.0, 4.0],
            "p90": [5.0, 6.0],
            "p95": [6.0, 7.0],
            "typical_demand": [4.0, None],
            "uplift": [0.75, None],
            "recommended_on_call": [24, 31],
            "acceptance_rate": [0.245, 0.2],
            "service_level": [0.95, 0.95],
        }
    )
    months = pd.DatetimeIndex([pd.Timestamp(as_of) + pd.DateOffset(months=k) for k in range(6)])
    plan = pd.DataFrame(
        {
            "scenario": "base",
            "region": regions[0],
            "role": roles[0],
            "month": months,
            "arrival_start": months + pd.Timedelta(days=97),
            "arrival_end": months + pd.Timedelta(days=128),
            "pool_needed": 25,
            "expected_pool": 16.5,
            "hires": [9, 2, 1, 1, 4, 3],
            "cumulative_hires": np.cumsum([9, 2, 1, 1, 4, 3]),
            "beyond_horizon": [False, False, False, False, True, True],
        }
    )
    scores = [(0.8, 1.1, 0.8), (1.0, 1.4, 0.7), (1.7, 2.0, 0.5), (1.0, 1.2, 0.75)]
    evaluation = pd.DataFrame(
        [
            {
                "facility_id": facility,
                "role": roles[0],
                "model": model,
                "mase": mase,
                "mae": mae,
                "coverage80": coverage,
                "selected": model == "ets",
                "n_backtest_days": 28,
            }
            for index, facility in enumerate(facilities[:2])
            for model, (mase, mae, coverage) in zip(
                ["ets", "naive"], scores[2 * index : 2 * index + 2], strict=True
            )
        ]
    )
    validation = pd.DataFrame(
        {
            "source_table": ["shift_requests", "shift_requests", "facilities"],
            "rule": ["duplicate_request_id", "shift_hours_in_range", "timezone_valid"],
            "level": "row",
            "description": ["A request id appears once.", "0 < shift_hours <= 24.", "IANA zone."],
            "failed_rows": [2, 1, 0],
            "example": ["R1", "shift_hours=30 <b>bold</b>", None],
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
    return {
        "demand_forecast": forecast,
        "demand_history": history,
        "on_call_pool": pool,
        "recruiting_target": recruiting,
        "holiday_coverage": holidays,
        "hiring_plan": plan,
        "model_evaluation": evaluation,
        "validation_result": validation,
        "quarantined_row": quarantined,
    }


def publish(engine: Engine, frames: dict[str, pd.DataFrame], as_of: dt.date = AS_OF) -> str:
    horizon = int(frames["demand_forecast"]["date"].nunique()) if "demand_forecast" in frames else 7
    run_id = start_run(engine, as_of, {}, None, "test", max(horizon, 1))
    publish_run(engine, run_id, frames, COUNTS)
    return run_id


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside SVG <text>/<title> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.svg_text: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if "svg" in self._open and self._open and self._open[-1] in ("text", "title"):
            self.svg_text.append(data)


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def section(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}">')
    return page[start : page.index("</section>", start)]


def facility_figures(page: str) -> list[tuple[str, str]]:
    """(facility, role) of every facility chart, as the attribute values (unescaped)."""
    return [
        (attrs["data-facility"] or "", attrs["data-role"] or "")
        for tag, attrs in parse(page).tags
        if tag == "figure" and "data-facility" in attrs
    ]


# --- the report -------------------------------------------------------------------------------


def test_sections_come_in_order_with_hiring_targets_first(
    default_report: tuple[str, Path], page: str
) -> None:
    run_id, path = default_report

    assert run_id in page and "2026-01-05" in page
    positions = [page.index(f'<section id="{name}">') for name in SECTION_IDS]
    assert positions == sorted(positions)
    assert page.index("<table") == page.index('<table id="hiring-targets"')
    assert page.index("<h2") > page.index("</nav>")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_hiring_section_shows_base_targets_plan_and_scenarios(page: str) -> None:
    hiring = section(page, "hiring")
    targets = hiring[: hiring.index("</table>")]
    assert targets.count("<tr") == 1 + 4  # header + 2 regions x 2 roles, base only
    assert targets.count('<tr class="hire">') == 1
    assert "2026-04-12" in targets and ">9<" in targets and ">15<" not in targets
    assert '<span class="late">late</span>' in targets and "new region" in targets
    plan = hiring[hiring.index("Month-by-month") : hiring.index("<h3>Scenarios")]
    assert "From Jan 5, 2026" in plan and "From Jun 5, 2026" in plan  # months from as_of
    assert plan.count("&#8224;") == 2 + 1  # two flagged months and the explanation
    scenarios = hiring[hiring.index("<h3>Scenarios") :]
    assert "low_acceptance (hires)" in scenarios and ">15<" in scenarios
    assert "0 (surplus 1)" in scenarios


def test_observations_behind_rates_and_nulls_from_older_runs(
    engine: Engine, tmp_path: Path
) -> None:
    frames = run_frames()
    publish(engine, frames, as_of=AS_OF - dt.timedelta(days=7))  # older: no observation columns
    old_page = write_report(engine, tmp_path / "old.html").read_text(encoding="utf-8")
    old_targets = section(old_page, "hiring").split("</table>")[0]
    assert old_targets.count("0.31 (&mdash;)") == 4
    assert old_targets.count("16% (&mdash;)") == 4
    assert "0.20 (&mdash;)" in section(old_page, "holidays")

    recruiting = frames["recruiting_target"]
    recruiting["acceptance_offers"] = np.where(recruiting.index % 2 == 0, 412, 0)
    recruiting["attrition_nurse_years"] = np.where(recruiting.index % 2 == 0, 38.2, 0.0)
    recruiting["attrition_separations"] = np.where(recruiting.index % 2 == 0, 6, 0)
    frames["holiday_coverage"]["acceptance_offers"] = [0, 1234]
    publish(engine, frames)
    page = write_report(engine, tmp_path / "new.html").read_text(encoding="utf-8")
    targets = section(page, "hiring").split("</table>")[0]
    assert targets.count("0.31 (412 offers)") == 2
    assert targets.count("0.31 prior (no offers)") == 2
    assert targets.count("16% (38.2 nurse-years, 6 left)") == 2
    assert targets.count("16% prior (no history)") == 2
    holidays = section(page, "holidays")
    assert "0.20 (1,234 offers)" in holidays and "0.24 prior (no offers)" in holidays


def test_hostile_names_are_escaped_in_tables_and_in_svg(page: str) -> None:

    elements = parse(page)
    tag_names = {tag for tag, _ in elements.tags}
    assert not tag_names & {"script", "img", "iframe", "object", "embed"}
    handlers = [name for _, attrs in elements.tags for name in attrs if name.startswith("on")]
    assert handlers == []
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Founders&quot; onmouseover=&quot;alert(2)" in page
    # Inside SVG too: tooltips name the hostile region and facility as plain text.
    svg_text = "\n".join(elements.svg_text)
    assert EVIL_REGION in svg_text and EVIL_FACILITY in svg_text
    assert (EVIL_FACILITY, "RN") in facility_figures(page)
    regions = {attrs["data-region"] for tag, attrs in elements.tags if tag == "g"}
    assert regions == {"North", EVIL_REGION}
    assert "shift_hours=30 &lt;b&gt;bold&lt;/b&gt;" in section(page, "quality")


def test_pool_chart_has_one_series_per_region_and_role_with_a_point_per_week(page: str) -> None:
    pool = section(page, "pool")  # run_frames gives 26 weeks
    series = re.findall(r'<g class="series"(.*?)</g>', pool, flags=re.S)
    assert len(series) == 2 * 2
    for body in series:
        assert body.count("<circle") == 26
        assert body.count("<title>") == 26
    assert "week of 2026-01-05" in pool and "week of 2026-06-29" in pool
    assert pool.count("<svg") - pool.count('viewBox="0 0 22 10"') == 2  # one chart per role
    assert "<details>" in pool and "Week of (Monday)" in pool


def test_facility_charts_are_capped_busiest_first_and_say_what_was_left_out(
    engine: Engine, tmp_path: Path
) -> None:
    facilities = tuple(f"F{index}" for index in range(5))  # F4 busiest
    publish(engine, run_frames(facilities=facilities))

    everything = write_report(engine, tmp_path / "all.html").read_text(encoding="utf-8")
    assert len(facility_figures(everything)) == 10
    assert "left out" not in everything

    capped = write_report(engine, tmp_path / "capped.html", max_facility_charts=3)
    page = capped.read_text(encoding="utf-8")
    figures = facility_figures(page)
    assert len(figures) == 3
    assert {facility for facility, _ in figures} == {"F4", "F3"}
    facilities_section = section(page, "facilities")
    assert "Showing the 3 busiest of 10" in facilities_section
    assert "7 were left out" in facilities_section and "demand_forecast" in facilities_section
    left_out_table = facilities_section[facilities_section.index("without a chart") :]
    assert left_out_table.count("<tr>") == 1 + 7
    assert "<td>F0</td>" in left_out_table


def test_facility_chart_draws_history_forecast_bands_and_last_year(
    engine: Engine, tmp_path: Path
) -> None:
    publish(engine, run_frames(facilities=("F1",), roles=("RN",)))
    page = write_report(engine, tmp_path / "r.html").read_text(encoding="utf-8")
    figure = re.search(r'<figure class="facility".*?</figure>', page, flags=re.S)
    assert figure is not None
    chart = figure.group(0)
    for css_class in ("hist", "mean", "b80", "b95", "ly", "asof"):
        assert f'<path class="{css_class}" d="M' in chart, css_class
    # 26 weeks of history: 182 points in one unbroken line.
    history = re.search(r'<path class="hist" d="M([^"]*)"', chart)
    assert history is not None and history.group(1).count(" ") == 2 * 182 - 1
    # Coordinates have at most one decimal.
    assert not re.search(r"\d\.\d\d", chart)


def test_report_of_an_older_run_by_run_id(engine: Engine, tmp_path: Path) -> None:
    older = publish(engine, run_frames(hires=41), as_of=AS_OF - dt.timedelta(days=7))
    newer = publish(engine, run_frames(hires=9))

    page = write_report(engine, tmp_path / "old.html", run_id=older).read_text(encoding="utf-8")
    assert older in page and newer not in page and "2025-12-29" in page
    assert ">41<" in section(page, "hiring").split("</table>")[0]
    current = write_report(engine, tmp_path / "new.html").read_text(encoding="utf-8")
    assert newer in current and ">41<" not in current
    with pytest.raises(ValueError, match="not in the reporting database"):
        write_report(engine, tmp_path / "r.html", run_id="20260105-nope")


def test_unpublished_run_or_no_run_raises_a_clear_error(engine: Engine, tmp_path: Path) -> None:
    running = start_run(engine, AS_OF, {}, None, "test", 182)  # never published
    with pytest.raises(ValueError, match="No published run"):
        write_report(engine, tmp_path / "report.html")
    with pytest.raises(ValueError, match="not published"):
        write_report(engine, tmp_path / "report.html", run_id=running)
    with pytest.raises(ValueError, match="No published run"):
        write_targets_csv(engine, tmp_path / "targets.csv")
    assert list(tmp_path.glob("*.html")) == [] and list(tmp_path.glob("*.csv")) == []


def test_quality_and_accuracy_sections(page: str) -> None:
    quality = section(page, "quality")
    assert ">103<" in quality and ">100<" in quality
    assert "duplicate_request_id" in quality and "A request id appears once." in quality
    assert "IANA zone." not in quality  # passed rules are counted, not listed
    assert "3 rules checked on 2 source tables; 2 found problems" in quality
    accuracy = section(page, "accuracy")
    assert "All series" in accuracy and ">1.25<" in accuracy  # median MASE of 0.8 and 1.7
    assert "65%" in accuracy  # mean coverage of 0.8 and 0.5
    assert "naive" not in accuracy.replace("seasonal_naive", "")  # only selected models


def test_report_makes_no_remote_requests_and_runs_no_script(engine: Engine, tmp_path: Path) -> None:
    publish(engine, run_frames())
    page = write_report(engine, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, flags=re.I)
    assert "@import" not in page and "url(" not in page
    links = [attrs.get("href") or "" for tag, attrs in parse(page).tags if "href" in attrs]
    assert links and all(link.startswith(("#", "data:")) for link in links)


def test_empty_run_still_renders_every_section(engine: Engine, tmp_path: Path) -> None:
    publish(engine, {})
    page = write_report(engine, tmp_path / "r.html").read_text(encoding="utf-8")
    for name in SECTION_IDS:
        assert f'<section id="{name}">' in page
    assert "No base-scenario hiring targets" in page


# --- the track record -------------------------------------------------------------------------


def drift_banner(page: str) -> str:
    """The drift banner's HTML ('' when there is none)."""
    found = re.search(r'<div class="alert drift".*?</div>', page, flags=re.S)
    return found.group(0) if found else ""


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The body rows of a table as lists of cell HTML."""
    start = html.index(f'<table id="{table_id}">')
    body = html[html.index("<tbody>", start) : html.index("</tbody>", start)]
    return [
        re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    ]


def test_drift_banner_lists_the_run_flags_before_the_nav(track_page: str, page: str) -> None:
    message = result_frames(AS_OF)["track_record_flag"]["message"].iloc[0]
    banner = drift_banner(track_page)
    assert message in banner
    assert track_page.index(banner) < track_page.index("<nav>") < track_page.index("<h2")
    assert "<table" not in banner and "<h2" not in banner
    assert message in section(track_page, "track-record")  # listed again in the section
    assert not drift_banner(page) and "No earlier published run has been scored" in page


def test_track_record_charts_weekly_demand_against_the_forecast(track_page: str) -> None:
    record = section(track_page, "track-record")
    region = result_frames(AS_OF)["forecast_score"].query("level == 'region'").iloc[0]
    assert '<figure class="accuracy" data-region="North" data-role="RN">' in record
    assert record.count("<svg") - record.count('viewBox="0 0 22 10"') == 1
    # A week's totals are scaled to 7 days; error is forecast over actual minus 1.
    actual = region["actual_total"] / region["days"] * 7
    forecast = region["forecast_total"] / region["days"] * 7
    rows = table_rows(record, "track-weekly")
    assert rows == [
        [
            "North",
            "RN",
            region["week_start"].isoformat(),
            str(region["days"]),
            f"{actual:,.1f}",
            f"{forecast:,.1f}",
            f"{100 * (forecast / actual - 1):+.1f}%",
            "&mdash;",
            "&mdash;",
        ]
    ]
    assert f"actual demand {actual:,.1f} shifts/week" in record  # the point's tooltip


def test_accuracy_by_lead_band_takes_ratios_of_the_summed_scores(track_page: str) -> None:
    record = section(track_page, "track-record")
    scores = result_frames(AS_OF)["forecast_score"]
    region = scores[scores["level"] == "region"].iloc[0]
    facility = scores[scores["level"] == "facility"]

    def expected(actual: float, forecast: float, error: float, naive: float) -> list[str]:
        return [
            f"{actual:,.0f}",
            f"{forecast:,.0f}",
            f"{100 * (forecast / actual - 1):+.1f}%",
            f"{100 * error / actual:.1f}%",
            f"{error / naive:.2f}",
        ]

    region_rows = table_rows(record, "track-accuracy-region")
    assert [row[:3] for row in region_rows] == [
        ["<strong>All regions</strong>", "days 1-7", "7"],
        ["North · RN", "days 1-7", "7"],
    ]
    wanted = expected(
        region["actual_total"],
        region["forecast_total"],
        region["abs_error"],
        region["naive_abs_error"],
    )
    assert region_rows[0][3:8] == wanted == ["50", "50", "-1.0%", "16.0%", "0.73"]
    assert region_rows[0][8:] == [f"{6 / 7:.0%}", "100%"]  # in_p10_p90 and under_p95 of 7 days
    facility_rows = table_rows(record, "track-accuracy-facility")
    assert len(facility_rows) == 1 and facility_rows[0][:2] == ["days 1-7", "14"]
    assert facility_rows[0][2:7] == expected(
        facility["actual_total"].sum(),
        facility["forecast_total"].sum(),
        facility["abs_error"].sum(),
        facility["naive_abs_error"].sum(),
    )
    assert facility_rows[0][5] == "19.0%"  # facility errors do not cancel: (6.5 + 3) / 50


def test_service_level_table_sets_achieved_against_promised(track_page: str) -> None:
    record = section(track_page, "track-record")
    outcome = result_frames(AS_OF)["pool_outcome"]
    rows = table_rows(record, "track-service")
    assert [row[0] for row in rows] == ["base", "tight"]  # base scenario first
    for row, held in zip(rows, outcome.itertuples(index=False), strict=True):
        achieved = f"{100 * held.covered / held.days:.1f}%"
        promised = f"{100 * held.service_level:.1f}%"
        assert row[1:] == ["North", "RN", "1", achieved, promised, "1", achieved, promised]
    assert "Achieved service level: for each past day" in record
    assert 'class="num short"' not in record


def test_a_pool_short_of_its_promise_is_highlighted(engine: Engine, tmp_path: Path) -> None:
    frames = result_frames(AS_OF)
    frames["pool_outcome"]["covered"] = [6.3, 6.95]  # base: 90.0% against 95% promised
    publish(engine, frames)
    record = section(write_report(engine, tmp_path / "r.html").read_text("utf-8"), "track-record")
    service = record[record.index('<table id="track-service">') :]
    assert service.count('<td class="num short">90.0%</td>') == 2  # over 13 and 52 weeks
    assert service.count("short") == 2


def test_the_record_is_as_of_the_run_and_flags_are_the_run_own(
    engine: Engine, tmp_path: Path
) -> None:
    earlier = publish(engine, result_frames(AS_OF))
    next_week = AS_OF + dt.timedelta(days=7)
    later = publish(engine, run_frames(as_of=next_week), as_of=next_week)  # scores nothing
    page = write_report(engine, tmp_path / "later.html", run_id=later).read_text("utf-8")
    assert not drift_banner(page)
    record = section(page, "track-record")
    assert "No measure left its band." in record and '<table id="track-service">' in record
    older = publish(engine, run_frames(), as_of=AS_OF - dt.timedelta(days=7))
    page = write_report(engine, tmp_path / "older.html", run_id=older).read_text("utf-8")
    assert "begins with the next weekly run" in section(page, "track-record")
    page = write_report(engine, tmp_path / "earlier.html", run_id=earlier).read_text("utf-8")
    assert drift_banner(page) and "<svg" in section(page, "track-record")


def test_a_run_without_a_track_record_says_when_it_begins(page: str) -> None:
    record = section(page, "track-record")
    assert (
        "No earlier published run has been scored yet: the track record begins with the next "
        "weekly run"
    ) in record
    assert "<svg" not in record and "<table" not in record
    assert '<a href="#track-record">Track record</a>' in page


def test_hostile_names_in_the_track_record_are_escaped(engine: Engine, tmp_path: Path) -> None:
    frames = result_frames(AS_OF)
    for name in ("forecast_score", "pool_outcome", "track_record_flag"):
        frames[name]["region"] = EVIL_REGION
    frames["track_record_flag"]["message"] = f"{EVIL_REGION} RN: forecasts ran high."
    publish(engine, frames)
    page = write_report(engine, tmp_path / "r.html").read_text(encoding="utf-8")
    elements = parse(page)
    assert "script" not in {tag for tag, _ in elements.tags}
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert f"{escaped} RN: forecasts ran high." in drift_banner(page)
    record = section(page, "track-record")
    assert f"<td>{escaped}</td>" in record and f"{escaped} · RN" in record
    assert EVIL_REGION in "\n".join(elements.svg_text)
    figures = [attrs for tag, attrs in elements.tags if tag == "figure" and "data-region" in attrs]
    assert [attrs["data-region"] for attrs in figures] == [EVIL_REGION]


def test_chart_paths_are_compact_and_break_at_gaps() -> None:
    frame = charts.Frame(0, 10, 0, 10, width=110, height=110, left=5, right=5, top=5, bottom=5)
    path = charts.line_path(np.array([0, 1, 2, 5, 6]), np.array([0, 10, 5, np.nan, 2]), frame)
    assert path == "M5 105 15 5 25 55M65 85"  # the gap after day 2 and the NaN start new parts
    band = charts.band_path(np.array([0, 1]), np.array([1, 2]), np.array([3, 4]), frame)
    assert band == "M5 75 15 65 15 85 5 95Z"
    assert charts.step_path(np.array([0, 1, 2]), np.array([1, 3]), frame) == "M5 95H15V75H25"
    assert charts.coordinate(12.34) == "12.3" and charts.coordinate(-0.04) == "0"
    assert charts.nice_ticks(23) == [0, 10, 20, 30]
    assert charts.nice_ticks(3.2) == [0, 1, 2, 3, 4]
    assert charts.nice_ticks(0) == [0, 1]


# --- the CSV ----------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def test_targets_csv_has_every_scenario_row_with_iso_dates(engine: Engine, tmp_path: Path) -> None:
    frames = run_frames(regions=("Île-de-France", "North"))
    frames["recruiting_target"]["acceptance_offers"] = 412
    publish(engine, frames)
    path = write_targets_csv(engine, tmp_path / "out" / "targets.csv")

    assert path.read_bytes().startswith(b"\xef\xbb\xbfscenario,")  # BOM: Excel reads UTF-8
    with path.open(encoding="utf-8-sig", newline="") as stream:
        header = next(csv.reader(stream))
    assert tuple(header) == TARGET_COLUMNS
    rows = read_csv(path)
    assert len(rows) == 2 * 4
    assert [row["scenario"] for row in rows] == ["base"] * 4 + ["low_acceptance"] * 4
    first = rows[0]  # sorted by code point, as Python sorts: "North" < "Île-de-France"
    assert first["region"] == "North" and first["role"] == "LPN"
    assert first["recruit_by"] == "2026-01-05" and first["needed_by"] == "2026-04-12"
    assert first["acceptance_rate"] == "0.3127" and first["acceptance_offers"] == "412"
    assert first["attrition_nurse_years"] == "" and first["late"] == "no"
    by_key = {(row["scenario"], row["region"], row["role"]): row for row in rows}
    assert by_key[("low_acceptance", "Île-de-France", "RN")]["hires_needed"] == "15"
    assert by_key[("base", "Île-de-France", "RN")]["late"] == "yes"
    assert path.read_bytes().count(b"\r\n") == 1 + 8
    assert list(path.parent.iterdir()) == [path]


def test_targets_csv_neutralises_formula_injection(engine: Engine, tmp_path: Path) -> None:
    hostile = ('=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tTab", "\rCR")
    frames = run_frames(regions=hostile, roles=("RN",))
    frames["recruiting_target"]["note"] = "=cmd|' /C calc'!A0"
    publish(engine, frames)
    rows = read_csv(write_targets_csv(engine, tmp_path / "t.csv"))
    assert {row["region"] for row in rows} == {f"'{region}" for region in hostile}
    assert {row["note"] for row in rows} == {"'=cmd|' /C calc'!A0"}
    assert all(row["hires_needed"].isdigit() for row in rows)  # numbers stay numbers


def test_targets_csv_of_an_older_run(engine: Engine, tmp_path: Path) -> None:
    older = publish(engine, run_frames(hires=41), as_of=AS_OF - dt.timedelta(days=7))
    publish(engine, run_frames(hires=9))
    rows = read_csv(write_targets_csv(engine, tmp_path / "t.csv", run_id=older))
    assert max(int(row["hires_needed"]) for row in rows) == 41 + 6
    with pytest.raises(ValueError, match="not in the reporting database"):
        write_targets_csv(engine, tmp_path / "t.csv", run_id="nope")


@pytest.mark.postgres
def test_postgresql_gives_the_same_report_and_csv_as_sqlite(tmp_path: Path) -> None:
    """The report reads the reporting database the same way on both backends."""
    from tests.conftest import fresh_database

    outputs = {}
    for backend in ("sqlite", "postgresql"):
        with fresh_database(backend, tmp_path) as database:
            create_schema(database)
            run_id = publish(database, run_frames())
            page = write_report(database, tmp_path / f"{backend}.html").read_text(encoding="utf-8")
            csv_text = write_targets_csv(database, tmp_path / f"{backend}.csv").read_text(
                encoding="utf-8-sig"
            )
        # The run id and the publish time differ between the two runs; nothing else may.
        page = re.sub(
            r"published [0-9-]+ [0-9:]+ UTC", "published ...", page.replace(run_id, "RUN")
        )
        outputs[backend] = (page, csv_text)
    assert outputs["postgresql"][1] == outputs["sqlite"][1]
    assert outputs["postgresql"][0] == outputs["sqlite"][0]
