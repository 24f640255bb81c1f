"""Publishing to the reporting database: all or nothing, one run per as_of, views show the latest.

Runs on SQLite always and on PostgreSQL when STAFFCAST_TEST_POSTGRES_URL points at a server
(each test gets a fresh database there, dropped afterwards).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError

import reports.publish as publish_module
from reports.publish import (
    RunCounts,
    latest_published_run,
    mark_failed,
    publish_run,
    record_validation,
    start_run,
)
from reports.schema import (
    CHILD_TABLES,
    TABLES,
    VIEWS,
    UtcDateTime,
    create_schema,
    current_view,
    table,
)
from tests.conftest import fresh_database

AS_OF = dt.date(2026, 1, 5)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A reporting database with the schema created: SQLite file, or a fresh PostgreSQL db."""
    with fresh_database(request.param, tmp_path / "nested") as database:
        create_schema(database)
        yield database


def result_frames(as_of: dt.date, tag: int = 0) -> dict[str, pd.DataFrame]:
    """Small frames for every child table; ``tag`` shifts the numbers so runs differ."""
    days = pd.date_range(as_of, periods=14, freq="D")
    facilities = ["F1", "F2"]
    roles = ["RN", "LPN"]
    keys = pd.MultiIndex.from_product(
        [facilities, roles, days], names=["facility_id", "role", "date"]
    )
    demand = keys.to_frame(index=False)
    rng = np.random.default_rng(tag)
    mean = rng.gamma(2.0, 1.5, len(demand)) + tag
    demand["mean"] = mean
    for column, factor in [
        ("p025", 0.1),
        ("p10", 0.3),
        ("p50", 0.9),
        ("p80", 1.3),
        ("p90", 1.6),
        ("p95", 1.9),
        ("p975", 2.2),
    ]:
        demand[column] = mean * factor
    demand["booked"] = np.arange(len(demand), dtype=np.int64) % 3  # numpy ints
    demand["hours_mean"] = np.where(np.arange(len(demand)) % 5 == 0, np.nan, mean * 12)
    demand["model"] = "ets"

    regional = (
        demand.assign(region="North")
        .groupby(["region", "role", "date"], as_index=False)[
            ["mean", "p025", "p10", "p50", "p80", "p90", "p95", "p975"]
        ]
        .sum()
    )
    evaluation = pd.DataFrame(
        {
            "facility_id": ["F1", "F1", "F2", "F2"],
            "role": ["RN", "RN", "RN", "RN"],
            "model": ["ets", "naive", "ets", "naive"],
            "mase": [0.8, 1.0, np.nan, 1.0],
            "mae": [1.1, 1.4, np.nan, 1.2],
            "coverage80": [0.79, 0.7, np.nan, 0.75],
            "selected": [True, False, True, False],
            "n_backtest_days": [28, 28, None, 28],
        }
    )
    weeks = pd.date_range(as_of, periods=4, freq="7D")
    pool = pd.DataFrame(
        {
            "scenario": "base",
            "region": "North",
            "role": "RN",
            "week_start": weeks,
            "peak_day_p95": [6.0, 7.0, 6.5, 8.0],
            "peak_day_mean": [4.0, 4.5, 4.2, 5.0],
            "weekly_demand_mean": [25.0, 27.0, 26.0, 30.0],
            "recommended_pool": np.array([20, 22, 21, 25]) + tag,
            "service_level": 0.95,
            "acceptance_rate": 0.35,
            "max_shifts_per_week": 4,
            "days_in_week": 7,
            "daily_pool": np.array([20, 22, 21, 25]) + tag,
            "weekly_pool": 8,
        }
    )
    recruiting = pd.DataFrame(
        {
            "scenario": ["base", "low_acceptance"],
            "region": "North",
            "role": "RN",
            "current_pool": [18, 18],
            "target_pool": [25 + tag, 30 + tag],
            "expected_attrition": [1.2, 1.2],
            "hires_needed": [9 + tag, 14 + tag],
            "surplus": [0, 0],
            "recruit_by": [as_of, as_of],
            "needed_by": [as_of + dt.timedelta(days=97)] * 2,
            "acceptance_rate": [0.35, 0.25],
            "annual_attrition": [0.25, 0.25],
            "lead_time_days": [97, 97],
            "expected_pool": [16.8, 16.8],
            "late": [False, True],
            "window_start": [as_of + dt.timedelta(days=97)] * 2,
            "window_end": [as_of + dt.timedelta(days=153)] * 2,
            "note": ["tab\there, newline\nthere, back\\slash, 'quote', ünïcode", None],
            "acceptance_offers": [None, 40],
            "attrition_nurse_years": [12.5, np.nan],
        }
    )
    holidays = pd.DataFrame(
        {
            "scenario": "base",
            "holiday": ["Martin Luther King Jr. Day"],
            "date": [pd.Timestamp("2026-01-19")],
            "region": "North",
            "role": "RN",
            "expected_demand": [3.0],
            "p90": [5.0],
            "p95": [6.0],
            "typical_demand": [4.0],
            "uplift": [0.75],
            "recommended_on_call": [24],
            "acceptance_rate": [0.245],
            "service_level": [0.95],
        }
    )
    quarantined = pd.DataFrame(
        {
            "source_table": ["shift_requests", "shift_requests"],
            "source_key": [f"R{tag}-1", f"R{tag}-2"],
            "rule": ["duplicate_request_id", "shift_hours_in_range"],
            "detail": ["second copy of R1", "shift_hours=30"],
        }
    )
    validation = pd.DataFrame(
        {
            "source_table": ["shift_requests", "shift_requests", "facilities"],
            "rule": ["duplicate_request_id", "shift_hours_in_range", "timezone_valid"],
            "level": "row",
            "description": ["A request id appears once.", "0 < shift_hours <= 24.", "IANA zone."],
            "failed_rows": np.array([1, 1 + tag, 0], dtype=np.int64),
            "example": [f"R{tag}-1", "shift_hours=30 | '); DROP TABLE x;--", None],
        }
    )
    history_days = pd.date_range(as_of - dt.timedelta(days=7), periods=7, freq="D")
    history = pd.MultiIndex.from_product(
        [facilities, roles, history_days], names=["facility_id", "role", "date"]
    ).to_frame(index=False)
    history["demand"] = np.arange(len(history), dtype=np.int64) % 4 + tag
    months = pd.date_range(as_of.replace(day=1), periods=2, freq="MS")
    hiring = pd.DataFrame(
        {
            "scenario": "base",
            "region": "North",
            "role": "RN",
            "month": months,
            "arrival_start": months + pd.Timedelta(days=97),
            "arrival_end": months + pd.Timedelta(days=128),
            "pool_needed": [25 + tag, 26 + tag],
            "expected_pool": [16.8, 24.1],
            "hires": [9 + tag, 2],
            "cumulative_hires": [9 + tag, 11 + tag],
            "beyond_horizon": [False, True],
        }
    )
    impact = pd.DataFrame(
        {
            "source": ["quarantined", "quarantined", "quarantined", "excluded"],
            "region": ["North", "North", "(unknown)", "North"],
            "role": ["RN", "RN", "LPN", "CNA"],
            "facility_id": ["F1", "F2", "(unknown)", "F1"],
            "rows": np.array([3 + tag, 0, 2, 7], dtype=np.int64),
            "recent_shifts_lost": [2.0 + tag, 0.0, 0.107, 4.0],
            "recent_hours_lost": [24.0 + 12 * tag, 0.0, 1.284, 32.0],
            "recent_shifts_used": np.array([110, 95, 0, 0], dtype=np.int64),
            "imputed_shifts": np.array([3 + tag, 0, 0, 0], dtype=np.int64),
            "window_days": 28,
        }
    )
    earlier = as_of - dt.timedelta(days=7)
    score = pd.DataFrame(
        {
            "level": ["facility", "facility", "region"],
            "region": "North",
            "facility_id": ["F1", "F2", "*"],
            "role": "RN",
            "scored_run_id": "earlier-run",
            "scored_as_of": earlier,
            "lead_band": "1-7",
            "week_start": earlier,
            "first_day": earlier,
            "last_day": earlier + dt.timedelta(days=6),
            "days": 7,
            "actual_total": [30.0 + tag, 20.0, 50.0 + tag],
            "forecast_total": [28.5, 21.0, 49.5],
            "abs_error": [6.5, 3.0, 8.0],
            "naive_abs_error": [9.0, 4.0, 11.0],
            "pinball_total": [2.1, 1.0, 3.2],
            "in_p10_p90": np.array([6, 5, 6], dtype=np.int64),
            "under_p95": np.array([7, 7, 7], dtype=np.int64),
        }
    )
    outcome = pd.DataFrame(
        {
            "scenario": ["base", "tight"],
            "region": "North",
            "role": "RN",
            "week_start": earlier,
            "pool_run_id": "earlier-run",
            "pool_as_of": earlier,
            "recommended_pool": np.array([12 + tag, 14], dtype=np.int64),
            "service_level": [0.95, 0.9],
            "max_shifts_per_week": 5,
            "offers": 40,
            "accepted": 14,
            "acceptance_rate": 0.35,
            "days": 7,
            "actual_total": 21,
            "peak_day": 5,
            "covered": [6.9, 6.95],
            "over_cap": False,
        }
    )
    flags = pd.DataFrame(
        {
            "measure": ["bias"],
            "region": ["North"],
            "role": ["RN"],
            "weeks": [8],
            "value": [0.11 + tag],
            "low": [-0.08],
            "high": [0.08],
            "message": ["North RN: forecasts ran 11% above the demand that came."],
        }
    )
    return {
        "forecast_score": score,
        "pool_outcome": outcome,
        "track_record_flag": flags,
        "demand_history": history,
        "hiring_plan": hiring,
        "data_quality_impact": impact,
        "quarantined_row": quarantined,
        "validation_result": validation,
        "demand_forecast": demand,
        "regional_forecast": regional,
        "model_evaluation": evaluation,
        "on_call_pool": pool,
        "recruiting_target": recruiting,
        "holiday_coverage": holidays,
    }


