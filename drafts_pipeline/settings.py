"""Settings read from the environment, each with its documented default."""

import os
from datetime import date
from pathlib import Path

from drafts_pipeline.errors import ConfigurationError

LLM_MODES = ("live", "offline")
DATABASE_URL_ENV = "DRAFTS_DATABASE_URL"


def data_dir() -> Path:
    """The project's data folder (`DRAFTS_DATA_DIR`, default `./data`), created on first use."""
    path = Path(os.environ.get("DRAFTS_DATA_DIR", "data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """`DRAFTS_DATABASE_URL`, or the embedded SQLite file in the data folder."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{data_dir() / 'drafts.sqlite3'}"


def usage_start_date() -> str:
    """`DRAFTS_USAGE_START_DATE` (YYYY-MM-DD, UTC): the first day of `daily_llm_usage`,
    default 2026-01-01."""
    raw = os.environ.get("DRAFTS_USAGE_START_DATE", "2026-01-01").strip()
    try:
        date.fromisoformat(raw)
    except ValueError:
        raise ConfigurationError(
            f"DRAFTS_USAGE_START_DATE={raw!r} is not a date written YYYY-MM-DD"
        ) from None
    return raw


def llm_mode() -> str:
    """`DRAFTS_LLM_MODE`: `live` (default) calls the providers, `offline` drafts locally."""
    mode = os.environ.get("DRAFTS_LLM_MODE", "live").strip().lower()
    if mode not in LLM_MODES:
        raise ConfigurationError(f"DRAFTS_LLM_MODE={mode!r} is not one of {', '.join(LLM_MODES)}")
    return mode


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"{name}={raw!r} must be a whole number of at least 1")
    return value


def batch_size() -> int:
    """`DRAFTS_BATCH_SIZE`: tasks per Dagster run (sensor batches and backfills), default 100."""
    return _positive_int("DRAFTS_BATCH_SIZE", 100)


def sensor_max_tasks_per_tick() -> int:
    """`DRAFTS_SENSOR_MAX_TASKS`: new tasks one sensor tick reads at most, default 1000."""
    return _positive_int("DRAFTS_SENSOR_MAX_TASKS", 1000)


def sensor_interval_s() -> int:
    """`DRAFTS_SENSOR_INTERVAL_S`: seconds between sensor ticks at the least, default 30."""
    return _positive_int("DRAFTS_SENSOR_INTERVAL_S", 30)


def in_process_runs() -> int:
    """`DRAFTS_IN_PROCESS_RUNS`: batch runs `drafts-pipeline run` keeps going at once, default 3:
    one sending to the providers, one finishing (answers, events, ballots), one setting up."""
    return _positive_int("DRAFTS_IN_PROCESS_RUNS", 3)
