"""CPU seconds per series of the forecasting engine, as the weekly run calls it.

Usage (from the repository root, one core):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/engine_profile.py 200 [--profile] [--save FILE | --compare FILE]

Loads the first N series of the scaling benchmark's history (1000 series x 3 years), splits them
into batches of ``series_per_task`` exactly as the flow does (flows.weekly_forecast
.series_batches), and forecasts each batch with ``forecast_many`` with the flow's configuration
(flows.weekly_forecast.engine_config with default settings), its horizon (``horizon_days``) and
start (the run's as_of: the day after the last history date). Prints CPU seconds
(time.process_time) per series. ``--profile`` adds cProfile top-30 by cumulative and by tottime;
``--save`` pickles the outputs (forecast with quantiles, evaluation, backtest errors) and
``--compare`` prints the largest absolute (and relative) difference per column against a saved
pickle (and exits 1 unless every column is equal within 1e-9 relative, dtypes and index too).
``--check-hw`` instead checks models.forecasters.HoltWinters (which reproduces statsmodels' fit
without its overhead) against statsmodels' ExponentialSmoothing, bit for bit, on every backtest
origin of the N series.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pickle
import pstats
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
HISTORY = ROOT / "benchmarks" / "out" / "dask-scaling-history-1000s-3y-seed7.parquet"


def _load(n: int) -> Any:
    from dask_scaling import _history  # builds and caches HISTORY when it is not there yet

    history = _history(1000, 3.0, 7)
    ids = history["series_id"].unique()[:n]
    return history[history["series_id"].isin(ids)].reset_index(drop=True)


def _outputs(results: list[Any]) -> dict[str, Any]:
    import pandas as pd

    return {
        "forecast": pd.concat([r.with_quantiles() for r in results], ignore_index=True),
        "evaluation": pd.concat([r.evaluation for r in results], ignore_index=True),
        "backtest_errors": pd.concat([r.backtest_errors for r in results], ignore_index=True),
        "size": pd.concat([r.size for r in results]),
        "family": pd.concat([r.family for r in results]),
    }


def _compare(current: dict[str, Any], saved: dict[str, Any]) -> bool:
    import numpy as np
    import pandas as pd

    same = True
    for key, old in saved.items():
        new = current[key]
        if isinstance(old, pd.Series):
            old, new = old.to_frame(), new.to_frame()
        if old.shape != new.shape or list(old.columns) != list(new.columns):
            print(f"{key}: shape/columns differ {old.shape} {new.shape}")
            same = False
            continue
        if not old.dtypes.equals(new.dtypes) or not old.index.equals(new.index):
            print(f"{key}: dtypes or index differ\n{old.dtypes}\n{new.dtypes}")
            same = False
        for column in old.columns:
            a, b = old[column], new[column]
            if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
                x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
                nan_same = np.array_equal(np.isnan(x), np.isnan(y))
                with np.errstate(invalid="ignore"):
                    diff = np.where(x == y, 0.0, np.abs(x - y))  # inf == inf is no difference
                diff = np.nan_to_num(diff[~np.isnan(x) & ~np.isnan(y)], nan=np.inf)
                scale = np.maximum(np.abs(x[~np.isnan(x) & ~np.isnan(y)]), 1e-300)
                worst = float(diff.max()) if diff.size else 0.0
                worst_rel = float((diff / scale).max()) if diff.size else 0.0
                flag = "" if nan_same and worst_rel <= 1e-9 else "  <-- DIFFERS"
                same = same and not flag
                print(f"{key}.{column}: max abs diff {worst:.3g}, max rel {worst_rel:.3g}{flag}")
            else:
                equal = bool((a.astype(object).to_numpy() == b.astype(object).to_numpy()).all())
                same = same and equal
                print(f"{key}.{column}: {'identical' if equal else 'DIFFERS'}")
    print("OUTPUTS IDENTICAL (within 1e-9 relative)" if same else "OUTPUTS DIFFER")
    return same


def _check_holt_winters(history: Any, horizon: int) -> bool:
    """HoltWinters (the engine's own fit) against statsmodels' ExponentialSmoothing, bit for bit,
    on every backtest origin's history of every series (both seasons)."""
    import numpy as np

    from models.forecasters import HoltWinters, _statsmodels_holt_winters

    checked = differ = 0
    for _, group in history.groupby("series_id", sort=False):
        y = group["demand"].to_numpy(dtype=float)
        for end in (y.size, *(y.size - 91 - 91 * j for j in range(4))):
            for season in (7, 14):
                model = HoltWinters(season=season)
                tail = np.asarray(y[:end][-model.max_days :], dtype=float)
                if end <= 0 or tail.size < 2 * season + 2 or not tail.any():
                    continue
                ours = model.fit(y[:end]).predict(horizon)
                reference = _statsmodels_holt_winters(tail, season).forecast(horizon)
                reference = np.clip(np.asarray(reference, dtype=float), 0.0, None)
                checked += 1
                differ += not np.array_equal(ours, reference)
    print(f"Holt-Winters: {checked} fits, {differ} differ from statsmodels")
    return differ == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("series", type=int, nargs="?", default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", type=Path)
    parser.add_argument("--series-per-task", type=int, default=None)
    parser.add_argument(
        "--check-hw", action="store_true", help="compare HoltWinters with statsmodels and exit"
    )
    args = parser.parse_args()

    import pandas as pd

    from flows.weekly_forecast import engine_config, series_batches
    from models.forecasting import forecast_many
    from staffcast.settings import Settings

    settings = Settings()
    config = engine_config(settings)
    per_task = args.series_per_task or settings.series_per_task
    horizon = settings.horizon_days
    history = _load(args.series)
    start = pd.Timestamp(history["date"].max()) + pd.Timedelta(days=1)
    if args.check_hw:
        return 0 if _check_holt_winters(history, horizon) else 1
    batches = series_batches(history, per_task)
    n = history["series_id"].nunique()

    # Warm-up outside the timing: imports and the holiday tables (lru-cached, per process).
    forecast_many(
        batches[0][batches[0]["series_id"] == batches[0]["series_id"].iloc[0]],
        horizon,
        config=config,
        start=start,
    )

    profiler = cProfile.Profile() if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    results = [forecast_many(b, horizon, config=config, start=start) for b in batches]
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"{n} series in {len(batches)} batch(es) of <= {per_task}, horizon {horizon}, "
        f"start {start.date()}: {cpu:.2f} CPU s, {wall:.2f} wall s, "
        f"{cpu / n:.4f} CPU s/series"
    )
    if profiler:
        for key in ("cumulative", "tottime"):
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats(key).print_stats(30)
            print(f"--- top 30 by {key} ---")
            print(stream.getvalue())

    outputs = _outputs(results)
    if args.save:
        with open(args.save, "wb") as handle:
            pickle.dump(outputs, handle)
        print(f"saved outputs to {args.save}")
    if args.compare:
        with open(args.compare, "rb") as handle:
            saved = pickle.load(handle)
        return 0 if _compare(outputs, saved) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
