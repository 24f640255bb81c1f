"""Staffing decisions: on-call pools, acceptance and attrition estimates, hiring targets, holidays.

Pure functions on regional demand sample paths (:mod:`models.regional`) and on small frames from
the source tables; every parameter is an argument (:class:`StaffingParams` mirrors the settings'
``RoleStaffing``: build one with ``StaffingParams(**role_staffing.model_dump())``).

Units: demand in shifts per day (or per week where a name says weekly), pools and hires in
nurses, lead times in days, rates as probabilities (0-1), attrition per year.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TypedDict

import numpy as np
import pandas as pd
from scipy import special

from models.regional import DemandSimulation, week_start

DAYS_PER_YEAR = 365
"""Days in a year for attrition over a lead time and for nurse-years of exposure."""

RESPONSES = ("accepted", "declined", "no_response")
_TOLERANCE = 1e-9  # float slack in probability and head-count comparisons
_MAX_POOL = 10_000_000  # a search that passes this has been given nonsense input
_MAX_ATTRITION = 0.99  # estimated attrition stays a valid yearly share below 1


@dataclass(frozen=True)
class StaffingParams:
    """Staffing parameters of one role (and region), as in ``settings.RoleStaffing``.

    Attributes:
        service_level: probability (0-1) that the pool covers a day's requests.
        acceptance_rate: probability (0-1] that a pool nurse accepts a call.
        max_shifts_per_week: shifts one on-call nurse works per week at most.
        holiday_acceptance_factor: multiplier (0-1] on acceptance_rate on holidays.
        annual_attrition: share of the pool that leaves in a year (0-1), the configured default.
        time_to_hire_days: days from opening a requisition to an accepted offer.
        onboarding_days: days from an accepted offer to a nurse on call.
    """

    service_level: float = 0.95
    acceptance_rate: float = 0.35
    max_shifts_per_week: int = 4
    holiday_acceptance_factor: float = 0.7
    annual_attrition: float = 0.25
    time_to_hire_days: int = 83
    onboarding_days: int = 14

    def __post_init__(self) -> None:
        _check_service_level(self.service_level)
        _check_acceptance(self.acceptance_rate)
        if not 1 <= self.max_shifts_per_week <= 7:
            raise ValueError(f"max_shifts_per_week must be 1..7, got {self.max_shifts_per_week}.")
        if not 0 < self.holiday_acceptance_factor <= 1:
            raise ValueError(
                "holiday_acceptance_factor must be in (0, 1], got "
                f"{self.holiday_acceptance_factor}."
            )
        _check_attrition(self.annual_attrition)
        if self.time_to_hire_days < 0 or self.onboarding_days < 0:
            raise ValueError("time_to_hire_days and onboarding_days must be >= 0 days.")

    @property
    def lead_time_days(self) -> int:
        """Days from opening a requisition to a productive on-call nurse."""
        return self.time_to_hire_days + self.onboarding_days


# --------------------------------------------------------------------------------------------
# On-call pool
# --------------------------------------------------------------------------------------------


def pool_coverage(demand: np.ndarray, pool: int, acceptance_rate: float) -> float:
    """P(Binomial(pool, acceptance_rate) >= D) over equally likely demand samples D (shifts).

    The probability that a pool of ``pool`` nurses, each accepting a call independently with
    probability ``acceptance_rate``, yields at least as many acceptances as the day's requests.
    """
    values, weights = _empirical_pmf(demand)
    return float(weights @ _binomial_sf(values - 1, pool, acceptance_rate))


def smallest_pool(demand: np.ndarray, acceptance_rate: float, service_level: float) -> int:
    """The smallest on-call pool (nurses) that covers one day's demand at the service level.

    Args:
        demand: 1-D array of integer samples (equally likely) of the day's demand D (shifts).
        acceptance_rate: probability (0-1] that a called nurse accepts.
        service_level: target probability (0-1) of covering every request of the day.

    Returns:
        The smallest N >= 0 with ``mean over samples of P(Binomial(N, a) >= D) >= service_level``
        (compared with a 1e-9 slack so that an exact empirical probability such as 95/100 counts
        as 0.95). Exact for deterministic demand: ``[3] * k, a=0.5, sl=0.95`` gives 11.

    The coverage is nondecreasing in N, so the search doubles N until it covers and then bisects;
    each step is one vectorised binomial survival function over the distinct demand values.
    """
    _check_acceptance(acceptance_rate)
    _check_service_level(service_level)
    values, weights = _empirical_pmf(demand)
    target = service_level - _TOLERANCE

    def covers(pool: int) -> bool:
        return float(weights @ _binomial_sf(values - 1, pool, acceptance_rate)) >= target

    if covers(0):
        return 0
    low = 0  # does not cover
    high = max(1, math.ceil(values[-1] / acceptance_rate))  # covers about half the time or more
    while not covers(high):
        low, high = high, 2 * high
        if high > _MAX_POOL:
            raise ValueError("smallest_pool found no pool below 10 million nurses.")
    while high - low > 1:
        middle = (low + high) // 2
        if covers(middle):
            high = middle
        else:
            low = middle
    return high


def on_call_pool(
    paths: np.ndarray, dates: pd.DatetimeIndex, params: StaffingParams
) -> pd.DataFrame:
    """Recommended on-call pool per Monday-start week for one region and role.

    Args:
        paths: int array (n_paths, n_days) of sample paths of the region's daily demand (shifts),
            as in ``DemandSimulation.paths[(region, role)]``.
        dates: the days of the columns of ``paths`` (consecutive).
        params: the role's (or region's) parameters; pass an estimated acceptance rate with
            ``dataclasses.replace(params, acceptance_rate=...)``.

    Returns:
        One row per week (``week_start`` = the Monday on or before the day, a midnight
        Timestamp), first and last weeks possibly partial: ``week_start, days_in_week,
        peak_day_p95`` (largest daily 0.95 quantile, shifts), ``peak_day_mean`` (largest daily
        mean, shifts), ``weekly_demand_mean`` (mean weekly total over the days present, shifts),
        ``daily_pool`` (largest :func:`smallest_pool` of the week's days, nurses),
        ``weekly_pool`` (ceil of the weekly total's service-level quantile over
        ``max_shifts_per_week``, nurses), ``recommended_pool`` (the larger of the two, nurses),
        ``service_level, acceptance_rate, max_shifts_per_week``.

    A partial week is judged on the days inside the horizon with the full weekly shift cap per
    nurse: the days outside it are past or unforecast.
    """
    paths = _check_paths(paths, dates)
    weeks = week_start(dates)
    a, sl, cap = params.acceptance_rate, params.service_level, params.max_shifts_per_week
    daily_p95 = np.quantile(paths, 0.95, axis=0, method="inverted_cdf")
    daily_mean = paths.mean(axis=0)
    daily_pool = np.array([smallest_pool(paths[:, d], a, sl) for d in range(paths.shape[1])])
    rows = []
    for start in weeks.unique():
        days = np.flatnonzero(weeks == start)
        weekly_total = paths[:, days].sum(axis=1, dtype=np.int64)
        weekly_quantile = float(np.quantile(weekly_total, sl, method="inverted_cdf"))
        weekly_pool = math.ceil(weekly_quantile / cap - _TOLERANCE)
        day_pool = int(daily_pool[days].max())
        rows.append(
            {
                "week_start": start,
                "days_in_week": days.size,
                "peak_day_p95": float(daily_p95[days].max()),
                "peak_day_mean": float(daily_mean[days].max()),
                "weekly_demand_mean": float(weekly_total.mean()),
                "daily_pool": day_pool,
                "weekly_pool": weekly_pool,
                "recommended_pool": max(day_pool, weekly_pool),
                "service_level": sl,
                "acceptance_rate": a,
                "max_shifts_per_week": cap,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Acceptance
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptanceEstimate:
    """Acceptance rate of calls, shrunk toward a prior.

    Attributes:
        rate: ``(accepted + prior * min_offers) / (n_offers + min_offers)`` (0-1).
        n_offers: offers seen (accepted, declined or unanswered).
        accepted: offers accepted.
        observed_rate: ``accepted / n_offers``, or None without offers.
    """

    rate: float
    n_offers: int
    accepted: int
    observed_rate: float | None


def estimate_acceptance(offers: pd.DataFrame, prior: float, min_offers: int) -> AcceptanceEstimate:
    """Acceptance rate from shift offers, shrunk toward ``prior`` (Beta prior).

    Args:
        offers: frame with a ``response`` column in ``accepted, declined, no_response``; an
            unanswered offer counts as a decline. Filter it to the look-back window first.
        prior: the configured acceptance rate (0-1], used alone when there are no offers.
        min_offers: weight of the prior in pseudo-offers: with ``min_offers`` real offers the
            observed rate and the prior weigh the same.
    """
    _check_acceptance(prior)
    if min_offers < 0:
        raise ValueError(f"min_offers must be >= 0, got {min_offers}.")
    accepted_flags = _accepted(offers)
    n = int(accepted_flags.size)
    accepted = int(accepted_flags.sum())
    return AcceptanceEstimate(
        rate=_shrunk(accepted, n, prior, min_offers),
        n_offers=n,
        accepted=accepted,
        observed_rate=accepted / n if n else None,
    )


def acceptance_by_group(
    offers: pd.DataFrame,
    group_cols: list[str],
    priors: Mapping[str, float],
    min_offers: int,
    holiday_priors: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """:func:`estimate_acceptance` for every group of offers (e.g. region and role) at once.

    Args:
        offers: frame with ``group_cols``, ``role`` and ``response``, and optionally
            ``is_holiday`` (bool): when present, holiday and other offers are estimated
            separately (``is_holiday`` joins the group columns); and optionally ``n``, the
            number of offers a row stands for (offers counted beforehand, e.g. by
            :func:`models.plan.offer_counts`; default one each).
        group_cols: columns that define a group; must include ``role``.
        priors: prior acceptance rate per role (0-1].
        min_offers: weight of the prior in pseudo-offers.
        holiday_priors: prior per role for holiday offers (default: ``priors``); e.g. the role's
            acceptance rate times its holiday_acceptance_factor.

    Returns:
        One row per group present in ``offers``: the group columns (and ``is_holiday``),
        ``rate, n_offers, accepted, observed_rate``. Groups with no offers are absent: use the
        prior for them.
    """
    if "role" not in group_cols:
        raise ValueError("group_cols must include 'role' (priors are per role).")
    missing = [c for c in [*group_cols, "response"] if c not in offers.columns]
    if missing:
        raise ValueError(f"offers is missing the columns {missing}.")
    if min_offers < 0:
        raise ValueError(f"min_offers must be >= 0, got {min_offers}.")
    keys = list(group_cols)
    if "is_holiday" in offers.columns and "is_holiday" not in keys:
        keys.append("is_holiday")
    columns = [*keys, "rate", "n_offers", "accepted", "observed_rate"]
    if offers.empty:
        return pd.DataFrame(columns=columns)
    frame = offers[keys].copy()
    if frame.isna().any().any():
        raise ValueError(f"offers has missing values in {keys}.")
    weight = offers["n"].to_numpy(np.int64) if "n" in offers.columns else 1
    frame["n_offers"] = np.broadcast_to(weight, len(frame))
    frame["accepted"] = _accepted(offers).astype(np.int64) * frame["n_offers"]
    if "is_holiday" in keys:
        frame["is_holiday"] = frame["is_holiday"].astype(bool)
    grouped = frame.groupby(keys, sort=True)[["accepted", "n_offers"]].sum().reset_index()
    grouped = grouped[grouped["n_offers"] > 0].reset_index(drop=True)
    unknown = sorted(set(grouped["role"]) - set(priors))
    if unknown:
        raise ValueError(f"priors has no acceptance rate for roles {unknown}.")
    holiday_priors = priors if holiday_priors is None else holiday_priors
    for value in [*priors.values(), *holiday_priors.values()]:
        _check_acceptance(value)
    prior = grouped["role"].map(priors).astype(float)
    if "is_holiday" in keys:
        holiday_roles = set(grouped.loc[grouped["is_holiday"], "role"])
        unknown = sorted(holiday_roles - set(holiday_priors))
        if unknown:
            raise ValueError(f"holiday_priors has no acceptance rate for roles {unknown}.")
        prior = prior.where(~grouped["is_holiday"], grouped["role"].map(holiday_priors))
    n = grouped["n_offers"].to_numpy(dtype=float)
    accepted = grouped["accepted"].to_numpy(dtype=float)
    grouped["rate"] = (accepted + prior.to_numpy() * min_offers) / (n + min_offers)
    grouped["observed_rate"] = accepted / n
    return grouped[columns]


# --------------------------------------------------------------------------------------------
# Attrition
# --------------------------------------------------------------------------------------------


def estimate_attrition(
    nurses: pd.DataFrame,
    as_of: date | pd.Timestamp | str,
    lookback_days: int,
    prior: float | Mapping[str, float],
    min_pool: float,
) -> pd.DataFrame:
    """Annual attrition per region and role from hires and separations, and the current pool.

    Args:
        nurses: ``nurse_id, role, region, on_call, hired_on, separated_on`` (NaT = active).
        as_of: the run's date; only hires and separations before it are seen.
        lookback_days: length of the window ``[as_of - lookback_days, as_of)`` (days).
        prior: configured annual attrition (0-1), one value or one per role.
        min_pool: weight of the prior in pseudo nurse-years.

    Returns:
        One row per region and role in ``nurses``: ``region, role, current_pool`` (on-call
        nurses active at as_of: hired before it, not separated before it), ``separations`` (in
        the window), ``exposure_years`` (nurse-years employed in the window, 365-day years),
        ``average_head_count`` (exposure over the window's length in years),
        ``observed_attrition`` (separations per nurse-year, NaN without exposure: the turnover
        rate as NSI reports it) and ``annual_attrition`` = ``(separations + prior * min_pool) /
        (exposure_years + min_pool)``, capped at 0.99 so it stays a valid yearly share.

    A missing ``on_call`` counts as not on call. Attrition counts every nurse of the region and
    role, on call or not: ``on_call`` is today's flag and says nothing reliable about nurses who
    have left. A separation on or after as_of is not yet known, so that nurse counts as active.
    """
    required = ["nurse_id", "role", "region", "on_call", "hired_on", "separated_on"]
    missing = [c for c in required if c not in nurses.columns]
    if missing:
        raise ValueError(f"nurses is missing the columns {missing}; it needs {required}.")
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be >= 1, got {lookback_days}.")
    if min_pool < 0:
        raise ValueError(f"min_pool must be >= 0, got {min_pool}.")
    end = pd.Timestamp(as_of).normalize()
    start = end - pd.Timedelta(days=lookback_days)
    hired = pd.to_datetime(nurses["hired_on"]).dt.normalize()
    separated = pd.to_datetime(nurses["separated_on"]).dt.normalize()
    if hired.isna().any():
        raise ValueError("nurses has rows without hired_on.")
    known_separation = separated.notna() & (separated < end)
    seen = hired < end
    left_at = separated.where(known_separation, end)
    exposure_days = (left_at.clip(upper=end) - hired.clip(lower=start)).dt.days.clip(lower=0)
    frame = pd.DataFrame(
        {
            "region": nurses["region"].astype(str),
            "role": nurses["role"].astype(str),
            "current_pool": (seen & ~known_separation & nurses["on_call"].eq(True)).astype(
                np.int64
            ),
            "separations": (seen & known_separation & (separated >= start)).astype(np.int64),
            "exposure_years": np.where(seen, exposure_days, 0) / DAYS_PER_YEAR,
        }
    )
    out = frame.groupby(["region", "role"], sort=True).sum().reset_index()
    out["average_head_count"] = out["exposure_years"] / (lookback_days / DAYS_PER_YEAR)
    exposure = out["exposure_years"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["observed_attrition"] = np.where(
            exposure > 0, out["separations"] / np.where(exposure > 0, exposure, 1.0), np.nan
        )
    prior_by_row = _per_role(prior, out["role"], "prior")
    for value in np.unique(prior_by_row):
        _check_attrition(float(value))
    denominator = exposure + min_pool
    with np.errstate(divide="ignore", invalid="ignore"):
        shrunk = np.where(
            denominator > 0,
            (out["separations"] + prior_by_row * min_pool)
            / np.where(denominator > 0, denominator, 1),
            prior_by_row,
        )
    out["annual_attrition"] = np.minimum(shrunk, _MAX_ATTRITION)
    return out[
        [
            "region",
            "role",
            "current_pool",
            "separations",
            "exposure_years",
            "average_head_count",
            "observed_attrition",
            "annual_attrition",
        ]
    ]


# --------------------------------------------------------------------------------------------
# Recruiting
# --------------------------------------------------------------------------------------------


class RecruitingTarget(TypedDict):
    """What :func:`recruiting_target` returns (nurses, days and dates)."""

    current_pool: int
    target_pool: int
    expected_attrition: float
    expected_pool: float
    hires_needed: int
    surplus: int
    needed_by: date
    recruit_by: date
    late: bool
    lead_time_days: int
    acceptance_rate: float
    annual_attrition: float
    window_start: date
    window_end: date
    note: str


def recruiting_target(
    pool_weeks: pd.DataFrame,
    current_pool: int,
    annual_attrition: float,
    params: StaffingParams,
    as_of: date | pd.Timestamp | str,
    window_weeks: int,
) -> RecruitingTarget:
    """How many nurses to hire for one region and role, and by when.

    Args:
        pool_weeks: :func:`on_call_pool`'s output for the region and role (``week_start``,
            ``recommended_pool``).
        current_pool: active on-call nurses at as_of (nurses).
        annual_attrition: share of the pool that leaves in a year (0-1).
        params: the role's parameters (lead time = time_to_hire_days + onboarding_days).
        as_of: the run's date (a hire started today).
        window_weeks: weeks of the recruiting window.

    Returns:
        A :class:`RecruitingTarget`. The window holds the weeks whose ``week_start`` is in
        ``[as_of + lead, as_of + lead + 7 * window_weeks)``: the weeks a hire started today can
        serve. ``target_pool`` is the largest recommended pool in it; ``expected_attrition`` =
        ``current_pool * (1 - (1 - annual_attrition) ** (lead / 365))`` (nurses, fractional);
        ``hires_needed = ceil(max(0, target - expected_pool))``; a surplus is reported as
        ``surplus = floor(max(0, expected_pool - target))``, never as negative hires.
        ``needed_by`` is the first window week that needs more than the expected pool (or the
        window's first week without hires); ``recruit_by = max(as_of, needed_by - lead)`` and
        ``late`` says that ``needed_by - lead`` is already past (start now, and the hire will
        arrive after needed_by). When the window lies (partly) beyond the forecast horizon the
        last ``window_weeks`` weeks available are used (or the window is cut short) and ``note``
        says so; ``note`` is empty otherwise.
    """
    _check_pool_weeks(pool_weeks, current_pool)
    if window_weeks < 1:
        raise ValueError(f"window_weeks must be >= 1, got {window_weeks}.")
    _check_attrition(annual_attrition)
    today = pd.Timestamp(as_of).normalize()
    lead = params.lead_time_days
    weeks = pool_weeks.assign(week_start=pd.to_datetime(pool_weeks["week_start"]))
    weeks = weeks.sort_values("week_start", kind="stable").reset_index(drop=True)
    window_start = today + pd.Timedelta(days=lead)
    window_end = window_start + pd.Timedelta(weeks=window_weeks)
    in_window = (weeks["week_start"] >= window_start) & (weeks["week_start"] < window_end)
    window = weeks.loc[in_window]
    last_week = weeks["week_start"].iloc[-1]
    note = ""
    if window.empty:
        window = weeks.tail(window_weeks)
        note = (
            f"The recruiting window {window_start:%Y-%m-%d} to {window_end:%Y-%m-%d} lies beyond "
            f"the forecast horizon (last week starts {last_week:%Y-%m-%d}); the target uses the "
            f"last {len(window)} weeks of the horizon instead."
        )
    elif window_end - pd.Timedelta(weeks=1) > last_week:
        note = (
            f"The recruiting window {window_start:%Y-%m-%d} to {window_end:%Y-%m-%d} runs past "
            f"the forecast horizon; the target uses the {len(window)} of {window_weeks} weeks "
            "inside it."
        )
    target = int(window["recommended_pool"].max())
    expected_attrition = current_pool * (1 - _survival(annual_attrition, lead))
    expected_pool = current_pool - expected_attrition
    hires = math.ceil(max(0.0, target - expected_pool) - _TOLERANCE)
    surplus = math.floor(max(0.0, expected_pool - target) + _TOLERANCE)
    short = window.loc[window["recommended_pool"] > expected_pool + _TOLERANCE, "week_start"]
    needed_by = short.iloc[0] if hires > 0 and not short.empty else window["week_start"].iloc[0]
    start_by = needed_by - pd.Timedelta(days=lead)
    return RecruitingTarget(
        current_pool=int(current_pool),
        target_pool=target,
        expected_attrition=float(expected_attrition),
        expected_pool=float(expected_pool),
        hires_needed=int(hires),
        surplus=int(surplus),
        needed_by=needed_by.date(),
        recruit_by=max(today, start_by).date(),
        late=bool(start_by < today),
        lead_time_days=lead,
        acceptance_rate=params.acceptance_rate,
        annual_attrition=float(annual_attrition),
        window_start=window_start.date(),
        window_end=window_end.date(),
        note=note,
    )


HIRING_PLAN_COLUMNS = [
    "month",
    "arrival_start",
    "arrival_end",
    "pool_needed",
    "expected_pool",
    "hires",
    "cumulative_hires",
    "beyond_horizon",
]


def hiring_plan(
    pool_weeks: pd.DataFrame,
    current_pool: int,
    annual_attrition: float,
    params: StaffingParams,
    as_of: date | pd.Timestamp | str,
    target: RecruitingTarget,
    months: int = 6,
    steady_weeks: int = 4,
) -> pd.DataFrame:
    """Month by month from as_of: how many nurses to start recruiting in each month.

    One answer with the recruiting target: the first month *is* ``target`` (the
    :func:`recruiting_target` of the same pool, attrition, parameters and as_of): its hires are
    the target's hires, its arrival window the target's recruiting window and its expected pool
    the target's (today's pool thinned by attrition over the lead time). Months run from as_of
    (as_of, then the same day of each following month), never from the 1st of the calendar
    month as_of falls in.

    Recruiting started in month k >= 1 (from its first day ``start_k``) puts nurses on call
    ``lead_time_days`` later, so month k serves the weeks whose ``week_start`` falls in its
    *arrival window* ``[start_k + lead, start_{k+1} + lead)`` (the first month's longer window
    overlaps the second's: what it hired counts there too). The pool expected at the end of
    that window without month k's hires is today's pool and every earlier month's hires, each
    thinned by attrition since it started serving (``(1 - annual_attrition) ** (days / 365)``);
    month k hires the whole nurses that lift it to the largest weekly pool the window needs.
    Later months therefore show the replacements a steady pool needs as well as growth.

    Where an arrival window lies past the forecast horizon, the need is carried from the
    horizon's last ``steady_weeks`` weeks (and from the window's own weeks where some are
    inside) and ``beyond_horizon`` is True: read those months as a steady-state estimate.

    Args:
        pool_weeks: :func:`on_call_pool`'s output for the region and role (``week_start``,
            ``recommended_pool``).
        current_pool: active on-call nurses at as_of (nurses).
        annual_attrition: share of the pool that leaves in a year (0-1).
        params: the role's parameters (lead time = time_to_hire_days + onboarding_days).
        as_of: the run's date.
        target: the recruiting target of the same inputs (the first month).
        months: months to plan (the one starting at as_of is the first).
        steady_weeks: weeks at the horizon's end whose largest pool stands in beyond it.

    Returns:
        One row per month, columns :data:`HIRING_PLAN_COLUMNS`: ``month`` (its first day, a
        date), ``arrival_start``/``arrival_end`` (dates), ``pool_needed`` (nurses),
        ``expected_pool`` (nurses without this month's hires, fractional), ``hires``,
        ``cumulative_hires`` (nurses) and ``beyond_horizon``.
    """
    _check_pool_weeks(pool_weeks, current_pool)
    if months < 1 or steady_weeks < 1:
        raise ValueError(f"months and steady_weeks must be >= 1, got {months}, {steady_weeks}.")
    _check_attrition(annual_attrition)
    today = pd.Timestamp(as_of).normalize()
    lead = pd.Timedelta(days=params.lead_time_days)
    if pd.Timestamp(target["window_start"]) != today + lead:
        raise ValueError(
            f"target was set for another as_of or lead time (its window starts "
            f"{target['window_start']}, not {(today + lead).date()})."
        )
    weeks = pool_weeks.assign(week_start=pd.to_datetime(pool_weeks["week_start"]))
    weeks = weeks.sort_values("week_start", kind="stable")
    starts = weeks["week_start"].to_numpy()
    pools = weeks["recommended_pool"].to_numpy(dtype=float)
    last_week = weeks["week_start"].iloc[-1]
    steady = float(pools[-steady_weeks:].max())
    firsts = [today + pd.DateOffset(months=k) for k in range(months + 1)]

    window_end = pd.Timestamp(target["window_end"])
    hires = int(target["hires_needed"])
    rows = [
        {
            "month": today.date(),
            "arrival_start": target["window_start"],
            "arrival_end": target["window_end"],
            "pool_needed": int(target["target_pool"]),
            "expected_pool": float(target["expected_pool"]),
            "hires": hires,
            "cumulative_hires": hires,
            "beyond_horizon": bool(window_end - pd.Timedelta(weeks=1) > last_week),
        }
    ]
    arrivals: list[tuple[pd.Timestamp, int]] = [(today + lead, hires)]
    cumulative = hires
    for k in range(1, months):
        arrival_start = firsts[k] + lead
        arrival_end = firsts[k + 1] + lead
        inside = (starts >= arrival_start.to_datetime64()) & (starts < arrival_end.to_datetime64())
        beyond = bool(arrival_end - pd.Timedelta(weeks=1) > last_week)
        need = float(pools[inside].max()) if inside.any() else steady
        if beyond:
            need = max(need, steady)
        expected = current_pool * _survival(annual_attrition, (arrival_end - today).days) + sum(
            n * _survival(annual_attrition, (arrival_end - start).days) for start, n in arrivals
        )
        hires = math.ceil(max(0.0, need - expected) - _TOLERANCE)
        arrivals.append((arrival_start, hires))
        cumulative += hires
        rows.append(
            {
                "month": firsts[k].date(),
                "arrival_start": arrival_start.date(),
                "arrival_end": arrival_end.date(),
                "pool_needed": int(need),
                "expected_pool": float(expected),
                "hires": int(hires),
                "cumulative_hires": int(cumulative),
                "beyond_horizon": beyond,
            }
        )
    return pd.DataFrame(rows, columns=HIRING_PLAN_COLUMNS)


# --------------------------------------------------------------------------------------------
# Holidays
# --------------------------------------------------------------------------------------------


def holiday_coverage(
    sim: DemandSimulation,
    holidays: Mapping[date | pd.Timestamp, str],
    params_by_role: Mapping[str, StaffingParams],
    acceptance: Mapping[tuple[str, str], float] | None = None,
    reference_weeks: int = 2,
    params_by_group: Mapping[tuple[str, str], StaffingParams] | None = None,
) -> pd.DataFrame:
    """On-call nurses needed on each holiday in the horizon, per region and role.

    ``params_by_group`` ((region, role) -> parameters), where given, wins over
    ``params_by_role`` (per-region overrides and scenarios).

    Args:
        sim: the demand simulation (regional paths and exact regional means).
        holidays: date -> holiday name (dates outside the horizon are ignored, but still
            excluded as reference days).
        params_by_role: parameters per role (service_level, acceptance_rate,
            holiday_acceptance_factor).
        acceptance: optional (region, role) -> everyday acceptance rate (e.g. estimated from
            offers); default: the role's ``acceptance_rate``. The holiday rate is this times the
            role's ``holiday_acceptance_factor``.
        reference_weeks: same-weekday non-holiday days taken on each side for the typical day.

    Returns:
        One row per holiday date in the horizon and (region, role): ``holiday, date, region,
        role, expected_demand`` (exact regional mean, shifts), ``p90, p95`` (from the paths,
        shifts), ``typical_demand`` (mean demand of the same weekday in up to ``reference_weeks``
        non-holiday weeks before and after, inside the horizon; NaN if none), ``uplift``
        (expected / typical; NaN when typical is 0 or missing), ``acceptance_rate`` (holiday
        rate), ``service_level`` and ``recommended_on_call`` (:func:`smallest_pool` of the
        holiday's paths at the holiday rate, nurses).
    """
    missing_roles = sorted({role for _, role in sim.paths} - set(params_by_role))
    if missing_roles:
        raise ValueError(f"params_by_role has no parameters for roles {missing_roles}.")
    names: dict[pd.Timestamp, list[str]] = {}
    for day, name in holidays.items():
        names.setdefault(pd.Timestamp(day).normalize(), []).append(str(name))
    position = {day: j for j, day in enumerate(sim.dates)}
    means = sim.regional.set_index(["region", "role", "date"])["mean"]
    rows = []
    for day in sorted(d for d in names if d in position):
        d = position[day]
        references = _reference_days(day, position, names, reference_weeks)
        for (region, role), path in sorted(sim.paths.items()):
            params = (params_by_group or {}).get((region, role), params_by_role[role])
            base = (acceptance or {}).get((region, role), params.acceptance_rate)
            rate = base * params.holiday_acceptance_factor
            expected = float(means.loc[(region, role, day)])
            typical = (
                float(np.mean([means.loc[(region, role, sim.dates[j])] for j in references]))
                if references
                else math.nan
            )
            p90, p95 = np.quantile(path[:, d], [0.9, 0.95], method="inverted_cdf")
            rows.append(
                {
                    "holiday": "; ".join(names[day]),
                    "date": day,
                    "region": region,
                    "role": role,
                    "expected_demand": expected,
                    "p90": float(p90),
                    "p95": float(p95),
                    "typical_demand": typical,
                    "uplift": expected / typical if typical > 0 else math.nan,
                    "acceptance_rate": rate,
                    "service_level": params.service_level,
                    "recommended_on_call": smallest_pool(path[:, d], rate, params.service_level),
                }
            )
    columns = [
        "holiday",
        "date",
        "region",
        "role",
        "expected_demand",
        "p90",
        "p95",
        "typical_demand",
        "uplift",
        "acceptance_rate",
        "service_level",
        "recommended_on_call",
    ]
    return pd.DataFrame(rows, columns=columns)


def _reference_days(
    day: pd.Timestamp,
    position: Mapping[pd.Timestamp, int],
    holidays: Mapping[pd.Timestamp, object],
    per_side: int,
) -> list[int]:
    """Columns of the nearest same-weekday non-holiday days, up to ``per_side`` on each side."""
    found: list[int] = []
    for direction in (-1, 1):
        taken = 0
        step = 1
        while taken < per_side:
            other = day + pd.Timedelta(weeks=direction * step)
            if other not in position:
                break
            if other not in holidays:
                found.append(position[other])
                taken += 1
            step += 1
    return sorted(found)


# --------------------------------------------------------------------------------------------
# Checks and small helpers
# --------------------------------------------------------------------------------------------


def _binomial_sf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    """P(Binomial(n, p) > k), vectorised over k: ``scipy.stats.binom.sf`` without its overhead.

    ``scipy.special.bdtrc`` (the same incomplete-beta computation, five times faster here) is
    undefined outside ``0 <= k < n``; there the answer is 1 (k < 0) or 0 (k >= n).
    """
    inside = np.clip(k, 0, max(n - 1, 0))
    return np.where(k < 0, 1.0, np.where(k >= n, 0.0, special.bdtrc(inside, n, p)))


def _empirical_pmf(demand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(demand)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("demand must be a non-empty 1-D array of samples (shifts).")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError("demand samples must be whole numbers of shifts.")
        values = values.astype(np.int64)
    if values.min() < 0:
        raise ValueError("demand samples must be >= 0 shifts.")
    unique, counts = np.unique(values.astype(np.int64), return_counts=True)
    return unique, counts / values.size


def _accepted(offers: pd.DataFrame) -> np.ndarray:
    if "response" not in offers.columns:
        raise ValueError("offers needs a 'response' column (accepted, declined, no_response).")
    response = offers["response"]
    unknown = sorted(set(response.dropna().astype(str)) - set(RESPONSES))
    if unknown or response.isna().any():
        shown = unknown or ["<missing>"]
        raise ValueError(f"offers has responses {shown}; expected one of {list(RESPONSES)}.")
    return (response == "accepted").to_numpy()


def _shrunk(successes: int, trials: int, prior: float, weight: float) -> float:
    if trials + weight == 0:
        return prior
    return (successes + prior * weight) / (trials + weight)


def _per_role(value: float | Mapping[str, float], roles: pd.Series, name: str) -> np.ndarray:
    if isinstance(value, Mapping):
        unknown = sorted(set(roles) - set(value))
        if unknown:
            raise ValueError(f"{name} has no value for roles {unknown}.")
        return roles.map(value).to_numpy(dtype=float)
    return np.full(len(roles), float(value))


def _check_paths(paths: np.ndarray, dates: pd.DatetimeIndex) -> np.ndarray:
    paths = np.asarray(paths)
    if paths.ndim != 2 or paths.shape[0] == 0:
        raise ValueError("paths must be a 2-D array (n_paths, n_days) with at least one path.")
    if paths.shape[1] != len(dates):
        raise ValueError(f"paths has {paths.shape[1]} days but dates has {len(dates)}.")
    if not np.issubdtype(paths.dtype, np.integer):
        raise ValueError("paths must hold whole numbers of shifts (an integer array).")
    if paths.size and paths.min() < 0:
        raise ValueError("paths must be >= 0 shifts.")
    return paths


def _survival(annual_attrition: float, days: int) -> float:
    """Share of a pool still there after ``days`` days (none leave in negative time)."""
    return float((1 - annual_attrition) ** (max(days, 0) / DAYS_PER_YEAR))


def _check_pool_weeks(pool_weeks: pd.DataFrame, current_pool: int) -> None:
    missing = [c for c in ("week_start", "recommended_pool") if c not in pool_weeks.columns]
    if missing:
        raise ValueError(
            f"pool_weeks is missing the columns {missing}; pass on_call_pool's output."
        )
    if pool_weeks.empty:
        raise ValueError("pool_weeks is empty: there is no week to plan for.")
    if current_pool < 0:
        raise ValueError(f"current_pool must be >= 0 nurses, got {current_pool}.")


def _check_service_level(value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"service_level must be in (0, 1), got {value}.")


def _check_acceptance(value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"acceptance_rate must be in (0, 1], got {value}.")


def _check_attrition(value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"annual_attrition must be in [0, 1), got {value}.")
