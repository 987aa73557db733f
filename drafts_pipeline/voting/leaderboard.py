"""The provider leaderboard: Bradley-Terry strengths fitted to the pairwise outcomes the votes
imply, on an Elo-like scale, with bootstrap 95% intervals, win rates and vote counts, over all
votes and per language and per template.

The model: provider i beats provider j with probability p_i / (p_i + p_j). Each vote becomes
the pairs `VoteOutcome.pairs` gives (a winner beats every other draft on its ballot, a ranking
orders every pair, a tie is half a win each way, `all_bad` no pair); the log-strengths
theta_i = ln p_i maximise the likelihood of all those pairs, a tie counting half a win each way.
Every pair of providers in the votes also starts with one drawn game (half a win each way): a
prior that keeps a provider that never lost (or never won) finite, joins providers that never
met, and fades as real votes arrive. The fit is scipy's L-BFGS-B on that penalised likelihood
with its exact gradient.

The scale: 400 / ln 10 points per unit of log-strength (so 400 points is 10-to-1 odds, as in
chess's Elo), the mean over the providers ranked at 1000. The intervals resample whole votes
(the pairs of one vote are not independent) with a fixed seed, and refit each time; each bound
is a percentile of the refitted strengths on the same scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from drafts_pipeline.store.votes import VoteOutcome

if TYPE_CHECKING:
    # Imported where the numbers are made: the code location loads this module in every run
    # process, which never needs numpy.
    import numpy as np
    import pandas as pd

    from drafts_pipeline.store import DraftStore

ELO_PER_LOG_UNIT = 400 / math.log(10)
ELO_MEAN = 1000.0
PRIOR_DRAWS = 1.0
"""Drawn games every pair of providers starts with."""
DEFAULT_ROUNDS = 1000
DEFAULT_SEED = 20261
CONFIDENCE = 0.95
SCOPES = ("all", "language", "template")

COLUMNS = [
    "scope",
    "group",
    "provider",
    "model",
    "strength",
    "ci_low",
    "ci_high",
    "win_rate",
    "votes",
    "first_places",
    "comparisons",
    "cost_per_valid_draft_usd",
]


@dataclass(frozen=True)
class Standing:
    """One provider's line on a leaderboard."""

    provider: str
    strength: float
    """Elo-like: 1000 is the mean of the providers on the same board."""
    ci_low: float
    ci_high: float
    win_rate: float | None
    """Share of its pairwise comparisons won, ties half; None when it has none."""
    votes: int
    """Current votes on ballots that held one of its drafts, `all_bad` and ties included."""
    first_places: int
    """Votes that put its draft first (alone as the winner, or at the top of a ranking)."""
    comparisons: int
    """Pairs with another provider that its votes implied."""


@dataclass(frozen=True)
class Leaderboard:
    """Standings best first, over every vote (`scope` `all`) or one language or template."""

    scope: str
    group: str
    """The language or template; empty for `all`."""
    votes: int
    standings: tuple[Standing, ...]


def elo(log_strengths: np.ndarray) -> np.ndarray:
    """Log-strengths on the Elo-like scale, their mean at 1000."""
    if log_strengths.size == 0:
        return log_strengths
    centred = log_strengths - log_strengths.mean(axis=-1, keepdims=True)
    return ELO_MEAN + ELO_PER_LOG_UNIT * centred


