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
from typing import TYPE_CHECKING

from budgets import Cost, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from agentflow._run import Run
    from agentflow._step import StepPolicy
    from budgets import Ledger

__all__ = ["StepFrame", "Totals", "current_run", "current_step", "in_scorer"]

current_run: ContextVar[Run | None] = ContextVar("agentflow_run", default=None)
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


class StepFrame:
    """One invocation of a decorated step: its policy, span, totals and budget ledger."""

    __slots__ = ("ledger", "parent", "policy", "run", "span", "totals")

    def __init__(
        self,
        policy: StepPolicy,
        parent: StepFrame | None,
        run: Run | None,
        span: Span,
        ledger: Ledger | None,
    ) -> None:
        self.policy = policy
        self.parent = parent
        self.run = run
        self.span = span
        self.ledger = ledger
        self.totals = Totals()

    def chain(self) -> list[StepFrame]:
        """This frame and its ancestors, innermost first."""
        frames: list[StepFrame] = []
        f: StepFrame | None = self
        while f is not None:
            frames.append(f)
            f = f.parent
        return frames
