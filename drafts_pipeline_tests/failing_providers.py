"""Providers that fail, for the tests of what the graph does when a provider is down."""

from datetime import UTC, datetime

from drafts_pipeline.errors import ProviderError
from drafts_pipeline.llm.generation import CallAttempt, Generation
from drafts_pipeline.llm.resource import DraftRequest, LLMProvider, OnStart


class DownProvider(LLMProvider):
    """A provider whose every call fails for good, as after its retry policy."""

    def _generate_live(self, request: DraftRequest, on_start: OnStart | None = None) -> Generation:
        call = CallAttempt(
            provider=self.name,
            model=self.model,
            attempt=1,
            started_at=datetime.now(UTC),
            latency_ms=1,
            status_code=503,
            error_type="InternalServerError",
            error_message="service unavailable",
        )
        raise ProviderError(self.name, "503 service unavailable after 1 attempt", calls=(call,))


def down(name: str) -> DownProvider:
    return DownProvider(name=name, model=f"{name}-model", api_key="k", api_key_env_var="X")
