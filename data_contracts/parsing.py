"""Turn raw source rows into typed frames, with the normalisations staffcast applies.

Normalisations (repaired, not quarantined):

- ids, roles, statuses and responses are stripped of surrounding blanks; roles are upper-cased
  (``' rn '`` -> ``RN``), statuses and responses lower-cased;
- spelled-out roles and US spellings are mapped (:data:`ROLE_ALIASES`, :data:`STATUS_ALIASES`):
  ``Registered Nurse`` and ``R.N.`` -> ``RN``; ``Licensed Practical Nurse``, ``Licensed
  Vocational Nurse`` and ``LVN`` -> ``LPN``; ``canceled`` -> ``cancelled``. Anything else (for
  example ``CNA`` or ``pending``) is not guessed at: the row is quarantined;
- shift_hours is a number of hours (``12``, ``12.0``, `` 8 ``); a shift that crosses midnight
  or a DST change counts on the local date it starts, and its hours are taken as given;
- timestamps may carry a UTC offset (``2025-03-09T07:00:00-05:00``, ``...Z``) or none. A
  shift_start without an offset is local time in the facility's zone; requested_at, cancelled_at
  and offered_at without an offset are local time in the agency's zone. A local time that falls
  twice (DST fall-back) is read as the first of the two instants; one that does not exist
  (spring-forward gap) is moved forward to the first valid instant;
- dates (active_from, hired_on, ...) are calendar dates.

A value that cannot be parsed becomes missing, and the contracts quarantine its row with the rule
that names it (``shift_start_unparseable``, ...). Every frame gets ``_row``, the position of the
row in the extract, so quarantined rows can be traced back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc



@dataclass(frozen=True)
class ParseOptions:
    """How one source table's values are read: the agency's own codes and formats.

    Built from the source mapping (``staffcast.mapping``); the defaults read staffcast's own
    codes. Keys of ``values`` and ``exclude`` are source values compared after stripping,
    collapsing internal blanks and case-folding (``' registered  nurse '`` matches
    ``Registered Nurse``).

    - ``values``: column -> {source value: staffcast value}, e.g. ``{"role": {"Registered
      Nurse": "RN", "RN-ICU": "RN"}, "status": {"F": "filled"}}``; applied before the
      built-in aliases (:data:`ROLE_ALIASES`, :data:`STATUS_ALIASES`).
    - ``exclude``: column -> source values whose rows are out of scope (a CNA shift): such a
      row is marked ``_excluded`` = True by the parse functions, and validation counts it as
      excluded (neither used nor quarantined).
    - ``formats``: column -> ``strftime`` formats tried, in order, after ISO 8601 for values
      ISO 8601 does not read (``"%m/%d/%Y %I:%M %p"`` for US exports). A form that no listed
      format reads is never guessed: the value stays unparsed and its row is quarantined.
    """

    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    exclude: Mapping[str, frozenset[str]] = field(default_factory=dict)
    formats: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


DEFAULT_OPTIONS = ParseOptions()

_ZONE_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2})$"
_ZONED_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped strings (database drivers may hand back datetime objects)."""
    if values.dtype == object and any(isinstance(v, datetime) for v in values.dropna().head(1)):
        values = values.map(lambda v: v.isoformat() if isinstance(v, datetime) else v)
    return values.astype("str").str.strip()


def parse_timestamps(values: pd.Series, local_zone: pd.Series | str) -> pd.Series:
    """Parse timestamps to UTC; values without an offset are local to ``local_zone``.

    ``local_zone`` is one IANA zone for all rows or a Series of zones aligned with ``values``.
    Unparseable values (and values whose zone is unknown) become NaT.

    The common form ``YYYY-MM-DDTHH:MM:SS+HH:MM`` (or ``Z``) is parsed by Arrow in one pass;
    every other ISO 8601 variant goes through pandas, row by row only where needed.
    """
    text = _as_text(values)
    fast = pc.strptime(pa.array(text.array), format=_ZONED_FORMAT, unit="ns", error_is_null=True)
    result = pd.Series(fast.to_numpy(zero_copy_only=False), index=values.index).dt.tz_localize(
        "UTC"
    )
    pending = result.isna().to_numpy() & text.notna().to_numpy()
    if not pending.any():
        return result
    rest = text[pending]
    zoned = rest.str.contains(_ZONE_SUFFIX, regex=True, na=False)
    if zoned.any():
        result[zoned[zoned].index] = pd.to_datetime(
            rest[zoned], utc=True, format="ISO8601", errors="coerce"
        ).astype("datetime64[ns, UTC]")
    naive = rest[~zoned]
    if len(naive):
        local = pd.to_datetime(naive, format="ISO8601", errors="coerce")
        zones = (
            pd.Series(local_zone, index=local.index)
            if isinstance(local_zone, str)
            else pd.Series(local_zone[naive.index].astype(object), index=local.index)
        )
        for zone, index in zones.groupby(zones, dropna=True).groups.items():
            stamps = pd.DatetimeIndex(local[index])
            try:
                utc = stamps.tz_localize(
                    str(zone),
                    ambiguous=np.ones(len(stamps), dtype=bool),
                    nonexistent="shift_forward",
                ).tz_convert("UTC")
            except Exception:  # noqa: BLE001 - an invalid zone leaves NaT for quarantine
                continue
            result[index] = utc.astype("datetime64[ns, UTC]")
    return result


def parse_dates(values: pd.Series) -> pd.Series:
    """Parse calendar dates (time of day, if any, dropped); unparseable -> NaT."""
    parsed = pd.to_datetime(_as_text(values).str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    return parsed.astype("datetime64[ns]")


ROLE_ALIASES: dict[str, str] = {
    "REGISTERED NURSE": "RN",
    "R.N.": "RN",
    "LICENSED PRACTICAL NURSE": "LPN",
    "LICENSED VOCATIONAL NURSE": "LPN",
    "LVN": "LPN",
    "L.P.N.": "LPN",
}
"""Role spellings repaired to the canonical role (keys upper-cased, single-spaced)."""

STATUS_ALIASES: dict[str, str] = {"canceled": "cancelled"}
"""Status spellings repaired to the canonical status (keys lower-cased)."""


def _normalised(text: pd.Series, aliases: dict[str, str]) -> pd.Series:
    """Text as a category with internal blanks collapsed and aliases mapped (per category)."""
    categories = text.astype("category")
    names = [" ".join(str(c).split()) for c in categories.cat.categories]
    mapped = [aliases.get(name, name) for name in names]
    unique = list(dict.fromkeys(mapped))
    position = {name: i for i, name in enumerate(unique)}
    recode = np.array([position[m] for m in mapped] + [-1], dtype=np.int64)
    codes = recode[categories.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing -1
    return pd.Series(
        pd.Categorical.from_codes(codes, categories=unique), index=text.index, name=text.name
    )


def _clean_text(values: pd.Series, case: str | None = None) -> pd.Series:
    text = _as_text(values)
    text = text.mask(text == "")
    if case == "upper":
        return text.str.upper()
    if case == "lower":
        return text.str.lower()
    return text


def parse_facilities(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed facilities."""
    return pd.DataFrame(
        {
            "_row": np.arange(len(raw)),
            "facility_id": _clean_text(raw["facility_id"]),
            "facility_type": _clean_text(raw["facility_type"], "lower"),
            "region": _clean_text(raw["region"]),
            "timezone": _clean_text(raw["timezone"]),
            "active_from": parse_dates(raw["active_from"]),
            "active_to": parse_dates(raw["active_to"]),
        },
        index=raw.index,
    )


def parse_shift_requests(
    raw: pd.DataFrame, facility_zones: pd.Series, agency_timezone: str, row_offset: int = 0
) -> pd.DataFrame:
    """Typed shift requests with the derived columns the contracts check.

    ``facility_zones`` maps facility_id to its IANA zone (local shift_start times). ``raw``
    may be one chunk of the extract: ``row_offset`` is the position of its first row. The
    ``_duplicate`` column needs every chunk and is added by :func:`duplicate_kind` afterwards.
    """
    facility_id = _clean_text(raw["facility_id"]).astype("category")
    zones = facility_id.map(facility_zones.to_dict())  # maps the categories, not every row
    frame = pd.DataFrame(
        {
            "_row": np.arange(row_offset, row_offset + len(raw)),
            "request_id": _clean_text(raw["request_id"]),
            "facility_id": facility_id,
            "role": _normalised(_clean_text(raw["role"], "upper"), ROLE_ALIASES),
            "shift_start": parse_timestamps(raw["shift_start"], zones),
            "shift_hours": pd.to_numeric(raw["shift_hours"], errors="coerce").astype(float),
            "requested_at": parse_timestamps(raw["requested_at"], agency_timezone),
            "status": _normalised(_clean_text(raw["status"], "lower"), STATUS_ALIASES),
            "cancelled_at": parse_timestamps(raw["cancelled_at"], agency_timezone),
        },
        index=raw.index,
    )
    for column in ("shift_start", "requested_at", "shift_hours"):
        unparsed = frame[column].isna() & raw[column].notna().to_numpy()
        frame[f"_raw_{column}"] = raw[column].astype("str").where(unparsed.to_numpy())
    frame["_hours_requested_after_start"] = (
        frame["requested_at"] - frame["shift_start"]
    ) / pd.Timedelta(hours=1)
    return frame


def duplicate_kind(frame: pd.DataFrame, key: str, ignore: tuple[str, ...] = ()) -> pd.Series:
    """'no' for a unique key or the first of identical copies, else 'identical' or 'conflicting'.

    Copies are compared after parsing (columns in ``ignore`` left out), so copies that differ
    only by a repaired variant (' rn ' and 'RN') are identical. Identical copies are harmless:
    the first is used. When copies disagree nobody can tell which is right, so all of them are
    quarantined.
    """
    raw = frame.drop(columns=list(ignore))
    keys = raw[key].astype("str").str.strip()
    codes, _ = pd.factorize(keys)
    counts = np.bincount(codes[codes >= 0], minlength=1)
    repeated = (codes >= 0) & (counts[np.maximum(codes, 0)] > 1)
    kind = pd.Series("no", index=raw.index, dtype=object)
    if repeated.any():
        copies = raw.loc[repeated]
        hashes = pd.util.hash_pandas_object(copies.astype("string"), index=False)
        group = pd.Series(codes[repeated], index=copies.index)
        conflicting = hashes.groupby(group).transform("nunique") > 1
        later = group.duplicated(keep="first")
        kind[conflicting[conflicting].index] = "conflicting"
        kind[later[later & ~conflicting].index] = "identical"
    return kind.astype("category")


def parse_nurses(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed nurses (on_call read from 1/0, true/false, yes/no)."""
    on_call = _clean_text(raw["on_call"], "lower").isin(["1", "true", "t", "yes", "y"])
    return pd.DataFrame(
        {
            "_row": np.arange(len(raw)),
            "nurse_id": _clean_text(raw["nurse_id"]),
            "role": _normalised(_clean_text(raw["role"], "upper"), ROLE_ALIASES),
            "region": _clean_text(raw["region"]),
            "on_call": on_call.astype(bool),
            "hired_on": parse_dates(raw["hired_on"]),
            "separated_on": parse_dates(raw["separated_on"]),
        },
        index=raw.index,
    )


def parse_shift_offers(
    raw: pd.DataFrame, agency_timezone: str, row_offset: int = 0
) -> pd.DataFrame:
    """Typed shift offers (``raw`` may be one chunk; ``row_offset`` its first row's position)."""
    return pd.DataFrame(
        {
            "_row": np.arange(row_offset, row_offset + len(raw)),
            "request_id": _clean_text(raw["request_id"]),
            "offered_at": parse_timestamps(raw["offered_at"], agency_timezone),
            "response": _clean_text(raw["response"], "lower").astype("category"),
        },
        index=raw.index,
    )
