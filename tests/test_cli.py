"""The staffcast command line: exit codes, one-paragraph errors, the forecast command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from staffcast.cli import main


def _staffcast(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess, against the test Prefect server."""
    from prefect.settings import PREFECT_API_URL

    environment = {
        **os.environ,
        "STAFFCAST_HOME": str(home),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "staffcast.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


@pytest.mark.usefixtures("prefect_harness")
def test_missing_source_file_fails_with_one_paragraph(tmp_path: Path) -> None:
    result = _staffcast(
        ["run", "--as-of", "2025-11-03", "--source", f"sqlite:///{tmp_path / 'none.db'}"],
        tmp_path / "home",
    )
    assert result.returncode == 3  # source unavailable
    assert "Traceback" not in result.stderr + result.stdout
    assert "staffcast: The operational database file" in result.stderr
    assert "does not exist" in result.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_a_malformed_scenario_fails_with_one_paragraph(tmp_path: Path) -> None:
    result = _staffcast(
        ["run", "--as-of", "2025-11-03", "--scenario", "tight:service_level=high"],
        tmp_path / "home",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "--scenario: scenario 'tight': 'high' is not a number." in result.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_unreachable_database_is_retried_then_explained(tmp_path: Path) -> None:
    result = _staffcast(
        [
            "run",
            "--as-of",
            "2025-11-03",
            "--source",
            "postgresql+psycopg://nobody:secret@127.0.0.1:9/agency",
        ],
        tmp_path / "home",
        STAFFCAST_SOURCE_RETRY_SECONDS="0.5",
        STAFFCAST_SOURCE_RETRY_DELAY_SECONDS="0.2",
    )
    assert result.returncode == 3  # source unavailable
    assert "Traceback" not in result.stderr + result.stdout
    assert "Could not connect to the operational database" in result.stderr
    assert "secret" not in result.stderr  # the password is never printed
    assert "Retried " in result.stderr  # retried with backoff, then one paragraph


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--as-of", "next monday"])
    assert info.value.code == 2
    assert "is not a date" in capsys.readouterr().err


def test_forecast_command_writes_quantiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    dates = pd.date_range("2024-01-01", periods=200, freq="D")
    history = pd.concat(
        [
            pd.DataFrame({"series_id": "north", "date": dates, "demand": rng.poisson(20, 200)}),
            pd.DataFrame({"series_id": "tiny", "date": dates[:3], "demand": [1, 0, 2]}),
        ]
    )
    source, target = tmp_path / "history.csv", tmp_path / "out" / "forecast.csv"
    history.to_csv(source, index=False)
    assert (
        main(["forecast", "--input", str(source), "--horizon", "14", "--output", str(target)]) == 0
    )
    out = pd.read_csv(target, parse_dates=["date"])
    assert list(out.columns) == [
        "series_id",
        "date",
        "mean",
        "p025",
        "p10",
        "p50",
        "p80",
        "p90",
        "p95",
        "p975",
        "model",
    ]
    starts = out.groupby("series_id")["date"].min()
    assert starts["north"] == pd.Timestamp("2024-07-19")  # the day after its last date
    assert starts["tiny"] == pd.Timestamp("2024-01-04")
    assert (out.groupby("series_id").size() == 14).all()
    q = out[["p025", "p10", "p50", "p80", "p90", "p95", "p975"]].to_numpy()
    assert (q >= 0).all() and (np.diff(q, axis=1) >= 0).all()


def test_forecast_command_rejects_bad_input_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("series_id,date,demand\na,2024-01-01,3\na,someday,4\n")
    code = main(
        ["forecast", "--input", str(source), "--horizon", "7", "--output", str(tmp_path / "o.csv")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "rule 'date must be a date" in err and "someday" in err


def test_forecast_command_uses_the_country_holidays(tmp_path: Path) -> None:
    """Three English years with Boxing Day at a third of normal: the next one is forecast low."""
    rng = np.random.default_rng(2)
    dates = pd.date_range("2015-12-01", "2018-12-01", freq="D")
    boxing = (dates.month == 12) & (dates.day == 26)
    demand = rng.poisson(np.where(boxing, 100, 300))
    source = tmp_path / "history.csv"
    pd.DataFrame({"series_id": "area", "date": dates, "demand": demand}).to_csv(source, index=False)
    for country, subdivision, name in (("GB", "ENG", "gb.csv"), ("US", None, "us.csv")):
        args = ["forecast", "--input", str(source), "--horizon", "40"]
        args += ["--output", str(tmp_path / name), "--country", country]
        args += ["--subdivision", subdivision] if subdivision else []
        assert main(args) == 0
    gb = pd.read_csv(tmp_path / "gb.csv", parse_dates=["date"]).set_index("date")["mean"]
    us = pd.read_csv(tmp_path / "us.csv", parse_dates=["date"]).set_index("date")["mean"]
    assert gb["2018-12-26"] < 0.7 * gb["2018-12-19"]
    assert us["2018-12-26"] > 0.8 * us["2018-12-19"]  # not a US holiday


def test_forecast_command_rejects_an_unknown_country(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "history.csv"
    source.write_text("series_id,date,demand\na,2024-01-01,3\n")
    args = ["forecast", "--input", str(source), "--horizon", "7"]
    code = main([*args, "--output", str(tmp_path / "o.csv"), "--country", "XX"])
    assert code == 1
    assert "XX" in capsys.readouterr().err


def test_report_command_writes_html_and_csv_of_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reports.schema import create_schema, reporting_engine
    from tests.test_publish import AS_OF, publish

    url = f"sqlite:///{tmp_path / 'reporting.db'}"
    engine = reporting_engine(url)
    create_schema(engine)
    older = publish(engine, AS_OF - pd.Timedelta(days=7).to_pytimedelta(), tag=1)
    publish(engine, AS_OF)
    engine.dispose()

    out = tmp_path / "out" / "plan.html"
    assert main(["report", "--reporting", url, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and "MB" in printed
    assert 'id="hiring-targets"' in out.read_text(encoding="utf-8")
    csv_text = (tmp_path / "out" / "plan-hiring-targets.csv").read_text(encoding="utf-8-sig")
    assert csv_text.startswith("scenario,region,role,hires_needed")

    assert main(["report", "--reporting", url, "--run-id", older, "--output", str(out)]) == 0
    assert f"Report of run {older}" in capsys.readouterr().out

    assert main(["report", "--reporting", url, "--run-id", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("staffcast: Run 'nope' is not in the reporting")  # prefixed once
    assert err.count("\n") == 1

    # A read-only URI of the same file reads it; a file that is not a database is explained.
    readonly = f"sqlite:///file:{tmp_path / 'reporting.db'}?mode=ro&uri=true"
    assert main(["report", "--reporting", readonly, "--output", str(out)]) == 0
    capsys.readouterr()
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")
    assert main(["report", "--reporting", f"sqlite:///{junk}"]) == 4  # reporting refused
    err = capsys.readouterr().err
    assert "file is not a database" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_report_command_without_a_published_run_explains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reports.schema import create_schema, reporting_engine

    url = f"sqlite:///{tmp_path / 'reporting.db'}"
    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "report", "--reporting", url]) == 1
    assert "reporting.db does not exist: run `staffcast run`" in capsys.readouterr().err
    assert not (tmp_path / "reporting.db").exists()  # reading never creates a database

    reporting_engine(url).connect().close()  # an empty file: no staffcast tables
    assert main([*home, "report", "--reporting", url]) == 1
    assert "revision (none: no staffcast tables)" in capsys.readouterr().err

    create_schema(reporting_engine(url))
    assert main([*home, "report", "--reporting", url]) == 1
    err = capsys.readouterr().err
    assert "No published run in the reporting database yet" in err
    assert "Traceback" not in err


def test_scenarios_from_yaml_reads_names_parameters_and_roles(tmp_path: Path) -> None:
    from staffcast.cli import scenarios_from_yaml
    from staffcast.errors import StaffcastError

    good = tmp_path / "scenarios.yaml"
    good.write_text(
        "fewer_accept:\n  acceptance_rate: 0.25\n"
        "tight:\n  service_level: 0.9\n  acceptance_rate.RN: 0.3\n",
        encoding="utf-8",
    )
    assert scenarios_from_yaml(good) == [
        "fewer_accept:acceptance_rate=0.25",
        "tight:service_level=0.9,acceptance_rate.RN=0.3",
    ]
    for text, message in [
        ("tight: [", "not valid YAML at line 1"),
        ("- a\n- b\n", "no scenarios found"),
        ("tight:\n", "scenario 'tight' has no parameters"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(StaffcastError, match=message):
            scenarios_from_yaml(bad)
    with pytest.raises(StaffcastError, match="cannot read it"):
        scenarios_from_yaml(tmp_path / "missing.yaml")


@pytest.mark.usefixtures("prefect_harness")
def test_a_scenario_file_reaches_the_run_and_is_checked(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text("tight:\n  service_level: high\n", encoding="utf-8")
    result = _staffcast(
        ["run", "--as-of", "2025-11-03", "--scenario-file", str(scenarios)], tmp_path / "home"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "--scenario: scenario 'tight': 'high' is not a number." in result.stderr
