"""`staffcast validate` and the validation summary: text, markdown, reporting database, flow."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from data_contracts.summary import (
    SUMMARY_COLUMNS,
    format_summary,
    markdown_summary,
    summary_frame,
)
from data_contracts.validate import RuleOutcome, validate_extract
from reports.publish import RunCounts, mark_failed, publish_run, record_validation, start_run
from reports.schema import current_view, reporting_engine, table
from staffcast.cli import main
from staffcast.source_files import read_folder
from tests import test_publish

TZ = "America/Chicago"
AS_OF = date(2025, 11, 3)
TABLES = ("facilities", "shift_requests", "nurses", "shift_offers")

reporting_db = test_publish.engine  # the reporting database fixture: SQLite, and PostgreSQL if set


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from staffcast.demo_agency import build_demo_agency

    path = tmp_path_factory.mktemp("agency") / "ops.db"
    return build_demo_agency(path, AS_OF, facilities=4, years=0.3, seed=1)


@pytest.fixture(scope="module")
def frames(agency) -> dict[str, pd.DataFrame]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(agency.path) as con:
        return {t: pd.read_sql(f"SELECT * FROM {t}", con) for t in TABLES}


def _folder(path: Path, frames: dict[str, pd.DataFrame]) -> str:
    path.mkdir(parents=True)
    for name, frame in frames.items():
        frame.to_csv(path / f"{name}.csv", index=False)
    return str(path)


def _validate(folder: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", "--source", folder, "--as-of", AS_OF.isoformat()])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_clean_folder_is_usable(
    tmp_path: Path, agency, frames, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    bad = {key for keys in agency.bad_requests.values() for key in keys}
    requests = frames["shift_requests"]
    clean = {**frames, "shift_requests": requests[~requests["request_id"].isin(bad)]}
    code, out, err = _validate(_folder(tmp_path / "clean", clean), capsys)

    assert code == 0 and err == ""
    assert "Rows per table (extracted = used + quarantined + excluded):" in out
    n = len(clean["shift_requests"])
    assert f"shift_requests  {n:>10,} = {n:>10,} +        0 +        0" in out
    assert "Mapping: none" in out and "Sample values per column" in out
    assert "Demand lost to quarantined rows: none." in out
    assert "facilities" in out and "nurses" in out and "shift_offers" in out
    assert "Rules broken: none (" in out
    assert out.rstrip().endswith("Result: usable")


def test_bad_rows_are_listed_with_counts_and_examples(
    tmp_path: Path, agency, frames, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = _validate(_folder(tmp_path / "bad", frames), capsys)

    assert code == 0  # quarantined rows do not stop the run
    extracted = len(frames["shift_requests"])
    quarantined = sum(len(keys) for keys in agency.bad_requests.values())
    assert f"{extracted:>10,} = {extracted - quarantined:>10,} + {quarantined:>8,} +" in out
    assert "Demand lost to quarantined rows, last 28 days before as_of" in out
    section = out[out.index("Rules broken") : out.index("Result:")]
    assert "  shift_requests:" in section
    assert "- role_not_in_set (row rule): 2 rows. The role is one of RN, LPN." in section
    assert "Example: R0001921: role=CNA" in section
    assert "- unknown_facility (row rule): 2 rows." in section
    assert "facility_id=F999" in section
    assert out.rstrip().endswith("Result: usable")


def test_missing_column_stops_with_table_rule_and_example(
    tmp_path: Path, frames, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    broken = {**frames, "shift_requests": frames["shift_requests"].drop(columns="shift_hours")}
    code, out, err = _validate(_folder(tmp_path / "stop", broken), capsys)

    assert code == 1
    assert "- required_columns (batch rule): stopped the run" in out
    stop = out[out.index("Result: STOPPED — ") :]
    assert "Source table 'shift_requests'" in stop and "shift_requests.csv" in stop
    assert "shift_hours" in stop and "It has: request_id, facility_id" in stop  # the example
    assert err.startswith("staffcast: Source table 'shift_requests'")
    assert err.count("\n") == 1  # one paragraph


def test_too_many_quarantined_rows_stop_the_run(
    tmp_path: Path, frames, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    requests = frames["shift_requests"].copy()
    requests.loc[requests.index % 3 == 0, "role"] = "CNA"
    code, out, err = _validate(
        _folder(tmp_path / "share", {**frames, "shift_requests": requests}), capsys
    )
    assert code == 1
    assert "Result: STOPPED — " in out and "max_quarantine_share" in out
    assert "role_not_in_set" in out and "role=CNA" in out
    assert "staffcast: " in err and "max_quarantine_share" in err


def test_unreachable_source_is_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _validate(str(tmp_path / "no-such-folder"), capsys)
    assert code == 3 and out == ""
    assert err.startswith("staffcast: The source") and err.count("\n") == 1
    code, out, err = _validate(f"sqlite:///{tmp_path / 'none.db'}", capsys)
    assert code == 3 and "does not exist" in err


def test_source_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    assert "--source" in capsys.readouterr().err


def test_validate_runs_without_prefect(tmp_path: Path, frames) -> None:  # type: ignore[no-untyped-def]
    # In a child process: blocking Prefect's modules here would break the background threads
    # of the session's Prefect harness.
    folder = _folder(tmp_path / "src", frames)
    script = (
        "import sys\n"
        "for name in ('prefect', 'flows', 'flows.weekly_forecast'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "from staffcast.cli import main\n"
        f"sys.exit(main(['validate', '--source', {folder!r}, '--as-of', '{AS_OF}']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Result: usable" in done.stdout
    assert "prefect" not in done.stderr.lower()


# --- the summary's forms --------------------------------------------------------------------


OUTCOMES = [
    RuleOutcome("facilities", "timezone_valid", "row", "The zone is an IANA zone.", 0, ""),
    RuleOutcome(
        "shift_requests",
        "role_not_in_set",
        "row",
        "The role is one of RN, LPN.",
        3,
        "role=RN|LPN\nnext line",
    ),
]
COUNTS = {
    "facilities": {"extracted": 4, "used": 4, "quarantined": 0},
    "shift_requests": {"extracted": 100, "used": 97, "quarantined": 3},
}


def test_summary_frame_has_every_rule_evaluated() -> None:
    frame = summary_frame(OUTCOMES, COUNTS)
    assert list(frame.columns) == SUMMARY_COLUMNS
    assert frame["rule"].tolist() == ["timezone_valid", "role_not_in_set"]
    assert frame["failed_rows"].tolist() == [0, 3]  # passed rules are kept, with 0
    assert pd.isna(frame["example"].iloc[0])

    stopped = summary_frame(
        OUTCOMES, COUNTS, stopped="Source table 'nurses' is missing ... (rule: required_columns)."
    )
    last = stopped.iloc[-1]
    assert (last["source_table"], last["rule"], last["level"]) == (
        "nurses",
        "required_columns",
        "batch",
    )


def test_markdown_escapes_pipes_and_line_breaks_plain_text_does_not() -> None:
    markdown = markdown_summary(OUTCOMES, COUNTS, stopped="Stopped | here\nand there")
    assert "| shift_requests | 100 | 97 | 3 |" in markdown
    assert "role=RN\\|LPN next line" in markdown
    assert markdown.rstrip().endswith("**Result: STOPPED** — Stopped \\| here and there")
    text = format_summary(OUTCOMES, COUNTS)
    assert "Example: role=RN|LPN\nnext line" in text
    assert "Rules broken (1 of 2 checked):" in text


# --- the reporting database -----------------------------------------------------------------


def _rows(engine: sa.Engine, selectable: sa.FromClause) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        query = sa.select(selectable.c.run_id, selectable.c.rule, selectable.c.failed_rows)
        return sorted(tuple(row) for row in conn.execute(query))


def test_failed_runs_keep_their_summary_out_of_the_current_view(
    tmp_path: Path,
    frames,  # type: ignore[no-untyped-def]
    reporting_db: sa.Engine,
) -> None:
    engine = reporting_db
    extract = read_folder(Path(_folder(tmp_path / "src", frames)), AS_OF, TZ)
    result = validate_extract(extract, TZ, 0.5, 14)
    published = start_run(engine, AS_OF, {}, None, "test", 182)
    extracted, used, quarantined = result.rows("shift_requests")
    publish_run(
        engine,
        published,
        {"validation_result": summary_frame(result.outcomes, result.counts)},
        RunCounts(extracted, used, quarantined),
    )

    failed = start_run(engine, AS_OF + timedelta(days=7), {}, None, "test", 182)
    message = "Source table 'shift_requests' broke the batch rule 'recent_requests' (...)"
    record_validation(engine, failed, summary_frame(result.outcomes, result.counts, message))
    record_validation(engine, failed, summary_frame([], {}, message))  # replaces, not adds
    mark_failed(engine, failed, message)

    stored = _rows(engine, table("validation_result"))
    current = _rows(engine, current_view("validation_result"))
    assert [r for r in stored if r[0] == failed] == [(failed, "recent_requests", 0)]
    assert {r[0] for r in current} == {published}
    assert len(current) == len(result.outcomes)
    assert (published, "role_not_in_set", 2) in current

    record_validation(engine, "no-such-run", summary_frame([], {}, message))  # logged, no raise
    record_validation(engine, failed, pd.DataFrame({"rule": ["x"]}))  # bad frame: logged
    assert _rows(engine, table("validation_result")) == stored


# --- the weekly flow ------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_flow_on_a_folder_that_stops_records_its_summary(
    tmp_path: Path, frames, staffcast_home: Path
) -> None:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.weekly_forecast import weekly_forecast
    from staffcast.errors import ValidationFailed

    broken = {**frames, "shift_requests": frames["shift_requests"].drop(columns="shift_hours")}
    folder = _folder(tmp_path / "stop", broken)
    reporting = f"sqlite:///{staffcast_home / 'reporting.db'}"
    with pytest.raises(ValidationFailed, match="required_columns"):
        weekly_forecast(as_of=AS_OF, source_url=folder, reporting_url=reporting)

    engine = reporting_engine(reporting)
    with engine.connect() as conn:
        run_id, status = conn.execute(sa.text("SELECT run_id, status FROM forecast_run")).one()
    assert status == "failed"
    assert _rows(engine, table("validation_result")) == [(run_id, "required_columns", 0)]
    assert _rows(engine, current_view("validation_result")) == []

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["data-quality"]))
        )
    assert any("STOPPED" in str(a.data) and "shift_hours" in str(a.data) for a in artifacts)
