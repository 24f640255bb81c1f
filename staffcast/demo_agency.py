"""The demo agency: a seeded, realistic operational database for ``staffcast demo``.

It stands for a 25-year-old regional nurse staffing agency around Chicago that places RNs and
LPNs at hospitals and nursing homes in four regions. The file has the four source tables of
SPEC §2 and the features the pipeline has to cope with in real data:

* **Demand** per facility and role: negative binomial daily counts (shifts/day) with a weekly
  pattern (hospitals quieter at weekends, nursing homes busier), a winter peak (about +20 % in
  January), agency growth (about +6 %/year, varying by facility), and holidays (US federal with
  observed dates plus Christmas Eve and New Year's Eve: +25 % on the big five, -10 % on the
  others, +10 % rebound the day after), when staff take leave and facilities call the agency.
* **Facility life cycle**: most facilities are long-standing clients, a few opened during the
  history, one opened last month (short history) and one closed last spring (May 15).
* **As-of discipline**: requests exist only if requested before ``as_of`` (midnight,
  America/Chicago); lead times (a quarter same-day, the rest about six days) leave requests
  already booked for the coming eight weeks. Cancellations made on or after ``as_of`` are not
  visible yet, so those requests still show as filled or open.
* **Statuses**: about 83 % filled, 9 % unfilled (more in winter and on holidays, when nurses
  accept fewer calls) and 8 % cancelled, a third of those late (less than 24 h before the shift).
* **Nurses** with about 27 % annual attrition and replacement hires; **shift offers** for the
  last 365 days whose acceptance rate is about 0.35 (RN) and 0.42 (LPN), 0.7 times that on
  holidays. A filled request has exactly one accepted offer, to the nurse it was filled by.
* **Sensitive columns** the pipeline must never select (nurse names and phones, free-text notes)
  and a handful of **deliberately bad rows** (far below 1 %) that validation must quarantine.

Everything derives from one ``numpy.random.default_rng(seed)``: same arguments, same file.
Generation is vectorised (counts per facility, role and day, then ``np.repeat`` into rows) and
strings are formatted chunk by chunk while writing, so 500 facilities x 3 years stays fast.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import numpy as np

ZONE_NAME = "America/Chicago"
ZONE = ZoneInfo(ZONE_NAME)
REGIONS = ("Chicago City", "North Shore", "West Suburbs", "South Suburbs")
AREA_CODES = ("312", "847", "630", "708")
ROLES = ("RN", "LPN")
STATUSES = ("filled", "unfilled", "cancelled")
# fmt: off
UNITS = ("ICU", "Med-Surg", "ER", "Telemetry", "Step-down", "Long-term care", "Rehab",
         "Memory care")
START_HOURS = np.array([7, 15, 19, 23])  # local shift start hours, shares below
START_SHARE = (0.45, 0.20, 0.25, 0.10)
# Monday..Sunday demand multipliers: row 0 nursing homes, row 1 hospitals.
WEEKDAY_FACTOR = np.array(
    [[0.95, 0.95, 0.95, 1.00, 1.10, 1.10, 1.10], [1.10, 1.05, 1.05, 1.00, 0.95, 0.80, 0.75]]
)
ACCEPT_RATE = np.array([0.35, 0.42])  # per offer, RN and LPN
OFFERS_CAP_SHARE = (0.01, 0.01, 0.03, 0.08, 0.22, 0.65)  # nurses reachable per request: 1..6
ANNUAL_ATTRITION = 0.27
BAD_RULES = ("unknown_facility", "shift_hours_out_of_range", "status_not_in_set",
             "duplicate_request_id", "requested_after_shift_start", "role_not_in_set")
DAY, HOUR = 86_400, 3_600
EPOCH = date(1970, 1, 1)
NO_END = 10**6  # day number standing for "still active"
CHUNK = 200_000

PLACES = ("Lakeview", "Maple Grove", "Riverside", "Prairie View", "Oak Hollow", "Cedar Ridge",
          "Lincoln Park", "Fox River", "Willow Creek", "Harbor Point", "Northbrook", "Sauganash",
          "Elm Court", "Des Plaines Valley", "Bridgeport", "Calumet", "Hickory Hills", "Kenwood",
          "Edgewater", "Ravenswood", "Garfield", "Lake Shore", "Sandburg", "Pullman", "Beverly",
          "Midway", "Salt Creek", "Thornton", "Heritage Oaks", "Glenview", "Cicero Avenue",
          "Wheaton Park", "Meadowbrook", "Orchard Hill", "St. Brendan", "St. Agnes", "Mercy Park",
          "Silver Lake", "Cottonwood", "Stonebridge")
HOSPITAL_KINDS = ("Memorial Hospital", "Medical Center", "Community Hospital", "General Hospital",
                  "Regional Medical Center", "Health System")
HOME_KINDS = ("Care Center", "Nursing and Rehabilitation", "Senior Living", "Health Care Center",
              "Manor", "Rehabilitation and Nursing Center")
FIRST_NAMES = ("Maria", "Jennifer", "Patricia", "Linda", "Aisha", "Grace", "Olivia", "Emily",
               "Sofia", "Rosa", "Tamika", "Megan", "Angela", "Priya", "Joy", "Fatima", "Nicole",
               "Ana", "Jasmine", "Katherine", "Michael", "James", "David", "Carlos", "Kevin",
               "Daniel", "Marcus", "Anthony", "Jose", "Brian", "Samuel", "Tyrone", "Ethan", "Luis")
LAST_NAMES = ("Garcia", "Johnson", "Smith", "Williams", "Brown", "Jones", "Kowalski", "Nowak",
              "Rodriguez", "Martinez", "Hernandez", "Lopez", "Davis", "Miller", "Wilson", "Moore",
              "Taylor", "Anderson", "Thomas", "Jackson", "White", "Harris", "Clark", "Lewis",
              "Robinson", "Walker", "Young", "Allen", "Santos", "Reyes", "Cruz", "Nguyen", "Patel",
              "Kim", "O'Brien", "Murphy", "Sullivan", "Schmidt", "Novak", "Washington")
NOTES = ("Report to charge nurse Linda on 4 West", "ACLS/PALS required", "Covering FMLA leave",
         "Float pool, may be moved between units", "Pt on isolation, PPE provided",
         "Call Dana 312-555-0143 if running late", "Park in garage B, validate at front desk",
         "Sitter assignment possible", "Trach/vent experience preferred",
         "Same nurse as last week if possible", "Badge pickup at security desk",
         "Door code at nurses station", "Census high, may extend to 12h")
# fmt: on

SCHEMA = """
CREATE TABLE facilities (facility_id TEXT PRIMARY KEY, name TEXT NOT NULL,
    facility_type TEXT NOT NULL, region TEXT NOT NULL, timezone TEXT NOT NULL,
    active_from TEXT NOT NULL, active_to TEXT);
