"""Turn raw source rows into typed frames, with the normalisations staffcast applies.

A raw column may hold text (blank or empty text is missing) or the source's native values:
timestamps with or without a zone (pandas, Arrow or Python ``datetime`` objects from a database
driver), dates, booleans, integers, floats and decimals. Both read the same way; the typed frames
are the same whatever the source sent (UTC instants, calendar dates, float hours, text ids).

Normalisations (repaired, not quarantined):

- text is stripped of surrounding blanks; blank or empty text is missing;
- ids are text: an integer id ``12`` (also ``12.0`` from a numeric column holding nulls, or a
  decimal ``12``) is the id ``"12"``, so ids typed as numbers match ids typed as text;
- the source mapping's value maps (:class:`ParseOptions` ``values``) are applied first, to any
  text column they name (role, status, response, facility_type, but also ids, region, timezone
  or on_call), keys compared after stripping, collapsing internal blanks and case-folding;
  a row whose source value is listed under ``exclude`` (compared the same way, before any map)
  is marked ``_excluded``;
- roles are upper-cased (``' rn '`` -> ``RN``), statuses, responses and facility types
  lower-cased; spelled-out roles and US spellings are mapped (:data:`ROLE_ALIASES`,
  :data:`STATUS_ALIASES`): ``Registered Nurse`` and ``R.N.`` -> ``RN``; ``Licensed Practical
  Nurse``, ``Licensed Vocational Nurse`` and ``LVN`` -> ``LPN``; ``canceled`` -> ``cancelled``.
  Anything else (for example ``CNA`` or ``pending``) is not guessed at: the row is quarantined
  (or excluded, when the mapping lists the value under ``exclude``);
- facility time zones: US abbreviations and Windows zone names are mapped to IANA zones
  (:data:`ZONE_ABBREVIATIONS`, case-insensitive: ``CST`` and ``CDT`` -> ``America/Chicago``,
  ``Eastern Standard Time`` -> ``America/New_York``), and the case of an IANA name is repaired
  (``america/chicago``). An abbreviation names the region's clock, DST included, not a fixed
  offset: a facility marked ``CST`` keeps Chicago's summer time. ``MST`` is Denver's clock
  (Mountain time with DST): Arizona facilities must say ``America/Phoenix`` (or ``US Mountain
  Standard Time``). Anything else is left as it is, and the facility is quarantined
  (``timezone_valid``) with its value;
- on_call is read from native booleans, ``1``/``0`` (as numbers or text) and the spellings
  ``true``/``false``, ``t``/``f``, ``yes``/``no``, ``y``/``n`` (any case); anything else is
  quarantined (``on_call_unparseable``), never read as false;
- shift_hours is a number of hours (``12``, ``12.0``, `` 8 ``, a decimal); a shift that crosses
  midnight or a DST change counts on the local date it starts, and its hours are taken as given;
- timestamps with a zone are converted to UTC: native zoned timestamps, and text in ISO 8601 with
  ``T`` or a blank between date and time, fractional seconds, and an offset written ``Z``,
  ``+05:30``, ``+0530`` or ``+05`` (PostgreSQL's text form: ``2023-10-19 01:00:00.123456-05``).
  pandas' ISO 8601 reader also takes year-first dates with other separators (``2025/03/05``,
  ``2025.03.05``), compact ones (``20250305``) and single-digit fields (``2025-3-5 7:00``):
  the year comes first, so they are not ambiguous;
- timestamps without a zone (naive text or native values) are local time: shift_start in the
  facility's zone; requested_at, cancelled_at and offered_at in the agency's zone. A local time
  that falls twice (DST fall-back) is read as the first of the two instants; one that does not
  exist (spring-forward gap) is moved forward to the first valid instant;
- other layouts (US ``03/05/2025 07:00 AM``, day-first ``05/03/2025 07:00``) are read only with
  the formats the source mapping gives for that column (``formats.shift_start: ["%m/%d/%Y
  %I:%M %p"]``), tried in order after ISO 8601 on the values ISO 8601 does not read, so a mixed
  export works. A date that starts with day and month (``03/05/2025``) is ambiguous (March or
  May?), so staffcast never guesses: without a format the value stays unread and the quarantine
  detail shows it, with a hint to set ``formats.<column>`` in the source mapping;
- dates (active_from, active_to, hired_on, separated_on) are calendar dates: ISO ``2025-03-05``
  (also ``2025/03/05`` or ``2025.03.05``; a time after it, if any, is dropped), a native date,
  or a native timestamp, which keeps the calendar date it shows in its own zone (a date stored
  as midnight in Chicago stays that date).
  The same ``formats`` setting reads other layouts (``%m/%d/%Y``). In active_to and separated_on
  a date past 2262-04-11 (the end of pandas' calendar; sources write ``9999-12-31`` for "no
  end") means no end date; in other columns it is unparseable.

A value that cannot be read becomes missing, and the contracts quarantine its row with the rule
that names it: ``<field>_missing`` when the source gave nothing, ``<field>_unparseable`` (with
what the source said) when it gave something staffcast cannot read; optional fields are only
checked for the latter. Every frame gets ``_row``, the position of the row in the extract, so
quarantined rows can be traced back; ``_excluded``, true for rows the mapping puts out of scope;
and ``_raw_<field>``, the source's text where a value was given but not read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import available_timezones

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

ZONE_ABBREVIATIONS: dict[str, str] = {
    # US abbreviations: the region's clock (DST included), whichever half of the year is named.
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "MST": "America/Denver",  # Arizona has no DST: its sources must say America/Phoenix
    "MDT": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "AKST": "America/Anchorage",
    "AKDT": "America/Anchorage",
    "HST": "Pacific/Honolulu",
    # Windows zone names (as SQL Server and Windows exports write them).
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
}
"""Time-zone names in facilities.timezone mapped to the IANA zone whose clock they name
(compared case-insensitively). ``US/Central``-style names are IANA zones already and pass as
they are. ``EST``, ``MST`` and ``HST`` are also legacy IANA names for fixed offsets without DST;
a facility column means the local clock, so this table wins: ``EST`` is New York's clock, DST
included. ``MST`` is read as Denver (Mountain time with DST); Arizona sources must write
``America/Phoenix``."""

TRUE_SPELLINGS = frozenset({"1", "true", "t", "yes", "y"})
"""Text read as on_call = true (after stripping and lower-casing); numbers 1 and 1.0 too."""

FALSE_SPELLINGS = frozenset({"0", "false", "f", "no", "n"})
"""Text read as on_call = false (after stripping and lower-casing); numbers 0 and 0.0 too."""

_ISO_ZONED_T = "%Y-%m-%dT%H:%M:%S%z"
_ISO_ZONED_BLANK = "%Y-%m-%d %H:%M:%S%z"
# An offset after a time of day (a bare date such as 2025-03-05 does not end in an offset).
_ZONE_SUFFIX = r":\d{2}(?:\.\d+)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_ISO_DATE = r"^\d{4}[-/.]\d{2}[-/.]\d{2}(?:[T ].*)?$"
_DAY_FIRST_OR_MONTH_FIRST = re.compile(r"\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b")
_TIMESTAMP_EXAMPLE = "%m/%d/%Y %I:%M %p"
_DATE_EXAMPLE = "%m/%d/%Y"
# The instants pandas can hold (datetime64[ns]), in a unit any source resolution compares with.
_EARLIEST = np.datetime64("1677-09-22", "s")
_LATEST = np.datetime64("2262-04-11", "s")


class SourceText(str):
    """What the source said for a value staffcast could not read, with a hint on how to make
    it readable.

    It is the text itself (``==``, hashing and ``str()`` as the plain string); its ``repr``,
    which quarantine details show, adds the hint in brackets, e.g. ``'03/05/2025 07:00 AM'
    (day and month order is ambiguous: set formats.shift_start in the source mapping
    (e.g. %m/%d/%Y %I:%M %p))``. Only values with a hint are made into one.
    """

    hint: str

    def __new__(cls, text: str, hint: str) -> SourceText:
        made = super().__new__(cls, text)
        made.hint = hint
        return made

    def __repr__(self) -> str:
        return f"{str.__repr__(self)} ({self.hint})"

    def __reduce__(self) -> tuple[Callable[..., SourceText], tuple[str, str]]:
        return SourceText, (str(self), self.hint)


def _fold(value: str) -> str:
    """A value compared by meaning: blanks collapsed, case folded (``' Registered  nurse'``)."""
    return " ".join(value.split()).casefold()


def _one_text(value: object) -> str | None:
    """One native value as the text the source would have written (None when missing).

    Used per distinct value of columns that mix Python types (text and numbers, datetimes with
    different offsets): integral numbers without a decimal point, datetimes in ISO 8601.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return str(int(value)) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _per_distinct(values: pd.Series, convert: Callable[[Hashable], object]) -> pd.Series:
    """``convert`` applied once per distinct value of ``values`` (missing stays missing)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    converted = np.array([convert(u) for u in uniques] + [None], dtype=object)
    return pd.Series(converted[codes], index=values.index, dtype=object)


def _number_text(values: pd.Series) -> pd.Series:
    """Numbers as text, integral ones without a decimal point (12.0 -> ``"12"``)."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("str")
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    text = pa.array(numbers.astype("str").array)
    return pd.Series(
        pc.replace_substring_regex(text, r"\.0$", "").to_pandas(), index=values.index, dtype="str"
    )


