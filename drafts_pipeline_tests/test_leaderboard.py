"""The leaderboard's statistics, the accepted-draft rule, the store queries behind them, the
assets, the votes sensor and `drafts-pipeline leaderboard`."""

import ast
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from click.testing import CliRunner

from drafts_pipeline.cli import main
from drafts_pipeline.definitions import defs
from drafts_pipeline.defs.voting.results import accepted_drafts, provider_leaderboard, votes
from drafts_pipeline.defs.voting.sensors import votes_sensor
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.vote_results import VoteCount, VoteRows
from drafts_pipeline.store.votes import VoteInput, VoteOutcome
from drafts_pipeline.voting.acceptance import accepted_drafts as read_accepted
from drafts_pipeline.voting.acceptance import task_verdict
from drafts_pipeline.voting.leaderboard import (
    COLUMNS,
    ELO_PER_LOG_UNIT,
    bootstrap_elo,
    leaderboard,
    leaderboard_frame,
    leaderboards,
    vote_scores,
)
from drafts_pipeline_tests.factories import in_voting, make_draft, make_task

WHEN = datetime(2026, 11, 30, 9, tzinfo=UTC)


def vote(
    kind: str,
    order: tuple[str, ...] = (),
    providers: tuple[str, ...] = ("x", "y", "z"),
    *,
    task: str = "t",
    number: int = 0,
    language: str = "python",
    template: str = "docstring",
) -> VoteOutcome:
    return VoteOutcome(
        f"v{number}", task, f"voter{number}", language, template, kind, providers, order, None,
        WHEN,
    )  # fmt: skip


def winner(best: str, **fields: object) -> VoteOutcome:
    return vote("winner", (best,), **fields)  # type: ignore[arg-type]


def ranking(order: str, **fields: object) -> VoteOutcome:
    return vote("ranking", tuple(order.split(">")), **fields)  # type: ignore[arg-type]


# --- the statistics ---------------------------------------------------------------------------

TRUE_LOG_STRENGTHS = {"claude": 0.9, "openai": 0.35, "kimi": -0.25, "mistral": -1.0}


