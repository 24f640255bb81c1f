"""Save a full-page PNG of a staffcast HTML report with headless Chromium (for the README).

Usage, from the repository root after ``staffcast demo``::

    .venv/bin/python docs/screenshot.py .staffcast/report.html docs/report.png

Needs the Debian packages ``chromium`` and ``chromium-driver`` and Selenium (dev dependency);
the browser set-up is the one tests/test_browser.py uses.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def screenshot(report: Path, output: Path, width: int = 1280, scale: float = 1.0) -> int:
    """Render ``report`` in a ``width`` CSS-pixel window and write the whole page to ``output``.

    ``scale`` is device pixels per CSS pixel (2 for a sharper image). Returns the PNG's size in
    bytes. Console errors of the page are printed to stderr.
    """
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing: apt-get install chromium chromium-driver")
    if not report.is_file():
        raise SystemExit(f"{report} is not a file: write the report first (staffcast demo)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(report.resolve().as_uri())
        for entry in driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                print(f"console error: {entry['message']}", file=sys.stderr)
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
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
                    "scale": scale,
                },
            },
        )
    finally:
        driver.quit()
    png = base64.b64decode(shot["data"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(png)
    return len(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the HTML report to render")
    parser.add_argument("output", type=Path, help="where to write the PNG")
    parser.add_argument("--width", type=int, default=1280, help="window width, CSS pixels")
    parser.add_argument("--scale", type=float, default=1.0, help="device pixels per CSS pixel")
    args = parser.parse_args()
    size = screenshot(args.report, args.output, args.width, args.scale)
    print(f"wrote {args.output} ({size:,} bytes)")


if __name__ == "__main__":
    main()
