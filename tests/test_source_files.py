"""Folder sources: CSV and Parquet files validate exactly like the same rows in a database, and
every file problem stops the run with the file, the rule and an example."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.validate import ValidationResult, validate_extract
from staffcast.errors import SourceUnavailable, ValidationFailed
from staffcast.mapping import SourceMapping, mapping_from_data
from staffcast.source import SOURCE_COLUMNS, RawTable, table_chunks
from staffcast.source_files import StreamedFile, open_source, read_folder

TZ = "America/Chicago"
AS_OF = date(2025, 11, 3)
TABLES = ("facilities", "shift_requests", "nurses", "shift_offers")
NEVER_READ = {"name", "phone", "notes", "unit"}


@pytest.fixture(scope="module")
def source_frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The demo agency's tables (with its built-in bad rows), as the database stores them.

    Names and notes carry commas, quotes, line breaks, non-ASCII letters, SQL and HTML: they
    must neither be read nor break the CSV parser.
    """
    from staffcast.demo_agency import build_demo_agency

    path = tmp_path_factory.mktemp("agency") / "ops.db"
    build_demo_agency(path, AS_OF, facilities=4, years=0.3, seed=1)
    with sqlite3.connect(path) as con:
        frames = {t: pd.read_sql(f"SELECT * FROM {t}", con) for t in TABLES}
    notes = frames["shift_requests"]["notes"].astype(object)
    notes.iloc[:4] = [
        'call Ann, then "Bob"\nsecond line',
        "'); DROP TABLE facilities;--",
        "<script>alert(1)</script>",
        "José Müller, 555-0100",
    ]
    frames["shift_requests"]["notes"] = notes
    frames["facilities"].loc[0, "name"] = 'Lakeview, "North"\n<b>Campus</b>'
    return frames