def fit_log_strengths(wins: np.ndarray, prior_draws: float = PRIOR_DRAWS) -> np.ndarray:
    """Bradley-Terry log-strengths, mean zero, from `wins[..., i, j]`: the score of i against
    j (1 a win, 0.5 a tie), with `prior_draws` drawn games added to every pair. A stack of
    matrices is fitted in one search: its likelihood is the sum of theirs, so its optimum is
    each one's optimum."""
    # Imported here, as numpy is: the code location loads this module in every run process.
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    size = wins.shape[-1]
    if size < 2:
        return np.zeros(wins.shape[:-1])
    scores = wins + (prior_draws / 2) * (1 - np.eye(size))
    shape = wins.shape[:-1]

    def negative_log_likelihood(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(shape)
        margin = theta[..., :, None] - theta[..., None, :]
        value = -float(np.sum(scores * log_expit(margin)))
        surprise = scores * expit(-margin)
        return value, (surprise.sum(axis=-2) - surprise.sum(axis=-1)).ravel()

    # The likelihood ignores a common shift and its gradient always sums to zero, so from zero
    # the search stays among mean-zero strengths, where the optimum is unique.
    found = minimize(
        negative_log_likelihood,
        np.zeros(math.prod(shape)),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000},
    )
    theta: np.ndarray = found.x.reshape(shape)
    return theta - theta.mean(axis=-1, keepdims=True)


def vote_scores(outcomes: Sequence[VoteOutcome], providers: Sequence[str]) -> np.ndarray:
    """One matrix per vote: `[v, i, j]` is the score of providers[i] against providers[j]
    in vote v."""
    import numpy as np

    index = {provider: position for position, provider in enumerate(providers)}
    scores = np.zeros((len(outcomes), len(providers), len(providers)))
    for row, outcome in enumerate(outcomes):
        for a, b, score in outcome.pairs():
            scores[row, index[a], index[b]] += score
            scores[row, index[b], index[a]] += 1 - score
    return scores


def bootstrap_elo(
    scores: np.ndarray, rounds: int, seed: int, prior_draws: float = PRIOR_DRAWS
) -> np.ndarray:
    """`rounds` refits, each on as many votes drawn with replacement from `scores` (one
    matrix per vote), as rows of Elo-like strengths.

    Votes that imply the same pairs are interchangeable, so a draw of votes is a multinomial
    draw of how many times each distinct pattern comes up: the same resampling, at the cost of
    the few patterns rather than the many votes."""
    import numpy as np

    votes, size = scores.shape[0], scores.shape[1]
    patterns, counts = np.unique(scores.reshape(votes, size * size), axis=0, return_counts=True)
    drawn = np.random.default_rng(seed).multinomial(votes, counts / votes, size=rounds)
    wins = (drawn @ patterns).reshape(rounds, size, size)
    return elo(fit_log_strengths(wins, prior_draws))


def leaderboard(
    outcomes: Sequence[VoteOutcome],
    *,
    scope: str = "all",
    group: str = "",
    rounds: int = DEFAULT_ROUNDS,
    seed: int = DEFAULT_SEED,
    prior_draws: float = PRIOR_DRAWS,
) -> Leaderboard:
    """The standings of the providers on the ballots of `outcomes`, best first.

    No votes: no standings. One provider: 1000 with no interval to speak of. A vote that
    implies no pair (`all_bad`) counts in `votes` but is left out of the fit and its resampling.
    """
    import numpy as np

    providers = sorted({provider for outcome in outcomes for provider in outcome.providers})
    scores = vote_scores(outcomes, providers)
    wins = scores.sum(axis=0)
    strengths = elo(fit_log_strengths(wins, prior_draws))
    comparing = scores[scores.sum(axis=(1, 2)) > 0]
    if len(providers) > 1 and len(comparing) > 0:
        refits = bootstrap_elo(comparing, rounds, seed, prior_draws)
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(refits, [tail, 100 - tail], axis=0)
    else:
        low, high = strengths, strengths
    played = wins + wins.T
    standings = [
        Standing(
            provider=provider,
            strength=float(strengths[i]),
            ci_low=float(low[i]),
            ci_high=float(high[i]),
            win_rate=float(wins[i].sum() / played[i].sum()) if played[i].sum() else None,
            votes=sum(provider in outcome.providers for outcome in outcomes),
            first_places=sum(outcome.order[:1] == (provider,) for outcome in outcomes),
            comparisons=round(played[i].sum()),
        )
        for i, provider in enumerate(providers)
    ]
    # Rounded so that equal strengths, equal but for the optimiser's last digits, sort by name.
    standings.sort(key=lambda standing: (-round(standing.strength, 6), standing.provider))
    return Leaderboard(scope, group, len(outcomes), tuple(standings))


