"""The manifest and stats an export writes beside itself, against a small set made by hand:
the expected hash, counts and rates are worked out here, not by the code under test."""

import hashlib
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from drafts_pipeline.defs.voting.assets import voting_ready_set
from drafts_pipeline.drafting.ballot import cast_ballots
from drafts_pipeline.export_records import write_export_records
from drafts_pipeline.store import DraftStore
from drafts_pipeline.voting_set import export_voting_set, voting_set
from drafts_pipeline_tests.factories import make_draft, make_task

CONTENT = {
    "claude": "Σ of the order lines, shipping included.",
    "openai": "Returns the total of the lines plus shipping.",
    "kimi": "Adds the lines and the shipping cost.",
}
LEAKING = "As ChatGPT, I would say: returns the total."
SCHEMA_FAILED = {
    "complete": {"ok": True, "reason": ""},
    "schema": {"ok": False, "reason": "not JSON: Expecting value at character 0"},
    "blind": {"ok": True, "reason": ""},
}
SCHEMA_AND_PARAMETERS_FAILED = {
    "complete": {"ok": True, "reason": ""},
    "schema": {"ok": False, "reason": "summary: Field required (1 error(s))"},
    "parameters": {"ok": False, "reason": "missing shipping"},
    "blind": {"ok": True, "reason": ""},
}


def provider_failed(kind: str, reason: str) -> dict[str, Any]:
    return {"provider": {"ok": False, "reason": reason, "error_type": kind}}


def build_set(store: DraftStore) -> dict[str, dict[str, str]]:
    """Three tasks: `m.one` and `m.two` balloted into voting, `m.three` still drafting.

    | task | language, template | claude | openai | kimi |
    |---|---|---|---|---|
    | m.one | python, docstring | valid (r-1) | valid (r-1) | invalid: schema (r-1), then valid (r-2) |
    | m.two | javascript, docstring | valid (r-3, docstring-v1, claude-x-2) | valid but names ChatGPT (r-4): withheld | failed: rate_limited |
    | m.three | python, readme | failed: quota | invalid: schema, parameters | valid |

    Returns, per voting task, label -> provider (read back: the ballot draws the labels).
    """  # noqa: E501
    store.add_tasks(
        [
            make_task("m.one"),
            make_task("m.two", language="javascript", source_path="web/orders.js"),
            make_task("m.three", template="readme"),
        ]
    )
    drafts = [
        make_draft("m.one", "claude", content=CONTENT["claude"], run_id="r-1"),
        make_draft("m.one", "openai", content=CONTENT["openai"], run_id="r-1"),
        make_draft("m.one", "kimi", "invalid", content="nope", validation=SCHEMA_FAILED,
                   run_id="r-1"),
        make_draft("m.one", "kimi", content=CONTENT["kimi"], run_id="r-2"),
        make_draft("m.two", "claude", content=CONTENT["claude"], run_id="r-3",
                   template_version="docstring-v1", model="claude-x-2"),
        make_draft("m.two", "openai", content=LEAKING, run_id="r-4"),
        make_draft("m.two", "kimi", "failed", content="", run_id="r-3",
                   validation=provider_failed("rate_limited", "kimi: rate limited, 4 attempts")),
        make_draft("m.three", "claude", "failed", content="",
                   validation=provider_failed("quota", "claude: credit balance too low")),
        make_draft("m.three", "openai", "invalid", content="{}",
                   validation=SCHEMA_AND_PARAMETERS_FAILED),
        make_draft("m.three", "kimi", content=CONTENT["kimi"]),
    ]  # fmt: skip
    for draft in drafts:
        assert store.add_draft(draft) is not None
    outcomes = cast_ballots(
        store, ["m.one", "m.two"], min_drafts=2, max_attempts=3, rng=random.Random(7)
    )
    assert [o.outcome for o in outcomes] == ["voting", "voting"]
    labels: dict[str, dict[str, str]] = {}
    for task_id in ("m.one", "m.two"):
        labels[task_id] = {}
        for provider in ("claude", "openai", "kimi"):
            label = store.latest_drafts([task_id], provider)[task_id].label
            if label is not None:
                labels[task_id][label] = provider
    return labels