def synthetic_votes(seed: int, per_kind: int = 300) -> list[VoteOutcome]:
    """Votes drawn from the true strengths: each voter's ranking of a random three-provider
    ballot is Plackett-Luce (Gumbel noise on the log-strengths), whose pairwise marginals are
    exactly Bradley-Terry; `per_kind` winner votes, as many rankings, and some `all_bad`."""
    rng = np.random.default_rng(seed)
    providers = sorted(TRUE_LOG_STRENGTHS)
    drawn = []
    for kind, count in (("winner", per_kind), ("ranking", per_kind), ("all_bad", per_kind // 6)):
        for number in range(count):
            ballot = tuple(sorted(str(p) for p in rng.choice(providers, 3, replace=False)))
            utility = {p: TRUE_LOG_STRENGTHS[p] + rng.gumbel() for p in ballot}
            order = tuple(sorted(ballot, key=lambda p: -utility[p]))
            shown = {"winner": order[:1], "ranking": order, "all_bad": ()}[kind]
            drawn.append(vote(kind, shown, ballot, task=f"{kind}{number}", number=number))
    return drawn


def test_synthetic_votes_give_back_the_order_and_strengths_they_were_drawn_from() -> None:
    board = leaderboard(synthetic_votes(seed=7), rounds=1000, seed=1)
    mean = sum(TRUE_LOG_STRENGTHS.values()) / len(TRUE_LOG_STRENGTHS)
    true_elo = {p: 1000 + ELO_PER_LOG_UNIT * (s - mean) for p, s in TRUE_LOG_STRENGTHS.items()}
    assert [s.provider for s in board.standings] == ["claude", "openai", "kimi", "mistral"]
    for standing in board.standings:
        assert standing.ci_low < true_elo[standing.provider] < standing.ci_high, standing
        assert standing.ci_low <= standing.strength <= standing.ci_high
    assert sum(s.strength for s in board.standings) / 4 == pytest.approx(1000)


def test_the_intervals_hold_the_true_strengths_about_95_times_in_100() -> None:
    """Over thirty independent sets of votes, the share of true strengths inside their
    intervals is near the 95% asked: too-narrow intervals (or a wrong scale) fall well short."""
    mean = sum(TRUE_LOG_STRENGTHS.values()) / len(TRUE_LOG_STRENGTHS)
    true_elo = {p: 1000 + ELO_PER_LOG_UNIT * (s - mean) for p, s in TRUE_LOG_STRENGTHS.items()}
    inside = [
        standing.ci_low <= true_elo[standing.provider] <= standing.ci_high
        for seed in range(100, 130)
        for standing in leaderboard(
            synthetic_votes(seed, per_kind=100), rounds=300, seed=seed
        ).standings
    ]
    assert 0.88 <= sum(inside) / len(inside) <= 0.99


def test_three_votes_worked_by_hand() -> None:
    """Ballot x, y, z. Votes: x wins; x>y>z; x>z>y.

    Pairs: x beats y three times and z three times; y and z beat each other once each. With
    the prior's drawn game per pair: x-y 3.5 to 0.5, x-z 3.5 to 0.5, y-z 1.5 to 1.5. By symmetry
    y = z, and x's score equation (its wins equal their expectation) is 7 = 8p with
    p = e^d / (1 + e^d), so p = 7/8 and d = ln 7. On the scale: 400 * log10(7) = 338.039
    points between x and the others; mean 1000, so x = 1000 + 2/3 * 338.039 = 1225.359 and
    y = z = 1000 - 338.039 / 3 = 887.320. Win rates: x 6 of 6; y 1 of 5 (lost 3 to x, 1 of 2
    against z); z the same.
    """
    board = leaderboard([winner("x"), ranking("x>y>z", number=1), ranking("x>z>y", number=2)])
    by_provider = {s.provider: s for s in board.standings}
    x, y, z = by_provider["x"], by_provider["y"], by_provider["z"]
    assert [s.provider for s in board.standings] == ["x", "y", "z"]
    assert x.strength == pytest.approx(1225.359, abs=1e-3)
    assert y.strength == pytest.approx(887.320, abs=1e-3)
    assert z.strength == pytest.approx(887.320, abs=1e-3)
    assert (x.win_rate, y.win_rate, z.win_rate) == (1.0, 0.2, 0.2)
    assert (x.votes, x.first_places, x.comparisons) == (3, 3, 6)
    assert (y.votes, y.first_places, y.comparisons) == (3, 0, 5)
    # x never lost, yet is finite (the prior), and every resample keeps it above the others.
    assert x.ci_low > max(y.ci_high, z.ci_high)


def test_a_tie_is_half_a_win_each_way_worked_by_hand() -> None:
    """Ballot x, y. Votes: x wins; tie. Scores with the prior: x 1 + 0.5 + 0.5 = 2, y 0.5 +
    0.5 = 1, so d = ln 2: x = 1000 + 200 * log10(2) = 1060.206, y = 939.794. Win rate x 1.5 of
    2. A resample of the two votes is both x's win (a quarter of the time: 2.5 to 0.5, d =
    ln 5), one of each (half: d = ln 2) or both ties (a quarter: d = 0), so x's 2.5% and 97.5%
    percentiles are 1000 and 1000 + 200 * log10(5) = 1139.794."""
    board = leaderboard(
        [winner("x", providers=("x", "y")), vote("tie", providers=("x", "y"), number=1)],
        rounds=1000,
        seed=3,
    )
    x, y = board.standings
    assert (x.provider, y.provider) == ("x", "y")
    assert x.strength == pytest.approx(1000 + 200 * math.log10(2), abs=1e-3)
    assert y.strength == pytest.approx(1000 - 200 * math.log10(2), abs=1e-3)
    assert (x.win_rate, y.win_rate) == (0.75, 0.25)
    assert x.ci_low == pytest.approx(1000, abs=1e-3)
    assert x.ci_high == pytest.approx(1000 + 200 * math.log10(5), abs=1e-3)


def test_ties_and_all_bad_say_nothing_of_who_is_better() -> None:
    ties = leaderboard([vote("tie", number=n) for n in range(5)])
    assert {round(s.strength, 6) for s in ties.standings} == {1000.0}
    assert {s.win_rate for s in ties.standings} == {0.5}
    assert {(s.ci_low, s.ci_high) for s in ties.standings} == {(1000.0, 1000.0)}

    all_bad = leaderboard([vote("all_bad", number=n) for n in range(4)])
    assert [(s.strength, s.win_rate, s.votes, s.comparisons) for s in all_bad.standings] == [
        (1000.0, None, 4, 0)
    ] * 3

    # all_bad votes count as votes and change no strength.
    decided = [winner("x"), ranking("y>x>z", number=1)]
    with_bad = leaderboard([*decided, vote("all_bad", number=2)], seed=5)
    without = leaderboard(decided, seed=5)
    assert [s.strength for s in with_bad.standings] == [s.strength for s in without.standings]
    assert [s.votes for s in with_bad.standings] == [3, 3, 3]


def test_no_votes_and_one_provider() -> None:
    empty = leaderboard([])
    assert (empty.votes, empty.standings) == (0, ())
    assert list(leaderboard_frame([empty]).columns) == COLUMNS
    assert leaderboard_frame([empty]).empty

    [alone] = leaderboard([winner("x", providers=("x",))]).standings
    assert (alone.provider, alone.strength, alone.ci_low, alone.ci_high) == ("x", 1000, 1000, 1000)
    assert (alone.win_rate, alone.votes, alone.first_places) == (None, 1, 1)


def test_the_resampling_draws_votes_not_pairs() -> None:
    """Every vote alike: every resample of votes is the same data, so the interval is the
    point. Resampling the pairs inside them would move it."""
    same = [ranking("x>y>z", number=n) for n in range(20)]
    scores = vote_scores(same, ["x", "y", "z"])
    refits = bootstrap_elo(scores, rounds=50, seed=0)
    assert np.ptp(refits, axis=0) == pytest.approx([0, 0, 0], abs=1e-6)


def test_the_seed_and_rounds_fix_the_intervals_and_more_votes_narrow_them() -> None:
    few = synthetic_votes(seed=2, per_kind=20)
    first = leaderboard(few, rounds=200, seed=11)
    assert leaderboard(few, rounds=200, seed=11) == first
    assert leaderboard(few, rounds=200, seed=12) != first
    many = leaderboard(synthetic_votes(seed=2, per_kind=400), rounds=200, seed=11)
    widths = {s.provider: s.ci_high - s.ci_low for s in first.standings}
    assert all(s.ci_high - s.ci_low < widths[s.provider] for s in many.standings)


def test_boards_per_language_and_template_use_their_own_votes_only() -> None:
    python = [winner("x", number=n, language="python") for n in range(4)]
    go = [winner("y", number=10 + n, language="go", template="godoc") for n in range(4)]
    boards = leaderboards([*python, *go], rounds=100)
    assert [(b.scope, b.group, b.votes) for b in boards] == [
        ("all", "", 8),
        ("language", "go", 4),
        ("language", "python", 4),
        ("template", "docstring", 4),
        ("template", "godoc", 4),
    ]
    leaders = {(b.scope, b.group): b.standings[0].provider for b in boards}
    assert leaders[("language", "python")] == "x" and leaders[("language", "go")] == "y"
    assert leaders[("template", "docstring")] == "x" and leaders[("template", "godoc")] == "y"
    frame = leaderboard_frame(boards, {"x": ["mx-1", "mx-2"]}, {"x": Decimal("0.002")})
    row = frame[(frame["scope"] == "all") & (frame["provider"] == "x")].iloc[0]
    assert (row["model"], row["cost_per_valid_draft_usd"]) == ("mx-1, mx-2", Decimal("0.002"))


# --- the accepted-draft rule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("choices", "min_votes", "status", "winner_"),
    [
        (["x", "x"], 3, "needs_votes", None),
        (["x", "x", "y"], 3, "accepted", "x"),
        (["x", "x", "tie"], 3, "accepted", "x"),
        (["x", "y", "tie"], 3, "open", None),
        (["x", "x", "y", "y"], 3, "open", None),
        (["x", "x", "all_bad", "all_bad"], 3, "open", None),
        (["tie", "tie", "tie"], 3, "open", None),
        (["x>y>z", "x>z>y", "y>x>z"], 3, "accepted", "x"),
        (["x", "x", "x", "y"], 5, "needs_votes", None),
        (["x", "x", "x", "y", "z"], 5, "accepted", "x"),
    ],
)
def test_the_accepted_rule(
    choices: list[str], min_votes: int, status: str, winner_: str | None
) -> None:
    outcomes = []
    for number, choice in enumerate(choices):
        if choice in ("tie", "all_bad"):
            outcomes.append(vote(choice, number=number))
        elif ">" in choice:
            outcomes.append(ranking(choice, number=number))
        else:
            outcomes.append(winner(choice, number=number))
    verdict = task_verdict("t", outcomes, min_votes)
    assert (verdict.status, verdict.winner, verdict.votes) == (status, winner_, len(choices))


def test_a_verdict_says_why() -> None:
    assert (
        "2 vote(s), 3 needed (DRAFTS_MIN_VOTES)" in task_verdict("t", [winner("x")] * 2, 3).reason
    )
    split = task_verdict("t", [winner("x"), winner("y", number=1), vote("tie", number=2)], 3)
    assert split.reason == "no majority: x first in 1 of 3 vote(s)"
    assert split.first_places == (("x", 1), ("y", 1))
    won = task_verdict("t", [winner("x"), winner("x", number=1), winner("y", number=2)], 3)
    assert won.reason == "x first in 2 of 3 vote(s), runner-up 1"


# --- the store -------------------------------------------------------------------------------


def cast(store: DraftStore, task_id: str, labels: dict[str, str], choices: dict[str, str]) -> None:
    """Votes on `task_id` by voter -> choice, where a choice names providers (or tie/all_bad)."""
    label_of = {provider: label for label, provider in labels.items()}
    store.record_votes(
        [
            VoteInput(
                f"{task_id}-{voter}",
                task_id,
                voter,
                ">".join(label_of[p] for p in choice.split(">"))
                if choice not in ("tie", "all_bad")
                else choice,
                created_at=WHEN,
            )
            for voter, choice in choices.items()
        ]
    )


def test_vote_counts_and_rows_past_a_cursor(store: DraftStore) -> None:
    assert store.vote_counts() == [] and store.vote_rows_after(0) == VoteRows(0, 0)
    in_voting(store, "t.one")
    in_voting(store, "t.two", seed=1)
    day_two = WHEN + timedelta(days=1)
    store.record_votes(
        [
            VoteInput("v1", "t.one", "ann", "A", created_at=WHEN),
            VoteInput("v2", "t.two", "ann", "tie", created_at=WHEN),
            VoteInput("v3", "t.one", "bob", "B", created_at=WHEN),
            VoteInput("v4", "t.one", "ann", "C", created_at=day_two),
        ]
    )
    assert store.vote_counts() == [
        VoteCount(date(2026, 11, 30), "ann", 1, 1),
        VoteCount(date(2026, 11, 30), "bob", 1, 0),
        VoteCount(date(2026, 12, 1), "ann", 1, 0),
    ]
    rows = store.vote_rows_after(0)
    assert rows.added == 4
    assert store.vote_rows_after(rows.newest) == VoteRows(0, rows.newest)
    # A replacing vote is a new row.
    store.record_votes([VoteInput("v5", "t.one", "bob", "A", created_at=day_two)])
    assert store.vote_rows_after(rows.newest).added == 1


def test_winning_drafts_and_the_models_voted_on(store: DraftStore) -> None:
    labels = in_voting(store, "shop.orders.compute_total")
    in_voting(store, "t.unvoted", seed=1)
    label_of = {provider: label for label, provider in labels.items()}
    cast(store, "shop.orders.compute_total", labels, {"ann": "openai"})
    assert store.voted_models() == {
        "claude": ["model-of-claude"],
        "kimi": ["model-of-kimi"],
        "openai": ["model-of-openai"],
    }
    assert store.winning_drafts({}) == []
    [draft] = store.winning_drafts({"shop.orders.compute_total": "openai", "t.gone": "claude"})
    assert (draft.task_id, draft.label, draft.provider, draft.model) == (
        "shop.orders.compute_total",
        label_of["openai"],
        "openai",
        "model-of-openai",
    )
    assert (draft.content, draft.source_path, draft.symbol, draft.language) == (
        "Draft by openai.",
        "shop/orders.py",
        "compute_total",
        "python",
    )
    assert draft.code.startswith("def compute_total(") and draft.draft_id > 0
    # A provider whose draft is not on the ballot has nothing to accept.
    assert store.winning_drafts({"shop.orders.compute_total": "mistral"}) == []


def test_accepted_drafts_from_the_store(store: DraftStore) -> None:
    clear = in_voting(store, "t.clear")
    split = in_voting(store, "t.split", seed=1)
    few = in_voting(store, "t.few", seed=2)
    cast(store, "t.clear", clear, {"ann": "kimi", "bob": "kimi>claude>openai", "cy": "openai"})
    cast(store, "t.split", split, {"ann": "kimi", "bob": "claude", "cy": "tie", "dee": "all_bad"})
    cast(store, "t.few", few, {"ann": "claude", "bob": "claude"})
    accepted = read_accepted(store, min_votes=3)
    assert [(d.task_id, d.provider) for d in accepted] == [("t.clear", "kimi")]
    assert read_accepted(store, min_votes=2) == [
        accepted[0],
        *store.winning_drafts({"t.few": "claude"}),
    ]


# --- Dagster ---------------------------------------------------------------------------------


def voted_store(store: DraftStore) -> None:
    """Two tasks: t.a accepted for claude (3 of 3 first), t.b open (one each and a tie); a
    third task still drafting holds claude's only paid draft ($0.003 over 3 valid drafts)."""
    a = in_voting(store, "t.a", language="python")
    b = in_voting(store, "t.b", seed=1, language="go", template="godoc")
    cast(store, "t.a", a, {"ann": "claude", "bob": "claude>kimi>openai", "cy": "claude"})
    cast(store, "t.b", b, {"ann": "kimi", "bob": "openai", "cy": "tie"})
    store.add_tasks([make_task("t.c")])
    store.add_draft(make_draft("t.c", "claude", cost_usd=Decimal("0.003")))


def test_the_assets_on_a_real_store(
    store: DraftStore,
    instance: dg.DagsterInstance,
    data_dir: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAFTS_MIN_VOTES", "3")
    voted_store(store)
    result = dg.materialize(
        [votes, provider_leaderboard, accepted_drafts],
        resources={"store": store},
        instance=instance,
        run_config={"ops": {"provider_leaderboard": {"config": {"bootstrap_rounds": 200}}}},
    )
    assert result.success

    counts = result.output_for_node("votes")
    assert counts["current"].sum() == 6 and set(counts["voter"]) == {"ann", "bob", "cy"}

    board = result.output_for_node("provider_leaderboard")
    overall = board[board["scope"] == "all"]
    assert list(overall["provider"]) == ["claude", "kimi", "openai"]
    assert set(board["group"]) == {"", "python", "go", "docstring", "godoc"}
    assert list(overall["cost_per_valid_draft_usd"]) == [Decimal("0.001"), 0, 0]
    [materialisation] = result.asset_materializations_for_node("provider_leaderboard")
    metadata = materialisation.metadata
    assert isinstance(metadata["leaderboard"], dg.MarkdownMetadataValue)
    assert "| provider | model | strength | 95% CI |" in str(metadata["leaderboard"].value)
    for provider in ("claude", "kimi", "openai"):
        for key in ("strength", "ci_low", "ci_high", "win_rate"):
            assert isinstance(metadata[f"{key}_{provider}"], dg.FloatMetadataValue)
        assert metadata[f"votes_{provider}"] == dg.MetadataValue.int(6)
    assert metadata["bootstrap_rounds"] == dg.MetadataValue.int(200)

    accepted = result.output_for_node("accepted_drafts")
    assert list(zip(accepted["task_id"], accepted["provider"], strict=True)) == [("t.a", "claude")]
    assert accepted.iloc[0]["first_places"] == 3 and accepted.iloc[0]["votes"] == 3
    [decided] = result.asset_materializations_for_node("accepted_drafts")
    assert decided.metadata["accepted"] == dg.MetadataValue.int(1)
    assert decided.metadata["open"] == dg.MetadataValue.int(1)
    assert "t.b" in str(decided.metadata["open_preview"].value)


def test_the_assets_with_no_votes(
    store: DraftStore, instance: dg.DagsterInstance, data_dir: object
) -> None:
    result = dg.materialize(
        [votes, provider_leaderboard, accepted_drafts],
        resources={"store": store},
        instance=instance,
    )
    assert result.success
    assert result.output_for_node("votes").empty
    assert result.output_for_node("provider_leaderboard").empty
    assert result.output_for_node("accepted_drafts").empty


def sensor_tick(
    instance: dg.DagsterInstance, store: DraftStore, cursor: str | None
) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"store": store})
    return votes_sensor(context)


