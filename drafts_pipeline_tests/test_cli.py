"""The `drafts-pipeline` command line, as a user runs it."""

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.runner import batch_sizes
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import LLMCall
from drafts_pipeline_tests.daemon_process import REPOSITORY
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    import os

    keep = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**keep, "DRAFTS_DATA_DIR": str(tmp_path / "data"), "DRAFTS_DATABASE_URL": database_url}


@pytest.mark.slow
def test_demo_prints_the_voting_ready_set_and_exports_it(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    first = cli("demo", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "12 new task(s)" in first.stdout
    assert "voting-ready set: 12 task(s), 36 draft(s)" in first.stdout
    assert "bookshop.orders.compute_total" in first.stdout
    assert "bookshop.inventory.Reservations.reserve" in first.stdout
    second = cli("demo", env=env, cwd=tmp_path)
    assert "0 new task(s)" in second.stdout and "0 run(s)" in second.stdout

    output = tmp_path / "set.jsonl"
    exported = cli(
        "export", "voting-set", "--format", "jsonl", "--output", str(output), env=env, cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 36 and {row["label"] for row in rows} == {"A", "B", "C"}
    assert {row["language"] for row in rows} == {"python", "javascript"}
    assert not {"provider", "model"} & set(rows[0])
    assert len(DraftStore(database_url=database_url).task_ids("voting")) == 12


MALFORMED_KEYS = {
    "empty": ("", "is not set or empty"),
    "spaces": ("   ", "holds only whitespace"),
    "trailing newline": ("sk-cli-secret-9137\n", "contains a line break"),
    "newline inside": ("sk-cli-secret\n9137", "contains a line break"),
    "non-ASCII": ("sk-cli-s\u00e9cret-9137", "contains a non-ASCII character"),
}


def live_env(env: dict[str, str], server: FakeProviderServer) -> dict[str, str]:
    """Live mode against the fake server, every key the one it expects."""
    live = {**env, "DRAFTS_LLM_MODE": "live"}
    for spec in SHIPPED_PROVIDERS:
        live[spec.key_env] = server.script(spec.name).api_key or ""
        live[spec.base_url_env] = server.base_url(spec.name)
    return live


def assert_nothing_sent(server: FakeProviderServer, store: DraftStore) -> None:
    assert [server.script(spec.name).calls for spec in SHIPPED_PROVIDERS] == [0, 0, 0]
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(LLMCall)).scalar_one() == 0
    assert store.task_ids("drafting") == ["shop.orders.compute_total"]


@pytest.mark.slow
@pytest.mark.parametrize(("key", "problem"), MALFORMED_KEYS.values(), ids=MALFORMED_KEYS)
def test_a_run_with_an_unusable_key_stops_before_any_request(
    env: dict[str, str],
    tmp_path: Path,
    database_url: str,
    fake_providers: FakeProviderServer,
    key: str,
    problem: str,
) -> None:
    store = DraftStore(database_url=database_url)
    store.upgrade()
    store.add_tasks([make_task()])

    result = cli(
        "run", env={**live_env(env, fake_providers), "ANTHROPIC_API_KEY": key}, cwd=tmp_path
    )

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: API keys: ANTHROPIC_API_KEY (claude) {problem}; "), line
    assert "OPENAI_API_KEY" not in line and "MOONSHOT_API_KEY" not in line
    assert "secret" not in result.stderr + result.stdout
    assert "9137" not in result.stderr + result.stdout
    assert_nothing_sent(fake_providers, store)


@pytest.mark.slow
def test_a_run_names_every_unusable_key_in_one_line(
    env: dict[str, str], tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> None:
    store = DraftStore(database_url=database_url)
    store.upgrade()
    store.add_tasks([make_task()])
    bad = live_env(env, fake_providers)
    del bad["ANTHROPIC_API_KEY"]
    bad |= {"OPENAI_API_KEY": "  ", "MOONSHOT_API_KEY": "sk-cli-secret-9137\n"}

    result = cli("run", env=bad, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: API keys: ANTHROPIC_API_KEY (claude) is not set or empty, "
        "OPENAI_API_KEY (openai) holds only whitespace, "
        "MOONSHOT_API_KEY (kimi) contains a line break; set each to the key alone "
        "(printable ASCII, no space or line break around it), "
        "or DRAFTS_LLM_MODE=offline to draft locally"
    ]
    assert_nothing_sent(fake_providers, store)


@pytest.mark.slow
def test_import_of_a_bad_file_reports_every_row_and_imports_nothing(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    bad = tmp_path / "tasks.jsonl"
    bad.write_text(
        '{"id": "ok.one", "symbol": "one", "language": "python", "code": "def one(): pass"}\n'
        '{"id": "a,b", "symbol": "s", "language": "python", "code": "x"}\n'
        "{not json\n"
    )
    result = cli("tasks", "import", str(bad), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "line 2:" in result.stderr and "comma" in result.stderr and "line 3:" in result.stderr
    store = DraftStore(database_url=database_url)
    assert store.task_ids("drafting") == []


@pytest.mark.slow
def test_import_applies_the_size_limits_the_environment_sets(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        '{"id": "ok.one", "symbol": "one", "language": "python", "code": "def one(): pass"}\n'
        '{"id": "ok.two", "symbol": "two", "language": "python", "code": "def two(): return 2"}\n'
    )

    smaller = cli(
        "tasks", "import", str(tasks), env={**env, "DRAFTS_MAX_CODE_CHARS": "16"}, cwd=tmp_path
    )
    bad = cli(
        "tasks", "import", str(tasks), env={**env, "DRAFTS_MAX_CODE_CHARS": "many"}, cwd=tmp_path
    )

    assert smaller.returncode == 2
    assert smaller.stderr.splitlines()[1:] == [
        "  line 2: field 'code' is 19 characters long; at most 16 (DRAFTS_MAX_CODE_CHARS)"
    ]
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: DRAFTS_MAX_CODE_CHARS='many' must be a whole number of at least 1"
    ]
    assert DraftStore(database_url=database_url).task_ids("drafting") == []


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (300, 100, [20, 80, 100, 50, 50]),
        (10, 3, [1, 3, 3, 3]),
        (5, 100, [5]),
        (21, 100, [21]),
        (1000, 100, [20, 80, *[100] * 8, 50, 50]),
        (3000, 500, [20, 80, 320, *[500] * 4, 290, 145, 145]),
    ],
)
def test_runs_are_small_at_both_ends(count: int, size: int, expected: list[int]) -> None:
    sizes = batch_sizes(count, size)
    assert sizes == expected
    assert sum(sizes) == count and max(sizes) <= size


def test_run_sizes_cover_every_task_within_the_batch_size() -> None:
    for count, size in itertools.product(range(1, 300), (1, 2, 3, 5, 10, 100, 500)):
        for ramp_up, ramp_down in itertools.product((True, False), repeat=2):
            sizes = batch_sizes(count, size, ramp_up=ramp_up, ramp_down=ramp_down)
            assert sum(sizes) == count and min(sizes) > 0 and max(sizes) <= size, sizes
    # A backlog already being drafted starts at full size; one that more tasks follow ends so.
    assert batch_sizes(1200, 500, ramp_up=False) == [500, 350, 175, 175]
    assert batch_sizes(1200, 500, ramp_down=False) == [20, 80, 320, 500, 280]


@pytest.mark.slow
def test_overlapping_batch_runs_draft_each_task_once_with_each_provider(
    env: dict[str, str], tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> None:
    """`run` over 10 tasks in batches of 3, two runs at once, live against the fake server."""
    store = DraftStore(database_url=database_url)
    store.upgrade()
    ids = [f"svc.jobs.step_{i}" for i in range(10)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    live = {**env, "DRAFTS_LLM_MODE": "live"}
    for spec in SHIPPED_PROVIDERS:
        fake_providers.script(spec.name).latency_s = 0.1
        live[spec.key_env] = fake_providers.script(spec.name).api_key or ""
        live[spec.base_url_env] = fake_providers.base_url(spec.name)

    result = cli("run", "--batch-size", "3", "--concurrent-runs", "2", env=live, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    # batch_sizes(10, 3) == [1, 3, 3, 3]: a small first run, then full ones.
    assert "4 run(s), 10 task(s), 0 failed run(s)" in result.stdout
    assert sorted(store.task_ids("voting")) == sorted(ids)
    for spec in SHIPPED_PROVIDERS:
        requests = fake_providers.script(spec.name).requests
        drafted = sorted(re.findall(r"Symbol: (\w+)", json.dumps(r.body))[0] for r in requests)
        assert drafted == sorted(task.rsplit(".", 1)[-1] for task in ids), spec.name


@pytest.mark.slow
def test_a_bad_setting_is_one_line_and_status_2(env: dict[str, str], tmp_path: Path) -> None:
    result = cli("run", env={**env, "DRAFTS_BATCH_SIZE": "abc"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: DRAFTS_BATCH_SIZE='abc' must be a whole number of at least 1"
    ]


@pytest.mark.slow
def test_with_dagster_home_the_runs_are_recorded_in_that_instance(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    """As a data engineer runs it next to the deployment: the runs, their materialisations
    and checks show in that instance. Partitions it already holds in another order (the
    sensor added them) split the batches so that no run's range spans a task of no batch."""
    import dagster as dg

    from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
    ids = [f"svc.home.step_{i}" for i in range(6)]
    store = DraftStore(database_url=database_url)
    store.upgrade()
    store.add_tasks([make_task(task_id) for task_id in ids])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, [ids[3], "svc.elsewhere", ids[1]])

    result = cli(
        "run", "--batch-size", "6", env={**env, "DAGSTER_HOME": str(home),
                                         "DRAFTS_LLM_MODE": "offline"}, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(store.task_ids("voting")) == ids
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert {run.job_name for run in runs} == {"draft_tasks", "publish_voting_set"}
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        # Order on the instance: step_3, elsewhere, step_1, then step_0, 2, 4, 5 added by the
        # command. Runs sized batch_sizes(6, 6) == [1, 3, 2] over that order, none spanning
        # `elsewhere`.
        ranges = sorted(
            (run.tags["dagster/asset_partition_range_start"],
             run.tags["dagster/asset_partition_range_end"])
            for run in runs if run.job_name == "draft_tasks"
        )  # fmt: skip
        assert ranges == [(ids[1], ids[2]), (ids[3], ids[3]), (ids[4], ids[5])]
        for name in ("pending_tasks", "claude_draft", "openai_draft", "kimi_draft"):
            key = dg.AssetKey(name)
            materialised = instance.get_materialized_partitions(key)
            assert materialised == set(ids), name
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("voting_ballot"), "labels_complete_and_unique"), limit=10
        )
        assert len(checks) == len(ranges)
