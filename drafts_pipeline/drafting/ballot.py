"""Blind labels and the quorum rule, free of Dagster and the database."""

import random
import string
from collections.abc import Sequence
from typing import Literal

BallotDecision = Literal["voting", "drafting", "failed"]


def assign_labels(providers: Sequence[str], rng: random.Random) -> dict[str, str]:
    """A uniformly random bijection from providers to labels A, B, C, ...

    The providers are sorted first so that the outcome depends on the random draw only,
    never on the order in which drafts happened to arrive.
    """
    if len(set(providers)) != len(providers):
        raise ValueError(f"providers must be distinct, got {list(providers)}")
    if len(providers) > len(string.ascii_uppercase):
        raise ValueError(f"at most 26 drafts per ballot, got {len(providers)}")
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
