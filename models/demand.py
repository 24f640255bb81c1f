"""Daily demand per facility and role, by the SPEC §2 definition.

Demand is what facilities asked for, not what was filled: a request counts on the local date of
its shift start in the facility's zone, in shifts (requests) and hours, whether filled or
unfilled. A request cancelled by the facility counts only if it was cancelled less than
``late_cancellation_hours`` before the shift started; a cancellation made at or after as_of had
not happened yet at as_of, so that request is still live.

Output frames are long (STYLE 1): ``series_id, facility_id, role, region, date, demand, hours``.
``series_id`` is ``"<facility_id>:<role>"``.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

SERIES_COLUMNS = ["series_id", "facility_id", "role", "region", "date", "demand", "hours"]


def series_id(facility_id: pd.Series, role: pd.Series) -> pd.Series:
    """The id of a (facility, role) series."""
    return facility_id.astype(str) + ":" + role.astype(str)


def counted_requests(
    requests: pd.DataFrame, as_of_utc: pd.Timestamp, late_cancellation_hours: float
) -> pd.DataFrame:
    """The requests that count as demand, with their local shift date.

    ``requests`` needs facility_id, role, shift_start (UTC), shift_hours, status, cancelled_at
    (UTC) and ``timezone`` (the facility's zone).
    """
    cancelled = requests["status"].eq("cancelled") & (requests["cancelled_at"] < as_of_utc)
    notice = requests["shift_start"] - requests["cancelled_at"]
    late = notice < pd.Timedelta(hours=late_cancellation_hours)
    counted = requests[~cancelled | late.fillna(False)]
    local_date = pd.Series(pd.NaT, index=counted.index, dtype="datetime64[ns]")
    for zone, index in counted.groupby("timezone").groups.items():
        local = counted.loc[index, "shift_start"].dt.tz_convert(str(zone))
        local_date[index] = local.dt.tz_localize(None).dt.normalize().astype("datetime64[ns]")
    return counted.assign(date=local_date)


def daily_demand(
    requests: pd.DataFrame,
    facilities: pd.DataFrame,
    as_of: date,
    as_of_utc: pd.Timestamp,
    history_days: int,
    late_cancellation_hours: float,
    imputed: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, booked): daily demand before ``as_of`` and requests already made for later days.

    History has one row per series and day from the series' first day (the later of
    as_of - history_days, the facility's active_from, and its first request) to the day before
    as_of, or to the facility's last active day if it closed; days without requests are 0.
    Booked has ``series_id, facility_id, role, date, booked`` (shifts) for dates >= as_of.

    ``imputed`` (``facility_id, role, date, shift_hours``: one row per request, ``date`` its
    local shift date) are requests known to be missing from ``requests`` (quarantined rows whose
    facility and date are known, see :mod:`data_contracts.impact`); each counts as one whole
    request on its date, so the history keeps the level the facility really had.
    """
    fac = facilities.set_index("facility_id")
    frame = requests.assign(timezone=requests["facility_id"].map(fac["timezone"]))
    counted = counted_requests(frame, as_of_utc, late_cancellation_hours)
    if imputed is not None and len(imputed):
        counted = _with_imputed(counted, imputed[imputed["facility_id"].isin(fac.index)])
    counted = counted.assign(series_id=series_id(counted["facility_id"], counted["role"]))
    start = pd.Timestamp(as_of - timedelta(days=history_days))
    first_forecast_day = pd.Timestamp(as_of)

    past = counted[(counted["date"] >= start) & (counted["date"] < first_forecast_day)]
    totals = (
        past.groupby(["series_id", "facility_id", "role", "date"], observed=True)
        .agg(demand=("shift_hours", "size"), hours=("shift_hours", "sum"))
        .reset_index()
    )
    history = _complete_days(totals, fac, start, first_forecast_day)

    future = counted[counted["date"] >= first_forecast_day]
    booked = (
        future.groupby(["series_id", "facility_id", "role", "date"], observed=True)
        .size()
        .rename("booked")
        .reset_index()
    )
    return history, booked


def _with_imputed(counted: pd.DataFrame, imputed: pd.DataFrame) -> pd.DataFrame:
    """Counted requests plus imputed ones (keys kept as categories: millions of rows)."""
    columns = ["facility_id", "role", "shift_hours", "date"]
    extra = imputed[columns].astype({"date": "datetime64[ns]", "shift_hours": float})
    base = counted[columns]
    for key in ("facility_id", "role"):
        values = pd.Index(base[key].astype("category").cat.categories.astype(str))
        dtype = pd.CategoricalDtype(values.union(pd.Index(extra[key].astype(str).unique())))
        base = (
            base.assign(**{key: base[key].astype(str).astype(dtype)})
            if not isinstance(base[key].dtype, pd.CategoricalDtype)
            else base.assign(**{key: base[key].cat.set_categories(dtype.categories)})
        )
        extra = extra.assign(**{key: extra[key].astype(str).astype(dtype)})
    return pd.concat([base, extra], ignore_index=True)


def _complete_days(
    totals: pd.DataFrame, fac: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Expand per-series daily totals to every day of each series' active span (zeros filled)."""
    if totals.empty:
        return pd.DataFrame(columns=SERIES_COLUMNS)
    spans = totals.groupby("series_id").agg(
        facility_id=("facility_id", "first"),
        role=("role", "first"),
        first_request=("date", "min"),
        last_request=("date", "max"),
    )
    last_day = end - pd.Timedelta(days=1)
    # Plain text ids: mapping a categorical maps its categories, and an all-missing result
    # then comes back as objects instead of dates.
    facility = spans["facility_id"].astype(str)
    fac = fac.set_axis(fac.index.astype(str))
    active_from = facility.map(fac["active_from"]).astype("datetime64[ns]")
    active_to = facility.map(fac["active_to"]).astype("datetime64[ns]")
    active_from = active_from.fillna(spans["first_request"])
    active_to = active_to.fillna(last_day)
    # Days the facility was active inside the window are real zeros; requests outside its
    # active dates are kept (the data beats the metadata), so the span stretches to cover them.
    spans["first"] = np.minimum(active_from.clip(lower=start), spans["first_request"])
    spans["last"] = np.maximum(active_to.clip(upper=last_day), spans["last_request"])
    lengths = ((spans["last"] - spans["first"]).dt.days + 1).to_numpy()
    ids = np.repeat(spans.index.to_numpy(), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    dates = np.repeat(spans["first"].to_numpy(), lengths) + offsets.astype("timedelta64[D]")
    grid = pd.DataFrame({"series_id": ids, "date": dates.astype("datetime64[ns]")})
    grid["facility_id"] = grid["series_id"].map(spans["facility_id"])
    grid["role"] = grid["series_id"].map(spans["role"])
    grid["region"] = grid["facility_id"].astype(str).map(fac["region"])
    full = grid.merge(
        totals[["series_id", "date", "demand", "hours"]], how="left", on=["series_id", "date"]
    )
    full["demand"] = full["demand"].fillna(0).astype(int)
    full["hours"] = full["hours"].fillna(0.0)
    return full[SERIES_COLUMNS].sort_values(["series_id", "date"], ignore_index=True)
