"""The HTML report in a real browser: headless Chromium through Selenium.

Checks what only a browser can: the hiring targets are the first section and hold the expected
rows, the page logs no console errors, hostile region names stay inert text, and the page renders
to a non-trivial screenshot (kept in the test's tmp folder, and in STAFFCAST_SCREENSHOT_DIR when
that is set).

Needs the Debian packages ``chromium`` and ``chromium-driver``. Without them the tests skip,
except when ``CI`` is set: there they fail, so a CI run cannot pass without the browser check.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from reports.html_report import write_report
from reports.publish import publish_run, start_run
from reports.schema import create_schema, reporting_engine
from tests.test_publish import COUNTS, result_frames

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)
"""Browser window in CSS pixels: wide enough for the report's tables."""

AS_OF = dt.date(2026, 1, 5)
HOSTILE_REGION = "<img src=x onerror=\"document.title='pwned'\">"
"""A region name that would run script if the report inserted it as markup."""

EXPECTED_HIRING_ROWS = {
    ("North", "RN", 9),
    (HOSTILE_REGION, "LPN", 3),
    ("South & East", "RN", 0),
}
"""(region, role, hires needed in nurses) of every base-scenario recruiting target."""


def severe_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The browser-console entries at level SEVERE: script errors, failed resource loads."""
    return [entry for entry in entries if entry.get("level") == "SEVERE"]


def hostile_frames() -> dict[str, pd.DataFrame]:
    """The publish tests' frames with three regions, one of them named like an HTML payload."""
    frames = result_frames(AS_OF)
    template = frames["recruiting_target"]
    base = template[template["scenario"] == "base"].iloc[0]
    other = template[template["scenario"] != "base"].iloc[[0]]  # must not reach the report
    rows = []
    for region, role, hires in sorted(EXPECTED_HIRING_ROWS, key=str):
        row = base.copy()
        row["region"], row["role"], row["hires_needed"] = region, role, hires
        row["surplus"] = 2 if hires == 0 else 0
        rows.append(row)
    frames["recruiting_target"] = pd.concat([pd.DataFrame(rows), other], ignore_index=True)

    for name in ("on_call_pool", "hiring_plan", "holiday_coverage"):
        north = frames[name]
        frames[name] = pd.concat([north, north.assign(region=HOSTILE_REGION)], ignore_index=True)
    regional = frames["regional_forecast"]
    regional["region"] = regional["role"].map({"RN": "North", "LPN": HOSTILE_REGION})
    return frames


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of one published run whose data includes a hostile region name."""
    folder = tmp_path_factory.mktemp("browser-report")
    engine = reporting_engine(f"sqlite:///{folder / 'r.db'}")
    try:
        create_schema(engine)
        run_id = start_run(engine, AS_OF, {"as_of": AS_OF}, None, "test", 182)
        publish_run(engine, run_id, hostile_frames(), COUNTS)
        return write_report(engine, folder / "report.html")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module, with its console log kept at every level."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = (
            f"headless Chromium not installed ({', '.join(missing)} missing): "
            "apt-get install chromium chromium-driver"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the browser test may not skip: {message}")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: WebDriver, path: Path) -> list[dict[str, Any]]:
    """Load ``path`` and return the console entries it logged (earlier entries are dropped)."""
    driver.get_log("browser")
    driver.get(path.resolve().as_uri())
    return driver.get_log("browser")


def cells_by_header(driver: WebDriver, table_css: str) -> list[dict[str, str]]:
    """Each body row of a table as {header text: cell text}."""
    table = driver.find_element(By.CSS_SELECTOR, table_css)
    headers = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    return [
        dict(
            zip(
                headers,
                (td.text.strip() for td in tr.find_elements(By.TAG_NAME, "td")),
                strict=True,
            )
        )
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]


def column(row: dict[str, str], prefix: str) -> str:
    """The cell whose header starts with ``prefix``: headers carry units ("Hires (nurses)")."""
    matches = [value for header, value in row.items() if header.lower().startswith(prefix.lower())]
    assert len(matches) == 1, f"expected one column starting {prefix!r}, headers: {list(row)}"
    return matches[0]


def full_page_png(driver: WebDriver) -> bytes:
    """A PNG of the whole page (CDP, beyond the viewport); the window alone if CDP fails."""
    try:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        return base64.b64decode(shot["data"])
    except (WebDriverException, KeyError):
        return driver.get_screenshot_as_png()


def test_hiring_targets_come_first_with_the_expected_rows(
    browser: WebDriver, report_path: Path
) -> None:
    open_page(browser, report_path)
    rows = cells_by_header(browser, "table#hiring-targets")
    found = {
        (column(row, "Region"), column(row, "Role"), int(column(row, "Hires").replace(",", "")))
        for row in rows
    }
    assert found == EXPECTED_HIRING_ROWS
    assert len(rows) == len(EXPECTED_HIRING_ROWS)

    # The first H2 is the hiring targets, and the table sits between it and the next H2.
    first_h2, in_first_section = browser.execute_script(
        """
        const headings = document.querySelectorAll('h2');
        const table = document.querySelector('table#hiring-targets');
        const after = (a, b) =>
            !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
        const inside = after(headings[0], table)
            && (headings.length < 2 || after(table, headings[1]));
        return [headings[0].textContent.trim(), inside];
        """
    )
    assert first_h2.lower().startswith("hiring targets")
    assert in_first_section


def test_report_logs_no_console_errors(browser: WebDriver, report_path: Path) -> None:
    entries = open_page(browser, report_path)
    assert severe_entries(entries) == [], entries


def test_console_check_catches_a_script_error(browser: WebDriver, tmp_path: Path) -> None:
    """The check above would fail on a broken page: a call to an undefined function is SEVERE."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><title>broken</title><script>nonexistent()</script>")
    entries = open_page(browser, broken)
    assert any("nonexistent" in entry["message"] for entry in severe_entries(entries)), entries


def test_hostile_region_name_stays_text(browser: WebDriver, report_path: Path) -> None:
    open_page(browser, report_path)
    assert browser.title != "pwned"
    assert browser.title.startswith("staffcast")
    assert browser.find_elements(By.TAG_NAME, "img") == []
    regions = [column(row, "Region") for row in cells_by_header(browser, "table#hiring-targets")]
    assert HOSTILE_REGION in regions


def test_report_renders_to_a_screenshot(browser: WebDriver, report_path: Path) -> None:
    open_page(browser, report_path)
    png = full_page_png(browser)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000, f"screenshot only {len(png)} bytes: blank page?"
    (report_path.parent / "report.png").write_bytes(png)
    if folder := os.environ.get("STAFFCAST_SCREENSHOT_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "browser-test-report.png").write_bytes(png)