CREATE TABLE shift_requests (request_id TEXT NOT NULL, facility_id TEXT NOT NULL, role TEXT,
    shift_start TEXT, shift_hours REAL, requested_at TEXT, status TEXT, cancelled_at TEXT,
    unit TEXT, nurse_id TEXT, notes TEXT);
CREATE TABLE nurses (nurse_id TEXT PRIMARY KEY, name TEXT, phone TEXT, role TEXT, region TEXT,
    on_call INTEGER, hired_on TEXT, separated_on TEXT);
CREATE TABLE shift_offers (request_id TEXT NOT NULL, nurse_id TEXT, offered_at TEXT,
    response TEXT);
"""

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class DemoAgency:
    """What :func:`build_demo_agency` wrote: the file, its cut-off day and row counts."""

    path: Path
    as_of: date
    facilities: int
    shift_requests: int
    nurses: int
    shift_offers: int
    bad_requests: dict[str, list[str]]


def build_demo_agency(
    path: Path, as_of: date, facilities: int = 40, years: float = 3.0, seed: int = 7
) -> DemoAgency:
    """(Re)create the demo agency's SQLite file at ``path``, cut at midnight of ``as_of``.

    ``facilities`` clients (at least 4) in four regions; ``years`` of shift dates before
    ``as_of`` (plus requests already booked for the next 56 days). 40 facilities make about
    300 requests per day. Returns the row counts written and the deliberately bad request ids.
    """
    if facilities < 4 or years <= 0:
        raise ValueError("build_demo_agency needs facilities >= 4 and years > 0")
    rng = np.random.default_rng(seed)
    first = as_of - timedelta(days=round(years * 365.25))
    as_num, first_num = (as_of - EPOCH).days, (first - EPOCH).days
    as_of_s = _midnight_utc(as_of)
    cal = _calendar(first, as_num + 56 - first_num)
    fac = _facilities(rng, facilities, first_num, as_of)
    mean = _expected_demand(fac, cal, first_num)
    req = _draw_requests(rng, fac, cal, mean, as_of_s)
    nurses = _nurses(rng, fac, mean[:, :, : as_num - first_num], first_num, as_num)
    pools = _nurse_pools(nurses, cal)
    _outcomes(rng, req, cal, fac, pools, as_of_s)
    fmt = _utc_formatter(int(req["requested"].min()) // DAY - 1, as_num + 60)
    tables = _lookup_tables(cal, fac, nurses, len(req["start"]))
    bad_rows, bad = _bad_rows(rng, req, tables, fmt, as_of_s)
    offers = _offers(rng, req, pools, as_of_s, _midnight_utc(as_of - timedelta(days=365)))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        _write(con, fac, nurses, req, offers, tables, fmt, bad_rows, as_num)
    finally:
        con.close()
    return DemoAgency(
        path=path,
        as_of=as_of,
        facilities=facilities,
        shift_requests=len(req["start"]) + len(bad_rows),
        nurses=len(nurses["hire"]),
        shift_offers=len(offers["request"]),
        bad_requests=bad,
    )


def _midnight_utc(day: date) -> int:
    """Midnight at the start of ``day`` in America/Chicago, in Unix seconds."""
    return int(datetime.combine(day, time(0), ZONE).timestamp())


def _calendar(first: date, n_days: int) -> Arrays:
    """Per-day arrays for the shift-date grid: day number, weekday, UTC offset (s), factors."""
    days = [first + timedelta(days=i) for i in range(n_days)]
    us = holidays.US(years=range(first.year - 1, days[-1].year + 2), observed=True)
    demand, accept, is_holiday = np.ones(n_days), np.ones(n_days), np.zeros(n_days, bool)
    for i, d in enumerate(days):
        name = us.get(d) or ""
        if (d.month, d.day) in ((12, 24), (12, 31)) or any(
            k in name for k in ("Thanksgiving", "Christmas", "New Year")
        ):
            demand[i] = 1.25
        elif name:
            demand[i] = 0.90
        else:
            continue
        accept[i], is_holiday[i] = 0.7, True
    demand[np.r_[False, is_holiday[:-1]] & ~is_holiday] = 1.10  # rebound the day after
    doy = np.array([d.timetuple().tm_yday for d in days])
    day_num = np.arange(n_days) + (first - EPOCH).days
    noon_utc = np.array([datetime.combine(d, time(12), ZONE).timestamp() for d in days])
    return {
        "day_num": day_num,
        "weekday": (day_num + 3) % 7,  # 1970-01-01 was a Thursday; Monday = 0
        "winter": (1 + np.cos(2 * np.pi * (doy - 15) / 365.25)) / 2,  # 1 mid-January, 0 July
        "demand": demand,
        "accept": accept,
        # Offset at noon; shifts start at 07:00 or later, after any 02:00 DST switch.
        "offset": day_num * DAY + 12 * HOUR - noon_utc.astype(np.int64),
        "month": day_num.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64),
    }


def _facilities(rng: np.random.Generator, n: int, first_num: int, as_of: date) -> Arrays:
    """Facility attributes: type, region, active dates (day numbers), demand levels, names."""
    is_hosp = rng.permutation(np.arange(n) < round(0.4 * n))
    region = np.concatenate([np.arange(4), rng.choice(4, n - 4, p=(0.32, 0.26, 0.23, 0.19))])
    as_num = (as_of - EPOCH).days
    active_from = first_num - rng.integers(365, 23 * 365, n)
    active_to = np.full(n, NO_END)
    order = rng.permutation(n)
    active_from[order[0]] = as_num - rng.integers(20, 41)  # opened last month
    spring = as_of.year if as_of > date(as_of.year, 6, 1) else as_of.year - 1
    active_to[order[1]] = (date(spring, 5, 15) - EPOCH).days  # closed last spring
    opened = order[2 : 2 + round(0.08 * n)]  # opened during the history
    active_from[opened] = first_num + rng.integers(
        30, max(31, as_num - first_num - 120), opened.size
    )
    base = np.column_stack(
        [
            np.where(is_hosp, rng.uniform(3.5, 8.5, n), rng.uniform(0.6, 1.6, n)),
            np.where(is_hosp, rng.uniform(0.75, 2.25, n), rng.uniform(2.5, 5.5, n)),
        ]
    )
    names: list[str] = []
    seen: dict[str, int] = {}
    picks = rng.integers(0, len(PLACES) * 6, n)
    for hosp, pick in zip(is_hosp, picks, strict=True):
        kinds = HOSPITAL_KINDS if hosp else HOME_KINDS
        name = f"{PLACES[pick // 6]} {kinds[pick % 6]}"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} - Campus {seen[name]}")
    return {
        "is_hosp": is_hosp,
        "region": region,
        "active_from": active_from,
        "active_to": active_to,
        "base": base,
        "name": np.array(names, dtype=object),
        "growth": 0.06 + rng.normal(0, 0.03, n),
        "shape": rng.uniform(6, 15, n),
        "from_s": np.array([_midnight_utc(EPOCH + timedelta(days=int(d))) for d in active_from]),
        "id": np.array([f"F{i + 1:0{max(3, len(str(n)))}d}" for i in range(n)], dtype=object),
    }


def _expected_demand(fac: Arrays, cal: Arrays, first_num: int) -> np.ndarray:
    """Expected requests (shifts/day), shape (facility, role, day); zero while inactive."""
    day = cal["day_num"]
    age = day[None, :] - fac["active_from"][:, None]
    level = (
        WEEKDAY_FACTOR[fac["is_hosp"].astype(int)][:, cal["weekday"]]
        * ((1 + 0.2 * cal["winter"]) * cal["demand"])[None, :]
        * np.exp(fac["growth"][:, None] * (day - first_num)[None, :] / 365.25)
        * np.clip(0.4 + 0.6 * age / 60, 0.4, 1.0)  # new clients ramp up over 60 days
        * ((age >= 0) & (day[None, :] <= fac["active_to"][:, None]))
    )
    return fac["base"][:, :, None] * level[:, None, :]


def _draw_requests(
    rng: np.random.Generator, fac: Arrays, cal: Arrays, mean: np.ndarray, as_of_s: int
) -> Arrays:
    """Request rows (one array per attribute) requested before ``as_of``, by requested_at."""
    shape = fac["shape"][:, None, None]
    counts = rng.poisson(mean * rng.gamma(shape, 1 / shape, mean.shape))
    cell = np.repeat(np.arange(counts.size, dtype=np.int64), counts.ravel())
    n_days, n = mean.shape[2], cell.size
    f, role, day = cell // (2 * n_days), (cell // n_days) % 2, cell % n_days
    slot = rng.choice(4, n, p=START_SHARE)
    hours = np.where(
        slot == 0, np.where(rng.random(n) < 0.6, 12.0, 8.0), np.where(slot == 2, 12.0, 8.0)
    )
    hours[rng.random(n) < 0.03] = 4.0
    start = cal["day_num"][day] * DAY + START_HOURS[slot] * HOUR - cal["offset"][day]
    lead = np.where(
        rng.random(n) < 0.25,
        rng.uniform(1, 12, n) * HOUR,
        np.minimum(12 * HOUR + rng.exponential(5.5 * DAY, n), 45 * DAY),
    )
    requested = start - lead.astype(np.int64)
    keep = (requested < as_of_s) & (requested >= fac["from_s"][f])
    keep = np.flatnonzero(keep)[np.argsort(requested[keep], kind="stable")]
    req = {
        "facility": f[keep].astype(np.int32),
        "role": role[keep].astype(np.int8),
        "day": day[keep].astype(np.int32),
        "slot": slot[keep].astype(np.int8),
        "hours": hours[keep],
        "start": start[keep],
        "requested": requested[keep],
    }
    m = keep.size
    hosp = fac["is_hosp"][req["facility"]]
    req["unit"] = np.where(
        hosp,
        rng.choice(5, m, p=(0.2, 0.4, 0.2, 0.12, 0.08)),
        5 + rng.choice(3, m, p=(0.55, 0.3, 0.15)),
    )
    req["note"] = np.where(rng.random(m) < 0.12, rng.integers(0, len(NOTES), m), -1)
    return req


def _nurses(
    rng: np.random.Generator, fac: Arrays, hist_mean: np.ndarray, first_num: int, as_num: int
) -> Arrays:
    """Nurse careers by (region, role) group: hire and separation day numbers, sorted by hire.

    Each pool slot is a chain of nurses: one leaves (exponential tenure, ~27 %/year attrition)
    and is replaced 2-12 weeks later. Pools are sized so the on-call nurses (70 %) number
    1.25-1.7 x recent daily requests / 0.35 (some regions and roles short of nurses, others with
    a surplus, as in a real agency), and grow with demand over the history.
    """
    recent = hist_mean[:, :, -90:].mean(axis=2)  # (facility, role), shifts/day
    demand = np.array([recent[fac["region"] == r, k].sum() for r in range(4) for k in range(2)])
    staffing_ratio = np.array([1.3, 1.55, 1.75, 1.35, 1.25, 1.6, 1.7, 1.3])  # per (region, role)
    end_slots = np.maximum(6, np.ceil(staffing_ratio * demand / 0.35 / 0.7)).astype(int)
    start_slots = np.minimum(
        end_slots,
        np.maximum(
            6, np.round(end_slots * np.exp(-0.06 * (as_num - first_num) / 365.25)).astype(int)
        ),
    )
    group = np.concatenate(
        [np.repeat(np.arange(8), start_slots), np.repeat(np.arange(8), end_slots - start_slots)]
    )
    n_old = int(start_slots.sum())
    lo = min(as_num - 3652, first_num - 730)
    hire = np.concatenate(
        [
            rng.integers(lo, first_num - 90, n_old),
            rng.integers(first_num, as_num - 30, group.size - n_old),
        ]
    )
    groups, hires, seps = [], [], []
    mean_tenure = 365.25 / -np.log(1 - ANNUAL_ATTRITION)
    while group.size:
        sep = hire + np.maximum(30, rng.exponential(mean_tenure, group.size)).astype(np.int64)
        groups.append(group)
        hires.append(hire)
        seps.append(sep)
        hire = sep + rng.integers(14, 85, group.size)
        group, hire = group[hire < as_num], hire[hire < as_num]
    group, hire, sep = np.concatenate(groups), np.concatenate(hires), np.concatenate(seps)
    order = np.lexsort((sep, group, hire))
    n = order.size
    return {
        "group": group[order],
        "hire": hire[order],
        "sep": sep[order],
        "on_call": rng.random(n) < 0.7,
        "first": rng.integers(0, len(FIRST_NAMES), n),
        "last": rng.integers(0, len(LAST_NAMES), n),
        "phone": rng.integers(0, 100, n),
    }


def _nurse_pools(nurses: Arrays, cal: Arrays) -> Arrays:
    """Nurses of each (group, month) active from 50 days before the month to its end.

    Returns a flat ``pool`` of nurse indices with ``offset`` and ``count`` per (group, month);
    the 50 days cover offers made up to 45 days ahead of the shift.
    """
    months = np.arange(cal["month"][0], cal["month"][-1] + 1)
    m_start = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    m_end = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) - 1
    parts, count = [], np.zeros((8, months.size), np.int64)
    for g in range(8):
        idx = np.flatnonzero(nurses["group"] == g)
        hire, sep = nurses["hire"][idx], nurses["sep"][idx]
        for j, (a, b) in enumerate(zip(m_start, m_end, strict=True)):
            ok = (hire <= a - 50) & (sep > b)  # fallbacks: active at all that month, anyone
            for fallback in ((hire <= b) & (sep > a), np.ones_like(ok)):
                ok = ok if ok.any() else fallback
            parts.append(idx[ok])
            count[g, j] = ok.sum()
    offset = np.concatenate([[0], np.cumsum(count.ravel())[:-1]]).reshape(count.shape)
    return {"pool": np.concatenate(parts), "offset": offset, "count": count, "month0": months[0]}


def _outcomes(
    rng: np.random.Generator, req: Arrays, cal: Arrays, fac: Arrays, pools: Arrays, as_of_s: int
) -> None:
    """Offer sequences, fills, cancellations and the status seen at ``as_of`` (in place).

    Offers go out one by one, each accepted with the role's acceptance rate (lower in winter
    and on holidays), until one is accepted or the reachable nurses (1-6) are exhausted.
    """
    n, day = req["day"].size, req["day"]
    p = ACCEPT_RATE[req["role"]] * cal["accept"][day] * (1.05 - 0.1 * cal["winter"][day])
    first_yes = rng.geometric(p)
    cap = rng.choice(np.arange(1, 7), n, p=OFFERS_CAP_SHARE)
    will_fill, n_offers = first_yes <= cap, np.minimum(first_yes, cap)
    lead = req["start"] - req["requested"]
    delay = np.minimum(rng.gamma(n_offers, np.minimum(lead / 10, 4 * HOUR)), 0.95 * lead)
    last = req["requested"] + delay.astype(np.int64)
    short = lead < DAY
    cancelled = rng.random(n) < np.where(short, 0.04, 0.10)
    late = short | (rng.random(n) < 0.23)
    lo = np.where(late, np.maximum(req["requested"], req["start"] - DAY), req["requested"])
    hi = np.where(late, req["start"], req["start"] - DAY)
    cancel_at = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    seen_cancel = cancelled & (cancel_at < as_of_s)
    filled = ~seen_cancel & will_fill & (last < as_of_s)
    group = fac["region"][req["facility"]] * 2 + req["role"]
    month = cal["month"][day] - pools["month0"]
    base = (rng.random(n) * pools["count"][group, month]).astype(np.int64)
    nurse = _pool_pick(pools, group, month, base + n_offers - 1)
    req.update(
        status=np.where(seen_cancel, 2, np.where(filled, 0, 1)).astype(np.int8),
        cancel_at=np.where(seen_cancel, cancel_at, -1),
        nurse=np.where(filled, nurse, -1),
        n_offers=n_offers,
        will_fill=will_fill,
        last=last,
        group=group,
        month=month,
        base=base,
        cutoff=np.where(cancelled, np.minimum(cancel_at, as_of_s), as_of_s),
    )


def _pool_pick(pools: Arrays, group: np.ndarray, month: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The k-th nurse (cyclically) of each row's (group, month) pool, as a nurse index."""
    count = pools["count"][group, month]
    return pools["pool"][pools["offset"][group, month] + k % count]


