"""Client-side limits of a provider: an in-flight cap and a pace shared by every caller.

`RequestLimiter` keeps the provider's quotas from being the thing that stops us: at most
`max_in_flight` requests at once from this limiter, and request starts spaced
`60 / requests_per_minute` seconds apart, plus half a percent (a pacer rather than a bucket, so
no burst can trip a per-second limit; a start that waited for the book to let it in comes at
most `BOOKING_WAIT_CREDIT_S` early). A 429 pauses every caller until the wait the provider
asked for has passed; one within a minute of the last pause also halves the rate, and each
success then wins back a little of it (additive increase, multiplicative decrease), so a crowd
of threads cannot turn 429s into a storm.

The pace (next start, pause, rate factor) is a `PaceState`, changed only by the pure functions
`book_start`, `slowed_down` and `sped_up`. A `PaceBook` keeps it: `LocalPaceBook` in this
process, `StorePaceBook` (store/pacing.py) in the draft store for every process, so runs drafting
at the same time split one provider's rate instead of each taking all of it. Both books apply the
same functions; only where the state lives differs.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from drafts_pipeline.errors import DraftsError

MIN_RATE_FACTOR = 1 / 16
RATE_RECOVERY_PER_SUCCESS = 0.05
# Starts are booked at this share of `requests_per_minute`. A provider counts requests as they
# arrive, and they arrive a little later than booked by varying amounts (the GIL, a busy
# database); at exactly the limit, any two that bunch make one too many in some minute and draw
# a 429, which pauses every caller (and a second soon after halves the rate). Half a percent
# under the limit leaves three requests a minute of room, so arrivals up to 0.3 s late never
# cross the limit.
PACE_HEADROOM = 0.995
# A booking that had to wait for the book (the store's write lock, behind another run's
# transaction) keeps the start it asked for, up to this much earlier than the moment it got in:
# a wait of the book is not a gap in the pace. Its request then goes out that much closer to the
# one before, so this stays well inside the room PACE_HEADROOM leaves (0.3 s a minute).
BOOKING_WAIT_CREDIT_S = 0.15
# A 429 halves the rate only when the pause before it ended less than this long ago (a fresh pace
# counts as a pause that has just ended).
RECENT_PAUSE_S = 60.0


class LimiterPaused(DraftsError):
    """The provider asked every caller to wait longer than the caller is willing to."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        super().__init__(f"rate limited: the provider asked to pause for another {wait_s:.0f} s")


class PaceBook(Protocol):
    """Where one provider's request starts are booked, on the book's own clock."""

    def now(self) -> float:
        """The book's clock, in seconds."""
        ...

    def book(self, interval_s: float, max_pause_s: float | None) -> tuple[float, float]:
        """Reserve the next start, `interval_s / rate factor` after the one before and no
        sooner than the end of a pause or when the caller asked (a wait for the book itself
        does not count, up to `BOOKING_WAIT_CREDIT_S`); returns (start, pause end seen).

        Raises `LimiterPaused`, booking nothing, when the pause has longer than `max_pause_s`
        to run."""
        ...

    def paused_until(self) -> float: ...

    def slow_down(self, pause_s: float) -> None:
        """A 429: pause everyone `pause_s`; halve the rate as `slowed_down` says."""
        ...

    def speed_up(self, step: float) -> None:
        """A success: win back `step` of the rate factor, up to 1."""
        ...

    def rate_factor(self) -> float: ...


@dataclass(frozen=True)
class PaceState:
    """One provider's pace at a moment: when the next request may start, until when a 429
    pauses everyone, and the share of the configured rate currently allowed."""

    next_start: float
    paused_until: float
    rate_factor: float = 1.0

    @classmethod
    def fresh(cls, now: float) -> "PaceState":
        return cls(next_start=now, paused_until=now)


def book_start(
    state: PaceState,
    now: float,
    interval_s: float,
    max_pause_s: float | None,
    asked_at: float | None = None,
) -> tuple[PaceState, float]:
    """The next start, `interval_s / rate factor` after the one before and no sooner than the
    end of a pause or the moment the caller asked (`asked_at`, else `now`; at most
    `BOOKING_WAIT_CREDIT_S` before `now`), and the pace after booking it; `LimiterPaused` when
    the pause has longer than `max_pause_s` to run. A start before `now` goes at once."""
    pause = state.paused_until - now
    if max_pause_s is not None and pause > max_pause_s:
        raise LimiterPaused(pause)
    asked = now if asked_at is None else min(now, max(asked_at, now - BOOKING_WAIT_CREDIT_S))
    start = max(asked, state.next_start, state.paused_until)
    return replace(state, next_start=start + interval_s / state.rate_factor), start


