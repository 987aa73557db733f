"""Ballots: the quorum rule and blind labels (pure), and casting them on the store."""

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from drafts_pipeline.store.outages import run_riding_out

if TYPE_CHECKING:
    from drafts_pipeline.store import DraftStore
    from drafts_pipeline.store.ballots import UnusableDraft

BallotDecision = Literal["voting", "drafting", "failed"]
MAX_LABELS = len(string.ascii_uppercase)


@dataclass(frozen=True)
class BallotOutcome:
    """What a ballot did: `voting`, `drafting` (below quorum), `failed`, `held` (a daily
    budget left it undrafted on purpose; no attempt counted), or `unchanged`."""

    task_id: str
    outcome: str
    valid_drafts: int
    labels: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


def assign_labels(providers: Sequence[str], rng: random.Random) -> dict[str, str]:
    """A uniformly random bijection from providers to labels A, B, C, ...

    The providers are sorted first so that the outcome depends on the random draw only,
    never on the order in which drafts happened to arrive.
    """
    if len(set(providers)) != len(providers):
        raise ValueError(f"providers must be distinct, got {list(providers)}")
    if len(providers) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} drafts per ballot, got {len(providers)}")
    labels = list(string.ascii_uppercase[: len(providers)])
    rng.shuffle(labels)
    return dict(zip(sorted(providers), labels, strict=True))


def decide(valid_drafts: int, min_drafts: int, attempts: int, max_attempts: int) -> BallotDecision:
    """`voting` at quorum; below it `drafting` again, or `failed` once attempts run out.

    `attempts` counts the ballots already held below quorum for this task.
    """
    if valid_drafts >= min_drafts:
        return "voting"
    if attempts + 1 >= max_attempts:
        return "failed"
    return "drafting"


def unusable_cause(draft: "UnusableDraft") -> str:
    """Why a draft does not count, in a few words free of any provider message: the error kind
    of a failed call (`server_error after 4 attempts`, `quota`), or the checks an invalid
    answer failed (`invalid: schema, complete`)."""
    if draft.status == "failed":
        kind = draft.validation.get("provider", {}).get("error_type") or "failed"
        return f"{kind} after {draft.attempts} attempts" if draft.attempts > 1 else kind
    failed_checks = [
        name
        for name, check in draft.validation.items()
        if isinstance(check, dict) and not check.get("ok", True)
    ]
    return f"invalid: {', '.join(failed_checks)}" if failed_checks else draft.status


def below_quorum_reason(
    valid_drafts: int, min_drafts: int, unusable: Mapping[str, "UnusableDraft"]
) -> str:
    """A task's `last_error` below quorum: the count, then each provider whose draft is not
    valid and why, e.g. `1 valid draft(s), quorum is 2; claude: server_error after 4 attempts;
    openai: quota`."""
    causes = [f"{provider}: {unusable_cause(unusable[provider])}" for provider in sorted(unusable)]
    return "; ".join([f"{valid_drafts} valid draft(s), quorum is {min_drafts}", *causes])


def cast_ballots(
    store: "DraftStore",
    task_ids: Sequence[str],
    *,
    min_drafts: int,
    max_attempts: int,
    rng: random.Random,
    run_id: str | None = None,
) -> list[BallotOutcome]:
    """For each task still in `drafting`: at quorum, label the newest valid draft of each
    provider and move the task to `voting`, exactly once; below quorum, count an attempt. A
    task a daily budget held back is left as it is (`held`): its missing drafts come later.

    One transaction for the batch, held again whole if the database connection is lost
    (`store.outages`). A task that another ballot moved first comes back `unchanged` with its
    labels untouched, and so does one that another run is still drafting (a live claim that is
    not `run_id`'s): that run holds its ballot when its drafts are in.
    """
    if not task_ids:
        return []
    return run_riding_out(
        store.engine,
        lambda: _cast_once(store, task_ids, min_drafts, max_attempts, rng, run_id),
    )


def _cast_once(
    store: "DraftStore",
    task_ids: Sequence[str],
    min_drafts: int,
    max_attempts: int,
    rng: random.Random,
    run_id: str | None,
) -> list[BallotOutcome]:
    outcomes: dict[str, BallotOutcome] = {}
    with store.ballot_box(task_ids, run_id) as box:
        labels: dict[str, dict[int, str]] = {}
        chosen: dict[str, dict[str, str]] = {}
        below: dict[str, tuple[str, str]] = {}
        for task_id, candidate in box.candidates.items():
            count = len(candidate.valid_drafts)
            if candidate.drafting_in is not None:
                outcomes[task_id] = BallotOutcome(
                    task_id, "unchanged", count, reason=f"drafting in run {candidate.drafting_in}"
                )
                continue
            if candidate.held is not None:
                outcomes[task_id] = BallotOutcome(task_id, "held", count, reason=candidate.held)
                continue
            decision = decide(count, min_drafts, candidate.attempts, max_attempts)
            if decision == "voting":
                by_provider = assign_labels(list(candidate.valid_drafts), rng)
                chosen[task_id] = by_provider
                labels[task_id] = {
                    draft_id: by_provider[provider]
                    for provider, draft_id in candidate.valid_drafts.items()
                }
            else:
                reason = below_quorum_reason(count, min_drafts, candidate.unusable_drafts)
                below[task_id] = (decision, reason)
        moved = box.move_to_voting(labels)
        box.keep_below_quorum(below)
        for task_id, by_provider in chosen.items():
            count = len(by_provider)
            outcomes[task_id] = (
                BallotOutcome(task_id, "voting", count, by_provider)
                if task_id in moved
                else BallotOutcome(task_id, "unchanged", count, reason="raced")
            )
        for task_id, (status, reason) in below.items():
            count = len(box.candidates[task_id].valid_drafts)
            outcomes[task_id] = BallotOutcome(task_id, status, count, reason=reason)
        statuses = box.statuses
    return [
        outcomes.get(t) or BallotOutcome(t, "unchanged", 0, reason=statuses.get(t))
        for t in task_ids
    ]
