"""`voting_ready_set`: every task in voting with its labelled drafts, for the voting app."""

import dagster as dg

from drafts_pipeline.assets.ballot import voting_ballot
from drafts_pipeline.assets.metadata import markdown_table
from drafts_pipeline.settings import data_dir
from drafts_pipeline.store import DraftStore
from drafts_pipeline.voting_set import export_voting_set, identity_leaks, voting_ready_frame

PREVIEW_ROWS = 10


@dg.asset(
    deps=[voting_ballot],
    group_name="voting",
    kinds={"pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "no_provider_or_model_names",
            asset="voting_ready_set",
            description="No provider or model column, and no model id in any draft shown.",
        )
    ],
    description="Every task in `voting` with its blind-labelled drafts (one row per task and "
    "label), without provider or model. Also written to `voting_ready_set.parquet` in the data "
    "folder for the voting application.",
)
def voting_ready_set(context: dg.AssetExecutionContext, store: DraftStore):  # type: ignore[no-untyped-def]
    frame = voting_ready_frame(store)
    leaks = identity_leaks(frame, store.draft_models())
    export_path = data_dir() / "voting_ready_set.parquet"
    export_voting_set(frame, "parquet", export_path)
    preview = frame.head(PREVIEW_ROWS)[["task_id", "label", "content"]].copy()
    preview["content"] = preview["content"].str.split("\n").str[0]
    yield dg.Output(
        frame,
        metadata={
            "tasks": dg.MetadataValue.int(frame["task_id"].nunique()),
            "drafts": dg.MetadataValue.int(len(frame)),
            "export": dg.MetadataValue.path(str(export_path)),
            "preview": dg.MetadataValue.md(markdown_table(preview)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="no_provider_or_model_names",
        passed=not leaks,
        metadata={"leaks": dg.MetadataValue.json(leaks[:50])},
    )