def _matches(text: pd.Series, pattern: str) -> np.ndarray:
    """Where ``text`` matches the RE2 ``pattern`` (Arrow, vectorised; missing -> False)."""
    found = pc.match_substring_regex(pa.array(text.array), pattern)
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_text_dtype(dtype: object) -> bool:
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(
            dtype.pyarrow_dtype
        )
    return isinstance(dtype, pd.StringDtype)


def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped text (``str`` dtype); blank, empty and missing values are missing.

    Text passes through vectorised string operations; numbers become their text without a
    trailing ``.0``; other native values (and columns mixing Python types) are written out
    once per distinct value (:func:`_one_text`).
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    dtype = values.dtype
    if _is_text_dtype(dtype):
        text = values.astype("str")
    elif pd.api.types.is_bool_dtype(dtype):
        text = values.astype("boolean").astype("str")
    elif pd.api.types.is_numeric_dtype(dtype):
        text = _number_text(values)
    elif pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind in ("string", "empty"):
            text = values.astype("str")
        elif kind in ("integer", "floating", "mixed-integer-float"):
            text = _number_text(values)
        else:
            text = _per_distinct(values, _one_text).astype("str")
    else:  # native timestamps and anything else pandas can write as text
        text = values.astype("str")
    text = text.str.strip()
    return text.mask(text == "")