COUNTS = RunCounts(rows_extracted=100, rows_used=98, rows_quarantined=2)


def publish(engine: Engine, as_of: dt.date = AS_OF, tag: int = 0, backfill: bool = False) -> str:
    run_id = start_run(engine, as_of, {"tag": tag, "as_of": as_of}, None, "test", 182)
    publish_run(engine, run_id, result_frames(as_of, tag), COUNTS, backfill=backfill)
    return run_id


def run_ids(engine: Engine, name: str) -> list[str]:
    """run_id of every row of table ``name``, sorted."""
    with engine.connect() as connection:
        return sorted(connection.execute(select(table(name).c.run_id)).scalars())


def view_run_ids(engine: Engine, name: str) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(select(current_view(name).c.run_id)).scalars())


def assert_only_run(engine: Engine, run_id: str, as_of: dt.date = AS_OF) -> None:
    """Every table and view holds exactly the rows of ``run_id`` (tables: of its as_of)."""
    frames = result_frames(as_of)
    for name in CHILD_TABLES:
        assert run_ids(engine, name) == [run_id] * len(frames[name]), name
        assert view_run_ids(engine, name) == [run_id] * len(frames[name]), name
    assert view_run_ids(engine, "forecast_run") == [run_id]


def test_create_schema_is_idempotent(engine: Engine) -> None:
    run_id = publish(engine)
    create_schema(engine)
    create_schema(engine)
    inspector = inspect(engine)
    assert set(TABLES) <= set(inspector.get_table_names())
    assert set(VIEWS) <= set(inspector.get_view_names())
    assert_only_run(engine, run_id)


