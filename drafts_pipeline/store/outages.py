"""Riding out a short outage of the draft store's database.

A PostgreSQL restart or failover drops every connection for some seconds. Each store operation
is one transaction, so it can be run again whole: when one fails for a lost connection on a
database this process has reached before, it is retried with backoff until the database is
back or `DRAFTS_DB_RETRY_S` has passed since the outage began. The deadline is the outage's,
not each operation's: operations that start later in the same outage do not wait again. While
operations wait, nothing new is sent to a provider (its call log row cannot be written), and
answers already received wait in memory for their turn to be stored.

A transaction PostgreSQL rolled back to let another go on (a deadlock victim, a serialization
failure) is no outage: the connection is alive, and the operation is run again whole, at most
`ROLLBACK_ATTEMPTS` times in all, without waiting on the outage clock.

A database this process has never reached fails at once: a wrong host, port, database or
password is likelier than an outage at that very moment. SQLite is a file, not a server: it has
no outage, but another process can hold its write lock for long (a large import, a long
ballot). The driver's busy timeout waits for it; an operation that still finds the file locked
is run again whole, at most `BUSY_ATTEMPTS` times in all, then fails naming the file
(`StoreLocked`).

Either way the error is `StoreUnavailable`, one line naming the host and database, never the
password.
"""

import inspect
import logging
import random
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar

import tenacity
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from drafts_pipeline.errors import StoreLocked, StoreUnavailable
from drafts_pipeline.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound=type)

# Backoff between attempts during an outage: from a quarter second, doubling, at most 5 s,
# with jitter so that the threads of many runs do not come back in step.
FIRST_WAIT_S = 0.25
LONGEST_WAIT_S = 5.0

# SQLSTATEs of a transaction the server rolled back so that another could go on: a deadlock's
# victim, a serialization failure. Either leaves the connection alive and nothing written.
ROLLED_BACK = frozenset({"40P01", "40001"})
ROLLBACK_ATTEMPTS = 4
# Runs in all of an SQLite operation that found the file locked after the busy timeout
# (`schema.SQLITE_BUSY_TIMEOUT_S` each).
BUSY_ATTEMPTS = 3
# SQL errors the server sent over a live connection: the statement failed, not the connection
# (the class "40" of rolled-back transactions, a lock not available, a statement cancelled).
LIVE_CONNECTION_CLASSES = ("40", "55P03", "57014")


class _Outages:
    """Per engine: has this process reached its database, and since when is it out of reach."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reached: set[Engine] = set()
        self._since: dict[Engine, float] = {}

    def watch(self, engine: Engine) -> None:
        """Learn from `engine`'s new connections that its database is reachable."""
        event.listen(engine, "connect", lambda *_: self.reachable(engine))

    def reachable(self, engine: Engine) -> None:
        with self._lock:
            self._reached.add(engine)
            began = self._since.pop(engine, None)
        if began is not None:
            logger.warning(
                "the draft store at %s is reachable again after %.1f s",
                where(engine.url), time.monotonic() - began,
            )  # fmt: skip

    def has_reached(self, engine: Engine) -> bool:
        with self._lock:
            return engine in self._reached

    def began(self, engine: Engine) -> tuple[float, bool]:
        """When the current outage of `engine` began, and whether this call is the first to
        see it."""
        with self._lock:
            if engine in self._since:
                return self._since[engine], False
            self._since[engine] = now = time.monotonic()
            return now, True


OUTAGES = _Outages()


def where(url: URL) -> str:
    """The database of `url` for a message: host, port and database name, never a password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database or ':memory:'}"
    host = url.host or "the local socket"
    port = f":{url.port}" if url.port else ""
    return f"PostgreSQL at {host}{port}, database {url.database or '(default)'}"


def _cause(error: DBAPIError, url: URL) -> str:
    """The driver's own first line (e.g. "Connection refused"), without the password."""
    lines = [line.strip() for line in str(error.orig).splitlines() if line.strip()]
    text = lines[0] if lines else type(error.orig).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text[:200]


def sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE the server sent with the error (psycopg 3 or psycopg2), if any."""
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code if isinstance(code, str) else None


def is_connection_loss(engine: Engine, error: BaseException) -> bool:
    """A PostgreSQL error that a new connection may not meet: the server is gone or restarting
    (operational and interface errors, and anything SQLAlchemy saw invalidate the connection),
    not an SQL error the server sent over a live one (a deadlock, a lock not available)."""
    if engine.url.get_backend_name() == "sqlite" or not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = sqlstate(error)
    if code is not None and code.startswith(LIVE_CONNECTION_CLASSES):
        return False
    return isinstance(error, (OperationalError, InterfaceError))


def _rolled_back(error: BaseException) -> bool:
    return isinstance(error, DBAPIError) and sqlstate(error) in ROLLED_BACK


def _log_rollback(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    code = sqlstate(error) if isinstance(error, DBAPIError) else None
    logger.info("the draft store rolled a transaction back (%s); running it again", code)


def _again_after_rollback(operation: Callable[[], T]) -> Callable[[], T]:
    """`operation`, run again (after a short random pause) when the server rolled its
    transaction back for another's sake, up to `ROLLBACK_ATTEMPTS` runs in all."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_rolled_back),
        stop=tenacity.stop_after_attempt(ROLLBACK_ATTEMPTS),
        wait=tenacity.wait_random(0.01, 0.05),
        before_sleep=_log_rollback,
        reraise=True,
    ).wraps(operation)


