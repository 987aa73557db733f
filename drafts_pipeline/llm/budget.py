"""Daily budgets: before each call, what today has cost so far against the caps.

A day is a UTC day. What it has cost is the call log's word, shared by every process drafting
on the store: the cost of each attempt started today, plus each attempt still unanswered
(in flight, or left by a run that died) at the estimated cost of a call of its provider, plus
the estimate of each provider batch submitted today and not yet collected (its items reach the
call log only when collected), plus the estimate of the call (or batch) about to go. A call
that would pass a cap is not sent, and its provider makes no more calls until the next UTC
midnight (`BudgetReached`).

Overshoot: the check and the row the call then writes are not one transaction, so calls that
check at the same moment all see the room that one of them would use, and a call may cost more
than its estimate. What a day spends passes a cap by at most the cost of the calls in flight
when it is reached: with estimates that are right, fewer than the in-flight cap of each process
calling the provider.
"""

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Protocol

from drafts_pipeline.errors import BudgetReached, ConfigurationError

TOTAL_BUDGET_ENV = "DRAFTS_DAILY_BUDGET_USD"


def provider_budget_env(provider: str) -> str:
    return f"DRAFTS_{provider.upper()}_DAILY_BUDGET_USD"


@dataclass(frozen=True)
class ProviderSpend:
    """One provider's calls started in a day: their cost so far, and how many are unanswered;
    and the estimated cost of its batches submitted that day and not yet collected."""

    cost_usd: Decimal
    in_flight: int
    batched_usd: Decimal = Decimal(0)


class SpendLedger(Protocol):
    """Where the day's spend is read (the store's call log)."""

    def spend_between(self, start: datetime, end: datetime) -> Mapping[str, ProviderSpend]:
        """Per provider, the calls started in [start, end)."""
        ...


def utc_day(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC day `moment` falls in: its midnight and the next."""
    start = datetime.combine(moment.date(), time(), tzinfo=moment.tzinfo)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class DailyCap:
    """At most `usd` a UTC day, for one provider or (`provider` None) all of them together;
    `variable` is the setting that made it."""

    usd: Decimal
    variable: str
    provider: str | None = None

    def describe(self) -> str:
        scope = f"{self.provider}'s" if self.provider else "all providers'"
        return f"{scope} daily budget {self.variable}=${dollars(self.usd)}"


def dollars(amount: Decimal) -> str:
    """An amount as people write it: cents always (5.00), more digits only where set (0.033)."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents}" if cents == amount else f"{amount.normalize():f}"


def daily_caps(provider: str, own_usd: Decimal | None, total_usd: Decimal | None) -> list[DailyCap]:
    """The caps that apply to `provider`'s calls."""
    caps = []
    if total_usd is not None:
        caps.append(DailyCap(total_usd, TOTAL_BUDGET_ENV))
    if own_usd is not None:
        caps.append(DailyCap(own_usd, provider_budget_env(provider), provider))
    return caps


CallCost = Callable[[Sequence[str]], Decimal | None]


class DailyBudget:
    """One provider's caps, checked before each of its calls (`admit`).

    `call_cost` prices a call from the texts it sends; `in_flight_cost` is the estimated cost
    of one call per provider, for the unanswered calls (a provider not in it counts at the
    dearest there is). Once a cap is reached the budget refuses every later call of the day
    without reading the ledger again.
    """

    def __init__(
        self,
        provider: str,
        caps: Sequence[DailyCap],
        ledger: SpendLedger,
        call_cost: CallCost,
        in_flight_cost: Mapping[str, Decimal],
    ) -> None:
        if not caps:
            raise ValueError("a daily budget needs at least one cap")
        self.provider = provider
        self.caps = tuple(caps)
        self._ledger = ledger
        self._call_cost = call_cost
        self._in_flight_cost = dict(in_flight_cost)
        self._fallback_cost = max(self._in_flight_cost.values(), default=Decimal(0))
        self._lock = threading.Lock()
        self._reached: BudgetReached | None = None

    def admit(self, texts: Sequence[str], now: datetime) -> None:
        """Return if a call sending `texts` at `now` fits under every cap; else raise
        `BudgetReached`, which holds until the next UTC midnight."""
        self.admit_cost(self.cost_of([texts]), now, "for the next call")

    def cost_of(self, calls: Sequence[Sequence[str]]) -> Decimal:
        """The estimated cost of `calls` (each the texts one call sends); a call that cannot be
        priced counts at the mean call of its provider."""
        return sum(
            (
                cost if (cost := self._call_cost(texts)) is not None
                else self._cost_of_a_call(self.provider)
                for texts in calls
            ),
            Decimal(0),
        )  # fmt: skip

    def admit_cost(self, usd: Decimal, now: datetime, what: str = "for the next call") -> None:
        """Return if spending `usd` more at `now` fits under every cap; else raise
        `BudgetReached`, which holds until the next UTC midnight. `what` names the spending
        in the refusal's reason."""
        with self._lock:
            reached = self._reached
        if reached is not None and now < reached.until:
            raise BudgetReached(reached.provider, reached.reason, reached.until)
        start, end = utc_day(now)
        spend = self._ledger.spend_between(start, end)
        for cap in self.caps:
            counted = {
                name: figures
                for name, figures in spend.items()
                if cap.provider is None or name == cap.provider
            }
            spent = sum((figures.cost_usd for figures in counted.values()), Decimal(0))
            flying = sum(
                (n.in_flight * self._cost_of_a_call(name) for name, n in counted.items()),
                Decimal(0),
            )
            batched = sum((figures.batched_usd for figures in counted.values()), Decimal(0))
            if spent + flying + batched + usd > cap.usd:
                reason = (
                    f"{cap.describe()} reached: ${spent:.4f} spent today (UTC), "
                    f"${flying:.4f} in flight, "
                    + (f"${batched:.4f} in batches not yet collected, " if batched else "")
                    + f"${usd:.4f} {what}"
                )
                refusal = BudgetReached(self.provider, reason, end)
                with self._lock:
                    self._reached = refusal
                raise refusal

    def _cost_of_a_call(self, provider: str) -> Decimal:
        return self._in_flight_cost.get(provider, self._fallback_cost)


def require_priced(provider: str, model: str, caps: Sequence[DailyCap], priced: bool) -> None:
    """A cap on a provider whose model has no price could never be kept: its calls would count
    as nothing. Say so before any call."""
    if caps and not priced:
        variables = " and ".join(cap.variable for cap in caps)
        raise ConfigurationError(
            f"{variables} set, but {provider}'s model {model!r} has no price, so its spend "
            f"cannot be counted; set DRAFTS_{provider.upper()}_INPUT_USD_PER_MTOK and "
            f"DRAFTS_{provider.upper()}_OUTPUT_USD_PER_MTOK"
        )
