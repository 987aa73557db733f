"""Reports over the store: usage per day, the provider scorecard, the voting-ready rows and the
provenance and outcomes an export records beside them, the progress of a command's runs."""

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, or_, select

from drafts_pipeline.llm.budget import ProviderSpend
from drafts_pipeline.llm.estimate import CALIBRATION_SAMPLE, DraftSample
from drafts_pipeline.llm.pricing import SNAPSHOT_SUFFIX
from drafts_pipeline.llm.prompt_cache import cache_hit_rate
from drafts_pipeline.store.models import (
    UNCOLLECTED_BATCH_STATUSES,
    DocumentationTask,
    DraftVersion,
    LLMCall,
    ProviderBatch,
)
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries


@rides_out_outages
class ReportQueries(Queries):
    def draft_models(self) -> set[str]:
        with self._reading() as session:
            return set(session.scalars(select(DraftVersion.model).distinct()))

    def spend_between(self, start: datetime, end: datetime) -> dict[str, ProviderSpend]:
        """Per provider, the calls started in [start, end) (UTC): their cost so far (exact;
        unpriced calls count as nothing) and how many are unanswered; and the estimated cost
        of its batches submitted in it and not yet collected (their items' calls are recorded,
        with the batch's submission time, only when collected). What a daily budget reads
        before each call: two grouped queries on indexed columns."""
        unanswered = case((LLMCall.finished_at.is_(None), 1), else_=0)
        with self._reading() as session:
            rows = session.execute(
                select(
                    LLMCall.provider,
                    func.sum(LLMCall.cost_usd).label("cost_usd"),
                    func.sum(unanswered).label("in_flight"),
                )
                .where(LLMCall.started_at >= start, LLMCall.started_at < end)
                .group_by(LLMCall.provider)
            )
            spend = {
                row.provider: ProviderSpend(Decimal(row.cost_usd or 0), int(row.in_flight or 0))
                for row in rows
            }
            batched = session.execute(
                select(ProviderBatch.provider, func.sum(ProviderBatch.estimated_usd))
                .where(
                    ProviderBatch.status.in_(UNCOLLECTED_BATCH_STATUSES),
                    ProviderBatch.submitted_at >= start,
                    ProviderBatch.submitted_at < end,
                )
                .group_by(ProviderBatch.provider)
            )
            for provider, usd in batched:
                if usd:
                    known = spend.get(provider, ProviderSpend(Decimal(0), 0))
                    spend[provider] = replace(known, batched_usd=Decimal(usd))
            return spend

    def valid_draft_samples(
        self, provider: str, model: str, limit: int = CALIBRATION_SAMPLE
    ) -> list[DraftSample]:
        """The newest `limit` valid drafts of `provider` by `model` (or a dated snapshot of it)
        with input tokens counted: the characters of each prompt and its tokens (cached and
        cache-write ones among them), for the estimate's calibration."""
        with self._reading() as session:
            rows = session.execute(
                select(
                    DraftVersion.model,
                    func.length(DraftVersion.prompt_used),
                    DraftVersion.input_tokens,
                    DraftVersion.output_tokens,
                    DraftVersion.cached_tokens,
                    DraftVersion.cache_write_tokens,
                )
                .where(
                    DraftVersion.provider == provider,
                    DraftVersion.status == "valid",
                    DraftVersion.input_tokens.is_not(None),
                    or_(
                        DraftVersion.model == model,
                        DraftVersion.model.startswith(f"{model}-", autoescape=True),
                    ),
                )
                .order_by(DraftVersion.id.desc())
                .limit(limit)
            ).all()
        return [
            DraftSample(chars or 0, tokens or 0, output, cached or 0, written or 0)
            for found, chars, tokens, output, cached, written in rows
            if SNAPSHOT_SUFFIX.sub("", found) == model
        ]

    def usage_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Per provider and model, the calls started in [start, end) (UTC): attempts, failed
        attempts, unfinished attempts (no answer recorded: the run died in the call or just
        before it went out), tokens, the cache hit rate (input tokens read from a cache, a
        share of the input tokens; None without input) and cost (exact, a Decimal; calls
        without a cost count as zero)."""
        failed = case((LLMCall.error_type.is_not(None), 1), else_=0)
        unfinished = case((LLMCall.finished_at.is_(None), 1), else_=0)
        with self._reading() as session:
            rows = session.execute(
                select(
                    LLMCall.provider,
                    LLMCall.model,
                    func.count().label("calls"),
                    func.sum(failed).label("failures"),
                    func.sum(unfinished).label("unfinished"),
                    *(
                        func.coalesce(func.sum(column), 0).label(column.key)
                        for column in (
                            LLMCall.input_tokens,
                            LLMCall.output_tokens,
                            LLMCall.cached_tokens,
                            LLMCall.cache_write_tokens,
                            LLMCall.reasoning_tokens,
                        )
                    ),
                    func.sum(LLMCall.cost_usd).label("cost_usd"),
                )
                .where(LLMCall.started_at >= start, LLMCall.started_at < end)
                .group_by(LLMCall.provider, LLMCall.model)
                .order_by(LLMCall.provider, LLMCall.model)
            )
            return [
                {
                    **row._mapping,
                    "cache_hit_rate": cache_hit_rate(row.cached_tokens, row.input_tokens),
                    "cost_usd": row.cost_usd or Decimal(0),
                }
                for row in rows
            ]

    def scorecard_rows(self) -> list[dict[str, Any]]:
        """Per provider, over every draft version a provider answered (a draft carried into a
        later ballot is counted once, as its original): drafts by status, those whose JSON
        was read only after a repair (`validation.json.read_as`), the retries they took
        (attempts past the first; an offline draft makes none), tokens, cost (exact, a
        Decimal), and the latencies of the drafts that have one."""
        statuses = [
            func.sum(case((DraftVersion.status == status, 1), else_=0)).label(status)
            for status in ("valid", "invalid", "failed")
        ]
        read_as = DraftVersion.validation[("json", "read_as")].as_string()
        repaired = func.sum(case((read_as == "repaired", 1), else_=0)).label("repaired")
        with self._reading() as session:
            rows = session.execute(
                select(
                    DraftVersion.provider,
                    func.count().label("drafts"),
                    *statuses,
                    repaired,
                    func.sum(
                        case((DraftVersion.attempts > 1, DraftVersion.attempts - 1), else_=0)
                    ).label("retries"),
                    func.coalesce(func.sum(DraftVersion.input_tokens), 0).label("input_tokens"),
                    func.coalesce(func.sum(DraftVersion.output_tokens), 0).label("output_tokens"),
                    func.sum(DraftVersion.cost_usd).label("cost_usd"),
                )
                .where(DraftVersion.carried_from.is_(None))
                .group_by(DraftVersion.provider)
                .order_by(DraftVersion.provider)
            ).all()
            latencies: dict[str, list[int]] = {row.provider: [] for row in rows}
            for provider, latency in session.execute(
                select(DraftVersion.provider, DraftVersion.latency_ms).where(
                    DraftVersion.latency_ms.is_not(None)
                )
            ):
                if latency is not None:
                    latencies[provider].append(latency)
        return [
            {
                **row._mapping,
                "cost_usd": row.cost_usd or Decimal(0),
                "latencies_ms": latencies[row.provider],
            }
            for row in rows
        ]

    def voting_ready_rows(self) -> list[dict[str, Any]]:
        """One row per task in `voting` and label; no provider or model in it, by construction."""
        with self._reading() as session:
            rows = session.execute(
                select(
                    DocumentationTask.id.label("task_id"),
                    DocumentationTask.symbol,
                    DocumentationTask.language,
                    DocumentationTask.source_path,
                    DocumentationTask.code,
                    DocumentationTask.ballot,
                    DraftVersion.label,
                    DraftVersion.content,
                    DocumentationTask.updated_at.label("voting_since"),
                )
                .join(
                    DraftVersion,
                    (DraftVersion.task_id == DocumentationTask.id)
                    & (DraftVersion.ballot == DocumentationTask.ballot),
                )
                .where(DocumentationTask.status == "voting", DraftVersion.label.is_not(None))
                .order_by(DocumentationTask.seq, DraftVersion.label)
            )
            return [dict(row._mapping) for row in rows]

    def labelled_draft_provenance(self) -> list[dict[str, Any]]:
        """Per labelled draft of a task in `voting` (the drafts `voting_ready_rows` shows), who
        made it and how: provider, model, template version, settings hash and run id. For the
        team's records only: joined to the rows it tells a voter who wrote each draft."""
        with self._reading() as session:
            rows = session.execute(
                select(
                    DraftVersion.task_id,
                    DraftVersion.label,
                    DraftVersion.provider,
                    DraftVersion.model,
                    DraftVersion.template_version,
                    DraftVersion.settings_hash,
                    DraftVersion.run_id,
                )
                .join(
                    DocumentationTask,
                    (DraftVersion.task_id == DocumentationTask.id)
                    & (DraftVersion.ballot == DocumentationTask.ballot),
                )
                .where(DocumentationTask.status == "voting", DraftVersion.label.is_not(None))
                .order_by(DocumentationTask.seq, DraftVersion.label)
            )
            return [dict(row._mapping) for row in rows]

    def draft_outcome_counts(self) -> list[dict[str, Any]]:
        """Draft versions counted by provider, the task's language and template, and status,
        over every version a provider answered (carried drafts are their originals)."""
        groups = (
            DraftVersion.provider,
            DocumentationTask.language,
            DocumentationTask.template,
            DraftVersion.status,
        )
        with self._reading() as session:
            rows = session.execute(
                select(*groups, func.count().label("drafts"))
                .join(DocumentationTask, DraftVersion.task_id == DocumentationTask.id)
                .where(DraftVersion.carried_from.is_(None))
                .group_by(*groups)
            )
            return [dict(row._mapping) for row in rows]

    def unsuccessful_drafts(self) -> list[tuple[str, dict[str, Any]]]:
        """`(status, validation)` of every draft version that is not valid, oldest first."""
        with self._reading() as session:
            rows = session.execute(
                select(DraftVersion.status, DraftVersion.validation)
                .where(DraftVersion.status != "valid")
                .order_by(DraftVersion.id)
            )
            return [(row.status, row.validation or {}) for row in rows]

    def last_row_ids(self) -> tuple[int, int]:
        """The newest `draft_versions` id and the newest `llm_calls` id (0 for none): a mark
        from which `progress_since` counts."""
        with self._reading() as session:
            return (
                session.scalar(select(func.coalesce(func.max(DraftVersion.id), 0))) or 0,
                session.scalar(select(func.coalesce(func.max(LLMCall.id), 0))) or 0,
            )

    def progress_since(self, draft_id: int, call_id: int) -> dict[str, dict[str, Any]]:
        """Per provider, the rows added past the marks of `last_row_ids`: tasks drafted (a
        draft stored, whatever its status), of them valid, HTTP attempts, of them rate-limited
        (429), and their cost (exact, a Decimal). Two range scans on primary keys, cheap to
        repeat every second."""
        valid = case((DraftVersion.status == "valid", 1), else_=0)
        limited = case((LLMCall.status_code == 429, 1), else_=0)
        figures: dict[str, dict[str, Any]] = {}

        def of(provider: str) -> dict[str, Any]:
            return figures.setdefault(
                provider,
                {"drafted": 0, "valid": 0, "calls": 0, "rate_limited": 0, "cost_usd": Decimal(0)},
            )

        with self._reading() as session:
            for row in session.execute(
                select(
                    DraftVersion.provider,
                    func.count(DraftVersion.task_id.distinct()).label("drafted"),
                    func.sum(valid).label("valid"),
                )
                .where(DraftVersion.id > draft_id, DraftVersion.carried_from.is_(None))
                .group_by(DraftVersion.provider)
            ):
                of(row.provider).update(drafted=row.drafted, valid=row.valid or 0)
            for row in session.execute(
                select(
                    LLMCall.provider,
                    func.count().label("calls"),
                    func.sum(limited).label("rate_limited"),
                    func.sum(LLMCall.cost_usd).label("cost_usd"),
                )
                .where(LLMCall.id > call_id)
                .group_by(LLMCall.provider)
            ):
                of(row.provider).update(
                    calls=row.calls,
                    rate_limited=row.rate_limited or 0,
                    cost_usd=row.cost_usd or Decimal(0),
                )
        return figures
