"""The report on demand hidden by bad rows: the banner at the top, the Data quality tables.

A region and role that loses more than 1% of its recent demand (the ``window_days`` before as_of)
to quarantined rows gets one line in a warning banner before the hiring targets, worst first;
excluded rows (out of scope by the agency's choice) are shown under Data quality, never warned
about. Runs published before the impact was measured still get a report, without a banner.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from reports.html_report import LOSS_WARNING_SHARE, region_losses, write_report
from reports.publish import RunCounts, publish_run, start_run
from reports.schema import create_schema, reporting_engine, upgrade_schema
from tests.conftest import fresh_database
from tests.test_html_report import AS_OF, EVIL_REGION, parse, run_frames, section

COUNTS = RunCounts(rows_extracted=110, rows_used=100, rows_quarantined=3, rows_excluded=7)
IMPACT_KEYS = ("source", "region", "role", "facility_id")


def impact_row(
    region: str,
    role: str,
    facility_id: str,
    *,
    lost: float,
    used: int,
    imputed: int = 0,
    rows: int | None = None,
    source: str = "quarantined",
    window_days: int = 28,
) -> dict[str, Any]:
    """One data_quality_impact row; hours are 12 per shift lost."""
    return {
        "source": source,
        "region": region,
        "role": role,
        "facility_id": facility_id,
        "rows": int(round(lost)) if rows is None else rows,
        "recent_shifts_lost": lost,
        "recent_hours_lost": 12.0 * lost,
        "recent_shifts_used": used,
        "imputed_shifts": imputed,
        "window_days": window_days,
    }


def north_shore_rn() -> list[dict[str, Any]]:
    """North Shore RN loses 143 of 2,750 recent shifts (5.2%); 140 were put back."""
    return [
        impact_row("North Shore", "RN", "F1", lost=101.0, used=1500, imputed=101, rows=160),
        impact_row("North Shore", "RN", "F7", lost=39.0, used=1107, imputed=39, rows=41),
        impact_row("North Shore", "RN", "F9", lost=3.0, used=0, imputed=0, rows=3),
    ]


def publish_with_impact(
    engine: Engine,
    impact: list[dict[str, Any]] | None,
    counts: RunCounts = COUNTS,
    regions: tuple[str, ...] = ("North", EVIL_REGION),
) -> str:
    frames = run_frames(regions=regions)
    if impact is not None:
        frames["data_quality_impact"] = pd.DataFrame(impact)
    run_id = start_run(engine, AS_OF, {}, None, "test", 28)
    publish_run(engine, run_id, frames, counts)
    return run_id


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = reporting_engine(f"sqlite:///{tmp_path / 'reporting.db'}")
    create_schema(engine)
    return engine


def report(engine: Engine, tmp_path: Path) -> str:
    return write_report(engine, tmp_path / "report.html").read_text(encoding="utf-8")


def banner(page: str) -> str:
    """The warning banner's HTML ('' when there is none)."""
    found = re.search(r'<div class="alert" role="alert".*?</div>', page, flags=re.S)
    return found.group(0) if found else ""


