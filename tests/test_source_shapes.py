"""One agency in four source shapes publishes one plan (issue 11, "Figures").

The session's small demo agency is written as SQLite with text columns (the demo file itself),
PostgreSQL with native types, its own names, codes and extra CNA rows (through a mapping), a
``;``-separated CSV folder with its own headers, US shift_start times and ``CST`` zones
(through a mapping), and Parquet with typed columns (see ``benchmarks/source_shapes.py``).

Two levels, to stay cheap:

- the contracts and the daily demand (open_source + validate_with_settings + the flow's
  demand step, outside a flow run): counts, quarantined request ids (letter prefix aside),
  clean facilities, nurses and offers, history and booked requests must be the same;
- one weekly flow run per shape with a short horizon and a cheap engine (two models, one
  backtest origin, 100 sample paths): the published demand history, forecasts, regional
  forecasts, on-call pools, recruiting targets, hiring plan and quarantined ids must match.

The PostgreSQL shape needs ``STAFFCAST_TEST_POSTGRES_URL`` (a superuser); it is skipped without
one, except under CI, where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import source_shapes as shapes_module
from benchmarks.source_shapes import (
    Extracted,
    Shape,
    compare_extracted,
    compare_published,
    extract_and_validate,
    published_tables,
)
from tests.conftest import AS_OF, POSTGRES_URL

FILE_SHAPES = ("csv_folder", "parquet_typed")
CHEAP_ENGINE = {
    "STAFFCAST_FORECAST_MODELS": '["seasonal_naive", "weekday_mean"]',
    "STAFFCAST_FORECAST_COMBINATIONS": "[]",
    "STAFFCAST_BACKTEST_ORIGINS": "1",
    "STAFFCAST_SAMPLE_PATHS": "100",
    "STAFFCAST_FORECAST_WORKERS": "1",
}
HORIZON_DAYS = 28


def _postgres_server() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI"):
        pytest.fail(
            "CI is set but STAFFCAST_TEST_POSTGRES_URL is not: the PostgreSQL shape must run"
        )
    pytest.skip(
        "PostgreSQL not configured: set STAFFCAST_TEST_POSTGRES_URL, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
    )


@pytest.fixture(scope="module")
def file_shapes(small_agency, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Shape]:
    folder = tmp_path_factory.mktemp("shapes")
    return {
        "sqlite_text": shapes_module.sqlite_shape(small_agency.path),
        "csv_folder": shapes_module.write_csv_folder(small_agency.path, folder / "csv"),
        "parquet_typed": shapes_module.write_parquet_folder(small_agency.path, folder / "parquet"),
    }


@pytest.fixture(scope="module")
def postgres_shape(small_agency, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shape]:
    server = _postgres_server()
    prefix = os.environ.get("STAFFCAST_TEST_DB_PREFIX", "staffcast_test")
    name = f"{prefix}_shapes_{uuid.uuid4().hex[:10]}"
    url = shapes_module.create_database(server, name)
    try:
        yield shapes_module.write_postgres(
            small_agency.path, url, tmp_path_factory.mktemp("pg") / "postgres-mapping.yaml"
        )
    finally:
        shapes_module.drop_database(server, name)


@pytest.fixture(scope="module")
def reference(file_shapes: dict[str, Shape]) -> Extracted:
    return extract_and_validate(file_shapes["sqlite_text"], AS_OF)


@pytest.fixture(scope="module")
def cheap_engine() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in CHEAP_ENGINE.items():
            patch.setenv(key, value)
        yield


def _flow_tables(shape: Shape, folder: Path) -> dict:
    """One weekly run on ``shape`` (short horizon, cheap engine); the published tables."""
    from flows.weekly_forecast import weekly_forecast

    reporting = f"sqlite:///{folder / f'reporting-{shape.name}.db'}"
    weekly_forecast(
        as_of=AS_OF,
        source_url=shape.source,
        reporting_url=reporting,
        horizon_days=HORIZON_DAYS,
        source_mapping=str(shape.mapping) if shape.mapping else None,
    )
    return published_tables(reporting)


@pytest.fixture(scope="module")
def reference_run(
    prefect_harness, cheap_engine, file_shapes, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    return _flow_tables(file_shapes["sqlite_text"], tmp_path_factory.mktemp("runs"))


def _requests(extracted: Extracted) -> dict[str, int]:
    counts = extracted.counts["shift_requests"]
    return {k: counts.get(k, 0) for k in ("extracted", "used", "quarantined", "excluded")}


def test_sqlite_shape_is_the_demo_as_it_is(reference: Extracted, small_agency) -> None:
    counts = _requests(reference)
    assert counts["excluded"] == 0
    assert counts["extracted"] == counts["used"] + counts["quarantined"]
    bad = {int(i[1:]) for ids in small_agency.bad_requests.values() for i in ids}
    quarantined = reference.frames["quarantine"]
    assert set(quarantined.loc[quarantined["source_table"] == "shift_requests", "key"]) == bad
    assert len(reference.frames["history"]) > 0


def test_a_changed_value_is_a_difference(reference: Extracted) -> None:
    """The comparison is not vacuous: one shift more on one day is reported, with its row."""
    changed = Extracted("changed", reference.counts, dict(reference.frames), reference.seconds)
    history = reference.frames["history"].copy()
    history.loc[history.index[-1], "demand"] += 1
    changed.frames["history"] = history
    difference = compare_extracted(reference, changed)
    assert difference is not None and difference.startswith("history.demand: 1 rows differ")


@pytest.mark.parametrize("name", FILE_SHAPES)
def test_file_shapes_give_the_same_contracts_and_demand(
    name: str, file_shapes: dict[str, Shape], reference: Extracted
) -> None:
    got = extract_and_validate(file_shapes[name], AS_OF)
    assert got.counts == reference.counts
    assert compare_extracted(reference, got) is None


@pytest.mark.postgres
def test_postgres_shape_gives_the_same_contracts_and_demand(
    postgres_shape: Shape, reference: Extracted
) -> None:
    got = extract_and_validate(postgres_shape, AS_OF)
    ref, pg = _requests(reference), _requests(got)
    # The extra CNA shifts are excluded: neither used nor quarantined, and nothing else moves.
    assert pg["excluded"] == postgres_shape.excluded_requests > 0
    assert pg["used"] == ref["used"] and pg["quarantined"] == ref["quarantined"]
    assert pg["extracted"] == ref["extracted"] + postgres_shape.excluded_requests
    nurses = got.counts["nurses"]
    assert nurses.get("excluded", 0) == postgres_shape.excluded_nurses > 0
    assert nurses["used"] == reference.counts["nurses"]["used"]
    assert compare_extracted(reference, got) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", FILE_SHAPES)
def test_file_shapes_publish_the_same_plan(
    name: str, file_shapes: dict[str, Shape], reference_run: dict, tmp_path: Path
) -> None:
    published = _flow_tables(file_shapes[name], tmp_path)
    for table in ("demand_history", "demand_forecast", "on_call_pool", "hiring_plan"):
        assert len(reference_run[table]) > 0, table
    assert compare_published(reference_run, published) is None


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_shape_publishes_the_same_plan(
    postgres_shape: Shape, reference_run: dict, tmp_path: Path
) -> None:
    published = _flow_tables(postgres_shape, tmp_path)
    assert compare_published(reference_run, published) is None
