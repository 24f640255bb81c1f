"""The staffing plan of one run: on-call pools, recruiting targets, holiday coverage.

Glue between the demand simulation and the staffing math in :mod:`models.staffing`: it
estimates acceptance (from shift_offers) and attrition (from nurses) per region and role, then
sizes pools week by week and sets hiring targets. Pure pandas; the caller passes parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta

import numpy as np
import pandas as pd

from models.calendar import HolidayCalendar
from models.regional import DemandSimulation
from models.staffing import (
    StaffingParams,
    acceptance_by_group,
    estimate_attrition,
    hiring_plan,
    holiday_coverage,
    on_call_pool,
    recruiting_target,
)

BASE_SCENARIO = "base"

_FIELDS = {f.name: f.type for f in fields(StaffingParams)}
_INTEGER_FIELDS = {"max_shifts_per_week", "time_to_hire_days", "onboarding_days"}


def _with_values(base: StaffingParams, values: Mapping[str, float]) -> StaffingParams:
    """``base`` with ``values`` set (whole numbers for the shift and day counts)."""
    typed = {k: int(v) if k in _INTEGER_FIELDS else v for k, v in values.items()}
    return replace(base, **typed)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Scenario:
    """A what-if beside 'base': staffing parameters set per role (or for every role).

    ``overrides`` maps (parameter, role or None for every role) to a value. A scenario's
    ``acceptance_rate`` and ``annual_attrition`` replace the estimates from shift_offers and
    nurses too (that is the question a scenario asks: "what if only 30% accepted?").
    """

    name: str
    overrides: tuple[tuple[str, str | None, float], ...]

    def params_for(self, role: str, base: StaffingParams) -> StaffingParams:
        """``base`` with this scenario's values for ``role`` (role-specific ones win)."""
        values = {name: value for name, scope, value in self.overrides if scope is None}
        values.update({name: value for name, scope, value in self.overrides if scope == role})
        return _with_values(base, values)

    def forces(self, name: str, role: str) -> bool:
        """Whether this scenario sets ``name`` for ``role`` (so estimates give way)."""
        return any(n == name and scope in (None, role) for n, scope, _ in self.overrides)


def parse_scenario(text: str) -> Scenario:
    """``"name:service_level=0.9,acceptance_rate.RN=0.3"`` -> :class:`Scenario`.

    Raises ValueError naming the part that is wrong and what is allowed.
    """
    name, sep, body = text.partition(":")
    name = name.strip()
    if not sep or not name or not body.strip():
        raise ValueError(
            f"scenario {text!r} must look like name:parameter=value[,parameter.ROLE=value...], "
            "e.g. tight:service_level=0.9,acceptance_rate.RN=0.3."
        )
    if name == BASE_SCENARIO or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"scenario name {name!r} must be letters, digits, - or _ and not {BASE_SCENARIO!r}."
        )
    overrides = []
    for part in body.split(","):
        key, eq, raw = part.partition("=")
        parameter, _, role = key.strip().partition(".")
        if not eq or parameter not in _FIELDS:
            raise ValueError(
                f"scenario {name!r}: {part.strip()!r} is not parameter=value with a parameter "
                f"among {', '.join(_FIELDS)}."
            )
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"scenario {name!r}: {raw.strip()!r} is not a number.") from None
        overrides.append((parameter, role.strip().upper() or None, value))
    scenario = Scenario(name, tuple(overrides))
    for role in {r for _, r, _ in overrides if r} | {"RN"}:
        scenario.params_for(role, StaffingParams())  # validates the values (ValueError)
    return scenario


@dataclass(frozen=True)
class PlanInputs:
    """Everything the plan needs besides the demand simulation."""

    as_of: date
    params_by_role: Mapping[str, StaffingParams]
    acceptance_lookback_days: int = 180
    min_offers: int = 50
    attrition_lookback_days: int = 365
    min_pool_for_attrition: float = 20
    recruiting_window_weeks: int = 8
    calendar: HolidayCalendar = HolidayCalendar()  # the holidays the forecasts used
    scenario: Scenario | None = None  # None: 'base'
    region_overrides: Mapping[str, Mapping[str, Mapping[str, float]]] = field(
        default_factory=dict
    )  # region -> role -> parameter -> value, between the role's values and the scenario's


