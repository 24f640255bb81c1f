"""``staffcast forecast``: the forecasting engine on any daily series in a CSV file.

Input: long format ``series_id,date,demand`` (one row per series and day; missing days are
filled with 0; demand >= 0). Output: ``series_id,date,mean,p025,p10,p50,p80,p90,p95,p975,model``,
each series starting the day after its own last date.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from models.calendar import HolidayCalendar
from models.count_distribution import QUANTILE_COLUMNS
from models.forecasting import forecast_many
from staffcast.errors import StaffcastError

REQUIRED = ("series_id", "date", "demand")


def read_history(path: Path) -> pd.DataFrame:
    """Read and check a long-format history CSV; errors name the file, rule and an example."""
    try:
        frame = pd.read_csv(path, dtype={"series_id": str})
    except FileNotFoundError as exc:
        raise StaffcastError(f"Input file {path} does not exist.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise StaffcastError(f"Input file {path} is not a readable CSV file ({exc}).") from exc
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise StaffcastError(
            f"Input file {path} is missing column(s) {', '.join(missing)}; it needs "
            f"series_id,date,demand and has {', '.join(map(str, frame.columns))}."
        )
    dates = pd.to_datetime(frame["date"], format="ISO8601", errors="coerce")
    demand = pd.to_numeric(frame["demand"], errors="coerce")
    for mask, rule in (
        (dates.isna(), "date must be a date such as 2025-01-31"),
        (demand.isna(), "demand must be a number"),
        (demand < 0, "demand must not be negative"),
    ):
        if mask.any():
            row = frame[mask].iloc[0]
            raise StaffcastError(
                f"Input file {path}: {int(mask.sum())} row(s) break the rule '{rule}', for "
                f"example series {row['series_id']} date {row['date']} demand {row['demand']}."
            )
    frame = frame.assign(date=dates.dt.normalize(), demand=demand)
    frame = frame.groupby(["series_id", "date"], as_index=False)["demand"].sum()
    filled = []
    for sid, group in frame.groupby("series_id"):
        days = pd.date_range(group["date"].min(), group["date"].max(), freq="D")
        filled.append(
            group.set_index("date")["demand"]
            .reindex(days, fill_value=0.0)
            .rename_axis("date")
            .reset_index()
            .assign(series_id=sid)
        )
    return pd.concat(filled, ignore_index=True)


def _progress(done: int, total: int) -> None:
    """One stderr line per tenth of the series (long files take minutes)."""
    step = max(1, total // 10)
    if total >= 50 and (done % step == 0 or done == total):
        print(f"forecast: {done}/{total} series", file=sys.stderr, flush=True)


def forecast_file(
    input_path: Path,
    horizon: int,
    output_path: Path,
    country: str = "US",
    subdivision: str | None = None,
) -> int:
    """Forecast every series in ``input_path`` for ``horizon`` days; returns rows written.

    Holidays are those of ``country`` (and ``subdivision``) from the ``holidays`` package plus
    the agency days; the engine is the one the weekly flow uses.
    """
    if horizon < 1:
        raise StaffcastError(f"--horizon must be at least 1 day, got {horizon}.")
    calendar = HolidayCalendar(country.upper(), subdivision)
    try:
        calendar.validate()
    except ValueError as exc:
        raise StaffcastError(f"--country/--subdivision: {exc}") from exc
    history = read_history(input_path)
    result = forecast_many(history, horizon, calendar=calendar, progress=_progress)
    out = result.with_quantiles()
    out["date"] = out["date"].dt.date
    columns = ["series_id", "date", "mean", *QUANTILE_COLUMNS, "model"]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    out[columns].to_csv(output_path, index=False, float_format="%.4f")
    return len(out)
