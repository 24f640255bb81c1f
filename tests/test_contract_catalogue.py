"""The catalogue of bad inputs: each one is repaired, quarantined with its rule, or stops the run
with a message naming the table, the rule and an example.

Every case starts from the same small, clean agency (3 facilities, 40 days of requests) and
breaks one thing. The clean agency itself validates with no quarantine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from data_contracts.validate import ValidationResult, validate_extract
from staffcast.errors import SourceUnavailable, ValidationFailed
from staffcast.source import connect_source
from staffcast.source_files import open_source

TZ = "America/Chicago"
AS_OF = date(2025, 3, 17)
Tables = dict[str, pd.DataFrame]


def clean_agency() -> Tables:
    """A small agency in the SPEC §2 schema, with columns staffcast must never read."""
    facilities = pd.DataFrame(
        {
            "facility_id": ["F1", "F2", "F3"],
            "name": ["Lakeview", "Maple Grove", "Oak Ridge"],
            "facility_type": ["hospital", "nursing_home", "hospital"],
            "region": ["North", "North", "South"],
            "timezone": [TZ, TZ, TZ],
            "active_from": ["2020-01-01"] * 3,
            "active_to": [None] * 3,
        }
    )
    rows = []
    for day in pd.date_range("2025-02-05", "2025-03-16", freq="D"):
        for facility in ("F1", "F2", "F3"):
            for role in ("RN", "LPN"):
                n = len(rows)
                start = day + pd.Timedelta(hours=7)
                rows.append(
                    {
                        "request_id": f"R{n:05d}",
                        "facility_id": facility,
                        "role": role,
                        "shift_start": start.tz_localize(TZ).isoformat(),
                        "shift_hours": 12.0,
                        "requested_at": (start - pd.Timedelta(days=3))
                        .tz_localize(TZ)
                        .tz_convert("UTC")
                        .isoformat(),
                        "status": "filled",
                        "cancelled_at": None,
                        "unit": "ICU",
                        "nurse_id": "N1",
                        "notes": "call Ann at 555-0100",
                    }
                )
    nurses = pd.DataFrame(
        {
            "nurse_id": ["N1", "N2", "N3"],
            "name": ["Ann", "Bob", "Cy"],
            "phone": ["555-0100", "555-0101", "555-0102"],
            "role": ["RN", "LPN", "RN"],
            "region": ["North", "North", "South"],
            "on_call": [1, 1, 0],
            "hired_on": ["2021-01-01", "2022-05-01", "2023-07-15"],
            "separated_on": [None, None, None],
        }
    )
    offers = pd.DataFrame(
        {
            "request_id": ["R00000", "R00001"],
            "nurse_id": ["N1", "N2"],
            "offered_at": ["2025-02-03T10:00:00+00:00", "2025-02-03T11:00:00+00:00"],
            "response": ["accepted", "declined"],
        }
    )
    return {
        "facilities": facilities,
        "shift_requests": pd.DataFrame(rows),
        "nurses": nurses,
        "shift_offers": offers,
    }


def write_sqlite(tables: Tables, path: Path) -> str:
    with sqlite3.connect(path) as con:
        for name, frame in tables.items():
            frame.to_sql(name, con, index=False)
    return f"sqlite:///{path}"


def write_folder(tables: Tables, folder: Path) -> str:
    folder.mkdir()
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return str(folder)


def validate(
    source: str, max_share: float = 0.10, max_region_loss: float | None = None
) -> ValidationResult:
    extract = open_source(source, AS_OF, TZ)
    return validate_extract(extract, TZ, max_share, 14, max_region_loss_share=max_region_loss)


def quarantined(result: ValidationResult) -> dict[tuple[str, str], str]:
    q = result.quarantine
    return dict(zip(zip(q["source_table"], q["source_key"], strict=True), q["rule"], strict=True))


def request(tables: Tables, request_id: str) -> pd.Series:
    frame = tables["shift_requests"]
    return frame.loc[frame["request_id"] == request_id].iloc[0]


def set_request(tables: Tables, request_id: str, **values: object) -> None:
    frame = tables["shift_requests"]
    for column, value in values.items():
        frame[column] = frame[column].astype(object)
        frame.loc[frame["request_id"] == request_id, column] = value


@dataclass(frozen=True)
class Case:
    """One bad input and what must happen to it."""

    name: str
    corrupt: Callable[[Tables], None]
    quarantine: dict[tuple[str, str], str] | None = None  # (table, key) -> rule
    stop: str | None = None  # regex the stop message must match
    check: Callable[[ValidationResult], None] | None = None  # for repaired inputs
    max_share: float = 0.10  # share of quarantined requests that stops the run (SPEC default)
    max_region_loss: float | None = None  # share of one region's demand (default: max_share)


def _drop_column(table: str, column: str) -> Callable[[Tables], None]:
    def corrupt(tables: Tables) -> None:
        tables[table] = tables[table].drop(columns=[column])

    return corrupt


def _rename_column(tables: Tables) -> None:
    tables["shift_requests"] = tables["shift_requests"].rename(columns={"role": "nurse_role"})


def _whole_column_wrong_type(tables: Tables) -> None:
    tables["shift_requests"]["shift_hours"] = "twelve hours"


def _duplicate(identical: bool) -> Callable[[Tables], None]:
    def corrupt(tables: Tables) -> None:
        frame = tables["shift_requests"]
        copy = frame[frame["request_id"] == "R00010"].copy()
        if not identical:
            copy["shift_hours"] = 8.0
        tables["shift_requests"] = pd.concat([frame, copy], ignore_index=True)

    return corrupt


def _facility(column: str, value: object) -> Callable[[Tables], None]:
    def corrupt(tables: Tables) -> None:
        tables["facilities"][column] = tables["facilities"][column].astype(object)
        tables["facilities"].loc[tables["facilities"]["facility_id"] == "F3", column] = value

    return corrupt


def _requests_of(facility: str, rule: str) -> Callable[[], dict[tuple[str, str], str]]:
    frame = clean_agency()["shift_requests"]
    keys = frame.loc[frame["facility_id"] == facility, "request_id"]
    return lambda: {("shift_requests", k): rule for k in keys}


def _separated_before_hired(tables: Tables) -> None:
    tables["nurses"].loc[0, "separated_on"] = "2020-06-01"


def _empty_requests(tables: Tables) -> None:
    tables["shift_requests"] = tables["shift_requests"].iloc[0:0]


def _stale(tables: Tables) -> None:
    frame = tables["shift_requests"]
    tables["shift_requests"] = frame[frame["shift_start"] < "2025-02-20"]


def _drop_table(tables: Tables) -> None:
    del tables["nurses"]


def _sql_and_html_in_names(tables: Tables) -> None:
    tables["facilities"].loc[0, "name"] = "'); DROP TABLE facilities;--"
    tables["facilities"].loc[2, "region"] = "<script>alert('x')</script>"
    tables["nurses"].loc[2, "region"] = "<script>alert('x')</script>"


def _check_names_kept_as_data(result: ValidationResult) -> None:
    assert "<script>alert('x')</script>" in set(result.tables["facilities"]["region"])
    assert result.rows("shift_requests")[2] == 0


def _mixed_zones(tables: Tables) -> None:
    frame = tables["shift_requests"]
    naive = frame.index % 2 == 0
    frame.loc[naive, "shift_start"] = frame.loc[naive, "shift_start"].str.slice(0, 19)
    frame.loc[~naive, "requested_at"] = frame.loc[~naive, "requested_at"].str.replace("+00:00", "Z")


def _check_mixed_zones(result: ValidationResult) -> None:
    used = result.tables["shift_requests"]
    assert result.rows("shift_requests")[2] == 0
    local = used["shift_start"].dt.tz_convert(TZ)
    assert (local.dt.hour == 7).all(), "naive times are local to the facility"


def _dst_gap(tables: Tables) -> None:
    set_request(tables, "R00100", shift_start="2025-03-09T02:30:00", shift_hours=12.0)


def _check_dst_gap(result: ValidationResult) -> None:
    used = result.tables["shift_requests"].set_index("request_id")
    start = used.loc["R00100", "shift_start"]
    # 02:30 does not exist that night in Chicago: moved forward to 03:00 CDT.
    assert start == pd.Timestamp("2025-03-09 08:00", tz="UTC")


def _cross_midnight(tables: Tables) -> None:
    set_request(tables, "R00101", shift_start="2025-03-10T19:00:00-05:00", shift_hours=12.0)


def _check_cross_midnight(result: ValidationResult) -> None:
    from models.demand import counted_requests

    used = result.tables["shift_requests"]
    zone = pd.Series(TZ, index=used.index)
    counted = counted_requests(
        used.assign(timezone=zone), pd.Timestamp("2025-03-17 05:00", tz="UTC"), 24
    )
    day = counted.set_index("request_id").loc["R00101", "date"]
    assert day == pd.Timestamp("2025-03-10"), "a night shift counts on the day it starts"


def _role_variants(tables: Tables) -> None:
    set_request(tables, "R00001", role=" rn ")
    set_request(tables, "R00002", role="Registered Nurse")
    set_request(tables, "R00003", role="LVN")
    set_request(tables, "R00004", status="Canceled", cancelled_at="2025-02-05T20:00:00+00:00")


def _check_role_variants(result: ValidationResult) -> None:
    used = result.tables["shift_requests"].set_index("request_id")
    assert used.loc["R00001", "role"] == "RN" and used.loc["R00002", "role"] == "RN"
    assert used.loc["R00003", "role"] == "LPN"
    assert used.loc["R00004", "status"] == "cancelled"
    assert result.rows("shift_requests")[2] == 0


def _too_many_bad(tables: Tables) -> None:
    frame = tables["shift_requests"]
    frame.loc[frame.index % 4 == 0, "role"] = "CNA"


def _check_abbreviated_zone(result: ValidationResult) -> None:
    facilities = result.tables["facilities"].set_index("facility_id")
    assert facilities.loc["F3", "timezone"] == "America/Chicago"
    assert result.quarantine.empty


def _bad_offer(tables: Tables) -> None:
    tables["shift_offers"].loc[1, "response"] = "maybe"


CASES = [
    Case(
        "missing column",
        _drop_column("shift_requests", "shift_hours"),
        stop=r"'shift_requests'.*is missing .*shift_hours.*required_columns",
    ),
    Case(
        "renamed column",
        _rename_column,
        stop=r"'shift_requests'.*is missing .*role.*required_columns.*nurse_role",
    ),
    Case(
        "optional table missing a column",
        _drop_column("shift_offers", "response"),
        stop=r"'shift_offers'.*is missing .*response",
    ),
    Case(
        "one value of the wrong type",
        lambda t: set_request(t, "R00005", shift_hours="twelve"),
        quarantine={("shift_requests", "R00005"): "shift_hours_unparseable"},
    ),
    Case(
        "a whole column of the wrong type",
        _whole_column_wrong_type,
        stop=r"max_quarantine_share.*shift_hours_unparseable.*example",
    ),
    Case(
        "unparseable shift_start",
        lambda t: set_request(t, "R00006", shift_start="31/02/25"),
        quarantine={("shift_requests", "R00006"): "shift_start_unparseable"},
    ),
    Case(
        "unparseable requested_at",
        lambda t: set_request(t, "R00007", requested_at="yesterday"),
        quarantine={("shift_requests", "R00007"): "requested_at_unparseable"},
    ),
    Case("mixed naive and zoned timestamps", _mixed_zones, check=_check_mixed_zones),
    Case("a shift in the DST gap", _dst_gap, check=_check_dst_gap),
    Case("a 12-hour shift across midnight", _cross_midnight, check=_check_cross_midnight),
    Case("role and status spellings", _role_variants, check=_check_role_variants),
    Case(
        "duplicate request_id, identical",
        _duplicate(identical=True),
        quarantine={("shift_requests", "R00010"): "duplicate_request_id"},
    ),
    Case(
        "duplicate request_id, conflicting",
        _duplicate(identical=False),
        quarantine={("shift_requests", "R00010"): "duplicate_request_id"},
    ),
    Case(
        "unknown facility",
        lambda t: set_request(t, "R00011", facility_id="F999"),
        quarantine={("shift_requests", "R00011"): "unknown_facility"},
    ),
    # A third of the requests belong to F3: allow that much quarantine to see where they go.
    Case(
        "facility without region",
        _facility("region", None),
        quarantine={("facilities", "F3"): "region_present"},
        max_share=0.5,
    ),
    Case(
        "facility with an invalid timezone",
        _facility("timezone", "Mars/Olympus"),
        quarantine={("facilities", "F3"): "timezone_valid"},
        max_share=0.5,
        max_region_loss=1.0,  # F3 is South's only facility: all of its demand is lost
    ),
    Case(
        "facility zone as an abbreviation",
        _facility("timezone", "cst"),
        check=_check_abbreviated_zone,
    ),
    Case(
        "a request without a role",
        lambda t: set_request(t, "R00018", role=None),
        quarantine={("shift_requests", "R00018"): "role_missing"},
    ),
    Case(
        "a US shift_start and no format for it",
        lambda t: set_request(t, "R00019", shift_start="02/20/2025 07:00 AM"),
        quarantine={("shift_requests", "R00019"): "shift_start_unparseable"},
    ),
    Case(
        "shift_hours 0",
        lambda t: set_request(t, "R00012", shift_hours=0),
        quarantine={("shift_requests", "R00012"): "shift_hours_out_of_range"},
    ),
    Case(
        "shift_hours negative",
        lambda t: set_request(t, "R00013", shift_hours=-8),
        quarantine={("shift_requests", "R00013"): "shift_hours_out_of_range"},
    ),
    Case(
        "shift_hours over 24",
        lambda t: set_request(t, "R00014", shift_hours=36),
        quarantine={("shift_requests", "R00014"): "shift_hours_out_of_range"},
    ),
    Case(
        "requested_at after shift_start",
        lambda t: set_request(t, "R00015", requested_at="2025-02-20T12:00:00+00:00"),
        quarantine={("shift_requests", "R00015"): "requested_after_shift_start"},
    ),
    Case(
        "status outside the set",
        lambda t: set_request(t, "R00016", status="pending"),
        quarantine={("shift_requests", "R00016"): "status_not_in_set"},
    ),
    Case(
        "cancelled without cancelled_at",
        lambda t: set_request(t, "R00017", status="cancelled"),
        quarantine={("shift_requests", "R00017"): "cancelled_without_cancelled_at"},
    ),
    Case(
        "nurse separated before hired",
        _separated_before_hired,
        quarantine={("nurses", "N1"): "separated_before_hired"},
    ),
    Case(
        "offer with an unknown response",
        _bad_offer,
        quarantine={("shift_offers", "R00001"): "response_not_in_set"},
    ),
    Case("empty shift_requests", _empty_requests, stop=r"'shift_requests'.*'not_empty'"),
    Case(
        "no requests in the 14 days before as_of",
        _stale,
        stop=r"'shift_requests'.*'recent_requests'.*Example: observed 2025-02-1",
    ),
    Case("a table missing", _drop_table, stop=r"'nurses'.*required_tables"),
    Case(
        "too many bad rows",
        _too_many_bad,
        stop=r"max_quarantine_share.*role_not_in_set.*example: R",
    ),
    Case("SQL and HTML in names", _sql_and_html_in_names, check=_check_names_kept_as_data),
]


@pytest.mark.parametrize("form", ["sqlite", "csv folder"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_catalogue(case: Case, form: str, tmp_path: Path) -> None:
    tables = clean_agency()
    case.corrupt(tables)
    source = (
        write_sqlite(tables, tmp_path / "ops.db")
        if form == "sqlite"
        else write_folder(tables, tmp_path / "ops")
    )
    if case.stop is not None:
        with pytest.raises(ValidationFailed, match=case.stop):
            validate(source, case.max_share, case.max_region_loss)
        return
    result = validate(source, case.max_share, case.max_region_loss)
    for table, (extracted, used, quarantined_rows) in ((t, result.rows(t)) for t in result.counts):
        assert extracted == used + quarantined_rows, table
    if case.quarantine is not None:
        expected = dict(case.quarantine)
        if case.name == "facility without region" or "invalid timezone" in case.name:
            expected.update(_requests_of("F3", "facility_quarantined")())
        assert quarantined(result) == expected
    if case.check is not None:
        case.check(result)


def test_the_clean_agency_is_clean(tmp_path: Path) -> None:
    result = validate(write_sqlite(clean_agency(), tmp_path / "ops.db"))
    assert result.quarantine.empty
    assert result.rows("shift_requests") == (240, 240, 0)
    assert {"name", "notes", "phone", "unit"}.isdisjoint(result.tables["shift_requests"].columns)


def test_sql_in_names_leaves_the_source_intact(tmp_path: Path) -> None:
    tables = clean_agency()
    _sql_and_html_in_names(tables)
    url = write_sqlite(tables, tmp_path / "ops.db")
    validate(url)
    with sa.create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM facilities").scalar_one() == 3


def test_a_file_that_is_not_csv_stops_clearly(tmp_path: Path) -> None:
    folder = Path(write_folder(clean_agency(), tmp_path / "ops"))
    (folder / "nurses.csv").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ValidationFailed, match=r"nurses\.csv"):
        validate(str(folder))


def test_non_utf8_bytes_stop_with_the_place(tmp_path: Path) -> None:
    folder = Path(write_folder(clean_agency(), tmp_path / "ops"))
    text = (folder / "facilities.csv").read_text()
    (folder / "facilities.csv").write_bytes(
        text.replace("Lakeview", "Lakevi\xe9w").encode("latin-1")
    )
    with pytest.raises(ValidationFailed, match=r"facilities\.csv.*utf8_encoding"):
        validate(str(folder))


def test_unreachable_database_is_a_transient_source_error() -> None:
    with pytest.raises(SourceUnavailable) as info:
        connect_source("postgresql+psycopg://nobody:secret@127.0.0.1:9/agency")
    assert info.value.transient and "secret" not in str(info.value)


def test_a_wrong_database_url_is_explained() -> None:
    with pytest.raises(SourceUnavailable, match="not a valid SQLAlchemy database URL"):
        connect_source("postgress://host/db")
    with pytest.raises(SourceUnavailable):
        open_source("no/such/folder", AS_OF, TZ)


@pytest.fixture()
def postgres_source_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (skipped without a server)."""
    import os
    import uuid

    base = os.environ.get("STAFFCAST_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PostgreSQL not configured: set STAFFCAST_TEST_POSTGRES_URL")
    name = f"source_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def test_a_postgresql_source_validates_like_sqlite(
    postgres_source_url: str, tmp_path: Path
) -> None:
    tables = clean_agency()
    _role_variants(tables)
    set_request(tables, "R00012", shift_hours=0)
    set_request(tables, "R00007", requested_at="yesterday")
    engine = sa.create_engine(postgres_source_url)
    for name, frame in tables.items():
        frame.to_sql(name, engine, index=False)
    engine.dispose()
    from_postgres = validate(postgres_source_url)
    from_sqlite = validate(write_sqlite(tables, tmp_path / "ops.db"))
    assert (
        quarantined(from_postgres)
        == quarantined(from_sqlite)
        == {
            ("shift_requests", "R00012"): "shift_hours_out_of_range",
            ("shift_requests", "R00007"): "requested_at_unparseable",
        }
    )
    assert from_postgres.counts == from_sqlite.counts
