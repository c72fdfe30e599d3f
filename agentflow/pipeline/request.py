"""The value every stage reads: one ``af.complete`` request and what it has produced.

``Request`` is built once per call (``plan.build_request``) and holds the zoo, the step
frame, the laid-out messages, the parameters, the tier and the step's policies; the
stages add what they produce to it (``attempts``; the span waiting for its score).
``Slot`` is one attempt in flight: where it went, what it reserved and what came back.
Nothing here performs I/O or imports a stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentflow._completion import Attempt
from budgets import Cost, Ledger, Reservation, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from agentflow._context import StepFrame
    from agentflow._policy import CacheControl, Escalate, RetryPolicy
    from agentflow._zoo import Endpoint, ModelZoo
    from agentflow.pipeline.effects import Outcome

__all__ = ["Request", "Reservations", "Slot"]

Reservations = list[tuple[Ledger, Reservation]]


@dataclass
class Request:
    """What one ``af.complete`` / ``af.embed`` call needs and has produced so far."""

    zoo: ModelZoo
    frame: StepFrame | None
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    tier: str
    escalate: Escalate | None
    retry: RetryPolicy
    prefix_cache: bool
    on_budget: str
    operation: str = "chat"  # "chat", "chat_stream" or "embeddings"
    attempts: list[Attempt] = field(default_factory=list)
    # ends the last attempt's span once the scorer has said how confident it is
    end_span: Callable[[float | None, BaseException | None], None] | None = None
    cache: CacheControl | None = None
    routed_by: str | None = None
    run: Any = None  # the enclosing af.run (a Run), if any
    # the scored answer just rejected is where the request settles: no tier above it is
    # left, or the budget cannot pay for the next one (set before its span ends)
    climb_ends: bool = False

    def finish_span(self, confidence: float | None, error: BaseException | None = None) -> None:
        """End the last attempt's span, now that its confidence is known."""
        end, self.end_span = self.end_span, None
        if end is not None:
            end(confidence, error)

    @property
    def step_name(self) -> str | None:
        return self.frame.policy.name if self.frame is not None else None

    def ladder(self) -> list[str]:
        """The tiers to try in order: the step's, then stronger ones when escalating."""
        names = list(self.zoo.names)
        start = names.index(self.tier)
        if self.escalate is None:
            return [self.tier]
        stop = names.index(self.escalate.up_to) if self.escalate.up_to else len(names) - 1
        ladder = names[start : stop + 1]
        if self.escalate.max_attempts is not None:
            ladder = ladder[: self.escalate.max_attempts]
        return ladder


@dataclass(slots=True)
class Slot:
    """One attempt in flight: where it went, what it reserved, its span and outcome."""

    request: Request
    tier: str
    endpoint: Endpoint
    params: dict[str, Any]
    reservations: Reservations
    span: Span
    number: int
    level: int
    outcome: Outcome

    def attempt(self, usage: Usage, cost: Cost, reported: bool, **changes: Any) -> Attempt:
        """The attempt's record, with what it used and cost."""
        changes.setdefault("ok", True)
        return Attempt(
            number=self.number,
            tier=self.tier,
            endpoint=self.endpoint.id,
            model=self.endpoint.span_model,
            usage=usage,
            cost=cost,
            latency_s=self.outcome.latency_s,
            step=self.request.step_name,
            escalation_level=self.level,
            cached_tokens_reported=reported,
            **changes,
        )