def _values_map(options: ParseOptions, column: str) -> dict[str, str]:
    """The value map for ``column``, keyed by folded source value."""
    return {_fold(k): v for k, v in (options.values.get(column) or {}).items()}


def _mapped(text: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """``text`` with the value map applied (once per distinct value); unmapped values kept."""
    if not mapping:
        return text
    mapped = _per_distinct(text, lambda v: mapping.get(_fold(str(v)), v))
    return mapped.astype("str")


def _coded(
    text: pd.Series,
    mapping: dict[str, str],
    case: str | None = None,
    aliases: dict[str, str] | None = None,
) -> pd.Series:
    """Text as a category: value map, blanks collapsed, case, aliases (once per category)."""
    categories = text.astype("category")
    names = []
    for category in categories.cat.categories:
        name = str(category)
        name = " ".join(mapping.get(_fold(name), name).split())
        name = name.upper() if case == "upper" else name.lower() if case == "lower" else name
        names.append((aliases or {}).get(name, name))
    unique = list(dict.fromkeys(names))
    position = {name: i for i, name in enumerate(unique)}
    recode = np.array([position[n] for n in names] + [-1], dtype=np.int64)
    codes = recode[categories.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing -1
    return pd.Series(
        pd.Categorical.from_codes(codes, categories=unique), index=text.index, name=text.name
    )


def _text_column(
    raw: pd.DataFrame, column: str, options: ParseOptions, case: str | None = None
) -> pd.Series:
    """A plain text column (ids, region): stripped, value map applied, optionally cased."""
    text = _mapped(_as_text(raw[column]), _values_map(options, column))
    if case == "lower":
        return text.str.lower()
    return text


def _excluded(raw: pd.DataFrame, options: ParseOptions) -> np.ndarray:
    """True for rows whose source value, in a column of ``options.exclude``, is listed there."""
    out = np.zeros(len(raw), dtype=bool)
    for column, values in options.exclude.items():
        if column not in raw.columns or not values:
            continue
        wanted = {_fold(str(v)) for v in values}
        codes, uniques = pd.factorize(_as_text(raw[column]), use_na_sentinel=True)
        hit = np.array([_fold(str(u)) in wanted for u in uniques] + [False], dtype=bool)
        out |= hit[codes]
    return out


def _to_ns(stamps: pd.Series) -> pd.Series:
    """Datetimes (any resolution, zoned or not) as nanoseconds; out-of-range values -> NaT."""
    if stamps.dt.unit == "ns":
        return stamps
    tz = stamps.dt.tz
    wall = stamps.dt.tz_convert("UTC").dt.tz_localize(None) if tz is not None else stamps
    array = wall.to_numpy()
    inside = (array > _EARLIEST) & (array < _LATEST)
    array = np.where(inside, array, np.datetime64("NaT")).astype("datetime64[ns]")
    out = pd.Series(array, index=stamps.index)
    return out.dt.tz_localize("UTC").dt.tz_convert(tz) if tz is not None else out


def _utc_wall(stamps: pd.Series) -> np.ndarray:
    """UTC instants (zoned Series) as a naive ``datetime64[ns]`` array, for positional writes."""
    return _to_ns(stamps).dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")


def _localise(local: pd.Series, zone: pd.Series | str) -> pd.Series:
    """Naive wall-clock times (datetime64) in ``zone`` (one zone, or one per row) as UTC.

    Fall-back repeats read as the first instant, spring-forward gaps move forward; a missing or
    unknown zone leaves NaT (the contracts quarantine the row). Done once per distinct zone.
    """
    stamps = _to_ns(local).to_numpy(dtype="datetime64[ns]")
    out = np.full(len(stamps), np.datetime64("NaT"), dtype="datetime64[ns]")
    if isinstance(zone, str):
        codes, uniques = np.zeros(len(stamps), dtype=np.int64), [zone]
    elif isinstance(zone.dtype, pd.CategoricalDtype):  # facility zones: codes already there
        codes, uniques = zone.cat.codes.to_numpy(), list(zone.cat.categories)
    else:
        codes, uniques = pd.factorize(zone.astype(object).to_numpy(), use_na_sentinel=True)
    valid = ~np.isnat(stamps)
    for code, name in enumerate(uniques):
        at = (codes == code) & valid
        if not at.any():
            continue
        try:
            utc = (
                pd.DatetimeIndex(stamps[at])
                .tz_localize(
                    str(name),
                    ambiguous=np.ones(int(at.sum()), dtype=bool),
                    nonexistent="shift_forward",
                )
                .tz_convert("UTC")
            )
        except Exception:  # noqa: BLE001 - an invalid zone leaves NaT for quarantine
            continue
        out[at] = utc.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return pd.Series(out, index=local.index).dt.tz_localize("UTC")


def _arrow_type(values: pd.Series) -> pa.DataType | None:
    return values.dtype.pyarrow_dtype if isinstance(values.dtype, pd.ArrowDtype) else None


def _native_datetimes(values: pd.Series) -> pd.Series | None:
    """Native timestamps or dates as a pandas datetime Series (zoned or naive), else None.

    Python ``datetime`` objects that mix offsets or zoned and naive values return None: they
    are read as text, which handles each value's own offset.
    """
    arrow = _arrow_type(values)
    if arrow is not None:
        # Through Arrow's own conversion: pandas' astype on an Arrow-typed column goes value by
        # value through Python objects (7 s per million timestamps instead of 17 ms).
        data = pa.chunked_array(values.array.__arrow_array__())
        if pa.types.is_date(arrow):
            data = data.cast(pa.timestamp("s"))
        elif not pa.types.is_timestamp(arrow):
            return None
        return pd.Series(data.to_pandas().array, index=values.index, name=values.name)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    if pd.api.types.is_object_dtype(values.dtype) and pd.api.types.infer_dtype(
        values, skipna=True
    ) in (
        "datetime",
        "datetime64",
        "date",
    ):
        try:
            return pd.to_datetime(values)
        except (ValueError, TypeError):  # mixed offsets, or zoned and naive together
            return None
    return None


def _unread_hint(column: str, formats: Sequence[str], example: str) -> Callable[[str], str]:
    """The quarantine hint for a value no reader understood (a function of the value)."""

    def hint(value: str) -> str:
        if formats:
            return f"none of formats.{column} ({'; '.join(formats)}) reads it"
        if _DAY_FIRST_OR_MONTH_FIRST.match(value):
            return (
                f"day and month order is ambiguous: set formats.{column} in the source mapping "
                f"(e.g. {example})"
            )
        return ""

    return hint


def _unread(
    raw: pd.Series,
    parsed: pd.Series,
    hint: Callable[[str], str] | None = None,
    ignore: np.ndarray | None = None,
) -> pd.Series:
    """What the source said where it gave a value that did not parse (missing elsewhere).

    Blank text counts as not given; rows in ``ignore`` are not reported. With ``hint``, values
    it has a hint for become :class:`SourceText` (the column is then of object dtype), so
    quarantine details say how to make them readable.
    """
    failed = parsed.isna().to_numpy() & raw.notna().to_numpy()
    if ignore is not None:
        failed &= ~ignore
    out = pd.Series(np.nan, index=raw.index, dtype="str")
    if not failed.any():
        return out
    at = np.flatnonzero(failed)
    text = _as_text(raw.iloc[at])
    out.iloc[at] = text.to_numpy(dtype=object, na_value=np.nan)
    if hint is None:
        return out
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    said = [SourceText(str(u), h) if (h := hint(str(u))) else str(u) for u in uniques]
    if not any(isinstance(s, SourceText) for s in said):
        return out
    with_hints = out.astype(object)
    with_hints.iloc[at] = np.array([*said, np.nan], dtype=object)[codes]
    return with_hints


def _parse_text_timestamps(
    text: pd.Series, local_zone: pd.Series | str, formats: Sequence[str]
) -> pd.Series:
    """Text timestamps to UTC (see the module docstring for the forms read).

    Each reader sees only the values the previous ones left unread: Arrow's ISO 8601 with
    ``T``, Arrow's PostgreSQL text form, pandas' ISO 8601 (any variant), then ``formats``.
    """
    given = text.notna().to_numpy()
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[ns]")

    def unread() -> np.ndarray:
        return np.flatnonzero(given & np.isnat(out))

    def zones_at(at: np.ndarray) -> pd.Series | str:
        return local_zone if isinstance(local_zone, str) else local_zone.iloc[at]

    for layout in (_ISO_ZONED_T, _ISO_ZONED_BLANK):
        at = unread() if layout != _ISO_ZONED_T else np.arange(len(text))
        if not len(at):
            return pd.Series(out, index=text.index).dt.tz_localize("UTC")
        subset = text if layout == _ISO_ZONED_T else text.iloc[at]
        read = pc.strptime(
            pa.array(subset.array), format=layout, unit="ns", error_is_null=True
        ).to_numpy(zero_copy_only=False)
        out[at] = read
    at = unread()
    if len(at):
        rest = text.iloc[at]
        zoned = _matches(rest, _ZONE_SUFFIX)
        if zoned.any():
            read = pd.to_datetime(rest[zoned], utc=True, format="ISO8601", errors="coerce")
            out[at[zoned]] = _utc_wall(read)
        if (~zoned).any():
            local = _to_ns(pd.to_datetime(rest[~zoned], format="ISO8601", errors="coerce"))
            out[at[~zoned]] = _utc_wall(_localise(local, zones_at(at[~zoned])))
    for layout in formats:
        at = unread()
        if not len(at):
            break
        with_zone = "%z" in layout or "%Z" in layout
        read = pd.to_datetime(text.iloc[at], format=layout, errors="coerce", utc=with_zone)
        out[at] = _utc_wall(read if with_zone else _localise(_to_ns(read), zones_at(at)))
    return pd.Series(out, index=text.index).dt.tz_localize("UTC")


def parse_timestamps(
    values: pd.Series, local_zone: pd.Series | str, formats: Sequence[str] = ()
) -> pd.Series:
    """Parse timestamps to UTC instants (``datetime64[ns, UTC]``).

    Values with a zone or offset are converted; values without one are wall-clock time in
    ``local_zone``: one IANA zone for all rows, or a Series of zones aligned with ``values``.
    ``values`` may be text or native timestamps (see the module docstring); ``formats`` are
    ``strftime`` layouts tried after ISO 8601. Unreadable values (and values whose zone is
    unknown) become NaT.

    The common forms ``YYYY-MM-DDTHH:MM:SS+HH:MM`` (or ``Z``) and PostgreSQL's
    ``YYYY-MM-DD HH:MM:SS+HH`` are parsed by Arrow in one pass each; other ISO 8601 variants
    and the configured formats go through pandas, only for the values still unread.
    """
    native = _native_datetimes(values)
    if native is not None:
        if native.dt.tz is not None:
            return _to_ns(native.dt.tz_convert("UTC"))
        return _localise(native, local_zone)
    return _parse_text_timestamps(_as_text(values), local_zone, formats)


def _read_dates(values: pd.Series, formats: Sequence[str] = ()) -> tuple[pd.Series, np.ndarray]:
    """Calendar dates (``datetime64[ns]`` at midnight) and where they lie past 2262-04-11
    (those are NaT in the dates)."""
    days = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    native = _native_datetimes(values)
    if native is not None:
        if native.dt.tz is not None:
            native = native.dt.tz_localize(None)  # the date it shows in its own zone
        days[:] = native.to_numpy().astype("datetime64[D]")
    else:
        text = _as_text(values)
        iso = _matches(text, _ISO_DATE)
        head = text[iso].str.slice(0, 10).str.replace("/", "-").str.replace(".", "-")
        read = pd.to_datetime(head, format="%Y-%m-%d", errors="coerce")
        days[iso] = read.to_numpy().astype("datetime64[D]")
        given = text.notna().to_numpy()
        for layout in formats:
            at = np.flatnonzero(given & np.isnat(days))
            if not len(at):
                break
            try:
                read = pd.to_datetime(text.iloc[at], format=layout, errors="coerce")
            except ValueError:  # offsets that differ between rows: not a calendar date
                continue
            if read.dt.tz is not None:
                read = read.dt.tz_localize(None)
            days[at] = read.to_numpy().astype("datetime64[D]")
    beyond = ~np.isnat(days) & (days >= _LATEST)
    inside = (days > _EARLIEST) & (days < _LATEST)
    dates = np.where(inside, days, np.datetime64("NaT")).astype("datetime64[ns]")
    return pd.Series(dates, index=values.index), beyond


def parse_dates(values: pd.Series, formats: Sequence[str] = ()) -> pd.Series:
    """Parse calendar dates (``datetime64[ns]`` at midnight; time of day, if any, dropped).

    ``values`` may be ISO text, native dates or native timestamps (which keep the calendar date
    they show); ``formats`` are ``strftime`` layouts tried after ISO 8601. Unreadable -> NaT.
    """
    return _read_dates(values, formats)[0]


def _read_hours(values: pd.Series) -> pd.Series:
    """Numbers of hours as float: native numbers and decimals, or numeric text."""
    dtype = values.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return pd.to_numeric(values, errors="coerce").astype(float)
    if pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(values, skipna=True) in (
        "integer",
        "floating",
        "mixed-integer-float",
        "decimal",
    ):
        return pd.to_numeric(values, errors="coerce").astype(float)
    return pd.to_numeric(_as_text(values), errors="coerce").astype(float)


def _read_flags(values: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """Yes/no flags as a nullable boolean: NA where missing or not a recognised spelling."""
    arrow = _arrow_type(values)
    native = pd.api.types.is_bool_dtype(values.dtype) or (
        arrow is not None and pa.types.is_boolean(arrow)
    )
    if native and not mapping:
        return values.astype("boolean")
    text = _mapped(_as_text(values), mapping).str.lower()
    number = pd.to_numeric(text, errors="coerce")
    true = text.isin(TRUE_SPELLINGS) | (number == 1)
    false = text.isin(FALSE_SPELLINGS) | (number == 0)
    flags = pd.Series(pd.NA, index=values.index, dtype="boolean")
    flags[true.to_numpy()] = True
    flags[false.to_numpy()] = False
    return flags


def parse_facilities(raw: pd.DataFrame, *, options: ParseOptions = DEFAULT_OPTIONS) -> pd.DataFrame:
    """Typed facilities: text ids, IANA time zones, calendar dates of activity."""
    dates = {
        c: _read_dates(raw[c], options.formats.get(c, ())) for c in ("active_from", "active_to")
    }
    zone = _zone_names(_text_column(raw, "timezone", options))
    frame = pd.DataFrame(
        {
            "_row": np.arange(len(raw)),
            "facility_id": _text_column(raw, "facility_id", options),
            "facility_type": _text_column(raw, "facility_type", options, "lower"),
            "region": _text_column(raw, "region", options),
            "timezone": zone,
            "active_from": dates["active_from"][0],
            "active_to": dates["active_to"][0],
            "_excluded": _excluded(raw, options),
        },
        index=raw.index,
    )
    for column, (parsed, beyond) in dates.items():
        hint = _unread_hint(column, options.formats.get(column, ()), _DATE_EXAMPLE)
        open_ended = beyond if column == "active_to" else None
        frame[f"_raw_{column}"] = _unread(raw[column], parsed, hint, ignore=open_ended)
    return frame


def _zone_names(zones: pd.Series) -> pd.Series:
    """Time-zone names as IANA zones (abbreviations, Windows names, case), once per value."""
    known = {_fold(z): z for z in available_timezones()}
    known.update({_fold(k): v for k, v in ZONE_ABBREVIATIONS.items()})  # EST, MST, HST too
    return _per_distinct(zones, lambda v: known.get(_fold(str(v)), v)).astype("str")


def parse_shift_requests(
    raw: pd.DataFrame,
    facility_zones: pd.Series,
    agency_timezone: str,
    row_offset: int = 0,
    *,
    options: ParseOptions = DEFAULT_OPTIONS,
) -> pd.DataFrame:
    """Typed shift requests with the derived columns the contracts check.

    ``facility_zones`` maps facility_id to its IANA zone (local shift_start times). ``raw``
    may be one chunk of the extract: ``row_offset`` is the position of its first row. The
    ``_duplicate`` column needs every chunk and is added by :func:`duplicate_kind` afterwards.
    Instants are UTC; ``_hours_requested_after_start`` is in hours.
    """
    formats = options.formats
    facility_id = _text_column(raw, "facility_id", options).astype("category")
    zones = facility_id.map(facility_zones.to_dict())  # maps the categories, not every row
    stamps = {
        "shift_start": parse_timestamps(raw["shift_start"], zones, formats.get("shift_start", ())),
        "requested_at": parse_timestamps(
            raw["requested_at"], agency_timezone, formats.get("requested_at", ())
        ),
        "cancelled_at": parse_timestamps(
            raw["cancelled_at"], agency_timezone, formats.get("cancelled_at", ())
        ),
    }
    hours = _read_hours(raw["shift_hours"])
    frame = pd.DataFrame(
        {
            "_row": np.arange(row_offset, row_offset + len(raw)),
            "request_id": _text_column(raw, "request_id", options),
            "facility_id": facility_id,
            "role": _coded(
                _as_text(raw["role"]), _values_map(options, "role"), "upper", ROLE_ALIASES
            ),
            "shift_start": stamps["shift_start"],
            "shift_hours": hours,
            "requested_at": stamps["requested_at"],
            "status": _coded(
                _as_text(raw["status"]), _values_map(options, "status"), "lower", STATUS_ALIASES
            ),
            "cancelled_at": stamps["cancelled_at"],
            "_excluded": _excluded(raw, options),
        },
        index=raw.index,
    )
    for column in ("shift_start", "requested_at", "cancelled_at"):
        hint = _unread_hint(column, formats.get(column, ()), _TIMESTAMP_EXAMPLE)
        frame[f"_raw_{column}"] = _unread(raw[column], stamps[column], hint)
    frame["_raw_shift_hours"] = _unread(raw["shift_hours"], hours)
    frame["_hours_requested_after_start"] = (
        frame["requested_at"] - frame["shift_start"]
    ) / pd.Timedelta(hours=1)
    return frame


def key_text(raw: pd.DataFrame, column: str, options: ParseOptions = DEFAULT_OPTIONS) -> pd.Series:
    """A raw id column as parsing reads it (stripped, value map applied): what
    :func:`duplicate_kind` compares, for a first pass that reads the ids alone."""
    return _text_column(raw, column, options)


def key_hashes(keys: pd.Series) -> np.ndarray:
    """64-bit hashes of ids as :func:`duplicate_kind` compares them (text, stripped); a missing
    or blank id hashes to 0, which no id is taken to repeat."""
    text = keys.astype("str").str.strip()
    missing = (text.isna() | (text == "")).to_numpy()
    hashes = pd.util.hash_array(text.fillna("").to_numpy(dtype=object), categorize=False)
    hashes[missing] = 0
    return hashes


def duplicate_kind(frame: pd.DataFrame, key: str, ignore: tuple[str, ...] = ()) -> pd.Series:
    """'no' for a unique key or the first of identical copies, else 'identical' or 'conflicting'.

    Copies are compared after parsing (columns in ``ignore`` left out), so copies that differ
    only by a repaired variant (' rn ' and 'RN') are identical. Identical copies are harmless:
    the first is used. When copies disagree nobody can tell which is right, so all of them are
    quarantined. A missing key is never a copy of another missing key: those rows are
    quarantined for the missing id (``request_id_present``), not as duplicates.
    """
    raw = frame.drop(columns=[c for c in ignore if c in frame.columns])
    keys = raw[key].astype("str").str.strip()
    keys = keys.mask(keys == "")
    codes, _ = pd.factorize(keys, use_na_sentinel=True)
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


def parse_nurses(raw: pd.DataFrame, *, options: ParseOptions = DEFAULT_OPTIONS) -> pd.DataFrame:
    """Typed nurses: on_call a nullable boolean (NA only where the source's value is missing or
    not a recognised spelling, rows the contracts quarantine), hire and separation dates."""
    on_call = _read_flags(raw["on_call"], _values_map(options, "on_call"))
    dates = {
        c: _read_dates(raw[c], options.formats.get(c, ())) for c in ("hired_on", "separated_on")
    }
    frame = pd.DataFrame(
        {
            "_row": np.arange(len(raw)),
            "nurse_id": _text_column(raw, "nurse_id", options),
            "role": _coded(
                _as_text(raw["role"]), _values_map(options, "role"), "upper", ROLE_ALIASES
            ),
            "region": _text_column(raw, "region", options),
            "on_call": on_call,
            "hired_on": dates["hired_on"][0],
            "separated_on": dates["separated_on"][0],
            "_excluded": _excluded(raw, options),
        },
        index=raw.index,
    )
    frame["_raw_on_call"] = _unread(raw["on_call"], on_call)
    for column, (parsed, beyond) in dates.items():
        hint = _unread_hint(column, options.formats.get(column, ()), _DATE_EXAMPLE)
        open_ended = beyond if column == "separated_on" else None
        frame[f"_raw_{column}"] = _unread(raw[column], parsed, hint, ignore=open_ended)
    return frame


def parse_shift_offers(
    raw: pd.DataFrame,
    agency_timezone: str,
    row_offset: int = 0,
    *,
    options: ParseOptions = DEFAULT_OPTIONS,
) -> pd.DataFrame:
    """Typed shift offers (``raw`` may be one chunk; ``row_offset`` its first row's position);
    offered_at in UTC."""
    formats = options.formats.get("offered_at", ())
    offered_at = parse_timestamps(raw["offered_at"], agency_timezone, formats)
    frame = pd.DataFrame(
        {
            "_row": np.arange(row_offset, row_offset + len(raw)),
            "request_id": _text_column(raw, "request_id", options),
            "offered_at": offered_at,
            "response": _coded(
                _as_text(raw["response"]), _values_map(options, "response"), "lower"
            ),
            "_excluded": _excluded(raw, options),
        },
        index=raw.index,
    )
    hint = _unread_hint("offered_at", formats, _TIMESTAMP_EXAMPLE)
    frame["_raw_offered_at"] = _unread(raw["offered_at"], offered_at, hint)
    return frame
