"""`provider_batches_sensor`: asks the providers about the batches they are working on, and
requests the runs that collect those they are done with."""

import hashlib
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

import dagster as dg

from drafts_pipeline.defs.drafting.jobs import DRAFT_TASKS_JOB
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.defs.loaded_settings import LOADED_PROVIDERS, drafting_providers
from drafts_pipeline.defs.runs import UNFINISHED_RUN_STATUSES
from drafts_pipeline.drafting.batch_collect import settle_unheld
from drafts_pipeline.errors import ConfigurationError, ProviderError
from drafts_pipeline.llm.provider import LiveProvider
from drafts_pipeline.llm.provider_file import ProviderSpec
from drafts_pipeline.runner import contiguous_batches
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.batches import HeldBatch
from drafts_pipeline.store.models import utcnow

# Each batch is asked about at most once a minute (the sensor's interval too): a batch takes
# minutes to hours, and the providers limit how often their batch endpoints may be read.
BATCH_POLL_INTERVAL_S = 60
# Batches asked about in one tick at most, those asked longest ago first: a tick must end well
# within Dagster's 60 s.
MAX_POLLS_PER_TICK = 50
# Runs of one batch's collection that may fail before the sensor stops asking for more (the
# step's error says why; an operator launches the next one).
MAX_FAILED_COLLECTIONS = 3
# A batch still `submitting` after this long was left so by a run that died.
STALE_SUBMISSION = timedelta(hours=1)
# Tags of a collecting run: one per provider batch (its row in the store) that it collects.
BATCH_TAG_PREFIX = "drafts/provider_batch_"
COLLECT_CONFIG = {"ops": {"provider_drafts": {"config": {"collect": True}}}}


def poll_batches(
    store: DraftStore,
    providers: Mapping[str, object],
    log: logging.Logger | dg.DagsterLogManager,
    polled_before: datetime | None = None,
) -> list[str]:
    """Ask each provider about its batches due for a look (at most `MAX_POLLS_PER_TICK`, none
    asked since `polled_before`, by default `BATCH_POLL_INTERVAL_S` ago) and record what it
    says; returns a line per batch that could not be asked."""
    problems: list[str] = []
    due = polled_before or utcnow() - timedelta(seconds=BATCH_POLL_INTERVAL_S)
    for batch in store.batches_to_poll(MAX_POLLS_PER_TICK, due):
        provider = providers.get(batch.provider)
        if not isinstance(provider, LiveProvider) or batch.batch_id is None:
            problem = f"{batch.provider} batch {batch.batch_id}: no live provider to ask"
            store.batch_polled(batch.id, None, error=problem)
            problems.append(problem)
            continue
        try:
            state = provider.batch_api().state(batch.batch_id)
        except (ProviderError, ConfigurationError) as error:
            store.batch_polled(batch.id, None, error=str(error))
            problems.append(f"batch {batch.batch_id}: {error}")
            continue
        # A failed batch's reason is kept: its items may be in no result line (a batch that
        # failed validation reports none), and their failed drafts then give it.
        store.batch_polled(batch.id, state.status, state.counts, error=state.error)
        if state.status != "in_progress":
            log.info(f"{batch.provider} batch {batch.batch_id}: {state.raw_status} {state.counts}")
    return problems


def batch_tag(batch_id: int) -> str:
    """The tag a collecting run carries for each batch (its row in the store) it collects."""
    return f"{BATCH_TAG_PREFIX}{batch_id}"


def plan_collection(
    waiting: Sequence[tuple[HeldBatch, int]], partition_order: Mapping[str, int], batch_size: int
) -> list[dg.RunRequest]:
    """Runs of `draft_tasks` that collect the finished batches `waiting` (each with the number
    of runs that collected it before): their tasks still claimed, together (a step collects
    every finished batch of its tasks, so the batches of one run's providers share a run), in
    ranges of partitions next to each other (a range covers every partition between its ends)
    of at most `batch_size`. Each run is tagged with the batches it collects; its key names
    them, their earlier runs and its range."""
    batches_of: dict[str, list[int]] = {}
    for held, _ in waiting:
        for task_id in held.task_ids:
            batches_of.setdefault(task_id, []).append(held.batch.id)
    earlier = {held.batch.id: runs for held, runs in waiting}
    ranges = contiguous_batches(
        list(batches_of), partition_order, batch_size, ramp_up=False, ramp_down=False
    )
    requests = []
    for tasks in ranges:
        ids = sorted({batch_id for task_id in tasks for batch_id in batches_of[task_id]})
        signature = json.dumps([tasks[0], tasks[-1], [(i, earlier[i]) for i in ids]])
        digest = hashlib.sha256(signature.encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"provider-batches-{digest}",
                tags={**range_tags(tasks[0], tasks[-1]), **{batch_tag(i): "collect" for i in ids}},
                run_config=COLLECT_CONFIG,
            )
        )
    return requests