def _write(folder: Path, frames: dict[str, pd.DataFrame], form: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table, frame in frames.items():
        if form == "csv":
            frame.to_csv(folder / f"{table}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{table}.parquet", index=False)
    return folder


def _database(path: Path, frames: dict[str, pd.DataFrame]) -> str:
    with sqlite3.connect(path) as con:
        for table, frame in frames.items():
            frame.to_sql(table, con, index=False)
    return f"sqlite:///{path}"


def _frame(table: RawTable) -> pd.DataFrame:
    """A table as one frame (shift_requests and shift_offers files are read in chunks)."""
    return pd.concat(list(table_chunks(table)), ignore_index=True)


def _validate(source: str) -> ValidationResult:
    return validate_extract(open_source(source, AS_OF, TZ), TZ, 0.5, 14)


def _sorted_quarantine(result: ValidationResult) -> pd.DataFrame:
    return result.quarantine.sort_values(["source_table", "source_key", "rule"]).reset_index(
        drop=True
    )


def test_csv_and_parquet_folders_validate_like_the_database(
    tmp_path: Path, source_frames: dict[str, pd.DataFrame]
) -> None:
    expected = _validate(_database(tmp_path / "ops.db", source_frames))
    assert expected.counts["shift_requests"]["quarantined"] > 0  # the demo's bad rows

    for form in ("csv", "parquet"):
        folder = _write(tmp_path / form, source_frames, form)
        extract = read_folder(folder, AS_OF, TZ)
        assert isinstance(extract.tables["shift_requests"], StreamedFile)
        for table in TABLES:
            assert list(_frame(extract.tables[table]).columns) == list(SOURCE_COLUMNS[table])
            assert not NEVER_READ & set(_frame(extract.tables[table]).columns)
        assert extract.as_of == AS_OF and str(extract.as_of_utc) == "2025-11-03 06:00:00+00:00"

        result = validate_extract(extract, TZ, 0.5, 14)
        assert result.counts == expected.counts, form
        pd.testing.assert_frame_equal(_sorted_quarantine(result), _sorted_quarantine(expected))
        for table in TABLES:
            pd.testing.assert_frame_equal(
                result.tables[table].reset_index(drop=True),
                expected.tables[table].reset_index(drop=True),
                check_dtype=False,
                obj=f"{form} {table}",
            )


def test_csv_values_are_text_and_empty_fields_are_missing(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "facilities.csv").write_bytes(
        "\ufefffacility_id , facility_type,region,timezone,active_from,active_to,name\n"
        'F001,hospital,NA,America/Chicago,2020-01-01,,"Müller, ""A"""\n'.encode()
    )
    (folder / "shift_requests.csv").write_text(
        ",".join(SOURCE_COLUMNS["shift_requests"]) + "\n"
        "007,F001,RN,2025-11-01T07:00:00,12,2025-10-01T00:00:00Z,filled,\n"
    )
    (folder / "nurses.csv").write_text(",".join(SOURCE_COLUMNS["nurses"]) + "\n")

    tables = read_folder(folder, AS_OF, TZ).tables
    facility = tables["facilities"].iloc[0]
    assert facility["facility_id"] == "F001"  # BOM and blanks around header names are fine
    assert facility["region"] == "NA"  # text, not a missing value
    assert pd.isna(facility["active_to"])  # empty field -> missing
    assert _frame(tables["shift_requests"]).iloc[0]["request_id"] == "007"  # not the number 7
    assert len(tables["nurses"]) == 0
    assert list(tables["shift_offers"].columns) == list(SOURCE_COLUMNS["shift_offers"])
    assert len(tables["shift_offers"]) == 0  # optional table: absent is fine


def test_typed_parquet_columns_are_parsed_like_text(
    tmp_path: Path, source_frames: dict[str, pd.DataFrame]
) -> None:
    frames = {t: f.copy() for t, f in source_frames.items()}
    requests = frames["shift_requests"]
    requests["requested_at"] = pd.to_datetime(requests["requested_at"], utc=True)
    frames["nurses"]["hired_on"] = pd.to_datetime(frames["nurses"]["hired_on"]).dt.date
    frames["nurses"]["on_call"] = frames["nurses"]["on_call"].astype(bool)
    typed = _validate(str(_write(tmp_path / "typed", frames, "parquet")))
    text = _validate(str(_write(tmp_path / "text", source_frames, "csv")))
    assert typed.counts == text.counts
    pd.testing.assert_frame_equal(_sorted_quarantine(typed), _sorted_quarantine(text))


@pytest.fixture()
def csv_folder(tmp_path: Path, source_frames: dict[str, pd.DataFrame]) -> Path:
    return _write(tmp_path / "src", source_frames, "csv")


def _stop(folder: Path) -> str:
    with pytest.raises(ValidationFailed) as info:
        read_folder(folder, AS_OF, TZ)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_missing_required_table_lists_the_files_there(csv_folder: Path) -> None:
    (csv_folder / "nurses.csv").rename(csv_folder / "Nurses.xlsx")
    message = _stop(csv_folder)
    assert "rule: required_tables" in message
    assert "'nurses'" in message and "nurses.csv or nurses.parquet" in message
    assert "Nurses.xlsx" in message and "facilities.csv" in message


def test_a_table_in_both_forms_is_refused(
    csv_folder: Path, source_frames: dict[str, pd.DataFrame]
) -> None:
    source_frames["facilities"].to_parquet(csv_folder / "facilities.parquet")
    message = _stop(csv_folder)
    assert "rule: one_file_per_table" in message
    assert "facilities.csv and facilities.parquet" in message


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_missing_column_names_file_rule_and_columns(
    tmp_path: Path, source_frames: dict[str, pd.DataFrame], form: str
) -> None:
    frames = dict(source_frames)
    frames["shift_requests"] = frames["shift_requests"].drop(columns=["shift_hours"])
    message = _stop(_write(tmp_path / form, frames, form))
    assert "rule: required_columns" in message
    assert f"shift_requests.{form}" in message
    assert "missing required column(s) shift_hours" in message
    assert "It has: request_id, facility_id" in message


BAD_FILES = {
    "binary_garbage": (bytes(range(256)) * 8, "binary data"),
    "empty_file": (b"", "empty"),
    "zip_or_xlsx": (b"PK\x03\x04" + b"\x00" * 100, "ZIP archive"),
    "gzip": (b"\x1f\x8b\x08" + b"\x00" * 100, "gzip-compressed"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_file_that_is_not_csv(csv_folder: Path, case: str) -> None:
    content, words = BAD_FILES[case]
    (csv_folder / "facilities.csv").write_bytes(content)
    message = _stop(csv_folder)
    assert "rule: file_format" in message
    assert "facilities.csv" in message and words in message


def test_parquet_file_named_csv(csv_folder: Path, source_frames: dict[str, pd.DataFrame]) -> None:
    source_frames["shift_requests"].to_parquet(csv_folder / "shift_requests.csv")
    message = _stop(csv_folder)
    assert "rule: file_format" in message and "shift_requests.csv" in message
    assert "a Parquet file" in message and "rename it to shift_requests.parquet" in message


def test_csv_file_named_parquet(csv_folder: Path) -> None:
    (csv_folder / "nurses.csv").rename(csv_folder / "nurses.parquet")
    message = _stop(csv_folder)
    assert "rule: file_format" in message and "nurses.parquet" in message
    assert "not a valid Parquet file" in message and "name it nurses.csv" in message


def test_row_with_wrong_number_of_fields(csv_folder: Path) -> None:
    path = csv_folder / "nurses.csv"
    lines = path.read_text().splitlines()
    lines.insert(3, "N99999,Ann Smith,555-0100,RN")  # row 4, counting the header as row 1
    path.write_text("\n".join(lines) + "\n")
    message = _stop(csv_folder)
    assert "rule: file_format" in message and "nurses.csv" in message
    assert "row 4" in message and "has 4 fields where the header has 8" in message
    assert "Ann Smith" not in message  # the row's text (names, phones) is never echoed


def test_csv_that_is_not_utf8_names_line_and_offset(csv_folder: Path) -> None:
    path = csv_folder / "facilities.csv"
    frame = pd.read_csv(path)
    frame.loc[2, "region"] = "Montréal"
    path.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    data = path.read_bytes()
    offset = data.index(b"\xe9")
    line = data[:offset].count(b"\n") + 1

    message = _stop(csv_folder)
    assert "rule: utf8_encoding" in message and "facilities.csv" in message
    assert f"line {line} at byte offset {offset}" in message and "0xE9" in message
    assert "does not guess encodings" in message


def test_utf16_csv_is_an_encoding_stop(csv_folder: Path) -> None:
    path = csv_folder / "nurses.csv"
    path.write_bytes(path.read_text().encode("utf-16"))
    message = _stop(csv_folder)
    assert "rule: utf8_encoding" in message and "UTF-16" in message and "nurses.csv" in message


def test_open_source_refuses_what_is_neither_folder_nor_url(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="neither an existing folder nor a database URL"):
        open_source(str(tmp_path / "missing"), AS_OF, TZ)
    (tmp_path / "ops.db").write_bytes(b"")
    with pytest.raises(SourceUnavailable, match="is a file, not a folder"):
        open_source(str(tmp_path / "ops.db"), AS_OF, TZ)
    with pytest.raises(SourceUnavailable, match="does not exist"):
        open_source(f"sqlite:///{tmp_path / 'none.db'}", AS_OF, TZ)


# --- through a source mapping: file names, headers, delimiters ---------------------------------

AGENCY_FILES = {
    "facilities": "Sites Export.csv",
    "shift_requests": "shifts.txt",
    "nurses": "Staff.CSV",
    "shift_offers": "offers.tsv",
}
AGENCY_HEADERS = {
    "facilities": {"facility_id": " Site Code ", "timezone": "TZ"},
    "shift_requests": {"request_id": "Shift #", "role": "Job Title", "requested_at": "Created"},
    "nurses": {"nurse_id": "Employee ID", "hired_on": "Hire Date"},
    "shift_offers": {"request_id": "Shift #"},
}


def _agency_folder(
    folder: Path, frames: dict[str, pd.DataFrame], delimiters: dict[str, str]
) -> Path:
    """The tables under the agency's own file names and headers (other case, blanks around
    staffcast's names where not renamed), each with its own delimiter."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, frame in frames.items():
        renamed = AGENCY_HEADERS[table]
        headers = {
            c: renamed.get(c, f" {c.upper()} " if i % 2 else c.title())
            for i, c in enumerate(frame.columns)
        }
        frame.rename(columns=headers).to_csv(
            folder / AGENCY_FILES[table], index=False, sep=delimiters[table]
        )
    return folder


def _agency_mapping(**extra: dict[str, object]) -> SourceMapping:
    tables: dict[str, dict[str, object]] = {
        table: {
            "file": AGENCY_FILES[table],
            "columns": {c: h.strip() for c, h in AGENCY_HEADERS[table].items()},
            **extra.get(table, {}),
        }
        for table in TABLES
    }
    return mapping_from_data({"tables": tables})


def test_a_mapped_folder_validates_like_the_plain_one(
    tmp_path: Path, source_frames: dict[str, pd.DataFrame]
) -> None:
    delimiters = {"facilities": ";", "shift_requests": "\t", "nurses": "|", "shift_offers": ","}
    expected = _validate(str(_write(tmp_path / "plain", source_frames, "csv")))
    folder = _agency_folder(tmp_path / "agency", source_frames, delimiters)
    mapping = _agency_mapping()

    extract = read_folder(folder, AS_OF, TZ, mapping)
    for table in TABLES:
        assert list(_frame(extract.tables[table]).columns) == list(SOURCE_COLUMNS[table])
    assert "facilities <- Sites Export.csv (semicolon-separated, sniffed)" in extract.described
    assert "shift_requests <- shifts.txt (tab-separated, sniffed)" in extract.described
    assert "nurses <- Staff.CSV (pipe-separated, sniffed)" in extract.described
    assert extract.described.startswith(mapping.describe())
    result = validate_extract(extract, TZ, 0.5, 14)
    assert result.counts == expected.counts
    pd.testing.assert_frame_equal(_sorted_quarantine(result), _sorted_quarantine(expected))


def test_headers_match_without_case_and_blanks(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    columns = SOURCE_COLUMNS["nurses"]
    header = ",".join(f" {c.upper()} " if i % 2 else f"{c.title()} " for i, c in enumerate(columns))
    (folder / "nurses.csv").write_text(header + "\nN1,RN,North,1,2020-01-01,\n")
    (folder / "facilities.csv").write_text(",".join(SOURCE_COLUMNS["facilities"]) + "\n")
    (folder / "shift_requests.csv").write_text(",".join(SOURCE_COLUMNS["shift_requests"]) + "\n")
    nurses = read_folder(folder, AS_OF, TZ).tables["nurses"]
    assert list(nurses.columns) == list(columns)
    assert nurses.iloc[0]["nurse_id"] == "N1" and nurses.iloc[0]["on_call"] == "1"


def test_the_mapping_delimiter_overrides_sniffing(
    tmp_path: Path, source_frames: dict[str, pd.DataFrame]
) -> None:
    delimiters = dict.fromkeys(TABLES, ";")
    folder = _agency_folder(tmp_path / "agency", source_frames, delimiters)
    given = {table: {"delimiter": ";"} for table in TABLES}
    extract = read_folder(folder, AS_OF, TZ, _agency_mapping(**given))
    assert "shift_requests <- shifts.txt (semicolon-separated, from the mapping)" in (
        extract.described
    )
    assert len(_frame(extract.tables["shift_requests"])) == len(source_frames["shift_requests"])

    wrong = {"nurses": {"delimiter": ","}}  # a wrong delimiter: the columns are not found
    with pytest.raises(ValidationFailed, match=r"'nurses' .*is missing required column"):
        read_folder(folder, AS_OF, TZ, _agency_mapping(**wrong))


def test_an_ambiguous_delimiter_is_not_guessed(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    for table in ("facilities", "shift_requests"):
        (folder / f"{table}.csv").write_text(",".join(SOURCE_COLUMNS[table]) + "\n")
    (folder / "nurses.csv").write_text("a;b,c;d\n1;2,3;4\n")  # 3 fields by ';', 2 by ','
    (folder / "shift_offers.csv").write_text("a;b,c\n1;2,3\n")  # 2 fields by either
    message = _stop(folder)
    assert "shift_offers.csv" in message and "rule: file_format" in message
    assert "splits as well by comma (2 fields) and semicolon (2 fields)" in message
    assert "tables.shift_offers.delimiter" in message


def test_every_missing_file_and_column_at_once(
    tmp_path: Path, source_frames: dict[str, pd.DataFrame]
) -> None:
    delimiters = dict.fromkeys(TABLES, ",")
    folder = _agency_folder(tmp_path / "agency", source_frames, delimiters)
    (folder / "Staff.CSV").rename(folder / "staff.csv")
    mapping = _agency_mapping(
        shift_requests={
            "columns": {
                "request_id": "Shift Number",
                "role": "Job Title",
                "requested_at": "Created",
            }
        }
    )
    message = _stop_with(folder, mapping)
    assert message.startswith("Source table 'shift_requests' (file ")
    assert "is missing required column(s) request_id (rule: required_columns)" in message
    assert (
        "request_id is mapped to 'Shift Number', which it does not have (fix "
        "tables.shift_requests.columns.request_id)"
    ) in message
    assert "Source table 'nurses' has no file 'Staff.CSV'" in message
    assert "(rule: required_tables): close: 'staff.csv'" in message
    assert "fix tables.nurses.file" in message
    assert "It has: Shift #, FACILITY_ID, Job Title" in message  # the file's own headers


def test_a_named_optional_file_must_exist(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    for table in ("facilities", "shift_requests", "nurses"):
        (folder / f"{table}.csv").write_text(",".join(SOURCE_COLUMNS[table]) + "\n")
    mapping = mapping_from_data({"tables": {"shift_offers": {"file": "offers.csv"}}})
    message = _stop_with(folder, mapping)
    assert "Source table 'shift_offers' has no file 'offers.csv'" in message


def test_parquet_under_mapped_names_keeps_its_types(
    tmp_path: Path, source_frames: dict[str, pd.DataFrame]
) -> None:
    folder = _write(tmp_path / "typed", source_frames, "parquet")
    requests = source_frames["shift_requests"].copy()
    requests["requested_at"] = pd.to_datetime(requests["requested_at"], utc=True)
    requests.rename(columns={"request_id": "Shift_ID ", "requested_at": "CREATED"}).to_parquet(
        folder / "Shifts.parquet", index=False
    )
    (folder / "shift_requests.parquet").unlink()
    mapping = mapping_from_data(
        {
            "tables": {
                "shift_requests": {
                    "file": "Shifts.parquet",
                    "columns": {"request_id": "shift_id", "requested_at": "created"},
                }
            }
        }
    )
    frame = _frame(read_folder(folder, AS_OF, TZ, mapping).tables["shift_requests"])
    assert list(frame.columns) == list(SOURCE_COLUMNS["shift_requests"])
    assert isinstance(frame["requested_at"].dtype, pd.DatetimeTZDtype)


def _stop_with(folder: Path, mapping: SourceMapping) -> str:
    with pytest.raises(ValidationFailed) as info:
        read_folder(folder, AS_OF, TZ, mapping)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message
