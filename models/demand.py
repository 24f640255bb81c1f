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


class DailyCounts:
    """Daily demand per series, accumulated chunk by chunk: the only request-level state a run
    keeps is these per-series arrays (shifts and hours per day of the history window) and the
    bookings for as_of and later, so memory grows with series and days, never with requests.

    Series are ``facilities`` x ``roles`` (the usable facilities: a used request always names
    one); ``zones`` maps each facility to its IANA zone (local shift dates). :meth:`add` takes
    used requests (``facility_id, role, shift_start, shift_hours, status, cancelled_at``) and
    counts them by :func:`counted_requests`; :func:`daily_demand` is the same computation on one
    frame.
    """

    def __init__(
        self,
        facilities: pd.Index,
        roles: tuple[str, ...],
        zones: pd.Series,
        as_of: date,
        as_of_utc: pd.Timestamp,
        history_days: int,
        late_cancellation_hours: float,
    ) -> None:
        self.facilities = pd.Index(facilities.astype(str).unique())
        self.roles = pd.Index([str(r) for r in roles])
        self.zones = zones.set_axis(zones.index.astype(str))
        self.as_of_utc = as_of_utc
        self.late_cancellation_hours = late_cancellation_hours
        self.start = pd.Timestamp(as_of - timedelta(days=history_days))
        self.days = history_days
        cells = len(self.facilities) * len(self.roles) * history_days
        self.demand = np.zeros(cells, dtype=np.int64)
        self.hours = np.zeros(cells, dtype=np.float64)
        self._booked: list[pd.DataFrame] = []
        self.early_cancelled = 0
        """Requests cancelled ``late_cancellation_hours`` or more ahead (not demand)."""
        self.after = 0
        """Counted requests for as_of or later (bookings)."""
        self.before = 0
        """Counted requests for days before the history window."""
        self.requests = 0

    def codes(self, facility_id: pd.Series, role: pd.Series) -> np.ndarray:
        """Series number of each row (facility x roles + role), -1 where either is unknown."""
        facility = _index_codes(facility_id, self.facilities)
        role_code = _index_codes(role, self.roles)
        known = (facility >= 0) & (role_code >= 0)
        return np.where(known, facility * len(self.roles) + role_code, -1)

    def add(self, requests: pd.DataFrame) -> None:
        """Count one chunk of used requests."""
        self.requests += len(requests)
        if requests.empty:
            return
        zone = pd.Series(_index_values(requests["facility_id"], self.zones), index=requests.index)
        frame = requests.assign(timezone=zone)
        early = early_cancellation(frame, self.as_of_utc, self.late_cancellation_hours)
        self.early_cancelled += int(early.sum())
        counted = frame[~early.to_numpy()]
        dates = local_dates(counted["shift_start"], counted["timezone"])
        self.add_counted(
            self.codes(counted["facility_id"], counted["role"]),
            dates,
            counted["shift_hours"].to_numpy(dtype=float),
        )

    def add_counted(
        self,
        series: np.ndarray,
        dates: pd.Series,
        hours: np.ndarray,
        shifts: np.ndarray | None = None,
    ) -> None:
        """Add requests that count as demand: series numbers, local shift dates, hours (and
        ``shifts`` requests per row, one when None)."""
        day = ((dates - self.start) / pd.Timedelta(days=1)).to_numpy(dtype=float)
        dated = ~np.isnan(day) & (series >= 0)
        day = np.where(dated, day, -1).astype(np.int64)
        self.before += int((dated & (day < 0)).sum())
        inside = dated & (day >= 0) & (day < self.days)
        cell = series[inside] * self.days + day[inside]
        weights = None if shifts is None else shifts[inside]
        self.demand += np.bincount(cell, weights=weights, minlength=self.demand.size).astype(
            np.int64
        )
        self.hours += np.bincount(cell, weights=hours[inside], minlength=self.hours.size)
        later = dated & (day >= self.days)
        self.after += int(later.sum())
        if later.any():
            self._booked.append(
                pd.DataFrame({"series": series[later], "day": day[later] - self.days})
                .value_counts()
                .rename("booked")
                .reset_index()
            )

    def any_demand(self) -> bool:
        """Whether any request counts as demand on a day of the history window."""
        return bool(self.demand.any())

    def _series_frame(self, series: np.ndarray) -> pd.DataFrame:
        facility = self.facilities.to_numpy()[series // len(self.roles)].astype(str)
        role = self.roles.to_numpy()[series % len(self.roles)].astype(str)
        return pd.DataFrame(
            {
                "series_id": np.char.add(np.char.add(facility, ":"), role),
                "facility_id": facility,
                "role": role,
            }
        )

    def totals(self) -> pd.DataFrame:
        """``series_id, facility_id, role, date, demand, hours`` for every series and day with
        demand in the window."""
        cell = np.flatnonzero(self.demand)
        frame = self._series_frame(cell // self.days)
        frame["date"] = (self.start + pd.to_timedelta(cell % self.days, unit="D")).astype(
            "datetime64[ns]"
        )
        frame["demand"] = self.demand[cell]
        frame["hours"] = self.hours[cell]
        return frame

    def history(self, facilities: pd.DataFrame) -> pd.DataFrame:
        """One row per series and day of its active span in the window (``SERIES_COLUMNS``,
        sorted by series_id and date), from the arrays: no frame per request or merge.

        A series is every facility and role with demand in the window. Its span runs from the
        earlier of its first request and the facility's active_from (not before the window) to
        the later of its last request and the facility's active_to (not after the day before
        as_of): days the facility was active are real zeros, and requests outside its active
        dates are kept (the data beats the metadata). ``facilities`` is indexed by facility_id.
        """
        n_roles = len(self.roles)
        demand = self.demand.reshape(-1, self.days)
        present = np.flatnonzero(demand.any(axis=1))
        if present.size == 0:
            return pd.DataFrame(columns=SERIES_COLUMNS)
        rows = demand[present] > 0
        first_request = rows.argmax(axis=1)
        last_request = self.days - 1 - rows[:, ::-1].argmax(axis=1)
        fac = facilities.set_axis(facilities.index.astype(str))
        facility = self.facilities.to_numpy()[present // n_roles].astype(str)
        role = self.roles.to_numpy()[present % n_roles].astype(str)

        def offset(column: str, missing: np.ndarray) -> np.ndarray:
            days = (
                pd.Series(facility).map(fac[column]).astype("datetime64[ns]") - self.start
            ) / pd.Timedelta(days=1)
            return np.where(days.isna(), missing, days.fillna(0)).astype(np.int64)

        active_from = offset("active_from", first_request)
        active_to = offset("active_to", np.full(present.size, self.days - 1))
        first = np.minimum(np.maximum(active_from, 0), first_request)
        last = np.maximum(np.minimum(active_to, self.days - 1), last_request)
        series_id = np.char.add(np.char.add(facility, ":"), role).astype(object)
        order = np.argsort(series_id, kind="stable")
        present, first, last = present[order], first[order], last[order]
        facility, role, series_id = facility[order], role[order], series_id[order]
        lengths = last - first + 1
        which = np.repeat(np.arange(present.size), lengths)
        day = np.repeat(first, lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        cell = present[which] * self.days + day
        region = pd.Series(facility).map(fac["region"]).to_numpy(dtype=object)
        return pd.DataFrame(
            {
                "series_id": pd.array(series_id[which], dtype="str"),
                "facility_id": pd.array(facility[which].astype(object), dtype="str"),
                "role": pd.array(role[which].astype(object), dtype="str"),
                "region": pd.array(region[which], dtype="str"),
                "date": (self.start + pd.to_timedelta(day, unit="D")).astype("datetime64[ns]"),
                "demand": self.demand[cell],
                "hours": self.hours[cell],
            }
        )

    def booked(self) -> pd.DataFrame:
        """``series_id, facility_id, role, date, booked``: requests made before as_of for
        as_of and later (shifts)."""
        if not self._booked:
            return pd.DataFrame(columns=["series_id", "facility_id", "role", "date", "booked"])
        both = pd.concat(self._booked, ignore_index=True)
        both = both.groupby(["series", "day"], as_index=False)["booked"].sum()
        frame = self._series_frame(both["series"].to_numpy())
        first = self.start + pd.Timedelta(days=self.days)
        frame["date"] = (first + pd.to_timedelta(both["day"].to_numpy(), unit="D")).astype(
            "datetime64[ns]"
        )
        frame["booked"] = both["booked"].to_numpy()
        return frame.sort_values(["series_id", "date"], ignore_index=True)


def _index_codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in ``index`` (-1 when absent), through the categories of a
    categorical column (millions of rows are never turned into strings)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        positions = index.get_indexer(values.cat.categories.astype(str))
        codes = values.cat.codes.to_numpy()
        return np.asarray(np.where(codes >= 0, positions[np.maximum(codes, 0)], -1))
    return np.asarray(index.get_indexer(values.astype(str).to_numpy()))


def _index_values(values: pd.Series, mapping: pd.Series) -> np.ndarray:
    """``mapping`` looked up for each value (NaN when absent), through categories."""
    positions = _index_codes(values, pd.Index(mapping.index))
    looked = mapping.to_numpy(dtype=object)[np.maximum(positions, 0)]
    return np.asarray(np.where(positions >= 0, looked, None))


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
    roles = tuple(sorted(requests["role"].dropna().astype(str).unique()))
    counts = DailyCounts(
        fac.index, roles, fac["timezone"], as_of, as_of_utc, history_days, late_cancellation_hours
    )
    counts.add(requests)
    return demand_from_counts(counts, facilities, as_of, imputed)


def demand_from_counts(
    counts: DailyCounts,
    facilities: pd.DataFrame,
    as_of: date,
    imputed: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, booked) of :func:`daily_demand` from requests already counted chunk by chunk,
    with the ``imputed`` requests put back."""
    fac = facilities.set_index("facility_id")
    spread = None
    if imputed is not None and len(imputed):
        imputed = imputed[imputed["facility_id"].isin(fac.index)]
        exact = (
            imputed["exact"].astype(bool) if "exact" in imputed else pd.Series(True, imputed.index)
        )
        placed = imputed[exact.to_numpy()]
        counts.add_counted(
            counts.codes(placed["facility_id"], placed["role"]),
            placed["date"].astype("datetime64[ns]"),
            placed["shift_hours"].to_numpy(dtype=float),
        )
        spread = imputed[~exact.to_numpy()] if "exact" in imputed else None
    if spread is not None and len(spread):
        added = _spread_over_weeks(counts.totals(), spread, counts.start, pd.Timestamp(as_of))
        counts.add_counted(
            counts.codes(added["facility_id"], added["role"]),
            added["date"].astype("datetime64[ns]"),
            added["hours"].to_numpy(dtype=float),
            shifts=added["demand"].to_numpy(dtype=np.int64),
        )
    return counts.history(fac), counts.booked()


def _spread_over_weeks(
    totals: pd.DataFrame,
    spread: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    seed: int = 0,
) -> pd.DataFrame:
    """What to add to ``totals`` (per series and day): ``series_id, facility_id, role, date,
    demand, hours`` of the ``spread`` requests, each put back in its
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
        return pd.DataFrame(columns=["series_id", "facility_id", "role", "date", "demand", "hours"])
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
    return added.assign(facility_id=parts.str[0], role=parts.str[1])
