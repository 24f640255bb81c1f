"""What ``staffcast validate`` calls usable, ``staffcast run`` runs (issue 12, item 8).

Hypothesis draws small agencies as SQLite source databases: one to three facilities in one or two
regions (some closed, some opened yesterday), RN and/or LPN requests, no to three months of
history before as_of, requests already booked, facilities whose requests were all cancelled a day
or more ahead, and nurses and shift_offers tables that may be empty. Each agency is validated the
way ``staffcast validate`` does it. A source it calls usable goes through the real weekly flow
(small settings: two weeks ahead, 100 paths, one backtest origin), which must publish a run with
an on-call pool and a recruiting target for exactly the regions and roles that had demand; a
source it stops must be stopped with one paragraph that names its rule, not a traceback.

The corners are explicit examples with the verdict validation must give. Two of them (every
request cancelled ahead; only bookings ahead) passed validation and then crashed the forecast
stage; validation now stops them (rule ``history_demand``). An empty nurses table stops at the
nurses' ``not_empty`` rule. About a minute on two cores, most of it in the flow runs.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from data_contracts.summary import stop_outcome
from data_contracts.validate import validate_with_settings
from flows.weekly_forecast import weekly_forecast
from staffcast.demo_agency import SCHEMA
from staffcast.errors import ValidationFailed
from staffcast.settings import Settings
from staffcast.source_files import open_source
from tests.conftest import AS_OF

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

AGENCY_ZONE = ZoneInfo("America/Chicago")
AS_OF_UTC = datetime.combine(AS_OF, time(0), AGENCY_ZONE).astimezone(ZoneInfo("UTC"))
REGIONS = ("North", "South")
ZONES = ("America/Chicago", "America/New_York", "Pacific/Honolulu")
FAST_SETTINGS = {
    "STAFFCAST_HORIZON_DAYS": "14",
    "STAFFCAST_HISTORY_DAYS": "120",
    "STAFFCAST_SAMPLE_PATHS": "100",
    "STAFFCAST_BACKTEST_ORIGINS": "1",
    "STAFFCAST_BACKTEST_DAYS": "14",
    "STAFFCAST_FORECAST_WORKERS": "1",
    "STAFFCAST_SOURCE_RETRIES": "0",
}
"""A run in seconds: two weeks ahead, few paths, one backtest origin, no worker processes."""


@dataclass(frozen=True)
class Facility:
    """One facility of a drawn agency."""

    region: str
    timezone: str
    opened_days_ago: int | None
    """active_from = as_of minus this many days; None: active_from is NULL."""
    all_cancelled: bool
    """Every request of this facility was cancelled well ahead (none counts as demand)."""
    closed_days_ago: int | None = None
    """active_to = as_of minus this many days, its last request that day; None: still open."""


@dataclass(frozen=True)
class Agency:
    """A small agency: what the SQLite source holds, drawn or written out by hand."""

    facilities: tuple[Facility, ...]
    roles: tuple[str, ...]
    history_days: int
    """Shift days before as_of with requests (as_of - history_days .. as_of - 1); 0: none."""
    booked_days: int
    """Days from as_of on with requests already made."""
    nurses_per_pool: int
    """Nurses per region and role; 0 leaves the nurses table without rows."""
    offers: bool
    """Whether shift_offers has rows (the table exists either way)."""
    seed: int
    usable: bool | None = None
    """What validation must say of a hand-written corner; None: whatever it says (drawn)."""


@dataclass(frozen=True)
class Written:
    """The source file and the (region, role) pairs whose past requests count as demand."""

    url: str
    demand_pairs: frozenset[tuple[str, str]]


def _days_ago(days: int | None) -> str | None:
    return None if days is None else (AS_OF - timedelta(days=days)).isoformat()


def _iso(instant: datetime) -> str:
    return instant.astimezone(ZoneInfo("UTC")).isoformat()


def _shifts(agency: Agency, rng: np.random.Generator) -> list[tuple[int, str, datetime, datetime]]:
    """(facility index, role, shift start, requested at) of every request, the newest last."""
    hour = timedelta(hours=1)
    shifts = []
    for f, facility in enumerate(agency.facilities):
        zone = ZoneInfo(facility.timezone)
        for role in agency.roles:
            rate = rng.uniform(0.5, 3.0)
            closed = facility.closed_days_ago
            last = agency.booked_days if closed is None else min(1 - closed, agency.booked_days)
            for offset in range(-agency.history_days, last):
                day = AS_OF + timedelta(days=offset)
                for _ in range(int(rng.poisson(rate))):
                    start = datetime.combine(day, time(int(rng.choice([7, 15, 19]))), zone)
                    if facility.all_cancelled:  # early enough to be cancelled a day ahead
                        requested = start - rng.uniform(26, 120) * hour
                    elif offset >= 0:  # booked ahead: requested in the last two days
                        requested = AS_OF_UTC - rng.uniform(1, 40) * hour
                    else:
                        requested = start - rng.uniform(1, 150) * hour
                    shifts.append((f, role, start, min(requested, AS_OF_UTC - 0.5 * hour)))
    # A request made yesterday: the source is current. For a past shift when there is history
    # (and a cancellation can be late enough to count), else for a shift ahead.
    first = agency.facilities[0]
    past = agency.history_days > 0 and not first.all_cancelled
    day = AS_OF + timedelta(days=-1 if past else 2)
    start = datetime.combine(day, time(19 if past else 7), ZoneInfo(first.timezone))
    shifts.append((0, agency.roles[0], start, AS_OF_UTC - rng.uniform(1, 20) * hour))
    return shifts


def write_agency(agency: Agency, path: Path) -> Written:
    """Write ``agency`` as a SQLite source with the demo agency's schema."""
    rng = np.random.default_rng(agency.seed)
    facility_rows: list[tuple] = []
    request_rows: list[tuple] = []
    offer_rows: list[tuple] = []
    for f, facility in enumerate(agency.facilities):
        facility_rows.append(
            (
                f"F{f + 1}",
                f"Facility {f + 1}",
                "hospital" if f % 2 else "nursing_home",
                facility.region,
                facility.timezone,
                _days_ago(facility.opened_days_ago),
                _days_ago(facility.closed_days_ago),
            )
        )
    pairs: set[tuple[str, str]] = set()
    hour = timedelta(hours=1)
    for f, role, start, requested in _shifts(agency, rng):
        facility = agency.facilities[f]
        status, cancelled = "filled", None
        draw = rng.random()
        if facility.all_cancelled:
            status, cancelled = "cancelled", requested + 0.25 * hour
        elif draw < 0.1:
            status = "unfilled"
        elif draw < 0.2:
            status = "cancelled"
            cancelled = max(requested + 0.25 * hour, start - rng.uniform(1, 48) * hour)
            if cancelled >= AS_OF_UTC:  # not visible at as_of: still open
                status, cancelled = "unfilled", None
        early = cancelled is not None and start - cancelled >= 24 * hour
        if start.date() < AS_OF and not early:
            pairs.add((facility.region, role))
        request_id = f"R{len(request_rows) + 1}"
        request_rows.append(
            (
                request_id,
                f"F{f + 1}",
                role,
                start.replace(tzinfo=None).isoformat(),  # local time in the facility's zone
                float(rng.choice([8.0, 12.0])),
                _iso(requested),
                status,
                None if cancelled is None else _iso(cancelled),
                "Med-Surg",
                None,
                None,
            )
        )
        if agency.offers:
            response = "accepted" if status == "filled" else "declined"
            offer_rows.append((request_id, "N1", _iso(requested + hour), response))
    nurse_rows: list[tuple] = []
    for region in sorted({f.region for f in agency.facilities}):
        for role in ("RN", "LPN"):  # the agency employs both, whatever facilities asked for
            for n in range(agency.nurses_per_pool):
                hired = AS_OF - timedelta(days=int(rng.integers(30, 900)))
                left = (hired + timedelta(days=20)).isoformat() if n == 2 else None
                nurse_rows.append(
                    (
                        f"N{len(nurse_rows) + 1}",
                        "Nurse",
                        "555-0100",
                        role,
                        region,
                        int(n != 1),
                        hired.isoformat(),
                        left,
                    )
                )
    con = sqlite3.connect(path)
    try:
        # The contract's active_from is optional; the demo always writes one.
        con.executescript(SCHEMA.replace("active_from TEXT NOT NULL", "active_from TEXT"))
        con.executemany("INSERT INTO facilities VALUES (?,?,?,?,?,?,?)", facility_rows)
        con.executemany("INSERT INTO shift_requests VALUES (?,?,?,?,?,?,?,?,?,?,?)", request_rows)
        con.executemany("INSERT INTO nurses VALUES (?,?,?,?,?,?,?,?)", nurse_rows)
        con.executemany("INSERT INTO shift_offers VALUES (?,?,?,?)", offer_rows)
        con.commit()
    finally:
        con.close()
    return Written(f"sqlite:///{path}", frozenset(pairs))


