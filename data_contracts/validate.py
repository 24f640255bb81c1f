"""Run the data contracts on an extract: clean frames out, bad rows to quarantine, or a stop.

Every extracted row ends up used, in quarantine with the rule it broke, or excluded as out of
scope by the source mapping (a CNA shift): rows_extracted = rows_used + rows_quarantined +
rows_excluded, per table. Excluded rows are set aside before any rule runs, so they never count
toward the quarantine share. A row that breaks several rules is quarantined once, under the
first rule in suite order; the detail lists the others.

shift_requests and shift_offers are read chunk by chunk and reduced as they are read
(:class:`_RequestPass`): a run's memory grows with its series, not with its requests, and
every rule means the same whatever the chunk size (``tests/test_streaming.py``).

The demand that quarantined and excluded requests would have carried is measured by
:mod:`data_contracts.impact`; a region and role that loses more than ``max_region_loss_share``
of its recent demand stops the run, whatever the agency-wide share.
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import pandas_execution_engine

from data_contracts import impact as demand_impact
from data_contracts import parsing, suites
from data_contracts.impact import DemandImpact
from data_contracts.suites import Rule
from models.demand import DailyCounts
from staffcast.errors import ValidationFailed
from staffcast.source import RawTable, SourceExtract, table_chunks

if TYPE_CHECKING:
    from staffcast.settings import Settings

logger = logging.getLogger(__name__)

# GX fingerprints every in-memory batch by hashing the whole frame (a third of the validation
# time on millions of rows). Each batch here is validated once and never looked up again, so
# the fingerprint buys nothing: frames above this size (bytes) are not hashed.
pandas_execution_engine.HASH_THRESHOLD = 0

QUARANTINE_COLUMNS = ["source_table", "source_key", "rule", "detail"]
EXCLUDED_COLUMNS = ["source_table", "column", "value", "rows"]
"""Excluded rows per table, column and source value (``role``, ``CNA``, 41,526)."""
_CHUNK_ROWS = 1_000_000
"""Rows of a table already in memory (a file) handled at once."""
_SAMPLES = 3
"""Distinct sample values kept per column for ``staffcast validate``."""
_KEYS = {
    "facilities": "facility_id",
    "shift_requests": "request_id",
    "nurses": "nurse_id",
    "shift_offers": "request_id",
}


@dataclass(frozen=True)
class RuleOutcome:
    """How one rule fared on one table."""

    table: str
    rule: str
    level: str
    description: str
    failed_rows: int
    example: str


@dataclass
class ValidationResult:
    """Clean typed frames, the quarantined rows, and the accounting per table."""

    tables: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    counts: dict[str, dict[str, int]]
    outcomes: list[RuleOutcome] = field(default_factory=list)
    impact: DemandImpact = field(default_factory=demand_impact.empty_impact)
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EXCLUDED_COLUMNS))
    samples: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    demand: DailyCounts | None = None
    """Daily demand per facility and role, counted as the requests were read."""
    offers: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The acceptance window's used offers with their request's facility_id, role and
    shift_start (see ``validate_extract``)."""

    def rows(self, table: str) -> tuple[int, int, int]:
        """(extracted, used, quarantined) rows of ``table``."""
        c = self.counts[table]
        return c["extracted"], c["used"], c["quarantined"]

    def excluded_rows(self, table: str) -> int:
        """Rows of ``table`` set aside as out of scope by the mapping."""
        return self.counts[table].get("excluded", 0)


def _context() -> Any:
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _rule_columns(rule: Rule) -> tuple[str, ...]:
    """The columns an expectation reads (its row condition's column included)."""
    expectation = rule.expectation
    names = [getattr(expectation, a, None) for a in ("column", "column_A", "column_B")]
    condition = getattr(expectation, "row_condition", None)
    column = getattr(condition, "column", None)
    names.append(getattr(column, "name", None))
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str)))


def _run_rules(context: Any, table: str, frame: pd.DataFrame, rules: list[Rule]) -> list[Any]:
    """Validate ``frame`` with ``rules`` in GX; results in rule order.

    Rules are grouped by the columns they read and each group sees only those columns (and
    ``_row``): GX's pandas engine copies the frame it filters for every metric, so a narrow
    frame saves both time and memory on millions of rows.
    """
    name = f"{table}_source"
    known = {s.name for s in context.data_sources.all().values()}
    source = (
        context.data_sources.get(name) if name in known else context.data_sources.add_pandas(name)
    )
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, rule in enumerate(rules):
        groups.setdefault(_rule_columns(rule), []).append(index)
    results: dict[int, Any] = {}
    for number, (columns, indexes) in enumerate(groups.items()):
        batch = _batch_definition(source, f"{table}:{','.join(columns)}").get_batch(
            batch_parameters={"dataframe": frame[["_row", *columns]]}
        )
        suite = gx.ExpectationSuite(name=f"{table}_{number}")
        for index in indexes:
            rules[index].expectation.meta = {"rule": rules[index].name, "position": index}
            suite.add_expectation(rules[index].expectation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = batch.validate(
                suite,
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": ["_row"],
                },
            )
        results.update({r.expectation_config.meta["position"]: r for r in outcome.results})
    ordered = [results[i] for i in range(len(rules))]
    for rule, result in zip(rules, ordered, strict=True):
        info = result.exception_info or {}
        if info.get("raised_exception"):
            raise RuntimeError(
                f"Contract rule {table}.{rule.name} could not be evaluated: "
                f"{info.get('exception_message')}"
            )
    return ordered


