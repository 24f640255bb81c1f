"""Run the data contracts on an extract: clean frames out, bad rows to quarantine, or a stop.

Every extracted row ends up used, in quarantine with the rule it broke, or excluded as out of
scope by the source mapping (a CNA shift): rows_extracted = rows_used + rows_quarantined +
rows_excluded, per table. Excluded rows are set aside before any rule runs, so they never count
toward the quarantine share. A row that breaks several rules is quarantined once, under the
first rule in suite order; the detail lists the others.

The demand that quarantined and excluded requests would have carried is measured by
:mod:`data_contracts.impact`; a region and role that loses more than ``max_region_loss_share``
of its recent demand stops the run, whatever the agency-wide share.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
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
from models.demand import counted_requests, early_cancellation
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
    source = context.data_sources.add_pandas(f"{table}_source")
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, rule in enumerate(rules):
        groups.setdefault(_rule_columns(rule), []).append(index)
    results: dict[int, Any] = {}
    for number, (columns, indexes) in enumerate(groups.items()):
        batch = (
            source.add_dataframe_asset(f"{table}_{number}")
            .add_batch_definition_whole_dataframe("as_of_extract")
            .get_batch(batch_parameters={"dataframe": frame[["_row", *columns]]})
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
) -> tuple[np.ndarray, pd.DataFrame]:
    """Run the rules; raise on batch failures; (which rows are quarantined, a boolean array
    aligned with ``frame``, and their quarantine entries in ``_row`` order).

    With ``max_quarantined``, a row rule broken by more rows than that stops the run before
    any quarantine entry is built (collecting millions of them row by row takes minutes).
    """
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
    worst = max(failures, key=lambda f: f[3], default=None)
    if max_quarantined is not None and worst is not None and worst[3] > max_quarantined:
        rule, result, _, failed, example = worst
        entries = result.result.get("unexpected_index_list") or []
        if entries:  # name the row, as the quarantine would have
            at = frame["_row"].to_numpy() == int(entries[0]["_row"])
            example = f"{frame.loc[at, _KEYS[table]].iloc[0]} ({example})"
        raise ValidationFailed(
            f"Source table '{table}' broke the batch rule 'max_quarantine_share': at least "
            f"{failed} of {len(frame)} rows ({failed / max(len(frame), 1):.1%}) break the rule "
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
        return np.zeros(len(frame), dtype=bool), pd.DataFrame(columns=QUARANTINE_COLUMNS)
    rows = sorted(broken)
    key = frame.set_index("_row")[_KEYS[table]]
    quarantine = pd.DataFrame(
        {
            "source_table": table,
            "source_key": [str(key.get(r)) if pd.notna(key.get(r)) else f"row {r}" for r in rows],
            "rule": [broken[r][0][0] for r in rows],
            "detail": ["; ".join(f"{name}: {detail}" for name, detail in broken[r]) for r in rows],
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

    The raw frames are taken out of ``extract.tables`` as each table is parsed, so that
    millions of rows of text are not held in memory twice.
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

    zones = facilities.set_index("facility_id")["timezone"]
    requests = _parse_in_chunks(
        raw.pop("shift_requests"),
        samples,
        "shift_requests",
        parsing.parse_shift_requests,
        zones,
        agency_timezone,
        options=options("shift_requests"),
    )
    requests["_duplicate"] = parsing.duplicate_kind(
        requests,
        "request_id",
        ignore=(
            "_row",
            "_hours_requested_after_start",
            *[c for c in requests.columns if c.startswith("_raw_") or c == "_excluded"],
        ),
    )
    # The exact as_of cut: rows requested at or after as_of did not exist yet (the SQL query
    # kept a day's margin). Unparseable requested_at stays, to be quarantined. One mask with
    # the exclusions, so that millions of rows are copied once.
    existed = ~(requests["requested_at"] >= extract.as_of_utc).to_numpy()
    extracted_requests = int(existed.sum())
    if max_source_lag_days is not None:
        _check_freshness(requests["requested_at"][existed], extract, max_source_lag_days)
    excluded_mask = _excluded_mask(requests)
    excluded_requests = requests[existed & excluded_mask].drop(columns=["_excluded"])
    _summarise_excluded("shift_requests", excluded_requests, excluded_parts)
    requests = requests[existed & ~excluded_mask].drop(columns=["_excluded"])
    del existed, excluded_mask
    rules = suites.shift_request_rules(
        sorted(facilities["facility_id"].dropna()),
        extract.as_of_utc,
        recent_days,
        known_facilities,
    )
    quarantined, q = _check(
        "shift_requests",
        requests,
        rules,
        context,
        outcomes,
        counts,
        max_quarantined=int(max_quarantine_share * extracted_requests),
    )
    lost = requests[quarantined]
    requests = _without_raw(requests)
    if quarantined.any():
        requests = requests[~quarantined]
    del quarantined
    quarantines.append(q)
    counts["shift_requests"] = _count(extracted_requests, requests, q, excluded_requests)
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
        requests,
        lost,
        excluded_requests,
        all_facilities,
        facilities,
        extract.as_of,
        extract.as_of_utc,
        agency_timezone,
        late_cancellation_hours,
        impact_window_days,
        history_days,
    )
    del lost, excluded_requests
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
    _check_history_demand(
        requests,
        zones,
        extract,
        history_days,
        late_cancellation_hours,
        outcomes,
        counts,
        impact.impact,
    )

    nurses = parsing.parse_nurses(
        _whole(raw.pop("nurses"), samples, "nurses"), options=options("nurses")
    )
    nurses = nurses[~(nurses["hired_on"] >= extract.as_of_utc.tz_localize(None).normalize())]
    nurses, excluded = _set_aside("nurses", nurses, excluded_parts)
    n_nurses = len(nurses) + len(excluded)
    nurses, q = _apply("nurses", nurses, suites.nurse_rules(), context, outcomes, counts)
    quarantines.append(q)
    counts["nurses"] = _count(n_nurses, nurses, q, excluded)

    offers = _parse_in_chunks(
        raw.pop("shift_offers"),
        samples,
        "shift_offers",
        parsing.parse_shift_offers,
        agency_timezone,
        options=options("shift_offers"),
    )
    offers = offers[~(offers["offered_at"] >= extract.as_of_utc)]
    offers, excluded = _set_aside("shift_offers", offers, excluded_parts)
    n_offers = len(offers) + len(excluded)
    if len(offers):
        offers, q = _apply(
            "shift_offers", offers, suites.shift_offer_rules(), context, outcomes, counts
        )
        quarantines.append(q)
    else:
        q = pd.DataFrame(columns=QUARANTINE_COLUMNS)
    counts["shift_offers"] = _count(n_offers, offers, q, excluded)

    quarantine = pd.concat(
        [x for x in quarantines if len(x)] or [quarantines[0]], ignore_index=True
    )
    tables = {
        "facilities": _without_raw(facilities),
        "shift_requests": requests,
        "nurses": _without_raw(nurses),
        "shift_offers": _without_raw(offers),
    }
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
    return ValidationResult(tables, quarantine, counts, outcomes, impact, excluded_summary, samples)


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
    requests: pd.DataFrame,
    zones: pd.Series,
    extract: SourceExtract,
    history_days: int,
    late_cancellation_hours: float,
    outcomes: list[RuleOutcome],
    counts: dict[str, dict[str, int]],
    impact: pd.DataFrame,
) -> None:
    """Stop (rule ``history_demand``) when no used request counts as demand on a day of the
    ``history_days`` before as_of: every one was cancelled a day ahead, or is for as_of or later.

    Forecasts start from each facility and role's daily demand in that window
    (:func:`models.demand.daily_demand`, same definition); with none there is no series to
    forecast and no pool to size, so the run stops here instead of failing later. ``zones`` is
    facility_id -> IANA zone of the usable facilities; ``requests`` are the used rows.
    """
    first_day = pd.Timestamp(extract.as_of - timedelta(days=history_days))
    as_of_day = pd.Timestamp(extract.as_of)
    # Cheap first: a request not cancelled whose shift starts a day inside the window (in UTC)
    # counts in any zone; millions of rows are not converted to local dates for nothing.
    day = pd.Timedelta(days=1)
    start = requests["shift_start"]
    inner = (start >= first_day.tz_localize("UTC") + day) & (
        start < as_of_day.tz_localize("UTC") - day
    )
    if (inner & requests["status"].ne("cancelled")).any():
        return
    frame = requests.assign(timezone=requests["facility_id"].map(zones))
    early = early_cancellation(frame, extract.as_of_utc, late_cancellation_hours)
    dates = counted_requests(frame, extract.as_of_utc, late_cancellation_hours)["date"]
    if ((dates >= first_day) & (dates < as_of_day)).any():
        return
    raise ValidationFailed(
        f"Source table 'shift_requests' broke the batch rule 'history_demand': none of its "
        f"{len(requests)} used requests counts as demand on a day of the {history_days} days "
        f"before as_of {extract.as_of} (cancelled {late_cancellation_hours:g} hours or more "
        f"before the shift: {int(early.sum())}; shifts on or after as_of: "
        f"{int((dates >= as_of_day).sum())}; shifts before those days: "
        f"{int((dates < first_day).sum())}). Forecasts start from each facility's past demand, "
        "so there is nothing to plan from: check that the source holds the past requests with "
        "their statuses, or run for a later as_of. Nothing was published.",
        outcomes,
        counts,
        impact=impact,
    )


def _without_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """A used table without the source's text kept for quarantine details (``_raw_*``)."""
    return frame.drop(columns=[c for c in frame.columns if c.startswith("_raw_")])


def validate_with_settings(extract: SourceExtract, settings: Settings) -> ValidationResult:
    """:func:`validate_extract` with the thresholds of ``settings`` (the weekly run's and
    ``staffcast validate``'s one call)."""
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


def _parse_in_chunks(
    table: RawTable,
    samples: dict[str, dict[str, list[str]]],
    name: str,
    parse: Callable[..., pd.DataFrame],
    *args: Any,
    **kwargs: Any,
) -> pd.DataFrame:
    """Parse a raw table chunk by chunk, so its text never sits in memory all at once."""
    parts, offset = [], 0
    for chunk in table_chunks(table):
        if offset == 0:
            _keep_samples(samples, name, chunk)
        part = parse(chunk, *args, row_offset=offset, **kwargs)
        # The source's text of unparsed values is almost always missing: as a category it
        # costs a byte or two a row instead of a string's eight. (Columns of objects carry
        # parsing's hinted values, which a category would turn back into plain text.)
        raw = [c for c in part.columns if c.startswith("_raw_") and part[c].dtype != object]
        parts.append(part.astype(dict.fromkeys(raw, "category")) if raw else part)
        offset += len(chunk)
    return parts[0] if len(parts) == 1 else _concat_categories(parts)


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
