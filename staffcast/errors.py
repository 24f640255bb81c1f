"""Errors a person can act on.

A :class:`StaffcastError` carries one paragraph for the person running staffcast: what went wrong,
where (table, rule, an example) and what to do. The CLI prints it without a traceback; anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class StaffcastError(Exception):
    """An expected failure with a one-paragraph message for the user."""


class SourceUnavailable(StaffcastError):
    """The operational database or source folder cannot be reached or read.

    ``transient`` is True when trying again later may help (a server that did not answer).
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ValidationFailed(StaffcastError):
    """A batch-level data contract failed; nothing was published.

    ``outcomes`` holds the rule outcomes evaluated before the stop (``RuleOutcome`` objects of
    data_contracts.validate), ``counts`` the rows per table seen so far, and ``impact`` the
    demand lost to bad rows when it was measured (a frame of data_contracts.impact), so a
    summary can still be shown and stored.
    """

    def __init__(
        self,
        message: str,
        outcomes: list[Any] | None = None,
        counts: dict[str, dict[str, int]] | None = None,
        impact: Any = None,
    ) -> None:
        super().__init__(message)
        self.outcomes = outcomes or []
        self.counts = counts or {}
        self.impact = impact


class ReportingUnavailable(StaffcastError):
    """The reporting database cannot be reached or written."""


class RunInProgress(StaffcastError):
    """Another run for the same as_of is in progress (its heartbeat is fresh)."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id
