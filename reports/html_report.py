"""A compact, self-contained HTML report of one published run, for recruiters and operations.

One file with inline CSS and no scripts or external resources, so it can be mailed or opened
offline. Sections, most actionable first: hiring targets (base scenario), the weekly on-call
pool per region and role, holiday coverage, and data quality (rows used and quarantined).
Every value from the database is HTML-escaped: facility and region names are free text.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from reports.publish import latest_published_run
from reports.schema import table

__all__ = ["BASE_SCENARIO", "write_report"]

BASE_SCENARIO = "base"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem;
       color: #1f2933; max-width: 1200px; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #cbd2d9; }
p.meta, p.note { color: #52606d; font-size: 0.9rem; margin: 0.3rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; margin-top: 0.5rem; }
th, td { border: 1px solid #cbd2d9; padding: 0.25rem 0.6rem; }
th { background: #f0f4f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.hire td { background: #fff3c4; }
.scroll { overflow-x: auto; }
"""


def _text(value: Any) -> str:
    """A value as escaped display text: dates ISO, floats to 2 decimals, missing as a dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, dt.datetime):
        return html.escape(value.strftime("%Y-%m-%d %H:%M %Z").strip())
    if isinstance(value, dt.date):
        return html.escape(value.isoformat())
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return html.escape(f"{value:,.2f}")
    if isinstance(value, int):
        return html.escape(f"{value:,}")
    return html.escape(str(value))


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{_text(value)}</td>' if numeric else f"<td>{_text(value)}</td>"


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    row_classes: Sequence[str] | None = None,
) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if row_classes else ""
        attribute = f' class="{html.escape(css)}"' if css else ""
        body.append(f"<tr{attribute}>{''.join(_cell(value) for value in row)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _published_run(engine: Engine, run_id: str | None) -> dict[str, Any]:
    if run_id is None:
        run = latest_published_run(engine)
        if run is None:
            raise ValueError(
                "No published run in the reporting database yet: run the weekly flow "
                "(`staffcast run` or `staffcast demo`) first, then write the report."
            )
        return run
    forecast_run = table("forecast_run")
    with engine.connect() as connection:
        found = (
            connection.execute(select(forecast_run).where(forecast_run.c.run_id == run_id))
            .mappings()
            .first()
        )
    if found is None:
        raise ValueError(f"Run {run_id!r} is not in the reporting database.")
    if found["status"] != "published":
        raise ValueError(
            f"Run {run_id!r} is {found['status']!r}, not published: only published runs "
            "have a report."
        )
    return dict(found)


def _hiring_section(connection: Connection, run_id: str) -> str:
    target = table("recruiting_target")
    rows = connection.execute(
        select(
            target.c.recruit_by,
            target.c.needed_by,
            target.c.region,
            target.c.role,
            target.c.hires_needed,
            target.c.surplus,
            target.c.current_pool,
            target.c.target_pool,
            target.c.expected_attrition,
            target.c.lead_time_days,
        )
        .where(target.c.run_id == run_id, target.c.scenario == BASE_SCENARIO)
        .order_by(target.c.recruit_by, target.c.region, target.c.role)
    ).all()
    if not rows:
        return "<h2>Hiring targets</h2><p class='note'>No hiring targets in this run.</p>"
    headers = [
        "Recruit by",
        "Needed by",
        "Region",
        "Role",
        "Hires needed (nurses)",
        "Surplus (nurses)",
        "Current pool",
        "Target pool",
        "Expected attrition",
        "Lead time (days)",
    ]
    classes = ["hire" if row.hires_needed > 0 else "" for row in rows]
    return (
        "<h2>Hiring targets</h2>"
        "<p class='note'>Base scenario. Open requisitions by <em>recruit by</em> so the nurses "
        "are on call by <em>needed by</em>; highlighted rows need hires.</p>"
        + _table(headers, rows, classes)
    )


def _pool_section(connection: Connection, run_id: str) -> str:
    pool = table("on_call_pool")
    rows = connection.execute(
        select(pool.c.week_start, pool.c.region, pool.c.role, pool.c.recommended_pool)
        .where(pool.c.run_id == run_id, pool.c.scenario == BASE_SCENARIO)
        .order_by(pool.c.week_start, pool.c.region, pool.c.role)
    ).all()
    if not rows:
        return "<h2>On-call pool</h2><p class='note'>No on-call pool in this run.</p>"
    series = sorted({(row.region, row.role) for row in rows})
    weeks = sorted({row.week_start for row in rows})
    by_week = {(row.week_start, row.region, row.role): row.recommended_pool for row in rows}
    headers = ["Week of (Monday)", *(f"{region} · {role}" for region, role in series)]
    grid = [
        [week, *(by_week.get((week, region, role)) for region, role in series)] for week in weeks
    ]
    return (
        "<h2>On-call pool</h2>"
        "<p class='note'>Base scenario: nurses to hold on call each week, per region and "
        "role.</p>" + _table(headers, grid)
    )


def _holiday_section(connection: Connection, run_id: str) -> str:
    coverage = table("holiday_coverage")
    rows = connection.execute(
        select(
            coverage.c.date,
            coverage.c.holiday,
            coverage.c.region,
            coverage.c.role,
            coverage.c.expected_demand,
            coverage.c.p95,
            coverage.c.typical_demand,
            coverage.c.uplift,
            coverage.c.recommended_on_call,
        )
        .where(coverage.c.run_id == run_id, coverage.c.scenario == BASE_SCENARIO)
        .order_by(coverage.c.date, coverage.c.region, coverage.c.role)
    ).all()
    if not rows:
        return ""
    headers = [
        "Date",
        "Holiday",
        "Region",
        "Role",
        "Expected demand (shifts)",
        "95% demand (shifts)",
        "Typical same weekday (shifts)",
        "Uplift (×)",
        "Recommended on call (nurses)",
    ]
    return "<h2>Holiday coverage</h2>" + _table(headers, rows)


def _quality_section(connection: Connection, run: dict[str, Any]) -> str:
    quarantined = table("quarantined_row")
    by_rule = connection.execute(
        select(quarantined.c.source_table, quarantined.c.rule, func.count().label("n"))
        .where(quarantined.c.run_id == run["run_id"])
        .group_by(quarantined.c.source_table, quarantined.c.rule)
        .order_by(func.count().desc(), quarantined.c.source_table, quarantined.c.rule)
    ).all()
    summary = _table(
        ["Requests extracted", "Used", "Quarantined"],
        [[run["rows_extracted"], run["rows_used"], run["rows_quarantined"]]],
    )
    rules = (
        _table(["Source table", "Rule", "Rows quarantined"], by_rule)
        if by_rule
        else "<p class='note'>No rows were quarantined.</p>"
    )
    return "<h2>Data quality</h2>" + summary + rules


def _render(connection: Connection, run: dict[str, Any]) -> str:
    run_id = run["run_id"]
    title = f"staffcast plan as of {_text(run['as_of'])}"
    meta = (
        f"Run {_text(run_id)} · published {_text(run['finished_at'])} · "
        f"code {_text(run['code_version'])} · horizon {_text(run['horizon_days'])} days"
    )
    sections = [
        _hiring_section(connection, run_id),
        _pool_section(connection, run_id),
        _holiday_section(connection, run_id),
        _quality_section(connection, run),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<h1>{title}</h1><p class='meta'>{meta}</p>"
        f"{''.join(sections)}</body></html>\n"
    )


def _write_atomically(path: Path, content: str) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report(engine: Engine, path: Path, run_id: str | None = None) -> Path:
    """Write the HTML report of a published run (default: the current one) to ``path``.

    Raises ``ValueError`` when there is no published run (or ``run_id`` is unknown or not
    published). The file is replaced atomically, so a reader never sees half a report.
    Returns ``path``.
    """
    path = Path(path)
    run = _published_run(engine, run_id)
    with engine.connect() as connection:
        content = _render(connection, run)
    _write_atomically(path, content)
    return path
