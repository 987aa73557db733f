"""The project's settings, read from the environment once into one validated value.

Reading never raises: a bad value is replaced by its default and remembered as a problem, so
that the code location still loads. Whatever needs the value (a run, a sensor tick, a command)
calls `require` and fails with a message naming the variable.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from drafts_pipeline.errors import ConfigurationError

LLM_MODES = ("live", "offline")
SUBMIT_MODES = ("live", "batch")
LOG_FORMATS = ("text", "json")
DATABASE_URL_ENV = "DRAFTS_DATABASE_URL"
VOTING_SECRET_ENV = "DRAFTS_VOTING_SECRET"
MIN_VOTING_SECRET_CHARS = 32

T = TypeVar("T")


def _positive_int(raw: str) -> int:
    value = int(raw) if raw.lstrip("+").isdigit() else 0
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _quorum(raw: str) -> int:
    value = int(raw) if raw.lstrip("+").isdigit() else 0
    if not 1 <= value <= 26:
        raise ValueError("must be a whole number from 1 to 26 (a ballot has labels A to Z)")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A parser of a value that must be one of `choices` (any case)."""

    def parse(raw: str) -> str:
        chosen = raw.lower()
        if chosen not in choices:
            raise ValueError(f"is not one of {', '.join(choices)}")
        return chosen

    return parse


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def _dollars(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise ValueError("must be an amount in US dollars, 0 or more, e.g. 25 or 7.50")
    return value


def _iso_date(raw: str) -> str:
    try:
        date.fromisoformat(raw)
    except ValueError:
        raise ValueError("is not a date written YYYY-MM-DD") from None
    return raw


def _voting_secret(raw: str, problems: dict[str, str]) -> str | None:
    """The voting page's signing key, or None when unset; a short one is a problem whose message
    never repeats the value."""
    if not raw:
        return None
    if len(raw) < MIN_VOTING_SECRET_CHARS:
        problems["voting_secret"] = (
            f"{VOTING_SECRET_ENV} is {len(raw)} characters long; "
            f"give it at least {MIN_VOTING_SECRET_CHARS} random ones"
        )
        return None
    return raw


@dataclass(frozen=True)
class Settings:
    """Every `DRAFTS_*` setting, with its documented default."""

    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    """`DRAFTS_DATA_DIR`: the data folder (SQLite store, exports), default `./data`."""
    database_url_env: str | None = None
    """`DRAFTS_DATABASE_URL` as set, or None for the SQLite file in the data folder."""
    llm_mode: str = "live"
    """`DRAFTS_LLM_MODE`: `live` calls the providers, `offline` drafts locally."""
    submit_mode: str = "live"
    """`DRAFTS_SUBMIT_MODE`: `live` calls the providers one request at a time; `batch` sends
    each run's requests to a provider as one batch (half price, answered within a day)."""
    batch_size: int = 100
    """`DRAFTS_BATCH_SIZE`: tasks per Dagster run (sensor batches and backfills)."""
    sensor_max_tasks: int = 1000
    """`DRAFTS_SENSOR_MAX_TASKS`: new tasks one sensor tick reads at most."""
    sensor_interval_s: int = 30
    """`DRAFTS_SENSOR_INTERVAL_S`: seconds between sensor ticks at the least."""
    in_process_runs: int = 3
    """`DRAFTS_IN_PROCESS_RUNS`: batch runs `drafts-pipeline run` keeps going at once."""
    usage_start_date: str = "2026-01-01"
    """`DRAFTS_USAGE_START_DATE` (YYYY-MM-DD, UTC): the first day of `daily_llm_usage`."""
    claim_lease_s: float = 60.0
    """`DRAFTS_CLAIM_LEASE_S`: how long a run's claim on a (task, provider) lasts unless
    renewed; after a crash, the next run redoes the dead run's work once it has passed."""
    db_retry_s: float = 60.0
    """`DRAFTS_DB_RETRY_S`: how long store operations retry a lost database connection (a
    PostgreSQL restart, a failover) before the step fails; 0 fails at once."""
    max_code_chars: int = 50_000
    """`DRAFTS_MAX_CODE_CHARS`: the most characters of code a task may hold."""
    max_context_chars: int = 200_000
    """`DRAFTS_MAX_CONTEXT_CHARS`: the most characters of context a task may hold."""
    context_budget_tokens: int = 2_000
    """`DRAFTS_CONTEXT_BUDGET_TOKENS`: the most tokens of context a prompt carries (estimated at
    3.5 characters a token); a longer context is cut around the symbol. A template may set its
    own."""
    max_prompt_tokens: int = 16_000
    """`DRAFTS_MAX_PROMPT_TOKENS`: the most tokens a whole prompt (fixed part, task part and
    code) may have; a symbol whose code alone goes over it fails before any call. A template
    may set its own."""
    min_drafts: int = 2
    """`DRAFTS_MIN_DRAFTS`: valid drafts a task needs before its ballot (the quorum), 1 to 26;
    the ballot's run config `min_drafts` overrides it for one run."""
    min_votes: int = 3
    """`DRAFTS_MIN_VOTES`: current votes a task needs before one of its drafts is accepted."""
    daily_budget_usd: Decimal | None = None
    """`DRAFTS_DAILY_BUDGET_USD`: what all providers together may spend a UTC day; None for no
    cap (each provider may also have its own, `DRAFTS_<PROVIDER>_DAILY_BUDGET_USD`)."""
    log_format: str = "text"
    """`DRAFTS_LOG_FORMAT`: the pipeline's own log lines as plain `text`, or `json` (one object
    a line, with task id, provider, attempt and run id as fields where known)."""
    voting_secret: str | None = field(default=None, repr=False)
    """`DRAFTS_VOTING_SECRET`: the key the voting page signs its cookie with; None makes the
    page draw a new one at each start (voters then give their name again)."""
    problems: Mapping[str, str] = field(default_factory=dict)
    """Field name -> why its variable's value was refused (the field holds the default)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        defaults = cls()
        problems: dict[str, str] = {}

        def read(name: str, variable: str, parse: Callable[[str], T]) -> T:
            raw = env.get(variable, "").strip()
            default: T = getattr(defaults, name)
            if not raw:
                return default
            try:
                return parse(raw)
            except ValueError as error:
                problems[name] = f"{variable}={raw!r} {error}"
                return default

        return cls(
            data_dir=Path(env.get("DRAFTS_DATA_DIR") or "data").resolve(),
            database_url_env=env.get(DATABASE_URL_ENV) or None,
            llm_mode=read("llm_mode", "DRAFTS_LLM_MODE", _one_of(LLM_MODES)),
            submit_mode=read("submit_mode", "DRAFTS_SUBMIT_MODE", _one_of(SUBMIT_MODES)),
            batch_size=read("batch_size", "DRAFTS_BATCH_SIZE", _positive_int),
            sensor_max_tasks=read("sensor_max_tasks", "DRAFTS_SENSOR_MAX_TASKS", _positive_int),
            sensor_interval_s=read("sensor_interval_s", "DRAFTS_SENSOR_INTERVAL_S", _positive_int),
            in_process_runs=read("in_process_runs", "DRAFTS_IN_PROCESS_RUNS", _positive_int),
            usage_start_date=read("usage_start_date", "DRAFTS_USAGE_START_DATE", _iso_date),
            claim_lease_s=read("claim_lease_s", "DRAFTS_CLAIM_LEASE_S", _positive_seconds),
            db_retry_s=read("db_retry_s", "DRAFTS_DB_RETRY_S", _seconds),
            max_code_chars=read("max_code_chars", "DRAFTS_MAX_CODE_CHARS", _positive_int),
            max_context_chars=read("max_context_chars", "DRAFTS_MAX_CONTEXT_CHARS", _positive_int),
            context_budget_tokens=read(
                "context_budget_tokens", "DRAFTS_CONTEXT_BUDGET_TOKENS", _positive_int
            ),
            max_prompt_tokens=read("max_prompt_tokens", "DRAFTS_MAX_PROMPT_TOKENS", _positive_int),
            min_drafts=read("min_drafts", "DRAFTS_MIN_DRAFTS", _quorum),
            min_votes=read("min_votes", "DRAFTS_MIN_VOTES", _positive_int),
            daily_budget_usd=read("daily_budget_usd", "DRAFTS_DAILY_BUDGET_USD", _dollars),
            log_format=read("log_format", "DRAFTS_LOG_FORMAT", _one_of(LOG_FORMATS)),
            voting_secret=_voting_secret(env.get(VOTING_SECRET_ENV, ""), problems),
            problems=problems,
        )

    def require(self, *names: str) -> "Settings":
        """These settings (all when none are named) as read, or a ConfigurationError naming
        every bad variable among them."""
        known = {f.name for f in fields(self)}
        unknown = set(names) - known
        if unknown:
            raise ValueError(f"no such setting: {', '.join(sorted(unknown))}")
        bad = [problem for name, problem in self.problems.items() if not names or name in names]
        if bad:
            raise ConfigurationError("; ".join(bad))
        return self

    @property
    def database_url(self) -> str:
        """`DRAFTS_DATABASE_URL`, or the embedded SQLite file in the data folder (created)."""
        if self.database_url_env:
            return self.database_url_env
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'drafts.sqlite3'}"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir
