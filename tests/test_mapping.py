"""The source mapping file: its schema, its errors (key path, line, close matches, all at once)
and what it hands on (parse options, the description)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts import suites
from data_contracts.parsing import DEFAULT_OPTIONS, ParseOptions
from staffcast.errors import StaffcastError
from staffcast.mapping import (
    IDENTITY,
    SOURCE_COLUMNS,
    VALUE_TARGETS,
    MappingError,
    SourceMapping,
    TableMapping,
    load_mapping,
    mapping_from_data,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "mapping-example.yaml"


def _load(tmp_path: Path, text: str) -> SourceMapping:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(MappingError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert isinstance(info.value, StaffcastError)
    return message


def test_the_documented_example_loads() -> None:
    mapping = load_mapping(EXAMPLE)
    assert set(mapping.tables) == set(SOURCE_COLUMNS)
    requests = mapping.table("shift_requests")
    assert requests.table == "scheduling.shifts"
    assert requests.source("request_id").column == "shift_id"
    assert requests.source("shift_hours").sql == (
        "EXTRACT(EPOCH FROM end_time - start_time) / 3600"
    )
    assert requests.source("cancelled_at").column == "cancelled_at"  # not listed: own name
    offers = mapping.table("shift_offers")
    assert offers.query is not None and offers.query.startswith("SELECT shift_id, sent_at")
    assert mapping.parse_options("shift_offers").values == {
        "response": {"A": "accepted", "D": "declined", "N": "no_response"}
    }
    assert mapping.origin == str(EXAMPLE)
    mapping.check_kind("database")
    with pytest.raises(MappingError, match=r"tables\.shift_requests\.table needs a database"):
        mapping.check_kind("folder")


def test_the_example_in_the_contract_is_the_example_file() -> None:
    contract = (EXAMPLE.parent / "source-contract.md").read_text(encoding="utf-8")
    body = EXAMPLE.read_text(encoding="utf-8")
    mapping = body[body.index("tables:") :]
    stripped = "\n".join(line.split("  #")[0].rstrip() for line in mapping.splitlines())
    stripped = "\n".join(line for line in stripped.splitlines() if line.strip() != "")
    in_doc = contract.split("Its mapping, `docs/mapping-example.yaml`")[1].split("```yaml\n")[1]
    in_doc = in_doc.split("```")[0]
    assert stripped == "\n".join(line for line in in_doc.splitlines() if line.strip())


def test_identity_is_the_default() -> None:
    assert IDENTITY.tables == {}
    assert IDENTITY.table("nurses").source("hired_on").column == "hired_on"
    assert IDENTITY.parse_options("shift_requests") == DEFAULT_OPTIONS
    assert not IDENTITY.locates("shift_offers")
    assert IDENTITY.describe() == "No source mapping: staffcast's own table and column names."
    assert mapping_from_data(None) == IDENTITY
    assert mapping_from_data({"tables": None}) == IDENTITY


def test_parse_options_and_description(tmp_path: Path) -> None:
    mapping = _load(
        tmp_path,
        """
tables:
  shift_requests:
    table: scheduling.shifts
    columns:
      request_id: shift_id
      shift_hours: {sql: "EXTRACT(EPOCH FROM end_time - start_time) / 3600"}
    values:
      role: {Registered Nurse: rn, RN-ICU: RN, Licensed Practical Nurse: LPN}
      status: {F: Filled, U: unfilled, C: cancelled}
    exclude:
      role: CNA
    formats:
      shift_start: "%m/%d/%Y %I:%M %p"
""",
    )
    options = mapping.parse_options("shift_requests")
    assert isinstance(options, ParseOptions)
    assert options.values["role"] == {
        "Registered Nurse": "RN",  # targets are written canonically
        "RN-ICU": "RN",
        "Licensed Practical Nurse": "LPN",
    }
    assert options.values["status"]["F"] == "filled"
    assert options.exclude == {"role": frozenset({"CNA"})}  # a lone value is a list of one
    assert options.formats == {"shift_start": ("%m/%d/%Y %I:%M %p",)}
    assert mapping.parse_options("nurses") == DEFAULT_OPTIONS

    lines = mapping.describe().splitlines()
    assert lines[0] == (
        "shift_requests <- scheduling.shifts: request_id <- shift_id, shift_hours <- SQL "
        "EXTRACT(EPOCH FROM end_time - start_time) / 3600 (other columns: own names); role "
        "values: Registered Nurse -> RN, RN-ICU -> RN, Licensed Practical Nurse -> LPN; status "
        "values: F -> filled, U -> unfilled, C -> cancelled; excluded: role in CNA; shift_start "
        "formats: %m/%d/%Y %I:%M %p"
    )
    assert lines[1] == "facilities, nurses, shift_offers: staffcast's own table and column names"


def test_codes_stay_text(tmp_path: Path) -> None:
    """YAML 1.1 would read no/yes/on as booleans, 01 as a number and a date as a date."""
    mapping = _load(
        tmp_path,
        """
tables:
  shift_offers:
    values:
      response: {Y: accepted, no: declined, 'off': no_response, 01: accepted, 2: declined}
    exclude:
      request_id: [2025-01-01, 007, true]
