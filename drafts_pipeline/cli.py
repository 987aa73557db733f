"""`drafts-pipeline`: set up the store, bring tasks in, run the graph, export the voting set,
rank the providers by the votes."""

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click
import dagster as dg

from drafts_pipeline.errors import DraftsError
from drafts_pipeline.log_format import use_log_format
from drafts_pipeline.settings import SUBMIT_MODES, Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.schema import safe_url
from drafts_pipeline.voting.leaderboard import DEFAULT_ROUNDS, DEFAULT_SEED
from drafts_pipeline.voting_set import (
    EXPORT_FORMATS,
    export_voting_set,
    voting_ready_frame,
    voting_set,
)

if TYPE_CHECKING:
    import pandas as pd

    from drafts_pipeline.drafting.estimates import DraftingEstimate
    from drafts_pipeline.llm.providers import ProviderResource
    from drafts_pipeline.runner import BatchRun

SAMPLE_PROJECT = Path(__file__).parent / "sample_project"

# The backfill policy of the per-task assets is a beta parameter; say so once, in the README.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def _store() -> DraftStore:
    store = DraftStore(database_url=Settings.from_environment().database_url)
    store.upgrade()
    return store


@click.group()
def main() -> None:
    """Blind documentation drafts from several LLM providers, on Dagster.

    Every command reads DRAFTS_DATABASE_URL (default: a SQLite file in ./data).
    """
    use_log_format(Settings.from_environment().require("log_format").log_format)


@main.group()
def db() -> None:
    """The draft store's schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the tables to the newest schema."""
    store = _store()
    click.echo(f"schema is current at {safe_url(store.database_url)}")


@main.group()
def tasks() -> None:
    """Bring documentation tasks in, follow their source, or send them back to drafting."""


@tasks.command("discover")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
def tasks_discover(path: Path) -> None:
    """Create a task for every public function or method without a docstring under PATH;
    update the tasks whose code changed (reopening those in voting or failed on a new ballot)
    and retire those whose file no longer defines their symbol."""
    from drafts_pipeline.tasks.discover import sync_discovered

    found, synced = sync_discovered(_store(), path)
    for skipped in found.skipped:
        click.echo(f"skipped {skipped}", err=True)
    click.echo(f"{len(found.tasks)} undocumented symbol(s) found; tasks: {synced.summary()}")


@tasks.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def tasks_import(file: Path) -> None:
    """Import tasks from a .jsonl or .csv FILE; a file with any bad row imports nothing."""
    from drafts_pipeline.tasks.importer import import_tasks

    summary = import_tasks(_store(), file)
    click.echo(
        f"{summary.read} task(s) read: {summary.created} new, {summary.unchanged} unchanged, "
        f"{summary.updated} updated, {summary.reopened} reopened"
    )


@tasks.command("reopen")
@click.argument("task_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why: recorded with the reopening.")
def tasks_reopen(task_ids: tuple[str, ...], reason: str) -> None:
    """Move tasks in `voting` back to `drafting` on a new ballot, to be drafted again by the
    sensor's next run or `drafts-pipeline run`. The closed ballot's drafts, labels and votes
    are kept as history. A task in another status is named and left as it is."""
    if not reason.strip():
        raise click.UsageError("--reason must say why the tasks are reopened")
    done = _store().reopen_tasks(list(task_ids), "reopen", reason=reason.strip())
    for task_id, why in done.refused.items():
        click.echo(f"task {task_id}: {why}", err=True)
    click.echo(f"{len(done.ballots)} task(s) reopened, {len(done.refused)} left as they were")
    if done.refused:
        sys.exit(1)


