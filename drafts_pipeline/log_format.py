"""The pipeline's own log lines: plain text (the default), or one JSON object a line with
`DRAFTS_LOG_FORMAT=json`, for a log collector that indexes fields.

The call sites that know them pass `task_id`, `provider` and `attempt` with `extra=`; a line
logged deep inside a provider call gets the run id from `logging_run`, which the drafting
thread of a run enters, since the retry loop knows no run. The JSON objects come from
python-json-logger's `JsonFormatter`: a plain `logging.Formatter` that writes a record's `extra`
fields as keys, so the project logs through the standard library as before.
"""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

PROJECT_LOGGER = "drafts_pipeline"
# The handler `use_log_format` adds, found again by its name so that a second call replaces it.
HANDLER_NAME = "drafts_pipeline_json"

_RUN_ID: ContextVar[str | None] = ContextVar("drafts_pipeline_run_id", default=None)


@contextmanager
def logging_run(run_id: str | None) -> Iterator[None]:
    """Lines logged in this context (and in the contexts copied from it for worker threads)
    carry `run_id` unless their call site gave one."""
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


class RunIdField(logging.Filter):
    """Adds the run id of the current `logging_run` to a record that has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = _RUN_ID.get()
        if run_id is not None and getattr(record, "run_id", None) is None:
            record.run_id = run_id
        return True


def json_formatter(*, hidden: tuple[str, ...] = ()) -> JsonFormatter:
    """One JSON object a line: `time` (ISO 8601, UTC), `level`, `logger`, `message`, then each
    field the call site gave; the record attributes named in `hidden` are left out."""
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, *hidden],
        json_ensure_ascii=False,
    )


def use_log_format(log_format: str) -> None:
    """Make the project's loggers (`drafts_pipeline…`) write `json` lines to stderr, or leave
    them to Python's default handling for `text` (a warning is its message alone). Calling it
    again replaces the earlier choice."""
    logger = logging.getLogger(PROJECT_LOGGER)
    for handler in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
        logger.removeHandler(handler)
    if log_format != "json":
        logger.propagate = True
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(json_formatter())
    handler.addFilter(RunIdField())
    logger.addHandler(handler)
    # Not again as text through the root logger's handlers.
    logger.propagate = False
