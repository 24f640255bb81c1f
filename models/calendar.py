"""Holidays that move nurse demand: public holidays with observed dates, plus agency days.

Public holidays come from the ``holidays`` package for a configurable country and subdivision,
with observed dates (a Saturday Fourth of July is observed on Friday the 3rd: both are listed).
Agency days are the days around holidays that staffing agencies plan for although they are not
public holidays: Christmas Eve, New Year's Eve, and, in the US, Black Friday.
"""

from __future__ import annotations

from datetime import date, timedelta

import holidays


def _black_friday(year: int) -> date:
    november_first = date(year, 11, 1)
    first_thursday = november_first + timedelta(days=(3 - november_first.weekday()) % 7)
    return first_thursday + timedelta(days=22)


def holiday_calendar(
    start: date, end: date, country: str = "US", subdivision: str | None = None
) -> dict[date, str]:
    """Holidays from ``start`` to ``end`` inclusive: date -> name.

    Raises ValueError for an unknown country or subdivision code.
    """
    years = range(start.year, end.year + 1)
    public = holidays.country_holidays(country, subdiv=subdivision, years=years, observed=True)
    days: dict[date, str] = {d: str(name) for d, name in public.items()}
    for year in years:
        days.setdefault(date(year, 12, 24), "Christmas Eve")
        days.setdefault(date(year, 12, 31), "New Year's Eve")
        if country.upper() == "US":
            days.setdefault(_black_friday(year), "Black Friday")
    return {d: name for d, name in sorted(days.items()) if start <= d <= end}
