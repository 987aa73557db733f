"""A provider's request pace kept in the draft store, so every process shares one pace.

The daemon runs each batch in a process of its own, and the in-process runner overlaps batches;
a pace per process would let N concurrent runs start N times the provider's rate. Each booking is
one short transaction on the provider's row (a row lock on PostgreSQL, the write lock on SQLite),
so bookings from every process line up one interval apart. The pace algorithm is
`drafts_pipeline.llm.limits`'s: this book only loads the row, applies it and writes it back.

Times are Unix seconds from the booking process's clock. Processes on one machine share it;
NTP-synchronised machines agree to a few milliseconds, well under a pacing interval.
"""

import fcntl
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import DBAPIError

from drafts_pipeline.llm.limits import PaceState, book_start, slowed_down, sped_up
from drafts_pipeline.store.models import ProviderPace
from drafts_pipeline.store.outages import is_connection_loss, riding_out
from drafts_pipeline.store.schema import READ_ONLY, dialect_insert

T = TypeVar("T")


class StorePaceBook:
    """`PaceBook` of one provider over the `provider_pace` table."""

    def __init__(
        self, engine: Engine, provider: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._provider = provider
        self._clock = clock
        self._row_lock = threading.Lock()
        self._row_exists = False
        # The factor the last booking saw: a success at full rate writes nothing.
        self._last_factor = 1.0

    @property
    def engine(self) -> Engine:
        return self._engine

    def now(self) -> float:
        return self._clock()

    def _ensure_row(self) -> None:
        """Make the provider's row, committed before any booking looks for it."""
        with self._row_lock:
            if self._row_exists:
                return
            now = self._clock()
            with self._engine.begin() as connection:
                connection.execute(
                    dialect_insert(connection.dialect.name)(ProviderPace)
                    .values(provider=self._provider, next_start_at=now, paused_until=now,
                            rate_factor=1.0)
                    .on_conflict_do_nothing(index_elements=["provider"])
                )  # fmt: skip
            self._row_exists = True

    def _change(
        self, change: Callable[[PaceState, float], tuple[PaceState, T]]
    ) -> tuple[PaceState, T]:
        """Apply `change` to the provider's row, locked for the length of one short transaction;
        returns the state it found and what `change` returned."""
        self._ensure_row()
        with self._engine.begin() as connection:
            row = connection.execute(
                select(
                    ProviderPace.next_start_at, ProviderPace.paused_until, ProviderPace.rate_factor
                )
                .where(ProviderPace.provider == self._provider)
                .with_for_update()
            ).one()
            before = PaceState(row.next_start_at, row.paused_until, row.rate_factor)
            after, result = change(before, self._clock())
            if after != before:
                connection.execute(
                    update(ProviderPace)
                    .where(ProviderPace.provider == self._provider)
                    .values(
                        next_start_at=after.next_start,
                        paused_until=after.paused_until,
                        rate_factor=after.rate_factor,
                    )
                )
        self._last_factor = after.rate_factor
        return before, result

    @riding_out
    def book(self, interval_s: float, max_pause_s: float | None) -> tuple[float, float]:
        # Read before the transaction: waiting for the write lock must not cost the pace.
        asked_at = self._clock()
        before, start = self._change(
            lambda state, now: book_start(state, now, interval_s, max_pause_s, asked_at)
        )
        return start, before.paused_until

    def _read(self, column: Any) -> float | None:
        with self._engine.connect().execution_options(**READ_ONLY) as connection:
            return connection.scalar(select(column).where(ProviderPace.provider == self._provider))

    @riding_out
    def paused_until(self) -> float:
        found = self._read(ProviderPace.paused_until)
        return found if found is not None else self._clock()

    @riding_out
    def slow_down(self, pause_s: float) -> None:
        self._change(lambda state, now: (slowed_down(state, now, pause_s), None))

    @riding_out
    def speed_up(self, step: float) -> None:
        if self._last_factor >= 1.0:
            return
        self._change(lambda state, now: (sped_up(state, step), None))

    @riding_out
    def rate_factor(self) -> float:
        found = self._read(ProviderPace.rate_factor)
        return found if found is not None else 1.0


class StoreSendingTurn:
    """A provider's sending turn shared by every process drafting on one store: an exclusive
    lock that its holder's process losing releases by itself.

    On PostgreSQL a session advisory lock on a connection of its own; on a SQLite file an
    `flock` on a file beside it (the processes sharing a SQLite file share the machine); on an
    in-memory SQLite database, one process, nothing to share.
    """

    def __init__(self, engine: Engine, provider: str) -> None:
        self._engine = engine
        self._provider = provider
        self._held: Any = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        return self._engine

    def acquire(self) -> None:
        """Wait for the turn."""
        url = self._engine.url
        if url.get_backend_name() == "postgresql":
            held: Any = self._advisory_lock()
        elif url.database and url.database != ":memory:":
            path = f"{url.database}.turn-{self._provider}.lock"
            held = open(path, "a+b")  # noqa: SIM115 - closed by release()
            try:
                fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            except BaseException:
                held.close()
                raise
        else:
            held = None
        with self._lock:
            self._held = held

    @riding_out
    def _advisory_lock(self) -> Connection:
        connection = self._engine.connect()
        try:
            connection.execute(select(func.pg_advisory_lock(_turn_key(self._provider))))
            connection.commit()  # the lock is the session's: no transaction stays open
        except BaseException:
            connection.close()
            raise
        return connection

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, None
        if held is None:
            return
        if isinstance(held, Connection):
            try:
                held.execute(select(func.pg_advisory_unlock(_turn_key(self._provider))))
                held.commit()
            except DBAPIError as error:
                # A session the server lost (a restart) took its lock with it.
                if not is_connection_loss(self._engine, error):
                    raise
            finally:
                held.close()
        else:
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)
            held.close()


def _turn_key(provider: str) -> int:
    """A stable 63-bit advisory lock key per provider."""
    digest = hashlib.sha256(f"drafts_pipeline.sending_turn.{provider}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
