"""The project's own exceptions: each message names the task, the provider and what to do."""

from datetime import datetime


class DraftsError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(DraftsError):
    """A setting is missing or wrong; the message names the environment variable."""


class StoreUnavailable(DraftsError):
    """The draft store's database cannot be reached (never was in this process, or not again
    within `DRAFTS_DB_RETRY_S`); the message names host and database, never the password."""


class StoreLocked(StoreUnavailable):
    """The SQLite file stayed locked by another writer through every try: the store is there,
    but this operation could not write (`outages.BUSY_ATTEMPTS`)."""


class TaskValidationError(DraftsError):
    """A documentation task cannot be drafted as it is stored."""


class NoSuchTask(DraftsError):
    """Tasks named on the command line are not in the store."""

    def __init__(self, task_ids: list[str]) -> None:
        self.task_ids = task_ids
        listed = ", ".join(repr(task_id) for task_id in task_ids)
        super().__init__(f"no task {listed} in the store")


class ImportRejected(DraftsError):
    """A task file had bad rows; nothing was imported."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        listing = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{path}: {len(problems)} bad row(s), nothing imported:\n{listing}")


class RetryRefused(DraftsError):
    """Tasks named for a retry do not exist or have not failed; none was re-queued."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"nothing retried: {'; '.join(problems)}")


class VotesRejected(DraftsError):
    """Votes that cannot be recorded; none of their batch was. `problems` pairs each bad
    vote's position in the batch (from 0) with the reason."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        listing = "; ".join(reason for _, reason in problems)
        super().__init__(f"{len(problems)} vote(s) rejected, none recorded: {listing}")


class BudgetReached(DraftsError):
    """A daily budget leaves no room for the next call: the provider makes no more calls until
    `until` (the next UTC midnight). Not a failure of the task: nothing is stored for it."""

    def __init__(self, provider: str, reason: str, until: datetime) -> None:
        self.provider = provider
        self.reason = reason
        self.until = until
        super().__init__(f"{provider}: {reason}")


class ProviderError(DraftsError):
    """A provider call failed for good (after the retry policy, or not retryable)."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        retryable: bool = False,
        status_code: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        calls: tuple = (),
        attempted_models: tuple[str, ...] = (),
    ) -> None:
        self.provider = provider
        self.calls = calls
        # The models asked, in order, where the provider says (a fallback's error: both).
        self.attempted_models = attempted_models
        self.retryable = retryable
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id
        super().__init__(f"{provider}: {message}")