def test_published_run_is_visible_through_every_view(engine: Engine) -> None:
    assert latest_published_run(engine) is None
    run_id = publish(engine)

    assert_only_run(engine, run_id)
    run = latest_published_run(engine)
    assert run is not None
    assert run["run_id"] == run_id
    assert run["status"] == "published"
    assert run["as_of"] == AS_OF
    assert (run["rows_extracted"], run["rows_used"], run["rows_quarantined"]) == (100, 98, 2)
    assert run["parameters"] == {"tag": 0, "as_of": "2026-01-05"}
    assert run["horizon_days"] == 182
    assert run["started_at"].tzinfo is not None
    assert run["finished_at"] >= run["started_at"]

    with engine.connect() as connection:
        demand = connection.execute(
            select(current_view("demand_forecast")).order_by("facility_id", "role", "date")
        ).all()
        evaluation = connection.execute(
            select(current_view("model_evaluation")).order_by("facility_id", "model")
        ).all()
    first = demand[0]
    assert isinstance(first.date, dt.date) and not isinstance(first.date, dt.datetime)
    assert type(first.booked) is int
    expected_nulls = int(result_frames(AS_OF)["demand_forecast"]["hours_mean"].isna().sum())
    assert expected_nulls > 0
    assert sum(row.hours_mean is None for row in demand) == expected_nulls  # NaN -> NULL
    assert {row.selected for row in evaluation} == {True, False}
    assert evaluation[2].mase is None and evaluation[2].n_backtest_days is None


