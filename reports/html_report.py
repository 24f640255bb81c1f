"""The per-run HTML report that recruiters and operations read, in one self-contained file.

Inline CSS and inline SVG, no scripts and no external resources, so it can be mailed or opened
offline. Sections, most actionable first:

1. hiring targets per region and role (base scenario), the month-by-month hiring plan and,
   when the run has them, the other scenarios side by side;
2. the weekly on-call pool per region and role (chart and numbers);
3. holiday coverage for the holidays in the horizon;
4. the track record, as of the run (what runs published up to its as_of stored): the drift
   flags the run raised, weekly demand against the forecasts made 1-7 and 8-28 days ahead
   (last 13 weeks), accuracy by lead band, achieved against promised service level;
5. per-facility demand charts: 26 weeks of history, the forecast with its 80% and 95% bands
   and the same period last year (capped at ``max_facility_charts``, busiest first; the report
   says how many were left out and lists them);
6. data quality: rows used, quarantined and excluded, the demand the quarantined and excluded
   rows would have carried per region and role, failed data-contract rules;
7. forecast accuracy of the backtests behind the chosen models.

Above them, two banners before the first heading. The drift banner (``div.alert.drift``)
lists the run's track-record flags (a measure that left its band: interval coverage, bias or
the service level the pools achieved), pools first. The data-loss banner (``div.alert`` with
``role="alert"``) names every region and role that lost more than :data:`LOSS_WARNING_SHARE` of
its recent demand to quarantined rows, worst first, with what was put back and what may be
missing from the plan.

Every value from the database is HTML-escaped, in tables and inside SVG text, titles and
attributes: region names, facility ids and holiday names are free text. Data are read with a
few set-based queries per section, never one query per facility.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Select, func, select

from models.track_record import LEAD_BANDS, SERVICE_SHORTFALL, SUM_COLUMNS, score_ratios
from reports import charts
from reports.publish import latest_published_run
from reports.schema import table
from reports.track_record import (
    accuracy_by_band,
    flags_of,
    service_levels,
    weekly_against_actual,
)

__all__ = [
    "BASE_SCENARIO",
    "LOSS_WARNING_SHARE",
    "MAX_FACILITY_CHARTS",
    "published_run",
    "region_losses",
    "write_atomically",
    "write_report",
]

BASE_SCENARIO = "base"
#: Facility demand charts drawn at most, busiest series (facility and role) first.
MAX_FACILITY_CHARTS = 120
#: A region and role losing more than this share (0-1) of its recent demand to quarantined
#: rows gets a line in the warning banner at the top of the report.
LOSS_WARNING_SHARE = 0.01
PLANNED_ROLES = ("RN", "LPN")
"""Roles with on-call pools and hiring targets (the banner speaks only of these)."""

_CSS = (
    """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       padding: 0 1rem; color: #1f2933; max-width: 1280px; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 2px solid #cbd2d9; }
