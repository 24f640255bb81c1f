"""The run's progress without a flow run: the time-left text, when a bar is drawn, and that it
is erased when its stage ends, well or not."""

from __future__ import annotations

import io
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.errors import MissingStyle
from rich.theme import Theme

from flows import run_progress
from flows.run_progress import RunProgress, time_left_s, time_left_text, watching

ERASE_LINE = "\x1b[2K"
"""What rich writes to clear the bar's line (after moving the cursor back up to it)."""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    """A stand-in for the ``time`` module: seconds move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now


@pytest.mark.parametrize(
    ("share", "elapsed", "left"),
    [(0.5, 60.0, 60.0), (12 / 40, 84.0, 196.0), (0.25, 30.0, 90.0)],
)
def test_time_left_is_the_pace_so_far(share: float, elapsed: float, left: float) -> None:
    assert time_left_s(share, elapsed) == pytest.approx(left)


@pytest.mark.parametrize(("share", "elapsed"), [(0.0, 10.0), (1.0, 10.0), (0.5, 0.0)])
def test_no_time_left_before_progress_or_at_the_end(share: float, elapsed: float) -> None:
    assert time_left_s(share, elapsed) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "under a minute left"),
        (59.9, "under a minute left"),
        (60, "about 1 min left"),
        (196, "about 3 min left"),
        (89 * 60, "about 89 min left"),
        (150 * 60, "about 2.5 h left"),
    ],
)
def test_time_left_text(seconds: float, text: str) -> None:
    assert time_left_text(seconds) == text


@pytest.mark.parametrize(
    ("stream", "enabled", "environ", "expected"),
    [
        (_Tty(), True, {}, True),
        (_Tty(), True, {"TERM": "xterm-256color", "CI": "false"}, True),
        (_Tty(), False, {}, False),  # STAFFCAST_PROGRESS_BAR=false
        (io.StringIO(), True, {}, False),  # redirected to a file or pipe
        (_Tty(), True, {"CI": "true"}, False),
        (_Tty(), True, {"CI": "1"}, False),
        (_Tty(), True, {"PYTEST_CURRENT_TEST": "t.py::t (call)"}, False),
        (_Tty(), True, {"TERM": "dumb"}, False),
        (object(), True, {}, False),  # not a file
    ],
)
def test_a_bar_only_where_a_person_watches(
    stream: Any, enabled: bool, environ: dict[str, str], expected: bool
) -> None:
    assert watching(stream, enabled, environ) is expected


def test_a_closed_stream_is_not_watched(tmp_path: Path) -> None:
    stream = (tmp_path / "log").open("w")
    stream.close()  # isatty() raises ValueError
    assert watching(stream, True, {}) is False


def test_no_bar_under_pytest() -> None:
    assert run_progress.bar_console(enabled=True) is None


def _prefect_like_console(out: io.StringIO) -> Console:
    """A terminal console with a theme that lacks rich's bar styles, as Prefect's has."""
    return Console(
        file=out,
        force_terminal=True,
        width=100,
        theme=Theme({"log.info_level": "cyan"}, inherit=False),
    )


@pytest.fixture()
def artifact_updates(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str]]:
    """The progress artifact's updates (progress in %, description), without a Prefect API."""
    updates: list[tuple[float, str]] = []
    monkeypatch.setattr(run_progress, "create_progress_artifact", lambda *a, **k: uuid.uuid4())
    monkeypatch.setattr(
        run_progress,
        "update_progress_artifact",
        lambda _id, progress, description: updates.append((progress, description)),
    )
    monkeypatch.setattr(run_progress, "get_run_logger", lambda: logging.getLogger("test"))
    return updates


def test_forecast_batches_say_how_long_is_left(
    artifact_updates: list[tuple[float, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(run_progress, "time", clock)
    progress = RunProgress(bar=False)
    progress.run("extract", lambda: None)
    with progress.stage("forecast"):
        clock.now += 84
        progress.within("forecast", 12 / 40, "Forecast: 12 of 40 batches")
        assert artifact_updates[-1] == (23.0, "Forecast: 12 of 40 batches, about 3 min left")
        clock.now += 196
        progress.within("forecast", 1.0, "Forecast: 40 of 40 batches")
        assert artifact_updates[-1] == (65.0, "Forecast: 40 of 40 batches")
    assert progress.timings["forecast"]["seconds"] == 280.0
    assert progress.timings["forecast"]["started_at"] == 1_800_001_000.0
    assert set(progress.timings["extract"]) == {"seconds", "peak_rss_mb", "started_at"}
    assert artifact_updates[-1] == (65.0, "Weekly run: forecast done")


def test_no_time_left_for_a_stage_not_running(artifact_updates: list[tuple[float, str]]) -> None:
    progress = RunProgress(bar=False)
    progress.within("forecast", 0.5, "Forecast: 2 of 4 batches")
    assert artifact_updates[-1] == (30.0, "Forecast: 2 of 4 batches")


def test_the_bar_shows_the_stage_and_is_erased_when_it_ends(
    artifact_updates: list[tuple[float, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    console = _prefect_like_console(out)
    monkeypatch.setattr(run_progress, "bar_console", lambda enabled: console)
    progress = RunProgress()
    with progress.stage("forecast"):
        progress.within("forecast", 0.5, "Forecast: 2 of 4 batches")
        console.print("a log line")  # as Prefect's console handler prints one
    drawn = out.getvalue()
    assert "Forecast: 2 of 4 batches" in drawn
    assert "a log line\n" in drawn
    assert drawn.endswith(ERASE_LINE)  # no half-drawn bar before what prints next
    assert progress._bar is None
    with pytest.raises(MissingStyle):  # the bar's styles are gone from Prefect's console again
        console.get_style("bar.back")


def test_a_failed_stage_erases_its_bar_and_stays_current(
    artifact_updates: list[tuple[float, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(run_progress, "bar_console", lambda enabled: _prefect_like_console(out))
    progress = RunProgress()
    with pytest.raises(ValueError, match="boom"), progress.stage("forecast"):
        raise ValueError("boom")
    assert out.getvalue().endswith(ERASE_LINE)
    assert progress.current == "forecast"  # the error says "during stage forecast"
    assert "forecast" not in progress.timings


def test_a_terminal_that_fails_the_bar_does_not_fail_the_run(
    artifact_updates: list[tuple[float, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("terminal gone")

    console = Console(file=Broken(), force_terminal=True)
    monkeypatch.setattr(run_progress, "bar_console", lambda enabled: console)
    progress = RunProgress()
    assert progress.run("validate", lambda: 7) == 7
    assert "validate" in progress.timings
