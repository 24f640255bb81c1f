"""Bounded memory: the contracts read shift_requests and shift_offers chunk by chunk, and the
rules mean the same whatever the chunk size (issue 13).

The small demo agency is made messy (copies of requests far from their original, identical
and conflicting; unreadable shift_start values; offers of quarantined requests), then validated
once in one chunk and once in chunks of a few hundred rows: every count, quarantine entry,
outcome, day of demand, booking, offer and impact row must be the same.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.impact import UsedStats
from data_contracts.validate import ValidationResult, validate_with_settings
from models.demand import demand_from_counts
from staffcast.errors import ValidationFailed
from staffcast.settings import Settings
from staffcast.source import STREAMED_TABLES, StreamedTable, table_chunks
from staffcast.source_files import StreamedFile, open_source
from tests.conftest import AS_OF


@pytest.fixture(scope="module")
def messy_agency(small_agency, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("messy") / "ops.db"
    shutil.copy(small_agency.path, path)
    with sqlite3.connect(path) as con:
        columns = [r[1] for r in con.execute("PRAGMA table_info(shift_requests)")]
        listed = ", ".join(columns)
        # Identical copies and copies that disagree, appended after every original.
        con.execute(
            f"INSERT INTO shift_requests ({listed}) SELECT {listed} FROM shift_requests "
            "WHERE rowid % 211 = 3"
        )
        changed = ", ".join("shift_hours + 1" if c == "shift_hours" else c for c in columns)
        con.execute(
            f"INSERT INTO shift_requests ({listed}) SELECT {changed} FROM shift_requests "
            "WHERE rowid % 199 = 5"
        )
        con.execute("UPDATE shift_requests SET shift_start = 'see notes' WHERE rowid % 101 = 1")
    return path


def _validate(path: Path, chunk_rows: int | None) -> ValidationResult:
    settings = Settings()
    extract = open_source(f"sqlite:///{path}", AS_OF, settings.agency_timezone)
    if chunk_rows is not None:
        for name, table in extract.tables.items():
            if isinstance(table, StreamedTable):
                extract.tables[name] = replace(table, chunk_rows=chunk_rows)
    return validate_with_settings(extract, settings)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order, every value as text (the same table, whatever the chunk order)."""
    plain = frame.astype(str)
    return plain.sort_values(list(plain.columns), ignore_index=True)


def test_rules_and_aggregates_are_the_same_in_any_chunk_size(messy_agency: Path) -> None:
    whole = _validate(messy_agency, None)
    chunked = _validate(messy_agency, 997)

    assert whole.counts == chunked.counts
    requests = whole.counts["shift_requests"]
    assert requests["extracted"] == requests["used"] + requests["quarantined"]
    failed = {(o.table, o.rule): o.failed_rows for o in whole.outcomes}
    assert failed == {(o.table, o.rule): o.failed_rows for o in chunked.outcomes}
    assert failed[("shift_requests", "duplicate_request_id")] > 0
    assert failed[("shift_requests", "shift_start_unparseable")] > 0
    pd.testing.assert_frame_equal(_sorted(whole.quarantine), _sorted(chunked.quarantine))
    pd.testing.assert_frame_equal(_sorted(whole.impact.impact), _sorted(chunked.impact.impact))
    pd.testing.assert_frame_equal(_sorted(whole.offers), _sorted(chunked.offers))
    assert len(whole.offers) > 0

    facilities = whole.tables["facilities"]
    assert whole.demand is not None and chunked.demand is not None
    history_whole, booked_whole = demand_from_counts(whole.demand, facilities, AS_OF)
    history_chunked, booked_chunked = demand_from_counts(chunked.demand, facilities, AS_OF)
    pd.testing.assert_frame_equal(history_whole, history_chunked)
    pd.testing.assert_frame_equal(booked_whole, booked_chunked)
    assert history_whole["demand"].sum() > 0 and booked_whole["booked"].sum() > 0