def _plain(value: object, column: Column) -> object:
    """A frame value as the database hands it back: None for missing, dates as date."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(column.type, Date) and isinstance(value, dt.datetime):
        return value.date()
    if isinstance(column.type, Float):
        return float(value)  # type: ignore[arg-type]
    return value


def expected_rows(name: str, frame: pd.DataFrame, run_id: str) -> list[tuple[object, ...]]:
    """The rows view ``current_<name>`` should show for ``frame`` (without an autoincrement id)."""
    columns = [column for column in current_view(name).columns if column.name != "id"]
    return sorted(
        (
            tuple(
                run_id if column.name == "run_id" else _plain(record.get(column.name), column)
                for column in columns
            )
            for record in frame.to_dict("records")
        ),
        key=repr,
    )


def view_rows(
    engine: Engine, name: str, leave_out: tuple[str, ...] = ("id",)
) -> list[tuple[object, ...]]:
    """Every row of view ``current_<name>`` without the ``leave_out`` columns, sorted."""
    columns = [c for c in current_view(name).columns if c.name not in leave_out]
    with engine.connect() as connection:
        rows = connection.execute(select(*columns)).all()
    return sorted((tuple(row) for row in rows), key=repr)


def spy_on_copy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the tables written by COPY from now on, once per COPY statement."""
    copied: list[str] = []
    real_copy = publish_module._copy_rows

    def copy_rows(connection, target, rows, oids):  # type: ignore[no-untyped-def]
        copied.append(target.name)
        real_copy(connection, target, rows, oids)

    monkeypatch.setattr(publish_module, "_copy_rows", copy_rows)
    return copied


def test_every_value_reads_back_as_published(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = spy_on_copy(monkeypatch)
    run_id = publish(engine)
    frames = result_frames(AS_OF)

    # COPY on PostgreSQL for every table (the autoincrement id left to its sequence)
    expected_copies = list(CHILD_TABLES) if engine.dialect.name == "postgresql" else []
    assert copied == expected_copies
    for name in CHILD_TABLES:
        read = view_rows(engine, name)
        assert read == expected_rows(name, frames[name], run_id), name
        for row in read:  # Python types as the columns declare them (a date is no datetime)
            columns = [c for c in current_view(name).columns if c.name != "id"]
            for column, value in zip(columns, row, strict=True):
                if value is not None:
                    assert type(value) is column.type.python_type, (name, column.name, value)
    with engine.connect() as connection:
        ids = connection.execute(select(current_view("quarantined_row").c.id)).scalars().all()
    assert len(set(ids)) == len(frames["quarantined_row"]) and all(type(i) is int for i in ids)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_copy_stores_what_executemany_stores(engine: Engine) -> None:
    """Both PostgreSQL paths, on every child table and on a table of every type COPY writes."""
    stored: dict[str, dict[str, list[tuple[object, ...]]]] = {}
    for path, can_copy in (("executemany", False), ("copy", True)):  # the same run, replaced
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(publish_module, "_can_copy", lambda *args, ok=can_copy: ok)
            publish(engine)
        stored[path] = {name: view_rows(engine, name, ("id", "run_id")) for name in CHILD_TABLES}
    for name in CHILD_TABLES:
        assert stored["copy"][name] == stored["executemany"][name], name

    probe = Table(
        "copy_probe",
        MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("path", String(12), nullable=False),
        Column("at", UtcDateTime),
        Column("day", Date),
        Column("x", Float),
        Column("n", Integer),
        Column("big", BigInteger),
        Column("flag", Boolean),
        Column("label", String(40)),
        Column("note", Text),
    )
    berlin = dt.timezone(dt.timedelta(hours=1))
    values = [
        (dt.datetime(2026, 1, 5, 23, 30, tzinfo=berlin), dt.date(2026, 1, 5), 0.1, -(2**31)),
        (dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), dt.date(1, 1, 1), 1e-300, 0),
        (None, None, None, None),
        (dt.datetime(2026, 7, 1, tzinfo=dt.UTC), dt.date(9999, 12, 31), float("inf"), 2**31 - 1),
    ]
    names = ("path", "at", "day", "x", "n", "big", "flag", "label", "note")
    probe.create(engine)
    with engine.begin() as connection:
        for path, can_copy in (("executemany", False), ("copy", True)):
            rows = [
                (path, at, day, x, n, None if n is None else n * 2**32, flag, label, note)
                for (at, day, x, n), flag, label, note in zip(
                    values,
                    [True, False, None, True],
                    ["RN", "", None, "ünïcode\ttab"],
                    ["line\nbreak \\N", None, "'; DROP TABLE x;--", "\\"],
                    strict=True,
                )
            ]
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(publish_module, "_can_copy", lambda *args, ok=can_copy: ok)
                publish_module._insert_rows(connection, probe, publish_module._Rows(names, rows))
    columns = [c for c in probe.columns if c.name not in ("id", "path")]
    with engine.connect() as connection:
        stored = {
            path: connection.execute(
                select(*columns).where(probe.c.path == path).order_by(probe.c.id)
            ).all()
            for path in ("executemany", "copy")
        }
        ids = connection.execute(select(probe.c.id).order_by(probe.c.id)).scalars().all()
    assert stored["copy"] == stored["executemany"]
    assert stored["copy"][0].at == dt.datetime(2026, 1, 5, 22, 30, tzinfo=dt.UTC)
    assert ids == list(range(1, 9))  # COPY left the id to the sequence