""",
    )
    options = mapping.parse_options("shift_offers")
    assert set(options.values["response"]) == {"Y", "no", "off", "01", "2"}
    assert options.exclude["request_id"] == frozenset({"2025-01-01", "007", "true"})


def test_delimiters(tmp_path: Path) -> None:
    for given, expected in (('";"', ";"), ('"\\t"', "\t"), ("tab", "\t"), ("'|'", "|")):
        mapping = _load(tmp_path, f"tables:\n  nurses:\n    delimiter: {given}\n")
        assert mapping.table("nurses").delimiter == expected
    message = _error(tmp_path, "tables:\n  nurses:\n    delimiter: ';;'\n")
    assert "line 3, tables.nurses.delimiter: expected one character" in message


def test_every_problem_at_once_with_lines_and_close_matches(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        """tables:
  shift_request:
    table: x
  shift_requests:
    tabel: scheduling.shifts
    columns:
      shift_strat: start_time
      shift_hours: {sqll: "x"}
      role: [a]
    values:
      role: {Registered Nurse: RNN}
      region: {a: b}
    exclude:
      shift_start: x
    formats:
      role: ["%Y"]
  nurses:
    table: a.b.c
    columns:
      role: job
      role: job2
""",
    )
    assert message.startswith(f"The source mapping '{tmp_path / 'mapping.yaml'}' is not valid: ")
    expected = [
        "line 2, tables.shift_request: 'shift_request' is not a table (close: shift_requests",
        "line 5, tables.shift_requests.tabel: 'tabel' is not a mapping key here (close: table)",
        "line 7, tables.shift_requests.columns.shift_strat: 'shift_strat' is not a column of "
        "shift_requests (close: shift_start",
        "line 8, tables.shift_requests.columns.shift_hours.sqll: 'sqll' is not a mapping key "
        "here (close: sql)",
        'line 9, tables.shift_requests.columns.role: expected a source column name or {sql: "',
        "line 10, tables.shift_requests.values: role: 'Registered Nurse' -> 'RNN' is not a "
        "staffcast role (expected one of RN, LPN)",
        "line 12, tables.shift_requests.values.region: 'region' is not a column of shift_requests",
        "line 14, tables.shift_requests.exclude.shift_start: 'shift_start' is not a text column",
        "line 16, tables.shift_requests.formats.role: 'role' is not a timestamp or date column",
        "line 18, tables.nurses.table: 'a.b.c' is not a table name",
        "line 21, tables.nurses.columns.role: 'role' is given twice",
    ]
    positions = [message.index(part) for part in expected]
    assert positions == sorted(positions)  # in file order
    assert message.endswith("nothing was read or published.")


def test_conflicting_and_misplaced_keys(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        """tables:
  shift_requests:
    table: scheduling.shifts
    query: SELECT 1
""",
    )
    assert "line 2, tables.shift_requests: give one of table, query or file" in message
    message = _error(tmp_path, "tables:\n  nurses:\n    query: DELETE FROM hr.staff\n")
    assert "tables.nurses.query: expected one SQL SELECT statement" in message
    message = _error(
        tmp_path,
        "tables:\n  nurses:\n    values:\n      role: {Registered Nurse: RN, ' registered  nurse':"
        " LPN}\n",
    )
    assert "'Registered Nurse' and ' registered  nurse' are the same source value" in message
    message = _error(
        tmp_path,
        "tables:\n  nurses:\n    values:\n      role: {CNA: RN}\n    exclude:\n      role: [cna]\n",
    )
    assert "'cna' of role is both mapped under values and excluded" in message
    message = _error(tmp_path, "tables:\n  nurses:\n    file: exports/staff.csv\n")
    assert "'exports/staff.csv' is not a file name" in message
    message = _error(tmp_path, "tabels:\n  nurses: {}\n")
    assert "line 1, tabels: 'tabels' is not a mapping key here (close: tables)" in message
    message = _error(tmp_path, "- nurses\n")
    assert "expected a mapping with one key, tables" in message


def test_file_and_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"'.*missing\.yaml' does not exist"):
        load_mapping(tmp_path / "missing.yaml")
    message = _error(tmp_path, "tables:\n  nurses:\n    table: [hr.staff\n")
    assert "is not valid YAML at line 4" in message
    message = _error(tmp_path, "tables:\n  nurses:\n  table: x\n bad: indent\n")
    assert "is not valid YAML at line" in message
    (tmp_path / "latin1.yaml").write_bytes(
        "tables:\n  nurses: {table: caf\xe9}\n".encode("latin-1")
    )
    with pytest.raises(MappingError, match="is not UTF-8"):
        load_mapping(tmp_path / "latin1.yaml")


def test_models_built_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match="'shift_strat' is not a column of shift_requests"):
        SourceMapping(tables={"shift_requests": TableMapping(columns={"shift_strat": "x"})})
    with pytest.raises(MappingError, match=r"tables\.nurses\.file names a file, but the source"):
        mapping_from_data({"tables": {"nurses": {"file": "staff.csv"}}}).check_kind("database")


def test_value_targets_are_the_contract_sets() -> None:
    assert VALUE_TARGETS["role"] == suites.ROLES
    assert VALUE_TARGETS["status"] == suites.REQUEST_STATUSES
    assert VALUE_TARGETS["response"] == suites.OFFER_RESPONSES
