"""Holidays that move nurse demand: public holidays with observed dates, plus agency days.

Public holidays come from the ``holidays`` package for a configurable country and subdivision,
with observed dates (a Saturday Fourth of July is observed on Friday the 3rd: both are listed).
Agency days are the days around holidays that staffing agencies plan for although they are not
public holidays: Christmas Eve, New Year's Eve, and, in the US, Black Friday (the day after
Thanksgiving). An agency adds its own days (``extra_days``): ``("MM-DD", name)`` every year, or
``("YYYY-MM-DD", name)`` once; a public holiday on the same date keeps its name.

:class:`HolidayCalendar` also turns dates into regression columns for the forecasting models:
one "day of" column per holiday, one shared by all observed dates and, for the window
around each holiday, one column per day before and per day after (demand often dips before a
holiday and rebounds after it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays
import numpy as np


def _black_friday(year: int) -> date:
    november_first = date(year, 11, 1)
    first_thursday = november_first + timedelta(days=(3 - november_first.weekday()) % 7)
    return first_thursday + timedelta(days=22)


ExtraDays = tuple[tuple[str, str], ...]


def parse_extra_days(extra_days: ExtraDays) -> list[tuple[int | None, int, int, str]]:
    """``("MM-DD" or "YYYY-MM-DD", name)`` pairs as (year or None, month, day, name).

    Raises ValueError naming the entry when a date is malformed or impossible.
    """
    parsed: list[tuple[int | None, int, int, str]] = []
    for when, name in extra_days:
        parts = str(when).strip().split("-")
        try:
            if len(parts) == 2:
                month, day = int(parts[0]), int(parts[1])
                date(2024, month, day)  # a leap year: 02-29 is allowed (skipped in other years)
                parsed.append((None, month, day, str(name)))
            elif len(parts) == 3:
                year, month, day = int(parts[0]), int(parts[1]), int(parts[2])
                date(year, month, day)
                parsed.append((year, month, day, str(name)))
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"agency day {when!r} ({name!r}) is not a date: use MM-DD for every year or "
                "YYYY-MM-DD for one day, e.g. 07-03 or 2026-12-26."
            ) from None
        if not str(name).strip():
            raise ValueError(f"agency day {when!r} needs a name.")
    return parsed


@lru_cache(maxsize=64)
def _holidays_of_years(
    country: str,
    subdivision: str | None,
    first_year: int,
    last_year: int,
    extra_days: ExtraDays = (),
) -> tuple[tuple[date, str], ...]:
    years = range(first_year, last_year + 1)
    try:
        public = holidays.country_holidays(country, subdiv=subdivision, years=years, observed=True)
    except NotImplementedError as exc:  # the package's error for an unknown country
        raise ValueError(f"holidays does not know country code {country!r}.") from exc
    days: dict[date, str] = {d: str(name) for d, name in public.items()}
    for year in years:
        days.setdefault(date(year, 12, 24), "Christmas Eve")
        days.setdefault(date(year, 12, 31), "New Year's Eve")
        if country.upper() == "US":
            days.setdefault(_black_friday(year), "Black Friday")
    for fixed_year, month, day, name in parse_extra_days(extra_days):
        for year in years if fixed_year is None else [fixed_year]:
            if year in years and ((month, day) != (2, 29) or _is_leap(year)):
                days.setdefault(date(year, month, day), name)
    return tuple(sorted(days.items()))


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def holiday_calendar(
    start: date,
    end: date,
    country: str = "US",
    subdivision: str | None = None,
    extra_days: ExtraDays = (),
) -> dict[date, str]:
    """Holidays from ``start`` to ``end`` inclusive: date -> name (agency days included).

    Raises ValueError for an unknown country or subdivision code or a malformed extra day.
    """
    pairs = _holidays_of_years(country, subdivision, start.year, end.year, tuple(extra_days))
    return {d: name for d, name in pairs if start <= d <= end}


def holiday_key(name: str) -> str:
    """The regression column of a holiday name: its own, or 'observed' for an observed date.

    A holiday's own date keeps its effect every year; the weekday it is observed on (the
    Friday before a Saturday Fourth of July) shares one 'observed' effect across holidays.
    Two holidays on one day ('A; B') take the first one's column.
    """
    first = name.split("; ")[0].strip()
    return "observed" if "(observed" in first else first


@dataclass(frozen=True)
class HolidayCalendar:
    """Where the demand is (country, subdivision) and how wide the holiday windows are (days)."""

    country: str = "US"
    subdivision: str | None = None
    days_before: int = 1
    days_after: int = 1
    extra_days: ExtraDays = ()  # the agency's own days: ("MM-DD" or "YYYY-MM-DD", name)

    def validate(self) -> None:
        """Raise ValueError naming the code if the country or subdivision is unknown."""
        try:
            holidays.country_holidays(self.country, subdiv=self.subdivision, years=2025)
        except NotImplementedError as exc:
            raise ValueError(
                f"holidays does not know country code {self.country!r} "
                "(use an ISO code such as US or GB)."
            ) from exc
        parse_extra_days(self.extra_days)

    def days(self, start: date, end: date) -> dict[date, str]:
        """Holidays and agency days from ``start`` to ``end`` inclusive: date -> name."""
        return holiday_calendar(start, end, self.country, self.subdivision, self.extra_days)

    def features(self, days: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Regression columns (0/1) for ``days`` (datetime64[D]): (matrix n x p, column names).

        Consecutive ranges are cached (backtests ask for the same ones again and again).

        Columns: one per holiday seen in the window ('day:<holiday>'), then 'before:<k>' and
        'after:<k>' for k = 1 .. days_before / days_after (the k-th day before or after any
        holiday that is not itself a holiday).
        """
        days = np.asarray(days, dtype="datetime64[D]")
        if days.size > 1 and np.all(np.diff(days) == np.timedelta64(1, "D")):
            matrix, names = _range_features(self, days[0], days.size)
            return matrix, list(names)
        return self._columns(days)

    def _columns(self, days: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """The columns of :meth:`features`, computed (uncached)."""
        days = np.asarray(days, dtype="datetime64[D]")
        if days.size == 0:
            return np.zeros((0, 0)), []
        first = days.min().astype(date) - timedelta(days=self.days_after + 1)
        last = days.max().astype(date) + timedelta(days=self.days_before + 1)
        pairs = self.days(first, last)
        dates = np.array(list(pairs), dtype="datetime64[D]")
        keys = np.array([holiday_key(n) for n in pairs.values()], dtype=object)
        columns: list[np.ndarray] = []
        names: list[str] = []
        for key in sorted(set(keys)):
            columns.append(np.isin(days, dates[keys == key]).astype(float))
            names.append(f"day:{key}")
        is_holiday = np.isin(days, dates)
        for k in range(1, self.days_before + 1):
            near = np.isin(days + np.timedelta64(k, "D"), dates) & ~is_holiday
            columns.append(near.astype(float))
            names.append(f"before:{k}")
        for k in range(1, self.days_after + 1):
            near = np.isin(days - np.timedelta64(k, "D"), dates) & ~is_holiday
            columns.append(near.astype(float))
            names.append(f"after:{k}")
        return np.column_stack(columns) if columns else np.zeros((days.size, 0)), names


@lru_cache(maxsize=256)
def _range_features(
    calendar: HolidayCalendar, first: np.datetime64, n: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Cached columns of ``n`` consecutive days from ``first`` (backtests reuse the same ranges)."""
    matrix, names = calendar._columns(first + np.arange(n))
    matrix.setflags(write=False)
    return matrix, tuple(names)