def expected_rows_sha256(store: DraftStore, labels: dict[str, dict[str, str]]) -> str:
    """The hash as docs/operations.md defines it, worked out from what was stored: the rows a
    voter may see, in task arrival then label order, the one naming ChatGPT left out."""
    tasks = store.tasks_by_id(list(labels))
    lines = []
    for task_id in ("m.one", "m.two"):
        task = tasks[task_id]
        since = task.updated_at.replace(tzinfo=task.updated_at.tzinfo or UTC).astimezone(UTC)
        for label, provider in sorted(labels[task_id].items()):
            content = LEAKING if (task_id, provider) == ("m.two", "openai") else CONTENT[provider]
            if content == LEAKING:
                continue
            row = {
                "task_id": task_id,
                "symbol": task.symbol,
                "language": task.language,
                "source_path": task.source_path,
                "code": task.code,
                "ballot": task.ballot,
                "label": label,
                "content": content,
                "voting_since": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            lines.append(json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    return hashlib.sha256("".join(line + "\n" for line in lines).encode("utf-8")).hexdigest()


def rate(drafts: int, valid: int, invalid: int, failed: int) -> dict[str, Any]:
    return {
        "drafts": drafts,
        "valid": valid,
        "invalid": invalid,
        "failed": failed,
        "valid_rate": round(valid / drafts, 4),
    }


EXPECTED_STATS = {
    "scope": "every draft version stored",
    "drafts": 10,
    "by_provider": {
        "claude": rate(3, 2, 0, 1),
        "kimi": rate(4, 2, 1, 1),
        "openai": rate(3, 2, 1, 0),
    },
    "by_language": {"javascript": rate(3, 2, 0, 1), "python": rate(7, 4, 2, 1)},
    "by_template": {"docstring": rate(7, 5, 1, 1), "readme": rate(3, 1, 1, 1)},
    "top_failure_reasons": [
        {"reason": "schema", "drafts": 2,
         "example": "schema: not JSON: Expecting value at character 0"},
        {"reason": "parameters", "drafts": 1, "example": "parameters: missing shipping"},
        {"reason": "provider: quota", "drafts": 1, "example": "claude: credit balance too low"},
        {"reason": "provider: rate_limited", "drafts": 1,
         "example": "kimi: rate limited, 4 attempts"},
    ],
}  # fmt: skip

SECRET_KEY = "test-manifest-secret-5521"
PROXY_PASSWORD = "pr0xy-pa55word"


@pytest.fixture
def live_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """A live configuration with a key and a proxy URL holding a password."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"https://ops:{PROXY_PASSWORD}@proxy.example:8443/v1")
    monkeypatch.setenv("DRAFTS_CLAUDE_MAX_ATTEMPTS", "6")
    monkeypatch.setenv("DRAFTS_OPENAI_MODEL", "gpt-test-model")


def test_the_manifest_and_stats_of_a_hand_made_set(
    store: DraftStore, tmp_path: Path, live_configuration: None
) -> None:
    labels = build_set(store)
    published = voting_set(store)
    output = tmp_path / "out" / "set.jsonl"
    assert export_voting_set(published.frame, "jsonl", output) == 4
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    records = write_export_records(store, published, "jsonl", output, llm_mode="live", now=now)

    assert records.manifest_path == tmp_path / "out" / "set.jsonl.manifest.json"
    assert records.stats_path == tmp_path / "out" / "set.jsonl.stats.json"
    manifest = json.loads(records.manifest_path.read_text(encoding="utf-8"))
    stats = json.loads(records.stats_path.read_text(encoding="utf-8"))
    assert manifest == records.manifest and stats == records.stats

    assert manifest["generated_at"] == "2026-11-30T12:00:00+00:00"
    assert manifest["export"]["file"] == "set.jsonl" and manifest["export"]["format"] == "jsonl"
    assert manifest["export"]["rows_sha256"] == expected_rows_sha256(store, labels)
    assert manifest["counts"] == {
        "rows": 4,
        "tasks": 2,
        "withheld": 1,
        "drafts_by_provider": {"claude": 2, "kimi": 1, "openai": 1},
    }
    assert manifest["template_versions"] == {"docstring-v1": 1, "docstring-v2": 3}
    # r-4 drafted only the withheld draft: not in the export.
    assert manifest["run_ids"] == ["r-1", "r-2", "r-3"]
    assert manifest["drafted_with"]["claude"]["models"] == ["claude-x-2", "model-of-claude"]
    assert manifest["drafted_with"]["kimi"] == {
        "models": ["model-of-kimi"],
        "settings_hashes": ["s" * 64],
    }
    configured = {p["name"]: p for p in manifest["providers"]["configured"]}
    assert manifest["providers"]["llm_mode"] == "live"
    assert configured["claude"]["base_url_host"] == "proxy.example:8443"
    assert configured["claude"]["settings"]["max_attempts"] == 6
    assert configured["openai"]["model"] == "gpt-test-model"
    assert configured["kimi"]["base_url_host"] == "api.moonshot.ai"
    written = records.manifest_path.read_text() + records.stats_path.read_text()
    assert SECRET_KEY not in written and SECRET_KEY[-8:] not in written
    assert PROXY_PASSWORD not in written

    assert stats == {"generated_at": "2026-11-30T12:00:00+00:00", **EXPECTED_STATS}
    # The export never names a provider or model; the records beside it do.
    exported = output.read_text(encoding="utf-8")
    assert "claude" not in exported and "model-of" not in exported


def test_the_hash_is_the_export_s_own_lines_read_back_and_the_same_for_parquet(
    store: DraftStore, tmp_path: Path
) -> None:
    build_set(store)
    published = voting_set(store)
    hashes = {}
    for fmt in ("jsonl", "parquet"):
        output = tmp_path / f"set.{fmt}"
        export_voting_set(published.frame, fmt, output)
        records = write_export_records(store, published, fmt, output, llm_mode="offline")
        hashes[fmt] = records.manifest["export"]["rows_sha256"]

    # The recipe of docs/operations.md, from the JSON-lines file alone.
    digest = hashlib.sha256()
    for line in (tmp_path / "set.jsonl").read_text(encoding="utf-8").splitlines():
        canonical = json.dumps(
            json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        digest.update((canonical + "\n").encode("utf-8"))
    assert hashes == {"jsonl": digest.hexdigest(), "parquet": digest.hexdigest()}
    assert len(pd.read_parquet(tmp_path / "set.parquet")) == 4


def test_an_empty_set_has_the_hash_of_nothing(store: DraftStore, tmp_path: Path) -> None:
    published = voting_set(store)
    output = tmp_path / "empty.jsonl"
    export_voting_set(published.frame, "jsonl", output)
    records = write_export_records(store, published, "jsonl", output, llm_mode="offline")
    assert records.manifest["export"]["rows_sha256"] == hashlib.sha256(b"").hexdigest()
    assert records.manifest["counts"]["rows"] == 0 and records.stats["drafts"] == 0
    assert records.stats["top_failure_reasons"] == []


def test_the_voting_ready_set_carries_the_stats_and_writes_its_records(
    store: DraftStore, data_dir: Path
) -> None:
    build_set(store)
    result = dg.materialize([voting_ready_set], resources={"store": store})
    assert result.success
    [materialization] = result.asset_materializations_for_node("voting_ready_set")
    metadata = {name: str(value.value) for name, value in materialization.metadata.items()}

    assert "| claude | 3 | 2 | 0 | 1 | 0.6667 |" in metadata["valid_rate_by_provider"]
    assert "| kimi | 4 | 2 | 1 | 1 | 0.5 |" in metadata["valid_rate_by_provider"]
    assert "| python | 7 | 4 | 2 | 1 | 0.5714 |" in metadata["valid_rate_by_language"]
    assert "| readme | 3 | 1 | 1 | 1 | 0.3333 |" in metadata["valid_rate_by_template"]
    assert "| schema | 2 | schema: not JSON" in metadata["top_failure_reasons"]
    export = data_dir / "voting_ready_set.parquet"
    manifest = json.loads((data_dir / "voting_ready_set.parquet.manifest.json").read_text())
    stats = json.loads((data_dir / "voting_ready_set.parquet.stats.json").read_text())
    assert metadata["rows_sha256"] == manifest["export"]["rows_sha256"]
    assert metadata["manifest"] == str(data_dir / "voting_ready_set.parquet.manifest.json")
    assert manifest["counts"]["rows"] == len(pd.read_parquet(export)) == 4
    assert {k: v for k, v in stats.items() if k != "generated_at"} == EXPECTED_STATS
    # Only the set itself, its manifest and its stats: no temporary file left behind.
    assert sorted(p.name for p in data_dir.iterdir() if "voting_ready_set" in p.name) == [
        "voting_ready_set.parquet",
        "voting_ready_set.parquet.manifest.json",
        "voting_ready_set.parquet.stats.json",
    ]


@pytest.mark.slow
def test_export_voting_set_writes_the_manifest_and_stats_beside_the_export(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    labels = build_set(store)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"DRAFTS_DATA_DIR": str(tmp_path / "data"), "DRAFTS_DATABASE_URL": sqlite_url,
            "DRAFTS_LLM_MODE": "offline"}  # fmt: skip
    output = tmp_path / "set.jsonl"

    result = subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", "export", "voting-set", "--format", "jsonl",
         "--output", str(output)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"4 labelled draft(s) written to {output}",
        f"manifest and stats (they name providers: not for voters) in {output}.manifest.json "
        f"and {output}.stats.json",
    ]
    assert "1 labelled draft(s) left out" in result.stderr
    manifest = json.loads(Path(f"{output}.manifest.json").read_text())
    stats = json.loads(Path(f"{output}.stats.json").read_text())
    assert manifest["export"]["rows_sha256"] == expected_rows_sha256(store, labels)
    assert [p["model"] for p in manifest["providers"]["configured"]] == [
        "offline-claude",
        "offline-openai",
        "offline-kimi",
    ]
    assert {k: v for k, v in stats.items() if k != "generated_at"} == EXPECTED_STATS
