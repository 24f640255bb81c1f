"""The validation summary: rows per table and the rules each table broke, with an example.

One summary, three forms: a frame for the reporting database (``validation_result``), plain text
that a recruiter can forward to the data owner (``staffcast validate``), and markdown for the
flow run's Prefect artifact. They take the rule outcomes and row counts of a
:class:`data_contracts.validate.ValidationResult`, or those a
:class:`staffcast.errors.ValidationFailed` carries when a batch rule stopped the run.

A stop found before any rule ran (a missing file or column) has no outcome of its own: the
summary adds one row for it, with the table and rule its message names (every stop message
names them, SPEC §3) and the message as description.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

__all__ = [
    "SUMMARY_COLUMNS",
    "format_summary",
    "impact_markdown",
    "impact_text",
    "markdown_summary",
    "stop_outcome",
    "summary_frame",
]

SUMMARY_COLUMNS = ["source_table", "rule", "level", "description", "failed_rows", "example"]
"""Columns of :func:`summary_frame`, those of the reporting table ``validation_result``."""

_TABLE_IN_MESSAGE = re.compile(r"[Ss]ource table '([^']+)'")
_RULE_IN_MESSAGE = re.compile(r"\(rule: ([A-Za-z0-9_]+)\)|batch rule '([A-Za-z0-9_]+)'")


def stop_outcome(message: str) -> dict[str, Any]:
    """The summary row of a stop: table and rule read from its message, the message itself as
    description (``source_table`` is ``''`` and ``rule`` ``'run_stopped'`` when not named)."""
    table = _TABLE_IN_MESSAGE.search(message)
    rule = _RULE_IN_MESSAGE.search(message)
    return {
        "source_table": table.group(1) if table else "",
        "rule": (rule.group(1) or rule.group(2)) if rule else "run_stopped",
        "level": "batch",
        "description": message,
        "failed_rows": 0,
        "example": None,
    }


def summary_frame(
    outcomes: Iterable[Any],
    counts: Mapping[str, Mapping[str, int]] | None = None,
    stopped: str | None = None,
) -> pd.DataFrame:
    """One row per rule evaluated (passed rules with ``failed_rows`` 0), columns
    :data:`SUMMARY_COLUMNS`; ``failed_rows`` in source rows.

    ``outcomes`` are ``RuleOutcome`` objects (``table, rule, level, description, failed_rows,
    example``). ``counts`` is accepted for symmetry with the other forms (rows per table live on
    ``forecast_run`` and in the text). With ``stopped`` (the stop message) and no failed batch
    rule among the outcomes, a row for the stop is added (see :func:`stop_outcome`). A rule that
    appears twice for a table keeps its first outcome (one row per run, table and rule).
    """
    rows = [
        {
            "source_table": o.table,
            "rule": o.rule,
            "level": o.level,
            "description": o.description,
            "failed_rows": int(o.failed_rows),
            "example": o.example or None,
        }
        for o in outcomes
    ]
    failed_batch = any(r["level"] == "batch" and r["failed_rows"] > 0 for r in rows)
    if stopped and not failed_batch:
        stop = stop_outcome(stopped)
        rows = [
            r
            for r in rows
            if (r["source_table"], r["rule"]) != (stop["source_table"], stop["rule"])
        ]
        rows.append(stop)
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    frame = frame.drop_duplicates(["source_table", "rule"], keep="first").reset_index(drop=True)
    return frame.astype({"failed_rows": "int64"})


def _broken(
    outcomes: Iterable[Any], stopped: str | None, quarantine: pd.DataFrame | None
) -> pd.DataFrame:
    """The rules that failed rows, and the stop row when the stop has no outcome of its own.

    With ``quarantine``, a rule's example is led by the key of its first quarantined row, so the
    data owner can find the row (``R0000948: role=CNA``).
    """
    frame = summary_frame(outcomes, None, stopped)
    is_stop = frame["description"].eq(stopped) if stopped else False
    broken = frame[(frame["failed_rows"] > 0) | is_stop].copy()
    if quarantine is not None and len(quarantine) and not broken.empty:
        first = quarantine.drop_duplicates(["source_table", "rule"]).set_index(
            ["source_table", "rule"]
        )["source_key"]
        keys = [
            first.get((t, r)) for t, r in zip(broken["source_table"], broken["rule"], strict=True)
        ]
        broken["example"] = [
            f"{key}: {example}" if key is not None and example else (key or example)
            for key, example in zip(keys, broken["example"], strict=True)
        ]
    return broken


def _tables_in_order(counts: Mapping[str, Any], broken: pd.DataFrame) -> list[str]:
    tables = list(counts)
    return tables + [t for t in dict.fromkeys(broken["source_table"]) if t not in tables]


def format_summary(
    outcomes: Iterable[Any],
    counts: Mapping[str, Mapping[str, int]],
    stopped: str | None = None,
    quarantine: pd.DataFrame | None = None,
    impact: str | None = None,
) -> str:
    """Plain text: rows per table (extracted = used + quarantined + excluded), the rules broken
    per table with their row counts and one example, ``impact`` (the text of
    :func:`impact_text`, optional), then ``Result: usable`` or ``Result: STOPPED — ...``.

    Meant to be forwarded as is to whoever owns the source data; values are not escaped.
    ``quarantine`` (the quarantined rows, optional) puts a row key in front of each example.
    """
    outcomes = list(outcomes)
    broken = _broken(outcomes, stopped, quarantine)
    lines = ["Rows per table (extracted = used + quarantined + excluded):"]
    if counts:
        width = max(len(t) for t in counts)
        for table, c in counts.items():
            lines.append(
                f"  {table:<{width}}  {c.get('extracted', 0):>10,} = {c.get('used', 0):>10,} + "
                f"{c.get('quarantined', 0):>8,} + {c.get('excluded', 0):>8,}"
            )
    else:
        lines.append("  (none counted: the run stopped before its tables were counted)")
    lines.append("")
    if broken.empty:
        lines.append(f"Rules broken: none ({len(outcomes)} rules checked).")
    else:
        lines.append(
            f"Rules broken ({len(broken)} of {len(outcomes)} checked):"
            if outcomes
            else "Rules broken:"
        )
        for table in _tables_in_order(counts, broken):
            rules = broken[broken["source_table"] == table]
            if rules.empty:
                continue
            lines.append(f"  {table or '(source)'}:")
            for rule in rules.itertuples(index=False):
                if rule.description == stopped:
                    lines.append(f"    - {rule.rule} ({rule.level} rule): stopped the run")
                    continue
                unit = "row" if rule.failed_rows == 1 else "rows"
                lines.append(
                    f"    - {rule.rule} ({rule.level} rule): {rule.failed_rows:,} {unit}. "
                    f"{rule.description}"
                )
                if rule.example:
                    lines.append(f"      Example: {rule.example}")
    lines.append("")
    if impact:
        lines += [impact, ""]
    lines.append(f"Result: STOPPED — {stopped}" if stopped else "Result: usable")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A markdown table cell: ``|`` escaped, line breaks as spaces."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def markdown_summary(
    outcomes: Iterable[Any],
    counts: Mapping[str, Mapping[str, int]],
    stopped: str | None = None,
    quarantine: pd.DataFrame | None = None,
) -> str:
    """The same content as :func:`format_summary`, as markdown tables (Prefect artifact)."""
    outcomes = list(outcomes)
    broken = _broken(outcomes, stopped, quarantine)
    lines = ["# Data quality", "", "## Rows per table", ""]
    if counts:
        lines += [
            "| table | extracted | used | quarantined | excluded |",
            "|---|---:|---:|---:|---:|",
        ]
        for table, c in counts.items():
            lines.append(
                f"| {_cell(table)} | {c.get('extracted', 0)} | {c.get('used', 0)} | "
                f"{c.get('quarantined', 0)} | {c.get('excluded', 0)} |"
            )
    else:
        lines.append("None counted: the run stopped before its tables were counted.")
    lines += ["", "## Rules broken", ""]
    if broken.empty:
        lines.append(f"None ({len(outcomes)} rules checked).")
    else:
        lines += [
            "| table | rule | level | rows | description | example |",
            "|---|---|---|---:|---|---|",
        ]
        for table in _tables_in_order(counts, broken):
            for rule in broken[broken["source_table"] == table].itertuples(index=False):
                stop = rule.description == stopped
                lines.append(
                    f"| {_cell(table)} | {_cell(rule.rule)} | {_cell(rule.level)} | "
                    f"{'stop' if stop else rule.failed_rows} | "
                    f"{_cell('stopped the run' if stop else rule.description)} | "
                    f"{_cell(rule.example)} |"
                )
    lines += ["", f"**Result: STOPPED** — {_cell(stopped)}" if stopped else "**Result: usable**"]
    return "\n".join(lines)


def impact_text(impact: pd.DataFrame | None, excluded: pd.DataFrame | None = None) -> str:
    """Plain text: rows set aside as out of scope, and the recent demand lost to quarantined
    rows per region and role (with the warnings of :func:`data_contracts.impact.loss_warnings`).
    """
    from data_contracts.impact import loss_warnings, region_shares

    lines = []
    if excluded is not None and len(excluded):
        lines.append("Excluded as out of scope by the mapping (not quarantined, not used):")
        for row in excluded.itertuples(index=False):
            what = f"{row.column} = {row.value}" if row.column else "mapped exclusion"
            lines.append(f"  {row.source_table}: {what}: {int(row.rows):,} rows")
    else:
        lines.append("Excluded as out of scope: none.")
    lines.append("")
    if impact is None or impact.empty:
        lines.append("Demand lost to quarantined rows: none.")
        return "\n".join(lines)
    window = int(impact["window_days"].iloc[0])
    shares = region_shares(impact)
    if shares.empty:
        lines.append("Demand lost to quarantined rows: none.")
    else:
        lines.append(
            f"Demand lost to quarantined rows, last {window} days before as_of "
            "(region, role: shifts lost of lost + used, share; put back, all dates):"
        )
        for row in shares[(shares["lost"] > 0) | (shares["imputed"] > 0)].itertuples(index=False):
            lines.append(
                f"  {row.region}, {row.role}: {row.lost:,.0f} of {row.lost + row.used:,.0f} "
                f"shifts, {row.share:.1%}; {row.imputed:,} put back"
            )
    excluded_demand = impact[impact["source"] == "excluded"]
    if len(excluded_demand):
        by_role = excluded_demand.groupby("role")["recent_shifts_lost"].sum()
        lines.append(
            f"Excluded requests in the last {window} days: "
            + ", ".join(f"{role} {shifts:,.0f} shifts" for role, shifts in by_role.items())
            + " (out of scope: not forecast)."
        )
    warnings = loss_warnings(impact)
    if warnings:
        lines += ["", "Warning:"] + [f"  {w}" for w in warnings]
    return "\n".join(lines)


def impact_markdown(impact: pd.DataFrame | None, excluded: pd.DataFrame | None = None) -> str:
    """The same content as :func:`impact_text`, as markdown (Prefect data-quality artifact)."""
    from data_contracts.impact import loss_warnings, region_shares

    lines = ["## What bad and excluded rows cost", ""]
    if excluded is not None and len(excluded):
        lines += ["| table | column | value | rows excluded |", "|---|---|---|---:|"]
        for row in excluded.itertuples(index=False):
            lines.append(
                f"| {_cell(row.source_table)} | {_cell(row.column)} | {_cell(row.value)} | "
                f"{int(row.rows)} |"
            )
        lines.append("")
    if impact is None or impact.empty or region_shares(impact).empty:
        lines.append("No demand lost to quarantined rows.")
        return "\n".join(lines)
    window = int(impact["window_days"].iloc[0])
    warnings = loss_warnings(impact)
    if warnings:
        lines += [f"**Warning:** {_cell(w)}" for w in warnings] + [""]
    lines += [
        f"| region | role | shifts lost (last {window} days) | shifts used | share | put back |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in region_shares(impact).itertuples(index=False):
        lines.append(
            f"| {_cell(row.region)} | {_cell(row.role)} | {row.lost:.0f} | {row.used:.0f} | "
            f"{row.share:.1%} | {row.imputed} |"
        )
    return "\n".join(lines)
