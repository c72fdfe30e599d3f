"""``af.run``: one agent run, its budget ledger, its root span and its totals."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from contextvars import Token
from decimal import Decimal
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

import tracing
from agentflow._completion import Attempt
from agentflow._config import get_config
from agentflow._context import (
    RunState,
    StepFrame,
    StepSummary,
    Totals,
    current_run,
    totals_attributes,
)
from agentflow._errors import BudgetExceededError, ConfigError
from agentflow._report import render_report
from agentflow._validate import check_name, describe
from budgets import Budget, Cost, Ledger, Usage

__all__ = ["NO_STEP", "Run", "StepSummary", "run"]

NO_STEP = "(no step)"
"""The ``run.steps`` entry (and report row) of calls made outside any step."""


class Run:
    """A unit of work whose calls share a budget, a root span and a report.

    Use it as ``with af.run(...) as run:`` or ``async with``; ``run.cost``,
    ``run.usage``, ``run.steps`` and ``run.report()`` hold the totals afterwards.
    """

    def __init__(
        self,
        name: str,
        *,
        budget: Budget | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        _check_run_args(name, budget, user_id, session_id, metadata, tags)
        self.name = name
        self.budget = budget
        self.user_id = user_id
        self.session_id = session_id
        self.metadata = dict(metadata or {})
        self.tags = list(tags or [])
        if ledger is None and budget is not None:
            ledger = Ledger(budget, name=f"run {name!r} budget", error=BudgetExceededError)
        self.ledger = ledger
        # one ledger per tenant budget (a daily budget, a per-minute limit...), all paid into
        self.tenant_ledgers: tuple[Ledger, ...] = tuple(get_config().tenant_ledgers(user_id))
        self.totals = Totals()
        self.attempts: list[Attempt] = []
        self.steps: dict[str, StepSummary] = {}
        self._lock = threading.Lock()
        self._token: Token[RunState | None] | None = None
        self._otel_token: object = None
        self._span: trace.Span | None = None
        self._open_streams = 0  # streams started in this run and not settled yet
        self._span_pending = False  # the run ended while streams were open

    @property
    def tenant_ledger(self) -> Ledger | None:
        """The tenant's first budget's ledger (``tenant_ledgers`` holds them all)."""
        return self.tenant_ledgers[0] if self.tenant_ledgers else None

    # --- totals -------------------------------------------------------------------
    @property
    def usage(self) -> Usage:
        return self.totals.usage

    @property
    def cost(self) -> Cost:
        return self.totals.cost

    def _step_entered(self, name: str, kind: str) -> None:
        with self._lock:
            summary = self.steps.get(name)
            if summary is None:
                summary = self.steps[name] = StepSummary(name, kind)
            summary.invocations += 1

    def _record(self, attempt: Attempt, frame: StepFrame | None) -> None:
        """Account one attempt to the run, its step summary and every enclosing frame."""
        kwargs: dict[str, Any] = {
            "latency_s": attempt.latency_s,
            "error": not attempt.ok,
            "cache_hit": attempt.cache_hit,
            "saved_usd": attempt.saved_usd,
        }
        with self._lock:
            self.attempts.append(attempt)
            if frame is not None:
                summary = self.steps[frame.policy.name]
            else:  # a call outside any step still has its row: rows add up to the totals
                summary = self.steps.setdefault(NO_STEP, StepSummary(NO_STEP, "-"))
            summary.totals.add(attempt.usage, attempt.cost, **kwargs)
            tier = summary.tiers.get(attempt.tier)
            if tier is None:
                tier = summary.tiers[attempt.tier] = Totals()
            tier.add(attempt.usage, attempt.cost, **kwargs)
        self.totals.add(attempt.usage, attempt.cost, **kwargs)

    def _record_routing(self, attempt: Attempt, saved_usd: Decimal) -> None:
        """Add what routing saved the request ``attempt`` settled (below 0: escalations
        cost more) to the run and to its step's and tier's rows (``_record`` made them)."""
        summary = self.steps.get(attempt.step or NO_STEP)
        rows = [summary.totals, summary.tiers.get(attempt.tier)] if summary else []
        for totals in (*rows, self.totals):
            if totals is not None:
                totals.add_routing(saved_usd)

    def _stream_opened(self) -> None:
        with self._lock:
            self._open_streams += 1

    def _stream_closed(self) -> None:
        """A stream of this run settled; the last one of a run that has ended already
        ends the run's span, so its totals include what the streams were charged."""
        with self._lock:
            self._open_streams -= 1
            finish = self._span_pending and self._open_streams == 0
            if finish:
                self._span_pending = False
        if finish:
            self._end_span(None)

    def _end_span(self, exc: BaseException | None) -> None:
        span = self._span
        if span is not None:
            span.set_attributes(totals_attributes(self.totals))
            if exc is not None:
                tracing.record_error(span, exc)
            span.end()

    @property
    def trace_id(self) -> str | None:
        """The run's OpenTelemetry trace id (32 hex digits), to find it in a backend."""
        if self._span is None:
            return None
        ctx = self._span.get_span_context()
        return f"{ctx.trace_id:032x}" if ctx.is_valid else None

    def report(self) -> str:
        """A text table: spent vs. limit, then per step and tier: calls, tokens, cost."""
        return render_report(self)

    # --- context management -------------------------------------------------------
    def __enter__(self) -> Run:
        if self._token is not None:
            raise RuntimeError(f"run {self.name!r} is already active; start a new af.run()")
        self._span = tracing.tracer().start_span(
            f"run {self.name}",
            attributes=tracing.run_attributes(
                name=self.name,
                session_id=self.session_id,
                user_id=self.user_id,
                metadata=self.metadata or None,
                tags=self.tags or None,
                **budget_limits(self.budget),
            ),
        )
        self._otel_token = otel_context.attach(trace.set_span_in_context(self._span))
        self._token = current_run.set(self)
        _sample_engines(self._span, "run_start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _sample_engines(self._span, "run_end")
        with self._lock:
            # a stream still open settles after the run: its span waits for it (the
            # stream's clean-up settles it at the latest when it is garbage-collected)
            self._span_pending = self._open_streams > 0
        if not self._span_pending:
            self._end_span(exc)
        elif exc is not None and self._span is not None:
            tracing.record_error(self._span, exc)
        if self._token is not None:
            current_run.reset(self._token)
            self._token = None
        if self._otel_token is not None:
            otel_context.detach(self._otel_token)  # type: ignore[arg-type]  # attach's token
            self._otel_token = None

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _sample_engines(span: trace.Span | None, trigger: str) -> None:
    """With ``engine_metrics`` on, have the GPU-hour replicas' busy-time counters read
    (in a background thread: this never waits for the engines)."""
    cfg = get_config()
    if cfg.engine_metrics:
        from agentflow.pipeline.engine_time import sample_run

        try:
            sample_run(span, trigger, cfg.zoo)
        except Exception:  # telemetry (no thread to start, ...) never breaks a run
            logging.getLogger("agentflow").warning("engine sampling failed", exc_info=True)


def _check_run_args(
    name: Any, budget: Any, user_id: Any, session_id: Any, metadata: Any, tags: Any
) -> None:
    """Fail at ``af.run(...)``, before the run starts, on an argument of the wrong shape."""
    check_name("run name", name, optional=False, hint="e.g. af.run('research')")
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(
            f"run budget must be a budgets.Budget, got {describe(budget)}; "
            "e.g. budget=Budget(max_usd=0.02)"
        )
    check_name("run user_id", user_id, hint="pass the tenant's id as a str, or leave it out")
    check_name("run session_id", session_id)
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ConfigError(
                f"run metadata must be a dict of str keys, got {describe(metadata)}; "
                "e.g. metadata={'team': 'search'}"
            )
        for key in metadata:
            if not isinstance(key, str):
                raise ConfigError(
                    f"run metadata keys must be str, got {describe(key)}; use str keys"
                )
    if tags is not None:
        if isinstance(tags, str | bytes) or not isinstance(tags, Sequence):
            raise ConfigError(
                f"run tags must be a list of str, got {describe(tags)}; e.g. tags=['nightly']"
            )
        for tag in tags:
            if not isinstance(tag, str):
                raise ConfigError(
                    f"run tags must be a list of str, got {describe(tag)} in it; pass str tags"
                )


def budget_limits(budget: Budget | None) -> dict[str, Any]:
    """A budget's limits as ``run_attributes`` takes them (absent ones left out)."""
    if budget is None:
        return {}
    return {
        "max_usd": None if budget.max_usd is None else float(budget.max_usd),
        "max_input_tokens": budget.max_input_tokens,
        "max_output_tokens": budget.max_output_tokens,
        "max_calls": budget.max_calls,
    }


def run(
    name: str,
    *,
    budget: Budget | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
) -> Run:
    """Start a run: ``with af.run("research", budget=Budget(max_usd=0.02)) as run: ...``."""
    return Run(
        name, budget=budget, user_id=user_id, session_id=session_id, metadata=metadata, tags=tags
    )