@tasks.command("retry")
@click.argument("task_ids", metavar="[ID]...", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Retry every failed task.")
def tasks_retry(task_ids: tuple[str, ...], all_failed: bool) -> None:
    """Move failed tasks back to `drafting`, to be drafted again by the sensor's next run or
    `drafts-pipeline run`. Valid drafts are reused; drafts, ballots and calls are all kept.
    One ID that does not exist or has not failed refuses the whole command."""
    if bool(task_ids) == all_failed:
        raise click.UsageError("name the failed tasks to retry, or give --all-failed (not both)")
    moved = _store().requeue_failed(None if all_failed else list(task_ids))
    click.echo(f"{len(moved)} failed task(s) moved back to drafting")


@main.group()
def votes() -> None:
    """Votes on the blind drafts of tasks in `voting`."""


@votes.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def votes_import(file: Path) -> None:
    """Import votes from a .jsonl or .csv FILE (vote_id, task_id, voter, winner or ranking,
    optional created_at); a file with any bad record records nothing."""
    from drafts_pipeline.voting.importer import import_votes

    summary = import_votes(_store(), file)
    click.echo(
        f"{summary.read} vote(s) read, {summary.recorded} recorded "
        f"({summary.replaced} replacing a voter's earlier vote), "
        f"{summary.already_recorded} already recorded"
    )


def _run_settings(batch_size: int | None, concurrent_runs: int | None) -> Settings:
    """The settings a run needs, checked before anything starts (an option overrides its
    variable, and then a bad value of that variable does not matter)."""
    return Settings.from_environment().require(
        "llm_mode",
        "daily_budget_usd",
        *(() if batch_size else ("batch_size",)),
        *(() if concurrent_runs else ("in_process_runs",)),
    )


def _run_drafting(
    settings: Settings,
    batch_size: int | None,
    force: bool,
    concurrent_runs: int | None = None,
    limit: int | None = None,
    show_progress: bool = False,
    submit: str | None = None,
) -> list["BatchRun"]:
    """Draft the tasks in `drafting` (the first `limit` by priority, then arrival), in-process,
    in the mode DRAFTS_LLM_MODE says, with live figures on stderr if `show_progress`. Tasks a
    daily budget holds back are skipped, and said so.

    With DAGSTER_HOME set the runs are recorded in that instance, as if launched from the UI;
    without it, in throwaway instances.
    """
    from drafts_pipeline.definitions import defs
    from drafts_pipeline.runner import run_in_process

    store = _store()
    held = store.held_tasks()
    if held:
        until = max(until for until, _ in held.values())
        click.echo(
            f"{len(held)} task(s) held back by a daily budget until {until:%Y-%m-%d %H:%M} UTC "
            "at the latest: skipped, drafted by the first run after their hold"
        )
    task_ids = store.drafting_queue(limit)
    if not task_ids:
        return []
    with (
        _progress(store, len(task_ids), settings.log_format)
        if show_progress
        else contextlib.nullcontext()
    ):
        return run_in_process(
            defs,
            task_ids,
            batch_size=batch_size or settings.batch_size,
            concurrent_runs=concurrent_runs or settings.in_process_runs,
            force=force,
            log_format=settings.log_format,
            on_home_instance=bool(os.environ.get("DAGSTER_HOME")),
            submit=submit,
        )


def _progress(
    store: DraftStore, tasks: int, log_format: str
) -> contextlib.AbstractContextManager[None]:
    """Live figures on stderr while the runs go: bars on a terminal, else plain lines."""
    from rich.console import Console

    from drafts_pipeline.llm.providers import configured_providers, selected_providers
    from drafts_pipeline.progress import StoreFigures, live_progress, progress_view

    providers = [spec.name for spec in selected_providers(configured_providers())]
    figures = StoreFigures(store, providers)
    view = progress_view(Console(stderr=True), tasks, providers, log_format)
    return live_progress(figures.read, view)


@main.command("run")
@click.option("--batch-size", type=click.IntRange(min=1), help="Tasks per run (DRAFTS_BATCH_SIZE).")
@click.option(
    "--concurrent-runs",
    type=click.IntRange(min=1),
    help="Batch runs going at once (DRAFTS_IN_PROCESS_RUNS, default 3).",
)
@click.option("--force", is_flag=True, help="Regenerate drafts even where a valid one exists.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Draft only the first N tasks: highest priority first, then the order they arrived.",
)
@click.option(
    "--submit",
    type=click.Choice(SUBMIT_MODES),
    help="`live` calls the providers now; `batch` sends each run's prompts to each provider as "
    "one batch, half price, answered within a day: collect it with `batches collect` "
    "(DRAFTS_SUBMIT_MODE, default live).",
)
def run(
    batch_size: int | None,
    concurrent_runs: int | None,
    force: bool,
    limit: int | None,
    submit: str | None,
) -> None:
    """Materialise the graph here for every task in `drafting` (or the first N): in this
    process and worker processes of its own.

    Shows the drafts stored per provider, the rate-limited attempts and the spend as they
    happen, on stderr. With DAGSTER_HOME set, the runs are recorded in that Dagster instance
    (they show in its UI).
    """
    settings = _run_settings(batch_size, concurrent_runs)
    if submit is None:
        settings.require("submit_mode")
    _check_keys(settings.llm_mode)
    runs = _run_drafting(
        settings, batch_size, force, concurrent_runs, limit, show_progress=True, submit=submit
    )
    _report_runs(runs)


def _check_keys(mode: str) -> None:
    """Fail before any run when a live provider's key is missing or unusable, naming every such
    variable at once: never a silent fallback. A provider's daily cap that is no amount fails
    here too, naming its variable. Only the providers that draft (`DRAFTS_PROVIDERS`) count."""
    from drafts_pipeline.llm.keys import require_keys

    providers = _drafting_providers(mode)
    require_keys(providers)
    for provider in providers:
        provider.daily_budget()


def _drafting_providers(mode: str) -> list["ProviderResource"]:
    """The resources of the providers a run drafts with: DRAFTS_PROVIDERS, else the providers
    file's defaults."""
    from drafts_pipeline.llm.providers import (
        configured_providers,
        provider_resources,
        selected_providers,
    )

    specs = configured_providers()
    resources = provider_resources(mode, specs)
    return [resources[spec.resource_key] for spec in selected_providers(specs)]


def _report_runs(runs: list["BatchRun"]) -> None:
    """A line of totals, then one `error:` line per failed step. Exit status 1 when any step
    failed unexpectedly (its stack printed above its line), 2 when every failure is one the
    project raised on purpose (a setting, the store out of reach: the line says what to do)."""
    failed = [r for r in runs if not r.success]
    click.echo(
        f"{sum(1 for r in runs if r.size)} run(s), {sum(r.size for r in runs)} task(s), "
        f"{len(failed)} failed run(s)"
    )
    failures = [(r, f) for r in failed for f in r.failures]
    for r, f in failures:
        if not f.expected:
            click.echo(f.details, err=True)
        tasks = f"{r.first}..{r.last}" if r.size else r.first
        click.echo(f"error: step {f.step} of run {r.run_id[:8]} ({tasks}): {f.message}", err=True)
    for r in failed:
        if not r.failures:
            click.echo(f"error: run {r.run_id} for {r.first}..{r.last} failed", err=True)
    # Every failure one the project raised on purpose (the store may be out of reach: no counts).
    expected = bool(failures) and all(f.expected for _, f in failures)
    if not expected:
        store = DraftStore(database_url=Settings.from_environment().database_url)
        counts = {s: len(store.task_ids(s)) for s in ("drafting", "voting", "failed")}
        click.echo("tasks: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    if failed:
        sys.exit(2 if expected else 1)


@main.group()
def batches() -> None:
    """Provider batches (`run --submit batch`): list them, collect the finished ones."""


@batches.command("list")
def batches_list() -> None:
    """Every provider batch, oldest first: status, tasks, the tasks it still holds, expiry."""
    for held in _store().provider_batches():
        batch = held.batch
        expires = f"{batch.expires_at:%Y-%m-%d %H:%M} UTC" if batch.expires_at else "unknown"
        click.echo(
            f"#{batch.id} {batch.provider} {batch.batch_id or '(no provider id)'} "
            f"{batch.status}: {len(batch.task_ids)} task(s), {len(held.task_ids)} still held; "
            f"submitted {batch.submitted_at:%Y-%m-%d %H:%M} UTC, expires {expires}"
            + (f"; {batch.error}" if batch.error else "")
        )


@batches.command("collect")
@click.option("--wait", is_flag=True, help="Wait until no batch is in progress, then collect.")
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Seconds between looks at the providers while waiting.",
)
def batches_collect(wait: bool, every: int) -> None:
    """Ask the providers about their batches now and collect the finished ones here:
    what `provider_batches_sensor` and the runs it requests do under the daemon."""
    import logging
    import time

    from drafts_pipeline.definitions import defs
    from drafts_pipeline.defs.drafting.batch_sensors import poll_batches
    from drafts_pipeline.drafting.batch_collect import settle_unheld
    from drafts_pipeline.llm.providers import configured_providers, provider_resources
    from drafts_pipeline.runner import run_in_process
    from drafts_pipeline.store.models import utcnow

    settings = Settings.from_environment().require("llm_mode", "batch_size", "in_process_runs")
    _check_keys(settings.llm_mode)
    store = _store()
    specs = configured_providers()
    resources = provider_resources(settings.llm_mode, specs)
    providers = {spec.name: resources[spec.resource_key] for spec in specs}
    log = logging.getLogger(__name__)
    while True:
        look = utcnow()
        while store.batches_to_poll(1, look):
            for problem in poll_batches(store, providers, log, polled_before=look):
                click.echo(f"warning: {problem}", err=True)
        pending = store.provider_batches(["in_progress"])
        if not wait or not pending:
            break
        click.echo(f"{len(pending)} batch(es) in progress; looking again in {every} s")
        time.sleep(every)
    finished = store.batches_to_collect()
    for held in finished:
        if not held.task_ids:
            unsettled = settle_unheld(store, providers.get(held.batch.provider), held)
            if unsettled is not None:
                click.echo(f"warning: {unsettled}", err=True)
    task_ids = list(dict.fromkeys(task_id for held in finished for task_id in held.task_ids))
    if not task_ids:
        click.echo(f"no finished batch to collect ({len(pending)} in progress)")
        return
    click.echo(f"collecting {len(task_ids)} task(s) from finished batches")
    runs = run_in_process(
        defs,
        task_ids,
        batch_size=settings.batch_size,
        concurrent_runs=settings.in_process_runs,
        on_home_instance=bool(os.environ.get("DAGSTER_HOME")),
        collect=True,
    )
    _report_runs(runs)


@batches.command("release")
@click.argument("row", type=int)
def batches_release(row: int) -> None:
    """Release the tasks of batch ROW (its `#` in `batches list`) left `submitting` by a run
    that died before the provider answered, and mark it failed. Look first in the provider's
    own list of batches: one it did create is paid for, cannot be collected here, and is best
    cancelled there."""
    store = _store()
    found = {held.batch.id: held for held in store.provider_batches()}
    held = found.get(row)
    if held is None or held.batch.status != "submitting":
        status = "no such batch" if held is None else f"it is {held.batch.status}"
        raise DraftsError(f"batch #{row} is not submitting ({status}): nothing released")
    reason = "released by an operator: its run died while submitting"
    if not store.close_batch(row, "failed", reason, only_from="submitting"):
        raise DraftsError(f"batch #{row} stopped submitting meanwhile: nothing released")
    click.echo(f"batch #{row}: {len(held.task_ids)} task(s) released, batch marked failed")


@main.command("estimate")
@click.argument("task_ids", metavar="[ID]...", nargs=-1)
def estimate(task_ids: tuple[str, ...]) -> None:
    """Estimate what drafting the tasks in `drafting` (or the tasks ID...) would cost, per
    provider and model, in the mode DRAFTS_LLM_MODE says: tasks, input and output tokens,
    dollars, and how each figure was reached. No provider is called."""
    from drafts_pipeline.drafting.estimates import estimate_drafting

    settings = Settings.from_environment().require("llm_mode", "daily_budget_usd")
    providers = _drafting_providers(settings.llm_mode)
    found = estimate_drafting(
        _store(),
        providers,
        list(task_ids) or None,
        total_cap_usd=settings.daily_budget_usd,
    )
    for line in estimate_lines(found, settings.llm_mode):
        click.echo(line)


def estimate_lines(found: "DraftingEstimate", mode: str) -> list[str]:
    """The estimate as the command prints it: a table per provider and model, then the
    method behind each figure, then what was left out and the daily caps."""
    lines = [f"{found.tasks} task(s) to draft, mode {mode}; no provider is called"]
    rows = [("provider", "model", "tasks", "input tokens", "output tokens", "cost (USD)")]
    for e in found.providers:
        cost = f"{e.cost_usd:.6f}" if e.cost_usd is not None else "unknown"
        rows.append((e.provider, e.model, str(e.tasks), f"{e.input_tokens:,}",
                     f"{e.output_tokens:,}", cost))  # fmt: skip
    total = found.cost_usd
    rows.append((
        "total", "", str(sum(e.tasks for e in found.providers)),
        f"{sum(e.input_tokens for e in found.providers):,}",
        f"{sum(e.output_tokens for e in found.providers):,}",
        f"{total:.6f}" if total is not None else "unknown",
    ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    lines.append("how:")
    for what, texts in (
        ("input tokens", [(e.provider, e.input_method) for e in found.providers]),
        ("output tokens", [(e.provider, e.output_method) for e in found.providers]),
        ("cached input", [(e.provider, e.cache_method) for e in found.providers]),
    ):
        by_text: dict[str, list[str]] = {}
        for provider, text in texts:
            by_text.setdefault(text, []).append(provider)
        for text, names in by_text.items():
            lines.append(f"  {what} ({', '.join(names)}): {text}")
    lines.append(
        "  cost: input tokens at the model's input rate, the cached share at the cached and "
        "cache-write rates, output tokens at the output rate, from the price table "
        "(drafts_pipeline/llm/pricing.py) or DRAFTS_<PROVIDER>_*_USD_PER_MTOK"
    )
    for e in found.providers:
        if e.cost_note:
            lines.append(f"  {e.provider}: cost unknown, {e.cost_note}")
        if (reused := found.tasks - e.tasks) > 0:
            lines.append(f"  {e.provider}: {reused} task(s) reuse a valid draft, no call")
    if found.held:
        until = f"{max(found.held.values()):%Y-%m-%d %H:%M} UTC"
        lines.append(
            f"{len(found.held)} task(s) held back by a daily budget (until {until} at the "
            "latest) are in the figures: they are drafted once their hold has passed"
        )
    if found.left_out:
        lines.append(
            f"left out, not in drafting (a run does not draft them): {', '.join(found.left_out)}"
        )
    for problem in found.unbuildable:
        lines.append(f"left out, its prompt does not build (a run fails it): {problem}")
    for today in found.caps:
        lines.append(f"{today.cap.describe()}: ${today.spent_usd:.4f} spent today (UTC) so far")
    return lines


@main.command("demo")
def demo() -> None:
    """Discover the bundled sample code, draft it offline and print the voting-ready set."""
    from drafts_pipeline.tasks.discover import discover_tasks

    os.environ["DRAFTS_LLM_MODE"] = "offline"
    store = _store()
    created = store.add_tasks(discover_tasks(SAMPLE_PROJECT).tasks)
    click.echo(f"sample project: {created} new task(s) at {safe_url(store.database_url)}")
    _report_runs(_run_drafting(_run_settings(None, None), None, force=False))
    frame = voting_ready_frame(store)
    click.echo(f"\nvoting-ready set: {frame['task_id'].nunique()} task(s), {len(frame)} draft(s)\n")
    _print_set(frame)


def _print_set(frame: "pd.DataFrame") -> None:
    import pandas as pd

    shown = frame[["task_id", "label", "content"]].copy()
    shown["content"] = shown["content"].str.split("\n").str[0].str.slice(0, 70)
    with pd.option_context(
        "display.max_rows", 200, "display.width", 160, "display.max_colwidth", 80
    ):
        click.echo(shown.to_string(index=False))


@main.group()
def export() -> None:
    """Publish data for other applications."""


@export.command("voting-set")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_voting_set_command(fmt: str, output: Path) -> None:
    """Write the voting-ready set (no provider or model names) to OUTPUT, and beside it
    OUTPUT.manifest.json and OUTPUT.stats.json: what the set holds and what drafted it, and
    the valid rates and failure reasons. Those two name providers: for the team, never for
    voters."""
    from drafts_pipeline.export_records import write_export_records

    llm_mode = Settings.from_environment().require("llm_mode").llm_mode
    store = _store()
    published = voting_set(store)
    rows = export_voting_set(published.frame, fmt, output)
    records = write_export_records(store, published, fmt, output, llm_mode=llm_mode)
    click.echo(f"{rows} labelled draft(s) written to {output}")
    click.echo(
        f"manifest and stats (they name providers: not for voters) in "
        f"{records.manifest_path} and {records.stats_path}"
    )
    if published.withheld:
        click.echo(
            f"warning: {len(published.withheld)} labelled draft(s) left out, their text would "
            f"tell voters who wrote them: {'; '.join(published.withheld[:3])}",
            err=True,
        )


@main.command("leaderboard")
@click.option(
    "--by",
    type=click.Choice(["language", "template"]),
    help="One leaderboard per language or per template instead of one over every vote.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=DEFAULT_ROUNDS,
    show_default=True,
    help="Bootstrap refits behind each 95% interval.",
)
@click.option(
    "--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the resampling."
)
def leaderboard(by: str | None, rounds: int, seed: int) -> None:
    """Print the providers ranked by the current votes: model, strength (Elo-like, mean 1000),
    95% interval, win rate (ties half), votes and cost per valid draft."""
    import pandas as pd

    from drafts_pipeline.voting.leaderboard import current_leaderboard, display_frame

    frame = current_leaderboard(_store(), scopes=[by or "all"], rounds=rounds, seed=seed)
    if frame.empty:
        click.echo("no votes yet: no leaderboard")
        return
    with pd.option_context("display.width", 160, "display.max_colwidth", 40):
        for group, board in frame.groupby("group", sort=False):
            if by:
                click.echo(f"{by} {group}:")
            click.echo(display_frame(board).to_string(index=False))
            if by:
                click.echo()


@main.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback opens the page to other machines.",
)
@click.option("--port", default=8642, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Serve the voting page: voters pick the best draft of each task in `voting`.

    Its cookie is signed with DRAFTS_VOTING_SECRET; without it, with a key made at start, and
    voters give their name again after a restart.
    """
    import uvicorn

    from drafts_pipeline.voting.page import is_loopback, loopback_hosts, voting_app

    secret = Settings.from_environment().require("voting_secret").voting_secret
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}, not loopback: anyone who can reach this address can "
            "vote, under any name (the page has no log-in)",
            err=True,
        )
    if secret is None:
        click.echo(
            "note: DRAFTS_VOTING_SECRET is not set; voters give their name again after a restart",
            err=True,
        )
    app = voting_app(_store(), secret=secret, allowed_hosts=loopback_hosts(host))
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"voting page at http://{shown}:{port}/ (Ctrl+C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@main.command("apply")
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the patch.",
)
@click.option(
    "--root",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The folder `tasks discover` was run on (task paths are relative to it).",
)
def apply(output: Path, root: Path) -> None:
    """Write the accepted docstrings into their source files as a unified diff.

    Only tasks from `tasks discover` whose symbol is unchanged since are patched; each other
    accepted draft is named with the reason it was left out. Nothing in the sources changes
    until the patch is applied with `git apply`. A draft is accepted once its task has
    DRAFTS_MIN_VOTES votes (default 3) and more than half put it first.
    """
    from drafts_pipeline.voting.acceptance import accepted_drafts
    from drafts_pipeline.voting.patch import AcceptedDocstring, docstring_patch, write_patch

    min_votes = Settings.from_environment().require("min_votes").min_votes
    accepted = accepted_drafts(_store(), min_votes)
    # Paths in the patch lead from the current folder when the project is below it, so that
    # `git apply PATCH` works from here; otherwise from the project root.
    try:
        prefix = root.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        prefix = None
    patch = docstring_patch(
        root,
        [
            AcceptedDocstring(
                draft.task_id, draft.source_path, draft.symbol, draft.language, draft.code,
                draft.content,
            )
            for draft in accepted
        ],
        path_prefix="" if prefix in (None, ".") else f"{prefix}/",
    )  # fmt: skip
    for skipped in patch.skipped:
        click.echo(f"skipped {skipped.task_id}: {skipped.reason}", err=True)
    if not patch.applied:
        click.echo(
            f"{len(accepted)} accepted draft(s) (DRAFTS_MIN_VOTES={min_votes}), none to apply: "
            "no patch written"
        )
        return
    write_patch(output, patch.diff)
    how = (
        f"git apply {output}"
        if prefix is not None
        else f"cd {root} && git apply {output.resolve()}"
    )
    click.echo(
        f"{len(accepted)} accepted draft(s): {len(patch.applied)} docstring(s) in {output}, "
        f"{len(patch.skipped)} skipped; apply it with `{how}`"
    )


def run_cli() -> None:
    try:
        main(standalone_mode=False, prog_name="drafts-pipeline")
    except DraftsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