def _batch_definition(source: Any, asset: str) -> Any:
    """The whole-frame batch definition of ``asset`` (one per table and group of columns),
    made once per validation and reused for every chunk of the table."""
    if asset in {a.name for a in source.assets}:
        return source.get_asset(asset).get_batch_definition("as_of_extract")
    return source.add_dataframe_asset(asset).add_batch_definition_whole_dataframe("as_of_extract")


_DERIVED: dict[str, Callable[[Any], str]] = {
    "_duplicate": lambda kind: f"request_id appears more than once ({kind} copy)",
    "_hours_requested_after_start": lambda hours: (
        f"requested_at is {float(hours):.0f} hours after shift_start"
    ),
}
"""How values of the derived columns read in quarantine details and examples."""


def _describe(column: str | None, value: Any) -> str:
    if column in _DERIVED:
        return _DERIVED[column](value)
    return f"{column}={value!s}"


def _raw_text(frame: pd.DataFrame, column: str | None) -> pd.Series | None:
    """What the source said for values that could not be parsed, by ``_row`` (or None)."""
    raw_column = f"_raw_{column}"
    if raw_column not in frame.columns:
        return None
    kept = frame.loc[frame[raw_column].notna(), ["_row", raw_column]]
    return kept.set_index("_row")[raw_column]


def _value(entry: dict[str, Any], column: str | None, raw_text: pd.Series | None) -> Any:
    row = int(entry["_row"])
    if raw_text is not None and row in raw_text.index:
        return repr(raw_text[row])  # what the source said, not the NaT it became
    return entry.get(column) if column else None


def _example(rule: Rule, result: Any, raw_text: pd.Series | None) -> str:
    values = result.result.get("unexpected_index_list") or []
    if values:
        first = dict(values[0])
        if rule.column in first:
            return _describe(rule.column, _value(first, rule.column, raw_text))
        first.pop("_row", None)
        return ", ".join(_describe(k, v) for k, v in first.items())
    observed = result.result.get("observed_value")
    return f"observed {observed}" if observed is not None else ""