def _runs(
    instance: dg.DagsterInstance, batch_id: int, statuses: Sequence[dg.DagsterRunStatus]
) -> int:
    return instance.get_runs_count(
        dg.RunsFilter(
            job_name=DRAFT_TASKS_JOB,
            tags={batch_tag(batch_id): "collect"},
            statuses=list(statuses),
        )
    )


def collection_requests(
    instance: dg.DagsterInstance,
    store: DraftStore,
    providers: Mapping[str, object],
    batch_size: int,
    log: logging.Logger | dg.DagsterLogManager,
    collecting: Collection[str],
) -> list[dg.RunRequest]:
    """Runs for the finished batches of the providers `collecting` (those the job drafts
    with: its runs collect no other provider's) that hold tasks and have no collecting run
    queued or going; a finished batch that holds none is settled here (`settle_unheld`)."""
    waiting: list[tuple[HeldBatch, int]] = []
    for held in store.batches_to_collect():
        if not held.task_ids:
            problem = settle_unheld(store, providers.get(held.batch.provider), held)
            if problem is not None:
                log.warning(problem)
            continue
        if held.batch.provider not in collecting:
            continue
        if _runs(instance, held.batch.id, UNFINISHED_RUN_STATUSES):
            continue
        failed = _runs(instance, held.batch.id, [dg.DagsterRunStatus.FAILURE])
        if failed >= MAX_FAILED_COLLECTIONS:
            log.warning(
                f"{held.batch.provider} batch {held.batch.batch_id}: {failed} collecting runs "
                "failed; no more are requested (see their errors, then launch `draft_tasks` "
                f"over its tasks with the config {COLLECT_CONFIG})"
            )
            continue
        waiting.append((held, _runs(instance, held.batch.id, [])))
    if not waiting:
        return []
    # Tasks drafted by `drafts-pipeline run` without DAGSTER_HOME have no partition here yet.
    keys = [task_id for held, _ in waiting for task_id in held.task_ids]
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, list(dict.fromkeys(keys)))
    order = {key: i for i, key in enumerate(instance.get_dynamic_partitions(TASK_PARTITIONS_NAME))}
    return plan_collection(waiting, order, batch_size)


def build_provider_batches_sensor(specs: tuple[ProviderSpec, ...]) -> dg.SensorDefinition:
    """The sensor over the batches of every provider of `specs`. Its collecting runs are
    `draft_tasks` runs: a provider the job leaves out (DRAFTS_PROVIDERS) has its finished
    batches collected once it drafts again (docs/providers.md)."""
    # The providers the job drafts with, chosen as the job chose them when the code loaded.
    collecting = frozenset(spec.name for spec in drafting_providers(specs))

    @dg.sensor(
        job_name=DRAFT_TASKS_JOB,
        minimum_interval_seconds=BATCH_POLL_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={"store", *(spec.resource_key for spec in specs)},
        description="Asks the providers about their pending batches (each at most once a minute) "
        "and, for a batch that ended, expired, failed or was cancelled, requests `draft_tasks` "
        "runs over its tasks that collect it: answers stored at the batch price, the rest back to "
        "drafting, then the ballot.",
    )
    def provider_batches_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        batch_size = Settings.from_environment().require("batch_size").batch_size
        store: DraftStore = context.resources.store
        store.require_current()
        providers = {spec.name: getattr(context.resources, spec.resource_key) for spec in specs}
        problems = poll_batches(store, providers, context.log)
        for problem in problems:
            context.log.warning(problem)
        for batch in store.stale_submissions(utcnow() - STALE_SUBMISSION):
            context.log.warning(
                f"{batch.provider} batch row #{batch.id} (run {batch.run_id}) is still "
                f"`submitting` since {batch.submitted_at:%Y-%m-%d %H:%M} UTC: its run died "
                "before the provider answered; see docs/cost.md#batch-backfills"
            )
        requests = collection_requests(
            context.instance, store, providers, batch_size, context.log, collecting
        )
        if requests:
            return dg.SensorResult(run_requests=requests)
        reason = "no provider batch to collect" + (
            f"; {len(problems)} could not be asked" if problems else ""
        )
        return dg.SensorResult(skip_reason=reason)

    return provider_batches_sensor


provider_batches_sensor = build_provider_batches_sensor(LOADED_PROVIDERS)