def is_busy(engine: Engine, error: BaseException) -> bool:
    """SQLite's "database is locked" (SQLITE_BUSY): another connection held the write lock
    past the busy timeout."""
    if engine.url.get_backend_name() != "sqlite" or not isinstance(error, OperationalError):
        return False
    return "database is locked" in str(error.orig).lower()


def _again_while_busy(engine: Engine, operation: Callable[[], T]) -> Callable[[], T]:
    """`operation`, run again while SQLite's write lock stays taken past the busy timeout, up
    to `BUSY_ATTEMPTS` runs in all; then `StoreUnavailable` naming the file."""

    def run() -> T:
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                return operation()
            except OperationalError as error:
                if not is_busy(engine, error):
                    raise
                if attempt == BUSY_ATTEMPTS:
                    raise StoreLocked(
                        f"the draft store ({where(engine.url)}) stayed locked by another "
                        f"writer through {BUSY_ATTEMPTS} tries; run again once the other "
                        "writer is done (many processes writing at once are what PostgreSQL "
                        "is for)"
                    ) from error
                logger.warning(
                    "the draft store (%s) is locked by another writer; trying again (%d of %d)",
                    where(engine.url), attempt + 1, BUSY_ATTEMPTS,
                )  # fmt: skip
        raise AssertionError("the loop returns or raises")

    return run


def _never_reached(engine: Engine, error: DBAPIError) -> StoreUnavailable:
    check = (
        "that its folder exists and can be written"
        if engine.url.get_backend_name() == "sqlite"
        else "that the server is running"
    )
    return StoreUnavailable(
        f"cannot reach the draft store ({where(engine.url)}): {_cause(error, engine.url)}; "
        f"check DRAFTS_DATABASE_URL and {check}"
    )


def run_riding_out(engine: Engine, operation: Callable[[], T]) -> T:
    """`operation()` (one whole transaction), run again after a rollback for another
    transaction's sake and retried through an outage of `engine`'s database;
    `StoreUnavailable` when it cannot be reached."""
    if engine.url.get_backend_name() != "sqlite":
        operation = _again_after_rollback(operation)
    else:
        operation = _again_while_busy(engine, operation)
    try:
        return operation()
    except DBAPIError as error:
        if not OUTAGES.has_reached(engine):
            # The first connection failed (a statement's error comes after a connection).
            raise _never_reached(engine, error) from error
        if not is_connection_loss(engine, error):
            raise
        first = error
    budget = Settings.from_environment().require("db_retry_s").db_retry_s
    began, first_to_see = OUTAGES.began(engine)
    deadline = began + budget
    if first_to_see:
        logger.warning(
            "lost the draft store (%s): %s; retrying for up to %g s",
            where(engine.url), _cause(first, engine.url), budget,
        )  # fmt: skip

    def wait(state: tenacity.RetryCallState) -> float:
        backoff = min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** (state.attempt_number - 1))
        return min(backoff * random.uniform(0.5, 1.0), max(0.0, deadline - time.monotonic()))

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda error: is_connection_loss(engine, error)),
        stop=lambda _state: time.monotonic() >= deadline,
        wait=wait,
        reraise=True,
    )
    try:
        result = retrying(operation)
    except DBAPIError as error:
        if not is_connection_loss(engine, error):
            raise
        raise StoreUnavailable(
            f"the draft store ({where(engine.url)}) has been out of reach for {budget:g} s "
            f"({_cause(error, engine.url)}): answers not yet stored are lost and their tasks "
            "stay in drafting; bring the database back and run again "
            "(DRAFTS_DB_RETRY_S sets how long to wait)"
        ) from error
    # Reached again, perhaps on a pooled connection that opened none: the outage is over.
    OUTAGES.reachable(engine)
    return result


class HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


def riding_out(method: Callable[..., T]) -> Callable[..., T]:
    """A store method (one transaction on `self.engine`) that rides out outages."""

    @wraps(method)
    def wrapper(self: HasEngine, *args: Any, **kwargs: Any) -> T:
        return run_riding_out(self.engine, lambda: method(self, *args, **kwargs))

    return wrapper


def rides_out_outages(cls: C) -> C:
    """Every public function `cls` defines rides out outages: each must be one transaction (or
    none), safe to run again whole after a lost connection. (A context manager such as the
    ballot's transaction spans its caller's code and cannot be retried here.)"""
    for name, member in list(vars(cls).items()):
        wrapped = getattr(member, "__wrapped__", None)  # a context manager, already decorated
        if not name.startswith("_") and inspect.isfunction(member) and wrapped is None:
            setattr(cls, name, riding_out(member))
    return cls
