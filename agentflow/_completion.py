"""What a model call returns: ``Completion``, with every ``Attempt`` that made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from budgets import Cost, Usage

__all__ = ["Attempt", "Completion", "Embedding"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call made to one endpoint: a retry, a failover, an escalation or a cache hit.

    Failed attempts are here too, with what they cost (usually nothing) and their error.
    """

    number: int
    tier: str
    endpoint: str
    model: str
    usage: Usage
    cost: Cost
    latency_s: float
    ok: bool
    step: str | None = None
    error: str | None = None
    status_code: int | None = None
    escalation_level: int = 0
    confidence: float | None = None
    cache_hit: bool = False
    saved_usd: Decimal = Decimal(0)
    ttft_s: float | None = None
    cached_tokens_reported: bool = True
    usage_estimated: bool = False  # the engine sent no usage: counted by agentflow


@dataclass(slots=True)
class Completion:
    """A chat completion and what it cost.

    ``usage`` and ``cost`` are those of the accepted answer's attempt; ``total_usage``
    and ``total_cost`` add every attempt (retries and escalations are paid for too).
    A cache hit has ``cache_hit=True``, zero usage and cost, and (semantic hits)
    ``cache_similarity``. A streamed answer has ``ttft_s``, the seconds from the call to
    its first chunk (a stream served from the cache: the lookup's, close to 0).
    """

    text: str
    message: dict[str, Any]
    tier: str
    model: str
    endpoint: str
    usage: Usage
    cost: Cost
    attempts: list[Attempt] = field(default_factory=list)
    cache_hit: bool = False
    confidence: float | None = None
    confident: bool | None = None
    finish_reason: str | None = None
    logprobs: list[float] | None = None
    parsed: Any = None
    raw: Any = None
    latency_s: float = 0.0
    cache_similarity: float | None = None
    usage_estimated: bool = False  # the engine sent no usage: counted by agentflow
    capped_by_budget: bool = False  # stopped at the max_tokens a budget allowed
    ttft_s: float | None = None  # streamed: seconds from the call to its first chunk

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        calls = self.message.get("tool_calls")
        return list(calls) if calls else []

    @property
    def total_usage(self) -> Usage:
        return sum((a.usage for a in self.attempts), Usage())

    @property
    def total_cost(self) -> Cost:
        return sum((a.cost for a in self.attempts), Cost())


@dataclass(slots=True)
class Embedding:
    """An embedding call's vectors, one per input, and what they cost."""

    vectors: list[list[float]]
    tier: str
    model: str
    endpoint: str
    usage: Usage
    cost: Cost
    attempts: list[Attempt] = field(default_factory=list)
    raw: Any = None
