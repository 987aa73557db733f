"""`votes_sensor`: new rows in the votes table refresh what the votes say.

A sensor rather than an automation condition: the votes table is written outside Dagster (the
voting page, the votes import), so nothing in Dagster's own records changes when votes arrive;
only a look at the table can tell. Its cursor is the highest vote row id seen, and a replacing
vote is a new row, so a changed vote counts as new.
"""

import dagster as dg

from drafts_pipeline.defs.loaded_settings import LOADED_SETTINGS
from drafts_pipeline.defs.runs import unfinished_runs
from drafts_pipeline.defs.voting.jobs import refresh_vote_results_job
from drafts_pipeline.store import DraftStore


@dg.sensor(
    job=refresh_vote_results_job,
    minimum_interval_seconds=LOADED_SETTINGS.sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a `refresh_vote_results` run (votes, provider_leaderboard, "
    "accepted_drafts) when vote rows past its cursor exist, replaced votes included; while "
    "such a run is queued or going it waits, and the next tick after it covers the new votes.",
)
def votes_sensor(context: dg.SensorEvaluationContext, store: DraftStore) -> dg.SensorResult:
    store.require_current()
    cursor = int(context.cursor or 0)
    rows = store.vote_rows_after(cursor)
    if not rows.added:
        return dg.SensorResult(skip_reason=f"no vote recorded past row #{cursor}")
    # An unfinished refresh run will read the table or is reading it now.
    refreshing = unfinished_runs(context.instance, refresh_vote_results_job.name)
    if refreshing:
        return dg.SensorResult(
            skip_reason=f"{rows.added} vote row(s) past #{cursor}; a refresh run is under way, "
            "the next tick after it asks again"
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"votes-{cursor}-{rows.newest}")],
        cursor=str(rows.newest),
    )
