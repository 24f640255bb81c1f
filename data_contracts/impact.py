"""What the mess costs: the demand that quarantined and excluded requests would have carried.

Quarantine keeps the books honest, but every quarantined request is demand the forecast never
sees: 5% of shift_start values in an unreadable format quietly shrink the plan by 5%. So every
run measures, per facility, region and role, the requests it lost over the recent history that
drives the forecast, puts back what it can, and says the rest out loud.

Decisions (documented in the README, tested in ``tests/test_impact.py``):

- **What a lost request is.** A quarantined shift_requests row, except an identical copy of a
  used request (it carried no demand of its own); of copies that disagree, one per request id.
  It would have counted as demand by the usual rule (a request cancelled 24 hours or more
  before its shift does not count); a row whose status is unreadable is assumed to count.
- **Where it falls.** Its facility's region (from the facilities table, even when the facility
  itself was quarantined; ``(unknown)`` for a facility nobody knows), its role (RN/LPN, or what
  the source said), and the local date of its shift. When shift_start is unreadable the date is
  estimated as the local date it was requested plus the median lead time (days) of that
  facility and role's used requests. Its hours are its shift_hours when those are valid, else
  the median of the facility and role (12 when nothing is known). An estimated date is good to
  the week, not the day: such requests are put back in that week, on days that had demand
  (see :func:`models.demand.daily_demand`).
- **Recent** is the ``window_days`` (default 28) before as_of: the weeks that set the level of
  every forecast. A request with neither a readable shift_start nor requested_at has no date:
  it is spread evenly over the history (``window_days / history_days`` of it counts as
  recent), never left out.
- **Put back (imputed).** A lost request with a known, usable facility (one that passed its
  own rules), a role in scope and a date before as_of is added back to that facility and role's
  daily history as one whole request (:func:`models.demand.daily_demand`'s ``imputed``).
  Counts stay whole numbers, and the forecast sees the level the facility really had. Lost
  requests that cannot be placed (unknown facility, quarantined facility, unknown role, no
  date) stay out of the forecast and are what the warnings are about.
- **Excluded** rows (roles the mapping declares out of scope, such as CNA) are measured the same
  way and shown, but are neither warned about nor put back: the agency chose to leave them out.
- **Loss share** of a region and role: recent shifts lost / (recent shifts used + lost). Above
  1% the report shows a banner and the run logs a warning; above ``max_region_loss_share`` the
  run stops (:func:`region_loss_stop`), because a plan for that region would be wrong by more
  than the agency allows, whatever the agency-wide share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from data_contracts.suites import ROLES
from models.demand import counted_requests, early_cancellation, local_dates

IMPACT_COLUMNS = [
    "source",
    "region",
    "role",
    "facility_id",
    "rows",
    "recent_shifts_lost",
    "recent_hours_lost",
    "recent_shifts_used",
    "imputed_shifts",
    "window_days",
]
"""Columns of the impact frame (reporting table ``data_quality_impact``): one row per source
(``quarantined`` or ``excluded``), region, role and facility. Shifts are requests; hours are
shift hours; ``rows`` are source rows of any date."""

IMPUTED_COLUMNS = ["facility_id", "role", "date", "shift_hours", "exact"]
"""Columns of the requests put back into the history: one row per request, ``date`` its local
shift date, ``exact`` False where that date is estimated from when it was requested."""

UNKNOWN = "(unknown)"
WARN_SHARE = 0.01
"""A region and role losing more than this share of its recent demand is warned about."""
_DEFAULT_HOURS = 12.0


@dataclass(frozen=True)
class DemandImpact:
    """The impact frame (:data:`IMPACT_COLUMNS`) and the requests put back
    (:data:`IMPUTED_COLUMNS`)."""

    impact: pd.DataFrame
    imputed: pd.DataFrame

    def region_shares(self) -> pd.DataFrame:
        """Per region and role (quarantined rows only): recent shifts lost, used, imputed
        (recent, placed) and the loss share, worst first."""
        return region_shares(self.impact)

    def warnings(self) -> list[str]:
        """One sentence per region and role losing more than 1% of its recent demand."""
        return loss_warnings(self.impact)


def empty_impact() -> DemandImpact:
    """No lost requests."""
    return DemandImpact(pd.DataFrame(columns=IMPACT_COLUMNS), pd.DataFrame(columns=IMPUTED_COLUMNS))


class UsedStats:
    """What the impact needs from the used requests, gathered chunk by chunk: shifts counted per
    facility and role in the recent window, and per facility and role histograms of lead time
    (request to shift, quarter-day bins from -7 to 366 days) and of shift hours (quarter-hour
    bins, 0-24) for their medians. Memory grows with facilities, never with requests; a median
    read from the histogram is exact to the bin (a quarter day, a quarter hour), and lead times
    are rounded to whole days where they are used.
    """

    LEAD_BIN_DAYS = 0.25
    LEAD_FIRST_DAY = -7.0
    LEAD_BINS = int((366 - LEAD_FIRST_DAY) / LEAD_BIN_DAYS) + 1
    HOURS_BIN = 0.25
    HOURS_BINS = int(24 / HOURS_BIN) + 1

    def __init__(
        self,
        zones: pd.Series,
        as_of: date,
        as_of_utc: pd.Timestamp,
        late_cancellation_hours: float,
        window_days: int,
    ) -> None:
        self.zones = zones
        self.as_of_utc = as_of_utc
        self.late_cancellation_hours = late_cancellation_hours
        self.first_day = pd.Timestamp(as_of) - pd.Timedelta(days=window_days)
        self._recent: list[pd.DataFrame] = []
        self._keys: dict[tuple[str, str], int] = {}
        self._lead = np.zeros((0, self.LEAD_BINS), dtype=np.int64)
        self._hours = np.zeros((0, self.HOURS_BINS), dtype=np.int64)

    @classmethod
    def of(
        cls,
        used: pd.DataFrame,
        zones: pd.Series,
        as_of: date,
        as_of_utc: pd.Timestamp,
        late_cancellation_hours: float,
        window_days: int,
    ) -> UsedStats:
        """The statistics of one frame of used requests."""
        stats = cls(zones, as_of, as_of_utc, late_cancellation_hours, window_days)
        stats.add(used)
        return stats

    def add(self, used: pd.DataFrame) -> None:
        """Take one chunk of used requests (parsed shift_requests rows)."""
        if used.empty:
            return
        self._recent.append(
            _recent_used(
                used, self.zones, self.as_of_utc, self.late_cancellation_hours, self.first_day
            )
        )
        facility = used["facility_id"].astype("category")
        role = used["role"].astype("category")
        pairs = pd.MultiIndex.from_arrays(
            [facility.cat.codes.to_numpy(), role.cat.codes.to_numpy()]
        ).unique()
        names = {
            (str(facility.cat.categories[f]), str(role.cat.categories[r])): (f, r)
            for f, r in pairs
            if f >= 0 and r >= 0
        }
        for key in names:
            if key not in self._keys:
                self._keys[key] = len(self._keys)
        grow = len(self._keys) - len(self._lead)
        if grow > 0:
            self._lead = np.vstack([self._lead, np.zeros((grow, self.LEAD_BINS), np.int64)])
            self._hours = np.vstack([self._hours, np.zeros((grow, self.HOURS_BINS), np.int64)])
        table = np.full(
            (len(facility.cat.categories) + 1, len(role.cat.categories) + 1), -1, dtype=np.int64
        )
        for key, (f, r) in names.items():
            table[f, r] = self._keys[key]
        row = table[facility.cat.codes.to_numpy(), role.cat.codes.to_numpy()]
        lead_days = ((used["shift_start"] - used["requested_at"]) / pd.Timedelta(days=1)).to_numpy(
            dtype=float
        )
        hours = used["shift_hours"].to_numpy(dtype=float)
        self._bin(self._lead, row, lead_days, self.LEAD_FIRST_DAY, self.LEAD_BIN_DAYS)
        self._bin(self._hours, row, hours, 0.0, self.HOURS_BIN)

    @staticmethod
    def _bin(
        histogram: np.ndarray, row: np.ndarray, values: np.ndarray, first: float, width: float
    ) -> None:
        ok = (row >= 0) & ~np.isnan(values)
        bins = np.clip(np.rint((values[ok] - first) / width), 0, histogram.shape[1] - 1)
        cells = row[ok] * histogram.shape[1] + bins.astype(np.int64)
        histogram += np.bincount(cells, minlength=histogram.size).reshape(histogram.shape)

    def recent(self) -> pd.DataFrame:
        """``facility_id, role, recent_shifts_used``."""
        if not self._recent:
            return pd.DataFrame(columns=["facility_id", "role", "recent_shifts_used"])
        both = pd.concat(self._recent, ignore_index=True)
        return both.groupby(["facility_id", "role"], as_index=False)["recent_shifts_used"].sum()

    def typical(self) -> pd.DataFrame:
        """Per facility and role: median lead time (days) and median hours (see the class)."""
        index = pd.MultiIndex.from_tuples(list(self._keys), names=["facility_id", "role"])
        return pd.DataFrame(
            {
                "lead_days": _median(self._lead, self.LEAD_FIRST_DAY, self.LEAD_BIN_DAYS),
                "hours": _median(self._hours, 0.0, self.HOURS_BIN),
            },
            index=index,
        )


def _median(histogram: np.ndarray, first: float, width: float) -> np.ndarray:
    """The median of each row's values from its histogram (NaN for an empty row); of an even
    count, the mean of the two middle values, as pandas does."""
    n = histogram.sum(axis=1)
    if histogram.size == 0:
        return np.zeros(0)
    cumulative = histogram.cumsum(axis=1)
    low = (cumulative >= ((n + 1) // 2)[:, None]).argmax(axis=1)
    high = (cumulative >= (n // 2 + 1)[:, None]).argmax(axis=1)
    median = first + width * (low + high) / 2
    return np.where(n > 0, median, np.nan)


def assess(
    used: pd.DataFrame | UsedStats,
    quarantined: pd.DataFrame,
    excluded: pd.DataFrame,
    all_facilities: pd.DataFrame,
    usable_facilities: pd.DataFrame,
    as_of: date,
    as_of_utc: pd.Timestamp,
    agency_timezone: str,
    late_cancellation_hours: float,
    window_days: int,
    history_days: int,
    excluded_lost: pd.DataFrame | None = None,
) -> DemandImpact:
    """The demand lost to ``quarantined`` and ``excluded`` request rows, and what is put back.

    ``excluded_lost`` are excluded requests already summarised chunk by chunk
    (:func:`excluded_losses`); ``excluded`` then holds only the rows that needed typical values.

    ``quarantined`` and ``excluded`` are parsed shift_requests frames
    (:func:`data_contracts.parsing.parse_shift_requests`); ``used`` is one too, or the
    :class:`UsedStats` gathered from it chunk by chunk; ``quarantined`` may carry
    ``_duplicate``. ``all_facilities`` are every parsed facility (quarantined ones included, for
    their region), ``usable_facilities`` those that passed their rules.
    """
    first_day = pd.Timestamp(as_of) - pd.Timedelta(days=window_days)
    zones = zones_of(all_facilities, agency_timezone)
    if isinstance(used, pd.DataFrame):
        used = UsedStats.of(used, zones, as_of, as_of_utc, late_cancellation_hours, window_days)
    used_recent = used.recent()
    typical = used.typical()
    parts = []
    for source, frame in (("quarantined", quarantined), ("excluded", excluded)):
        if len(frame):
            parts.append(
                _lost(
                    source,
                    frame,
                    zones,
                    typical,
                    as_of_utc,
                    late_cancellation_hours,
                )
            )
    if excluded_lost is not None and len(excluded_lost):
        parts.append(excluded_lost)
    if not parts:
        lost = pd.DataFrame(
            columns=["source", "facility_id", "role", "date", "hours", "counts", "exact", "rows"]
        )
    else:
        lost = pd.concat(parts, ignore_index=True)
    regions = (
        all_facilities.dropna(subset=["facility_id"])
        .drop_duplicates("facility_id")
        .set_index("facility_id")["region"]
    )
    usable = set(usable_facilities["facility_id"].dropna())
    return _summarise(
        lost, used_recent, regions, usable, as_of, first_day, window_days, history_days
    )


def zones_of(facilities: pd.DataFrame, agency_timezone: str) -> pd.Series:
    """facility_id -> an IANA zone usable for local dates (the agency's when invalid)."""
    from zoneinfo import available_timezones

    valid = available_timezones()
    known = facilities.dropna(subset=["facility_id"]).drop_duplicates("facility_id")
    zone = known["timezone"].astype(object).where(known["timezone"].isin(valid), agency_timezone)
    return pd.Series(zone.to_numpy(), index=known["facility_id"].astype(str).to_numpy())


def _recent_used(
    used: pd.DataFrame,
    zones: pd.Series,
    as_of_utc: pd.Timestamp,
    late_cancellation_hours: float,
    first_day: pd.Timestamp,
) -> pd.DataFrame:
    """Shifts counted from used requests per facility and role in the recent window."""
    # Only rows that can fall in the window (a day's margin for zones) are converted.
    near = used[used["shift_start"] >= (first_day - pd.Timedelta(days=1)).tz_localize("UTC")]
    near = near[near["shift_start"] < as_of_utc + pd.Timedelta(days=1)]
    frame = near.assign(
        timezone=near["facility_id"].astype(str).map(zones),
        facility_id=near["facility_id"].astype(str),
        role=near["role"].astype(str),
    )
    counted = counted_requests(frame, as_of_utc, late_cancellation_hours)
    as_of_day = as_of_utc.tz_convert(None).normalize() + pd.Timedelta(days=1)
    recent = counted[(counted["date"] >= first_day) & (counted["date"] < as_of_day)]
    # The window ends at as_of: dates are local; as_of is midnight in the agency's zone.
    return recent.groupby(["facility_id", "role"]).size().rename("recent_shifts_used").reset_index()


def _lost(
    source: str,
    frame: pd.DataFrame,
    zones: pd.Series,
    typical: pd.DataFrame,
    as_of_utc: pd.Timestamp,
    late_cancellation_hours: float,
) -> pd.DataFrame:
    """One row per lost request: facility, role, local date (NaT when unknown), hours and
    whether it would have counted as demand."""
    if "_duplicate" in frame.columns:
        kind = frame["_duplicate"].astype(str)
        frame = frame[kind != "identical"]
        conflicting = frame["_duplicate"].astype(str) == "conflicting"
        again = conflicting & frame["request_id"].duplicated(keep="first")
        frame = frame[~again]
    facility = frame["facility_id"].astype(object).where(frame["facility_id"].notna(), UNKNOWN)
    facility = facility.astype(str)
    role = frame["role"].astype(object).where(frame["role"].notna(), UNKNOWN).astype(str)
    zone = facility.map(zones)
    key = pd.MultiIndex.from_arrays([facility, role])
    lead = pd.Series(typical["lead_days"].reindex(key).to_numpy(), index=frame.index)
    lead = lead.fillna(typical["lead_days"].median() if len(typical) else 0.0).fillna(0.0)
    typical_hours = pd.Series(typical["hours"].reindex(key).to_numpy(), index=frame.index)
    fallback_hours = typical["hours"].median() if len(typical) else _DEFAULT_HOURS
    typical_hours = typical_hours.fillna(fallback_hours).fillna(_DEFAULT_HOURS)

    start = frame["shift_start"]
    estimated = frame["requested_at"] + pd.to_timedelta(lead.round(), unit="D")
    instant = start.where(start.notna(), estimated)
    has_zone = zone.notna()
    dates = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    if has_zone.any():
        dates[has_zone] = local_dates(instant[has_zone], zone[has_zone])
    # A facility nobody knows has no zone: its date is read in UTC (off by hours at most).
    no_zone = ~has_zone & instant.notna()
    if no_zone.any():
        dates[no_zone] = instant[no_zone].dt.tz_convert(None).dt.normalize()

    hours = frame["shift_hours"].astype(float)
    hours = hours.where((hours > 0) & (hours <= 24), typical_hours)
    early = early_cancellation(frame, as_of_utc, late_cancellation_hours)
    return pd.DataFrame(
        {
            "source": source,
            "facility_id": facility.to_numpy(),
            "role": role.to_numpy(),
            "date": dates.to_numpy(),
            "hours": hours.to_numpy(),
            "counts": (~early).to_numpy(),
            "exact": start.notna().to_numpy(),
            "rows": 1,
        }
    )


def excluded_losses(
    excluded: pd.DataFrame,
    zones: pd.Series,
    as_of_utc: pd.Timestamp,
    late_cancellation_hours: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the lost demand of excluded requests with a readable shift_start and valid hours, one
    row per facility, role, date, whether it counts and whether the date is exact, with
    ``rows`` and total ``hours``; the rows that need typical values, left for :func:`assess`).

    Excluded rows (roles the agency leaves out) can be millions: summarised chunk by chunk
    they cost memory per facility and day, not per request."""
    hours = excluded["shift_hours"].astype(float)
    ready = (excluded["shift_start"].notna() & (hours > 0) & (hours <= 24)).to_numpy()
    if not ready.any():
        return pd.DataFrame(), excluded
    no_typical = pd.DataFrame(
        {"lead_days": [], "hours": []},
        index=pd.MultiIndex.from_arrays([[], []], names=["facility_id", "role"]),
    )
    lost = _lost("excluded", excluded[ready], zones, no_typical, as_of_utc, late_cancellation_hours)
    keys = ["source", "facility_id", "role", "date", "counts", "exact"]
    summary = lost.groupby(keys, dropna=False, as_index=False).agg(
        hours=("hours", "sum"), rows=("rows", "sum")
    )
    return summary, excluded[~ready]


def combine_losses(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Summaries of :func:`excluded_losses` from several chunks as one."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    keys = ["source", "facility_id", "role", "date", "counts", "exact"]
    both = pd.concat(parts, ignore_index=True)
    return both.groupby(keys, dropna=False, as_index=False).agg(
        hours=("hours", "sum"), rows=("rows", "sum")
    )


def _summarise(
    lost: pd.DataFrame,
    used_recent: pd.DataFrame,
    regions: pd.Series,
    usable: set[str],
    as_of: date,
    first_day: pd.Timestamp,
    window_days: int,
    history_days: int,
) -> DemandImpact:
    first_forecast_day = pd.Timestamp(as_of)
    history_start = first_forecast_day - pd.Timedelta(days=history_days)
    dated = lost["date"].notna()
    recent = dated & (lost["date"] >= first_day) & (lost["date"] < first_forecast_day)
    undated_weight = min(1.0, window_days / max(history_days, 1))
    weight = np.where(recent, 1.0, np.where(dated, 0.0, undated_weight)) * lost["counts"]
    # One row per lost request, or per group of them (``rows`` requests, ``hours`` in all).
    placed = (
        (lost["source"] == "quarantined")
        & lost["facility_id"].isin(usable)
        & lost["role"].isin(ROLES)
        & dated
        & (lost["date"] >= history_start)
        & (lost["date"] < first_forecast_day)
        & lost["counts"].astype(bool)
    )
    lost = lost.assign(
        recent_shifts_lost=weight * lost["rows"],
        recent_hours_lost=weight * lost["hours"],
        imputed_shifts=placed.astype(int) * lost["rows"],
    )
    grouped = (
        lost.groupby(["source", "facility_id", "role"], dropna=False)
        .agg(
            rows=("rows", "sum"),
            recent_shifts_lost=("recent_shifts_lost", "sum"),
            recent_hours_lost=("recent_hours_lost", "sum"),
            imputed_shifts=("imputed_shifts", "sum"),
        )
        .reset_index()
    )
    grouped = grouped.merge(used_recent, how="left", on=["facility_id", "role"])
    grouped["recent_shifts_used"] = grouped["recent_shifts_used"].fillna(0).astype(int)
    grouped["region"] = grouped["facility_id"].map(regions).fillna(UNKNOWN).astype(str)
    grouped["window_days"] = int(window_days)
    grouped["rows"] = grouped["rows"].astype(int)
    grouped["imputed_shifts"] = grouped["imputed_shifts"].astype(int)
    grouped["recent_shifts_lost"] = grouped["recent_shifts_lost"].astype(float).round(3)
    grouped["recent_hours_lost"] = grouped["recent_hours_lost"].astype(float).round(3)
    impact = grouped[IMPACT_COLUMNS].sort_values(
        ["source", "region", "role", "facility_id"], ignore_index=True
    )
    # Region-roles that lost nothing still need their used shifts for the share: they are not
    # rows of the impact (one row per facility that lost something), and the share only
    # concerns region-roles with losses. Facilities of the same region-role that lost nothing
    # are added as used-only rows so the denominator is the whole region-role.
    impact = _with_unaffected_facilities(impact, used_recent, regions, window_days)
    imputed = lost.loc[placed, ["facility_id", "role", "date", "hours", "exact"]].rename(
        columns={"hours": "shift_hours"}
    )
    return DemandImpact(impact, imputed.reset_index(drop=True))


def _with_unaffected_facilities(
    impact: pd.DataFrame, used_recent: pd.DataFrame, regions: pd.Series, window_days: int
) -> pd.DataFrame:
    """Add, for every region and role with quarantined losses, a row per facility of it that
    lost nothing (rows 0), so each region-role's used shifts are complete."""
    quarantined = impact[impact["source"] == "quarantined"]
    if quarantined.empty:
        return impact
    affected = set(zip(quarantined["region"], quarantined["role"], strict=True))
    have = set(zip(quarantined["facility_id"], quarantined["role"], strict=True))
    used = used_recent.assign(region=used_recent["facility_id"].map(regions).fillna(UNKNOWN))
    keep = [
        (region, role) in affected and (facility, role) not in have
        for region, role, facility in zip(
            used["region"], used["role"], used["facility_id"], strict=True
        )
    ]
    extra = used[keep]
    if extra.empty:
        return impact
    rows = pd.DataFrame(
        {
            "source": "quarantined",
            "region": extra["region"].astype(str),
            "role": extra["role"].astype(str),
            "facility_id": extra["facility_id"].astype(str),
            "rows": 0,
            "recent_shifts_lost": 0.0,
            "recent_hours_lost": 0.0,
            "recent_shifts_used": extra["recent_shifts_used"].astype(int),
            "imputed_shifts": 0,
            "window_days": int(window_days),
        }
    )
    return pd.concat([impact, rows], ignore_index=True).sort_values(
        ["source", "region", "role", "facility_id"], ignore_index=True
    )


def region_shares(impact: pd.DataFrame) -> pd.DataFrame:
    """Per region and planned role (RN, LPN) of the quarantined rows: recent shifts lost and
    used, shifts put back (all dates), and ``share`` lost (0-1), worst first. Rows whose role
    is outside the plan are left to :func:`loss_warnings`' sentence on unknown roles."""
    columns = ["region", "role", "lost", "used", "imputed", "share"]
    quarantined = impact[(impact["source"] == "quarantined") & impact["role"].isin(ROLES)]
    if quarantined.empty:
        return pd.DataFrame(columns=columns)
    grouped = quarantined.groupby(["region", "role"]).agg(
        lost=("recent_shifts_lost", "sum"),
        used=("recent_shifts_used", "sum"),
        imputed=("imputed_shifts", "sum"),
    )
    total = grouped["lost"] + grouped["used"]
    grouped["share"] = np.where(total > 0, grouped["lost"] / total.where(total > 0, 1), 0.0)
    return grouped.reset_index().sort_values("share", ascending=False, ignore_index=True)[columns]


def loss_warnings(impact: pd.DataFrame, threshold: float = WARN_SHARE) -> list[str]:
    """Sentences a recruiter understands, one per region and role losing more than
    ``threshold`` of its recent demand to quarantined rows, worst first."""
    if impact.empty:
        return []
    window = int(impact["window_days"].iloc[0])
    shares = region_shares(impact)
    lines = []
    for row in shares[shares["share"] > threshold].itertuples(index=False):
        shifts = "shift" if round(row.lost) == 1 else "shifts"
        lines.append(
            f"{row.region} {row.role}: {row.share:.1%} of the last {window} days' demand "
            f"({row.lost:,.0f} {shifts}) is in quarantine. {row.imputed:,} quarantined requests "
            "(all dates) were put back into the forecast history where their facility and "
            "week were known, the others are missing from it: treat pools and hires there as "
            "uncertain by about that share. Fix the rows listed under data quality."
        )
    # Requests whose role the plan does not know: RN demand under an unmapped name, or roles
    # out of scope that the mapping does not exclude yet. Said once, when they are more than
    # ``threshold`` of the recent demand.
    quarantined = impact[impact["source"] == "quarantined"]
    unknown_role = ~quarantined["role"].isin(ROLES)
    recent_other = quarantined.loc[unknown_role, "recent_shifts_lost"].sum()
    recent_all = quarantined["recent_shifts_used"].sum() + quarantined["recent_shifts_lost"].sum()
    other = quarantined[unknown_role & (quarantined["rows"] > 0)]
    other = other.groupby("role")["rows"].sum().sort_values(ascending=False)
    if len(other) and recent_other > threshold * max(recent_all, 1):
        named = ", ".join(f"{role} {rows:,}" for role, rows in other.head(5).items())
        lines.append(
            f"{int(other.sum()):,} quarantined requests have a role the plan does not know "
            f"({named}). If they are RN or LPN shifts, map the role under values in the source "
            "mapping; if they are out of scope, list them under exclude so they are counted "
            "as excluded."
        )
    return lines


def region_loss_stop(impact: pd.DataFrame, max_share: float) -> tuple[str, str, float] | None:
    """(region, role, share) of the worst region and role whose recent loss share exceeds
    ``max_share``, or None. Unknown regions and roles are left to the agency-wide rule."""
    shares = region_shares(impact)
    shares = shares[(shares["region"] != UNKNOWN) & shares["role"].isin(ROLES)]
    worst = shares[shares["share"] > max_share]
    if worst.empty:
        return None
    row = worst.iloc[0]
    return str(row["region"]), str(row["role"]), float(row["share"])
