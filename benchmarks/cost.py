"""Cost per valid draft, live mode against batch mode, on the fake provider server.

Starts the fake server in a process of its own, loads the same N tasks into two draft stores,
and drafts them with the default models and the default price table:

- live: `drafts-pipeline run`;
- batch: `drafts-pipeline run --submit batch` (one run, one batch per provider), then
  `drafts-pipeline batches collect --wait` (the fake server ends a batch at its first poll).

Then it prints, from each store's `llm_calls` and `draft_versions`, the cost per valid draft of
each mode (per provider and in all), the ratio batch / live (the goal: at most 52%), and the
share of input tokens read from a cache in live mode. The fake server counts tokens from the
prompt's and the answer's lengths, identically for a live request and a batch item.

    .venv/bin/python -m benchmarks.cost --tasks 1000
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from benchmarks.throughput import PROVIDERS, load_tasks, provider_env, start_fake_server
from drafts_pipeline.store.models import DraftVersion, LLMCall
from drafts_pipeline.store.schema import engine_for

REPOSITORY = Path(__file__).resolve().parent.parent
# Fast enough that the live run's wall time does not matter here (costs do not depend on it).
LATENCY_S = 0.05
RATE_PER_MINUTE = 60_000
IN_FLIGHT = 16


@dataclass(frozen=True)
class Spend:
    """One mode's spend per provider: cost of every call, valid drafts, tokens."""

    cost: dict[str, Decimal]
    valid: dict[str, int]
    input_tokens: int
    cached_tokens: int
    calls: int

    def per_valid(self, provider: str | None = None) -> Decimal:
        names = [provider] if provider else list(self.cost)
        valid = sum(self.valid.get(name, 0) for name in names)
        return sum((self.cost[name] for name in names), Decimal(0)) / max(valid, 1)


def spend(database_url: str) -> Spend:
    """What a store's calls cost and what its drafts are worth."""
    with engine_for(database_url).connect() as connection:
        costs = dict(
            connection.execute(
                select(LLMCall.provider, func.coalesce(func.sum(LLMCall.cost_usd), 0)).group_by(
                    LLMCall.provider
                )
            ).all()
        )
        valid = dict(
            connection.execute(
                select(DraftVersion.provider, func.count())
                .where(DraftVersion.status == "valid")
                .group_by(DraftVersion.provider)
            ).all()
        )
        tokens = connection.execute(
            select(
                func.coalesce(func.sum(LLMCall.input_tokens), 0),
                func.coalesce(func.sum(LLMCall.cached_tokens), 0),
                func.count(),
            )
        ).one()
    return Spend(
        cost={name: Decimal(costs.get(name) or 0) for name in PROVIDERS},
        valid={name: valid.get(name) or 0 for name in PROVIDERS},
        input_tokens=tokens[0] or 0,
        cached_tokens=tokens[1] or 0,
        calls=tokens[2],
    )


def cli(env: dict[str, str], *args: str) -> float:
    """Run `drafts-pipeline ARGS`; its wall time. Fails loudly with its output."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", *args],
        capture_output=True, text=True, env=env, cwd=REPOSITORY,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"drafts-pipeline {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="N tasks (default 1000)")
    args = parser.parse_args()

    server = start_fake_server(LATENCY_S, RATE_PER_MINUTE)
    try:
        with tempfile.TemporaryDirectory(prefix="drafts-cost-") as folder:
            base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
            base.pop("DAGSTER_HOME", None)
            base |= provider_env(server, RATE_PER_MINUTE, IN_FLIGHT)
            base |= {"DRAFTS_DATA_DIR": str(Path(folder) / "data")}
            urls = {mode: f"sqlite:///{folder}/{mode}.sqlite3" for mode in ("live", "batch")}
            for url in urls.values():
                load_tasks(url, args.tasks)

            live_env = {**base, "DRAFTS_DATABASE_URL": urls["live"]}
            live_s = cli(live_env, "run")
            batch_env = {
                **base,
                "DRAFTS_DATABASE_URL": urls["batch"],
                "DRAFTS_BATCH_SIZE": str(args.tasks),
            }
            submit_s = cli(batch_env, "run", "--submit", "batch")
            collect_s = cli(batch_env, "batches", "collect", "--wait", "--every", "1")
            live, batch = spend(urls["live"]), spend(urls["batch"])
            for url in urls.values():
                engine_for(url).dispose()
    finally:
        server.stop()

    print(f"N = {args.tasks} tasks, providers {', '.join(PROVIDERS)}, default models and prices")
    print(f"live:  {live.calls} calls, run {live_s:.1f} s")
    print(
        f"batch: {batch.calls} items, submit {submit_s:.1f} s, wait and collect {collect_s:.1f} s"
    )
    print(f"\n{'cost per valid draft':<22}{'live':>12}{'batch':>12}{'batch/live':>12}")
    for name in [*PROVIDERS, None]:
        live_cost, batch_cost = live.per_valid(name), batch.per_valid(name)
        ratio = batch_cost / live_cost if live_cost else Decimal(0)
        label = name or "all providers"
        print(f"{label:<22}{live_cost:>12.6f}{batch_cost:>12.6f}{ratio:>12.1%}")
    print(f"valid drafts: live {sum(live.valid.values())}, batch {sum(batch.valid.values())}")
    share = live.cached_tokens / live.input_tokens if live.input_tokens else 0.0
    print(
        f"\nlive input tokens read from cache: {share:.1%} "
        f"({live.cached_tokens} of {live.input_tokens})"
    )


if __name__ == "__main__":
    main()
