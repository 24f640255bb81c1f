"""Inline-SVG charts for the HTML report: no scripts, no third-party code.

The building blocks: a :class:`Frame` maps data (x in days or weeks, y in shifts or nurses) to
pixels inside an SVG ``viewBox``; :func:`line_path`, :func:`band_path`, :func:`step_path` and the
axes return SVG fragments as strings. Coordinates are rounded to 0.1 px and written without
trailing zeros, and a path's points after the first ``M`` are implicit line-tos, so a chart of a
year of days stays a few kilobytes. Built from them, the report's charts:
:func:`weekly_pool_chart` (on-call pool per region, one role), :func:`facility_demand_chart`
(history, forecast bands, last year, for one facility and role) and
:func:`weekly_accuracy_chart` (the track record: weekly demand against what earlier runs
forecast for it, for one region and role).

Every piece of text that reaches the SVG (labels, tooltips, attribute values) goes through
:func:`html.escape`: region and facility names are free text. Styling is by CSS class, defined
in :data:`CHART_CSS`, which the report puts in its stylesheet.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "ACCURACY_LEGEND",
    "CHART_CSS",
    "FACILITY_LEGEND",
    "HISTORY_CHART_DAYS",
    "LAST_YEAR_SHIFT_DAYS",
    "Frame",
    "band_path",
    "coordinate",
    "day_offsets",
    "facility_demand_chart",
    "line_path",
    "nice_ticks",
    "step_path",
    "svg",
    "weekly_accuracy_chart",
    "weekly_pool_chart",
    "x_axis",
    "y_axis",
]

#: Days of history before as_of drawn in each facility chart (26 weeks).
HISTORY_CHART_DAYS = 182
#: "Same period last year" is the history 52 weeks earlier, so weekdays line up.
LAST_YEAR_SHIFT_DAYS = 364

SERIES_COLOURS = (
    "#2563eb",
    "#d97706",
    "#059669",
    "#dc2626",
    "#7c3aed",
    "#0891b2",
    "#be185d",
    "#4d7c0f",
)

#: Styles of every class the charts use (series colours ``s0``..``s7``).
CHART_CSS = """
.legend { font-size: 0.8rem; color: #3e4c59; margin: 0.3rem 0; }
.legend span { margin-right: 1rem; white-space: nowrap; }
.legend svg { width: 22px; height: 10px; vertical-align: middle; margin-right: 0.25rem; }
svg.chart { width: 100%; height: auto; display: block; }
svg.pool { width: 100%; max-width: 900px; height: auto; display: block; }
svg text { font-size: 10px; fill: #52606d; }
.yt { text-anchor: end; dominant-baseline: middle; }
.xt { text-anchor: middle; }
.grid { stroke: #e4e7eb; fill: none; }
.axis { stroke: #9aa5b1; fill: none; }
.hist { stroke: #1f2933; fill: none; stroke-width: 1; }
.mean { stroke: #2563eb; fill: none; stroke-width: 1.4; }
.b80 { fill: #2563eb; fill-opacity: 0.25; stroke: none; }
.b95 { fill: #2563eb; fill-opacity: 0.1; stroke: none; }
.ly { stroke: #7b8794; fill: none; stroke-dasharray: 3 2; }
.asof { stroke: #d97706; fill: none; stroke-dasharray: 2 2; }
path.step { fill: none; stroke-width: 1.6; }
.actual { stroke: #1f2933; fill: none; stroke-width: 1.6; }
.ahead7 { stroke: #2563eb; fill: none; stroke-width: 1.4; }
.ahead28 { stroke: #d97706; fill: none; stroke-width: 1.2; stroke-dasharray: 4 3; }
circle.actual { fill: #1f2933; stroke: none; }
circle.ahead7 { fill: #2563eb; stroke: none; }
circle.ahead28 { fill: #d97706; stroke: none; }
""" + "".join(
    f".s{index} {{ stroke: {colour}; fill: {colour}; }}\n"
    for index, colour in enumerate(SERIES_COLOURS)
)


def coordinate(value: float) -> str:
    """A pixel coordinate rounded to 0.1 and written compactly (``12`` not ``12.0``)."""
    rounded = round(float(value), 1)
    if rounded == 0:
        return "0"
    return f"{rounded:g}" if abs(rounded) < 1e5 else f"{rounded:.1f}"


def esc(value: object) -> str:
    """``value`` as text safe inside SVG/HTML text and quoted attributes."""
    return html.escape(str(value), quote=True)


def _pairs(xs: np.ndarray, ys: np.ndarray) -> list[str]:
    return [
        f"{coordinate(x)} {coordinate(y)}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True)
    ]


@dataclass(frozen=True)
class Frame:
    """The plotting area of one chart: data domain ``[x0, x1] x [y0, y1]`` onto pixels.

    ``width`` and ``height`` are the whole SVG in px; the margins leave room for tick labels.
    """

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 560
    height: int = 190
    left: int = 38
    right: int = 8
    top: int = 8
    bottom: int = 22

    def x(self, values: np.ndarray | float) -> np.ndarray:
        """Pixel x of data x (array in, array out)."""
        span = (self.x1 - self.x0) or 1.0
        inner = self.width - self.left - self.right
        return self.left + (np.asarray(values, dtype=float) - self.x0) / span * inner

    def y(self, values: np.ndarray | float) -> np.ndarray:
        """Pixel y of data y; larger values are higher up."""
        span = (self.y1 - self.y0) or 1.0
        inner = self.height - self.top - self.bottom
        return self.top + (1.0 - (np.asarray(values, dtype=float) - self.y0) / span) * inner

    @property
    def plot_bottom(self) -> float:
        return float(self.height - self.bottom)

    @property
    def plot_right(self) -> float:
        return float(self.width - self.right)


def nice_ticks(high: float, count: int = 4) -> list[float]:
    """Round tick values ``0, step, 2*step, ...`` whose last tick is at least ``high``.

    The step is 1, 2, 2.5 or 5 times a power of ten (at least 1 for counts of nurses or shifts
    above 4), so ticks read as whole numbers where the data are whole.
    """
    if not math.isfinite(high) or high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)
    if high > count and step < 1:
        step = 1.0
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(last + 1)]


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def line_path(xs: np.ndarray, ys: np.ndarray, frame: Frame, max_gap: float = 1.0) -> str:
    """Path data for a line through the points, broken where x jumps by more than ``max_gap``.

    Points with a missing (NaN) y are left out and also break the line. ``xs`` must be sorted.
    """
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    breaks = np.ones(len(xs), dtype=bool)
    if len(xs) > 1:
        breaks[1:] = (np.diff(xs) > max_gap + 1e-9) | ~keep[:-1]
    px, py = frame.x(xs), frame.y(ys)
    segments: list[str] = []
    current: list[str] = []
    for index in range(len(xs)):
        if not keep[index]:
            continue
        if breaks[index] and current:
            segments.append("M" + " ".join(current))
            current = []
        current.append(f"{coordinate(px[index])} {coordinate(py[index])}")
    if current:
        segments.append("M" + " ".join(current))
    return "".join(segments)


def band_path(xs: np.ndarray, lower: np.ndarray, upper: np.ndarray, frame: Frame) -> str:
    """Path data for the closed area between ``lower`` and ``upper`` (points with NaN dropped)."""
    xs = np.asarray(xs, dtype=float)
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(lower) & np.isfinite(upper)
    if not keep.any():
        return ""
    px = frame.x(xs[keep])
    top = _pairs(px, frame.y(upper[keep]))
    bottom = _pairs(px[::-1], frame.y(lower[keep][::-1]))
    return "M" + " ".join(top) + " " + " ".join(bottom) + "Z"


def step_path(edges: np.ndarray, ys: np.ndarray, frame: Frame) -> str:
    """Path data for a staircase: level ``ys[i]`` from ``edges[i]`` to ``edges[i + 1]``."""
    edges = np.asarray(edges, dtype=float)
    ys = np.asarray(ys, dtype=float)
    if len(ys) == 0:
        return ""
    px, py = frame.x(edges), frame.y(ys)
    parts = [f"M{coordinate(px[0])} {coordinate(py[0])}H{coordinate(px[1])}"]
    for index in range(1, len(ys)):
        parts.append(f"V{coordinate(py[index])}H{coordinate(px[index + 1])}")
    return "".join(parts)


def y_axis(frame: Frame, ticks: Sequence[float]) -> str:
    """Horizontal grid lines with tick labels on the left."""
    parts = []
    for tick in ticks:
        y = coordinate(float(frame.y(tick)))
        parts.append(
            f'<path class="grid" d="M{frame.left} {y}H{coordinate(frame.plot_right)}"/>'
            f'<text class="yt" x="{frame.left - 4}" y="{y}">{esc(_tick_label(tick))}</text>'
        )
    return "".join(parts)


def x_axis(frame: Frame, positions: Sequence[float], labels: Sequence[str]) -> str:
    """The baseline and small tick marks with labels under the plot at data x ``positions``."""
    bottom = coordinate(frame.plot_bottom)
    parts = [f'<path class="axis" d="M{frame.left} {bottom}H{coordinate(frame.plot_right)}"/>']
    for position, label in zip(positions, labels, strict=True):
        x = coordinate(float(frame.x(position)))
        parts.append(
            f'<path class="axis" d="M{x} {bottom}v3"/>'
            f'<text class="xt" x="{x}" y="{coordinate(frame.plot_bottom + 14)}">'
            f"{esc(label)}</text>"
        )
    return "".join(parts)


def svg(frame: Frame, body: str, title: str, css_class: str = "chart") -> str:
    """Wrap ``body`` in an ``<svg>`` with a ``<title>`` (the tooltip and the accessible name)."""
    return (
        f'<svg class="{esc(css_class)}" viewBox="0 0 {frame.width} {frame.height}" '
        f'role="img"><title>{esc(title)}</title>{body}</svg>'
    )


def _week_labels(weeks: list[dt.date], every: int) -> tuple[list[float], list[str]]:
    """Positions (week index) and ``Oct 6`` labels of every ``every``-th week."""
    picked = range(0, len(weeks), every)
    return [float(i) for i in picked], [f"{weeks[i]:%b} {weeks[i].day}" for i in picked]


def weekly_pool_chart(role: str, pool: pd.DataFrame, weeks: list[dt.date]) -> tuple[str, str]:
    """One role's weekly on-call pools: the SVG (one step series per region) and an HTML legend.

    ``pool`` has columns region, week_start, recommended_pool (nurses), peak_day_p95 and
    weekly_demand_mean (shifts); ``weeks`` are the Monday week starts along the x axis. Each
    series is a ``<g class="series">`` with a point and a ``<title>`` tooltip per week.
    """
    index = {week: position for position, week in enumerate(weeks)}
    ticks = nice_ticks(float(pool["recommended_pool"].max()), 5)
    frame = Frame(0, len(weeks), 0, ticks[-1], width=900, height=240, left=44, bottom=24)
    positions, labels = _week_labels(weeks, max(1, round(len(weeks) / 9)))
    body = [y_axis(frame, ticks), x_axis(frame, [p + 0.5 for p in positions], labels)]
    legend = []
    for number, (region, series) in enumerate(pool.groupby("region", sort=True)):
        series = series.sort_values("week_start")
        colour = f"s{number % len(SERIES_COLOURS)}"
        x = np.array([index[week] for week in series["week_start"]], dtype=float)
        y = series["recommended_pool"].to_numpy(dtype=float)
        edges = np.append(x, x[-1] + 1)
        points = []
        for week, px, py, record in zip(
            series["week_start"],
            frame.x(x + 0.5),
            frame.y(y),
            series.itertuples(index=False),
            strict=True,
        ):
            tip = (
                f"{region} · {role}, week of {week.isoformat()}: "
                f"{int(record.recommended_pool):,} nurses on call "
                f"(busiest day p95 {record.peak_day_p95:,.1f} shifts, "
                f"week mean {record.weekly_demand_mean:,.1f} shifts)"
            )
            points.append(
                f'<circle class="{colour}" cx="{coordinate(px)}" '
                f'cy="{coordinate(py)}" r="2.6"><title>{esc(tip)}</title></circle>'
            )
        body.append(
            f'<g class="series" data-region="{esc(region)}" data-role="{esc(role)}">'
            f'<path class="step {colour}" d="{step_path(edges, y, frame)}"/>'
            f"{''.join(points)}</g>"
        )
        legend.append(
            f'<span><svg viewBox="0 0 22 10"><path class="step {colour}" d="M1 5H21"/></svg>'
            f"{esc(region)}</span>"
        )
    title = f"Recommended on-call pool per week, {role} (nurses), by region"
    return svg(frame, "".join(body), title, "pool"), "".join(legend)


def day_offsets(dates: pd.Series, as_of: dt.date) -> np.ndarray:
    """Whole days from ``as_of`` (negative before it)."""
    if dates.empty:
        return np.empty(0, dtype=float)
    stamps = pd.to_datetime(dates)
    return ((stamps - pd.Timestamp(as_of)) // pd.Timedelta(days=1)).to_numpy(dtype=float)


def _month_ticks(as_of: dt.date, start: int, end: int) -> tuple[list[float], list[str]]:
    """Month starts between day offsets ``start`` and ``end``, labelled ``Feb`` (or the year)."""
    first = as_of + dt.timedelta(days=start)
    month = dt.date(first.year, first.month, 1)
    positions: list[float] = []
    labels: list[str] = []
    while True:
        offset = (month - as_of).days
        if offset > end:
            break
        if offset >= start:
            positions.append(float(offset))
            labels.append(str(month.year) if month.month == 1 else f"{month:%b}")
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return positions, labels


FACILITY_LEGEND = (
    '<div class="legend">'
    '<span><svg viewBox="0 0 22 10"><path class="hist" d="M1 5H21"/></svg>observed demand</span>'
    '<span><svg viewBox="0 0 22 10"><path class="mean" d="M1 5H21"/></svg>forecast mean</span>'
    '<span><svg viewBox="0 0 22 10"><path class="b80" d="M1 1H21V9H1Z"/></svg>'
    "80% band (p10&ndash;p90)</span>"
    '<span><svg viewBox="0 0 22 10"><path class="b95" d="M1 1H21V9H1Z"/></svg>'
    "95% band (p2.5&ndash;p97.5)</span>"
    '<span><svg viewBox="0 0 22 10"><path class="ly" d="M1 5H21"/></svg>'
    "same period last year (52 weeks earlier)</span>"
    '<span><svg viewBox="0 0 22 10"><path class="asof" d="M11 0V10"/></svg>as of</span>'
    "</div>"
)


def _band(css_class: str, xs: np.ndarray, low: pd.Series, high: pd.Series, frame: Frame) -> str:
    return f'<path class="{css_class}" d="{band_path(xs, low, high, frame)}"/>'


def facility_demand_chart(
    facility: str,
    role: str,
    forecast: pd.DataFrame,
    history: pd.DataFrame | None,
    as_of: dt.date,
    horizon_days: int,
) -> str:
    """One facility and role as a ``<figure>``: history, forecast bands and mean, last year.

    ``forecast`` has a ``day`` column (days from ``as_of``) and mean, p025, p10, p90, p975 in
    shifts; ``history`` (or None) has ``day`` and ``demand``, sorted by day. The x axis runs from
    :data:`HISTORY_CHART_DAYS` before ``as_of`` to the end of the horizon, with a dotted line at
    ``as_of``; the y axis starts at 0.
    """
    fx = forecast["day"].to_numpy(dtype=float)
    start = -HISTORY_CHART_DAYS
    end = int(max(horizon_days - 1, np.max(fx, initial=0.0)))
    highs = [float(np.nanmax(forecast["p975"].to_numpy(dtype=float), initial=0.0))]
    hx = hy = ly_x = ly_y = np.empty(0)
    if history is not None and not history.empty:
        days = history["day"].to_numpy(dtype=float)
        demand = history["demand"].to_numpy(dtype=float)
        recent = days >= start
        hx, hy = days[recent], demand[recent]
        shifted = days + LAST_YEAR_SHIFT_DAYS
        last_year = (shifted >= start) & (shifted <= end)
        ly_x, ly_y = shifted[last_year], demand[last_year]
        highs += [float(np.max(hy, initial=0.0)), float(np.max(ly_y, initial=0.0))]
    ticks = nice_ticks(max(highs) * 1.02, 4)
    frame = Frame(start, end + 1, 0, ticks[-1])
    positions, labels = _month_ticks(as_of, start, end)
    as_of_x = coordinate(float(frame.x(0)))
    body = [
        y_axis(frame, ticks),
        x_axis(frame, positions, labels),
        _band("b95", fx, forecast["p025"], forecast["p975"], frame),
        _band("b80", fx, forecast["p10"], forecast["p90"], frame),
    ]
    if len(ly_x):
        body.append(f'<path class="ly" d="{line_path(ly_x, ly_y, frame)}"/>')
    if len(hx):
        body.append(f'<path class="hist" d="{line_path(hx, hy, frame)}"/>')
    body.append(f'<path class="mean" d="{line_path(fx, forecast["mean"], frame)}"/>')
    body.append(f'<path class="asof" d="M{as_of_x} {frame.top}V{coordinate(frame.plot_bottom)}"/>')
    mean_per_day = float(forecast["mean"].mean()) if len(forecast) else float("nan")
    title = (
        f"{facility} · {role}: daily demand in shifts; forecast mean {mean_per_day:,.1f} "
        f"shifts/day from {as_of.isoformat()}"
    )
    caption = (
        f"<figcaption><strong>{esc(facility)}</strong> · {esc(role)} &mdash; forecast "
        f"{esc(f'{mean_per_day:,.1f}')} shifts/day</figcaption>"
    )
    return (
        f'<figure class="facility" data-facility="{esc(facility)}" data-role="{esc(role)}">'
        f"{caption}{svg(frame, ''.join(body), title)}</figure>"
    )


ACCURACY_LINES: tuple[tuple[str, str], ...] = (
    ("actual", "actual demand"),
    ("ahead_1_7", "forecast 1-7 days ahead"),
    ("ahead_8_28", "forecast 8-28 days ahead"),
)
"""The columns :func:`weekly_accuracy_chart` draws, with what each line is."""
_ACCURACY_CLASSES = {"actual": "actual", "ahead_1_7": "ahead7", "ahead_8_28": "ahead28"}

ACCURACY_LEGEND = (
    '<div class="legend">'
    + "".join(
        f'<span><svg viewBox="0 0 22 10"><path class="{_ACCURACY_CLASSES[column]}" '
        f'd="M1 5H21"/></svg>{esc(label)}</span>'
        for column, label in ACCURACY_LINES
    )
    + "</div>"
)


def weekly_accuracy_chart(
    region: str, role: str, weekly: pd.DataFrame, weeks: list[dt.date]
) -> str:
    """One region and role's weekly demand against what earlier runs forecast, as a ``<figure>``.

    ``weekly`` has ``week_start`` and the :data:`ACCURACY_LINES` columns, in shifts per 7-day
    week (NaN where unknown); ``weeks`` are the Monday week starts along the x axis (the same
    for every chart, so they line up). A line breaks at a week without a value; every point has
    a ``<title>`` tooltip with its number.
    """
    index = {week: position for position, week in enumerate(weeks)}
    weekly = weekly.sort_values("week_start")
    x = np.array([index[week] for week in weekly["week_start"]], dtype=float)
    values = weekly[[column for column, _ in ACCURACY_LINES]].to_numpy(dtype=float)
    high = float(np.nanmax(values, initial=0.0)) if np.isfinite(values).any() else 0.0
    ticks = nice_ticks(high * 1.02, 4)
    frame = Frame(-0.5, len(weeks) - 0.5, 0, ticks[-1], width=430, height=170)
    labelled = _week_labels(weeks, max(1, math.ceil(len(weeks) / 6)))  # about six labels
    body = [y_axis(frame, ticks), x_axis(frame, *labelled)]
    for column, label in ACCURACY_LINES:
        css_class = _ACCURACY_CLASSES[column]
        y = weekly[column].to_numpy(dtype=float)
        body.append(f'<path class="{css_class}" d="{line_path(x, y, frame)}"/>')
        for week, px, py, value in zip(
            weekly["week_start"], frame.x(x), frame.y(y), y, strict=True
        ):
            if not math.isfinite(value):
                continue
            tip = f"{region} · {role}, week of {week.isoformat()}: {label} {value:,.1f}"
            tip += " shifts/week"
            body.append(
                f'<circle class="{css_class}" cx="{coordinate(px)}" cy="{coordinate(py)}" '
                f'r="2.2"><title>{esc(tip)}</title></circle>'
            )
    title = (
        f"{region} · {role}: demand per week (shifts) against the forecasts made 1-7 and 8-28 "
        "days ahead"
    )
    caption = f"<figcaption><strong>{esc(region)}</strong> · {esc(role)}</figcaption>"
    return (
        f'<figure class="accuracy" data-region="{esc(region)}" data-role="{esc(role)}">'
        f"{caption}{svg(frame, ''.join(body), title)}</figure>"
    )
