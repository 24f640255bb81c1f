"""All of staffcast's settings in one place.

Every field can be set from the environment with the prefix ``STAFFCAST_`` (for example
``STAFFCAST_SOURCE_URL``); nested staffing parameters use ``__`` as the delimiter
(``STAFFCAST_STAFFING__RN__SERVICE_LEVEL=0.9``). Nothing else in the code reads the environment.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RoleStaffing(BaseModel):
    """Staffing parameters for one role (RN or LPN): unit, reason and source of each default.

    Each description ends with its source, or says "Assumption:" where no public figure exists
    and the default is a starting point to replace with the agency's own policy or data
    (acceptance and attrition are estimated from the agency's data when there is enough).
    """

    service_level: float = Field(
        0.95,
        gt=0,
        lt=1,
        description=(
            "Probability (0-1) that the on-call pool covers all of a day's requests. A policy "
            "choice, not a measurement: the share of days the agency promises to fill. "
            "Assumption: 95%, a common fill-rate commitment; set your contracts' figure."
        ),
    )
    acceptance_rate: float = Field(
        0.35,
        gt=0,
        le=1,
        description=(
            "Probability (0-1) that a pool nurse accepts a call; the prior that shift_offers "
            "estimates are shrunk toward (min_offers_for_estimate). Assumption: about one call "
            "in three is accepted in per-diem pools; no public benchmark exists, so the run "
            "uses your offers as soon as there are enough."
        ),
    )
    max_shifts_per_week: int = Field(
        4,
        ge=1,
        le=7,
        description=(
            "Shifts one on-call nurse works per week at most (shifts). Four 12-hour shifts are "
            "48 hours. Source: Institute of Medicine, Keeping Patients Safe (2004), recommends "
            "at most 60 hours in 7 days; Rogers et al., Health Affairs 23(4), 2004, found error "
            "risk rising beyond 40 hours a week."
        ),
    )
    holiday_acceptance_factor: float = Field(
        0.7,
        gt=0,
        le=1,
        description=(
            "Multiplier (0-1) on acceptance_rate for holidays: fewer nurses take a call on "
            "Christmas Day; used where shift_offers has too few holiday offers. Assumption: "
            "30% fewer acceptances; the run estimates holiday acceptance from your offers."
        ),
    )
    annual_attrition: float = Field(
        0.25,
        ge=0,
        lt=1,
        description=(
            "Share of the pool that leaves in a year (0-1); the prior the nurses table's "
            "estimate is shrunk toward (min_pool_for_attrition). Source: NSI Nursing "
            "Solutions, 2025 National Health Care Retention & RN Staffing Report: 16.4% RN "
            "turnover at hospitals; agency pools churn faster, hence 25% (assumption)."
        ),
    )
    time_to_hire_days: int = Field(
        83,
        ge=0,
        description=(
            "Days from opening a requisition to an accepted offer (days). Source: NSI Nursing "
            "Solutions, 2025 National Health Care Retention & RN Staffing Report: 83 days to "
            "recruit an experienced RN."
        ),
    )
    onboarding_days: int = Field(
        14,
        ge=0,
        description=(
            "Days from an accepted offer to a nurse on call: credential and licence checks, "
            "orientation (days). Assumption: two weeks, typical for agencies; set your own."
        ),
    )


def _default_staffing() -> dict[str, RoleStaffing]:
    return {
        "RN": RoleStaffing(),
        # Assumptions: LPN requisitions fill faster (a larger labour pool, shorter
        # credentialing) and LPNs accept and leave more often than RNs; no public LPN benchmark
        # matches NSI's RN figures, so replace these with your own history.
        "LPN": RoleStaffing(
            acceptance_rate=0.4,
            time_to_hire_days=60,
            annual_attrition=0.3,
        ),
    }


class Settings(BaseSettings):
    """staffcast settings; each field's description says its unit and why it has its default."""

    model_config = SettingsConfigDict(
        env_prefix="STAFFCAST_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    home: Path = Field(
        Path(".staffcast"),
        description=(
            "Folder for the demo source database, the default reporting database, reports and "
            "Prefect's local state."
        ),
    )
    source_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the operational database (read-only). Default: the demo SQLite "
            "file in `home`."
        ),
    )
    reporting_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the reporting database. Default: reporting.db (SQLite) in `home`."
        ),
    )
    source_mapping: Path | None = Field(
        None,
        description=(
            "YAML file mapping the agency's own tables, columns (or SQL expressions), value "
            "codes, out-of-scope roles and timestamp formats to staffcast's source contract "
            "(docs/source-contract.md). Unset: the source uses staffcast's own names."
        ),
    )
    source_retry_seconds: float = Field(
        120.0,
        ge=0,
        description=(
            "How long to keep retrying a source database that is busy or does not answer "
            "(seconds, counted from its first failure): a SQLite file another program holds a "
            "write lock on, a PostgreSQL server that refuses connections, restarts or reports "
            "a serialization failure or deadlock. 0: fail at once. Wrong credentials, missing "
            "tables and refused permissions are never retried."
        ),
    )
    source_retry_delay_seconds: float = Field(
        1.0,
        gt=0,
        le=15,
        description=(
            "Seconds before the first retry of a busy source database; doubled after each "
            "try, at most 15 s, and never past source_retry_seconds."
        ),
    )
    agency_timezone: str = Field(
        "America/Chicago",
        description="IANA zone of the agency; as_of is midnight in this zone.",
    )
    horizon_days: int = Field(
        182, ge=7, le=730, description="Forecast horizon in days, as_of included (26 weeks)."
    )
    history_days: int = Field(
        3 * 365 + 1,
        ge=28,
        description="Days of history before as_of that the forecasts learn from.",
    )
    late_cancellation_hours: float = Field(
        24.0,
        ge=0,
        description=(
            "A request cancelled less than this many hours before its shift start still counts "
            "as demand (the facility needed the nurse until then)."
        ),
    )
    max_quarantine_share: float = Field(
        0.10,
        ge=0,
        le=1,
        description="Share (0-1) of shift_requests rows in quarantine above which a run stops.",
    )
    max_region_loss_share: float = Field(
        0.10,
        ge=0,
        le=1,
        description=(
            "Share (0-1) of one region and role's recent demand (impact_window_days) lost to "
            "quarantined requests above which a run stops: its plan would be short by about "
            "that much, however small the agency-wide share."
        ),
    )
    impact_window_days: int = Field(
        28,
        ge=7,
        description=(
            "Days before as_of over which the demand lost to quarantined and excluded rows is "
            "measured (the recent weeks that set each forecast's level)."
        ),
    )
    impute_lost_demand: bool = Field(
        True,
        description=(
            "Put quarantined requests whose facility and date are known back into the demand "
            "history as whole requests, so a few broken rows do not shrink the forecast."
        ),
    )
    max_source_lag_days: float = Field(
        2.0,
        ge=0,
        description=(
            "A run stops when the newest request in the source was made more than this many "
            "days before as_of: a lagging replica or an old export would otherwise publish a "
            "week with requests missing as if demand had fallen (days)."
        ),
    )
    allow_future_as_of: bool = Field(
        False,
        description=(
            "Allow an as_of after today in the agency's zone (--allow-future-as-of). A run for "
            "a future week sees demand that has not been requested yet and would become the "
            "current plan; refused unless asked for explicitly."
        ),
    )
    backfill: bool = Field(
        False,
        description=(
            "Publish without taking over from a current run of a later as_of (--backfill): for "
            "filling in past weeks. Without it, the run last published is the current run, so a "
            "correcting rerun of an earlier week replaces a bad later one in every current_ view."
        ),
    )
    replay_cache_mb: float = Field(
        2048.0,
        ge=0,
        description=(
            "Memory `staffcast replay` may keep the source's streamed tables in (MB), so that "
            "the database is read once for all the weeks; a larger source is read again for "
            "each week (0: always)."
        ),
    )
    heartbeat_seconds: float = Field(
        30.0,
        gt=0,
        description="How often a running run refreshes forecast_run.heartbeat_at (seconds).",
    )
    abandon_after_seconds: float = Field(
        600.0,
        gt=0,
        description=(
            "A running run whose heartbeat is older than this is marked abandoned by the next "
            "run: its process died (seconds; keep it several heartbeats long)."
        ),
    )
    concurrent_run: Literal["refuse", "wait"] = Field(
        "refuse",
        description=(
            "What a run does when another run for the same as_of is in progress: refuse (exit "
            "at once with a paragraph naming it) or wait for it to end."
        ),
    )
    concurrent_wait_seconds: float = Field(
        3600.0,
        ge=0,
        description="With concurrent_run=wait, how long to wait for the run in progress (seconds).",
    )
    reporting_min_free_mb: float = Field(
        256.0,
        ge=0,
        description="Free disk a SQLite reporting database needs before a run starts (MB).",
    )
    prefect_server_startup_seconds: float = Field(
        120.0,
        gt=0,
        description=(
            "How long `staffcast run` waits for the local Prefect server it starts when "
            "PREFECT_API_URL is unset (seconds)."
        ),
    )
    progress_bar: bool = Field(
        True,
        description=(
            "Show a progress bar (batches done, time left) on the terminal while a run's "
            "stages run, when a person is watching: stderr is a terminal, and neither CI nor "
            "pytest. false: never. The Prefect progress artifact moves either way."
        ),
    )
    recent_days_required: int = Field(
        14,
        ge=1,
        description="A run stops when no request was made in this many days before as_of.",
    )
    acceptance_lookback_days: int = Field(
        180, ge=7, description="Days of shift_offers before as_of used to estimate acceptance."
    )
    min_offers_for_estimate: int = Field(
        50,
        ge=1,
        description=(
            "Weight of the configured acceptance_rate, in offers: a region and role's estimate "
            "is (accepted + rate x this) / (offers + this), so with 50 offers it is halfway "
            "between what was observed and the configured rate, and with 500 mostly observed. "
            "50 offers give the observed rate a standard error of about 7 points."
        ),
    )
    attrition_lookback_days: int = Field(
        365, ge=30, description="Days of the nurses table used to estimate attrition."
    )
    min_pool_for_attrition: int = Field(
        20,
        ge=1,
        description=(
            "Weight of the configured annual_attrition, in nurse-years: the estimate is "
            "(leavers + attrition x this) / (nurse-years employed + this), so a region with 20 "
            "nurses over the last year sits halfway between its own rate and the configured one."
        ),
    )
    recruiting_window_weeks: int = Field(
        8,
        ge=1,
        description=(
            "Weeks after a new hire becomes productive over which the target pool is the "
            "largest weekly pool needed."
        ),
    )
    sample_paths: int = Field(
        1000,
        ge=100,
        description="Demand sample paths per series used for regional quantiles and pools.",
    )
    backtest_days: int = Field(
        91,
        ge=14,
        description=(
            "Longest backtest window in days: each candidate model forecasts this many days "
            "(or the horizon, if shorter) after each rolling origin to be scored and calibrated."
        ),
    )
    backtest_origins: int = Field(
        4,
        ge=1,
        le=12,
        description=(
            "Rolling origins per series for model choice and calibration (fewer when the "
            "history is short)."
        ),
    )
    backtest_origin_step: int = Field(
        91,
        ge=1,
        description=(
            "Days between rolling origins: a quarter apart, so that the backtests see a year "
            "of different conditions, not four views of the same month."
        ),
    )
    selection_pooling: float = Field(
        0.75,
        ge=0.0,
        le=1.0,
        description=(
            "Weight (0-1) of the batch's mean backtest score in each series' model choice; "
            "0 = each series on its own; one series' few backtests are noisy."
        ),
    )
    forecast_models: tuple[str, ...] | None = Field(
        None,
        description=(
            "Candidate models (names in models/forecasting.py MODEL_FACTORIES); unset: the "
            "engine's DEFAULT_MODELS. Add 'prophet' to try Prophet too, at ~25x the cost per "
            "series."
        ),
    )
    forecast_combinations: tuple[tuple[str, ...], ...] | None = Field(
        None,
        description=(
            "Combinations (mean of the members' forecasts) scored beside the models; unset: "
            "the engine's DEFAULT_COMBINATIONS."
        ),
    )
    series_per_task: int = Field(
        250, ge=1, description="Series forecast by one Prefect task run (batching)."
    )
    forecast_workers: int = Field(
        0,
        ge=0,
        description=(
            "Processes that forecast batches in parallel: 0 is one per CPU core, 1 forecasts "
            "in the flow's own process. A run with one batch (under series_per_task series) "
            "always uses its own process. Not used when dask_address or dask_workers is set."
        ),
    )
    dask_address: str | None = Field(
        None,
        description=(
            "Address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786) whose workers "
            "forecast the batches, each batch a Prefect task run; extract, validation, planning "
            "and publishing stay in the run's process, and only series histories (series_id, "
            "date, demand) and their forecasts travel. The workers need this staffcast version "
            "and its lock, and must reach the run's Prefect API (README, 'Running on a Dask "
            "cluster'). Unset: no Dask cluster, unless dask_workers is set."
        ),
    )
    dask_workers: int = Field(
        0,
        ge=0,
        description=(
            "Worker processes (one thread each) of a Dask LocalCluster on this machine that the "
            "run starts for its forecast batches and stops when they are done; 0: none. Not "
            "together with dask_address. With both unset the batches run in forecast_workers "
            "processes of the run's own."
        ),
    )
    holiday_country: str = Field("US", description="`holidays` country code for holidays.")
    holiday_subdivision: str | None = Field(
        None, description="`holidays` subdivision (state) code, if any."
    )
    agency_days: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "The agency's own holidays beside the public ones and Christmas Eve, New Year's "
            "Eve and Black Friday: date -> name, MM-DD for every year or YYYY-MM-DD for one "
            'day, e.g. STAFFCAST_AGENCY_DAYS=\'{"07-03": "Summer picnic"}\'. They get holiday '
            "effects in the forecasts and rows in holiday_coverage."
        ),
    )
    region_staffing: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict,
        description=(
            "Per-region overrides of the staffing parameters: region -> role -> parameter -> "
            'value, e.g. {"North Shore": {"RN": {"service_level": 0.97}}} (a JSON object in '
            "the environment). Estimates from the data still win for acceptance and attrition."
        ),
    )
    scenarios: tuple[str, ...] = Field(
        (),
        description=(
            "What-if scenarios stored beside 'base', each 'name:parameter=value,...' with a "
            "parameter of the staffing settings, for every role or one (service_level=0.9, "
            "acceptance_rate.RN=0.3); a JSON list in the environment."
        ),
    )
    seed: int = Field(20261126, description="Random seed for sample paths (reproducible runs).")
    staffing: dict[str, RoleStaffing] = Field(
        default_factory=_default_staffing,
        description="Staffing parameters per role (RN, LPN).",
    )

    @property
    def demo_source_path(self) -> Path:
        """SQLite file the demo agency is written to."""
        return self.home / "demo_operational.db"

    @property
    def resolved_source_url(self) -> str:
        """The source URL, defaulting to the demo SQLite file."""
        return self.source_url or f"sqlite:///{self.demo_source_path}"

    @property
    def resolved_reporting_url(self) -> str:
        """The reporting URL, defaulting to reporting.db in ``home``."""
        return self.reporting_url or f"sqlite:///{self.home / 'reporting.db'}"

    @property
    def report_dir(self) -> Path:
        """Folder where HTML reports are written."""
        return self.home / "reports"

    def report_path(self, as_of: date) -> Path:
        """The HTML report of the run for ``as_of`` (its CSV goes beside it)."""
        return self.report_dir / f"staffcast-{as_of}.html"

    @property
    def unrecorded_dir(self) -> Path:
        """Outcomes of runs the reporting database refused to record, for the next run."""
        return self.home / "unrecorded-runs"

    @property
    def prefect_home(self) -> Path:
        """Prefect's local state when no Prefect server is configured."""
        return self.home / "prefect"
