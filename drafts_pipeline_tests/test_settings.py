"""`Settings`: read once, validated; a bad value fails what needs it, not the code location."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.settings import Settings


def test_defaults_where_nothing_is_set(tmp_path: Path) -> None:
    settings = Settings.from_environment({"DRAFTS_DATA_DIR": str(tmp_path)})
    assert settings.require() is settings
    assert (settings.batch_size, settings.sensor_max_tasks, settings.sensor_interval_s) == (
        100,
        1000,
        30,
    )
    assert (settings.llm_mode, settings.in_process_runs) == ("live", 3)
    assert settings.submit_mode == "live"
    assert settings.usage_start_date == "2026-01-01"
    assert (settings.max_code_chars, settings.max_context_chars) == (50_000, 200_000)
    assert settings.min_votes == 3
    assert settings.database_url == f"sqlite:///{tmp_path / 'drafts.sqlite3'}"


def test_values_are_read_and_trimmed() -> None:
    settings = Settings.from_environment(
        {
            "DRAFTS_MAX_CODE_CHARS": "120000",
            "DRAFTS_MAX_CONTEXT_CHARS": " 900 ",
            "DRAFTS_BATCH_SIZE": " 7 ",
            "DRAFTS_LLM_MODE": "Offline",
            "DRAFTS_USAGE_START_DATE": "2026-11-01",
            "DRAFTS_DATABASE_URL": "postgresql://db/drafts",
            "DRAFTS_MIN_VOTES": "5",
            "DRAFTS_SUBMIT_MODE": " Batch ",
        }
    )
    assert settings.min_votes == 5
    assert settings.submit_mode == "batch"
    assert (settings.batch_size, settings.llm_mode) == (7, "offline")
    assert settings.usage_start_date == "2026-11-01"
    assert (settings.max_code_chars, settings.max_context_chars) == (120_000, 900)
    assert settings.database_url == "postgresql://db/drafts"


@pytest.mark.parametrize(
    ("variable", "raw", "field", "message"),
    [
        ("DRAFTS_BATCH_SIZE", "abc", "batch_size", "DRAFTS_BATCH_SIZE='abc' must be a whole"),
        ("DRAFTS_BATCH_SIZE", "0", "batch_size", "DRAFTS_BATCH_SIZE='0' must be a whole"),
        ("DRAFTS_SENSOR_INTERVAL_S", "-5", "sensor_interval_s", "DRAFTS_SENSOR_INTERVAL_S='-5'"),
        ("DRAFTS_LLM_MODE", "online", "llm_mode", "DRAFTS_LLM_MODE='online' is not one of"),
        ("DRAFTS_SUBMIT_MODE", "bulk", "submit_mode", "DRAFTS_SUBMIT_MODE='bulk' is not one of"),
        ("DRAFTS_USAGE_START_DATE", "tomorrow", "usage_start_date", "is not a date written"),
        ("DRAFTS_MAX_CODE_CHARS", "50k", "max_code_chars", "DRAFTS_MAX_CODE_CHARS='50k' must be"),
        ("DRAFTS_MAX_CONTEXT_CHARS", "-1", "max_context_chars", "DRAFTS_MAX_CONTEXT_CHARS='-1'"),
        ("DRAFTS_MIN_VOTES", "0", "min_votes", "DRAFTS_MIN_VOTES='0' must be a whole number"),
    ],
)
def test_a_bad_value_keeps_its_default_until_required(
    variable: str, raw: str, field: str, message: str
) -> None:
    settings = Settings.from_environment({variable: raw})
    assert getattr(settings, field) == getattr(Settings(), field)
    others = [name for name in ("batch_size", "llm_mode", "usage_start_date") if name != field]
    assert settings.require(*others) is settings
    with pytest.raises(ConfigurationError, match=message):
        settings.require(field)
    with pytest.raises(ConfigurationError, match=variable):
        settings.require()


def test_every_bad_variable_is_named_at_once() -> None:
    settings = Settings.from_environment({"DRAFTS_BATCH_SIZE": "x", "DRAFTS_LLM_MODE": "y"})
    with pytest.raises(ConfigurationError, match=r"DRAFTS_LLM_MODE='y'.*DRAFTS_BATCH_SIZE='x'"):
        settings.require()


def test_asking_for_an_unknown_setting_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no such setting: batch"):
        Settings().require("batch")


LOAD_DEFINITIONS = """
import json
from drafts_pipeline.definitions import defs
sensor = defs.resolve_sensor_def("drafting_tasks_sensor")
usage = defs.resolve_assets_def("daily_llm_usage")
ballot = defs.resolve_assets_def("voting_ballot")
print(json.dumps({
    "interval": sensor.minimum_interval_seconds,
    "first_day": usage.partitions_def.start.strftime("%Y-%m-%d"),
    "per_run": ballot.backfill_policy.max_partitions_per_run,
}))
"""


@pytest.mark.slow
def test_the_code_location_loads_with_bad_values(tmp_path: Path) -> None:
    """As `dagster dev` loads it: a fresh interpreter, the bad values in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {
        "DRAFTS_DATA_DIR": str(tmp_path),
        "DRAFTS_BATCH_SIZE": "abc",
        "DRAFTS_USAGE_START_DATE": "tomorrow",
        "DRAFTS_SENSOR_INTERVAL_S": "soon",
        "DRAFTS_LLM_MODE": "online",
    }
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_DEFINITIONS],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert json.loads(loaded.stdout.splitlines()[-1]) == {
        "interval": 30,
        "first_day": "2026-01-01",
        "per_run": 100,
    }


def test_the_voting_secret_is_read_but_never_shown() -> None:
    secret = "s3cret-" * 6
    settings = Settings.from_environment({"DRAFTS_VOTING_SECRET": secret})
    assert settings.require("voting_secret").voting_secret == secret
    assert secret not in repr(settings)
    assert Settings.from_environment({}).voting_secret is None

    short = Settings.from_environment({"DRAFTS_VOTING_SECRET": "hunter2"})
    assert short.voting_secret is None
    with pytest.raises(ConfigurationError) as raised:
        short.require("voting_secret")
    assert "DRAFTS_VOTING_SECRET is 7 characters long" in str(raised.value)
    assert "hunter2" not in str(raised.value)
