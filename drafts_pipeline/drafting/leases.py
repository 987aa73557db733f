"""Leases on claimed work: renewed while a batch's calls are alive."""

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from drafts_pipeline.errors import StoreUnavailable
from drafts_pipeline.store import DraftStore

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews, every third of a lease, the claims a batch still holds, so that a call that
    takes longer than the lease is never taken over while its run is alive."""

    def __init__(self, store: DraftStore, provider: str, run_id: str, lease_s: float) -> None:
        self._store = store
        self._provider = provider
        self._run_id = run_id
        self._lease_s = lease_s
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_until_stopped, name=f"claims-{provider}", daemon=True
        )

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            left, self._held = list(self._held), set()
        self._store.release_claims(left, self._provider, self._run_id)

    def hold(self, task_ids: list[str]) -> None:
        with self._lock:
            self._held.update(task_ids)

    def drop(self, task_id: str) -> None:
        with self._lock:
            self._held.discard(task_id)

    def _renew_until_stopped(self) -> None:
        """Renew every third of a lease; after a failed renewal (the database briefly out of
        reach) try again sooner, while the leases still have two thirds to run."""
        wait_s = self._lease_s / 3
        while not self._stop.wait(wait_s):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                kept = self._store.renew_claims(held, self._provider, self._run_id, self._lease_s)
            except (SQLAlchemyError, StoreUnavailable) as error:
                # Past an outage's limit the batch fails at its next store operation, whose
                # error line says so: no warning here then.
                level = logging.INFO if isinstance(error, StoreUnavailable) else logging.WARNING
                logger.log(
                    level, "%s: could not renew %d claim(s) (%s); trying again",
                    self._provider, len(held), type(error).__name__,
                    extra={"provider": self._provider, "run_id": self._run_id},
                )  # fmt: skip
                wait_s = self._lease_s / 9
                continue
            wait_s = self._lease_s / 3
            with self._lock:
                self._held &= kept | (self._held - set(held))