def plain(html: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    texts: list[str] = []
    parser = parse("")
    parser.handle_data = texts.append  # type: ignore[method-assign]
    parser.feed(html)
    return " ".join("".join(texts).split())


def test_banner_says_what_the_quarantine_hides_before_the_hiring_targets(
    engine: Engine, tmp_path: Path
) -> None:
    publish_with_impact(engine, north_shore_rn())
    page = report(engine, tmp_path)

    alert = banner(page)
    assert alert, "no banner"
    assert page.index(alert) < page.index("<h2") < page.index('<table id="hiring-targets"')
    assert page.index("<table") == page.index('<table id="hiring-targets"')  # no table in it
    assert "<h2" not in alert and "<h3" not in alert
    # What tests/test_browser.py checks: the first H2 is the hiring targets, and their table
    # sits between it and the next H2.
    headings = [match.start() for match in re.finditer("<h2", page)]
    assert page[headings[0] :].startswith("<h2>Hiring targets</h2>")
    assert headings[0] < page.index('<table id="hiring-targets"') < headings[1]
    text = plain(alert)
    assert text.startswith("Data problems hide demand.")
    assert (
        "North Shore RN: 5.2% of the last 28 days' requests (143 shifts) are in quarantine. "
        "About 140 of them were put back into the forecast history, where their date and "
        "facility were known. The other 3 are not in the forecast, so pools and hires for "
        "North Shore RN may be understated by about 0.1%."
    ) in text
    assert text.endswith("Fix the rows listed under Data quality.")
    assert '<a href="#quality">Data quality</a>' in alert


@pytest.mark.parametrize(
    ("lost", "used", "warned"),
    [
        (10.0, 990, False),  # exactly 1%: no banner
        (9.9, 990, False),
        (10.2, 990, True),  # 1.02%
        (0.0, 0, False),  # nothing recent at all
    ],
    ids=["exactly_1pct", "below", "above", "empty_window"],
)
def test_banner_only_above_one_percent(
    engine: Engine, tmp_path: Path, lost: float, used: int, warned: bool
) -> None:
    publish_with_impact(engine, [impact_row("North", "RN", "F1", lost=lost, used=used)])
    page = report(engine, tmp_path)

    assert bool(banner(page)) is warned
    assert ('role="alert"' in page) is warned
    quality = section(page, "quality")
    share = f"{100 * lost / (lost + used):.1f}%" if lost + used else "0.0%"
    assert f'<td class="num">{share}</td>' in quality


def test_one_line_per_region_and_role_worst_first(engine: Engine, tmp_path: Path) -> None:
    impact = [
        *north_shore_rn(),  # 5.2%
        impact_row("South", "LPN", "F2", lost=30.0, used=270, imputed=0),  # 10%: worst
        impact_row("South", "RN", "F2", lost=2.0, used=998, imputed=2),  # 0.2%: no line
        # A role the plan does not cover has no pool to understate: tables only, no line.
        impact_row("(unknown)", "CNA", "(unknown)", lost=5.0, used=0, imputed=0),  # 100%
        impact_row("West", "CNA", "F3", lost=50.0, used=0, source="excluded"),  # never warned
    ]
    publish_with_impact(engine, impact)
    alert = banner(report(engine, tmp_path))

    lines = [plain(item) for item in re.findall(r"<li>.*?</li>", alert, flags=re.S)]
    assert [line.split(":")[0] for line in lines] == ["South LPN", "North Shore RN"]
    assert (
        "None of them could be put back into the forecast history: their facility, role or date "
        "is not known. So pools and hires for South LPN may be understated by about 10.0%."
    ) in lines[0]
    assert "West" not in alert and "CNA" not in alert


def test_all_put_back_still_warns_but_says_so(engine: Engine, tmp_path: Path) -> None:
    publish_with_impact(
        engine, [impact_row("North", "RN", "F1", lost=40.0, used=960, imputed=55, rows=60)]
    )
    text = plain(banner(report(engine, tmp_path)))
    assert "North RN: 4.0% of the last 28 days' requests (40 shifts) are in quarantine." in text
    assert "All of them were put back into the forecast history" in text
    assert "understated" not in text


def test_hostile_region_name_is_escaped_in_the_banner_and_tables(
    engine: Engine, tmp_path: Path
) -> None:
    evil_facility = "<img src=x onerror=alert(3)>"
    publish_with_impact(
        engine,
        [
            impact_row(EVIL_REGION, "RN", evil_facility, lost=50.0, used=450, imputed=20),
            impact_row(EVIL_REGION, '"><b>', evil_facility, lost=5.0, used=0, source="excluded"),
        ],
    )
    page = report(engine, tmp_path)
    alert = banner(page)

    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; RN" in alert
    assert plain(alert).count(f"{EVIL_REGION} RN") == 2  # the name, and "hires for <name>"
    tags = {tag for tag, _ in parse(page).tags}
    assert not tags & {"script", "img", "b"}
    handlers = [name for _, attrs in parse(page).tags for name in attrs if name.startswith("on")]
    assert handlers == []
    quality = section(page, "quality")
    assert "&lt;img src=x onerror=alert(3)&gt;" in quality
    assert "&quot;&gt;&lt;b&gt;" in quality


def test_data_quality_shows_the_impact_per_region_and_role(engine: Engine, tmp_path: Path) -> None:
    impact = [
        *north_shore_rn(),
        impact_row("North Shore", "RN", "F8", lost=0.0, used=143, rows=0),  # used only
        impact_row("North Shore", "CNA", "F1", lost=7.0, used=0, rows=7, source="excluded"),
    ]
    publish_with_impact(engine, impact)
    quality = section(report(engine, tmp_path), "quality")

    accounting = quality[: quality.index("</table>")]
    assert "Excluded (rows)" in accounting
    assert re.findall(r">\d+<", accounting) == [">110<", ">100<", ">3<", ">7<"]
    lost = quality[quality.index("Lost to quarantined rows") :]
    lost_table = lost[lost.index('<table id="impact"') : lost.index("</table>")]
    row = re.findall(r"<td[^>]*>(.*?)</td>", lost_table)
    # region, role, facilities with losses, rows, shifts lost, hours lost, used, share, put back
    assert row == ["North Shore", "RN", "3", "204", "143.0", "1,716.0", "2,750", "4.9%", "140"]
    assert '<tr class="loss">' in lost_table
    assert "Per facility (3)" in lost  # F8 lost nothing: not listed
    excluded = quality[quality.index("In excluded rows") :]
    excluded_table = excluded[excluded.index('<table id="excluded"') : excluded.index("</table>")]
    assert re.findall(r"<td[^>]*>(.*?)</td>", excluded_table) == [
        "North Shore",
        "CNA",
        "1",
        "7",
        "7.0",
        "84.0",
        "0",
        "100.0%",
        "0",
    ]
    assert "never warned about" in excluded


def test_region_losses_follow_the_contract_formula() -> None:
    impact = pd.DataFrame(
        [
            *north_shore_rn(),
            impact_row("North Shore", "RN", "F8", lost=0.0, used=143, rows=0),
            impact_row("North Shore", "RN", "F1", lost=9.0, used=1500, source="excluded"),
        ]
    )
    losses = region_losses(impact)
    assert len(losses) == 1
    record = losses.iloc[0]
    assert record["lost"] == 143.0 and record["used"] == 2750
    assert record["share"] == pytest.approx(143 / 2893)
    assert record["put_back"] == 140.0 and record["missing"] == 3.0
    assert record["missing_share"] == pytest.approx(3 / 2893)
    assert (record["facilities"], record["rows"], record["imputed"]) == (3, 204, 140)
    assert LOSS_WARNING_SHARE == 0.01


def test_a_run_without_impact_rows_has_no_banner(engine: Engine, tmp_path: Path) -> None:
    publish_with_impact(engine, None, RunCounts(103, 100, 3))
    page = report(engine, tmp_path)
    assert not banner(page) and 'role="alert"' not in page
    quality = section(page, "quality")
    assert "No demand impact was recorded for this run" in quality

    publish_with_impact(engine, [], RunCounts(100, 100, 0))  # a clean extract: nothing lost
    quality = section(report(engine, tmp_path), "quality")
    assert "No rows were quarantined or excluded, so no demand was lost." in quality


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_run_published_before_the_impact_still_gets_a_report(
    backend: str, tmp_path: Path
) -> None:
    with fresh_database(backend, tmp_path) as database:
        upgrade_schema(database, "0002")
        frames = run_frames()
        run_id = start_run(database, AS_OF - dt.timedelta(days=7), {}, None, "test", 28)
        publish_run(database, run_id, frames, RunCounts(103, 100, 3))
        create_schema(database)  # what the next run does first: migrate to 0003

        page = write_report(database, tmp_path / "old.html").read_text(encoding="utf-8")
    assert run_id in page
    assert not banner(page)
    quality = section(page, "quality")
    assert "No demand impact was recorded for this run" in quality
    accounting = quality[: quality.index("</table>")]
    assert re.findall(r">\d+<", accounting) == [">103<", ">100<", ">3<", ">0<"]


@pytest.mark.postgres
def test_postgresql_gives_the_same_banner_and_tables_as_sqlite(tmp_path: Path) -> None:
    impact = [
        *north_shore_rn(),
        impact_row(EVIL_REGION, "LPN", "F2", lost=12.345, used=100, imputed=3),
        impact_row("North Shore", "CNA", "F1", lost=7.0, used=0, source="excluded"),
    ]
    pages = {}
    for backend in ("sqlite", "postgresql"):
        with fresh_database(backend, tmp_path) as database:
            create_schema(database)
            run_id = publish_with_impact(database, impact)
            page = write_report(database, tmp_path / f"{backend}.html").read_text(encoding="utf-8")
        pages[backend] = banner(page) + section(page.replace(run_id, "RUN"), "quality")
    assert pages["postgresql"] == pages["sqlite"]
    assert "North Shore RN" in pages["sqlite"]
