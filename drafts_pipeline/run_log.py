"""How the command line's runs speak: one line on stderr per warning the project's code logs
(`context.log.warning`, such as a task a provider could not draft), and nothing for Dagster's
own events. A failed step is the command's to report, in one line with what to do
(`runner.step_failures`), where Dagster's console logger would print its whole stack.

With `log_format: json` each line is a JSON object instead: the message, the step, the run id,
and the fields the step gave with `extra=` (`task_id`, `provider`).
"""

import logging
import re
import sys
from typing import Any

import dagster as dg

from drafts_pipeline.log_format import json_formatter
from drafts_pipeline.settings import LOG_FORMATS

LOGGER_NAME = "command_line"


# Dagster's notice of a step it skips because a step before it failed: that step's own line
# says why.
SKIPPED_STEP = re.compile(r"^Dependencies for step \S+ (failed|were not executed)")


class _ProjectMessages(logging.Filter):
    """Records the project's code logged, not Dagster's events (a step's failure, a run's) nor
    its notices of skipped steps."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None)
        if not isinstance(meta, dict):
            return True
        return meta.get("dagster_event") is None and not SKIPPED_STEP.match(
            str(meta.get("orig_message", ""))
        )


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):
            message, step = str(meta.get("orig_message", "")), meta.get("step_key")
        else:
            message, step = record.getMessage(), None
        first = (message.strip().splitlines() or [""])[0]
        return f"{step}: {first}" if step else first


class _StepFields(logging.Filter):
    """Puts what Dagster knows of a record (its own message, step and run) where a JSON line
    shows it."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):
            record.msg, record.args = str(meta.get("orig_message", "")).strip(), ()
            record.step = meta.get("step_key")
            record.run_id = meta.get("run_id")
        return True


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, default_value="WARNING"),
        "log_format": dg.Field(
            str, default_value="text", description=f"One of {', '.join(LOG_FORMATS)}."
        ),
    },
    description="One line on stderr per message of the project's code at the level or above; "
    "Dagster's events (step failures included) are left to the command's own report.",
)
def command_line_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    config: dict[str, Any] = init_context.logger_config
    logger = logging.Logger(LOGGER_NAME, level=config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ProjectMessages())
    if config["log_format"] == "json":
        handler.addFilter(_StepFields())
        handler.setFormatter(json_formatter(hidden=("dagster_meta",)))
    else:
        handler.setFormatter(_OneLine())
    logger.addHandler(handler)
    return logger
