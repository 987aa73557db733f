"""`pending_tasks`: load each task of the batch, validate it, build and record its prompt."""

from collections import Counter

import dagster as dg

from drafts_pipeline.errors import TaskValidationError
from drafts_pipeline.partitions import task_partitions
from drafts_pipeline.prompts.templates import BuiltPrompt, build_prompt
from drafts_pipeline.settings import batch_size
from drafts_pipeline.store import DraftStore


@dg.asset(
    partitions_def=task_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=batch_size()),
    group_name="drafting",
    kinds={"python", "sql"},
    description="Documentation tasks in `drafting`, validated, with their prompt built and "
    "recorded (template version and hash). A task that cannot be drafted is marked `failed` "
    "with the reason; the rest of the batch goes on.",
)
def pending_tasks(context: dg.AssetExecutionContext, store: DraftStore) -> dg.MaterializeResult:
    store.require_current()
    keys = context.partition_keys
    tasks = store.tasks_by_id(keys)
    outcomes: Counter[str] = Counter()
    prompts: list[tuple[str, BuiltPrompt]] = []
    for key in keys:
        task = tasks.get(key)
        if task is None:
            context.log.warning(f"task {key}: no such task in the store; skipped")
            outcomes["missing"] += 1
            continue
        if task.status != "drafting":
            outcomes[f"already_{task.status}"] += 1
            continue
        try:
            prompt = build_prompt(
                task_id=task.id,
                template=task.template,
                language=task.language,
                symbol=task.symbol,
                source_path=task.source_path,
                code=task.code,
                context=task.context,
            )
        except TaskValidationError as error:
            store.fail_task(task.id, str(error))
            context.log.error(str(error))
            outcomes["rejected"] += 1
            continue
        prompts.append((task.id, prompt))
        outcomes["ready"] += 1
    store.record_prompts(prompts)
    return dg.MaterializeResult(
        metadata={
            name: dg.MetadataValue.int(outcomes[name])
            for name in ("ready", "rejected", "missing", "already_voting", "already_failed")
        }
    )
