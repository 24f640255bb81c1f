"""The repairs of data_contracts.parsing, one by one, with the exact values they must give.

Timestamp forms real exports have (PostgreSQL's text form, ISO 8601 variants, US and day-first
layouts through the mapping's formats), native types from database drivers and Parquet, value
maps and exclusions, time-zone abbreviations, and the hint for dates written with slashes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from data_contracts import parsing
from data_contracts.parsing import (
    ZONE_ABBREVIATIONS,
    ParseOptions,
    parse_dates,
    parse_facilities,
    parse_nurses,
    parse_shift_offers,
    parse_shift_requests,
    parse_timestamps,
)
from tests.test_null_rules import put, run, tiny_tables

TZ = "America/Chicago"
US = "%m/%d/%Y %I:%M %p"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # PostgreSQL's text form of timestamptz
        ("2023-10-19 01:00:00+00", "2023-10-19 01:00"),
        ("2023-10-19 01:00:00-05", "2023-10-19 06:00"),
        ("2023-10-19 01:00:00-05:30", "2023-10-19 06:30"),
        ("2023-10-19 01:00:00.123456+00", "2023-10-19 01:00:00.123456"),
        ("2023-10-19 01:00:00.5-05", "2023-10-19 06:00:00.5"),
        # ISO 8601 with T or a blank, Z, +HHMM, +HH:MM
        ("2023-10-19T01:00:00Z", "2023-10-19 01:00"),
        ("2023-10-19T01:00:00+0530", "2023-10-18 19:30"),
        ("2023-10-19T01:00:00+05:30", "2023-10-18 19:30"),
        ("2023-10-19 01:00:00Z", "2023-10-19 01:00"),
        ("2023-10-19T01:00Z", "2023-10-19 01:00"),
        ("  2023-10-19T01:00:00-06:00 ", "2023-10-19 07:00"),
        # no offset: local time in the given zone (CDT in October)
        ("2023-10-19T01:00:00", "2023-10-19 06:00"),
        ("2023-10-19 01:00", "2023-10-19 06:00"),
        ("2023-10-19 01:00:00.250", "2023-10-19 06:00:00.250"),
        ("2023-10-19", "2023-10-19 05:00"),
        # DST: the repeated hour reads as its first instant, the skipped one moves forward
        ("2025-11-02 01:30", "2025-11-02 06:30"),
        ("2025-03-09T02:30:00", "2025-03-09 08:00"),
    ],
)
def test_timestamp_forms(text: str, expected: str) -> None:
    parsed = parse_timestamps(pd.Series([text, None, ""]), TZ)
    assert parsed.dtype == "datetime64[ns, UTC]"
    assert parsed[0] == utc(expected)
    assert parsed[1:].isna().all()


def test_the_common_forms_are_read_by_arrow_in_bulk() -> None:
    values = pd.Series(["2025-03-05T07:00:00-06:00", "2025-03-05 13:00:00+00"] * 50_000)
    parsed = parse_timestamps(values, TZ)
    assert (parsed == utc("2025-03-05 13:00")).all()


@pytest.mark.parametrize(
    ("text", "layouts", "expected"),
    [
        ("03/05/2025 07:00 AM", (US,), "2025-03-05 13:00"),  # CST
        ("03/15/2025 07:00 PM", (US,), "2025-03-16 00:00"),  # CDT
        ("05/03/2025 07:00", ("%d/%m/%Y %H:%M",), "2025-03-05 13:00"),
        ("05/03/2025 19:00", (US, "%d/%m/%Y %H:%M"), "2025-03-06 01:00"),  # second layout
        ("03/05/2025 07:00 AM -0500", ("%m/%d/%Y %I:%M %p %z",), "2025-03-05 12:00"),
        ("2025-03-05T07:00:00-06:00", (US,), "2025-03-05 13:00"),  # ISO 8601 is tried first
    ],
)
def test_configured_layouts(text: str, layouts: tuple[str, ...], expected: str) -> None:
    assert parse_timestamps(pd.Series([text]), TZ, layouts)[0] == utc(expected)


def test_a_mixed_export_reads_iso_and_us_values() -> None:
    raw = tiny_tables()["shift_requests"]
    raw.loc[[1, 5], "shift_start"] = ["03/05/2025 07:00 AM", "03/09/2025 02:30 AM"]
    raw.loc[3, "requested_at"] = "02/28/2025 11:15 PM"
    options = ParseOptions(formats={"shift_start": (US,), "requested_at": (US,)})
    zones = pd.Series({"F1": "America/New_York"})
    typed = parse_shift_requests(raw, zones, TZ, options=options)
    assert typed.loc[1, "shift_start"] == utc("2025-03-05 12:00")  # EST
    assert typed.loc[5, "shift_start"] == utc("2025-03-09 07:00")  # gap: 03:00 EDT
    assert typed.loc[3, "requested_at"] == utc("2025-03-01 05:15")  # agency zone, CST
    assert typed.loc[0, "shift_start"] == utc("2025-02-20 13:00")
    assert typed["shift_start"].notna().all() and typed["_raw_shift_start"].isna().all()


def test_slashes_without_a_format_are_not_guessed() -> None:
    raw = tiny_tables()["shift_requests"]
    raw.loc[2, "shift_start"] = "03/05/2025 07:00 AM"
    typed = parse_shift_requests(raw, pd.Series({"F1": TZ}), TZ)
    assert pd.isna(typed.loc[2, "shift_start"])
    said = typed.loc[2, "_raw_shift_start"]
    assert said == "03/05/2025 07:00 AM"
    assert repr(said) == (
        "'03/05/2025 07:00 AM' (day and month order is ambiguous: set formats.shift_start in the "
        "source mapping (e.g. %m/%d/%Y %I:%M %p))"
    )


def test_the_quarantine_detail_says_what_the_source_said_and_how_to_read_it() -> None:
    tables = tiny_tables()
    put(tables, "shift_requests", 2, shift_start="03/05/2025 07:00 AM")
    put(tables, "nurses", 1, hired_on="05/01/2022")
    put(tables, "shift_requests", 3, requested_at="yesterday")
    result = run(tables)
    q = result.quarantine.set_index("source_key")
    assert q.loc["R2", "rule"] == "shift_start_unparseable"
    assert "shift_start='03/05/2025 07:00 AM'" in q.loc["R2", "detail"]
    assert (
        "set formats.shift_start in the source mapping (e.g. %m/%d/%Y %I:%M %p)"
        in q.loc["R2", "detail"]
    )
    assert q.loc["N2", "rule"] == "hired_on_unparseable"
    assert "set formats.hired_on in the source mapping (e.g. %m/%d/%Y)" in q.loc["N2", "detail"]
    assert q.loc["R3", "detail"] == "requested_at_unparseable: requested_at='yesterday'"


def test_only_day_and_month_first_values_get_the_format_hint() -> None:
    raw = tiny_tables()["nurses"].head(3)
    raw["hired_on"] = ["n/a", "3/5/21", "29.02.2024"]
    said = parse_nurses(raw)["_raw_hired_on"]
    assert repr(said[0]) == "'n/a'"
    for value in said[1:]:
        assert repr(value).endswith(
            "(day and month order is ambiguous: set formats.hired_on in the source mapping "
            "(e.g. %m/%d/%Y))"
        )


def test_a_value_no_configured_layout_reads_names_them() -> None:
    raw = tiny_tables()["shift_requests"]
    raw.loc[2, "shift_start"] = "05.03.2025 07:00"
    raw.loc[3, "shift_start"] = "2025/03/05 07:00"  # year first: unambiguous, ISO-like
    options = ParseOptions(formats={"shift_start": (US,)})
    typed = parse_shift_requests(raw, pd.Series({"F1": TZ}), TZ, options=options)
    assert repr(typed.loc[2, "_raw_shift_start"]) == (
        f"'05.03.2025 07:00' (none of formats.shift_start ({US}) reads it)"
    )
    assert typed.loc[3, "shift_start"] == utc("2025-03-05 13:00")


@pytest.mark.parametrize(
    ("value", "layouts", "expected"),
    [
        ("2024-02-29", (), "2024-02-29"),
        ("2024-02-29T23:30:00-06:00", (), "2024-02-29"),  # the date written, not UTC's
        ("2024-02-29 00:00:00+00", (), "2024-02-29"),
        ("02/29/2024", ("%m/%d/%Y",), "2024-02-29"),
        ("29/02/2024", ("%m/%d/%Y", "%d/%m/%Y"), "2024-02-29"),
        ("2024/02/29", (), "2024-02-29"),  # year first: not ambiguous
        ("02/29/2024", (), None),
        ("2024-02-30", (), None),
        ("2024-02-29garbage", (), None),
    ],
)
def test_date_forms(value: str, layouts: tuple[str, ...], expected: str | None) -> None:
    parsed = parse_dates(pd.Series([value]), layouts)
    assert parsed.dtype == "datetime64[ns]"
    assert parsed[0] == pd.Timestamp(expected) if expected else pd.isna(parsed[0])


def test_date_formats_work_for_every_date_column() -> None:
    facilities = tiny_tables()["facilities"]
    facilities.loc[0, ["active_from", "active_to"]] = ["03/05/2020", "12/31/2030"]
    options = ParseOptions(formats={"active_from": ("%m/%d/%Y",), "active_to": ("%m/%d/%Y",)})
    typed = parse_facilities(facilities, options=options)
    assert typed.loc[0, "active_from"] == pd.Timestamp("2020-03-05")
    assert typed.loc[0, "active_to"] == pd.Timestamp("2030-12-31")
    nurses = tiny_tables()["nurses"]
    nurses.loc[0, ["hired_on", "separated_on"]] = ["03/05/2020", "04/06/2024"]
    options = ParseOptions(formats={"hired_on": ("%m/%d/%Y",), "separated_on": ("%m/%d/%Y",)})
    typed = parse_nurses(nurses, options=options)
    assert typed.loc[0, "hired_on"] == pd.Timestamp("2020-03-05")
    assert typed.loc[0, "separated_on"] == pd.Timestamp("2024-04-06")


# -- native types -------------------------------------------------------------------------


def _native_requests() -> pd.DataFrame:
    """Four requests as a database driver or Parquet hands them over: no text at all."""
    chicago = ZoneInfo(TZ)
    return pd.DataFrame(
        {
            "request_id": pd.Series([1234567, 1234568, 1234569, 1234570], dtype="int64"),
            "facility_id": pd.Series([12.0, 12.0, np.nan, 12.0]),  # a numeric column with a null
            "role": pd.Series(["RN", "LPN", "RN", "RN"], dtype="string[pyarrow]"),
            "shift_start": pd.Series(
                [
                    datetime(2025, 3, 5, 7, 0, tzinfo=chicago),  # psycopg timestamptz
                    datetime(2025, 3, 9, 3, 30, tzinfo=chicago),  # CDT already
                    datetime(2025, 3, 5, 7, 0, tzinfo=chicago),
                    None,
                ],
                dtype=object,
            ),
            "shift_hours": pd.Series(
                [Decimal("12"), Decimal("8.5"), Decimal("12"), None], dtype=object
            ),
            "requested_at": pd.Series(
                pd.to_datetime(["2025-03-01 12:00", "2025-03-01 13:00", None, "2025-03-01 14:00"])
            ).dt.tz_localize("UTC"),
            "status": ["filled", "Canceled", "filled", "unfilled"],
            "cancelled_at": pd.Series(
                [None, datetime(2025, 3, 2, 8, 0), None, None], dtype=object
            ),  # naive: agency time
        }
    )


def test_native_request_values_give_the_same_typed_frame() -> None:
    typed = parse_shift_requests(_native_requests(), pd.Series({"12": TZ}), TZ)
    assert list(typed["request_id"]) == ["1234567", "1234568", "1234569", "1234570"]
    assert list(typed["facility_id"].astype(object).fillna("-")) == ["12", "12", "-", "12"]
    assert typed.loc[0, "shift_start"] == utc("2025-03-05 13:00")
    assert typed.loc[1, "shift_start"] == utc("2025-03-09 08:30")
    assert list(typed["shift_hours"].fillna(-1)) == [12.0, 8.5, 12.0, -1]
    assert typed.loc[0, "requested_at"] == utc("2025-03-01 12:00")
    assert typed.loc[1, "cancelled_at"] == utc("2025-03-02 14:00")
    assert list(typed["status"]) == ["filled", "cancelled", "filled", "unfilled"]
    raw_columns = [c for c in typed.columns if c.startswith("_raw_")]
    assert typed[raw_columns].isna().all().all(), "nothing native is unreadable"
    assert typed["shift_start"].dtype == "datetime64[ns, UTC]"
    assert typed["requested_at"].dtype == "datetime64[ns, UTC]"
    assert typed["cancelled_at"].dtype == "datetime64[ns, UTC]"
    assert typed["shift_hours"].dtype == float
    assert isinstance(typed["role"].dtype, pd.CategoricalDtype)
    assert isinstance(typed["status"].dtype, pd.CategoricalDtype)
    assert typed["_hours_requested_after_start"].dtype == float
    assert not typed["_excluded"].any()


@pytest.mark.parametrize(
    "shape",
    [
        "datetime64[ns, tz]",
        "datetime64[us, UTC]",
        "naive datetime64",
        "arrow timestamp tz",
        "arrow timestamp naive",
        "python aware",
        "python naive",
        "python mixed offsets",
        "text",
    ],
)
def test_every_native_timestamp_shape(shape: str) -> None:
    instants = pd.Series(pd.to_datetime(["2025-03-05 13:00", "2025-07-05 12:00"], utc=True))
    local = instants.dt.tz_convert(TZ)
    values = {
        "datetime64[ns, tz]": local,
        "datetime64[us, UTC]": instants.astype("datetime64[us, UTC]"),
        "naive datetime64": local.dt.tz_localize(None),
        "arrow timestamp tz": instants.astype(pd.ArrowDtype(pa.timestamp("us", tz="UTC"))),
        "arrow timestamp naive": local.dt.tz_localize(None).astype(
            pd.ArrowDtype(pa.timestamp("ms"))
        ),
        "python aware": pd.Series(list(local.dt.to_pydatetime()), dtype=object),
        "python naive": pd.Series(
            list(local.dt.tz_localize(None).dt.to_pydatetime()), dtype=object
        ),
        "python mixed offsets": pd.Series(
            [
                datetime(2025, 3, 5, 7, tzinfo=timezone(timedelta(hours=-6))),
                datetime(2025, 7, 5, 7, tzinfo=timezone(timedelta(hours=-5))),
            ],
            dtype=object,
        ),
        "text": local.astype(str),
    }[shape]
    parsed = parse_timestamps(values.reset_index(drop=True), TZ)
    assert parsed.dtype == "datetime64[ns, UTC]"
    assert list(parsed) == [utc("2025-03-05 13:00"), utc("2025-07-05 12:00")]


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([date(2024, 2, 29), None], dtype=object),
        pd.Series([date(2024, 2, 29), None]).astype(pd.ArrowDtype(pa.date32())),
        pd.Series(pd.to_datetime(["2024-02-29", None])),
        pd.Series(pd.to_datetime(["2024-02-29", None])).dt.tz_localize(TZ),  # midnight local
        pd.Series(pd.to_datetime(["2024-02-29 23:00", None])).dt.tz_localize("UTC"),
        pd.Series([datetime(2024, 2, 29, tzinfo=ZoneInfo(TZ)), None], dtype=object),
        pd.Series(pd.to_datetime(["2024-02-29", None]))
        .dt.tz_localize(TZ)
        .astype(pd.ArrowDtype(pa.timestamp("s", tz=TZ))),
    ],
    ids=["date objects", "date32", "naive", "local midnight", "utc", "python aware", "arrow"],
)
def test_dates_typed_as_dates_or_timestamps_keep_their_calendar_date(values: pd.Series) -> None:
    parsed = parse_dates(values)
    assert parsed.dtype == "datetime64[ns]"
    assert parsed[0] == pd.Timestamp("2024-02-29") and pd.isna(parsed[1])


def test_native_facilities_nurses_and_offers() -> None:
    facilities = pd.DataFrame(
        {
            "facility_id": pd.Series([12, 13], dtype="int64"),
            "facility_type": ["Hospital", None],
            "region": ["North", "South"],
            "timezone": ["CST", "america/new_york"],
            "active_from": pd.Series([date(2020, 1, 1), date(2021, 6, 1)]).astype(
                pd.ArrowDtype(pa.date32())
            ),
            "active_to": pd.Series([pd.NaT, pd.NaT], dtype="datetime64[us]"),
        }
    )
    typed = parse_facilities(facilities)
    assert list(typed["facility_id"]) == ["12", "13"]
    assert list(typed["timezone"]) == [TZ, "America/New_York"]
    assert typed.loc[0, "facility_type"] == "hospital"
    assert typed["active_from"].dtype == "datetime64[ns]"
    assert typed.loc[1, "active_from"] == pd.Timestamp("2021-06-01")

    nurses = pd.DataFrame(
        {
            "nurse_id": pd.Series([101, 102, 103, 104], dtype="Int64"),
            "role": ["rn", "Licensed Vocational Nurse", "RN", "LPN"],
            "region": ["North"] * 4,
            "on_call": pd.Series([True, False, None, True], dtype=object),
            "hired_on": pd.Series([date(2021, 1, 1)] * 4, dtype=object),
            "separated_on": pd.Series([None, date(2024, 1, 1), None, None], dtype=object),
        }
    )
    typed = parse_nurses(nurses)
    assert list(typed["nurse_id"]) == ["101", "102", "103", "104"]
    assert list(typed["role"]) == ["RN", "LPN", "RN", "LPN"]
    assert list(typed["on_call"].astype(object).fillna("-")) == [True, False, "-", True]
    assert typed["_raw_on_call"].isna().all()
    assert typed.loc[1, "separated_on"] == pd.Timestamp("2024-01-01")

    offers = pd.DataFrame(
        {
            "request_id": pd.Series([1234567.0, np.nan]),
            "offered_at": pd.Series(
                [datetime(2025, 3, 1, 10, tzinfo=UTC), datetime(2025, 3, 1, 4)],
                dtype=object,
            ),  # a zoned and a naive value in one column: each read on its own
            "response": ["Accepted", "declined"],
        }
    )
    typed = parse_shift_offers(offers, TZ)
    assert typed.loc[0, "request_id"] == "1234567" and pd.isna(typed.loc[1, "request_id"])
    assert list(typed["offered_at"]) == [utc("2025-03-01 10:00"), utc("2025-03-01 10:00")]
    assert list(typed["response"]) == ["accepted", "declined"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (1.0, True),
        ("1", True),
        ("0", False),
        (" TRUE ", True),
        ("false", False),
        ("t", True),
        ("F", False),
        ("Yes", True),
        ("no", False),
        ("y", True),
        ("N", False),
        ("maybe", None),
        (2, None),
        ("", None),
        (None, None),
    ],
)
def test_on_call_spellings(value: object, expected: bool | None) -> None:
    raw = tiny_tables()["nurses"].head(1)
    raw["on_call"] = pd.Series([value], dtype=object)
    typed = parse_nurses(raw)
    assert typed["on_call"].dtype == "boolean"
    got = typed.loc[0, "on_call"]
    assert (pd.isna(got) and expected is None) or got == expected
    unread = value not in (None, "") and expected is None
    assert pd.notna(typed.loc[0, "_raw_on_call"]) == unread


def test_shift_hours_as_numbers_text_and_decimals() -> None:
    raw = tiny_tables()["shift_requests"].head(6)
    raw["shift_hours"] = pd.Series(
        [12, 8.5, " 10 ", Decimal("7.5"), "12.0", "twelve"], dtype=object
    )
    typed = parse_shift_requests(raw, pd.Series({"F1": TZ}), TZ)
    assert list(typed["shift_hours"].fillna(-1)) == [12.0, 8.5, 10.0, 7.5, 12.0, -1]
    assert list(typed["_raw_shift_hours"].fillna("-")) == ["-"] * 5 + ["twelve"]


# -- value maps and exclusions --------------------------------------------------------------


def test_value_maps_apply_before_the_built_in_aliases() -> None:
    raw = tiny_tables()["shift_requests"].head(6)
    raw["role"] = ["RN-ICU", " rn-icu ", "Registered  Nurse", "CNA", "lvn", "Nurse Aide"]
    raw["status"] = ["F", "f ", "C", "canceled", "U", "filled"]
    raw["facility_id"] = ["North Campus"] * 6
    options = ParseOptions(
        values={
            "role": {"RN-ICU": "RN", "registered nurse": "LPN"},  # a map wins over an alias
            "status": {"F": "filled", "C": "cancelled", "U": "unfilled"},
            "facility_id": {"north  campus": "F1"},
        },
        exclude={"role": frozenset({"cna", "NURSE AIDE"})},
    )
    typed = parse_shift_requests(raw, pd.Series({"F1": TZ}), TZ, options=options)
    assert list(typed["role"]) == ["RN", "RN", "LPN", "CNA", "LPN", "NURSE AIDE"]
    assert list(typed["status"]) == ["filled", "filled", "cancelled", "cancelled", "unfilled"] + [
        "filled"
    ]
    assert list(typed["facility_id"]) == ["F1"] * 6
    assert typed["shift_start"].notna().all(), "the mapped facility's zone is found"
    assert list(typed["_excluded"]) == [False, False, False, True, False, True]


def test_value_maps_and_exclusions_on_every_table() -> None:
    facilities = tiny_tables()["facilities"]
    facilities.loc[0, "facility_type"] = "HOSP"
    facilities.loc[1, "facility_type"] = "Clinic"
    options = ParseOptions(
        values={"facility_type": {"hosp": "hospital"}, "region": {"North": "Northern"}},
        exclude={"facility_type": frozenset({"clinic"})},
    )
    typed = parse_facilities(facilities, options=options)
    assert typed.loc[0, "facility_type"] == "hospital"
    assert set(typed["region"]) == {"Northern"}
    assert list(typed["_excluded"]) == [False, True, False, False, False]

    nurses = tiny_tables()["nurses"]
    nurses["on_call"] = ["X", "-", "X", "-", "X", "-", "X", "-"]
    options = ParseOptions(
        values={"on_call": {"x": "true", "-": "false"}, "role": {"Charge RN": "RN"}},
        exclude={"role": frozenset({"LPN"})},
    )
    typed = parse_nurses(nurses, options=options)
    assert list(typed["on_call"]) == [True, False] * 4
    assert list(typed["_excluded"]) == [False, False, True, False] * 2

    offers = pd.DataFrame(
        {
            "request_id": ["R1", "R2"],
            "offered_at": ["2025-03-01T10:00Z"] * 2,
            "response": ["A", "D"],
        }
    )
    options = ParseOptions(
        values={"response": {"a": "accepted", "d": "declined"}},
        exclude={"request_id": frozenset({"r2"})},
    )
    typed = parse_shift_offers(offers, TZ, options=options)
    assert list(typed["response"]) == ["accepted", "declined"]
    assert list(typed["_excluded"]) == [False, True]


def test_every_parse_function_marks_exclusions_false_by_default() -> None:
    tables = tiny_tables()
    frames = [
        parse_facilities(tables["facilities"]),
        parse_shift_requests(tables["shift_requests"], pd.Series({"F1": TZ}), TZ),
        parse_nurses(tables["nurses"]),
        parse_shift_offers(tables["shift_offers"], TZ),
    ]
    for frame in frames:
        assert frame["_excluded"].dtype == bool and not frame["_excluded"].any()


# -- time zones ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("CST", "America/Chicago"),
        ("cdt", "America/Chicago"),
        (" EST ", "America/New_York"),
        ("EDT", "America/New_York"),
        ("MST", "America/Denver"),
        ("MDT", "America/Denver"),
        ("PST", "America/Los_Angeles"),
        ("pdt", "America/Los_Angeles"),
        ("AKST", "America/Anchorage"),
        ("AKDT", "America/Anchorage"),
        ("HST", "Pacific/Honolulu"),
        ("Central Standard Time", "America/Chicago"),
        ("central  standard time", "America/Chicago"),
        ("US Mountain Standard Time", "America/Phoenix"),
        ("US/Central", "US/Central"),
        ("america/chicago", "America/Chicago"),
        ("America/Phoenix", "America/Phoenix"),
        ("Mars/Olympus", "Mars/Olympus"),
    ],
)
def test_zone_abbreviations(value: str, expected: str) -> None:
    raw = tiny_tables()["facilities"].head(1)
    raw["timezone"] = [value]
    assert parse_facilities(raw).loc[0, "timezone"] == expected


def test_the_abbreviation_table_points_at_real_zones() -> None:
    from zoneinfo import available_timezones

    assert set(ZONE_ABBREVIATIONS.values()) <= available_timezones()
    assert ZONE_ABBREVIATIONS["MST"] == "America/Denver"
    assert "ZONE_ABBREVIATIONS" in (parsing.__doc__ or "")


def test_an_abbreviated_zone_reads_local_times_with_dst() -> None:
    tables = tiny_tables()
    put(tables, "facilities", 0, timezone="CST")
    # After the switch to CDT (02:00 that day), and before as_of: a source whose requests are
    # all for as_of or later stops (rule history_demand).
    tables["shift_requests"]["shift_start"] = "2025-03-09 07:00"
    result = run(tables)
    used = result.tables["shift_requests"]
    assert (used["shift_start"] == utc("2025-03-09 12:00")).all()


def test_an_unknown_zone_is_quarantined_with_its_value() -> None:
    tables = tiny_tables()
    put(tables, "facilities", 2, timezone="Central Time (US)")
    result = run(tables)
    q = result.quarantine.set_index("source_key")
    assert q.loc["F3", "rule"] == "timezone_valid"
    assert "timezone=Central Time (US)" in q.loc["F3", "detail"]