h3 { font-size: 1rem; margin: 1.4rem 0 0.3rem; }
nav { font-size: 0.9rem; margin: 0.6rem 0; }
nav a { margin-right: 1rem; color: #1d4ed8; }
p.meta, p.note { color: #52606d; font-size: 0.9rem; margin: 0.3rem 0; max-width: 60rem; }
p.lead { font-size: 1rem; margin: 0.4rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin-top: 0.5rem; }
th, td { border: 1px solid #d9e2ec; padding: 0.2rem 0.5rem; vertical-align: top; }
td { white-space: nowrap; }
td.wrap { white-space: normal; min-width: 12rem; }
th { background: #f0f4f8; text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.hire td { background: #fff3c4; }
tr.loss td { background: #fde8e8; }
div.alert { border: 1px solid #f5a3a3; border-left: 6px solid #b91c1c; background: #fef2f2;
            color: #7f1d1d; padding: 0.6rem 1rem; margin: 1rem 0; max-width: 60rem; }
div.alert p { margin: 0.3rem 0; }
div.alert ul { margin: 0.3rem 0; padding-left: 1.2rem; }
div.alert li { margin: 0.25rem 0; }
div.alert a { color: #7f1d1d; }
div.alert.drift { border-color: #f3c77a; border-left-color: #b45309; background: #fffbeb;
                  color: #78350f; }
div.alert.drift a { color: #78350f; }
td.short { background: #fde8e8; color: #7f1d1d; font-weight: 600; }
ul.flags { margin: 0.3rem 0; padding-left: 1.2rem; max-width: 60rem; }
td.beyond { color: #7b8794; font-style: italic; }
.late { color: #b91c1c; font-weight: 600; }
.scroll { overflow-x: auto; }
details { margin: 0.5rem 0; }
summary { cursor: pointer; color: #1d4ed8; font-size: 0.9rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr));
          gap: 0.8rem 1.2rem; }
figure { margin: 0; }
figcaption { font-size: 0.85rem; margin-bottom: 0.1rem; }
"""
    + charts.CHART_CSS
)


# --- formatting -------------------------------------------------------------------------------


class Markup(str):
    """Text that is already safe HTML (built here from escaped parts): not escaped again."""


def _text(value: Any) -> str:
    """A value as escaped display text: dates ISO, floats to 2 decimals, missing as a dash."""
    if isinstance(value, Markup):
        return str(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "&mdash;"
    if isinstance(value, dt.datetime):
        return charts.esc(value.strftime("%Y-%m-%d %H:%M %Z").strip())
    if isinstance(value, dt.date):
        return charts.esc(value.isoformat())
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return charts.esc(f"{value:,.2f}")
    if isinstance(value, int | np.integer):
        return charts.esc(f"{value:,}")
    return charts.esc(value)


def _number(value: Any, decimals: int = 1, suffix: str = "") -> Markup:
    """A number with thousands separators and ``decimals`` places; missing as a dash."""
    if value is None or pd.isna(value):
        return Markup("&mdash;")
    return Markup(charts.esc(f"{float(value):,.{decimals}f}{suffix}"))


def _share(value: Any, decimals: int = 0) -> Markup:
    """A 0-1 share as a percentage."""
    if value is None or pd.isna(value):
        return Markup("&mdash;")
    return Markup(charts.esc(f"{100 * float(value):.{decimals}f}%"))


def _count(value: Any) -> int | None:
    """An integer count from the database, or None for NULL/NaN (older runs)."""
    if value is None or pd.isna(value):
        return None
    return int(value)


def acceptance_text(rate: Any, offers: Any) -> Markup:
    """``0.31 (412 offers)``; ``0.35 prior (no offers)`` for the prior alone; a dash if unknown."""
    shown = _text(None) if rate is None or pd.isna(rate) else charts.esc(f"{float(rate):.2f}")
    counted = _count(offers)
    if counted is None:
        return Markup(f"{shown} (&mdash;)")
    if counted == 0:
        return Markup(f"{shown} prior (no offers)")
    return Markup(f"{shown} ({counted:,} offer{'' if counted == 1 else 's'})")


def attrition_text(rate: Any, nurse_years: Any, separations: Any) -> Markup:
    """``16% (38.2 nurse-years, 6 left)``; ``25% prior (no history)``; dashes for NULLs."""
    shown = _share(rate)
    years = None if nurse_years is None or pd.isna(nurse_years) else float(nurse_years)
    left = _count(separations)
    if years is None and left is None:
        return Markup(f"{shown} (&mdash;)")
    if years == 0 and not left:
        return Markup(f"{shown} prior (no history)")
    years_text = "&mdash;" if years is None else charts.esc(f"{years:,.1f}")
    left_text = "&mdash;" if left is None else charts.esc(f"{left:,}")
    return Markup(f"{shown} ({years_text} nurse-years, {left_text} left)")


def _cell(value: Any, right: bool, extra_class: str = "") -> str:
    numeric = right or (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
    )
    classes = " ".join(name for name in ("num" if numeric else "", extra_class) if name)
    attribute = f' class="{charts.esc(classes)}"' if classes else ""
    return f"<td{attribute}>{_text(value)}</td>"


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    row_classes: Sequence[str] | None = None,
    *,
    right: Collection[int] = (),
    wrap: Collection[int] = (),
    table_id: str | None = None,
    cell_classes: Sequence[Sequence[str]] | None = None,
) -> str:
    """An HTML table; every value escaped unless it is :class:`Markup`.

    ``right`` lists columns to right-align although they hold Markup (formatted numbers);
    ``wrap`` lists columns of long text that may wrap (cells stay on one line otherwise).
    """
    head = "".join(f"<th>{charts.esc(header)}</th>" for header in headers)
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if row_classes else ""
        attribute = f' class="{charts.esc(css)}"' if css else ""
        cells = [
            _cell(
                value,
                column in right,
                " ".join(
                    name
                    for name in (
                        cell_classes[index][column] if cell_classes else "",
                        "wrap" if column in wrap else "",
                    )
                    if name
                ),
            )
            for column, value in enumerate(row)
        ]
        body.append(f"<tr{attribute}>{''.join(cells)}</tr>")
    id_attribute = f' id="{charts.esc(table_id)}"' if table_id else ""
    return (
        f'<div class="scroll"><table{id_attribute}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _note(text: str) -> str:
    """A plain-English explanation (``text`` is trusted: written here, not from the DB)."""
    return f'<p class="note">{text}</p>'


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{charts.esc(title)}</h2>{body}</section>'


def _rows(connection: Connection, statement: Select[Any]) -> pd.DataFrame:
    """The result of ``statement`` as a frame (typed values; columns even when empty)."""
    result = connection.execute(statement)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _pair_label(region: Any, role: Any) -> str:
    return f"{region} · {role}"


def _scenario_order(scenarios: Iterable[str]) -> list[str]:
    unique = set(scenarios)
    return ([BASE_SCENARIO] if BASE_SCENARIO in unique else []) + sorted(unique - {BASE_SCENARIO})


# --- runs -------------------------------------------------------------------------------------


def published_run(engine: Engine, run_id: str | None) -> dict[str, Any]:
    """The forecast_run row of a published run (default: the current one), as a dict.

    Raises ``ValueError`` with what to do when there is no published run, or when ``run_id`` is
    unknown or not published.
    """
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


# --- 1. hiring ----------------------------------------------------------------------------------


def _hiring_section(connection: Connection, run_id: str) -> str:
    target = table("recruiting_target")
    frame = _rows(connection, select(target).where(target.c.run_id == run_id))
    base = frame[frame["scenario"] == BASE_SCENARIO].sort_values(
        ["recruit_by", "region", "role"], kind="stable"
    )
    parts: list[str] = []
    if base.empty:
        parts.append(_note("No base-scenario hiring targets in this run."))
    else:
        needing = base[base["hires_needed"] > 0]
        surplus = int(base["surplus"].sum())
        late = int(base["late"].astype(bool).sum())
        if needing.empty:
            lead = f"No region needs hires now: all {len(base)} region·role pools are covered"
            lead += f" (surplus of {surplus:,} nurses in total)." if surplus else "."
        else:
            lead = (
                f"<strong>{int(needing['hires_needed'].sum()):,} nurses to hire</strong> across "
                f"{len(needing)} of {len(base)} region·role pools; the earliest recruit-by date "
                f"is <strong>{charts.esc(min(needing['recruit_by']).isoformat())}</strong>."
            )
            if late:
                lead += f' <span class="late">{late} already late.</span>'
        parts.append(f'<p class="lead">{lead}</p>')
        parts.append(
            _note(
                "Base scenario. Open requisitions by <em>recruit by</em> so the new nurses are on "
                "call by <em>needed by</em> (after the lead time: time to hire plus onboarding). "
                "Target pool is the largest weekly on-call pool needed once they arrive; expected "
                "attrition is the nurses likely to leave before then. A pool bigger than needed "
                "shows as a surplus, not as negative hires. Rates show the observations behind "
                "them: a prior is the configured value, used when there was no history. "
                "Highlighted rows need hires."
            )
        )
        headers = [
            "Recruit by",
            "Needed by",
            "Region",
            "Role",
            "Hires needed (nurses)",
            "Surplus (nurses)",
            "Current pool (nurses)",
            "Target pool (nurses)",
            "Expected attrition (nurses)",
            "Lead time (days)",
            "Acceptance rate (offers seen)",
            "Annual attrition (evidence)",
            "Late",
            "Note",
        ]
        rows = []
        for record in base.itertuples(index=False):
            rows.append(
                [
                    record.recruit_by,
                    record.needed_by,
                    record.region,
                    record.role,
                    int(record.hires_needed),
                    int(record.surplus),
                    int(record.current_pool),
                    int(record.target_pool),
                    _number(record.expected_attrition),
                    int(record.lead_time_days),
                    acceptance_text(record.acceptance_rate, record.acceptance_offers),
                    attrition_text(
                        record.annual_attrition,
                        record.attrition_nurse_years,
                        record.attrition_separations,
                    ),
                    Markup('<span class="late">late</span>') if record.late else "",
                    record.note if isinstance(record.note, str) else "",
                ]
            )
        classes = ["hire" if hires > 0 else "" for hires in base["hires_needed"]]
        parts.append(
            _table(headers, rows, classes, right={8}, wrap={13}, table_id="hiring-targets")
        )
    parts.append(_hiring_plan(connection, run_id))
    parts.append(_scenario_comparison(frame))
    return _section("hiring", "Hiring targets", "".join(parts))


def _hiring_plan(connection: Connection, run_id: str) -> str:
    plan_table = table("hiring_plan")
    plan = _rows(
        connection,
        select(
            plan_table.c.region,
            plan_table.c.role,
            plan_table.c.month,
            plan_table.c.hires,
            plan_table.c.beyond_horizon,
        ).where(plan_table.c.run_id == run_id, plan_table.c.scenario == BASE_SCENARIO),
    )
    title = "<h3>Month-by-month hiring plan</h3>"
    if plan.empty:
        return title + _note("No month-by-month hiring plan stored for this run.")
    months = sorted(set(plan["month"]))
    pairs = sorted(set(zip(plan["region"], plan["role"], strict=True)))
    cells = {
        (record.region, record.role, record.month): (int(record.hires), bool(record.beyond_horizon))
        for record in plan.itertuples(index=False)
    }
    headers = [
        "Region · role",
        *(f"From {month:%b %-d, %Y} (nurses)" for month in months),
        "Total",
    ]
    rows: list[list[Any]] = []
    flags: list[list[str]] = []
    for region, role in pairs:
        row: list[Any] = [_pair_label(region, role)]
        flag_row = [""]
        total = 0
        for month in months:
            found = cells.get((region, role, month))
            if found is None:
                row.append(None)
                flag_row.append("")
                continue
            hires, beyond = found
            total += hires
            row.append(Markup(f"{hires:,}&#8224;") if beyond else hires)
            flag_row.append("beyond" if beyond else "")
        row.append(total)
        flag_row.append("")
        rows.append(row)
        flags.append(flag_row)
    classes = ["hire" if row[-1] > 0 else "" for row in rows]
    return (
        title
        + _note(
            "Nurses to start recruiting in each month from the run's date (base scenario), "
            "including replacements for expected attrition, so the pool stays at what the "
            "forecast needs once they arrive. The first column is the hiring target above, "
            "the same number: it covers the target's recruiting window. &#8224; marks months "
            "whose hires arrive after the forecast horizon: their need is carried over from "
            "the last forecast weeks, so treat them as provisional."
        )
        + _table(
            headers,
            rows,
            classes,
            right=set(range(1, len(headers))),
            cell_classes=flags,
        )
    )


def _scenario_comparison(frame: pd.DataFrame) -> str:
    scenarios = _scenario_order(frame["scenario"])
    if len(scenarios) < 2 or BASE_SCENARIO not in scenarios:
        return ""
    pairs = sorted(set(zip(frame["region"], frame["role"], strict=True)))
    by_key = {
        (record.scenario, record.region, record.role): record
        for record in frame.itertuples(index=False)
    }
    rows: list[list[Any]] = []
    totals = dict.fromkeys(scenarios, 0)
    for region, role in pairs:
        row: list[Any] = [_pair_label(region, role)]
        for scenario in scenarios:
            record = by_key.get((scenario, region, role))
            if record is None:
                row.append(None)
                continue
            totals[scenario] += int(record.hires_needed)
            if int(record.hires_needed) == 0 and int(record.surplus) > 0:
                row.append(Markup(f"0 (surplus {int(record.surplus):,})"))
            else:
                row.append(int(record.hires_needed))
        rows.append(row)
    rows.append([Markup("<strong>Total</strong>"), *(totals[s] for s in scenarios)])
    return (
        "<h3>Scenarios</h3>"
        + _note(
            "Hires needed (nurses) under each scenario the run computed: the same plan with "
            "other service levels, acceptance rates or attrition. Compare them with the base "
            "scenario to see how sensitive the hiring target is."
        )
        + _table(
            ["Region · role", *(f"{s} (hires)" for s in scenarios)],
            rows,
            right=set(range(1, len(scenarios) + 1)),
        )
    )


# --- 2. on-call pool ----------------------------------------------------------------------------


def _pool_section(connection: Connection, run_id: str) -> str:
    pool_table = table("on_call_pool")
    pool = _rows(
        connection,
        select(
            pool_table.c.region,
            pool_table.c.role,
            pool_table.c.week_start,
            pool_table.c.recommended_pool,
            pool_table.c.peak_day_p95,
            pool_table.c.weekly_demand_mean,
        ).where(pool_table.c.run_id == run_id, pool_table.c.scenario == BASE_SCENARIO),
    )
    if pool.empty:
        return _section("pool", "On-call pool", _note("No on-call pool in this run."))
    weeks = sorted(set(pool["week_start"]))
    parts = [
        _note(
            "Base scenario: nurses to hold on call each week (Monday to Sunday) per region and "
            "role, so that with the usual acceptance rate the busiest day is covered at the "
            "agreed service level and nobody works more than the weekly shift cap. Hover a "
            "point for the week's numbers; the table below has them all."
        )
    ]
    for role, role_pool in pool.groupby("role", sort=True):
        svg, legend = charts.weekly_pool_chart(str(role), role_pool, weeks)
        parts.append(
            f"<h3>{charts.esc(role)}</h3>"
            f'<div class="legend">{legend}</div><figure class="pool-chart">{svg}</figure>'
        )
    series = sorted(set(zip(pool["region"], pool["role"], strict=True)))
    by_week = {
        (record.week_start, record.region, record.role): int(record.recommended_pool)
        for record in pool.itertuples(index=False)
    }
    grid = [
        [week, *(by_week.get((week, region, role)) for region, role in series)] for week in weeks
    ]
    headers = ["Week of (Monday)", *(f"{_pair_label(r, k)} (nurses)" for r, k in series)]
    parts.append(
        "<details><summary>Weekly numbers (nurses on call)</summary>"
        + _table(headers, grid)
        + "</details>"
    )
    return _section("pool", "On-call pool", "".join(parts))


# --- 3. holidays --------------------------------------------------------------------------------


def _holiday_section(connection: Connection, run_id: str) -> str:
    coverage = table("holiday_coverage")
    rows = connection.execute(
        select(
            coverage.c.date,
            coverage.c.holiday,
            coverage.c.region,
            coverage.c.role,
            coverage.c.expected_demand,
            coverage.c.p90,
            coverage.c.p95,
            coverage.c.typical_demand,
            coverage.c.uplift,
            coverage.c.recommended_on_call,
            coverage.c.acceptance_rate,
            coverage.c.acceptance_offers,
        )
        .where(coverage.c.run_id == run_id, coverage.c.scenario == BASE_SCENARIO)
        .order_by(coverage.c.date, coverage.c.holiday, coverage.c.region, coverage.c.role)
    ).all()
    if not rows:
        return _section(
            "holidays",
            "Holiday coverage",
            _note("No public holidays fall in this run's forecast horizon."),
        )
    headers = [
        "Date",
        "Holiday",
        "Region",
        "Role",
        "Expected demand (shifts)",
        "90% demand (shifts)",
        "95% demand (shifts)",
        "Typical same weekday (shifts)",
        "Uplift (×)",
        "Recommended on call (nurses)",
        "Holiday acceptance rate (offers seen)",
    ]
    table_rows = [
        [
            row.date,
            row.holiday,
            row.region,
            row.role,
            _number(row.expected_demand),
            _number(row.p90),
            _number(row.p95),
            _number(row.typical_demand),
            _number(row.uplift, 2, "×"),
            int(row.recommended_on_call),
            acceptance_text(row.acceptance_rate, row.acceptance_offers),
        ]
        for row in rows
    ]
    body = _note(
        "Base scenario, soonest first. Expected demand is the forecast mean for the day; the 90% "
        "and 95% columns are demand that will not be exceeded on 9 (or 19) holidays out of 10 "
        "(or 20). Uplift compares the holiday with a typical same weekday (below 1: quieter than "
        "usual). Fewer nurses accept a call on a holiday, so the on-call number uses the lower "
        "holiday acceptance rate."
    ) + _table(headers, table_rows, right={4, 5, 6, 7, 8})
    return _section("holidays", "Holiday coverage", body)


# --- 4. track record ----------------------------------------------------------------------------

RECORD_WEEKS = 13
"""Weeks of the track record the charts and the accuracy tables cover."""
SERVICE_SPANS = (13, 52)
"""Weeks over which the achieved service level is set against the promise."""
_CHART_BANDS = ("1-7", "8-28")
_LINE_COLUMNS = ("actual_1_7", "ahead_1_7", "actual_8_28", "ahead_8_28")
_BAND_ORDER = [f"{first}-{last}" for first, last in LEAD_BANDS]
_FLAG_ORDER = {"service_level": 0, "bias": 1, "coverage_p10_p90": 2}
"""Pools that did not hold first: they are what a planner must act on."""


def _ordered_flags(flags: pd.DataFrame) -> pd.DataFrame:
    """The run's track-record flags, service level first, then bias, then coverage."""
    rank = flags["measure"].map(_FLAG_ORDER).fillna(len(_FLAG_ORDER))
    return (
        flags.assign(rank=rank)
        .sort_values(["rank", "region", "role"], kind="stable")
        .drop(columns="rank")
        .reset_index(drop=True)
    )


def _flag_list(flags: pd.DataFrame) -> str:
    items = "".join(f"<li>{charts.esc(message)}</li>" for message in flags["message"])
    return f'<ul class="flags">{items}</ul>'


def _drift_banner(flags: pd.DataFrame) -> str:
    """The drift warning at the top of the page, or ``""`` when the run raised no flag."""
    if flags.empty:
        return ""
    return (
        '<div class="alert drift" role="alert" id="drift">'
        "<p><strong>The track record shows drift: plan with care.</strong></p>"
        f"{_flag_list(flags)}"
        '<p>The numbers are under <a href="#track-record">Track record</a>.</p></div>'
    )


def _band_label(band: Any) -> str:
    return f"days {band}"


def _signed_share(value: Any, decimals: int = 1) -> Markup:
    """A 0-1 ratio as a signed percentage (``+4.2%``, ``-1.0%``); missing as a dash."""
    if value is None or pd.isna(value):
        return Markup("&mdash;")
    percent = round(100 * float(value), decimals) + 0.0  # no "-0.0%"
    return Markup(
        charts.esc(f"{percent:+.{decimals}f}%" if percent else f"{percent:.{decimals}f}%")
    )


def _per_week(rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`weekly_against_actual` rows as one row per region, role and week, in shifts per
    7-day week (a week may be partly scored): ``days`` (scored 1-7 days ahead), ``actual``
    (from the 1-7 band, else the 8-28 one), ``actual_1_7``, ``ahead_1_7``, ``actual_8_28``,
    ``ahead_8_28`` (NaN where the band has no row)."""
    keys = ["region", "role", "week_start"]
    rows = rows[rows["lead_band"].isin(_CHART_BANDS)]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "days", "actual", *_LINE_COLUMNS])
    days = pd.to_numeric(rows["days"]).astype(float)
    scaled = rows.assign(
        days=days,
        actual=pd.to_numeric(rows["actual_total"]).astype(float) / days * 7,
        ahead=pd.to_numeric(rows["forecast_total"]).astype(float) / days * 7,
    )
    wide = scaled.set_index([*keys, "lead_band"])[["days", "actual", "ahead"]].unstack()
    wide = wide.reindex(
        columns=pd.MultiIndex.from_product([["days", "actual", "ahead"], _CHART_BANDS])
    )
    out = pd.DataFrame(
        {
            "days": wide[("days", "1-7")],
            "actual": wide[("actual", "1-7")].fillna(wide[("actual", "8-28")]),
            "actual_1_7": wide[("actual", "1-7")],
            "ahead_1_7": wide[("ahead", "1-7")],
            "actual_8_28": wide[("actual", "8-28")],
            "ahead_8_28": wide[("ahead", "8-28")],
        }
    )
    return out.reset_index().sort_values(keys, kind="stable", ignore_index=True)


def _error(ahead: Any, actual: Any) -> Markup:
    """Forecast against actual as a signed percentage (positive: the forecast ran high)."""
    if pd.isna(ahead) or pd.isna(actual) or float(actual) <= 0:
        return _signed_share(None)
    return _signed_share(float(ahead) / float(actual) - 1.0)


def _against_actual(weekly: pd.DataFrame) -> str:
    """Charts (one per region and role) and the weekly numbers behind them."""
    title = f"<h3>Forecast against actual, last {RECORD_WEEKS} weeks</h3>"
    if weekly.empty:
        return title + _note(
            f"No region forecast made 1-28 days ahead was scored in the last {RECORD_WEEKS} weeks."
        )
    weeks = sorted(set(weekly["week_start"]))
    figures = [
        charts.weekly_accuracy_chart(str(region), str(role), series, weeks)
        for (region, role), series in weekly.groupby(["region", "role"], sort=True)
    ]
    rows = [
        [
            record.region,
            record.role,
            record.week_start,
            None if pd.isna(record.days) else int(record.days),
            _number(record.actual),
            _number(record.ahead_1_7),
            _error(record.ahead_1_7, record.actual_1_7),
            _number(record.ahead_8_28),
            _error(record.ahead_8_28, record.actual_8_28),
        ]
        for record in weekly.itertuples(index=False)
    ]
    headers = [
        "Region",
        "Role",
        "Week of (Monday)",
        "Days scored (1-7 days ahead)",
        "Actual (shifts/week)",
        "Forecast 1-7 days ahead (shifts/week)",
        "Error 1-7 days ahead",
        "Forecast 8-28 days ahead (shifts/week)",
        "Error 8-28 days ahead",
    ]
    return (
        title
        + _note(
            "Demand per week (shifts, requests) per region and role, against the forecast the "
            "runs published for it 1 to 7 days ahead (the week's own run) and 8 to 28 days ahead "
            "(the runs of the weeks before). A week scored on fewer than 7 days, or by two runs, "
            "is scaled to 7 days. Error is forecast over actual minus 1: positive, the forecast "
            "ran high. Hover a point for its number; the table below has them all."
        )
        + charts.ACCURACY_LEGEND
        + f'<div class="charts">{"".join(figures)}</div>'
        + "<details><summary>Weekly numbers (shifts per week)</summary>"
        + _table(headers, rows, right={4, 5, 6, 7, 8}, table_id="track-weekly")
        + "</details>"
    )


def _ratio_cells(record: Any) -> list[Any]:
    """Days, totals and ratios of one :func:`score_ratios` row, formatted."""
    return [
        _band_label(record.lead_band),
        int(record.days),
        _number(record.actual_total, 0),
        _number(record.forecast_total, 0),
        _signed_share(record.bias),
        _share(record.wape, 1),
        _number(record.mase, 2),
        _share(record.coverage_p10_p90),
        _share(record.coverage_p95),
    ]


_RATIO_HEADERS = [
    "Lead",
    "Days scored",
    "Actual (shifts)",
    "Forecast (shifts)",
    "Bias",
    "WAPE",
    "MASE",
    "Inside p10-p90 (expected 80%)",
    "At or below p95 (expected 95%)",
]


def _by_band(sums: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """:func:`score_ratios` per ``keys`` and lead band, bands in lead order."""
    ratios = score_ratios(sums, [*keys, "lead_band"])
    rank = ratios["lead_band"].map({band: i for i, band in enumerate(_BAND_ORDER)})
    ratios = ratios.assign(rank=rank.fillna(len(_BAND_ORDER)))
    return ratios.sort_values([*keys, "rank", "lead_band"], kind="stable", ignore_index=True)


def _accuracy_by_band(scores: pd.DataFrame) -> str:
    """Accuracy per lead band: every region together and each region and role, then facilities."""
    title = f"<h3>Accuracy by lead band, last {RECORD_WEEKS} weeks</h3>"
    if scores.empty:
        return title + _note(f"No forecast was scored in the last {RECORD_WEEKS} weeks.")
    scores = scores.assign(**{column: pd.to_numeric(scores[column]) for column in SUM_COLUMNS})
    parts = [
        title,
        _note(
            "How close the forecasts came, by how far ahead they were made (lead: days after "
            "the run's date). Bias is forecast over actual minus 1 (positive: forecasts ran "
            "high); WAPE is the absolute error over actual; MASE compares the error with that of "
            "repeating the last week before the run (below 1: better). Inside p10-p90 should be "
            "near 80% and at or below p95 near 95%: much less and the bands are too narrow. "
            "Days scored counts each region·role (or facility·role) day once."
        ),
    ]
    region = scores[scores["level"] == "region"]
    if not region.empty:
        rows = [
            [Markup("<strong>All regions</strong>"), *_ratio_cells(record)]
            for record in _by_band(region, []).itertuples(index=False)
        ]
        rows += [
            [_pair_label(record.region, record.role), *_ratio_cells(record)]
            for record in _by_band(region, ["region", "role"]).itertuples(index=False)
        ]
        parts.append('<p class="lead">Region forecasts (what pools are sized on)</p>')
        parts.append(
            _table(
                ["Region · role", *_RATIO_HEADERS],
                rows,
                right={3, 4, 5, 6, 7, 8, 9},
                table_id="track-accuracy-region",
            )
        )
    facility = scores[scores["level"] == "facility"]
    if not facility.empty:
        rows = [_ratio_cells(record) for record in _by_band(facility, []).itertuples(index=False)]
        parts.append(
            '<p class="lead">Facility forecasts, all facilities together (errors of single '
            "facilities do not cancel out, so WAPE is higher than for regions)</p>"
        )
        parts.append(
            _table(
                _RATIO_HEADERS,
                rows,
                right={2, 3, 4, 5, 6, 7, 8},
                table_id="track-accuracy-facility",
            )
        )
    return "".join(parts)


def _service_level_table(held: pd.DataFrame) -> str:
    """Achieved against promised service level per scenario, region and role."""
    short, long = SERVICE_SPANS
    title = "<h3>Achieved against promised service level</h3>"
    if held.empty:
        return title + _note(f"No on-call pool was judged in the last {long} weeks.")
    rank = {scenario: i for i, scenario in enumerate(_scenario_order(held["scenario"]))}
    held = held.assign(rank=held["scenario"].map(rank)).sort_values(
        ["rank", "region", "role"], kind="stable"
    )
    rows: list[list[Any]] = []
    flags: list[list[str]] = []
    for record in held.to_dict("records"):
        row: list[Any] = [record["scenario"], record["region"], record["role"]]
        flag_row = ["", "", ""]
        for weeks in SERVICE_SPANS:
            achieved, promised = record[f"achieved_{weeks}"], record[f"promised_{weeks}"]
            below = pd.notna(achieved) and achieved < promised - SERVICE_SHORTFALL
            row += [_count(record[f"weeks_{weeks}"]), _share(achieved, 1), _share(promised, 1)]
            flag_row += ["", "short" if below else "", ""]
        rows.append(row)
        flags.append(flag_row)
    headers = ["Scenario", "Region", "Role"]
    for weeks in SERVICE_SPANS:
        headers += [
            f"Weeks judged (last {weeks})",
            f"Achieved, last {weeks} weeks",
            f"Promised, last {weeks} weeks",
        ]
    return (
        title
        + _note(
            "Achieved service level: for each past day, the probability that the pool "
            "published for its week (by the last run before the week began), with the "
            "acceptance rate that week's offers showed, covered every request of the day; "
            "averaged over the days. A week whose requests exceeded the pool's weekly shift cap "
            f"counts as not covered. Highlighted: more than {100 * SERVICE_SHORTFALL:.0f} points "
            "under the promise."
        )
        + _table(
            headers,
            rows,
            right={4, 5, 7, 8},
            table_id="track-service",
            cell_classes=flags,
        )
    )


def _track_record_section(connection: Connection, as_of: dt.date, flags: pd.DataFrame) -> str:
    """What earlier runs' forecasts and pools came to, as the record stood at ``as_of``."""
    title = "Track record"
    scores = accuracy_by_band(connection, as_of, RECORD_WEEKS)
    held = service_levels(connection, as_of, SERVICE_SPANS)
    if scores.empty and held.empty:
        empty = _note(
            "No earlier published run has been scored yet: the track record begins with the "
            "next weekly run, or <code>staffcast replay</code> fills in past weeks."
        )
        drift = _flag_list(flags) if not flags.empty else ""
        return _section("track-record", title, drift + empty)
    weekly = _per_week(weekly_against_actual(connection, as_of, RECORD_WEEKS))
    parts = [
        _note(
            "How the forecasts and on-call pools that runs published did once their days had "
            f"passed, as the record stood at this run ({charts.esc(as_of.isoformat())}): each "
            "run scores the days of earlier runs that have passed since. The drift flags "
            "compare the latest weeks with the bands the forecasts and pools promised."
        ),
        "<h3>Drift</h3>",
        _flag_list(flags) if not flags.empty else _note("No measure left its band."),
    ]
    parts += [_against_actual(weekly), _accuracy_by_band(scores), _service_level_table(held)]
    return _section("track-record", title, "".join(parts))


# --- 5. facility demand -------------------------------------------------------------------------


def _facility_section(connection: Connection, run: dict[str, Any], max_charts: int | None) -> str:
    run_id, as_of = run["run_id"], run["as_of"]
    forecast_table = table("demand_forecast")
    history_table = table("demand_history")
    totals = _rows(
        connection,
        select(
            forecast_table.c.facility_id,
            forecast_table.c.role,
            func.sum(forecast_table.c.mean).label("total"),
            func.count().label("days"),
        )
        .where(forecast_table.c.run_id == run_id)
        .group_by(forecast_table.c.facility_id, forecast_table.c.role),
    )
    title = "Demand per facility"
    if totals.empty:
        return _section("facilities", title, _note("No facility forecasts in this run."))
    totals["per_day"] = totals["total"].astype(float) / totals["days"].clip(lower=1)
    totals = totals.sort_values(
        ["total", "facility_id", "role"], ascending=[False, True, True], kind="stable"
    ).reset_index(drop=True)
    limit = len(totals) if max_charts is None else max(0, int(max_charts))
    shown, left_out = totals.iloc[:limit], totals.iloc[limit:]

    facilities = sorted(set(shown["facility_id"]))
    columns = [forecast_table.c[name] for name in ("facility_id", "role", "date", "mean")]
    columns += [forecast_table.c[name] for name in ("p025", "p10", "p90", "p975")]
    forecast_query = select(*columns).where(forecast_table.c.run_id == run_id)
    # The chart window plus a year before it, for the "same period last year" line.
    first_history_day = as_of - dt.timedelta(
        days=charts.HISTORY_CHART_DAYS + charts.LAST_YEAR_SHIFT_DAYS
    )
    history_query = select(
        history_table.c.facility_id,
        history_table.c.role,
        history_table.c.date,
        history_table.c.demand,
    ).where(history_table.c.run_id == run_id, history_table.c.date >= first_history_day)
    if facilities and len(left_out):
        forecast_query = forecast_query.where(forecast_table.c.facility_id.in_(facilities))
        history_query = history_query.where(history_table.c.facility_id.in_(facilities))
    forecast = _rows(connection, forecast_query.order_by(forecast_table.c.date))
    history = _rows(connection, history_query.order_by(history_table.c.date))

    parts = [
        _note(
            "Daily demand in shifts (requests) per facility and role. Left of the dotted line: "
            f"what happened in the last {charts.HISTORY_CHART_DAYS // 7} weeks. Right of it: the "
            "forecast mean with the range demand should stay in on 8 days out of 10 (dark band) "
            "and 19 out of 20 (light band). The dashed line is the same period last year, shifted "
            "52 weeks so weekdays line up. Charts are ordered busiest first."
        ),
        charts.FACILITY_LEGEND,
    ]
    if len(left_out):
        parts.append(
            f'<p class="lead" id="facilities-left-out">Showing the {len(shown):,} busiest of '
            f"{len(totals):,} facility·role series by forecast demand; "
            f"<strong>{len(left_out):,} were left out</strong> to keep this file small. Their "
            "daily forecasts are in the <code>demand_forecast</code> table of the reporting "
            f"database (run <code>{charts.esc(run_id)}</code>), and the table at the end of this "
            "section lists each with its average forecast.</p>"
        )
    if len(shown):
        forecast["day"] = charts.day_offsets(forecast["date"], as_of)
        history["day"] = charts.day_offsets(history["date"], as_of)
        history = history.sort_values("day", kind="stable")
        forecast_groups = dict(tuple(forecast.groupby(["facility_id", "role"], sort=False)))
        history_groups = dict(tuple(history.groupby(["facility_id", "role"], sort=False)))
        if history.empty:
            parts.append(_note("This run stored no demand history: forecasts only."))
        role_order = (
            shown.groupby("role", sort=False)["total"].sum().sort_values(ascending=False).index
        )
        for role in role_order:
            in_role = shown[shown["role"] == role]
            figures = [
                charts.facility_demand_chart(
                    str(facility),
                    str(role),
                    forecast_groups[(facility, role)],
                    history_groups.get((facility, role)),
                    as_of,
                    int(run["horizon_days"]),
                )
                for facility in in_role["facility_id"]
                if (facility, role) in forecast_groups
            ]
            parts.append(
                f"<h3>{charts.esc(role)} ({len(figures):,} facilities)</h3>"
                f'<div class="charts">{"".join(figures)}</div>'
            )
    if len(left_out):
        rows = [
            [record.facility_id, record.role, _number(record.per_day), _number(record.total, 0)]
            for record in left_out.itertuples(index=False)
        ]
        parts.append(
            f"<details><summary>The {len(left_out):,} series without a chart</summary>"
            + _table(
                [
                    "Facility",
                    "Role",
                    "Forecast mean (shifts/day)",
                    "Forecast total over the horizon (shifts)",
                ],
                rows,
                right={2, 3},
            )
            + "</details>"
        )
    return _section("facilities", title, "".join(parts))


# --- demand lost to data problems (banner and data quality) --------------------------------------


def _impact_rows(connection: Connection, run_id: str) -> pd.DataFrame:
    """The run's ``data_quality_impact`` rows (none for runs published before it existed)."""
    impact = table("data_quality_impact")
    frame = _rows(
        connection,
        select(*(c for c in impact.c if c.name != "run_id")).where(impact.c.run_id == run_id),
    )
    for name in ("rows", "recent_shifts_used", "imputed_shifts", "window_days"):
        frame[name] = pd.to_numeric(frame[name]).astype("int64")
    for name in ("recent_shifts_lost", "recent_hours_lost"):
        frame[name] = pd.to_numeric(frame[name]).astype("float64")
    return frame


def region_losses(impact: pd.DataFrame, source: str = "quarantined") -> pd.DataFrame:
    """Per region and role, the demand lost to the ``source`` rows of ``impact``, worst first.

    ``impact`` has the columns of ``data_quality_impact`` (one row per facility). Columns:
    ``region``, ``role``, ``facilities`` (with lost rows), ``rows`` (all dates), ``lost`` and
    ``hours`` (recent shifts and hours lost), ``used`` (recent shifts used), ``imputed``
    (shifts put back, all dates), ``put_back`` (estimated recent shifts put back: per facility
    the smaller of its recent loss and its shifts put back, since a facility whose requests
    can be placed has its recent ones placed), ``missing`` (``lost - put_back``), ``share``
    (``lost / (used + lost)``, 0-1), ``missing_share`` (``missing / (used + lost)``) and
    ``window_days``.
    """
    columns = [
        "region",
        "role",
        "facilities",
        "rows",
        "lost",
        "hours",
        "used",
        "imputed",
        "put_back",
        "missing",
        "share",
        "missing_share",
        "window_days",
    ]
    rows = impact[impact["source"] == source]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(
        put_back=np.minimum(
            rows["recent_shifts_lost"].to_numpy(dtype=float),
            rows["imputed_shifts"].to_numpy(dtype=float),
        ),
        affected=(rows["rows"] > 0).astype(int),
    )
    grouped = (
        rows.groupby(["region", "role"], sort=False)
        .agg(
            facilities=("affected", "sum"),
            rows=("rows", "sum"),
            lost=("recent_shifts_lost", "sum"),
            hours=("recent_hours_lost", "sum"),
            used=("recent_shifts_used", "sum"),
            imputed=("imputed_shifts", "sum"),
            put_back=("put_back", "sum"),
            window_days=("window_days", "max"),
        )
        .reset_index()
    )
    total = (grouped["used"] + grouped["lost"]).to_numpy(dtype=float)
    safe = np.where(total > 0, total, 1.0)
    grouped["missing"] = (grouped["lost"] - grouped["put_back"]).clip(lower=0.0)
    grouped["share"] = np.where(total > 0, grouped["lost"] / safe, 0.0)
    grouped["missing_share"] = np.where(total > 0, grouped["missing"] / safe, 0.0)
    return grouped.sort_values(
        ["share", "lost", "region", "role"], ascending=[False, False, True, True], kind="stable"
    ).reset_index(drop=True)[columns]


def _shifts(value: float, decimals: int) -> str:
    """``143 shifts``, ``1 shift``, ``0.4 shifts``: a count of shifts as the banner says it."""
    shown = f"{value:,.{decimals}f}"
    return f"{shown} shift" if shown == "1" else f"{shown} shifts"


def _loss_sentence(record: Any) -> str:
    """The banner's line for one region and role (escaped HTML), short sentences."""
    name = charts.esc(f"{record.region} {record.role}")
    lost = float(record.lost)
    decimals = 0 if lost >= 10 else 1
    lost_shown = round(lost, decimals)
    put_back = min(round(float(record.put_back), decimals), lost_shown)
    missing = round(lost_shown - put_back, decimals)
    window = int(record.window_days)
    understated = float(record.missing_share)
    by = "less than 0.1%" if understated < 0.0005 else f"about {understated:.1%}"
    parts = [
        f"<strong>{name}</strong>: {float(record.share):.1%} of the last {window:,} days' "
        f"requests ({_shifts(lost_shown, decimals)}) are in quarantine."
    ]
    if missing <= 0:
        parts.append(
            "All of them were put back into the forecast history, where their date and "
            "facility were known."
        )
    elif put_back <= 0:
        parts.append(
            "None of them could be put back into the forecast history: their facility, role or "
            f"date is not known. So pools and hires for {name} may be understated by {by}."
        )
    else:
        parts.append(
            f"About {put_back:,.{decimals}f} of them were put back into the forecast history, "
            "where their date and facility were known. The other "
            f"{missing:,.{decimals}f} are not in the forecast, so pools and hires for {name} "
            f"may be understated by {by}."
        )
    return " ".join(parts)


def _loss_banner(impact: pd.DataFrame) -> str:
    """The warning at the top of the page, or ``""`` when no region and role loses more than
    :data:`LOSS_WARNING_SHARE` of its recent demand to quarantined rows."""
    losses = region_losses(impact, "quarantined")
    # Roles the plan does not cover (a CNA row quarantined for its role) have no pool to
    # understate; the data-quality tables still list them.
    affected = losses[(losses["share"] > LOSS_WARNING_SHARE) & losses["role"].isin(PLANNED_ROLES)]
    if affected.empty:
        return ""
    lines = "".join(f"<li>{_loss_sentence(record)}</li>" for record in affected.itertuples())
    return (
        '<div class="alert" role="alert" id="data-loss">'
        "<p><strong>Data problems hide demand.</strong></p>"
        f"<ul>{lines}</ul>"
        '<p>Fix the rows listed under <a href="#quality">Data quality</a>.</p></div>'
    )


def _impact_tables(impact: pd.DataFrame, run: dict[str, Any]) -> str:
    """The Data quality subsection on lost demand: quarantined and excluded separately."""
    parts = ["<h3>Demand the set-aside rows would have carried</h3>"]
    if impact.empty:
        quarantined, excluded = run.get("rows_quarantined"), run.get("rows_excluded")
        if quarantined == 0 and not excluded:
            parts.append(_note("No rows were quarantined or excluded, so no demand was lost."))
        else:
            parts.append(
                _note(
                    "No demand impact was recorded for this run (runs published before "
                    "staffcast measured it have none)."
                )
            )
        return "".join(parts)
    window = int(impact["window_days"].max())
    parts.append(
        _note(
            f"Recent means the last {window:,} days before the forecast starts: the weeks that "
            "set the level of every forecast. Shifts lost are the requests these rows would have "
            "counted as (estimated where a date or the hours were unreadable); the share is "
            "shifts lost out of shifts used plus lost, per region and role. Put back counts the "
            "lost requests, of any date, that went back into the forecast history because "
            "their date and facility were known."
        )
    )
    headers = [
        "Region",
        "Role",
        "Facilities",
        "Rows (all dates)",
        f"Shifts lost (last {window:,} days)",
        f"Hours lost (last {window:,} days)",
        f"Shifts used (last {window:,} days)",
        "Share of recent demand lost",
        "Put back (shifts, all dates)",
    ]

    def rows_of(losses: pd.DataFrame) -> list[list[Any]]:
        return [
            [
                record.region,
                record.role,
                int(record.facilities),
                int(record.rows),
                _number(record.lost),
                _number(record.hours),
                int(record.used),
                _share(record.share, 1),
                int(record.imputed),
            ]
            for record in losses.itertuples(index=False)
        ]

    quarantined = region_losses(impact, "quarantined")
    parts.append("<h3>Lost to quarantined rows</h3>")
    if quarantined.empty:
        parts.append(_note("No demand was lost to quarantined rows."))
    else:
        classes = ["loss" if share > LOSS_WARNING_SHARE else "" for share in quarantined["share"]]
        parts.append(
            _note(
                f"Highlighted: more than {LOSS_WARNING_SHARE:.0%} of the recent demand lost "
                "(the banner at the top of the report)."
            )
        )
        parts.append(
            _table(headers, rows_of(quarantined), classes, right={4, 5, 7}, table_id="impact")
        )
        facilities = impact[(impact["source"] == "quarantined") & (impact["rows"] > 0)]
        facilities = facilities.sort_values(
            ["recent_shifts_lost", "rows", "region", "role", "facility_id"],
            ascending=[False, False, True, True, True],
            kind="stable",
        )
        parts.append(
            f"<details><summary>Per facility ({len(facilities):,})</summary>"
            + _table(
                [
                    "Facility",
                    "Region",
                    "Role",
                    "Rows (all dates)",
                    f"Shifts lost (last {window:,} days)",
                    f"Shifts used (last {window:,} days)",
                    "Put back (shifts, all dates)",
                ],
                [
                    [
                        record.facility_id,
                        record.region,
                        record.role,
                        int(record.rows),
                        _number(record.recent_shifts_lost),
                        int(record.recent_shifts_used),
                        int(record.imputed_shifts),
                    ]
                    for record in facilities.itertuples(index=False)
                ],
                right={4},
            )
            + "</details>"
        )
    excluded = region_losses(impact, "excluded")
    parts.append("<h3>In excluded rows (out of scope)</h3>")
    if excluded.empty:
        parts.append(_note("No rows were excluded."))
    else:
        parts.append(
            _note(
                "Rows the agency chose to leave out of the plan (for example roles it does not "
                "staff). They are shown for information: never warned about, never put back."
            )
        )
        parts.append(_table(headers, rows_of(excluded), right={4, 5, 7}, table_id="excluded"))
    return "".join(parts)


# --- 6. data quality ----------------------------------------------------------------------------


def _quality_section(connection: Connection, run: dict[str, Any], impact: pd.DataFrame) -> str:
    run_id = run["run_id"]
    quarantined = table("quarantined_row")
    by_rule = connection.execute(
        select(quarantined.c.source_table, quarantined.c.rule, func.count().label("n"))
        .where(quarantined.c.run_id == run_id)
        .group_by(quarantined.c.source_table, quarantined.c.rule)
        .order_by(func.count().desc(), quarantined.c.source_table, quarantined.c.rule)
    ).all()
    validation = table("validation_result")
    results = _rows(
        connection,
        select(
            validation.c.source_table,
            validation.c.rule,
            validation.c.level,
            validation.c.description,
            validation.c.failed_rows,
            validation.c.example,
        )
        .where(validation.c.run_id == run_id)
        .order_by(validation.c.source_table, validation.c.rule),
    )
    parts = [
        _note(
            "Shift requests read from the source system for this run, how many fed the "
            "forecast, how many were set aside (quarantined) because they broke a data rule, "
            "and how many were excluded as out of the agency's scope. Quarantined rows are kept "
            "in the <code>quarantined_row</code> table for follow-up."
        ),
        _table(
            ["Requests extracted (rows)", "Used (rows)", "Quarantined (rows)", "Excluded (rows)"],
            [
                [
                    run["rows_extracted"],
                    run["rows_used"],
                    run["rows_quarantined"],
                    run.get("rows_excluded"),
                ]
            ],
        ),
        _impact_tables(impact, run),
        "<h3>Quarantined rows by rule</h3>",
        _table(["Source table", "Rule", "Rows quarantined"], by_rule)
        if by_rule
        else _note("No rows were quarantined."),
        "<h3>Data-contract rules that found problems</h3>",
    ]
    if results.empty:
        parts.append(_note("No data-contract results stored for this run."))
    else:
        failed = results[results["failed_rows"] > 0]
        parts.append(
            _note(
                f"{len(results):,} rules checked on {results['source_table'].nunique():,} source "
                f"tables; {len(failed):,} found problems. Row rules quarantine the rows that "
                "break them; batch rules stop the run."
            )
        )
        if not failed.empty:
            parts.append(
                _table(
                    ["Source table", "Rule", "Level", "What it checks", "Rows failing", "Example"],
                    [
                        [
                            record.source_table,
                            record.rule,
                            record.level,
                            record.description,
                            int(record.failed_rows),
                            record.example if isinstance(record.example, str) else None,
                        ]
                        for record in failed.itertuples(index=False)
                    ],
                    wrap={3, 5},
                )
            )
    return _section("quality", "Data quality", "".join(parts))


# --- 7. accuracy --------------------------------------------------------------------------------


def _accuracy_section(connection: Connection, run_id: str) -> str:
    evaluation = table("model_evaluation")
    chosen = _rows(
        connection,
        select(
            evaluation.c.facility_id,
            evaluation.c.role,
            evaluation.c.model,
            evaluation.c.mase,
            evaluation.c.mae,
            evaluation.c.coverage80,
            evaluation.c.n_backtest_days,
        ).where(evaluation.c.run_id == run_id, evaluation.c.selected.is_(True)),
    )
    title = "Forecast accuracy"
    if chosen.empty:
        return _section("accuracy", title, _note("No backtests stored for this run."))
    for column in ("mase", "mae", "coverage80"):
        chosen[column] = pd.to_numeric(chosen[column], errors="coerce")

    def summary_row(label: Any, group: pd.DataFrame) -> list[Any]:
        return [
            label,
            len(group),
            _number(group["mase"].median(), 2),
            _number(group["mase"].mean(), 2),
            _number(group["mae"].mean(), 2),
            _share(group["coverage80"].mean()),
        ]

    rows = [summary_row(Markup("<strong>All series</strong>"), chosen)]
    by_model = sorted(chosen.groupby("model"), key=lambda item: (-len(item[1]), str(item[0])))
    rows += [summary_row(model, group) for model, group in by_model]
    worst = chosen.dropna(subset=["mase"]).sort_values(
        ["mase", "facility_id", "role"], ascending=[False, True, True]
    )
    worst_rows = [
        [
            record.facility_id,
            record.role,
            record.model,
            _number(record.mase, 2),
            _number(record.mae, 2),
            _share(record.coverage80),
            record.n_backtest_days if pd.notna(record.n_backtest_days) else None,
        ]
        for record in worst.head(5).itertuples(index=False)
    ]
    body = (
        _note(
            "How well each series' chosen model forecast the most recent weeks it had not seen "
            "(backtests). MASE below 1 means more accurate than simply repeating last week; the "
            "80% interval should contain about 80% of actual days (much less: the bands are too "
            "narrow, plan with more slack). Series is one facility and role."
        )
        + _table(
            [
                "Model",
                "Series (count)",
                "Median MASE",
                "Mean MASE",
                "Mean MAE (shifts/day)",
                "Mean 80% coverage",
            ],
            rows,
            right={2, 3, 4, 5},
        )
        + "<h3>Hardest series</h3>"
        + (
            _table(
                [
                    "Facility",
                    "Role",
                    "Model",
                    "MASE",
                    "MAE (shifts/day)",
                    "80% coverage",
                    "Backtest days",
                ],
                worst_rows,
                right={3, 4, 5},
            )
            if worst_rows
            else _note("No series has a MASE.")
        )
    )
    return _section("accuracy", title, body)


# --- the page -----------------------------------------------------------------------------------

_NAV = (
    "<nav>"
    '<a href="#hiring">Hiring targets</a><a href="#pool">On-call pool</a>'
    '<a href="#holidays">Holidays</a><a href="#track-record">Track record</a>'
    '<a href="#facilities">Facilities</a>'
    '<a href="#quality">Data quality</a><a href="#accuracy">Accuracy</a>'
    "</nav>"
)


def _render(connection: Connection, run: dict[str, Any], max_facility_charts: int | None) -> str:
    run_id = run["run_id"]
    title = f"staffcast plan as of {_text(run['as_of'])}"
    meta = (
        f"Run {_text(run_id)} · published {_text(run['finished_at'])} · "
        f"code {_text(run['code_version'])} · horizon {_text(run['horizon_days'])} days · "
        "demand in shifts (requests), pools and hires in nurses"
    )
    impact = _impact_rows(connection, run_id)
    flags = _ordered_flags(flags_of(connection, run_id))
    sections = [
        _hiring_section(connection, run_id),
        _pool_section(connection, run_id),
        _holiday_section(connection, run_id),
        _track_record_section(connection, run["as_of"], flags),
        _facility_section(connection, run, max_facility_charts),
        _quality_section(connection, run, impact),
        _accuracy_section(connection, run_id),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<h1>{title}</h1><p class='meta'>{meta}</p>"
        f"{_drift_banner(flags)}{_loss_banner(impact)}{_NAV}"
        f"{''.join(sections)}</body></html>\n"
    )


def write_atomically(path: Path, content: str, newline: str | None = None) -> None:
    """Write UTF-8 text to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline=newline) as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report(
    engine: Engine,
    path: Path,
    run_id: str | None = None,
    *,
    max_facility_charts: int | None = MAX_FACILITY_CHARTS,
) -> Path:
    """Write the HTML report of a published run (default: the current one) to ``path``.

    ``max_facility_charts`` caps the per-facility demand charts (facility and role series,
    busiest by forecast demand first; ``None``: all); the report says how many were left out
    and lists them. Raises ``ValueError`` when there is no published run (or ``run_id`` is
    unknown or not published). The file is replaced atomically, so a reader never sees half a
    report. Returns ``path``.
    """
    path = Path(path)
    run = published_run(engine, run_id)
    with engine.connect() as connection:
        content = _render(connection, run, max_facility_charts)
    write_atomically(path, content)
    return path