def test_republishing_an_as_of_replaces_the_earlier_run(engine: Engine) -> None:
    first = publish(engine, tag=1)
    failed = start_run(engine, AS_OF, {}, None, "test", 182)
    mark_failed(engine, failed, "boom")
    second = publish(engine, tag=2)

    assert run_ids(engine, "forecast_run") == [second]
    assert_only_run(engine, second)
    assert first != second
    with engine.connect() as connection:
        pools = connection.execute(select(current_view("on_call_pool").c.recommended_pool))
        assert sorted(pools.scalars()) == [22, 23, 24, 27]  # tag 2's numbers


def test_newer_as_of_becomes_current_and_a_backfill_does_not(engine: Engine) -> None:
    publish(engine, AS_OF)
    newer = publish(engine, AS_OF + dt.timedelta(days=7))
    assert latest_published_run(engine)["run_id"] == newer

    publish(engine, AS_OF - dt.timedelta(days=7), backfill=True)  # filling in an older week
    assert latest_published_run(engine)["run_id"] == newer
    assert len(run_ids(engine, "forecast_run")) == 3
    assert view_run_ids(engine, "regional_forecast") == [newer] * 14 * 2

    newest = publish(engine, AS_OF + dt.timedelta(days=14), backfill=True)  # past the current
    assert latest_published_run(engine)["run_id"] == newest


def test_a_correcting_rerun_of_an_earlier_week_becomes_current(engine: Engine) -> None:
    """A bad run for a later as_of (a wrong clock) does not hide the rerun that corrects it."""
    publish(engine, AS_OF)
    bad = publish(engine, AS_OF + dt.timedelta(days=7), tag=1)
    assert latest_published_run(engine)["run_id"] == bad

    rerun = publish(engine, AS_OF, tag=2)
    assert latest_published_run(engine)["run_id"] == rerun
    assert view_run_ids(engine, "regional_forecast") == [rerun] * 14 * 2
    with engine.connect() as connection:
        stored = dict(
            connection.execute(
                select(table("forecast_run").c.run_id, table("forecast_run").c.current_since)
            ).all()
        )
    assert stored[rerun] > stored[bad]  # the bad run stays stored (and can be deleted by hand)