@st.composite
def agencies(draw: st.DrawFn) -> Agency:
    """Small agencies: 1-3 facilities, every drawn region with at least one of them."""
    n_regions = draw(st.integers(1, 2))
    n_facilities = draw(st.integers(n_regions, 3))
    facilities = []
    for f in range(n_facilities):
        facilities.append(
            Facility(
                region=REGIONS[f] if f < n_regions else draw(st.sampled_from(REGIONS[:n_regions])),
                timezone=draw(st.sampled_from(ZONES)),
                opened_days_ago=draw(st.one_of(st.none(), st.integers(1, 400))),
                all_cancelled=draw(st.integers(0, 4)) == 4,
                # The first facility stays open: it made yesterday's request.
                closed_days_ago=None if f == 0 else draw(st.sampled_from([None, None, 3, 40])),
            )
        )
    return Agency(
        facilities=tuple(facilities),
        roles=draw(st.sampled_from([("RN",), ("LPN",), ("RN", "LPN")])),
        history_days=draw(st.sampled_from([30, 0, 1, 7, 90])) + draw(st.integers(0, 9)),
        booked_days=draw(st.integers(0, 10)),
        nurses_per_pool=draw(st.sampled_from([2, 0, 1, 3])),
        offers=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


# The corners of issue 12, item 8, by hand (facilities, roles, history days, booked days,
# nurses per pool, offers, seed, whether validation calls it usable).
OLD_CLIENT = Facility("North", "America/Chicago", None, all_cancelled=False)
ONE_FACILITY = Agency((OLD_CLIENT,), ("RN", "LPN"), 60, 7, 3, True, 1, usable=True)
ONE_REGION = Agency(
    (OLD_CLIENT, Facility("North", "America/New_York", 300, False)), ("RN", "LPN"), 80, 5, 2,
    True, 2, usable=True,
)  # fmt: skip
ONLY_RN = Agency(
    (OLD_CLIENT, Facility("South", "America/Chicago", 200, False)), ("RN",), 40, 3, 3, True, 3,
    usable=True,
)  # fmt: skip
NO_OFFERS = Agency(
    (OLD_CLIENT, Facility("South", "America/New_York", 90, False)), ("RN", "LPN"), 30, 7, 2,
    False, 4, usable=True,
)  # fmt: skip
ONE_DAY = Agency(  # a client that opened yesterday, nothing booked ahead
    (Facility("North", "America/Chicago", 1, False),), ("RN",), 1, 0, 1, False, 6, usable=True
)
ALL_CANCELLED = Agency(  # one facility's requests all cancelled a day or more ahead
    (OLD_CLIENT, Facility("North", "America/Chicago", 100, True)), ("RN", "LPN"), 30, 7, 2,
    True, 7, usable=True,
)  # fmt: skip
NO_NURSES = Agency(  # stops: nurses' batch rule not_empty
    (OLD_CLIENT,), ("RN", "LPN"), 30, 7, 0, True, 5, usable=False
)
EVERY_REQUEST_CANCELLED = Agency(  # stops: history_demand (the run crashed in the forecast)
    (Facility("North", "America/Chicago", 100, True),), ("RN",), 30, 7, 2, True, 8, usable=False
)
BOOKED_ONLY = Agency(  # stops: history_demand (the run crashed in the forecast)
    (Facility("North", "America/Chicago", 1, False),), ("RN",), 0, 7, 2, True, 9, usable=False
)


@pytest.fixture(scope="module")
def fast_settings() -> Iterator[None]:
    """Small, fast run settings for the whole module (the flow builds Settings() itself)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAST_SETTINGS.items():
            patch.setenv(name, value)
        yield


def _published(url: str, run_id: str) -> tuple[str, set[tuple[str, str]], set[tuple[str, str]]]:
    """(status of the run, its base recruiting-target and on-call-pool region/role pairs)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            status = conn.execute(
                sa.text("SELECT status FROM forecast_run WHERE run_id = :id"), {"id": run_id}
            ).scalar_one()
            pairs = [
                {
                    (str(region), str(role))
                    for region, role in conn.execute(
                        sa.text(
                            f"SELECT DISTINCT region, role FROM {table} "
                            "WHERE run_id = :id AND scenario = 'base'"
                        ),
                        {"id": run_id},
                    )
                }
                for table in ("recruiting_target", "on_call_pool")
            ]
    finally:
        engine.dispose()
    return status, pairs[0], pairs[1]


@pytest.mark.usefixtures("fast_settings")
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(agency=ONE_FACILITY)
@example(agency=ONE_REGION)
@example(agency=ONLY_RN)
@example(agency=NO_OFFERS)
@example(agency=NO_NURSES)
@example(agency=ONE_DAY)
@example(agency=ALL_CANCELLED)
@example(agency=EVERY_REQUEST_CANCELLED)
@example(agency=BOOKED_ONLY)
@given(agency=agencies())
def test_what_validate_calls_usable_the_weekly_run_publishes(agency: Agency) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="staffcast-small-") as folder,
        pytest.MonkeyPatch.context() as patch,
    ):
        home = Path(folder)
        patch.setenv("STAFFCAST_HOME", str(home / "home"))
        written = write_agency(agency, home / "ops.db")
        settings_now = Settings()
        try:
            validate_with_settings(
                open_source(written.url, AS_OF, settings_now.agency_timezone), settings_now
            )
        except ValidationFailed as exc:
            message = str(exc)
            assert agency.usable is not True, message
            assert message and "\n" not in message and "Traceback" not in message, message
            rule = stop_outcome(message)["rule"]
            assert rule != "run_stopped", message  # the stop names its rule
            event(f"stopped by {rule}")
            return
        assert agency.usable is not False
        reporting = f"sqlite:///{home / 'reporting.db'}"
        summary = weekly_forecast(as_of=AS_OF, source_url=written.url, reporting_url=reporting)
        assert Path(summary.report_path).is_file()
        assert summary.rows_extracted == summary.rows_used + summary.rows_quarantined
        status, targets, pools = _published(reporting, summary.run_id)
        assert status == "published"
        assert targets == set(written.demand_pairs), (targets, written.demand_pairs)
        assert pools == set(written.demand_pairs), (pools, written.demand_pairs)
        event("published")
