"""Read the source again while its database is busy or does not answer, for a set time.

A transient :class:`~staffcast.errors.SourceUnavailable` (a SQLite file another program holds a
write lock on; a PostgreSQL server that refuses or closes connections, starts up or shuts down,
or reports a serialization failure or deadlock: :func:`staffcast.source.transient_reason`) is
retried with exponential backoff: the first wait is ``settings.source_retry_delay_seconds``,
doubled after each try up to :data:`MAX_DELAY_SECONDS`, until ``settings.source_retry_seconds``
have passed since the first failure (no wait ends past that). Any other error fails at once.
When the time is spent, the last error's paragraph gets one more sentence: how many retries,
over how long, and why.

The whole :func:`staffcast.source_files.open_source` call is retried: connecting, checking the
shape and reading the small tables (read whole inside it). The two big tables (shift_requests,
shift_offers) are streamed later, while validation reads them: their query is retried the same
way until its first chunk arrives. A stream that breaks after handing on chunks cannot be
restarted here (the chunks are already counted); it fails with its one paragraph.

Pure apart from ``sleep`` and ``clock``, which tests replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import date
from typing import TypeVar

import pandas as pd

from staffcast.errors import SourceUnavailable
from staffcast.mapping import SourceMapping
from staffcast.settings import Settings
from staffcast.source import SourceExtract, StreamedTable, transient_reason
from staffcast.source_files import open_source

__all__ = ["MAX_DELAY_SECONDS", "Notify", "read_source", "retry_reason"]

MAX_DELAY_SECONDS = 15.0
"""The longest wait between two tries (seconds)."""

Notify = Callable[[int, float, SourceUnavailable], None]
"""Told before each wait: the number of the try that failed (1 for the first), the wait in
seconds, and its error."""

_T = TypeVar("_T")


def read_source(
    source_url: str,
    as_of: date,
    settings: Settings,
    mapping: SourceMapping | None = None,
    notify: Notify | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SourceExtract:
    """The source's extract as of ``as_of`` (:func:`staffcast.source_files.open_source`), read
    again while the database is busy or does not answer, for up to
    ``settings.source_retry_seconds`` (0: not retried).

    ``notify(attempt, delay, error)`` is called before each wait (the CLI prints a line, the
    flow logs a warning). Raises :class:`SourceUnavailable` (still ``transient``) when the time
    is spent, any other error of ``open_source`` at once. ``sleep`` and ``clock`` (seconds,
    monotonic) are for tests.
    """
    retrying = _Retrying(
        settings.source_retry_seconds, settings.source_retry_delay_seconds, notify, sleep, clock
    )
    extract = retrying.call(
        lambda: open_source(source_url, as_of, settings.agency_timezone, mapping)
    )
    if retrying.budget_s <= 0:
        return extract
    tables = {
        name: _RetriedStream.of(table, retrying) if isinstance(table, StreamedTable) else table
        for name, table in extract.tables.items()
    }
    return replace(extract, tables=tables)


def retry_reason(error: SourceUnavailable) -> str:
    """Why ``error`` is worth a retry, in a few words ("another program holds a write lock on
    the SQLite file"), from the driver's error it was raised from."""
    return transient_reason(error.__cause__) or "the source did not answer"


@dataclass(frozen=True)
class _Retrying:
    """Tries a read until it succeeds, fails for good, or ``budget_s`` seconds have passed since
    its first transient failure; each call has its own budget."""

    budget_s: float
    first_delay_s: float
    notify: Notify | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]

    def call(self, read: Callable[[], _T]) -> _T:
        delay = min(self.first_delay_s, MAX_DELAY_SECONDS)
        first_failure: float | None = None
        retries = 0
        while True:
            try:
                return read()
            except SourceUnavailable as error:
                if not error.transient or self.budget_s <= 0:
                    raise
                now = self.clock()
                if first_failure is None:
                    first_failure = now
                left = first_failure + self.budget_s - now
                if left <= 0:
                    raise self._gave_up(error, retries, now - first_failure) from error
                wait = min(delay, left)
                retries += 1
                if self.notify is not None:
                    self.notify(retries, wait, error)
                self.sleep(wait)
                delay = min(2 * delay, MAX_DELAY_SECONDS)

    def _gave_up(
        self, error: SourceUnavailable, retries: int, elapsed_s: float
    ) -> SourceUnavailable:
        times = f"{retries} time" + ("" if retries == 1 else "s")
        return SourceUnavailable(
            f"{error} Retried {times} over {elapsed_s:.1f} s (STAFFCAST_SOURCE_RETRY_SECONDS="
            f"{self.budget_s:g}) because {retry_reason(error)}; set "
            "STAFFCAST_SOURCE_RETRY_SECONDS higher to wait longer.",
            transient=True,
        )


@dataclass(frozen=True)
class _RetriedStream(StreamedTable):
    """A streamed table whose query is retried until its first chunk arrives."""

    retrying: _Retrying | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, table: StreamedTable, retrying: _Retrying) -> _RetriedStream:
        values = {f.name: getattr(table, f.name) for f in fields(StreamedTable)}
        return cls(**values, retrying=retrying)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        if self.retrying is None:
            yield from super().__iter__()
            return
        first, rest = self.retrying.call(self._started)
        if first is not None:
            yield first
        yield from rest

    def _started(self) -> tuple[pd.DataFrame | None, Iterator[pd.DataFrame]]:
        chunks = super().__iter__()
        return next(chunks, None), chunks
