"""Sending turns: one batch at a time sends requests to a provider, in a process and across
processes, so that overlapping runs finish one after another instead of all at the end."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class SharedTurn(Protocol):
    """A turn shared beyond this process (`StoreSendingTurn`)."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class SendingTurns:
    """Per provider, which batch of this process sends requests (see `sending_turn`); and, for
    the runs someone watches, how many of their provider batches have begun sending."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._changed = threading.Condition()
        self._begun: dict[str, int] = {}

    def lock(self, provider: str) -> threading.Lock:
        with self._changed:
            return self._locks.setdefault(provider, threading.Lock())

    def watch(self, run_id: str) -> None:
        """Count the provider batches of run `run_id` as they begin; see `wait_until_begun`."""
        with self._changed:
            self._begun.setdefault(run_id, 0)

    def unwatch(self, run_id: str) -> None:
        with self._changed:
            self._begun.pop(run_id, None)

    def begun(self, run_id: str | None) -> None:
        """A provider batch of `run_id` sent its first request, or ended without sending one."""
        with self._changed:
            if run_id in self._begun:
                self._begun[run_id] += 1
                self._changed.notify_all()

    def wait_until_begun(self, run_id: str, batches: int, timeout_s: float) -> bool:
        """Wait until `batches` provider batches of the watched run `run_id` have begun; False
        after `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._begun.get(run_id, 0) >= batches, timeout_s)


TURNS = SendingTurns()


@contextmanager
def sending_turn(
    provider: str,
    requests: int,
    shared: "SharedTurn | None" = None,
    *,
    run_id: str | None = None,
) -> Iterator[Callable[[], None]]:
    """The turn to send requests to `provider`, held from the batch's first request until its
    last one has been sent (or the batch ends), not until the last answer.

    Batches running at once (overlapping runs in one process, or the daemon's runs in many)
    would otherwise interleave their requests under the shared pace and all finish together, so
    that their last answers, materialisations and ballots would queue at the end. Taking turns,
    a waiting batch sends its first request one pace interval after the previous batch's last,
    while that batch's answers are still arriving. The turn is this process's lock and then
    `shared`, the store's lock across processes. Yields the callback to call as each request
    is sent. The batch counts as begun for run `run_id` (`SendingTurns.begun`) at its first
    request, or as it ends if it sent none.
    """
    turn = TURNS.lock(provider)
    sent = 0
    count_lock = threading.Lock()
    turn.acquire()
    try:
        if shared is not None:
            shared.acquire()
    except BaseException:
        turn.release()
        raise
    held = True

    def release() -> None:
        nonlocal held
        held = False
        try:
            if shared is not None:
                shared.release()
        finally:
            turn.release()

    def on_start() -> None:
        nonlocal sent
        with count_lock:
            sent += 1
            if sent == 1:
                TURNS.begun(run_id)
            if sent >= requests and held:
                release()

    try:
        yield on_start
    finally:
        with count_lock:
            if held:
                release()
            if sent == 0:
                TURNS.begun(run_id)
