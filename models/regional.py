"""Regional demand: from per-facility daily forecasts to coherent regional distributions.

An on-call pool serves a region and a role, so staffing needs the distribution of the *sum* of
the region's facilities' demand. Quantiles do not add (the regional 0.95 quantile is smaller than
the sum of the facilities' 0.95 quantiles when facilities vary independently), so the regional
distribution comes from summing per-facility sample paths.

Demand model (per series = facility and role, per day, in shifts): ``D ~ NegBin(mean=m, size=r)``
independently across days and series, with variance ``m + m**2 / r`` (``r = inf`` is Poisson).
Requests already booked for a day (``booked``) are a lower bound on that day's demand, so the
demand we plan for is ``max(D, booked)``.

Facilities of a region move together on some days (weather, a flu wave, a local event), so
their demands are not independent: a shared day effect ``G ~ Gamma(mean 1, cv)`` per region,
role, day and path multiplies every facility's rate (:func:`shared_day_cv` estimates ``cv`` from
history). Each facility's own Gamma is narrowed so that its total variance stays ``m**2 / r``
(exactly, while ``cv**2 <= 1 / r``): facility quantiles are unchanged, the regional mean is still
the sum of facility means, and regional intervals widen by the facilities' co-movement.

The forecasts' level errors are shared too: when the region's business grows faster than the
models expected, every facility is under-forecast together. A shared level effect
``L ~ Gamma(mean 1, level_cv)`` per region, role and path (constant over the horizon) multiplies
every rate of that path; :func:`shared_level_cv` estimates ``level_cv`` from the engine's own
backtest errors. Facility variances are preserved the same way as for the day effect.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.count_distribution import (
    QUANTILE_COLUMNS,
    QUANTILES,
    floored_mean,
    floored_quantiles,
)

FORECAST_COLUMNS: tuple[str, ...] = (
    "series_id",
    "facility_id",
    "role",
    "region",
    "date",
    "mean",
    "booked",
)

_BLOCK_ELEMENTS = 4_000_000  # draws per block (paths x facilities x days): about 32 MB each


@dataclass(frozen=True)
class DemandSimulation:
    """Daily demand distributions per facility and per region, in shifts.

    Attributes:
        facility: one row per series and date: ``series_id, facility_id, role, region, date,
            mean, p025 .. p975, booked``. Exact (no Monte Carlo): the quantile ``q`` is
            ``max(NegBin quantile q, booked)`` and ``mean = E[max(D, booked)]``
            ``= m + sum_{k < booked} (booked - k) P(D = k)`` (shifts per day).
        regional: one row per region, role and date: ``region, role, date, mean,
            p025 .. p975``. ``mean`` is the exact sum of the facility means (not the sample mean
            of the paths, which differs from it by Monte Carlo noise); the quantiles are the
            empirical quantiles of the summed sample paths: the smallest value with a share of
            paths at or below it of at least q (whole shifts per day).
        paths: ``(region, role) -> int32 array (n_paths, n_days)``: sample paths of the region's
            daily demand (shifts); column ``j`` is ``dates[j]``. Rows are equally likely.
        dates: the horizon dates (consecutive days), the columns of every path array.
    """

    facility: pd.DataFrame
    regional: pd.DataFrame
    paths: dict[tuple[str, str], np.ndarray]
    dates: pd.DatetimeIndex


def week_start(dates: pd.DatetimeIndex | pd.Series) -> pd.DatetimeIndex:
    """The Monday on or before each date (Monday-start weeks), at midnight."""
    index = pd.DatetimeIndex(dates).normalize()
    return index - pd.to_timedelta(index.day_of_week, unit="D")


def simulate_demand(
    forecast: pd.DataFrame,
    size: pd.Series | None,
    n_paths: int = 1000,
    seed: int = 0,
    day_cv: pd.Series | None = None,
    level_cv: pd.Series | None = None,
) -> DemandSimulation:
    """Exact facility quantiles and simulated regional demand, floored at booked requests.

    Args:
        forecast: long frame with ``series_id, facility_id, role, region, date, mean, booked``:
            ``mean`` is the expected demand of that series and day (shifts, >= 0) and ``booked``
            the requests already made for that day before as_of (shifts, integer >= 0). Every
            series must cover the same consecutive dates (the horizon).
        size: negative-binomial size ``r > 0`` per ``series_id`` (``np.inf`` = Poisson), or
            None when ``forecast`` has a ``size`` column (one size per series and day: the
            engine's intervals widen with lead time).
        n_paths: sample paths per region and role.
        day_cv: coefficient of variation of the shared day effect per (region, role) index
            (:func:`shared_day_cv`); missing or None means independent facilities.
        level_cv: coefficient of variation of the shared level effect per (region, role)
            (:func:`shared_level_cv`); missing or None means none.
        seed: random seed. Each (region, role) draws from its own stream derived from the seed
            and the region and role names, so a region's paths do not change when another region
            is added or removed; within a region, facilities are drawn in ``series_id`` order.

    Returns:
        A :class:`DemandSimulation`.

    Each facility path is ``max(Poisson(Gamma(shape=r, scale=m/r)), booked)`` (plain Poisson for
    ``r = inf``; zero when ``m = 0``); the regional path is the sum over the region's facilities of
    the same role. On days with nothing booked the facilities' Poisson draws are pooled into one
    draw with the summed Gamma rate (same distribution, less work). Facilities are drawn in blocks
    so that memory stays bounded (under 100 MB) whatever the region's size.
    """
    if n_paths < 1:
        raise ValueError(f"n_paths must be at least 1, got {n_paths}.")
    frame, dates = _validated_forecast(forecast)
    n_days = len(dates)

    frame = frame.sort_values(["series_id", "date"], kind="stable").reset_index(drop=True)
    m = frame["mean"].to_numpy(dtype=np.float64)
    booked = frame["booked"].to_numpy(dtype=np.int64)
    if size is None:
        if "size" not in frame.columns:
            raise ValueError("pass size per series, or a forecast with a size column.")
        r = frame["size"].to_numpy(dtype=np.float64)
        if np.isnan(r).any() or (r <= 0).any():
            raise ValueError("the forecast's size column must be > 0 (np.inf for Poisson).")
    else:
        r_by_series = _validated_size(size, frame["series_id"])
        r = r_by_series.reindex(frame["series_id"]).to_numpy(dtype=np.float64)

    facility = frame[["series_id", "facility_id", "role", "region", "date"]].copy()
    facility["mean"] = floored_mean(m, r, booked)
    quantiles = floored_quantiles(m, r, booked, QUANTILES)
    for j, column in enumerate(QUANTILE_COLUMNS):
        facility[column] = quantiles[:, j]
    facility["booked"] = booked

    series = frame.drop_duplicates("series_id")[["series_id", "region", "role"]]
    n_series = len(series)
    # frame is sorted by series then date and every series has every date: reshape per series.
    m_grid = m.reshape(n_series, n_days)
    booked_grid = booked.reshape(n_series, n_days)
    mean_grid = facility["mean"].to_numpy().reshape(n_series, n_days)
    r_grid = r.reshape(n_series, n_days)

    paths: dict[tuple[str, str], np.ndarray] = {}
    regional_rows: list[pd.DataFrame] = []
    groups = series.reset_index(drop=True).groupby(["region", "role"], sort=True).indices
    for (region, role), rows in groups.items():
        key = (str(region), str(role))
        rng = np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(_stable_id(key[0]), _stable_id(key[1])))
        )
        cv = float(day_cv.get(key, 0.0)) if day_cv is not None else 0.0
        level = float(level_cv.get(key, 0.0)) if level_cv is not None else 0.0
        total = _regional_paths(
            rng,
            m_grid[rows],
            r_grid[rows],
            booked_grid[rows],
            n_paths=n_paths,
            day_cv=cv,
            level_cv=level,
        )
        paths[key] = total
        path_quantiles = np.quantile(total, list(QUANTILES), axis=0, method="inverted_cdf")
        block = pd.DataFrame({"region": key[0], "role": key[1], "date": dates})
        block["mean"] = mean_grid[rows].sum(axis=0)
        for j, column in enumerate(QUANTILE_COLUMNS):
            block[column] = path_quantiles[j].astype(np.float64)
        regional_rows.append(block)

    regional = pd.concat(regional_rows, ignore_index=True)
    return DemandSimulation(facility=facility, regional=regional, paths=paths, dates=dates)


def shared_day_cv(history: pd.DataFrame, days: int = 364) -> pd.Series:
    """Coefficient of variation of the day effect the facilities of a region share, per role.

    From the last ``days`` days of ``history`` (``series_id, region, role, date, demand``):
    each series' expected demand is its weekday profile times its centred 28-day level, so
    seasons and trends (which the forecasts already carry) drop out; what is left are daily
    residuals. Their covariances between facilities add up to ``Var(regional residual) - sum of
    facility residual variances``; divided by the squared mean regional demand, that is
    ``cv**2`` of a shared multiplier (0 when facilities move independently). Returns a Series
    indexed by (region, role).
    """
    needed = {"series_id", "region", "role", "date", "demand"}
    missing = needed - set(history.columns)
    if missing:
        raise ValueError(f"history is missing column(s) {sorted(missing)}")
    last = pd.Timestamp(history["date"].max())
    recent = history[history["date"] > last - pd.Timedelta(days=days)]
    out: dict[tuple[str, str], float] = {}
    for (region, role), group in recent.groupby(["region", "role"], sort=True):
        wide = (
            group.astype({"demand": float})
            .pivot_table(
                index="date", columns="series_id", values="demand", aggfunc="sum", fill_value=0.0
            )
            .sort_index()
        )
        wide = wide.reindex(pd.date_range(wide.index[0], last, freq="D"), fill_value=0.0)
        values = wide.to_numpy(dtype=float)
        if values.shape[0] < 8 * 7 or values.shape[1] < 2:
            out[(str(region), str(role))] = 0.0
            continue
        weekday = wide.index.day_of_week.to_numpy()
        means = values.mean(axis=0)
        profile = np.ones((7, values.shape[1]))
        for k in range(7):
            day_mean = values[weekday == k].mean(axis=0)
            profile[k] = np.where(means > 0, day_mean / np.where(means > 0, means, 1.0), 1.0)
        factor = profile[weekday]
        deseasoned = pd.DataFrame(values / np.where(factor > 0, factor, 1.0))
        level = deseasoned.rolling(28, center=True, min_periods=7).mean().to_numpy()
        residual = values - level * factor
        covariance = np.var(residual.sum(axis=1)) - np.var(residual, axis=0).sum()
        regional_mean = float((level * factor).sum(axis=1).mean())
        cv2 = max(float(covariance), 0.0) / regional_mean**2 if regional_mean > 0 else 0.0
        out[(str(region), str(role))] = float(np.sqrt(cv2))
    index = pd.MultiIndex.from_tuples(list(out), names=["region", "role"])
    return pd.Series(list(out.values()), index=index, name="day_cv", dtype=float)


def shared_level_cv(errors: pd.DataFrame, series: pd.DataFrame, cap: float = 0.5) -> pd.Series:
    """Coefficient of variation of the forecast level error the facilities of a region share.

    ``errors`` is the engine's ``backtest_errors`` (``series_id, origin, forecast, actual``:
    totals over each backtest window of the nested choose-then-forecast procedure) and
    ``series`` maps ``series_id`` to ``region, role``. Per region, role and origin, the
    cross-products of the facilities' errors ``e = actual - forecast`` add up to
    ``(sum e)**2 - sum e**2``; summed over origins and regions and divided by the summed squared
    regional forecasts, that is ``cv**2`` of a level multiplier the facilities share (0 when
    their errors are independent). Four origins per region are too few to tell regions apart,
    so the estimate is pooled over the regions of a role (regions of one facility carry no
    information and are left out of it). Capped at ``cap``. Returns a Series indexed by
    (region, role) for every region and role in ``series``.
    """
    keys = series.drop_duplicates("series_id").set_index("series_id")[["region", "role"]]
    groups = keys.drop_duplicates().sort_values(["region", "role"])
    index = pd.MultiIndex.from_frame(groups.astype(str), names=["region", "role"])
    out = pd.Series(0.0, index=index, name="level_cv", dtype=float)
    if errors.empty:
        return out
    frame = errors.join(keys, on="series_id", how="inner")
    frame = frame.assign(
        error=frame["actual"] - frame["forecast"],
        error2=(frame["actual"] - frame["forecast"]) ** 2,
    )
    per = frame.groupby(["region", "role", "origin"], observed=True).agg(
        n=("error", "size"),
        error=("error", "sum"),
        error2=("error2", "sum"),
        forecast=("forecast", "sum"),
    )
    per = per[per["n"] >= 2]
    for role, block in per.groupby(level="role"):
        cross = float((block["error"] ** 2 - block["error2"]).sum())
        scale = float((block["forecast"] ** 2).sum())
        cv = min(np.sqrt(max(cross, 0.0) / scale), cap) if scale > 0 else 0.0
        out[out.index.get_level_values("role") == str(role)] = cv
    return out


def regional_weekly(sim: DemandSimulation) -> pd.DataFrame:
    """Weekly (Monday-start) regional demand from the summed sample paths, in shifts per week.

    One row per region, role and week: ``region, role, week_start, days_in_week, mean,
    p025 .. p975``. Partial first and last weeks cover only the horizon's days
    (``days_in_week < 7``). ``mean`` is the exact sum of the daily regional means; the quantiles
    are those of the weekly sums of the paths (not sums of daily quantiles).
    """
    weeks = week_start(sim.dates)
    starts, codes = np.unique(weeks.to_numpy(), return_inverse=True)
    days_in_week = np.bincount(codes, minlength=len(starts))
    indicator = np.eye(len(starts), dtype=np.int64)[codes]  # (n_days, n_weeks)
    rows = []
    for (region, role), path in sim.paths.items():
        weekly_sums = path.astype(np.int64) @ indicator
        daily_mean = (
            sim.regional.loc[(sim.regional["region"] == region) & (sim.regional["role"] == role)]
            .sort_values("date")["mean"]
            .to_numpy()
        )
        block = pd.DataFrame(
            {
                "region": region,
                "role": role,
                "week_start": pd.DatetimeIndex(starts),
                "days_in_week": days_in_week,
                "mean": np.bincount(codes, weights=daily_mean, minlength=len(starts)),
            }
        )
        weekly_q = np.quantile(weekly_sums, list(QUANTILES), axis=0, method="inverted_cdf")
        for j, column in enumerate(QUANTILE_COLUMNS):
            block[column] = weekly_q[j].astype(np.float64)
        rows.append(block)
    return pd.concat(rows, ignore_index=True)


def _regional_paths(
    rng: np.random.Generator,
    mean: np.ndarray,
    size: np.ndarray,
    booked: np.ndarray,
    n_paths: int,
    day_cv: float = 0.0,
    level_cv: float = 0.0,
) -> np.ndarray:
    """Sum over facilities of ``max(NegBin draw, booked)``: int32 array (n_paths, n_days).

    With ``day_cv > 0`` every rate of a path and day is multiplied by one shared
    ``G ~ Gamma(1 / day_cv**2, day_cv**2)`` (mean 1), and each facility's own size ``r`` becomes
    ``r'`` with ``(1 + cv**2)(1 + 1/r') = 1 + 1/r`` (Poisson given G when that is not possible).
    ``level_cv > 0`` adds one such multiplier per path for the whole horizon, and ``r'`` then
    solves ``(1 + day_cv**2)(1 + level_cv**2)(1 + 1/r') = 1 + 1/r``.

    ``size`` is the NB size per facility and day (n_facilities, n_days). Each facility-day gets
    its own Gamma rate ``L ~ Gamma(r, m / r)`` per path (``L = m`` for Poisson series; a Poisson
    day within a negative-binomial series takes ``r = 1e12``, the same in float32). Given the
    rates, facility demands are independent Poisson(L), so on the facility-days with nothing
    booked their sum is one Poisson draw with the summed rate (Poisson additivity: the same
    distribution as drawing every facility, at a fraction of the cost).
    Facility-days with ``booked > 0`` are drawn one by one and floored at ``booked``.
    """
    n_facilities, n_days = mean.shape
    shared = None
    if day_cv > 0 or level_cv > 0:
        shared = np.ones((n_paths, n_days))
        if day_cv > 0:
            shape = 1.0 / day_cv**2
            shared *= rng.gamma(shape, 1.0 / shape, size=(n_paths, n_days))
        if level_cv > 0:
            shape = 1.0 / level_cv**2
            shared *= rng.gamma(shape, 1.0 / shape, size=(n_paths, 1))
        # 1 / r' (size inf -> 1/r = 0)
        inverse = (1.0 + 1.0 / size) / ((1.0 + day_cv**2) * (1.0 + level_cv**2)) - 1.0
        size = np.where(inverse > 1e-12, 1.0 / np.maximum(inverse, 1e-12), np.inf)
    total = np.zeros((n_paths, n_days), dtype=np.int64)
    free_rate = np.zeros((n_paths, n_days), dtype=np.float64)  # summed rate of unbooked days
    per_block = max(1, _BLOCK_ELEMENTS // (n_paths * n_days))
    all_poisson = np.isinf(size).all(axis=1)
    for poisson in (False, True):
        chosen = np.flatnonzero(all_poisson == poisson)
        for start in range(0, chosen.size, per_block):
            block = chosen[start : start + per_block]
            has_booking = booked[block] > 0
            cell_facility, cell_day = np.nonzero(has_booking)
            if poisson:
                free_rate += np.where(has_booking, 0.0, mean[block]).sum(axis=0)
                cell_rate = np.broadcast_to(
                    mean[block][cell_facility, cell_day], (n_paths, cell_day.size)
                )
            else:
                r = np.minimum(size[block], 1e12)
                # float32 Gamma draws: twice as fast, and ample precision for a Poisson rate.
                rate = rng.standard_gamma(
                    r,
                    size=(n_paths, block.size, n_days),
                    dtype=np.float32,
                )
                rate *= (mean[block] / r).astype(np.float32)
                cell_rate = rate[:, cell_facility, cell_day]
                rate[:, cell_facility, cell_day] = 0.0
                free_rate += rate.sum(axis=1, dtype=np.float64)
            if cell_day.size:
                if shared is not None:
                    cell_rate = cell_rate * shared[:, cell_day]
                draws = rng.poisson(cell_rate)
                np.maximum(draws, booked[block][cell_facility, cell_day], out=draws)
                np.add.at(total.T, cell_day, draws.T)  # total[:, day] += draw of each cell
    total += rng.poisson(free_rate if shared is None else free_rate * shared)
    if total.size and total.max() > np.iinfo(np.int32).max:
        raise OverflowError("Regional demand exceeds the int32 range; check the forecast means.")
    return total.astype(np.int32)


def _stable_id(name: str) -> int:
    """A stable 32-bit number for a region or role name (Python's hash() is salted per run)."""
    return zlib.crc32(name.encode("utf-8"))


def _validated_forecast(forecast: pd.DataFrame) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    missing = [c for c in FORECAST_COLUMNS if c not in forecast.columns]
    if missing:
        raise ValueError(
            f"forecast is missing the columns {missing}; it needs {list(FORECAST_COLUMNS)}."
        )
    if forecast.empty:
        raise ValueError("forecast is empty: there is no series to simulate.")
    keep = [*FORECAST_COLUMNS, *(["size"] if "size" in forecast.columns else [])]
    frame = forecast[keep].copy()
    for column in ("series_id", "facility_id", "role", "region"):
        if frame[column].isna().any():
            raise ValueError(f"forecast column {column!r} has missing values.")
        frame[column] = frame[column].astype(str)
    frame["date"] = pd.to_datetime(frame["date"]).dt.normalize()
    mean = pd.to_numeric(frame["mean"], errors="coerce").astype(np.float64)
    bad = ~np.isfinite(mean) | (mean < 0)
    if bad.any():
        example = frame.loc[bad].iloc[0]
        raise ValueError(
            "forecast column 'mean' must be finite and >= 0 (shifts); e.g. series "
            f"{example['series_id']!r} on {example['date']:%Y-%m-%d} has {example['mean']!r}."
        )
    frame["mean"] = mean
    booked = pd.to_numeric(frame["booked"], errors="coerce").astype(np.float64)
    bad = booked.isna() | (booked < 0) | (booked != np.round(booked))
    if bad.any():
        example = frame.loc[bad].iloc[0]
        raise ValueError(
            "forecast column 'booked' must be a whole number >= 0 (shifts); e.g. series "
            f"{example['series_id']!r} on {example['date']:%Y-%m-%d} has {example['booked']!r}."
        )
    frame["booked"] = booked.astype(np.int64)

    labels = frame.groupby("series_id")[["facility_id", "role", "region"]].nunique()
    mixed = labels.index[(labels > 1).any(axis=1)]
    if len(mixed):
        raise ValueError(
            f"series {mixed[0]!r} has more than one facility_id, role or region; "
            "a series is one facility and role."
        )
    duplicated = frame.duplicated(["series_id", "date"])
    if duplicated.any():
        example = frame.loc[duplicated].iloc[0]
        raise ValueError(
            f"forecast has two rows for series {example['series_id']!r} on "
            f"{example['date']:%Y-%m-%d}; expected one row per series and date."
        )
    dates = pd.DatetimeIndex(np.sort(frame["date"].unique()))
    if len(dates) > 1 and (np.diff(dates.to_numpy()) != np.timedelta64(1, "D")).any():
        raise ValueError(
            f"forecast dates must be consecutive days; from {dates[0]:%Y-%m-%d} to "
            f"{dates[-1]:%Y-%m-%d} only {len(dates)} dates are present."
        )
    counts = frame.groupby("series_id").size()
    short = counts.index[counts != len(dates)]
    if len(short):
        raise ValueError(
            f"series {short[0]!r} covers {counts[short[0]]} of the {len(dates)} horizon dates; "
            "every series must cover the same dates."
        )
    return frame, dates


def _validated_size(size: pd.Series, series_id: pd.Series) -> pd.Series:
    size = pd.Series(size, dtype=np.float64)
    size.index = size.index.astype(str)
    if size.index.has_duplicates:
        raise ValueError(f"size lists series {size.index[size.index.duplicated()][0]!r} twice.")
    needed = pd.Index(series_id.unique())
    missing = needed.difference(size.index)
    if len(missing):
        raise ValueError(
            f"size has no dispersion for {len(missing)} series, e.g. {missing[0]!r}; "
            "pass one size (np.inf for Poisson) per series_id."
        )
    size = size.loc[needed]
    bad = size.isna() | (size <= 0)
    if bad.any():
        raise ValueError(
            f"size must be > 0 (np.inf for Poisson); series {size.index[bad][0]!r} has "
            f"{size[bad].iloc[0]!r}."
        )
    return size
