"""Settings read from the environment, each with its documented default."""

import os
from pathlib import Path

from drafts_pipeline.errors import ConfigurationError

LLM_MODES = ("live", "offline")


def data_dir() -> Path:
    """The project's data folder (`DRAFTS_DATA_DIR`, default `./data`), created on first use."""
    path = Path(os.environ.get("DRAFTS_DATA_DIR", "data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """`DRAFTS_DATABASE_URL`, or the embedded SQLite file in the data folder."""
    url = os.environ.get("DRAFTS_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{data_dir() / 'drafts.sqlite3'}"


def llm_mode() -> str:
    """`DRAFTS_LLM_MODE`: `live` (default) calls the providers, `offline` drafts locally."""
    mode = os.environ.get("DRAFTS_LLM_MODE", "live").strip().lower()
    if mode not in LLM_MODES:
        raise ConfigurationError(
            f"DRAFTS_LLM_MODE={mode!r} is not one of {', '.join(LLM_MODES)}"
        )
    return mode
