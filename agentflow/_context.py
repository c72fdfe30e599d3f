"""Run and step state on contextvars.

Threads and asyncio tasks each see their own run and step: a task copies the context
it was created in, a new thread starts empty. Nothing travels through the user's
function arguments.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import tracing
from budgets import Cost, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from agentflow._completion import Attempt
    from agentflow._policy import StepPolicy
    from budgets import Budget, Ledger

__all__ = [
    "RunState",
    "StepFrame",
    "StepSummary",
    "Totals",
    "current_run",
    "current_step",
    "in_scorer",
    "totals_attributes",
]


class RunState(Protocol):
    """What steps, the pipeline and the report read of an ``af.run`` (``agentflow._run.Run``
    is the one implementation; the protocol keeps this module below it)."""

    name: str
    budget: Budget | None
    user_id: str | None
    session_id: str | None
    ledger: Ledger | None
    tenant_ledgers: tuple[Ledger, ...]

    @property
    def tenant_ledger(self) -> Ledger | None: ...

    totals: Totals
    steps: dict[str, StepSummary]

    def _step_entered(self, name: str, kind: str) -> None: ...

    def _record(self, attempt: Attempt, frame: StepFrame | None) -> None: ...

    def _stream_opened(self) -> None: ...

    def _stream_closed(self) -> None: ...


current_run: ContextVar[RunState | None] = ContextVar("agentflow_run", default=None)
current_step: ContextVar[StepFrame | None] = ContextVar("agentflow_step", default=None)
# set while a scorer runs: calls it makes (a judge, extra samples) skip the step's
# escalation, cache and auto-routing, so scoring never recurses; they are still paid
in_scorer: ContextVar[bool] = ContextVar("agentflow_in_scorer", default=False)


@dataclass
class Totals:
    """Calls, tokens and cost summed over some calls. Add with ``add``; thread-safe."""

    calls: int = 0
    errors: int = 0
    cache_hits: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: Cost = field(default_factory=Cost)
    saved_usd: Decimal = Decimal(0)
    latency_s: float = 0.0
    # vs always the strongest tier, escalations included (below 0: they cost more)
    routing_saved_usd: Decimal = Decimal(0)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self,
        usage: Usage,
        cost: Cost,
        *,
        latency_s: float = 0.0,
        error: bool = False,
        cache_hit: bool = False,
        saved_usd: Decimal = Decimal(0),
    ) -> None:
        with self._lock:
            self.calls += 1
            self.errors += int(error)
            self.cache_hits += int(cache_hit)
            self.usage = self.usage + usage
            self.cost = self.cost + cost
            self.saved_usd += saved_usd
            self.latency_s += latency_s

    def add_routing(self, saved_usd: Decimal) -> None:
        """Add what routing saved a request (``agentflow.route.saved_usd``)."""
        with self._lock:
            self.routing_saved_usd += saved_usd


class StepFrame:
    """One invocation of a decorated step: its policy, span, totals and budget ledger."""

    __slots__ = ("_totals", "ledger", "parent", "policy", "run", "span")

    def __init__(
        self,
        policy: StepPolicy,
        parent: StepFrame | None,
        run: RunState | None,
        span: Span,
        ledger: Ledger | None,
    ) -> None:
        self.policy = policy
        self.parent = parent
        self.run = run
        self.span = span
        self.ledger = ledger
        self._totals: Totals | None = None  # made on the first call: most steps make none

    @property
    def totals(self) -> Totals:
        """The calls, tokens and cost of this invocation so far."""
        totals = self._totals
        if totals is None:
            totals = self._totals = Totals()
        return totals

    @property
    def called(self) -> bool:
        """Whether any call has been accounted to this invocation."""
        return self._totals is not None and self._totals.calls > 0

    def chain(self) -> list[StepFrame]:
        """This frame and its ancestors, innermost first."""
        frames: list[StepFrame] = []
        f: StepFrame | None = self
        while f is not None:
            frames.append(f)
            f = f.parent
        return frames


@dataclass
class StepSummary:
    """Per-step totals over a run (a step called three times sums its three calls)."""

    name: str
    kind: str
    invocations: int = 0
    totals: Totals = field(default_factory=Totals)
    tiers: dict[str, Totals] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return self.totals.calls

    @property
    def usage(self) -> Usage:
        return self.totals.usage

    @property
    def cost(self) -> Cost:
        return self.totals.cost


def totals_attributes(totals: Totals) -> dict[str, Any]:
    """The roll-up attributes of a run or step span (``agentflow.cost.*`` and tokens)."""
    u, c = totals.usage, totals.cost
    return tracing.rollup_attributes(
        prompt_tokens=u.prompt_tokens,
        cached_prompt_tokens=u.cached_prompt_tokens,
        completion_tokens=u.completion_tokens,
        cost_input=float(c.input_usd),
        cost_cached_input=float(c.cached_input_usd),
        cost_output=float(c.output_usd),
        calls=totals.calls,
        cache_write_prompt_tokens=u.cache_write_tokens,
        cost_cache_write=float(c.cache_write_usd),
    )
