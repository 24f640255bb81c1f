"""Hiring targets as a CSV file for recruiters' spreadsheets: every scenario, one row each.

One row per scenario, region and role with the ``recruiting_target`` columns recruiters work
from; dates ISO (``YYYY-MM-DD``), shares as 0-1 numbers, NULLs (older runs) as empty cells.
UTF-8 with a byte-order mark (so Excel reads it as UTF-8), written atomically. Text cells that
a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) get a leading apostrophe, so a region typed as ``=HYPERLINK(...)`` stays text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from reports.html_report import BASE_SCENARIO, published_run, write_atomically
from reports.schema import table

__all__ = ["TARGET_COLUMNS", "targets_csv_path", "write_targets_csv"]

#: The CSV header, in order: recruiting_target columns (``late`` as ``yes``/``no``).
TARGET_COLUMNS: tuple[str, ...] = (
    "scenario",
    "region",
    "role",
    "hires_needed",
    "surplus",
    "recruit_by",
    "needed_by",
    "current_pool",
    "target_pool",
    "expected_attrition",
    "lead_time_days",
    "acceptance_rate",
    "acceptance_offers",
    "annual_attrition",
    "attrition_nurse_years",
    "late",
    "note",
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """``value`` as CSV cell text; text that a spreadsheet would evaluate gets a ``'`` prefix."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return str(round(value, 4))
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def targets_csv_path(report_path: Path) -> Path:
    """Where the CSV of a report goes: beside it, ``<report stem>-hiring-targets.csv``."""
    return report_path.with_name(f"{report_path.stem}-hiring-targets.csv")


def write_targets_csv(engine: Engine, path: Path, run_id: str | None = None) -> Path:
    """Write the hiring targets of a published run (default: the current one) as CSV.

    Columns are :data:`TARGET_COLUMNS`; rows are ordered base scenario first, then by scenario,
    region and role (code-point order). Raises ``ValueError`` when there is no published run
    (or ``run_id`` is unknown or not published). The file is replaced atomically. Returns
    ``path``.
    """
    path = Path(path)
    run = published_run(engine, run_id)
    target = table("recruiting_target")
    with engine.connect() as connection:
        rows = (
            connection.execute(
                select(*(target.c[name] for name in TARGET_COLUMNS)).where(
                    target.c.run_id == run["run_id"]
                )
            )
            .mappings()
            .all()
        )
    # Sorted here, not in SQL, so the order is the same on every database collation.
    rows = sorted(
        rows,
        key=lambda row: (
            row["scenario"] != BASE_SCENARIO,
            row["scenario"],
            row["region"],
            row["role"],
        ),
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(TARGET_COLUMNS)
    for row in rows:
        writer.writerow([spreadsheet_safe(row[name]) for name in TARGET_COLUMNS])
    # A byte-order mark, so Excel opens accented region names as UTF-8 on a double click.
    write_atomically(path, "\ufeff" + buffer.getvalue(), newline="")
    return path
