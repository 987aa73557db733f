"""Materialise the graph in this process, one Dagster run per batch of tasks, runs overlapping."""

import math
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.drafting.provider_batch import TURNS
from drafts_pipeline.llm.providers import PROVIDER_SPECS


@dataclass(frozen=True)
class BatchRun:
    first: str
    last: str
    size: int
    success: bool
    run_id: str


def batch_sizes(count: int, size: int) -> list[int]:
    """Sizes of the runs for `count` tasks, each at most `size`: a small first run, full runs,
    then runs halving in size.

    A run's first and last seconds are spent on prompts, events and ballots in proportion to its
    tasks. The first run's are before any provider call; the last run's are after the last
    answer, while nothing else goes on. Small runs at the two ends shorten both; in between, each
    run's ends overlap the next run's calls.
    """
    small = max(1, size // 5)
    sizes: list[int] = []
    remaining = count
    if remaining >= 2 * small:
        sizes.append(small)
        remaining -= small
    while remaining > 0:
        step = size if remaining > 2 * size else max(small, math.ceil(remaining / 2))
        if remaining - step < small:
            step = remaining
        sizes.append(step)
        remaining -= step
    return sizes


def batches(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    start = 0
    for step in batch_sizes(len(keys), size):
        yield keys[start : start + step]
        start += step


# Dagster's opt-in (dagster PR 29288) to record one "materialisation planned" event per asset for a
# run over a partition range, instead of one per partition. Its cost, partitions of a failed run
# not shown as failed in the UI, does not arise on the throwaway instances used here.
PLANNED_EVENTS_PER_RANGE = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


@contextmanager
def _planned_events_per_range() -> Iterator[None]:
    previous = os.environ.get(PLANNED_EVENTS_PER_RANGE)
    os.environ[PLANNED_EVENTS_PER_RANGE] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PLANNED_EVENTS_PER_RANGE, None)
        else:
            os.environ[PLANNED_EVENTS_PER_RANGE] = previous


def run_in_process(
    defs: dg.Definitions,
    task_ids: Sequence[str],
    *,
    batch_size: int,
    concurrent_runs: int = 3,
    force: bool = False,
    log_level: str = "WARNING",
) -> list[BatchRun]:
    """Draft every task in `task_ids`, then publish the voting-ready set.

    Up to `concurrent_runs` batch runs go at once, each in a thread with an ephemeral instance
    of its own (holding just its batch's partitions, so the batch is one partition range). A run
    spends its first and last seconds on Dagster's events and on prompts and ballots; a second
    run's provider calls fill that time. The runs share each provider's pace through the draft
    store, so together they keep to its rate.
    """
    with _planned_events_per_range():
        return _run_batches(defs, task_ids, batch_size, concurrent_runs, force, log_level)


def _prefetch_publish_imports() -> None:
    """Import what publishing the voting set needs (pandas and pyarrow, 0.5 s) while the runs
    wait on the providers, instead of after the last answer."""

    def load() -> None:
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

    threading.Thread(target=load, name="prefetch-publish-imports", daemon=True).start()


def _run_batches(
    defs: dg.Definitions,
    task_ids: Sequence[str],
    batch_size: int,
    concurrent_runs: int,
    force: bool,
    log_level: str,
) -> list[BatchRun]:
    loggers = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    drafting_config = {**loggers, "ops": {"provider_drafts": {"config": {"force": force}}}}
    job = defs.resolve_job_def("draft_tasks")

    def run_batch(batch: Sequence[str], run_id: str) -> BatchRun:
        # Disposed in the thread that made it: its in-memory SQLite refuses other threads.
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, list(batch))
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                tags=range_tags(batch[0], batch[-1]),
                run_config=drafting_config,
                raise_on_error=False,
            )
            return BatchRun(batch[0], batch[-1], len(batch), result.success, result.run_id)

    with ThreadPoolExecutor(max_workers=concurrent_runs) as pool:
        futures = []
        for index, batch in enumerate(batches(list(task_ids), batch_size)):
            run_id = str(uuid.uuid4())
            TURNS.watch(run_id)
            futures.append(pool.submit(run_batch, batch, run_id))
            # Start the next run once every provider of this one is sending (or has nothing
            # to send), so that the next run's set-up does not compete for the CPU with this
            # one's first requests, nor with its own predecessor's.
            while (
                not TURNS.wait_until_begun(run_id, len(PROVIDER_SPECS), 0.1)
                and not futures[-1].done()
            ):
                pass
            TURNS.unwatch(run_id)
            if index == 1:  # the first run's setup and the second's are behind us
                _prefetch_publish_imports()
        results = [future.result() for future in futures]
    with dg.DagsterInstance.ephemeral() as instance:
        defs.resolve_job_def("publish_voting_set").execute_in_process(
            instance=instance, run_config=loggers
        )
    return results
