"""Client-side limits of one provider resource, shared by all its threads.

`RequestLimiter` keeps the provider's quotas from being the thing that stops us: at most
`max_in_flight` requests at once, and request starts spaced `60 / requests_per_minute` seconds
apart (a pacer rather than a bucket, so no burst can trip a per-second limit). A 429 pauses every
caller until the wait the provider asked for has passed and halves the rate; each success then
wins back a little of it (additive increase, multiplicative decrease), so a crowd of threads
cannot turn one 429 into a storm.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from drafts_pipeline.errors import DraftsError

MIN_RATE_FACTOR = 1 / 16
RATE_RECOVERY_PER_SUCCESS = 0.05


class LimiterPaused(DraftsError):
    """The provider asked every caller to wait longer than the caller is willing to."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        super().__init__(f"rate limited: the provider asked to pause for another {wait_s:.0f} s")


class RequestLimiter:
    """An in-flight cap plus a requests-per-minute pacer that slows down after a 429."""

    def __init__(
        self,
        max_in_flight: int,
        requests_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, not {requests_per_minute}")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._interval_s = 60.0 / requests_per_minute
        self._next_start = clock()
        self._paused_until = clock()
        self._rate_factor = 1.0

    @property
    def rate_factor(self) -> float:
        """The share of `requests_per_minute` currently allowed (1.0 = full rate)."""
        with self._lock:
            return self._rate_factor

    @property
    def paused_for_s(self) -> float:
        """How long every caller still waits because of the last 429."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    @contextmanager
    def slot(self, max_pause_s: float | None = None) -> Iterator[None]:
        """Hold one in-flight place, starting no sooner than the pacer and any pause allow.

        Raises `LimiterPaused` at once, holding nothing, when a 429 pause has longer to run
        than `max_pause_s`.
        """
        self._slots.acquire()
        try:
            self._wait_for_start(max_pause_s)
            yield
        finally:
            self._slots.release()

    def _wait_for_start(self, max_pause_s: float | None) -> None:
        while True:
            with self._lock:
                now = self._clock()
                pause = self._paused_until - now
                if max_pause_s is not None and pause > max_pause_s:
                    raise LimiterPaused(pause)
                start = max(now, self._next_start, self._paused_until)
                self._next_start = start + self._interval_s / self._rate_factor
                pause_seen = self._paused_until
            if start > now:
                self._sleep(start - now)
            with self._lock:
                if self._paused_until <= pause_seen:
                    return

    def on_rate_limited(self, pause_s: float) -> None:
        """A 429: everyone waits `pause_s`; the rate halves once per pause, not once per thread."""
        with self._lock:
            now = self._clock()
            if now >= self._paused_until:
                self._rate_factor = max(MIN_RATE_FACTOR, self._rate_factor / 2)
            self._paused_until = max(self._paused_until, now + max(0.0, pause_s))

    def on_success(self) -> None:
        """A success wins back part of the rate lost to 429s."""
        with self._lock:
            self._rate_factor = min(1.0, self._rate_factor + RATE_RECOVERY_PER_SUCCESS)
