"""How far a weekly run has got: each stage's time and memory, the Prefect progress artifact, and
a progress bar on the terminal when a person is watching.

The artifact (key ``weekly-forecast-progress``) moves as stages, and forecast batches, finish.
While a stage reports how much of it is done (:meth:`RunProgress.within`), the description
says about how long is left at the pace so far: "Forecast: 12 of 40 batches, about 3 min left".

The bar shows the same text while a stage runs, only where a person watches (:func:`watching`:
stderr is a terminal, not CI, not pytest, and the ``progress_bar`` setting is on). It is drawn
on the console Prefect logs to, so log lines print above it instead of through it, and it is
erased when the stage ends, well or not: the paragraph the CLI prints on a failure is never
preceded by a half-drawn bar.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from rich.console import Console
from rich.default_styles import DEFAULT_STYLES
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.theme import Theme

from staffcast.run_control import CANCELLATION

T = TypeVar("T")

PROGRESS_KEY = "weekly-forecast-progress"

STAGE_WEIGHTS = {
    "extract": 0.05,
    "validate": 0.05,
    "demand": 0.05,
    "forecast": 0.6,
    "regional": 0.1,
    "plan": 0.08,
    "track_record": 0.02,
    "publish": 0.05,
}
"""Share (0-1) of a run's progress artifact each stage completes (the forecast dominates)."""

_BAR_STYLES = Theme(
    {k: v for k, v in DEFAULT_STYLES.items() if k.startswith(("bar.", "progress."))},
    inherit=False,
)
"""rich's own bar styles: Prefect's log console has a theme without them."""

_log = logging.getLogger(__name__)


def peak_rss_mb(reset: bool = False) -> float | None:
    """Peak resident memory of this process (MB) since the last reset; None off Linux."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def time_left_s(share: float, elapsed_s: float) -> float | None:
    """Seconds a stage needs to finish at its pace so far, with ``share`` (0-1) of it done in
    ``elapsed_s`` seconds; None before anything is done and once everything is."""
    if not 0 < share < 1 or elapsed_s <= 0:
        return None
    return elapsed_s * (1 - share) / share


def time_left_text(seconds: float) -> str:
    """The time left as a person says it: 'under a minute left', 'about 3 min left' (whole
    minutes up to 90), 'about 2.5 h left'."""
    if seconds < 60:
        return "under a minute left"
    minutes = seconds / 60
    if minutes < 90:
        return f"about {round(minutes)} min left"
    return f"about {minutes / 60:.1f} h left"


def watching(stream: Any, enabled: bool = True, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a person watches ``stream``, so that a progress bar belongs on it.

    Yes when the bar is ``enabled`` (the progress_bar setting), ``stream`` is a terminal, the
    terminal can redraw a line (TERM is not 'dumb'), and the run is neither under CI (``CI``
    set, as CI services do) nor under pytest (``PYTEST_CURRENT_TEST``). A scheduler, a
    deployment's worker and a redirected ``staffcast run > log`` all get no bar.
    """
    env = os.environ if environ is None else environ
    if not enabled or env.get("TERM") == "dumb" or "PYTEST_CURRENT_TEST" in env:
        return False
    if env.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # not a file, or closed
        return False


def _log_console() -> Console | None:
    """The rich console of Prefect's console log handler (on the root logger), if any."""
    for handler in logging.getLogger().handlers:
        console = getattr(handler, "console", None)
        if isinstance(console, Console):
            return console
    return None


def bar_console(enabled: bool = True) -> Console | None:
    """The console to draw progress bars on, or None when nobody is watching: Prefect's log
    console (a second console on the same terminal would draw over its log lines), else one
    on stderr."""
    console = _log_console() or Console(stderr=True)
    return console if watching(console.file, enabled) else None


class _StageBar:
    """One stage's bar (description, bar, percent, elapsed time), erased when it stops."""

    def __init__(self, console: Console, description: str) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),  # blank until the stage says how much is done
            TimeElapsedColumn(),
            console=console,
            transient=True,
            refresh_per_second=2,
            # Stray writes to sys.stderr (and to stdout on the same terminal) print above it.
            redirect_stdout=watching(sys.stdout),
            redirect_stderr=True,
        )
        self.task = self.progress.add_task(description, total=None)
        console.push_theme(_BAR_STYLES)
        try:
            self.progress.start()
        except BaseException:
            with suppress(Exception):  # a half-started bar must not keep hold of the console
                self.progress.stop()
            console.pop_theme()
            raise

    def update(self, share: float, description: str) -> None:
        self.progress.update(self.task, total=1.0, completed=share, description=description)

    def stop(self) -> None:
        try:
            self.progress.stop()
        finally:
            self.console.pop_theme()


