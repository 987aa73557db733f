"""The provider contract shared by every LLM resource.

Every provider is a `dg.ConfigurableResource` with the same public methods:
`generate(request) -> Generation` (raises `ProviderError` once its retry policy gives up) and
`generate_many(requests)`, which runs calls concurrently under the resource's own limits.
"""

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
from pydantic import Field

from drafts_pipeline.errors import ConfigurationError, ProviderError
from drafts_pipeline.llm.generation import CallAttempt, Generation
from drafts_pipeline.llm.offline import offline_answer
from drafts_pipeline.settings import LLM_MODES


@dataclass(frozen=True)
class DraftRequest:
    """What a provider needs to draft one task."""

    task_id: str
    prompt: str
    symbol: str
    code: str


class LLMProvider(dg.ConfigurableResource):
    """Base of the provider resources; subclasses implement `_generate_live`."""

    name: str = Field(description="Provider name as stored on drafts, e.g. `claude`.")
    mode: str = Field(default="live", description="`live` calls the API, `offline` drafts locally.")
    model: str = Field(description="Model id sent to the API.")
    api_key: str | None = Field(default=None, description="API key; else `api_key_env_var`.")
    api_key_env_var: str = Field(description="Environment variable holding the API key.")
    base_url: str | None = Field(default=None, description="API base URL; None for the SDK's.")
    max_output_tokens: int = 1024
    temperature: float | None = Field(
        default=None, description="None sends no temperature (some models accept only theirs)."
    )
    timeout_s: float = 60.0
    max_attempts: int = Field(default=4, description="HTTP attempts per draft, first included.")
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    retry_after_cap_s: float = Field(
        default=60.0, description="Longest Retry-After honoured; a longer one fails the call."
    )
    max_in_flight: int = Field(default=8, description="Concurrent requests at most.")
    requests_per_minute: int = Field(default=600, description="Requests started per minute.")
    input_usd_per_mtok: float | None = None
    cached_input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None

    @property
    def offline(self) -> bool:
        return self.mode == "offline"

    @property
    def effective_model(self) -> str:
        return f"offline-{self.name}" if self.offline else self.model

    def settings_hash(self) -> str:
        """Identifies the model and generation settings; a change means a new draft."""
        settings = [self.effective_model, self.max_output_tokens, self.temperature]
        return hashlib.sha256(json.dumps(settings).encode()).hexdigest()

    def resolved_api_key(self) -> str:
        key = self.api_key or os.environ.get(self.api_key_env_var)
        if not key:
            raise ConfigurationError(
                f"{self.name}: no API key; set {self.api_key_env_var} "
                "(or DRAFTS_LLM_MODE=offline to draft locally)"
            )
        return key

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.mode not in LLM_MODES:
            raise ConfigurationError(f"{self.name}: mode {self.mode!r} is not one of {LLM_MODES}")
        if not self.offline:
            self.resolved_api_key()

    def generate(self, request: DraftRequest) -> Generation:
        if self.offline:
            return self._generate_offline(request)
        return self._generate_live(request)

    def generate_many(
        self, requests: list[DraftRequest]
    ) -> dict[str, Generation | ProviderError]:
        """task id -> generation or the error that ended it, calls running concurrently."""

        def one(request: DraftRequest) -> Generation | ProviderError:
            try:
                return self.generate(request)
            except ProviderError as error:
                return error

        if self.offline or len(requests) <= 1:
            return {r.task_id: one(r) for r in requests}
        with ThreadPoolExecutor(max_workers=max(1, self.max_in_flight)) as pool:
            return dict(zip((r.task_id for r in requests), pool.map(one, requests), strict=True))

    def _generate_live(self, request: DraftRequest) -> Generation:
        raise NotImplementedError(f"{type(self).__name__} has no live API")

    def _generate_offline(self, request: DraftRequest) -> Generation:
        started, clock = datetime.now(UTC), time.perf_counter()
        text = offline_answer(self.name, request.symbol, request.code)
        latency_ms = round((time.perf_counter() - clock) * 1000)
        tokens_in, tokens_out = len(request.prompt) // 4, len(text) // 4
        call = CallAttempt(
            provider=self.name,
            model=self.effective_model,
            attempt=1,
            started_at=started,
            latency_ms=latency_ms,
            status_code=200,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cached_tokens=0,
            reasoning_tokens=0,
            cost_usd=Decimal(0),
        )
        return Generation(
            provider=self.name,
            model=self.effective_model,
            text=text,
            finish_reason="stop",
            request_id=None,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cached_tokens=0,
            reasoning_tokens=0,
            cost_usd=Decimal(0),
            latency_ms=latency_ms,
            attempts=1,
            calls=(call,),
        )