@pytest.mark.parametrize("days_later", [0, 7], ids=["same_as_of", "newer_as_of"])
def test_failure_midway_leaves_the_previous_run_current(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, days_later: int
) -> None:
    previous = publish(engine)
    as_of = AS_OF + dt.timedelta(days=days_later)
    run_id = start_run(engine, as_of, {}, "flow-123", "test", 182)

    inserted: list[str] = []
    real_insert = publish_module._insert_rows

    def insert_then_fail_on_third_table(connection, target, rows):
        if target.name not in inserted:
            inserted.append(target.name)
        if len(inserted) == 3:
            raise RuntimeError("disk full (injected)")
        real_insert(connection, target, rows)

    monkeypatch.setattr(publish_module, "_insert_rows", insert_then_fail_on_third_table)
    with pytest.raises(RuntimeError, match="injected"):
        publish_run(engine, run_id, result_frames(as_of, tag=5), COUNTS)
    assert inserted == list(CHILD_TABLES[:3])  # two tables were written before the failure

    assert latest_published_run(engine)["run_id"] == previous
    assert_only_run(engine, previous)  # no partial rows of the failed run, in any table
    with engine.connect() as connection:
        status = connection.execute(
            select(table("forecast_run").c.status).where(table("forecast_run").c.run_id == run_id)
        ).scalar_one()
    assert status == "running"

    mark_failed(engine, run_id, "RuntimeError: disk full\n" + "x" * 5000)
    with engine.connect() as connection:
        failed = (
            connection.execute(
                select(table("forecast_run")).where(table("forecast_run").c.run_id == run_id)
            )
            .mappings()
            .one()
        )
    assert failed["status"] == "failed"
    assert failed["error"].startswith("RuntimeError: disk full")
    assert len(failed["error"]) == 4000
    assert failed["finished_at"] is not None
    assert latest_published_run(engine)["run_id"] == previous


def _duplicate_regional_key(frames: dict[str, pd.DataFrame]) -> None:
    regional = frames["regional_forecast"]
    frames["regional_forecast"] = pd.concat([regional, regional.iloc[:1]])


def _negative_hires(frames: dict[str, pd.DataFrame]) -> None:
    frames["recruiting_target"].loc[1, "hires_needed"] = -1  # CHECK hires_needed >= 0


def _duplicate_in_last_chunk(frames: dict[str, pd.DataFrame]) -> None:
    demand = frames["demand_forecast"]
    frames["demand_forecast"] = pd.concat([demand, demand.iloc[[5]]])


@pytest.mark.parametrize(
    "spoil",
    [_duplicate_regional_key, _negative_hires, _duplicate_in_last_chunk],
    ids=["duplicate_key", "check_constraint", "duplicate_in_a_later_chunk"],
)
def test_database_error_midway_rolls_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, spoil
) -> None:
    previous = publish(engine)
    run_id = start_run(engine, AS_OF, {}, None, "test", 182)
    frames = result_frames(AS_OF, tag=3)
    spoil(frames)
    copied = spy_on_copy(monkeypatch)
    monkeypatch.setattr(publish_module, "INSERT_CHUNK_ROWS", 10)  # several COPYs per table

    with pytest.raises(IntegrityError):
        publish_run(engine, run_id, frames, COUNTS)

    if engine.dialect.name == "postgresql":
        assert copied.count("demand_forecast") == 6  # 56 rows (+1) in chunks of 10
        assert "validation_result" in copied
    assert latest_published_run(engine)["run_id"] == previous
    assert_only_run(engine, previous)
    assert sorted(run_ids(engine, "forecast_run")) == sorted([previous, run_id])
    with engine.connect() as connection:  # the pool's connection is usable after the failure
        assert connection.execute(select(func.count()).select_from(table("forecast_run"))).scalar()


def test_unknown_column_raises_and_writes_nothing(engine: Engine) -> None:
    previous = publish(engine)
    run_id = start_run(engine, AS_OF, {}, None, "test", 182)
    frames = result_frames(AS_OF)
    frames["demand_forecast"]["surprise_column"] = 1.0

    with pytest.raises(ValueError, match=r"demand_forecast.*surprise_column"):
        publish_run(engine, run_id, frames, COUNTS)
    assert_only_run(engine, previous)