def _offers(
    rng: np.random.Generator, req: Arrays, pools: Arrays, as_of_s: int, log_start_s: int
) -> Arrays:
    """Offers for requests made since the log started, made before ``as_of`` and before any
    cancellation; the last offer of a filled request is the accepted one, at its fill time."""
    w = np.flatnonzero(req["requested"] >= log_start_s)
    k = req["n_offers"][w]
    r = np.repeat(w, k)
    ends = np.cumsum(k)
    pos = np.arange(r.size) - np.repeat(ends - k, k)
    steps = np.cumsum(rng.exponential(size=r.size))
    local = steps - np.repeat(np.r_[0.0, steps[ends[:-1] - 1]], k)
    frac = local / np.repeat(local[ends - 1], k)  # exactly 1 for the last offer
    at = req["requested"][r] + (frac * (req["last"][r] - req["requested"][r])).astype(np.int64)
    accepted = (pos == np.repeat(k, k) - 1) & req["will_fill"][r]
    response = np.where(accepted, 2, (rng.random(r.size) < 0.4).astype(np.int8))
    nurse = _pool_pick(pools, req["group"][r], req["month"][r], req["base"][r] + pos)
    keep = at < req["cutoff"][r]
    return {"request": r[keep], "nurse": nurse[keep], "at": at[keep], "response": response[keep]}