@dataclass(frozen=True)
class StaffingPlan:
    """The publishable frames of a plan (one scenario)."""

    on_call_pool: pd.DataFrame
    recruiting_target: pd.DataFrame
    holiday_coverage: pd.DataFrame
    acceptance: pd.DataFrame
    attrition: pd.DataFrame
    hiring_plan: pd.DataFrame


def _text_categories(values: pd.Series) -> pd.Series:
    """``values`` as a categorical of text (kept categorical: no Python string per row)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.rename_categories(values.cat.categories.astype(str))
    return values.astype(str).astype("category")


def offer_counts(
    offers: pd.DataFrame,
    facilities: pd.DataFrame,
    holidays: Mapping[date, str],
    since: pd.Timestamp,
) -> pd.DataFrame:
    """The used offers sent at or after ``since``, counted per region, role, response and
    whether the request's shift falls on a holiday (the facility's local day).

    ``offers`` are the used offers already joined to their used request (``facility_id, role,
    shift_start, response, offered_at``: ``ValidationResult.offers``); offers whose request was
    not used (quarantined, or older than the extract) are not among them. A national agency has
    millions of offers in its window: they are counted by facility on integer codes first, so no
    per-offer Python object is made; only the counts meet region names.

    Returns ``region, role, response, is_holiday, n`` (one row per combination seen).
    """
    columns = ["region", "role", "response", "is_holiday", "n"]
    recent = offers[offers["offered_at"] >= since]
    if recent.empty:
        return pd.DataFrame(columns=columns)
    facility = _text_categories(recent["facility_id"])
    codes = facility.cat.codes.to_numpy()
    fac = facilities.set_index("facility_id")
    zones = facility.cat.categories.map(fac["timezone"])
    starts = pd.DatetimeIndex(recent["shift_start"])
    holiday_days = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in holidays)).as_unit(starts.unit)
    is_holiday = np.zeros(len(recent), dtype=bool)
    for zone in pd.unique(zones.dropna()):
        at = np.isin(codes, np.flatnonzero(zones == zone))
        local_day = starts[at].tz_convert(str(zone)).tz_localize(None).normalize()
        is_holiday[at] = local_day.isin(holiday_days)
    counted = (
        pd.DataFrame(
            {
                "facility_id": facility,
                "role": _text_categories(recent["role"]),
                "response": _text_categories(recent["response"]),
                "is_holiday": is_holiday,
            }
        )
        .groupby(["facility_id", "role", "response", "is_holiday"], observed=True)
        .size()
        .rename("n")
        .reset_index()
    )
    counted["region"] = counted["facility_id"].astype(str).map(fac["region"])
    for column in ("role", "response"):
        counted[column] = counted[column].astype(str)
    return counted.groupby(columns[:4], sort=True)["n"].sum().reset_index()[columns]


def build_plan(
    sim: DemandSimulation,
    tables: Mapping[str, pd.DataFrame],
    inputs: PlanInputs,
) -> StaffingPlan:
    """Pools per region, role and week; one recruiting target per region and role; holidays.

    ``tables`` holds the validated facilities and nurses, and ``offers``: the used offers of
    the acceptance window with their request (``ValidationResult.offers``).
    """
    as_of = inputs.as_of
    scenario = inputs.scenario
    params = {
        role: scenario.params_for(role, p) if scenario else p
        for role, p in inputs.params_by_role.items()
    }

    def group_params(region: str, role: str) -> StaffingParams:
        """Role values, then the region's overrides, then the scenario's."""
        values = inputs.region_overrides.get(region, {}).get(role, {})
        local = _with_values(inputs.params_by_role[role], values)
        return scenario.params_for(role, local) if scenario else local

    def forced(name: str, role: str) -> bool:
        return scenario is not None and scenario.forces(name, role)

    first_day = as_of - timedelta(days=max(inputs.acceptance_lookback_days, 400))
    holidays = inputs.calendar.days(first_day, sim.dates[-1].date())
    lookback = pd.Timestamp(as_of - timedelta(days=inputs.acceptance_lookback_days), tz="UTC")
    acceptance = acceptance_by_group(
        offer_counts(tables["offers"], tables["facilities"], holidays, lookback),
        ["region", "role"],
        {role: p.acceptance_rate for role, p in params.items()},
        inputs.min_offers,
        holiday_priors={
            role: p.acceptance_rate * p.holiday_acceptance_factor for role, p in params.items()
        },
    )
    everyday = acceptance[~acceptance["is_holiday"].astype(bool)].set_index(["region", "role"])
    holiday_rates = acceptance[acceptance["is_holiday"].astype(bool)].set_index(["region", "role"])
    attrition = estimate_attrition(
        tables["nurses"],
        as_of,
        inputs.attrition_lookback_days,
        {role: p.annual_attrition for role, p in params.items()},
        inputs.min_pool_for_attrition,
    ).set_index(["region", "role"])

    pools, targets, monthly = [], [], []
    for (region, role), paths in sorted(sim.paths.items()):
        key = (region, role)
        base = group_params(region, role)
        rate = float(everyday["rate"].get(key, base.acceptance_rate))
        offers_seen = int(everyday["n_offers"].get(key, 0))
        if forced("acceptance_rate", role):
            rate, offers_seen = base.acceptance_rate, 0
        role_params = replace(base, acceptance_rate=rate)
        weeks = on_call_pool(paths, sim.dates, role_params).assign(region=region, role=role)
        pools.append(weeks)
        current = int(attrition["current_pool"].get(key, 0))
        yearly = float(attrition["annual_attrition"].get(key, base.annual_attrition))
        nurse_years = float(attrition["exposure_years"].get(key, 0.0))
        separations = int(attrition["separations"].get(key, 0))
        if forced("annual_attrition", role):
            yearly, nurse_years, separations = base.annual_attrition, 0.0, 0
        target = recruiting_target(
            weeks, current, yearly, role_params, as_of, inputs.recruiting_window_weeks
        )
        targets.append(
            {
                "region": region,
                "role": role,
                **target,
                "acceptance_offers": offers_seen,
                "attrition_nurse_years": nurse_years,
                "attrition_separations": separations,
            }
        )
        monthly.append(  # its first month is this target: one answer to "how many to hire"
            hiring_plan(weeks, current, yearly, role_params, as_of, target).assign(
                region=region, role=role
            )
        )

    # holiday_coverage multiplies an everyday rate by the holiday factor: where holiday offers
    # were observed, pass the holiday estimate divided by the factor so the product is that
    # estimate; elsewhere the everyday estimate.
    by_group = {key: group_params(*key) for key in sim.paths}
    holiday_acceptance = {key: float(rate) for key, rate in everyday["rate"].items()}
    holiday_acceptance.update(
        {
            key: float(rate) / by_group.get(key, params[key[1]]).holiday_acceptance_factor
            for key, rate in holiday_rates["rate"].items()
        }
    )
    for key in list(holiday_acceptance):
        if forced("acceptance_rate", key[1]) and key in by_group:
            holiday_acceptance[key] = by_group[key].acceptance_rate
    holidays_in_horizon = {d: n for d, n in holidays.items() if d >= as_of}
    coverage = holiday_coverage(
        sim, holidays_in_horizon, params, holiday_acceptance, params_by_group=by_group
    )
    label = {"scenario": scenario.name if scenario else BASE_SCENARIO}
    pool_frame = pd.concat(pools, ignore_index=True).assign(**label)
    pool_frame["week_start"] = pd.to_datetime(pool_frame["week_start"]).dt.date
    target_frame = pd.DataFrame(targets).assign(**label)
    holiday_offers = {key: int(n) for key, n in holiday_rates["n_offers"].items()}
    coverage = coverage.assign(
        **label,
        acceptance_offers=[
            0 if forced("acceptance_rate", role) else holiday_offers.get((region, role), 0)
            for region, role in zip(coverage["region"], coverage["role"], strict=True)
        ],
    )
    coverage["date"] = pd.to_datetime(coverage["date"]).dt.date
    return StaffingPlan(
        pool_frame,
        target_frame,
        coverage,
        acceptance.reset_index(drop=True),
        attrition.reset_index(),
        pd.concat(monthly, ignore_index=True).assign(**label),
    )