def slowed_down(state: PaceState, now: float, pause_s: float) -> PaceState:
    """A 429: pause everyone `pause_s`; the rate halves once per pause, not once per caller
    (the callers that hit the same wall report it while the pause runs), and only when the pause
    before ended less than `RECENT_PAUSE_S` ago. A 429 on its own is two requests that arrived
    bunched, and the pause is enough; a second within the minute says the limit is below the
    pace."""
    factor = state.rate_factor
    if state.paused_until <= now < state.paused_until + RECENT_PAUSE_S:
        factor = max(MIN_RATE_FACTOR, factor / 2)
    return replace(
        state,
        paused_until=max(state.paused_until, now + max(0.0, pause_s)),
        rate_factor=factor,
    )


def sped_up(state: PaceState, step: float) -> PaceState:
    """A success: win back `step` of the rate factor, up to 1."""
    return replace(state, rate_factor=min(1.0, state.rate_factor + step))


class LocalPaceBook:
    """A pace kept in this process, shared by the threads of one limiter."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state = PaceState.fresh(clock())

    def now(self) -> float:
        return self._clock()

    def book(self, interval_s: float, max_pause_s: float | None) -> tuple[float, float]:
        asked_at = self._clock()
        with self._lock:
            before = self._state
            self._state, start = book_start(
                before, self._clock(), interval_s, max_pause_s, asked_at
            )
            return start, before.paused_until

    def paused_until(self) -> float:
        with self._lock:
            return self._state.paused_until

    def slow_down(self, pause_s: float) -> None:
        with self._lock:
            self._state = slowed_down(self._state, self._clock(), pause_s)

    def speed_up(self, step: float) -> None:
        with self._lock:
            self._state = sped_up(self._state, step)

    def rate_factor(self) -> float:
        with self._lock:
            return self._state.rate_factor


class RequestLimiter:
    """An in-flight cap plus a requests-per-minute pacer that slows down after a 429."""

    def __init__(
        self,
        max_in_flight: int,
        requests_per_minute: float,
        *,
        book: PaceBook | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`clock` is the clock of the `LocalPaceBook` made when no `book` is given."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, not {requests_per_minute}")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._book = book if book is not None else LocalPaceBook(clock)
        self._sleep = sleep
        self._interval_s = 60.0 / (requests_per_minute * PACE_HEADROOM)

    @property
    def rate_factor(self) -> float:
        """The share of `requests_per_minute` currently allowed (1.0 = full rate)."""
        return self._book.rate_factor()

    @property
    def paused_for_s(self) -> float:
        """How long every caller still waits because of the last 429."""
        return max(0.0, self._book.paused_until() - self._book.now())

    @contextmanager
    def slot(
        self,
        max_pause_s: float | None = None,
        prepare: Callable[[float], None] | None = None,
    ) -> Iterator[None]:
        """Hold one in-flight place, starting no sooner than the pacer and any pause allow.

        `prepare(wait_s)` is called once, as soon as the start is booked and before waiting
        for it (`wait_s` seconds ahead, 0 when it is due): work the request needs before it
        goes out (its row in the call log) is done in the wait, so that it does not push the
        request past its start. A request that leaves late arrives bunched with the next one,
        and a bunch of them puts one too many in some minute of the provider's count.

        Raises `LimiterPaused` at once, holding nothing, when a 429 pause has longer to run
        than `max_pause_s` (also after `prepare`, when the pause came in during the wait).
        """
        self._slots.acquire()
        try:
            self._wait_for_start(max_pause_s, prepare)
            yield
        finally:
            self._slots.release()

    def _wait_for_start(
        self, max_pause_s: float | None, prepare: Callable[[float], None] | None
    ) -> None:
        while True:
            start, pause_seen = self._book.book(self._interval_s, max_pause_s)
            prepared = prepare is not None
            if prepare is not None:
                prepare(max(0.0, start - self._book.now()))
                prepare = None
            wait = start - self._book.now()
            if wait <= 0:
                # A 429 that arrived while this caller prepared moves it behind the new pause.
                if prepared and self._book.paused_until() > pause_seen:
                    continue
                return
            self._sleep(wait)
            # A 429 that arrived while this caller slept moves it behind the new pause.
            if self._book.paused_until() <= pause_seen:
                return

    def on_rate_limited(self, pause_s: float) -> None:
        """A 429: everyone waits `pause_s`; the rate halves as `slowed_down` says."""
        self._book.slow_down(pause_s)

    def on_success(self) -> None:
        """A success wins back part of the rate lost to 429s."""
        self._book.speed_up(RATE_RECOVERY_PER_SUCCESS)