def test_the_sensor_asks_for_a_refresh_when_votes_arrive_and_not_otherwise(
    store: DraftStore, instance: dg.DagsterInstance
) -> None:
    labels = in_voting(store, "t.one")
    quiet = sensor_tick(instance, store, None)
    assert not quiet.run_requests and quiet.skip_reason is not None

    cast(store, "t.one", labels, {"ann": "claude", "bob": "tie"})
    first = sensor_tick(instance, store, None)
    assert len(first.run_requests or []) == 1
    newest = store.vote_rows_after(0).newest
    assert first.cursor == str(newest)
    assert not sensor_tick(instance, store, first.cursor).run_requests

    # ann changes her mind: the replacing vote is a new row, so the results are refreshed.
    store.record_votes([VoteInput("again", "t.one", "ann", "tie", created_at=WHEN)])
    second = sensor_tick(instance, store, first.cursor)
    assert len(second.run_requests or []) == 1
    assert second.cursor == str(newest + 1)
    assert second.run_requests[0].run_key != first.run_requests[0].run_key

    # While a refresh run waits or runs, the sensor waits too and keeps its cursor.
    instance.create_run_for_job(defs.resolve_job_def("refresh_vote_results"))
    store.record_votes([VoteInput("late", "t.one", "cy", "all_bad", created_at=WHEN)])
    waiting = sensor_tick(instance, store, second.cursor)
    assert not waiting.run_requests and waiting.cursor is None
    assert "refresh run is under way" in str(waiting.skip_reason)