def test_bad_frames_raise_clear_errors(engine: Engine) -> None:
    run_id = start_run(engine, AS_OF, {}, None, "test", 182)
    frames = result_frames(AS_OF)
    with pytest.raises(ValueError, match=r"on_call_pool.*recommended_pool"):
        publish_run(
            engine,
            run_id,
            {"on_call_pool": frames["on_call_pool"].drop(columns="recommended_pool")},
            COUNTS,
        )
    with pytest.raises(ValueError, match=r"demand_forecast\.mean.*NOT NULL"):
        publish_run(
            engine,
            run_id,
            {"demand_forecast": frames["demand_forecast"].assign(mean=np.nan)},
            COUNTS,
        )
    with pytest.raises(ValueError, match=r"on_call_pool\.recommended_pool.*whole"):
        publish_run(
            engine,
            run_id,
            {"on_call_pool": frames["on_call_pool"].assign(recommended_pool=2.5)},
            COUNTS,
        )
    with pytest.raises(ValueError, match=r"not reporting tables: forecast"):
        publish_run(engine, run_id, {"forecast": frames["demand_forecast"]}, COUNTS)
    with pytest.raises(ValueError, match="accounting invariant"):
        RunCounts(rows_extracted=10, rows_used=8, rows_quarantined=1)
    assert run_ids(engine, "demand_forecast") == []


def test_a_run_that_never_publishes_is_never_current(engine: Engine) -> None:
    previous = publish(engine)
    start_run(engine, AS_OF + dt.timedelta(days=7), {}, None, "test", 182)  # killed mid-run
    assert latest_published_run(engine)["run_id"] == previous


def test_mark_failed_is_safe_on_gone_and_published_runs(engine: Engine) -> None:
    mark_failed(engine, "20260105-doesnotexist", "boom")  # does not raise
    run_id = publish(engine)
    mark_failed(engine, run_id, "late error")
    assert latest_published_run(engine)["status"] == "published"


def test_publish_refuses_unknown_or_published_runs(engine: Engine) -> None:
    with pytest.raises(ValueError, match="start_run"):
        publish_run(engine, "20260105-doesnotexist", {}, COUNTS)
    run_id = publish(engine)
    with pytest.raises(ValueError, match="published"):
        publish_run(engine, run_id, {}, COUNTS)


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            insert(table("quarantined_row")).values(
                run_id="no-such-run", source_table="t", rule="r"
            )
        )
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(table("quarantined_row"))).scalar()
            == 0
        )


# --- rows excluded and the data-quality impact (revision 0003) ---------------------------------


def test_run_counts_account_for_excluded_rows() -> None:
    assert RunCounts(100, 98, 2).rows_excluded == 0  # positional, as older callers build it
    counts = RunCounts(rows_extracted=110, rows_used=98, rows_quarantined=2, rows_excluded=10)
    assert counts.rows_excluded == 10
    with pytest.raises(ValueError, match=r"rows_used \+ rows_quarantined \+ rows_excluded = 109"):
        RunCounts(rows_extracted=110, rows_used=98, rows_quarantined=2, rows_excluded=9)
    with pytest.raises(ValueError, match=">= 0"):
        RunCounts(rows_extracted=98, rows_used=98, rows_quarantined=2, rows_excluded=-2)


def test_rows_excluded_is_published(engine: Engine) -> None:
    older = publish(engine)  # COUNTS: no rows excluded
    run_id = start_run(engine, AS_OF + dt.timedelta(days=7), {}, None, "test", 182)
    counts = RunCounts(rows_extracted=110, rows_used=98, rows_quarantined=2, rows_excluded=10)
    publish_run(engine, run_id, result_frames(AS_OF + dt.timedelta(days=7)), counts)

    run = latest_published_run(engine)
    assert run is not None and run["run_id"] == run_id
    assert (run["rows_extracted"], run["rows_used"], run["rows_quarantined"]) == (110, 98, 2)
    assert run["rows_excluded"] == 10 and type(run["rows_excluded"]) is int
    forecast_run = table("forecast_run")
    with engine.connect() as connection:
        excluded = connection.execute(
            select(forecast_run.c.rows_excluded).where(forecast_run.c.run_id == older)
        ).scalar_one()
    assert excluded == 0


