"""The demo agency looks like a real agency's operational database and keeps the as-of rules."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from staffcast.demo_agency import DemoAgency, build_demo_agency

ZONE = ZoneInfo("America/Chicago")
AS_OF = date(2025, 3, 3)
AS_OF_TS = pd.Timestamp(datetime.combine(AS_OF, time(0), ZONE))
COLUMNS = {
    "facilities": [
        "facility_id",
        "name",
        "facility_type",
        "region",
        "timezone",
        "active_from",
        "active_to",
    ],
    "shift_requests": [
        "request_id",
        "facility_id",
        "role",
        "shift_start",
        "shift_hours",
        "requested_at",
        "status",
        "cancelled_at",
        "unit",
        "nurse_id",
        "notes",
    ],
    "nurses": [
        "nurse_id",
        "name",
        "phone",
        "role",
        "region",
        "on_call",
        "hired_on",
        "separated_on",
    ],
    "shift_offers": ["request_id", "nurse_id", "offered_at", "response"],
}


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> DemoAgency:
    return build_demo_agency(
        tmp_path_factory.mktemp("demo") / "agency.sqlite", AS_OF, facilities=8, years=1.0, seed=11
    )


@pytest.fixture(scope="module")
def tables(agency: DemoAgency) -> dict[str, pd.DataFrame]:
    with sqlite3.connect(agency.path) as con:
        frames = {name: pd.read_sql(f"SELECT * FROM {name}", con) for name in COLUMNS}
    requests = frames["shift_requests"]
    requests["start_utc"] = pd.to_datetime(requests["shift_start"], utc=True, format="ISO8601")
    requests["local_date"] = requests["shift_start"].str[:10]
    for column in ("requested_at", "cancelled_at"):
        requests[column + "_ts"] = pd.to_datetime(requests[column], utc=True, format="ISO8601")
    return frames


@pytest.fixture(scope="module")
def good(tables: dict[str, pd.DataFrame], agency: DemoAgency) -> pd.DataFrame:
    """shift_requests without the deliberately bad rows (duplicates: one copy kept)."""
    bad = {
        rid
        for rule, ids in agency.bad_requests.items()
        if rule != "duplicate_request_id"
        for rid in ids
    }
    requests = tables["shift_requests"]
    return requests[~requests["request_id"].isin(bad)].drop_duplicates("request_id")


def test_tables_and_columns(agency: DemoAgency) -> None:
    with sqlite3.connect(agency.path) as con:
        for table, columns in COLUMNS.items():
            assert [row[1] for row in con.execute(f"PRAGMA table_info({table})")] == columns
            (count,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert (
                count
                == {
                    "facilities": agency.facilities,
                    "nurses": agency.nurses,
                    "shift_requests": agency.shift_requests,
                    "shift_offers": agency.shift_offers,
                }[table]
            )
    assert agency.facilities == 8 and 10_000 < agency.shift_requests < 40_000


def test_same_seed_same_data(agency: DemoAgency, tmp_path: Path) -> None:
    again = build_demo_agency(tmp_path / "again.sqlite", AS_OF, facilities=8, years=1.0, seed=11)
    assert (again.shift_requests, again.nurses, again.shift_offers, again.bad_requests) == (
        agency.shift_requests,
        agency.nurses,
        agency.shift_offers,
        agency.bad_requests,
    )
    query = "SELECT * FROM shift_requests ORDER BY rowid LIMIT 100"
    with sqlite3.connect(agency.path) as a, sqlite3.connect(again.path) as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_nothing_requested_on_or_after_as_of_but_some_shifts_booked(tables: dict) -> None:
    requests = tables["shift_requests"]
    assert (requests["requested_at_ts"] < AS_OF_TS).all()
    assert (requests["cancelled_at_ts"].dropna() < AS_OF_TS).all()
    booked = requests[requests["start_utc"] >= AS_OF_TS]
    assert len(booked) > 50
    assert booked["status"].isin(["filled", "unfilled"]).mean() > 0.8


def test_shift_start_has_the_right_dst_offset(tables: dict) -> None:
    starts = tables["shift_requests"]["shift_start"].drop_duplicates()
    assert starts.str[-6:].isin(["-05:00", "-06:00"]).all()
    assert {int(s[11:13]) for s in starts} <= {7, 15, 19, 23}
    for text in starts:
        parsed = datetime.fromisoformat(text)
        assert parsed.utcoffset() == parsed.replace(tzinfo=ZONE).utcoffset(), text


def test_closed_and_new_facilities(tables: dict, good: pd.DataFrame) -> None:
    facilities = tables["facilities"]
    closed = facilities[facilities["active_to"].notna()]
    assert closed["active_to"].tolist() == ["2024-05-15"]
    closed_rows = good[good["facility_id"] == closed["facility_id"].iloc[0]]
    assert len(closed_rows) > 0
    assert (closed_rows["local_date"] <= "2024-05-15").all()

    opened = pd.to_datetime(facilities["active_from"]).dt.date
    new = facilities[opened >= AS_OF - timedelta(days=40)]
    assert len(new) == 1
    assert (
        AS_OF - timedelta(days=40)
        <= date.fromisoformat(new["active_from"].iloc[0])
        <= (AS_OF - timedelta(days=20))
    )
    new_rows = good[good["facility_id"] == new["facility_id"].iloc[0]]
    assert len(new_rows) > 0
    assert (new_rows["local_date"] >= new["active_from"].iloc[0]).all()
    start = pd.Timestamp(
        datetime.combine(date.fromisoformat(new["active_from"].iloc[0]), time(0), ZONE)
    )
    assert (new_rows["requested_at_ts"] >= start).all()
    assert (facilities["timezone"] == "America/Chicago").all()
    assert set(facilities["facility_type"]) == {"hospital", "nursing_home"}


def test_statuses_and_cancellations(good: pd.DataFrame) -> None:
    assert set(good["status"]) == {"filled", "unfilled", "cancelled"}
    shares = good["status"].value_counts(normalize=True)
    assert 0.75 < shares["filled"] < 0.9 and 0.03 < shares["cancelled"] < 0.13
    cancelled = good[good["status"] == "cancelled"]
    assert cancelled["cancelled_at"].notna().all()
    assert good.loc[good["status"] != "cancelled", "cancelled_at"].isna().all()
    assert (cancelled["cancelled_at_ts"] >= cancelled["requested_at_ts"]).all()
    assert (cancelled["cancelled_at_ts"] < cancelled["start_utc"]).all()
    late = cancelled["cancelled_at_ts"] > cancelled["start_utc"] - pd.Timedelta(hours=24)
    assert 0.2 < late.mean() < 0.5
    assert good.loc[good["status"] == "filled", "nurse_id"].notna().all()
    assert good.loc[good["status"] != "filled", "nurse_id"].isna().all()
    assert (good["requested_at_ts"] < good["start_utc"]).all()


def test_filled_by_an_active_nurse_of_the_region_and_role(tables: dict, good: pd.DataFrame) -> None:
    filled = good[good["status"] == "filled"].merge(
        tables["facilities"][["facility_id", "region"]], on="facility_id"
    )
    joined = filled.merge(tables["nurses"], on="nurse_id", suffixes=("", "_nurse"))
    assert len(joined) == len(filled)
    assert (joined["role"] == joined["role_nurse"]).all()
    assert (joined["region"] == joined["region_nurse"]).all()
    assert (joined["hired_on"] <= joined["local_date"]).all()
    assert (joined["separated_on"].isna() | (joined["separated_on"] > joined["local_date"])).all()
    assert (tables["nurses"]["hired_on"] < AS_OF.isoformat()).all()


def test_bad_rows_exist_and_are_rare(tables: dict, agency: DemoAgency) -> None:
    requests = tables["shift_requests"].set_index("request_id")
    bad = agency.bad_requests
    assert all(len(ids) == 2 for ids in bad.values()) and len(bad) == 6
    assert (requests.loc[bad["unknown_facility"], "facility_id"] == "F999").all()
    assert sorted(requests.loc[bad["shift_hours_out_of_range"], "shift_hours"]) == [0.0, 30.0]
    assert (requests.loc[bad["status_not_in_set"], "status"] == "pending").all()
    assert (requests.loc[bad["role_not_in_set"], "role"] == "CNA").all()
    after = requests.loc[bad["requested_after_shift_start"]]
    assert ((after["requested_at_ts"] - after["start_utc"]) == pd.Timedelta(days=3)).all()
    assert (requests.index.value_counts()[bad["duplicate_request_id"]] == 2).all()
    assert requests.index.duplicated().sum() == 2
    assert 12 / agency.shift_requests < 0.001
    last_year = requests.loc[[rid for ids in bad.values() for rid in ids], "start_utc"]
    assert (last_year >= AS_OF_TS - pd.Timedelta(days=366)).all()


def test_hospital_rn_demand_is_lower_at_weekends(tables: dict, good: pd.DataFrame) -> None:
    hospitals = tables["facilities"].query("facility_type == 'hospital'")["facility_id"]
    rn = good[
        good["facility_id"].isin(hospitals)
        & (good["role"] == "RN")
        & (good["start_utc"] < AS_OF_TS)
    ]
    daily = rn.groupby("local_date").size()
    weekend = pd.to_datetime(daily.index).day_of_week >= 5
    assert daily[~weekend].mean() > 1.15 * daily[weekend].mean()


def test_offer_log_covers_the_last_year(tables: dict, good: pd.DataFrame) -> None:
    offers = tables["shift_offers"]
    offered = pd.to_datetime(offers["offered_at"], utc=True, format="ISO8601")
    log_start = pd.Timestamp(datetime.combine(AS_OF - timedelta(days=365), time(0), ZONE))
    assert (offered >= log_start).all() and (offered < AS_OF_TS).all()
    assert set(offers["response"]) == {"accepted", "declined", "no_response"}
    rate = (offers["response"] == "accepted").mean()
    assert 0.28 < rate < 0.5

    window = good[good["requested_at_ts"] >= log_start].set_index("request_id")
    accepted = offers[offers["response"] == "accepted"]
    per_request = accepted.groupby("request_id").size()
    filled = window[window["status"] == "filled"]
    assert (per_request.reindex(filled.index, fill_value=0) == 1).all()
    unfilled = window[window["status"] == "unfilled"]
    assert per_request.reindex(unfilled.index, fill_value=0).eq(0).all()
    nurse_of = accepted.set_index("request_id")["nurse_id"]
    assert (nurse_of.reindex(filled.index) == filled["nurse_id"]).all()
    joined = offers.merge(
        window[["requested_at_ts", "start_utc"]], left_on="request_id", right_index=True
    )
    assert len(joined) == len(offers)
    when = pd.to_datetime(joined["offered_at"], utc=True, format="ISO8601")
    assert ((when >= joined["requested_at_ts"]) & (when < joined["start_utc"])).all()