def test_the_refresh_job_and_the_drafting_job_do_not_overlap() -> None:
    refresh = defs.resolve_job_def("refresh_vote_results")
    drafting = defs.resolve_job_def("draft_tasks")
    results = {"votes", "provider_leaderboard", "accepted_drafts"}
    assert {k.to_user_string() for k in refresh.asset_layer.selected_asset_keys} == results
    assert not results & {k.to_user_string() for k in drafting.asset_layer.selected_asset_keys}


# --- the command line ------------------------------------------------------------------------


def test_the_leaderboard_command(
    store: DraftStore, data_dir: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAFTS_DATABASE_URL", store.database_url)
    runner = CliRunner()
    empty = runner.invoke(main, ["leaderboard"])
    assert empty.exit_code == 0, empty.output
    assert "no votes yet" in empty.output

    voted_store(store)
    overall = runner.invoke(main, ["leaderboard", "--rounds", "100"])
    assert overall.exit_code == 0, overall.output
    header, *lines = overall.output.strip().splitlines()
    assert header.split() == [
        "provider", "model", "strength", "95%", "CI", "win", "rate", "votes", "cost", "per",
        "valid", "draft",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines] == ["claude", "kimi", "openai"]
    assert lines[0].split()[1] == "model-of-claude" and "$0.001000" in lines[0]

    by_language = runner.invoke(main, ["leaderboard", "--by", "language", "--rounds", "100"])
    assert by_language.exit_code == 0, by_language.output
    assert "language go:" in by_language.output and "language python:" in by_language.output
    bad = runner.invoke(main, ["leaderboard", "--by", "voter"])
    assert bad.exit_code == 2


# --- layering --------------------------------------------------------------------------------


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_store_never_imports_the_voting_package_nor_the_statistics_dagster() -> None:
    package = Path(__file__).resolve().parent.parent / "drafts_pipeline"
    store_imports = {
        path.name: sorted(
            m for m in imported_modules(path) if m.startswith("drafts_pipeline.voting")
        )
        for path in (package / "store").glob("*.py")
    }
    assert {name: found for name, found in store_imports.items() if found} == {}
    for plain in ("leaderboard.py", "acceptance.py"):
        assert not {m for m in imported_modules(package / "voting" / plain) if "dagster" in m}
