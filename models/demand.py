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
    counted = requests[~early_cancellation(requests, as_of_utc, late_cancellation_hours)]
    return counted.assign(date=local_dates(counted["shift_start"], counted["timezone"]))


def early_cancellation(
    requests: pd.DataFrame, as_of_utc: pd.Timestamp, late_cancellation_hours: float
) -> pd.Series:
    """Requests the facility cancelled before as_of and at least ``late_cancellation_hours``
    before the shift: the ones that do not count as demand (``status``, ``shift_start`` and
    ``cancelled_at`` in UTC). A cancellation at or after as_of had not happened yet."""
    cancelled = requests["status"].eq("cancelled") & (requests["cancelled_at"] < as_of_utc)
    notice = requests["shift_start"] - requests["cancelled_at"]
    return cancelled & (notice >= pd.Timedelta(hours=late_cancellation_hours))


def local_dates(instants: pd.Series, zones: pd.Series) -> pd.Series:
    """Local calendar dates of UTC ``instants`` in the aligned IANA ``zones`` (NaT where either
    is missing)."""
    result = pd.Series(pd.NaT, index=instants.index, dtype="datetime64[ns]")
    for zone, index in zones.groupby(zones, dropna=True, observed=True).groups.items():
        local = instants.loc[index].dt.tz_convert(str(zone)).dt.tz_localize(None)
        result[index] = local.dt.normalize().astype("datetime64[ns]")
    return result


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

    ``imputed`` (``facility_id, role, date, shift_hours, exact``: one row per request) are
    requests known to be missing from ``requests`` (quarantined rows whose facility is known, see
    :mod:`data_contracts.impact`), each put back as one whole request. Where its shift date is
    known (``exact``) it counts on that date. Where the date is only estimated (from when it was
    requested), it counts in the estimated week, on one of the days of that week on which the
    series had demand, drawn with equal chances (:func:`_spread_over_weeks`): the week's level
    is restored without smearing the weekday pattern or piling onto the peaks that set the
    regional pools. A week with no demand of its own keeps the estimated dates.
    """
    fac = facilities.set_index("facility_id")
    frame = requests.assign(timezone=requests["facility_id"].map(fac["timezone"]))
    counted = counted_requests(frame, as_of_utc, late_cancellation_hours)
    spread = None
    if imputed is not None and len(imputed):
        imputed = imputed[imputed["facility_id"].isin(fac.index)]
        exact = imputed["exact"].astype(bool) if "exact" in imputed else True
        counted = _with_imputed(counted, imputed[exact])
        spread = imputed[~exact] if "exact" in imputed else None
    counted = counted.assign(series_id=series_id(counted["facility_id"], counted["role"]))
    start = pd.Timestamp(as_of - timedelta(days=history_days))
    first_forecast_day = pd.Timestamp(as_of)

    past = counted[(counted["date"] >= start) & (counted["date"] < first_forecast_day)]
    totals = (
        past.groupby(["series_id", "facility_id", "role", "date"], observed=True)
        .agg(demand=("shift_hours", "size"), hours=("shift_hours", "sum"))
        .reset_index()
    )
    if spread is not None and len(spread):
        totals = _spread_over_weeks(totals, spread, start, first_forecast_day)
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


def _spread_over_weeks(
    totals: pd.DataFrame,
    spread: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    seed: int = 0,
) -> pd.DataFrame:
    """``totals`` (per series and day) plus the ``spread`` requests, each put back in its
    estimated (Monday-start) week, on one of the days of that week on which the series had
    demand, drawn with equal chances (seeded: the same inputs give the same history).

    The estimate is good to the week, not the day. Three placements were measured on the demo
    agency with 5% of shift_start values broken (``benchmarks/broken_rows.py``): the estimated
    day itself smears the weekday pattern and the days a region is busy together (target pool
    -1.0%, hires -6.9%); a draw in proportion to each day's demand piles the extra requests on
    the peaks pools are sized on (+1.4%, hires +15%); an equal draw among the days with demand
    keeps both (-0.3% and +0.1%, hires +0.0% at two different sets of broken rows).
    """
    spread = spread[(spread["date"] >= start) & (spread["date"] < end)]
    if spread.empty:
        return totals
    spread = spread.assign(
        series_id=series_id(spread["facility_id"], spread["role"]).astype(str),
        date=spread["date"].astype("datetime64[ns]"),
    )
    spread = spread.assign(
        week=spread["date"] - pd.to_timedelta(spread["date"].dt.day_of_week, "D"),
        draw=np.random.default_rng(seed).random(len(spread)),
        request=np.arange(len(spread)),
    )
    keys = ["series_id", "week"]
    days = totals[["series_id", "date", "demand"]].astype({"series_id": str})
    days = days[days["demand"] > 0]
    days = days.assign(week=days["date"] - pd.to_timedelta(days["date"].dt.day_of_week, "D"))
    days = days[days.set_index(keys).index.isin(pd.MultiIndex.from_frame(spread[keys]))]
    days = days.sort_values([*keys, "date"])
    share = 1.0 / days.groupby(keys)["demand"].transform("size")
    high = share.groupby([days["series_id"], days["week"]]).cumsum()
    days = days.assign(low=high - share, high=high)
    chosen = spread[["request", *keys, "draw", "shift_hours"]].merge(
        days[[*keys, "date", "low", "high"]], on=keys
    )
    chosen = chosen[(chosen["draw"] >= chosen["low"]) & (chosen["draw"] < chosen["high"])]
    chosen = chosen.drop_duplicates("request")
    # Weeks where the series had no demand at all keep the estimated dates.
    rest = spread[~spread["request"].isin(chosen["request"])]
    added = pd.concat(
        [chosen[["series_id", "date", "shift_hours"]], rest[["series_id", "date", "shift_hours"]]],
        ignore_index=True,
    )
    added = (
        added.groupby(["series_id", "date"])
        .agg(demand=("shift_hours", "size"), hours=("shift_hours", "sum"))
        .reset_index()
    )
    parts = added["series_id"].str.rsplit(":", n=1)
    added = added.assign(facility_id=parts.str[0], role=parts.str[1])
    plain = totals.astype({"series_id": str, "facility_id": str, "role": str})
    both = pd.concat([plain, added[plain.columns]], ignore_index=True)
    return (
        both.groupby(["series_id", "facility_id", "role", "date"])
        .agg(demand=("demand", "sum"), hours=("hours", "sum"))
        .reset_index()
    )


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
