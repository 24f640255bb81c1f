"""The data contracts: one Great Expectations suite per source table, each rule named.

A rule is either row-level (a row that breaks it goes to quarantine with the rule's name and the
run goes on) or batch-level (the run stops before publishing, naming the table, the rule and an
example). Suites run on the *parsed* frames built by :mod:`data_contracts.parsing`, which add a
few derived columns (prefixed ``_``) so that cross-field rules are plain GX expectations.

Nulls: ``ExpectColumnValuesToBeInSet`` and ``...ToBeBetween`` skip missing values, so every
required field has its own not-null rule, placed before the rules on its values (the first
rule a row breaks names it). A field that can be missing or unreadable has two rules:
``<field>_missing`` (the source gave nothing, or blank text) and ``<field>_unparseable`` (the
source gave something staffcast cannot read; the quarantine detail shows it). The parse
functions keep what the source said in ``_raw_<field>``, and the two rules are told apart by a
row condition on it. Optional fields (facility_type, active_from, active_to, separated_on, and
cancelled_at unless the request is cancelled) may be missing, but an unreadable value is
quarantined all the same: it is never silently read as missing.

Required fields: facilities: facility_id, region, timezone; shift_requests: request_id,
facility_id, role, shift_start, shift_hours, requested_at, status, and cancelled_at when the
status is cancelled; nurses: nurse_id, role, region, on_call, hired_on; shift_offers:
request_id, offered_at, response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from zoneinfo import available_timezones

import great_expectations as gx
import pandas as pd
from great_expectations.expectations.row_conditions import Column

ROLES = ("RN", "LPN")
REQUEST_STATUSES = ("filled", "unfilled", "cancelled")
OFFER_RESPONSES = ("accepted", "declined", "no_response")
MAX_HOURS_REQUESTED_AFTER_START = 24.0
"""A request entered more than a day after its shift started is a data-entry error (hours)."""


@dataclass(frozen=True)
class Rule:
    """One named business rule and the GX expectation that checks it."""

    name: str
    level: Literal["row", "batch"]
    description: str
    expectation: gx.expectations.Expectation
    column: str | None = None


def _row(name: str, description: str, expectation: gx.expectations.Expectation) -> Rule:
    column = getattr(expectation, "column", None) or getattr(expectation, "column_A", None)
    return Rule(name, "row", description, expectation, column)


def _missing(field: str, description: str) -> Rule:
    """``<field>_missing``: the source gave no value (NULL or blank) for a required field."""
    return _row(
        f"{field}_missing",
        description,
        E.ExpectColumnValuesToNotBeNull(
            column=field, row_condition=Column(f"_raw_{field}").is_null()
        ),
    )


def _unparseable(field: str, description: str) -> Rule:
    """``<field>_unparseable``: the source gave a value that staffcast cannot read."""
    return _row(
        f"{field}_unparseable",
        description,
        E.ExpectColumnValuesToNotBeNull(
            column=field, row_condition=Column(f"_raw_{field}").is_not_null()
        ),
    )


def _not_null(name: str, field: str, description: str) -> Rule:
    """A required text field is present (text fields have nothing to be unreadable)."""
    return _row(name, description, E.ExpectColumnValuesToNotBeNull(column=field))


def _batch(name: str, description: str, expectation: gx.expectations.Expectation) -> Rule:
    return Rule(name, "batch", description, expectation, getattr(expectation, "column", None))


E = gx.expectations


def facility_rules() -> list[Rule]:
    """Rules for the facilities table."""
    return [
        _batch(
            "not_empty",
            "The facilities table has rows.",
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ),
        _row(
            "facility_id_present",
            "Every facility has an id.",
            E.ExpectColumnValuesToNotBeNull(column="facility_id"),
        ),
        _row(
            "facility_id_unique",
            "A facility id appears once.",
            E.ExpectColumnValuesToBeUnique(column="facility_id"),
        ),
        _row(
            "region_present",
            "Every facility belongs to a region (its on-call pool).",
            E.ExpectColumnValuesToNotBeNull(column="region"),
        ),
        _not_null("timezone_missing", "timezone", "Every facility has a time zone."),
        _row(
            "timezone_valid",
            "The timezone is an IANA zone such as America/Chicago.",
            E.ExpectColumnValuesToBeInSet(
                column="timezone", value_set=sorted(available_timezones())
            ),
        ),
        _unparseable("active_from", "active_from, when given, is a date."),
        _unparseable("active_to", "active_to, when given, is a date."),
    ]


def shift_request_rules(
    facility_ids: list[str],
    as_of_utc: pd.Timestamp,
    recent_days: int,
    known_facility_ids: list[str] | None = None,
) -> list[Rule]:
    """Rules for shift_requests.

    ``facility_ids`` are the facilities that passed their own rules; ``known_facility_ids``
    every facility in the source (default: the same), so that a request of a quarantined
    facility is told apart from a request of a facility nobody knows.
    """
    known = sorted(set(known_facility_ids or []) | set(facility_ids))
    recent = as_of_utc - pd.Timedelta(days=recent_days)
    return [
        _batch(
            "not_empty",
            "The as_of extract of shift_requests has rows.",
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ),
        _batch(
            "recent_requests",
            f"At least one request was made in the {recent_days} days before as_of; "
            "otherwise the extract is stale.",
            E.ExpectColumnMaxToBeBetween(column="requested_at", min_value=recent),
        ),
        _row(
            "request_id_present",
            "Every request has an id.",
            E.ExpectColumnValuesToNotBeNull(column="request_id"),
        ),
        _row(
            "duplicate_request_id",
            "A request id appears once; of identical copies one is used, copies that "
            "disagree are all quarantined.",
            E.ExpectColumnValuesToBeInSet(column="_duplicate", value_set=["no"]),
        ),
        _not_null("facility_id_missing", "facility_id", "Every request names its facility."),
        _row(
            "unknown_facility",
            "The facility exists in facilities.",
            E.ExpectColumnValuesToBeInSet(column="facility_id", value_set=known),
        ),
        _row(
            "facility_quarantined",
            "The facility passed its own rules (see the facilities table's rules).",
            E.ExpectColumnValuesToBeInSet(
                column="facility_id",
                value_set=facility_ids,
                row_condition=Column("facility_id").is_in(known),
            ),
        ),
        _not_null("role_missing", "role", "Every request names the role it needs."),
        _row(
            "role_not_in_set",
            f"The role is one of {', '.join(ROLES)}.",
            E.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)),
        ),
        _not_null("status_missing", "status", "Every request has a status."),
        _row(
            "status_not_in_set",
            f"The status is one of {', '.join(REQUEST_STATUSES)}.",
            E.ExpectColumnValuesToBeInSet(column="status", value_set=list(REQUEST_STATUSES)),
        ),
        _missing("shift_start", "Every request says when the shift starts."),
        _unparseable(
            "shift_start", "shift_start is a timestamp (and its facility's zone is known)."
        ),
        _missing("requested_at", "Every request says when it was made."),
        _unparseable("requested_at", "requested_at is a timestamp."),
        _row(
            "shift_hours_out_of_range",
            "0 < shift_hours <= 24.",
            E.ExpectColumnValuesToBeBetween(
                column="shift_hours", min_value=0, max_value=24, strict_min=True
            ),
        ),
        _missing("shift_hours", "Every request says how many hours the shift lasts."),
        _unparseable("shift_hours", "shift_hours is a number."),
        _row(
            "requested_after_shift_start",
            "requested_at is at most a day after shift_start.",
            E.ExpectColumnValuesToBeBetween(
                column="_hours_requested_after_start", max_value=MAX_HOURS_REQUESTED_AFTER_START
            ),
        ),
        _unparseable("cancelled_at", "cancelled_at, when given, is a timestamp."),
        _row(
            "cancelled_without_cancelled_at",
            "A cancelled request says when.",
            E.ExpectColumnValuesToNotBeNull(
                column="cancelled_at", row_condition=Column("status") == "cancelled"
            ),
        ),
    ]


def nurse_rules() -> list[Rule]:
    """Rules for the nurses table."""
    return [
        _batch(
            "not_empty",
            "The nurses table has rows hired before as_of.",
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ),
        _row(
            "nurse_id_present",
            "Every nurse has an id.",
            E.ExpectColumnValuesToNotBeNull(column="nurse_id"),
        ),
        _not_null("role_missing", "role", "Every nurse has a role."),
        _row(
            "role_not_in_set",
            f"The role is one of {', '.join(ROLES)}.",
            E.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)),
        ),
        _not_null("region_missing", "region", "Every nurse belongs to a region (on-call pool)."),
        _missing("on_call", "Every nurse is marked on call or not."),
        _unparseable(
            "on_call",
            "on_call is true or false (1/0, true/false, t/f, yes/no, y/n, or a boolean).",
        ),
        _missing("hired_on", "Every nurse has a hire date."),
        _unparseable("hired_on", "hired_on is a date."),
        _unparseable("separated_on", "separated_on, when given, is a date."),
        _row(
            "separated_before_hired",
            "separated_on is not before hired_on.",
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="separated_on",
                column_B="hired_on",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        ),
    ]


def shift_offer_rules() -> list[Rule]:
    """Rules for shift_offers (optional table)."""
    return [
        _not_null("request_id_missing", "request_id", "Every offer names its request."),
        _not_null("response_missing", "response", "Every offer has a response."),
        _row(
            "response_not_in_set",
            f"The response is one of {', '.join(OFFER_RESPONSES)}.",
            E.ExpectColumnValuesToBeInSet(column="response", value_set=list(OFFER_RESPONSES)),
        ),
        _missing("offered_at", "Every offer says when it was made."),
        _unparseable("offered_at", "offered_at is a timestamp."),
    ]
