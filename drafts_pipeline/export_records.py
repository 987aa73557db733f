"""What an export of the voting-ready set records beside itself, for the team:
`<output>.manifest.json` (what is in the export and what produced it) and `<output>.stats.json`
(how drafting went: valid rates, the most frequent reasons a draft was not valid).

Both name providers and models, which the export itself never does: they are separate files so
that the export stays blind, and they are never to be given to voters.

The manifest's `rows_sha256` identifies the rows exported, whatever the file format: SHA-256
over the rows in export order, each written as one canonical JSON line (`canonical_line`) and a
newline, in UTF-8. A JSON-lines export reproduces it from its own lines, each read and written
again canonically (`docs/operations.md` shows how).
"""

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from drafts_pipeline.llm.offline import OfflineProvider
from drafts_pipeline.llm.provider import LiveProvider
from drafts_pipeline.llm.providers import ProviderResource, provider_resources
from drafts_pipeline.store import DraftStore
from drafts_pipeline.voting_set import VotingSet, write_whole

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_VERSION = 1
TOP_REASONS = 10
EXAMPLE_CHARS = 200
# Settings of a live provider that the manifest does not list as they are: the key never, the
# base URL as its host only (a URL may carry a user and password).
UNLISTED_SETTINGS = {"name", "model", "api_key", "base_url"}
HASH_METHOD = (
    "sha256 over the rows in export order, each a JSON object with sorted keys, no spaces, "
    "UTF-8 (not ASCII-escaped), times in UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ, then a newline"
)


@dataclass(frozen=True)
class ExportRecords:
    manifest_path: Path
    stats_path: Path
    manifest: dict[str, Any]
    stats: dict[str, Any]


def manifest_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.manifest.json")


def stats_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.stats.json")


