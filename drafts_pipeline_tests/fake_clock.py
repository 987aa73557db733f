"""A clock for tests that moves only when someone sleeps, so waits cost no time and timings are
exact."""

import threading
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


class FakeTime:
    """Monotonic seconds from 1000.0; `sleep` records the wait and moves the clock. Serves as a
    `calling.Clock`, and its `clock`/`sleep` as a limiter's or a pace book's."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def monotonic(self) -> float:
        return self.clock()

    def utcnow(self) -> datetime:
        return EPOCH + timedelta(seconds=self.clock() - 1000.0)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        """Time passing without anyone sleeping, e.g. while a request is in flight."""
        with self._lock:
            self.now += seconds
