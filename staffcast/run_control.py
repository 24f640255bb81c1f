"""What a scheduler sees of a run: exit codes, cancellation by signal, and a heartbeat.

A scheduler (cron, systemd, Kubernetes, a Prefect worker) stops a run with SIGTERM (SIGINT from
a terminal). :class:`Cancellation` turns the first one into :class:`RunCancelled` raised in the
main thread, wherever the run is: an open publishing transaction rolls back, the run is
recorded ``cancelled``, every process the run started is stopped, and the command exits with
:data:`EXIT_CANCELLED` (143; 130 for SIGINT). Inside :meth:`Cancellation.protected` (the few
milliseconds of a publish's COMMIT) a signal is held and acted on right after: a run whose
commit had already begun stays published, and nothing is published after the signal is seen.

:class:`Heartbeat` refreshes ``forecast_run.heartbeat_at`` from a background thread, so a run
that died without a word (SIGKILL, a lost machine) is told apart from one in progress; it also
asks the Prefect API whether the flow run was cancelled there (from the UI or ``prefect
flow-run cancel``) and, if so, cancels the run as a signal would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from staffcast.errors import (
    ReportingUnavailable,
    RunInProgress,
    SourceUnavailable,
    StaffcastError,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CANCELLED",
    "EXIT_IN_PROGRESS",
    "EXIT_INTERRUPTED",
    "EXIT_ORCHESTRATION",
    "EXIT_REPORTING",
    "EXIT_SOURCE",
    "Cancellation",
    "Heartbeat",
    "RunCancelled",
    "exit_code",
]

EXIT_BAD_INPUT = 1
"""Bad input or settings: a data contract stopped the run, a mapping or setting is wrong."""
EXIT_SOURCE = 3
"""The operational database (or source folder) could not be read, after retries."""
EXIT_REPORTING = 4
"""The reporting database refused: read-only, permission, disk full, gone, corrupt, locked."""
EXIT_ORCHESTRATION = 5
"""The Prefect API the run records its state in could not be started or reached."""
EXIT_IN_PROGRESS = 6
"""Another run for the same as_of is in progress (STAFFCAST_CONCURRENT_RUN=refuse)."""
EXIT_CANCELLED = 128 + signal.SIGTERM
"""Cancelled by SIGTERM or by a Prefect cancellation (143)."""
EXIT_INTERRUPTED = 128 + signal.SIGINT
"""Cancelled by SIGINT, e.g. Ctrl-C (130)."""


class RunCancelled(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """The run was stopped by a signal or a Prefect cancellation; ``signum`` says which.

    A BaseException, like KeyboardInterrupt: raised wherever the main thread is when the
    signal lands, it must not be caught and reworded by a library's ``except Exception``
    (Prefect's client would turn it into "Failed to reach API").
    """

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = signum


#: What the CLI prints as the one paragraph and maps to an exit status.
EXPECTED: tuple[type[BaseException], ...] = (StaffcastError, RunCancelled)


def exit_code(exc: BaseException) -> int:
    """The documented exit status for an expected failure."""
    from staffcast.prefect_server import OrchestrationUnavailable

    if isinstance(exc, RunCancelled):
        return EXIT_INTERRUPTED if exc.signum == signal.SIGINT else EXIT_CANCELLED
    if isinstance(exc, SourceUnavailable):
        return EXIT_SOURCE
    if isinstance(exc, ReportingUnavailable):
        return EXIT_REPORTING
    if isinstance(exc, OrchestrationUnavailable):
        return EXIT_ORCHESTRATION
    if isinstance(exc, RunInProgress):
        return EXIT_IN_PROGRESS
    return EXIT_BAD_INPUT


class Cancellation:
    """SIGTERM and SIGINT as :class:`RunCancelled` in the main thread (one per process).

    ``install()`` (re)installs the handlers: the CLI calls it before the flow, and the flow
    again first thing, since Prefect's engine puts its own SIGTERM handler in place for the
    flow's duration.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._held = 0
        self._raised = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._held or self._raised:
            return
        self._raised = True
        raise self.error()

    def error(self) -> RunCancelled:
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        return RunCancelled(
            f"The run was cancelled ({name}) before it began its work: nothing was published, "
            "the previous run stays current, and every process it started was stopped. Run it "
            "again when you are ready.",
            signum,
        )

    def check(self) -> None:
        """Raise :class:`RunCancelled` if a signal has been seen (unless signals are held).

        The run calls it between stages and batches: the exception the handler raised may
        have been swallowed where it landed (a finalizer, a library's ``except
        BaseException``), so the run stops at its next checkpoint anyway.
        """
        if self.signum is not None and not self._held:
            self._raised = True
            raise self.error()

    @contextlib.contextmanager
    def protected(self) -> Iterator[None]:
        """Hold signals while the block runs; a signal seen meanwhile is raised right after."""
        self.check()
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held:
            self.check()

    def finish(self) -> None:
        """The work is done (published, or failed and recorded): a signal from now on is
        not raised, so cleanup (stopping the Prefect server) completes and the exit status
        tells what happened to the run."""
        self._held += 1

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Cancel from another thread: the main thread gets the signal as if sent."""
        os.kill(os.getpid(), signum)

    def reset(self) -> None:
        """Forget a signal seen (tests run many flows in one process)."""
        self.signum = None
        self._raised = False
        self._held = 0


#: The process's cancellation state (signals are per process).
CANCELLATION = Cancellation()


class Heartbeat:
    """Calls ``beat`` every ``seconds`` from a daemon thread until stopped.

    ``beat`` returns True when the run should be cancelled (a Prefect cancellation); the
    heartbeat then cancels it through :data:`CANCELLATION`. An exception in ``beat`` (the
    database briefly gone) is remembered and the beating goes on: the run finds out for
    itself when it next writes.
    """

    def __init__(self, beat: Callable[[], bool], seconds: float) -> None:
        self._beat = beat
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="staffcast-heartbeat", daemon=True)
        self.last_error: BaseException | None = None
        self.beats = 0

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                cancel = self._beat()
                self.beats += 1
            except Exception as exc:  # noqa: BLE001 - a missed beat must not stop the run
                self.last_error = exc
                continue
            if cancel and not CANCELLATION.requested:
                CANCELLATION.request(signal.SIGTERM)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_until(deadline: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep up to ``deadline`` (monotonic seconds), a second at a time (signals get through)."""
    while (left := deadline - time.monotonic()) > 0:
        sleep(min(1.0, left))
