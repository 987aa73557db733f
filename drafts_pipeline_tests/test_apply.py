"""The loop's last step on the bundled sample project: discovered, drafted offline, voted on,
accepted, and written back as a patch that `git apply` takes."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drafts_pipeline.store import DraftStore

SAMPLE_PROJECT = Path(__file__).parents[1] / "drafts_pipeline" / "sample_project"


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False,
    )  # fmt: skip


def definitions(path: Path) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Functions and methods of a file by dotted name (`Class.method`)."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found[f"{prefix}{child.name}"] = child

    visit(ast.parse(path.read_text()), "")
    return found


@pytest.mark.slow
def test_accepted_drafts_become_a_patch_git_applies(tmp_path: Path, sqlite_url: str) -> None:
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    keep = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env = {**keep, "DRAFTS_DATABASE_URL": sqlite_url, "DRAFTS_LLM_MODE": "offline",
           "DRAFTS_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    assert cli("tasks", "discover", "shop", env=env, cwd=tmp_path).returncode == 0
    drafted = cli("run", env=env, cwd=tmp_path)
    assert drafted.returncode == 0, drafted.stderr

    store = DraftStore(database_url=sqlite_url)
    in_voting = store.task_ids("voting")
    assert len(in_voting) >= 3
    tasks = store.tasks_by_id(in_voting)
    # Three voters put label B first on every task but the last, which splits: it stays open.
    split = in_voting[-1]
    votes = [
        {"vote_id": f"{voter}-{task_id}", "task_id": task_id, "voter": voter,
         "winner": ("A", "B", "tie")[number] if task_id == split else "B"}
        for task_id in in_voting
        for number, voter in enumerate(("ann", "bob", "cy"))
    ]  # fmt: skip
    votes_file = tmp_path / "votes.jsonl"
    votes_file.write_text("".join(json.dumps(vote) + "\n" for vote in votes))
    assert cli("votes", "import", str(votes_file), env=env, cwd=tmp_path).returncode == 0

    applied = cli("apply", "--root", "shop", "--output", "docs.patch", env=env, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    accepted = len(in_voting) - 1
    # The sample's JavaScript tasks are accepted too, and left out of the patch with a reason.
    scripts = [t for t in in_voting if tasks[t].language == "javascript" and t != split]
    assert scripts
    assert applied.stdout.strip() == (
        f"{accepted} accepted draft(s): {accepted - len(scripts)} docstring(s) in docs.patch, "
        f"{len(scripts)} skipped; apply it with `git apply docs.patch`"
    )
    for task_id in scripts:
        assert (
            f"skipped {task_id}: a javascript task: only Python docstrings are applied"
            in applied.stderr
        )
    check = subprocess.run(
        ["git", "apply", "--check", "docs.patch"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "apply", "docs.patch"], cwd=tmp_path, check=True)

    winners = {
        task_id: store.latest_drafts([task_id], provider)[task_id]
        for task_id in in_voting
        for provider in ("claude", "openai", "kimi")
        if store.latest_drafts([task_id], provider)[task_id].label == "B"
    }
    for task_id in in_voting:
        task = tasks[task_id]
        assert task.source_path is not None
        if task_id in scripts:
            assert (project / task.source_path).read_text() == (
                SAMPLE_PROJECT / task.source_path
            ).read_text()
            continue
        function = definitions(project / task.source_path)[task.symbol]
        if task_id == split:
            assert ast.get_docstring(function) is None
        else:
            assert ast.get_docstring(function) == winners[task_id].content.strip()