def test_copies_in_different_chunks_are_told_apart(messy_agency: Path) -> None:
    """A copy hundreds of chunks after its original: identical copies are set aside (one is
    used), copies that disagree are all quarantined, exactly as when read in one piece."""
    result = _validate(messy_agency, 1999)
    duplicates = result.quarantine[result.quarantine["rule"] == "duplicate_request_id"]
    details = duplicates["detail"]
    assert details.str.contains("identical copy").any()
    assert details.str.contains("conflicting copy").any()
    conflicting = duplicates[details.str.contains("conflicting copy")]
    # Every copy of a request whose copies disagree is quarantined (the original too).
    assert (conflicting["source_key"].value_counts() >= 2).all()


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_a_folder_of_files_is_streamed_like_the_database(
    messy_agency: Path, tmp_path: Path, form: str
) -> None:
    """shift_requests and shift_offers files are read a few blocks at a time (never whole);
    the contracts give what the database gives read in one piece."""
    folder = tmp_path / "export"
    folder.mkdir()
    with sqlite3.connect(messy_agency) as con:
        for table in ("facilities", "shift_requests", "nurses", "shift_offers"):
            frame = pd.read_sql(f"SELECT * FROM {table}", con)
            if form == "csv":
                frame.to_csv(folder / f"{table}.csv", index=False)
            else:
                frame.to_parquet(folder / f"{table}.parquet", index=False, row_group_size=5000)
    settings = Settings()
    extract = open_source(str(folder), AS_OF, settings.agency_timezone)
    for name in STREAMED_TABLES:
        table = extract.tables[name]
        assert isinstance(table, StreamedFile)
        extract.tables[name] = replace(table, chunk_rows=2999, block_bytes=64 << 10)
    chunks = list(table_chunks(extract.tables["shift_requests"]))
    assert len(chunks) > 3 and max(len(c) for c in chunks) < 2999 + 3000
    streamed = validate_with_settings(extract, settings)
    whole = _validate(messy_agency, None)
    assert whole.counts == streamed.counts
    pd.testing.assert_frame_equal(_sorted(whole.quarantine), _sorted(streamed.quarantine))
    pd.testing.assert_frame_equal(_sorted(whole.offers), _sorted(streamed.offers))
    assert whole.demand is not None and streamed.demand is not None
    np.testing.assert_array_equal(whole.demand.demand, streamed.demand.demand)


def test_a_broken_row_far_into_a_streamed_file_stops_when_the_source_is_read(
    messy_agency: Path, tmp_path: Path
) -> None:
    """The file is read through once when the source is read, so a malformed row past the
    first block stops the run there, with its row number, as a whole read would."""
    folder = tmp_path / "export"
    folder.mkdir()
    with sqlite3.connect(messy_agency) as con:
        for table in ("facilities", "shift_requests", "nurses"):
            pd.read_sql(f"SELECT * FROM {table}", con).to_csv(folder / f"{table}.csv", index=False)
    path = folder / "shift_requests.csv"
    lines = path.read_text().splitlines()
    assert len(lines) > 20_000
    lines.insert(20_000, "R-broken,F001")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationFailed) as info:
        open_source(str(folder), AS_OF, Settings().agency_timezone)
    message = str(info.value)
    assert "shift_requests.csv" in message and "rule: file_format" in message
    assert "row 20001" in message and "has 2 fields" in message


def test_used_statistics_medians_match_pandas_to_the_bin() -> None:
    rng = np.random.default_rng(5)
    n = 5000
    start = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 400, n), "D")
    lead = pd.to_timedelta(rng.gamma(2.0, 6.0, n), "D")
    used = pd.DataFrame(
        {
            "facility_id": pd.Categorical(rng.choice(["A", "B", "C"], n)),
            "role": pd.Categorical(rng.choice(["RN", "LPN"], n)),
            "shift_start": start,
            "requested_at": start - lead,
            "shift_hours": rng.choice([8.0, 10.0, 12.0], n),
            "status": "filled",
            "cancelled_at": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]"),
        }
    )
    zones = pd.Series("America/Chicago", index=["A", "B", "C"])
    stats = UsedStats(zones, AS_OF, pd.Timestamp(AS_OF, tz="UTC"), 24.0, 28)
    for part in np.array_split(np.arange(n), 7):  # chunk by chunk
        stats.add(used.iloc[part])
    typical = stats.typical().sort_index()
    lead_days = (used["shift_start"] - used["requested_at"]) / pd.Timedelta(days=1)
    exact = (
        used.assign(lead_days=lead_days, hours=used["shift_hours"])
        .groupby([used["facility_id"].astype(str), used["role"].astype(str)])[
            ["lead_days", "hours"]
        ]
        .median()
        .sort_index()
    )
    assert np.abs(typical["lead_days"].to_numpy() - exact["lead_days"].to_numpy()).max() <= 0.125
    np.testing.assert_array_equal(typical["hours"].to_numpy(), exact["hours"].to_numpy())
