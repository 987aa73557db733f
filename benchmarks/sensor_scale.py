"""Time `drafting_tasks_sensor` ticks against a large backlog of `drafting` tasks.

Creates a throwaway PostgreSQL database (or uses --database-url), loads N tasks, then runs
ticks the way the daemon does (evaluate the tick, which adds its partitions, and keep its cursor)
until the backlog is drained, and prints the tick times.

    .venv/bin/python -m benchmarks.sensor_scale --tasks 100000
"""

import argparse
import os
import statistics
import tempfile
import time
import uuid

import dagster as dg

from drafts_pipeline.defs.drafting.sensors import drafting_tasks_sensor
from drafts_pipeline.store import DraftStore, TaskInput
from drafts_pipeline_tests.postgres_server import create_database, drop_database, postgres_server

LOAD_CHUNK = 5000


def load_tasks(store: DraftStore, count: int) -> float:
    started = time.perf_counter()
    for start in range(0, count, LOAD_CHUNK):
        store.add_tasks(
            [
                TaskInput(
                    id=f"bench.module{i // 100}.function{i}",
                    symbol=f"function{i}",
                    language="python",
                    code=f"def function{i}(a, b):\n    return a + b\n",
                )
                for i in range(start, min(count, start + LOAD_CHUNK))
            ]
        )
    return time.perf_counter() - started


def drain(instance: dg.DagsterInstance, store: DraftStore) -> tuple[list[float], int]:
    """Tick until nothing is new; returns tick seconds and runs requested."""
    cursor, ticks, runs = None, [], 0
    while True:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"store": store}
        )
        started = time.perf_counter()
        result = drafting_tasks_sensor(context)
        ticks.append(time.perf_counter() - started)
        if not result.run_requests:
            return ticks, runs
        runs += len(result.run_requests)
        cursor = result.cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--per-tick", type=int, default=1000, help="DRAFTS_SENSOR_MAX_TASKS")
    parser.add_argument("--batch-size", type=int, default=100, help="DRAFTS_BATCH_SIZE")
    parser.add_argument("--database-url", help="an empty, migrated-or-not store database")
    args = parser.parse_args()
    os.environ["DRAFTS_SENSOR_MAX_TASKS"] = str(args.per_tick)
    os.environ["DRAFTS_BATCH_SIZE"] = str(args.batch_size)

    with postgres_server() as admin_url:
        name = f"drafts_bench_{uuid.uuid4().hex[:8]}"
        url = args.database_url or create_database(admin_url, name)
        try:
            store = DraftStore(database_url=url)
            store.upgrade()
            load_seconds = load_tasks(store, args.tasks)
            with (
                tempfile.TemporaryDirectory() as home,
                dg.instance_for_test(temp_dir=home) as instance,
            ):
                ticks, runs = drain(instance, store)
        finally:
            store.engine.dispose()
            if not args.database_url:
                drop_database(admin_url, name)

    busy = ticks[:-1]
    print(f"tasks loaded:            {args.tasks} in {load_seconds:.1f} s")
    print(f"ticks to drain:          {len(busy)} (+1 empty), {runs} runs requested")
    print(
        f"tick seconds:            first {busy[0]:.3f}, median {statistics.median(busy):.3f}, "
        f"max {max(busy):.3f}, last (backlog drained) {busy[-1]:.3f}"
    )
    print(f"empty tick seconds:      {ticks[-1]:.4f}")


if __name__ == "__main__":
    main()