def test_impact_rows_read_back_per_facility(engine: Engine) -> None:
    run_id = publish(engine, tag=1)
    frame = result_frames(AS_OF, tag=1)["data_quality_impact"]
    assert view_rows(engine, "data_quality_impact") == expected_rows(
        "data_quality_impact", frame, run_id
    )
    impact = current_view("data_quality_impact")
    with engine.connect() as connection:
        lost = connection.execute(
            select(impact.c.region, impact.c.role, func.sum(impact.c.recent_shifts_lost))
            .where(impact.c.source == "quarantined")
            .group_by(impact.c.region, impact.c.role)
            .order_by(impact.c.region, impact.c.role)
        ).all()
    assert [(region, role, round(total, 3)) for region, role, total in lost] == [
        ("(unknown)", "LPN", 0.107),
        ("North", "RN", 3.0),
    ]


@pytest.mark.parametrize(
    "impact",
    [None, pd.DataFrame(), pd.DataFrame(columns=list(result_frames(AS_OF)["data_quality_impact"]))],
    ids=["absent", "no_columns", "no_rows"],
)
def test_a_run_without_impact_rows_publishes(engine: Engine, impact: pd.DataFrame | None) -> None:
    frames = result_frames(AS_OF)
    del frames["data_quality_impact"]
    if impact is not None:
        frames["data_quality_impact"] = impact
    run_id = start_run(engine, AS_OF, {}, None, "test", 182)
    publish_run(engine, run_id, frames, COUNTS)

    assert latest_published_run(engine)["run_id"] == run_id  # type: ignore[index]
    assert run_ids(engine, "data_quality_impact") == []
    assert view_run_ids(engine, "demand_forecast") == [run_id] * len(frames["demand_forecast"])


def test_impact_source_must_be_quarantined_or_excluded(engine: Engine) -> None:
    previous = publish(engine)
    run_id = start_run(engine, AS_OF, {}, None, "test", 182)
    frames = result_frames(AS_OF, tag=1)
    frames["data_quality_impact"].loc[3, "source"] = "ignored"

    with pytest.raises(IntegrityError):
        publish_run(engine, run_id, frames, COUNTS)
    assert_only_run(engine, previous)


def test_record_validation_keeps_the_impact_of_a_stopped_run(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch rule stopped the run (say, one region lost too much demand): its summary and
    impact stay in the tables, out of the views, until a run of the same as_of publishes."""
    previous = publish(engine)
    later = AS_OF + dt.timedelta(days=7)
    stopped = start_run(engine, later, {}, None, "test", 182)
    frames = result_frames(later, tag=4)
    copied = spy_on_copy(monkeypatch)

    record_validation(
        engine, stopped, frames["validation_result"], impact=frames["data_quality_impact"]
    )

    if engine.dialect.name == "postgresql":
        assert copied == ["validation_result", "data_quality_impact"]
    impact = table("data_quality_impact")
    with engine.connect() as connection:
        stored = connection.execute(
            select(impact.c.source, impact.c.facility_id, impact.c.rows).where(
                impact.c.run_id == stopped
            )
        ).all()
    assert sorted(map(tuple, stored)) == [
        ("excluded", "F1", 7),
        ("quarantined", "(unknown)", 2),
        ("quarantined", "F1", 7),
        ("quarantined", "F2", 0),
    ]
    assert view_run_ids(engine, "data_quality_impact") == [previous] * 4  # never current

    # Again with one row: replaced, not added; impact=None leaves the stored impact alone.
    record_validation(
        engine,
        stopped,
        frames["validation_result"],
        impact=frames["data_quality_impact"].iloc[:1],
    )
    record_validation(engine, stopped, frames["validation_result"].iloc[:1])
    assert run_ids(engine, "data_quality_impact").count(stopped) == 1
    assert run_ids(engine, "validation_result").count(stopped) == 1

    # An impact frame that does not fit is logged; the summary is still recorded.
    caplog.clear()
    record_validation(
        engine,
        stopped,
        frames["validation_result"],
        impact=frames["data_quality_impact"].drop(columns="rows"),
    )
    assert "could not record the data-quality impact" in caplog.text
    assert run_ids(engine, "validation_result").count(stopped) == 3
    assert run_ids(engine, "data_quality_impact").count(stopped) == 1
    mark_failed(engine, stopped, "stopped by max_region_loss_share")

    rerun = publish(engine, later, tag=5)  # replaces the stopped run's rows
    assert run_ids(engine, "data_quality_impact").count(stopped) == 0
    assert view_run_ids(engine, "data_quality_impact") == [rerun] * 4