def _check(
    table: str,
    frame: pd.DataFrame,
    rules: list[Rule],
    context: Any,
    outcomes: list[RuleOutcome],
    counts: dict[str, dict[str, int]],
    max_quarantined: int | None = None,
    seen: dict[str, int] | None = None,
    of_rows: int | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Run the rules; raise on batch failures; (which rows are quarantined, a boolean array
    aligned with ``frame``, and their quarantine entries in ``_row`` order, ``_row`` kept).

    With ``max_quarantined``, a row rule broken by more rows than that (``seen`` counts the
    rows each rule failed in earlier chunks of the table, ``of_rows`` the table's rows) stops the
    run before any quarantine entry is built (collecting millions of them row by row takes
    minutes).
    """
    seen = seen or {}
    results = _run_rules(context, table, frame, rules)
    broken: dict[int, list[tuple[str, str]]] = {}
    failures = []
    for rule, result in zip(rules, results, strict=True):
        failed = 0 if result.success else int(result.result.get("unexpected_count") or 1)
        raw_text = None if result.success else _raw_text(frame, rule.column)
        example = "" if result.success else _example(rule, result, raw_text)
        outcomes.append(
            RuleOutcome(table, rule.name, rule.level, rule.description, failed, example)
        )
        if result.success:
            continue
        if rule.level == "batch":
            raise ValidationFailed(
                f"Source table '{table}' broke the batch rule '{rule.name}' ({rule.description}) "
                f"Example: {example or 'no rows'}. The run stopped before publishing anything; "
                "the previously published forecasts stay current.",
                outcomes,
                counts,
            )
        failures.append((rule, result, raw_text, failed, example))
    worst = max(failures, key=lambda f: f[3] + seen.get(f[0].name, 0), default=None)
    if (
        max_quarantined is not None
        and worst is not None
        and worst[3] + seen.get(worst[0].name, 0) > max_quarantined
    ):
        rule, result, _, failed, example = worst
        failed += seen.get(rule.name, 0)
        total = of_rows if of_rows is not None else len(frame)
        entries = result.result.get("unexpected_index_list") or []
        if entries:  # name the row, as the quarantine would have
            at = frame["_row"].to_numpy() == int(entries[0]["_row"])
            example = f"{frame.loc[at, _KEYS[table]].iloc[0]} ({example})"
        raise ValidationFailed(
            f"Source table '{table}' broke the batch rule 'max_quarantine_share': at least "
            f"{failed} of {total} rows ({failed / max(total, 1):.1%}) break the rule "
            f"'{rule.name}' ({rule.description}), more than the allowed share; example: "
            f"{example}. Nothing was published.",
            outcomes,
            counts,
        )
    for rule, result, raw_text, _, _ in failures:
        for entry in result.result.get("unexpected_index_list") or []:
            row = int(entry["_row"])
            value = _value(entry, rule.column, raw_text)
            broken.setdefault(row, []).append((rule.name, _describe(rule.column, value)))
    if not broken:
        return np.zeros(len(frame), dtype=bool), _no_quarantine()
    rows = sorted(broken)
    key = frame.set_index("_row")[_KEYS[table]]
    quarantine = pd.DataFrame(
        {
            "source_table": table,
            "source_key": [str(key.get(r)) if pd.notna(key.get(r)) else f"row {r}" for r in rows],
            "rule": [broken[r][0][0] for r in rows],
            "detail": ["; ".join(f"{name}: {detail}" for name, detail in broken[r]) for r in rows],
            "_row": rows,
        }
    )
    return frame["_row"].isin(rows).to_numpy(), quarantine


def _apply(
    table: str,
    frame: pd.DataFrame,
    rules: list[Rule],
    context: Any,
    outcomes: list[RuleOutcome],
    counts: dict[str, dict[str, int]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the rules (:func:`_check`) and split the rows into (used, quarantine entries)."""
    quarantined, quarantine = _check(table, frame, rules, context, outcomes, counts)
    return (frame[~quarantined] if quarantined.any() else frame), quarantine


def validate_extract(
    extract: SourceExtract,
    agency_timezone: str,
    max_quarantine_share: float,
    recent_days: int,
    *,
    late_cancellation_hours: float = 24.0,
    impact_window_days: int = 28,
    history_days: int = 3 * 365 + 1,
    max_region_loss_share: float | None = None,
    max_source_lag_days: float | None = None,
    offer_window_days: int | None = None,
    keep_rows: bool = True,
) -> ValidationResult:
    """Parse and check every table of ``extract``.

    Raises :class:`ValidationFailed` (nothing published) when a batch-level rule fails, when
    more than ``max_quarantine_share`` of shift_requests rows are quarantined, or when one region
    and role loses more than ``max_region_loss_share`` (default: ``max_quarantine_share``) of its
    last ``impact_window_days`` of demand to quarantined requests, or when no used request
    counts as demand on a day of the ``history_days`` before as_of (rule ``history_demand``: all
    cancelled a day ahead, or only bookings ahead; there would be nothing to forecast).

    With ``max_source_lag_days``, a source whose newest request was made more than that many
    days before as_of stops the run too (rule ``source_freshness``).

    shift_requests and shift_offers are read chunk by chunk (:class:`_RequestPass`): what
    stays is per-series daily demand (``demand``), the used offers of the last
    ``offer_window_days`` (all, when None) joined to their requests (``offers``), quarantine
    entries and the quarantined and excluded requests. With ``keep_rows`` every used row of
    those two tables is kept in ``tables`` too (small extracts, tests, ``staffcast validate``
    on a sample); the weekly run does not keep them. The raw frames are taken out of
    ``extract.tables`` as each table is parsed.
    """
    context = _context()
    outcomes: list[RuleOutcome] = []
    raw = extract.tables  # consumed table by table
    counts: dict[str, dict[str, int]] = {}
    quarantines = []
    excluded_parts: list[pd.DataFrame] = []
    samples: dict[str, dict[str, list[str]]] = {}

    def options(table: str) -> parsing.ParseOptions:
        return extract.options.get(table, parsing.DEFAULT_OPTIONS)

    facilities = parsing.parse_facilities(
        _whole(raw.pop("facilities"), samples, "facilities"), options=options("facilities")
    )
    facilities, excluded = _set_aside("facilities", facilities, excluded_parts)
    n_facilities = len(facilities) + len(excluded)
    all_facilities = facilities
    known_facilities = sorted(facilities["facility_id"].dropna().unique())
    facilities, q = _apply(
        "facilities", facilities, suites.facility_rules(), context, outcomes, counts
    )
    quarantines.append(q)
    counts["facilities"] = _count(n_facilities, facilities, q, excluded)

    window = None if offer_window_days is None else pd.Timedelta(days=offer_window_days + 1)
    offer_outcomes: list[RuleOutcome] = []
    offer_counts: dict[str, dict[str, int]] = {}
    offers = _validate_offers(
        raw.pop("shift_offers"),
        options("shift_offers"),
        extract,
        agency_timezone,
        None if window is None else extract.as_of_utc - window,
        context,
        offer_outcomes,
        offer_counts,
        samples,
        excluded_parts,
        keep_rows,
    )
    requests = _RequestPass(
        extract,
        agency_timezone,
        facilities,
        all_facilities,
        known_facilities,
        recent_days,
        late_cancellation_hours,
        impact_window_days,
        history_days,
        np.unique(offers.window["_key"].to_numpy()),
        keep_rows,
    )
    requests.run(
        raw.pop("shift_requests"),
        options("shift_requests"),
        context,
        outcomes,
        counts,
        samples,
        excluded_parts,
        max_quarantine_share,
        max_source_lag_days,
    )
    q = requests.quarantine
    quarantines.append(q)
    extracted_requests = counts["shift_requests"]["extracted"]
    share = len(q) / extracted_requests if extracted_requests else 0.0
    if share > max_quarantine_share:
        top = q["rule"].value_counts()
        raise ValidationFailed(
            f"Source table 'shift_requests' broke the batch rule 'max_quarantine_share': "
            f"{len(q)} of {extracted_requests} rows ({share:.1%}) were quarantined, more than "
            f"the allowed {max_quarantine_share:.0%}. Most common rule: '{top.index[0]}' "
            f"({top.iloc[0]} rows), example: {q.iloc[0]['source_key']} "
            f"({q.iloc[0]['detail']}). Nothing was published.",
            outcomes,
            counts,
        )
    impact = demand_impact.assess(
        requests.used_stats,
        requests.lost,
        requests.excluded,
        all_facilities,
        facilities,
        extract.as_of,
        extract.as_of_utc,
        agency_timezone,
        late_cancellation_hours,
        impact_window_days,
        history_days,
        excluded_lost=requests.excluded_lost,
    )
    requests.lost = requests.excluded = requests.excluded_lost = pd.DataFrame()
    limit = max_quarantine_share if max_region_loss_share is None else max_region_loss_share
    worst = demand_impact.region_loss_stop(impact.impact, limit)
    if worst is not None:
        region, role, region_share = worst
        keys = q[q["detail"].notna()]
        example = (
            f" Example: {keys.iloc[0]['source_key']} ({keys.iloc[0]['detail']})."
            if len(keys)
            else ""
        )
        raise ValidationFailed(
            f"Source table 'shift_requests' broke the batch rule 'max_region_loss_share': "
            f"{region} {role} lost {region_share:.1%} of its last {impact_window_days} days' "
            f"demand to quarantined requests, more than the allowed {limit:.0%} for one region "
            f"and role (agency-wide {share:.1%} of rows were quarantined).{example} A plan for "
            f"{region} {role} would be short by about that much; fix the rows and run again. "
            "Nothing was published.",
            outcomes,
            counts,
            impact=impact.impact,
        )
    _check_history_demand(requests.demand, extract, history_days, outcomes, counts, impact.impact)

    nurses = parsing.parse_nurses(
        _whole(raw.pop("nurses"), samples, "nurses"), options=options("nurses")
    )
    nurses = nurses[~(nurses["hired_on"] >= extract.as_of_utc.tz_localize(None).normalize())]
    nurses, excluded = _set_aside("nurses", nurses, excluded_parts)
    n_nurses = len(nurses) + len(excluded)
    nurses, q = _apply("nurses", nurses, suites.nurse_rules(), context, outcomes, counts)
    quarantines.append(q)
    counts["nurses"] = _count(n_nurses, nurses, q, excluded)
    outcomes += offer_outcomes
    counts.update(offer_counts)
    quarantines.append(offers.quarantine)

    quarantine = pd.concat(
        [x for x in quarantines if len(x)] or [quarantines[0]], ignore_index=True
    ).drop(columns="_row", errors="ignore")
    tables = {"facilities": _without_raw(facilities), "nurses": _without_raw(nurses)}
    if keep_rows:
        tables["shift_requests"] = requests.kept_rows()
        tables["shift_offers"] = offers.kept
    for name, c in counts.items():
        logger.info(
            "%s: %d extracted, %d used, %d quarantined, %d excluded",
            name,
            c["extracted"],
            c["used"],
            c["quarantined"],
            c["excluded"],
        )
    excluded_summary = (
        pd.concat(excluded_parts, ignore_index=True)
        if excluded_parts
        else pd.DataFrame(columns=EXCLUDED_COLUMNS)
    )
    return ValidationResult(
        tables,
        quarantine,
        counts,
        outcomes,
        impact,
        excluded_summary,
        samples,
        demand=requests.demand,
        offers=requests.offer_facts(offers.window),
    )


@dataclass
class _Offers:
    """What the offers pass keeps: quarantine entries, the used offers of the acceptance window
    (``_key`` of their request, ``response``, ``offered_at``), and every used row on request."""

    quarantine: pd.DataFrame
    window: pd.DataFrame
    kept: pd.DataFrame


def _validate_offers(
    table: RawTable,
    options: parsing.ParseOptions,
    extract: SourceExtract,
    agency_timezone: str,
    window_start: pd.Timestamp | None,
    context: Any,
    outcomes: list[RuleOutcome],
    counts: dict[str, dict[str, int]],
    samples: dict[str, dict[str, list[str]]],
    excluded_parts: list[pd.DataFrame],
    keep_rows: bool,
) -> _Offers:
    """shift_offers chunk by chunk (their rules read no other table). Only the used offers made
    since ``window_start`` (all, when None) are kept, as a request key and a response: what the
    acceptance estimates need once the requests are read."""
    rules = suites.shift_offer_rules()
    extracted = used = excluded_rows = 0
    chunk_outcomes: list[list[RuleOutcome]] = []
    quarantine, window, kept = [], [], []
    offset = 0
    for number, chunk in enumerate(_slices(table), start=1):
        _collect_now_and_then(number)
        if offset == 0:
            _keep_samples(samples, "shift_offers", chunk)
        part = _compact_raw(
            parsing.parse_shift_offers(chunk, agency_timezone, offset, options=options)
        )
        offset += len(chunk)
        part = part[~(part["offered_at"] >= extract.as_of_utc).to_numpy()]
        part, excluded = _set_aside("shift_offers", part, excluded_parts)
        extracted += len(part) + len(excluded)
        excluded_rows += len(excluded)
        if part.empty:
            continue
        found: list[RuleOutcome] = []
        chunk_outcomes.append(found)
        part, q = _apply("shift_offers", part, rules, context, found, counts)
        quarantine.append(q)
        used += len(part)
        recent = part if window_start is None else part[part["offered_at"] >= window_start]
        window.append(
            pd.DataFrame(
                {
                    "_key": parsing.key_hashes(recent["request_id"]),
                    "response": pd.Categorical(recent["response"]),
                    "offered_at": recent["offered_at"].array,
                }
            )
        )
        if keep_rows:
            kept.append(_without_raw(part))
    outcomes += _merge_outcomes(chunk_outcomes, rules)
    entries = pd.concat(quarantine, ignore_index=True) if quarantine else _no_quarantine()
    counts["shift_offers"] = {
        "extracted": extracted,
        "used": used,
        "quarantined": len(entries),
        "excluded": excluded_rows,
    }
    return _Offers(
        entries,
        _concat_categories(window)
        if window
        else pd.DataFrame({"_key": np.zeros(0, np.uint64), "response": [], "offered_at": []}),
        _concat_categories(kept) if kept else pd.DataFrame(),
    )


class _RequestPass:
    """shift_requests, chunk by chunk, in bounded memory.

    A first pass reads the request ids alone and keeps the hashes of those that occur more than
    once (8 bytes a row while it runs, then only the repeated ones). The second pass parses each
    chunk, sets aside the rows whose id repeats (checked together at the end, so that
    ``duplicate_request_id`` keeps its meaning across chunks), cuts at as_of, runs the row rules and
    keeps only: quarantine entries, the quarantined and excluded rows (for their demand impact),
    the daily demand per series (:class:`models.demand.DailyCounts`), the impact's statistics
    of used requests (:class:`data_contracts.impact.UsedStats`), the context of the requests
    that offers name, and the row with the newest requested_at (the batch rules run on it at the
    end: there is at least one row, and the newest is recent enough).
    """

    def __init__(
        self,
        extract: SourceExtract,
        agency_timezone: str,
        facilities: pd.DataFrame,
        all_facilities: pd.DataFrame,
        known_facilities: list[str],
        recent_days: int,
        late_cancellation_hours: float,
        impact_window_days: int,
        history_days: int,
        offer_keys: np.ndarray,
        keep_rows: bool,
    ) -> None:
        self.extract = extract
        self.agency_timezone = agency_timezone
        self.zones = facilities.set_index("facility_id")["timezone"]
        rules = suites.shift_request_rules(
            sorted(facilities["facility_id"].dropna()),
            extract.as_of_utc,
            recent_days,
            known_facilities,
        )
        self.rules = rules
        self.row_rules = [r for r in rules if r.level == "row"]
        self.batch_rules = [r for r in rules if r.level == "batch"]
        self.demand = DailyCounts(
            pd.Index(facilities["facility_id"].dropna().astype(str)),
            suites.ROLES,
            self.zones,
            extract.as_of,
            extract.as_of_utc,
            history_days,
            late_cancellation_hours,
        )
        self.all_zones = demand_impact.zones_of(all_facilities, agency_timezone)
        self.used_stats = demand_impact.UsedStats(
            self.all_zones,
            extract.as_of,
            extract.as_of_utc,
            late_cancellation_hours,
            impact_window_days,
        )
        self.offer_keys = offer_keys
        self.keep_rows = keep_rows
        self.lost = pd.DataFrame()
        self.excluded = pd.DataFrame()
        self.excluded_lost = pd.DataFrame()
        self.quarantine = _no_quarantine()
        self._lost: list[pd.DataFrame] = []
        self._excluded: list[pd.DataFrame] = []
        self._excluded_lost = pd.DataFrame()
        self._quarantine: list[pd.DataFrame] = []
        self._context: list[pd.DataFrame] = []
        self._kept: list[pd.DataFrame] = []
        self._outcomes: list[list[RuleOutcome]] = []
        self._failed: dict[str, int] = {}
        self._newest: pd.DataFrame | None = None
        self._empty: pd.DataFrame | None = None
        self.extracted = self.in_scope = self.used = self.excluded_rows = 0

    def run(
        self,
        table: RawTable,
        options: parsing.ParseOptions,
        context: Any,
        outcomes: list[RuleOutcome],
        counts: dict[str, dict[str, int]],
        samples: dict[str, dict[str, list[str]]],
        excluded_parts: list[pd.DataFrame],
        max_quarantine_share: float,
        max_source_lag_days: float | None,
    ) -> None:
        """Both passes; raises :class:`ValidationFailed` as the rules say."""
        repeated, rows_read = _repeated_keys(table, "request_id", options)
        limit = int(max_quarantine_share * rows_read)
        held: list[pd.DataFrame] = []
        offset = 0
        for number, chunk in enumerate(_slices(table), start=1):
            _collect_now_and_then(number)
            if offset == 0:
                _keep_samples(samples, "shift_requests", chunk)
            part = parsing.parse_shift_requests(
                chunk, self.zones, self.agency_timezone, offset, options=options
            )
            offset += len(chunk)
            part = _compact_raw(part)
            part["_key"] = parsing.key_hashes(part["request_id"])
            repeats = _member(part["_key"].to_numpy(), repeated)
            if repeats.any():
                held.append(part[repeats])
                part = part[~repeats]
            part["_duplicate"] = pd.Categorical.from_codes(
                np.zeros(len(part), dtype=np.int8), categories=["no"]
            )
            self._take(part, context, counts, excluded_parts, limit, rows_read)
            if offset and offset % 10_000_000 < len(chunk):
                logger.info("shift_requests: %d rows checked", offset)
        if held:
            copies = _concat_categories(held)
            copies["_duplicate"] = parsing.duplicate_kind(
                copies,
                "request_id",
                ignore=(
                    "_row",
                    "_key",
                    "_hours_requested_after_start",
                    *[c for c in copies.columns if c.startswith("_raw_") or c == "_excluded"],
                ),
            )
            self._take(copies, context, counts, excluded_parts, limit, rows_read)
        counts["shift_requests"] = {
            "extracted": self.extracted,
            "used": self.used,
            "quarantined": sum(len(q) for q in self._quarantine),
            "excluded": self.excluded_rows,
        }
        if max_source_lag_days is not None and self._newest is not None:
            _check_freshness(self._newest["requested_at"], self.extract, max_source_lag_days)
        found: list[RuleOutcome] = []
        newest = self._newest if self._newest is not None else self._empty
        if newest is not None and self.in_scope == 0:
            newest = newest.iloc[0:0]
        if newest is not None:
            _check("shift_requests", newest, self.batch_rules, context, found, counts)
        outcomes += _merge_outcomes([*self._outcomes, found], self.rules)
        quarantine = [q for q in self._quarantine if len(q)]
        self.quarantine = (
            pd.concat(quarantine, ignore_index=True).sort_values("_row", ignore_index=True)
            if quarantine
            else _no_quarantine()
        )
        self.lost = _concat_or_empty(self._lost)
        self.excluded = _concat_or_empty(self._excluded)
        self.excluded_lost = self._excluded_lost
        self._lost, self._excluded = [], []

    def _take(
        self,
        part: pd.DataFrame,
        context: Any,
        counts: dict[str, dict[str, int]],
        excluded_parts: list[pd.DataFrame],
        limit: int,
        rows_read: int,
    ) -> None:
        """One chunk of parsed rows (with ``_duplicate``)."""
        if self._empty is None:
            self._empty = part.iloc[0:0].drop(columns=["_excluded"])
        existed = ~(part["requested_at"] >= self.extract.as_of_utc).to_numpy()
        self.extracted += int(existed.sum())
        excluded_mask = _excluded_mask(part)
        excluded = part[existed & excluded_mask].drop(columns=["_excluded"])
        if len(excluded):
            _summarise_excluded("shift_requests", excluded, excluded_parts)
            summary, rest = demand_impact.excluded_losses(
                _slim(excluded),
                self.all_zones,
                self.extract.as_of_utc,
                self.demand.late_cancellation_hours,
            )
            self._excluded_lost = demand_impact.combine_losses([self._excluded_lost, summary])
            if len(rest):
                self._excluded.append(rest)
            self.excluded_rows += len(excluded)
        rows = part[existed & ~excluded_mask].drop(columns=["_excluded"])
        if rows.empty:
            return
        self.in_scope += len(rows)
        self._keep_newest(rows)
        found: list[RuleOutcome] = []
        self._outcomes.append(found)
        quarantined, q = _check(
            "shift_requests",
            rows,
            self.row_rules,
            context,
            found,
            counts,
            max_quarantined=limit,
            seen=self._failed,
            of_rows=rows_read,
        )
        for outcome in found:
            self._failed[outcome.rule] = self._failed.get(outcome.rule, 0) + outcome.failed_rows
        self._quarantine.append(q)
        if quarantined.any():
            self._lost.append(_slim(rows[quarantined]))
            rows = rows[~quarantined]
        used = _without_raw(rows)
        self.used += len(used)
        self.demand.add(used)
        self.used_stats.add(used)
        offered = _member(used["_key"].to_numpy(), self.offer_keys)
        if offered.any():
            self._context.append(used.loc[offered, ["_key", "facility_id", "role", "shift_start"]])
        if self.keep_rows:
            self._kept.append(used.drop(columns=["_key"]))

    def _keep_newest(self, rows: pd.DataFrame) -> None:
        """Keep the in-scope row with the newest requested_at (the batch rules' one row)."""
        stamps = rows["requested_at"]
        if stamps.notna().any():
            best = rows.loc[[stamps.idxmax()]]
            if self._newest is None or not (
                self._newest["requested_at"].iloc[0] >= best["requested_at"].iloc[0]
            ):
                self._newest = _without_raw(best)
        elif self._newest is None:
            self._newest = _without_raw(rows.iloc[:1])

    def kept_rows(self) -> pd.DataFrame:
        """Every used row, in source order (only with ``keep_rows``)."""
        if not self._kept:
            return pd.DataFrame()
        return _concat_categories(self._kept).sort_values("_row", ignore_index=True)

    def offer_facts(self, window: pd.DataFrame) -> pd.DataFrame:
        """The acceptance window's used offers joined to their used request: ``facility_id,
        role, shift_start, response, offered_at``. Offers of a request that was not used
        (quarantined, or not in the extract) cannot be placed and are left out."""
        columns = ["facility_id", "role", "shift_start", "response", "offered_at"]
        if not self._context or window.empty:
            return pd.DataFrame(columns=columns)
        requests = _concat_categories(self._context).drop_duplicates("_key")
        self._context = []
        facts = window.merge(requests, on="_key", how="inner")[columns]
        # Categories: a million offers in a few bytes each, not a Python string per value.
        return facts.astype({c: "category" for c in ("facility_id", "role", "response")})


_COLLECT_EVERY = 4
"""Chunks between two full garbage collections during validation."""


def _collect_now_and_then(chunk_number: int) -> None:
    """A full garbage collection before every :data:`_COLLECT_EVERY`-th chunk: Great
    Expectations leaves frames in reference cycles, which Python's own schedule frees late when
    millions of long-lived objects are loaded, so the garbage of many chunks piled up (at 2,000
    facilities the validation peak varied by 330 MB between runs; with this, 1,820 MB). A
    collection costs about half a second; every chunk would add 10% to validation's CPU."""
    if chunk_number % _COLLECT_EVERY == 0:
        gc.collect()


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Which ``keys`` are in the sorted, unique ``sorted_keys`` (0, a missing id, never is).

    Against millions of sorted keys (the acceptance window's offers), the keys are looked up
    in their own sorted order: neighbouring lookups then touch neighbouring memory, about 8x
    faster than a million random binary searches, with the same answer.
    """
    if len(sorted_keys) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    if len(sorted_keys) < _SMALL_KEY_SET:
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        return (sorted_keys[at] == keys) & (keys != 0)
    order = np.argsort(keys)
    ordered = keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, ordered), len(sorted_keys) - 1)
    found = np.empty(len(keys), dtype=bool)
    found[order] = (sorted_keys[at] == ordered) & (ordered != 0)
    return found


_SMALL_KEY_SET = 1 << 16
"""Sorted keys this few fit in the CPU's cache: random lookups are cheap there."""


def _repeated_keys(
    table: RawTable, column: str, options: parsing.ParseOptions
) -> tuple[np.ndarray, int]:
    """(sorted hashes of the ids in ``column`` that occur more than once, rows read): the first
    pass of :class:`_RequestPass`, reading that one column."""
    narrow = table[[column]] if isinstance(table, pd.DataFrame) else table.narrowed((column,))
    parts = [
        parsing.key_hashes(parsing.key_text(chunk, column, options)) for chunk in _slices(narrow)
    ]
    if not parts:
        return np.zeros(0, dtype=np.uint64), 0
    hashes = np.concatenate(parts)
    del parts
    hashes.sort()
    rows = len(hashes)
    hashes = hashes[hashes != 0]
    repeated = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    return repeated, rows


def _slices(table: RawTable) -> Iterator[pd.DataFrame]:
    """A raw table's chunks; a table already in memory (a small file) is cut into slices of
    ``_CHUNK_ROWS``, so the frames derived from it stay small."""
    for chunk in table_chunks(table):
        if len(chunk) <= _CHUNK_ROWS:
            yield chunk
            continue
        for start in range(0, len(chunk), _CHUNK_ROWS):
            yield chunk.iloc[start : start + _CHUNK_ROWS]


def _compact_raw(part: pd.DataFrame) -> pd.DataFrame:
    """A parsed chunk with the source's text of unparsed values (``_raw_*``) as categories: it
    is almost always missing, and a category costs a byte or two a row instead of a string's
    eight. (Columns of objects carry parsing's hinted values, which a category would turn back
    into plain text.)"""
    raw = [c for c in part.columns if c.startswith("_raw_") and part[c].dtype != object]
    return part.astype(dict.fromkeys(raw, "category")) if raw else part


def _slim(rows: pd.DataFrame) -> pd.DataFrame:
    """Parsed request rows kept for their demand impact: no source text, no derived checks."""
    return _without_raw(rows).drop(
        columns=[c for c in ("_key", "_hours_requested_after_start") if c in rows.columns]
    )


def _concat_or_empty(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return _concat_categories(parts) if parts else pd.DataFrame()


def _no_quarantine() -> pd.DataFrame:
    return pd.DataFrame(columns=[*QUARANTINE_COLUMNS, "_row"])


def _merge_outcomes(parts: list[list[RuleOutcome]], rules: list[Rule]) -> list[RuleOutcome]:
    """One outcome per rule over every chunk: failed rows summed, the first example kept, in
    the suite's order."""
    merged: dict[str, RuleOutcome] = {}
    for outcomes in parts:
        for o in outcomes:
            before = merged.get(o.rule)
            if before is None:
                merged[o.rule] = o
            else:
                merged[o.rule] = replace(
                    before,
                    failed_rows=before.failed_rows + o.failed_rows,
                    example=before.example or o.example,
                )
    order = {rule.name: i for i, rule in enumerate(rules)}
    return sorted(merged.values(), key=lambda o: order.get(o.rule, len(order)))


def _check_freshness(requested_at: pd.Series, extract: SourceExtract, lag_days: float) -> None:
    """Stop when the newest request is older than ``lag_days`` before as_of (a replica that
    lags, an export from last week): the missing days would read as a fall in demand."""
    newest = requested_at.max()
    limit = extract.as_of_utc - pd.Timedelta(days=lag_days)
    if pd.isna(newest) or newest >= limit:
        return  # an empty or unreadable extract is left to the rules that name it
    age = (extract.as_of_utc - newest) / pd.Timedelta(days=1)
    raise ValidationFailed(
        f"Source table 'shift_requests' broke the batch rule 'source_freshness': its newest "
        f"request was made at {newest:%Y-%m-%d %H:%M} UTC, {age:.1f} days before as_of "
        f"{extract.as_of} (allowed: {lag_days:g} days). A source that lags (a replica behind, "
        "an old export) would publish the missing days as a fall in demand. Check that the "
        "source is current, or run for an earlier as_of; STAFFCAST_MAX_SOURCE_LAG_DAYS sets "
        "the limit. Nothing was published."
    )


def _check_history_demand(
    demand: DailyCounts,
    extract: SourceExtract,
    history_days: int,
    outcomes: list[RuleOutcome],
    counts: dict[str, dict[str, int]],
    impact: pd.DataFrame,
) -> None:
    """Stop (rule ``history_demand``) when no used request counts as demand on a day of the
    ``history_days`` before as_of: every one was cancelled a day ahead, or is for as_of or later.

    Forecasts start from each facility and role's daily demand in that window
    (:class:`models.demand.DailyCounts`, counted as the requests were read); with none there is
    no series to forecast and no pool to size, so the run stops here instead of failing later.
    """
    if demand.any_demand():
        return
    raise ValidationFailed(
        f"Source table 'shift_requests' broke the batch rule 'history_demand': none of its "
        f"{demand.requests} used requests counts as demand on a day of the {history_days} days "
        f"before as_of {extract.as_of} (cancelled {demand.late_cancellation_hours:g} hours or "
        f"more before the shift: {demand.early_cancelled}; shifts on or after as_of: "
        f"{demand.after}; shifts before those days: {demand.before}). Forecasts start from "
        "each facility's past demand, so there is nothing to plan from: check that the source "
        "holds the past requests with their statuses, or run for a later as_of. Nothing was "
        "published.",
        outcomes,
        counts,
        impact=impact,
    )


def _without_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """A used table without the source's text kept for quarantine details (``_raw_*``)."""
    return frame.drop(columns=[c for c in frame.columns if c.startswith("_raw_")])


def validate_with_settings(
    extract: SourceExtract, settings: Settings, keep_rows: bool = False
) -> ValidationResult:
    """:func:`validate_extract` with the thresholds of ``settings`` (the weekly run's and
    ``staffcast validate``'s one call); used request and offer rows are kept only with
    ``keep_rows``."""
    return validate_extract(
        extract,
        settings.agency_timezone,
        settings.max_quarantine_share,
        settings.recent_days_required,
        late_cancellation_hours=settings.late_cancellation_hours,
        impact_window_days=settings.impact_window_days,
        history_days=settings.history_days,
        max_region_loss_share=settings.max_region_loss_share,
        max_source_lag_days=settings.max_source_lag_days,
        offer_window_days=settings.acceptance_lookback_days,
        keep_rows=keep_rows,
    )


def _excluded_mask(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of a parsed table the mapping declares out of scope (``_excluded``)."""
    return frame["_excluded"].fillna(False).to_numpy(dtype=bool)


def _set_aside(
    table: str, frame: pd.DataFrame, summaries: list[pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(in scope, excluded) rows of a parsed table; the excluded rows' values are summarised
    into ``summaries`` (table, column, value, rows)."""
    mask = _excluded_mask(frame)
    if not mask.any():  # no copy of millions of rows for nothing
        kept = frame.drop(columns=["_excluded"])
        return kept, kept.iloc[0:0]
    excluded = frame[mask].drop(columns=["_excluded"])
    _summarise_excluded(table, excluded, summaries)
    return frame[~mask].drop(columns=["_excluded"]), excluded


def _summarise_excluded(table: str, excluded: pd.DataFrame, summaries: list[pd.DataFrame]) -> None:
    """Excluded rows per value of the column they were excluded for (table, column, value,
    rows), appended to ``summaries``."""
    if excluded.empty:
        return
    reasons = [c for c in ("role", "facility_type", "status", "response") if c in excluded]
    if not reasons:
        summaries.append(
            pd.DataFrame(
                {"source_table": [table], "column": [""], "value": [""], "rows": [len(excluded)]}
            )
        )
        return
    values = excluded[reasons[0]].astype(object).fillna("(blank)").astype(str).value_counts()
    summaries.append(
        pd.DataFrame(
            {
                "source_table": table,
                "column": reasons[0],
                "value": values.index.astype(str),
                "rows": values.to_numpy().astype(int),
            }
        )
    )


def _whole(table: RawTable, samples: dict[str, dict[str, list[str]]], name: str) -> pd.DataFrame:
    """A raw table as one frame (streamed chunks joined; small tables only)."""
    chunks = list(table_chunks(table))
    if chunks:
        _keep_samples(samples, name, chunks[0])
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def _concat_categories(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate parsed chunks keeping categorical columns categorical (pandas turns
    categories that differ between chunks into strings: ten times the memory)."""
    shared = [
        column
        for column in parts[0].columns
        if all(isinstance(part[column].dtype, pd.CategoricalDtype) for part in parts)
    ]
    if shared:
        categories = {
            column: pd.Index(
                pd.concat([part[column].cat.categories.to_series() for part in parts])
            ).unique()
            for column in shared
        }
        parts = [
            part.assign(
                **{column: part[column].cat.set_categories(categories[column]) for column in shared}
            )
            for part in parts
        ]
    return pd.concat(parts, ignore_index=True)


def _keep_samples(samples: dict[str, dict[str, list[str]]], name: str, chunk: pd.DataFrame) -> None:
    """A few distinct values per column of a table's first chunk, as the source gave them."""
    kept: dict[str, list[str]] = {}
    for column in chunk.columns:
        values = chunk[column].dropna().head(1000).astype(str).drop_duplicates().head(_SAMPLES)
        kept[str(column)] = [str(v) for v in values]
    samples[name] = kept


def _count(
    extracted: int,
    used: pd.DataFrame,
    quarantine: pd.DataFrame,
    excluded: pd.DataFrame | None = None,
) -> dict[str, int]:
    """Rows of one table: ``extracted`` is counted before the rules ran, independently of the
    split, so that extracted = used + quarantined + excluded is a check and not a definition."""
    return {
        "extracted": extracted,
        "used": len(used),
        "quarantined": len(quarantine),
        "excluded": 0 if excluded is None else len(excluded),
    }