def _utc_formatter(lo_day: int, hi_day: int) -> Callable[[np.ndarray], list[str]]:
    """A function turning Unix seconds (days lo_day..hi_day) into '...T14:05:09+00:00'."""
    dates = np.datetime_as_string(np.arange(lo_day, hi_day + 1).astype("datetime64[D]"))
    dates = dates.astype(object)
    tods = np.array(
        [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00" for s in range(DAY)],
        dtype=object,
    )

    def fmt(secs: np.ndarray) -> list[str]:
        d, t = np.divmod(secs, DAY)
        return [a + b for a, b in zip(dates[d - lo_day].tolist(), tods[t].tolist(), strict=True)]

    return fmt


def _lookup_tables(cal: Arrays, fac: Arrays, nurses: Arrays, n_requests: int) -> dict:
    """Object arrays that turn codes into the strings written (index -1 gives NULL)."""
    dates = np.datetime_as_string(cal["day_num"].astype("datetime64[D]")).tolist()
    offsets = [
        f"{'-' if o < 0 else '+'}{abs(o) // 3600:02d}:{abs(o) // 60 % 60:02d}"
        for o in cal["offset"].tolist()
    ]
    starts = [
        f"{d}T{h:02d}:00:00{o}"
        for d, o in zip(dates, offsets, strict=True)
        for h in START_HOURS.tolist()
    ]
    width = max(7, len(str(n_requests + len(BAD_RULES) * 2)))
    n_nurses = nurses["hire"].size
    return {
        "start": np.array(starts, dtype=object),
        "facility": fac["id"],
        "role": np.array(ROLES, dtype=object),
        "status": np.array(STATUSES, dtype=object),
        "unit": np.array(UNITS, dtype=object),
        "note": np.array([*NOTES, None], dtype=object),
        "nurse_id": np.array(
            [f"N{i + 1:0{max(5, len(str(n_nurses)))}d}" for i in range(n_nurses)] + [None],
            dtype=object,
        ),
        "request_id": lambda idx: [f"R{i + 1:0{width}d}" for i in np.asarray(idx).tolist()],
    }


def _request_rows(
    req: Arrays, tables: dict, fmt: Callable[[np.ndarray], list[str]], idx: np.ndarray
) -> list[tuple]:
    """shift_requests rows (as written) for the request indices ``idx``."""
    cancel_at = req["cancel_at"][idx]
    cancelled = np.full(idx.size, None, dtype=object)
    has = cancel_at >= 0
    cancelled[has] = fmt(cancel_at[has])
    return list(
        zip(
            tables["request_id"](idx),
            tables["facility"][req["facility"][idx]].tolist(),
            tables["role"][req["role"][idx]].tolist(),
            tables["start"][req["day"][idx] * 4 + req["slot"][idx]].tolist(),
            req["hours"][idx].tolist(),
            fmt(req["requested"][idx]),
            tables["status"][req["status"][idx]].tolist(),
            cancelled.tolist(),
            tables["unit"][req["unit"][idx]].tolist(),
            tables["nurse_id"][req["nurse"][idx]].tolist(),
            tables["note"][req["note"][idx]].tolist(),
            strict=True,
        )
    )


def _bad_rows(
    rng: np.random.Generator,
    req: Arrays,
    tables: dict,
    fmt: Callable[[np.ndarray], list[str]],
    as_of_s: int,
) -> tuple[list[tuple], dict[str, list[str]]]:
    """Two deliberately bad rows per rule, copied from good shifts of the last year."""
    n = req["start"].size
    ok = (req["start"] >= as_of_s - 365 * DAY) & (req["start"] < as_of_s - 5 * DAY)
    src = np.sort(rng.choice(np.flatnonzero(ok & (req["status"] != 2)), 12, replace=False))
    rows = [list(row) for row in _request_rows(req, tables, fmt, src)]
    bad: dict[str, list[str]] = {rule: [] for rule in BAD_RULES}
    new_ids = iter(tables["request_id"](np.arange(n, n + 10)))
    for i, row in enumerate(rows):
        rule = BAD_RULES[i // 2]
        if rule == "duplicate_request_id":
            bad[rule].append(row[0])
            continue
        row[0], row[6], row[7], row[9] = next(new_ids), "unfilled", None, None
        if rule == "unknown_facility":
            row[1] = "F999"
        elif rule == "shift_hours_out_of_range":
            row[4] = (0.0, 30.0)[i % 2]
        elif rule == "status_not_in_set":
            row[6] = "pending"
        elif rule == "requested_after_shift_start":
            row[5] = fmt(np.array([req["start"][src[i]] + 3 * DAY]))[0]
        else:
            row[2] = "CNA"
        bad[rule].append(row[0])
    return [tuple(row) for row in rows], bad


def _write(
    con: sqlite3.Connection,
    fac: Arrays,
    nurses: Arrays,
    req: Arrays,
    offers: Arrays,
    tables: dict,
    fmt: Callable[[np.ndarray], list[str]],
    bad_rows: list[tuple],
    as_num: int,
) -> None:
    """Create the four tables and fill them chunk by chunk, formatting strings as it goes."""
    con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
    con.executemany("INSERT INTO facilities VALUES (?,?,?,?,?,?,?)", _facility_rows(fac))
    con.executemany(
        "INSERT INTO nurses VALUES (?,?,?,?,?,?,?,?)",
        _nurse_rows(nurses, tables["nurse_id"][:-1].tolist(), as_num),
    )
    insert_request = "INSERT INTO shift_requests VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    n_req = len(req["start"])
    for lo in range(0, n_req, CHUNK):
        idx = np.arange(lo, min(lo + CHUNK, n_req))
        con.executemany(insert_request, _request_rows(req, tables, fmt, idx))
    con.executemany(insert_request, bad_rows)
    responses = np.array(["declined", "no_response", "accepted"], dtype=object)
    for lo in range(0, len(offers["request"]), CHUNK):
        sl = slice(lo, lo + CHUNK)
        con.executemany(
            "INSERT INTO shift_offers VALUES (?,?,?,?)",
            zip(
                tables["request_id"](offers["request"][sl]),
                tables["nurse_id"][offers["nurse"][sl]].tolist(),
                fmt(offers["at"][sl]),
                responses[offers["response"][sl]].tolist(),
                strict=True,
            ),
        )
    con.execute("CREATE INDEX ix_requests_requested_at ON shift_requests(requested_at)")
    con.execute("CREATE INDEX ix_requests_facility ON shift_requests(facility_id)")
    con.commit()


def _facility_rows(fac: Arrays) -> list[tuple]:
    """facilities rows as written (dates ISO, active_to NULL while active)."""
    dates = np.datetime_as_string(np.r_[fac["active_from"], fac["active_to"]].astype("M8[D]"))
    n = fac["id"].size
    active_to = dates[n:].astype(object)
    active_to[fac["active_to"] >= NO_END] = None
    return list(
        zip(
            fac["id"].tolist(),
            fac["name"].tolist(),
            np.where(fac["is_hosp"], "hospital", "nursing_home").tolist(),
            np.array(REGIONS)[fac["region"]].tolist(),
            [ZONE_NAME] * n,
            dates[:n].tolist(),
            active_to.tolist(),
            strict=True,
        )
    )


def _nurse_rows(nurses: Arrays, ids: list[str], as_num: int) -> list[tuple]:
    """nurses rows as written; separations on or after the data cut are unknown (NULL)."""
    group = nurses["group"]  # region * 2 + role
    first, last = np.array(FIRST_NAMES)[nurses["first"]], np.array(LAST_NAMES)[nurses["last"]]
    phones = [
        f"({AREA_CODES[g // 2]}) 555-01{p:02d}"
        for g, p in zip(group.tolist(), nurses["phone"].tolist(), strict=True)
    ]
    sep = np.datetime_as_string(nurses["sep"].astype("M8[D]")).astype(object)
    sep[nurses["sep"] >= as_num] = None
    return list(
        zip(
            ids,
            np.char.add(np.char.add(first, " "), last).tolist(),
            phones,
            np.array(ROLES)[group % 2].tolist(),
            np.array(REGIONS)[group // 2].tolist(),
            nurses["on_call"].astype(int).tolist(),
            np.datetime_as_string(nurses["hire"].astype("M8[D]")).tolist(),
            sep.tolist(),
            strict=True,
        )
    )