def _canonical_value(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, datetime):
        moment = pd.Timestamp(value)
        moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def canonical_line(row: Mapping[str, Any]) -> str:
    """A row as the hash reads it: a JSON object with sorted keys and no spaces, non-ASCII
    characters as they are, missing values `null`, times in UTC to the microsecond."""
    values = {str(key): _canonical_value(value) for key, value in row.items()}
    return json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def rows_sha256(frame: "pd.DataFrame") -> str:
    digest = hashlib.sha256()
    for row in frame.to_dict(orient="records"):
        digest.update(canonical_line(row).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _host(url: str | None) -> str | None:
    """The host (and port) of a URL, never its user, password, path or query."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.hostname is None:
        return None
    return parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"


def provider_configuration(resources: Iterable[ProviderResource]) -> list[dict[str, Any]]:
    """Each provider as configured, without secrets: name, model, the base URL's host and the
    other settings; an offline provider's model; a misconfigured one's problem."""
    configured: list[dict[str, Any]] = []
    for resource in resources:
        if isinstance(resource, LiveProvider):
            settings = {
                name: getattr(resource, name)
                for name in type(resource).model_fields
                if name not in UNLISTED_SETTINGS
            }
            configured.append(
                {
                    "name": resource.name,
                    "model": resource.model,
                    "base_url_host": _host(resource.base_url),
                    "settings": settings,
                }
            )
        elif isinstance(resource, OfflineProvider):
            configured.append({"name": resource.name, "model": resource.effective_model})
        else:
            configured.append({"name": resource.name, "problem": resource.problem})
    return configured


def build_manifest(
    store: DraftStore,
    published: VotingSet,
    fmt: str,
    output: Path,
    *,
    llm_mode: str,
    generated_at: datetime,
) -> dict[str, Any]:
    """The manifest of `published` as exported to `output`: its rows' hash, counts, the
    template versions, models and run ids of the drafts in it, and the providers' current
    configuration (which may differ from the one that drafted: see `drafted_with`)."""
    frame = published.frame
    exported = set(zip(frame["task_id"], frame["label"], strict=True))
    drafts = [
        row
        for row in store.labelled_draft_provenance()
        if (row["task_id"], row["label"]) in exported
    ]
    drafted_with: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in drafts:
        drafted_with[row["provider"]]["models"].add(row["model"])
        drafted_with[row["provider"]]["settings_hashes"].add(row["settings_hash"])
    return {
        "manifest_version": MANIFEST_VERSION,
        "generated_at": generated_at.isoformat(),
        "export": {
            "file": output.name,
            "format": fmt,
            "rows_sha256": rows_sha256(frame),
            "hash_method": HASH_METHOD,
        },
        "counts": {
            "rows": len(frame),
            "tasks": int(frame["task_id"].nunique()),
            "withheld": len(published.withheld),
            "drafts_by_provider": dict(sorted(Counter(r["provider"] for r in drafts).items())),
        },
        "template_versions": dict(sorted(Counter(r["template_version"] for r in drafts).items())),
        "run_ids": sorted({r["run_id"] for r in drafts if r["run_id"]}),
        "drafted_with": {
            provider: {name: sorted(values) for name, values in sorted(found.items())}
            for provider, found in sorted(drafted_with.items())
        },
        "providers": {
            "llm_mode": llm_mode,
            "configured": provider_configuration(provider_resources(llm_mode).values()),
        },
    }


def _rates(counts: Mapping[str, Counter[str]]) -> dict[str, dict[str, Any]]:
    rates: dict[str, dict[str, Any]] = {}
    for group, by_status in sorted(counts.items()):
        drafts = sum(by_status.values())
        rates[group] = {
            "drafts": drafts,
            **{status: by_status[status] for status in ("valid", "invalid", "failed")},
            "valid_rate": round(by_status["valid"] / drafts, 4),
        }
    return rates


def failure_reasons(status: str, validation: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`(reason, example text)` for each reason a draft is not valid: each check an invalid
    draft failed (`schema`, `parameters`, `complete`, `blind`), or `provider: <error kind>` for a
    draft the provider never gave (`failed`)."""
    failed = [
        (name, str(check.get("reason", "")))
        for name, check in validation.items()
        if isinstance(check, Mapping) and not check.get("ok", False)
    ]
    if status == "failed":
        provider = validation.get("provider")
        kind = provider.get("error_type") if isinstance(provider, Mapping) else None
        text = failed[0][1] if failed else ""
        return [(f"provider: {kind or 'error'}", text)]
    return [(name, f"{name}: {reason}") for name, reason in failed] or [(status, status)]


def build_stats(store: DraftStore, *, generated_at: datetime) -> dict[str, Any]:
    """Over every draft version stored: the valid rate by provider, by the task's language and
    by its template; the most frequent reasons a draft was not valid, with the number of drafts
    and the first one's text (a draft with several failed checks counts under each)."""
    by: dict[str, dict[str, Counter[str]]] = {
        dimension: defaultdict(Counter) for dimension in ("provider", "language", "template")
    }
    total = 0
    for row in store.draft_outcome_counts():
        total += row["drafts"]
        for dimension, groups in by.items():
            groups[row[dimension]][row["status"]] += row["drafts"]
    reasons: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for status, validation in store.unsuccessful_drafts():
        for reason, text in failure_reasons(status, validation):
            reasons[reason] += 1
            examples.setdefault(reason, text[:EXAMPLE_CHARS])
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    return {
        "generated_at": generated_at.isoformat(),
        "scope": "every draft version stored",
        "drafts": total,
        "by_provider": _rates(by["provider"]),
        "by_language": _rates(by["language"]),
        "by_template": _rates(by["template"]),
        "top_failure_reasons": [
            {"reason": reason, "drafts": count, "example": examples[reason]}
            for reason, count in top
        ],
    }


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
    write_whole(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_export_records(
    store: DraftStore,
    published: VotingSet,
    fmt: str,
    output: Path,
    *,
    llm_mode: str,
    now: datetime | None = None,
) -> ExportRecords:
    """Write the manifest and the stats of the export at `output`, each whole or not at all
    (a temporary file renamed), after the export itself."""
    generated_at = now or datetime.now(UTC)
    manifest = build_manifest(
        store, published, fmt, output, llm_mode=llm_mode, generated_at=generated_at
    )
    stats = build_stats(store, generated_at=generated_at)
    _write_json(manifest_path(output), manifest)
    _write_json(stats_path(output), stats)
    return ExportRecords(manifest_path(output), stats_path(output), manifest, stats)