def _group_by(
    outcomes: Sequence[VoteOutcome], key: Callable[[VoteOutcome], str]
) -> dict[str, list[VoteOutcome]]:
    groups: dict[str, list[VoteOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(key(outcome), []).append(outcome)
    return dict(sorted(groups.items()))


def leaderboards(
    outcomes: Sequence[VoteOutcome],
    *,
    scopes: Sequence[str] = SCOPES,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = DEFAULT_SEED,
) -> list[Leaderboard]:
    """The leaderboard over every vote, then one per language and one per template that has
    votes (each fitted and resampled on its own votes alone), for the `scopes` asked."""
    keys: dict[str, Callable[[VoteOutcome], str]] = {
        "language": lambda outcome: outcome.language,
        "template": lambda outcome: outcome.template,
    }
    boards = []
    for scope in scopes:
        if scope == "all":
            boards.append(leaderboard(outcomes, rounds=rounds, seed=seed))
            continue
        for group, members in _group_by(outcomes, keys[scope]).items():
            boards.append(leaderboard(members, scope=scope, group=group, rounds=rounds, seed=seed))
    return boards


def leaderboard_frame(
    boards: Sequence[Leaderboard],
    models: Mapping[str, Sequence[str]] | None = None,
    cost_per_valid_draft: Mapping[str, Decimal | None] | None = None,
) -> pd.DataFrame:
    """One row per board and provider, in the boards' order, best first within each; `model`
    joins the provider's models with commas, and the cost is exact (a Decimal) or None."""
    import pandas as pd

    models = models or {}
    costs = cost_per_valid_draft or {}
    rows = [
        {
            "scope": board.scope,
            "group": board.group,
            **asdict(standing),
            "model": ", ".join(models.get(standing.provider, ())),
            "cost_per_valid_draft_usd": costs.get(standing.provider),
        }
        for board in boards
        for standing in board.standings
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def costs_per_valid_draft(store: DraftStore) -> dict[str, Decimal | None]:
    """provider -> what its drafts cost in all (valid or not, from the scorecard) per valid
    draft: the price of one usable draft; None for a provider with no valid draft."""
    return {
        row["provider"]: row["cost_usd"] / row["valid"] if row["valid"] else None
        for row in store.scorecard_rows()
    }


def current_leaderboard(
    store: DraftStore,
    *,
    scopes: Sequence[str] = SCOPES,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """The leaderboards of the store's current votes as one frame, with each provider's
    models and cost per valid draft."""
    boards = leaderboards(store.vote_outcomes(), scopes=scopes, rounds=rounds, seed=seed)
    return leaderboard_frame(boards, store.voted_models(), costs_per_valid_draft(store))


def _money(cost: Decimal | None) -> str:
    return "-" if cost is None or cost != cost else f"${cost:.6f}"


def display_frame(frame: pd.DataFrame, *, with_group: bool = False) -> pd.DataFrame:
    """A leaderboard frame as people read it: strength and interval in whole points, win rate
    in percent, cost in dollars; the board's group first when `with_group`."""
    import pandas as pd

    shown = pd.DataFrame(
        {
            "provider": frame["provider"],
            "model": frame["model"],
            "strength": frame["strength"].map(lambda value: f"{value:.0f}"),
            "95% CI": [
                f"{low:.0f}-{high:.0f}"
                for low, high in zip(frame["ci_low"], frame["ci_high"], strict=True)
            ],
            "win rate": frame["win_rate"].map(
                lambda rate: "-" if rate is None or rate != rate else f"{rate:.1%}"
            ),
            "votes": frame["votes"],
            "cost per valid draft": frame["cost_per_valid_draft_usd"].map(_money),
        }
    )
    if with_group:
        shown.insert(0, frame["scope"].iloc[0] if len(frame) else "group", frame["group"])
    return shown.reset_index(drop=True)
