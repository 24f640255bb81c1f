"""How published forecasts and pools did once their days had passed (issue 14's scores).

Pure pandas and numpy; the flow reads earlier runs from the reporting database and this run's
realised demand, and calls these. Two measures:

**Forecast against actual** (:func:`score_forecasts`). An earlier run forecast each day from
its as_of on; a day is *lead day* ``(date - as_of).days + 1`` (as_of itself is lead day 1, the
first day the run had no data for). Its realised demand is the demand of that day as a later
run counts it (the same definition of demand: requests of the day, early cancellations left
out, only what existed before the later run's as_of). Per series (facility and role, or region
and role) and lead band (:data:`LEAD_BANDS`), the scores keep *sums* (``days``,
``actual_total``, ``forecast_total``, ``abs_error``, ``naive_abs_error``, ``pinball_total``,
``in_p10_p90``, ``under_p95``) so that any span of weeks combines by adding rows, and the
ratios are taken last (:func:`score_ratios`):

- ``bias = forecast_total / actual_total - 1`` (positive: forecasts ran high);
- ``mae = abs_error / days``; ``wape = abs_error / actual_total``;
- ``mase = abs_error / naive_abs_error``: against the error of a seasonal-naive forecast of
  the same days from the same as_of (each day's demand as on the same weekday of the last
  week before as_of), so 1 means no better than repeating last week;
- ``pinball``: mean pinball loss over the stored quantiles (:data:`QUANTILE_COLUMNS`), shifts;
- ``coverage_p10_p90`` (share of days inside [p10, p90]; 0.8 promised) and
  ``coverage_p95`` (share at or below p95; 0.95 promised).

**Did the pool hold?** (:func:`achieved_service_level`). A published base pool promised that,
on each day of its week, with each on-call nurse accepting a call with probability
``acceptance_rate``, every request is covered with probability ``service_level``. Looking back,
a day's demand ``d`` is known and so is the acceptance rate the week's offers showed (``a``):
the pool of ``n`` nurses covered that day with probability ``P(Binomial(n, a) >= d)``. The
achieved service level over a span is the mean of that probability over its days, beside the
promised ``service_level``; days of weeks whose realised total exceeded ``n *
max_shifts_per_week`` count as not covered (the cap was the pool's other promise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from models.metrics import inside, pinball_loss
from models.regional import week_start

LEAD_BANDS: tuple[tuple[int, int], ...] = ((1, 7), (8, 28), (29, 91), (92, 182))
"""Lead days scored together (inclusive): the first week, the next three, the quarter, the
rest of the 26-week horizon."""

QUANTILE_COLUMNS: dict[str, float] = {
    "p025": 0.025,
    "p10": 0.10,
    "p50": 0.50,
    "p80": 0.80,
    "p90": 0.90,
    "p95": 0.95,
    "p975": 0.975,
}
"""The stored quantiles of demand_forecast and regional_forecast, by column."""

SUM_COLUMNS = (
    "days",
    "actual_total",
    "forecast_total",
    "abs_error",
    "naive_abs_error",
    "pinball_total",
    "in_p10_p90",
    "under_p95",
)


def lead_band(lead_days: np.ndarray) -> np.ndarray:
    """``"1-7"``, ``"8-28"``, ... for each lead day (``""`` past the last band)."""
    labels = np.full(len(lead_days), "", dtype=object)
    for first, last in LEAD_BANDS:
        labels[(lead_days >= first) & (lead_days <= last)] = f"{first}-{last}"
    return labels


def score_forecasts(
    forecast: pd.DataFrame,
    actual: pd.DataFrame,
    keys: Sequence[str],
) -> pd.DataFrame:
    """Score earlier runs' daily forecasts against realised demand, per key and lead band.

    Args:
        forecast: ``scored_run_id, as_of`` (the earlier run and its date), ``keys``, ``date``,
            ``mean`` and the :data:`QUANTILE_COLUMNS`; one row per run, key and day.
        actual: ``keys, date, demand`` for every day realised so far (complete: a day absent
            for a key that has rows is not realised); it must reach back a week before the
            earliest as_of scored (the seasonal-naive comparison).
        keys: the series columns (``facility_id, role`` or ``region, role``).

    Returns:
        One row per earlier run, key, lead band and Monday-start week that has realised days:
        ``scored_run_id, as_of, *keys, lead_band, week_start, first_day, last_day`` (the
        row's first and last scored day) and the :data:`SUM_COLUMNS`. Forecast days without realised
        demand are left out (not yet known); so are days whose seasonal-naive day is unknown.
    """
    keys = list(keys)
    columns = [
        "scored_run_id",
        "as_of",
        *keys,
        "lead_band",
        "week_start",
        "first_day",
        "last_day",
        *SUM_COLUMNS,
    ]
    if forecast.empty or actual.empty:
        return pd.DataFrame(columns=columns)
    realised = actual[[*keys, "date", "demand"]].assign(date=pd.to_datetime(actual["date"]))
    rows = forecast.assign(
        date=pd.to_datetime(forecast["date"]), as_of=pd.to_datetime(forecast["as_of"])
    ).merge(realised, on=[*keys, "date"], how="inner")
    # the seasonal-naive forecast of the day: the same weekday in the last week before as_of
    weeks_back = ((rows["date"] - rows["as_of"]).dt.days // 7 + 1) * 7
    naive_day = rows["date"] - pd.to_timedelta(weeks_back, unit="D")
    naive = realised.rename(columns={"date": "naive_day", "demand": "naive"})
    rows = rows.assign(naive_day=naive_day).merge(naive, on=[*keys, "naive_day"], how="inner")
    lead = (rows["date"] - rows["as_of"]).dt.days.to_numpy() + 1
    rows["lead_band"] = lead_band(lead)
    rows = rows[rows["lead_band"] != ""]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    y = rows["demand"].to_numpy(dtype=float)
    quantiles = rows[list(QUANTILE_COLUMNS)].to_numpy(dtype=float)
    pinball = pinball_loss(y, quantiles, list(QUANTILE_COLUMNS.values()))
    scored = pd.DataFrame(
        {
            "scored_run_id": rows["scored_run_id"].to_numpy(),
            "as_of": rows["as_of"].dt.date.to_numpy(),
            **{key: rows[key].to_numpy() for key in keys},
            "lead_band": rows["lead_band"].to_numpy(),
            "week_start": week_start(rows["date"]).date,
            "day": rows["date"].dt.date.to_numpy(),
            "days": 1,
            "actual_total": y,
            "forecast_total": rows["mean"].to_numpy(dtype=float),
            "abs_error": np.abs(rows["mean"].to_numpy(dtype=float) - y),
            "naive_abs_error": np.abs(rows["naive"].to_numpy(dtype=float) - y),
            "pinball_total": pinball,
            "in_p10_p90": inside(y, rows["p10"], rows["p90"]).astype(int),
            "under_p95": (y <= rows["p95"].to_numpy(dtype=float)).astype(int),
        }
    )
    group = ["scored_run_id", "as_of", *keys, "lead_band", "week_start"]
    grouped = scored.groupby(group, sort=True)
    sums = grouped[list(SUM_COLUMNS)].sum()
    sums["first_day"] = grouped["day"].min()
    sums["last_day"] = grouped["day"].max()
    order = ["scored_run_id", *keys, "week_start"]
    return sums.reset_index().sort_values(order, kind="stable", ignore_index=True)[columns]


def score_ratios(sums: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The ratios of :func:`score_forecasts`' sums over the rows of each ``by`` group (any span:
    runs, weeks, bands): ``days, actual_total, forecast_total, bias, mae, wape, mase, pinball,
    coverage_p10_p90, coverage_p95``. A ratio whose denominator is 0 is NaN."""
    total = sums.groupby(list(by), sort=True)[list(SUM_COLUMNS)].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        actual = total["actual_total"].where(total["actual_total"] > 0)
        out = pd.DataFrame(
            {
                "days": total["days"],
                "actual_total": total["actual_total"],
                "forecast_total": total["forecast_total"],
                "bias": total["forecast_total"] / actual - 1.0,
                "mae": total["abs_error"] / total["days"],
                "wape": total["abs_error"] / actual,
                "mase": total["abs_error"]
                / total["naive_abs_error"].where(total["naive_abs_error"] > 0),
                "pinball": total["pinball_total"] / total["days"],
                "coverage_p10_p90": total["in_p10_p90"] / total["days"],
                "coverage_p95": total["under_p95"] / total["days"],
            }
        )
    return out.reset_index()


def achieved_service_level(
    pools: pd.DataFrame,
    demand: pd.DataFrame,
    acceptance: pd.DataFrame,
) -> pd.DataFrame:
    """How each published weekly pool held against the demand that came.

    Args:
        pools: ``region, role, scenario, week_start, recommended_pool, service_level,
            max_shifts_per_week``: the pools published for past weeks (one per region, role,
            scenario and week: the latest published before the week began); further columns
            (e.g. the run that published the pool) are passed through.
        demand: ``region, role, date, demand``: realised daily demand (shifts) per region and
            role.
        acceptance: ``region, role, week_start, offers, accepted``: the offers made for shifts
            of each week and how many were accepted (:func:`weekly_acceptance`). A week without
            offers is not judged (its acceptance rate is unknown).

    Returns:
        One row per region, role, scenario and week with realised days: the pool's columns,
        ``offers, accepted, acceptance_rate`` (``a = accepted / offers``), ``days``,
        ``actual_total`` and ``peak_day`` (shifts), ``covered`` (the sum over its days of
        ``P(Binomial(pool, a) >= demand)``, 0 for every day of a week over the shift cap) and
        ``over_cap`` (the week's total exceeded pool x max shifts). ``covered / days`` summed
        over any span of weeks is the achieved service level there.
    """
    keys = ["region", "role", "scenario", "week_start"]
    passed = [c for c in pools.columns if c not in keys]
    columns = [
        *keys,
        *passed,
        "offers",
        "accepted",
        "acceptance_rate",
        "days",
        "actual_total",
        "peak_day",
        "covered",
        "over_cap",
    ]
    realised = demand.assign(date=pd.to_datetime(demand["date"]))
    realised["week_start"] = week_start(realised["date"]).to_numpy()
    rates = acceptance[acceptance["offers"] > 0].assign(
        week_start=lambda f: pd.to_datetime(f["week_start"]),
        acceptance_rate=lambda f: f["accepted"] / f["offers"],
    )[["region", "role", "week_start", "offers", "accepted", "acceptance_rate"]]
    judged = (
        pools.assign(week_start=pd.to_datetime(pools["week_start"]))
        .merge(rates, on=["region", "role", "week_start"], how="inner")
        .merge(realised, on=["region", "role", "week_start"], how="inner")
    )
    if judged.empty:
        return pd.DataFrame(columns=columns)
    pool = judged["recommended_pool"].to_numpy(dtype=np.int64)
    day_demand = judged["demand"].to_numpy(dtype=np.int64)
    # P(Binomial(n, a) >= d) = sf(d - 1); a day without demand is covered for sure
    covered = stats.binom.sf(day_demand - 1, pool, judged["acceptance_rate"].to_numpy(float))
    judged["covered"] = np.where(day_demand <= 0, 1.0, covered)
    grouped = judged.groupby(keys, sort=True)
    weekly = grouped[[*passed, "offers", "accepted", "acceptance_rate"]].first()
    weekly["days"] = grouped["date"].size()
    weekly["actual_total"] = grouped["demand"].sum()
    weekly["peak_day"] = grouped["demand"].max()
    weekly["covered"] = grouped["covered"].sum()
    cap = weekly["recommended_pool"] * weekly["max_shifts_per_week"]
    weekly["over_cap"] = weekly["actual_total"] > cap
    weekly.loc[weekly["over_cap"], "covered"] = 0.0
    out = weekly.reset_index()
    out["week_start"] = out["week_start"].dt.date
    return out[columns]


def weekly_acceptance(offers: pd.DataFrame, facilities: pd.DataFrame) -> pd.DataFrame:
    """Offers and acceptances per region, role and Monday-start week of the shift.

    ``offers``: ``facility_id, role, shift_start`` (UTC), ``response`` (the used offers with
    their request, ``ValidationResult.offers``); ``facilities``: ``facility_id, region,
    timezone``. A shift's week is that of its start on the facility's local calendar.

    Returns ``region, role, week_start, offers, accepted`` (one row per combination seen).
    """
    columns = ["region", "role", "week_start", "offers", "accepted"]
    if offers.empty:
        return pd.DataFrame(columns=columns)
    fac = facilities.set_index("facility_id")
    zones = offers["facility_id"].map(fac["timezone"])
    starts = pd.DatetimeIndex(offers["shift_start"])
    local = pd.Series(pd.NaT, index=offers.index, dtype="datetime64[ns]")
    for zone in pd.unique(zones.dropna()):
        at = (zones == zone).to_numpy()
        local.iloc[np.flatnonzero(at)] = (
            starts[at].tz_convert(str(zone)).tz_localize(None).as_unit("ns")
        )
    frame = pd.DataFrame(
        {
            "region": offers["facility_id"].map(fac["region"]),
            "role": offers["role"].astype(str),
            "week_start": week_start(local).date,
            "offers": 1,
            "accepted": (offers["response"].astype(str) == "accepted").astype(int),
        }
    ).dropna(subset=["region", "week_start"])
    return frame.groupby(columns[:3], sort=True)[["offers", "accepted"]].sum().reset_index()


COVERAGE_BAND = (0.65, 0.92)
"""Share of realised days inside [p10, p90] (0.8 promised) outside which a region drifts."""
BIAS_LIMIT = 0.08
"""Forecast / actual - 1 beyond which (either way) a region's forecasts drift."""
SERVICE_SHORTFALL = 0.03
"""Points the achieved service level may fall under the promise before it is flagged."""
FORECAST_WEEKS = 8
"""Scored weeks (the latest) the forecast flags look at."""
SERVICE_WEEKS = 13
"""Judged weeks (the latest) the service-level flag looks at."""
MIN_WEEKS = 8
"""Fewer weeks than this raise no flag: over 4 weeks (28 days) the share of days inside an 80%
interval varies by about 7 points by chance alone, so a one-facility agency's first month
would be flagged for noise."""


def drift_flags(region_scores: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Measures that left their band: ``measure, region, role, weeks, value, low, high, message``.

    ``region_scores``: region-level :func:`score_forecasts` rows (``region, role, week_start``
    and the sums) of the whole record; coverage of [p10, p90] and bias are taken over the
    latest :data:`FORECAST_WEEKS` weeks with scores (every lead band). ``outcomes``:
    :func:`achieved_service_level` rows of the base scenario; the achieved service level is
    taken over the latest :data:`SERVICE_WEEKS` judged weeks. A region and role with fewer than
    :data:`MIN_WEEKS` weeks is not judged. Bias is flagged only when the difference is also
    beyond the Poisson noise of the counts (``|forecast - actual| > 2 sqrt(forecast)``).
    """
    flags: list[dict[str, object]] = []
    if not region_scores.empty:
        recent_weeks = sorted(set(region_scores["week_start"]))[-FORECAST_WEEKS:]
        recent = region_scores[region_scores["week_start"].isin(recent_weeks)]
        weeks = recent.groupby(["region", "role"])["week_start"].nunique().rename("weeks")
        ratios = score_ratios(recent, ["region", "role"]).join(weeks, on=["region", "role"])
        low, high = COVERAGE_BAND
        for row in ratios[ratios["weeks"] >= MIN_WEEKS].itertuples():
            span = f"over the last {row.weeks} scored weeks"
            if not low <= row.coverage_p10_p90 <= high:
                flags.append(
                    {
                        "measure": "coverage_p10_p90",
                        "region": row.region,
                        "role": row.role,
                        "weeks": row.weeks,
                        "value": row.coverage_p10_p90,
                        "low": low,
                        "high": high,
                        "message": f"{row.region} {row.role}: {row.coverage_p10_p90:.0%} of "
                        f"days fell inside the forecast's 80% interval {span} (expected "
                        f"{low:.0%}-{high:.0%}): the intervals are too "
                        f"{'narrow' if row.coverage_p10_p90 < low else 'wide'}.",
                    }
                )
            # beyond the limit, and beyond the Poisson noise of the counts (2 sd): a small
            # region's 8 weeks of a few requests a day miss by 8% by chance alone
            noise = 2.0 * np.sqrt(max(row.forecast_total, 1.0))
            beyond_noise = abs(row.forecast_total - row.actual_total) > noise
            if pd.notna(row.bias) and abs(row.bias) > BIAS_LIMIT and beyond_noise:
                flags.append(
                    {
                        "measure": "bias",
                        "region": row.region,
                        "role": row.role,
                        "weeks": row.weeks,
                        "value": row.bias,
                        "low": -BIAS_LIMIT,
                        "high": BIAS_LIMIT,
                        "message": f"{row.region} {row.role}: forecasts ran "
                        f"{abs(row.bias):.0%} {'above' if row.bias > 0 else 'below'} the "
                        f"demand that came {span} (limit ±{BIAS_LIMIT:.0%}).",
                    }
                )
    if not outcomes.empty:
        recent_weeks = sorted(set(outcomes["week_start"]))[-SERVICE_WEEKS:]
        recent = outcomes[outcomes["week_start"].isin(recent_weeks)].assign(
            promised_days=lambda f: f["service_level"] * f["days"]
        )
        held = recent.groupby(["region", "role"]).agg(
            weeks=("week_start", "nunique"),
            days=("days", "sum"),
            covered=("covered", "sum"),
            promised_days=("promised_days", "sum"),
        )
        for (region, role), row in held[held["weeks"] >= MIN_WEEKS].iterrows():
            achieved, promised = row["covered"] / row["days"], row["promised_days"] / row["days"]
            if achieved < promised - SERVICE_SHORTFALL:
                flags.append(
                    {
                        "measure": "service_level",
                        "region": region,
                        "role": role,
                        "weeks": int(row["weeks"]),
                        "value": achieved,
                        "low": promised - SERVICE_SHORTFALL,
                        "high": None,
                        "message": f"{region} {role}: the on-call pools covered the requests "
                        f"on {achieved:.1%} of days over the last {int(row['weeks'])} weeks, "
                        f"against {promised:.1%} promised.",
                    }
                )
    columns = ["measure", "region", "role", "weeks", "value", "low", "high", "message"]
    return pd.DataFrame(flags, columns=columns)