class RunProgress:
    """A run's stages: the wall seconds, peak memory and start of each (``timings``), the
    progress artifact that moves as stages and forecast batches finish, and a progress bar
    while each stage runs when a person is watching (``bar``, see :func:`watching`)."""

    def __init__(self, bar: bool = True) -> None:
        self.timings: dict[str, dict[str, float | None]] = {}
        """Per finished stage: ``seconds`` (wall), ``peak_rss_mb`` (this process, MB; None off
        Linux) and ``started_at`` (Unix time, s: where the stage sits in a run's timeline)."""
        self.done = 0.0
        self.current = ""
        self._stage_started = 0.0  # time.perf_counter() at the start of the current stage
        self._console = bar_console(bar)
        self._bar: _StageBar | None = None
        # Called from sync code, Prefect's sync-compatible function returns the id itself.
        self.artifact_id = cast(
            UUID,
            create_progress_artifact(0.0, key=PROGRESS_KEY, description="Weekly run: starting"),
        )

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time stage ``name`` (``with progress.stage("plan"): ...``): its wall seconds and the
        process's peak memory go to ``timings`` when it ends well; a failed or cancelled stage
        stays ``current``. Cancellation is checked as it starts and ends."""
        peak_rss_mb(reset=True)
        started_at = time.time()
        self._stage_started = time.perf_counter()
        self.current = name
        CANCELLATION.check()
        self._show_bar(f"Weekly run: {name}")
        try:
            yield
        finally:
            self._hide_bar()
        CANCELLATION.check()
        self.current = ""
        peak = peak_rss_mb()
        measured: dict[str, float | None] = {
            "seconds": round(time.perf_counter() - self._stage_started, 3),
            "peak_rss_mb": round(peak, 1) if peak is not None else None,
        }
        get_run_logger().info("Stage %s: %s", name, measured)
        self.timings[name] = {**measured, "started_at": round(started_at, 3)}
        self.done += STAGE_WEIGHTS.get(name, 0.0)
        self.progress(self.done, f"Weekly run: {name} done")

    def run(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run one stage, ``fn(*args)``, timed as :meth:`stage` does."""
        with self.stage(name):
            return fn(*args)

    def within(self, name: str, share: float, description: str) -> None:
        """Part ``share`` (0-1) of stage ``name`` is done. ``description`` says what (e.g.
        "Forecast: 12 of 40 batches"); the time left at the pace so far is added to it."""
        left = (
            time_left_s(share, time.perf_counter() - self._stage_started)
            if name == self.current
            else None
        )
        text = description if left is None else f"{description}, {time_left_text(left)}"
        if self._bar is not None:
            try:
                self._bar.update(share, text)
            except Exception:  # noqa: BLE001 - a terminal that fails the bar must not fail the run
                self._drop_bar()
        self.progress(self.done + STAGE_WEIGHTS.get(name, 0.0) * share, text)

    def progress(self, progress: float, description: str) -> None:
        """The artifact at ``progress`` (0-1 of the whole run) with ``description``."""
        update_progress_artifact(self.artifact_id, round(100 * min(progress, 1.0), 1), description)

    def _show_bar(self, description: str) -> None:
        if self._console is None:
            return
        try:
            self._bar = _StageBar(self._console, description)
        except Exception:  # noqa: BLE001 - a terminal that fails the bar must not fail the run
            self._drop_bar()

    def _hide_bar(self) -> None:
        bar, self._bar = self._bar, None
        if bar is None:
            return
        try:
            bar.stop()
        except Exception:  # noqa: BLE001 - a terminal that fails the bar must not fail the run
            self._drop_bar()

    def _drop_bar(self) -> None:
        """No more bars in this run (the terminal refused one); the artifact goes on."""
        _log.debug("Progress bar turned off", exc_info=True)
        self._console = None
        self._bar = None
