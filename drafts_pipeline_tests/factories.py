"""Small builders the tests share."""

import random
from collections.abc import Mapping

from drafts_pipeline.drafting.ballot import cast_ballots
from drafts_pipeline.prompts.templates import build_prompt, prompt_for
from drafts_pipeline.store import DraftRecord, DraftStore, TaskInput
from drafts_pipeline.store.models import DocumentationTask


def make_task(task_id: str = "shop.orders.compute_total", **overrides: object) -> TaskInput:
    fields: dict[str, object] = {
        "id": task_id,
        "symbol": task_id.rsplit(".", 1)[-1],
        "language": "python",
        "code": "def compute_total(lines, shipping=0):\n    return sum(lines) + shipping\n",
        "context": '"""Orders."""',
        "source_path": "shop/orders.py",
    }
    fields.update(overrides)
    return TaskInput(**fields)  # type: ignore[arg-type]


def make_draft(
    task_id: str, provider: str, status: str = "valid", **overrides: object
) -> DraftRecord:
    fields: dict[str, object] = {
        "task_id": task_id,
        "provider": provider,
        "model": f"model-of-{provider}",
        "content": f"Draft by {provider}.",
        "prompt_used": "prompt",
        "prompt_hash": "p" * 64,
        "template_version": "docstring-v2",
        "settings_hash": "s" * 64,
        "status": status,
        "validation": {},
    }
    fields.update(overrides)
    return DraftRecord(**fields)  # type: ignore[arg-type]


def seed_drafts(store: DraftStore, task_id: str, statuses: dict[str, str]) -> None:
    for provider, status in statuses.items():
        assert store.add_draft(make_draft(task_id, provider, status)) is not None


def with_prompts(store: DraftStore, ids: list[str]) -> list[DocumentationTask]:
    """The stored tasks `ids`, in that order, with their prompts recorded as `pending_tasks`
    leaves them."""
    tasks = store.tasks_by_id(ids)
    store.record_prompts([(task.id, prompt_for(task)) for task in tasks.values()])
    refreshed = store.tasks_by_id(ids)
    return [refreshed[task_id] for task_id in ids]


def in_voting(
    store: DraftStore,
    task_id: str,
    providers: tuple[str, ...] = ("claude", "openai", "kimi"),
    seed: int = 0,
    contents: Mapping[str, str] | None = None,
    **task: object,
) -> dict[str, str]:
    """A task with a valid draft per provider, moved to `voting` by a real ballot; returns
    label -> provider, which only tests may know. `contents`: provider -> draft text, for
    drafts that must not name their provider (the default text does)."""
    store.add_tasks([make_task(task_id, **task)])
    return _balloted(store, task_id, providers, seed, contents)


def reopened_in_voting(
    store: DraftStore,
    task_id: str,
    providers: tuple[str, ...] = ("claude", "openai", "kimi"),
    seed: int = 1,
    contents: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A task of `in_voting` reopened and in `voting` again on its next ballot, with fresh
    drafts; returns that ballot's label -> provider."""
    assert task_id in store.reopen_tasks([task_id], "reopen", reason="test").ballots
    return _balloted(store, task_id, providers, seed, contents)


def _balloted(
    store: DraftStore,
    task_id: str,
    providers: tuple[str, ...],
    seed: int,
    contents: Mapping[str, str] | None,
) -> dict[str, str]:
    for provider in providers:
        text = {} if contents is None else {"content": contents[provider]}
        assert store.add_draft(make_draft(task_id, provider, "valid", **text)) is not None
    [outcome] = cast_ballots(
        store, [task_id], min_drafts=2, max_attempts=3, rng=random.Random(seed)
    )
    assert outcome.outcome == "voting"
    labels: dict[str, str] = {}
    for provider in providers:
        draft = store.latest_drafts([task_id], provider)[task_id]
        assert draft.label is not None
        labels[draft.label] = provider
    return labels


def task_with_prompt_of(task_id: str, length: int) -> TaskInput:
    """A task whose prompt (the template's fixed part and the task part together) is exactly
    `length` characters: its code padded with a comment."""
    name = task_id.rsplit(".", 1)[-1]
    code = f"def {name}(event):\n    return event"
    padding = length - prompt_length(make_task(task_id, code=code)) - len("\n# ")
    task = make_task(task_id, code=f"{code}\n# {'x' * padding}")
    assert prompt_length(task) == length
    return task


def prompt_length(task: TaskInput) -> int:
    """The characters a request for `task` sends: the fixed part and the task part."""
    built = build_prompt(
        task_id=task.id, template=task.template, language=task.language, symbol=task.symbol,
        source_path=task.source_path, code=task.code, context=task.context,
    )  # fmt: skip
    return len(built.system) + len(built.text)
