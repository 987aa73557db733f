"""Two `drafts-pipeline run` started at the same moment over the same N tasks.

Against the fake provider server (latency L, rate R per provider), on one draft store: prints the
requests each provider received (the goal: exactly N each, every task drafted once per provider),
the draft versions stored beyond the first and the tasks by status.

    .venv/bin/python -m benchmarks.overlap --tasks 300 --latency 1 --rate 600 [--postgres]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from benchmarks.throughput import (
    PROVIDERS,
    REPOSITORY,
    load_tasks,
    outcome,
    provider_env,
    start_fake_server,
    storage,
)
from drafts_pipeline.store.models import DraftVersion
from drafts_pipeline.store.schema import engine_for


def later_versions(database_url: str) -> int:
    """Drafts stored as version 2 or later (a second draft of one task by one provider)."""
    with engine_for(database_url).connect() as connection:
        return connection.scalar(
            select(func.count()).select_from(DraftVersion).where(DraftVersion.version > 1)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="N")
    parser.add_argument("--latency", type=float, default=1.0, help="L, seconds per call")
    parser.add_argument("--rate", type=int, default=600, help="R, requests per minute per provider")
    parser.add_argument("--in-flight", type=int, default=16, help="each provider's in-flight cap")
    parser.add_argument("--batch-size", type=int, default=100, help="DRAFTS_BATCH_SIZE")
    parser.add_argument("--postgres", action="store_true", help="the draft store on PostgreSQL")
    args = parser.parse_args()

    server = start_fake_server(args.latency, args.rate)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="drafts-overlap-") as folder,
            storage(args.postgres, Path(folder, "store")) as setup,
        ):
            url = setup.store_url
            inherited = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
            env = {**inherited, **provider_env(server, args.rate, args.in_flight),
                   "DRAFTS_BATCH_SIZE": str(args.batch_size), "DRAFTS_DATABASE_URL": url,
                   "DRAFTS_DATA_DIR": folder}  # fmt: skip
            load_tasks(url, args.tasks)
            before = server.stats()
            started = time.perf_counter()
            runs = [
                subprocess.Popen(
                    [sys.executable, "-m", "drafts_pipeline", "run"],
                    env=env,
                    cwd=REPOSITORY,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for _ in range(2)
            ]
            outputs = [run.communicate()[0] for run in runs]
            wall = time.perf_counter() - started
            after = server.stats()
            print(f"N={args.tasks} tasks, L={args.latency} s, R={args.rate}/min per provider, "
                  f"two runs started together; store on "
                  f"{'PostgreSQL' if args.postgres else 'SQLite'}")  # fmt: skip
            for index, (run, output) in enumerate(zip(runs, outputs, strict=True), start=1):
                last = output.strip().splitlines()[-2:] if output.strip() else []
                print(f"  run {index}: exit {run.returncode}; " + " | ".join(last))
            print(f"  wall time               {wall:8.1f} s")
            for name in PROVIDERS:
                requests = after[name]["calls"] - before[name]["calls"]
                print(f"  {name + ' requests':<24}{requests:8d}   (goal: {args.tasks})")
            tasks, drafts = outcome(url)
            print(f"  later draft versions    {later_versions(url):8d}   (goal: 0)")
            print(f"  tasks                   {dict(tasks)}")
            print(f"  drafts                  {dict(drafts)}")
            engine_for(url).dispose()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
