"""A local embedding call as any embedding call is seen: an EMBEDDING span with its tokens
and cost, a metrics point, and an ``Attempt`` added to the current step's and run's
totals (tier ``local``, endpoint ``local/<name>``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tracing
from agentflow._completion import Attempt
from agentflow._context import current_run, current_step
from budgets import Cost, Pricing, Usage
from tracing import attributes as A

__all__ = ["LOCAL_PROVIDER", "LOCAL_TIER", "traced"]

LOCAL_TIER = "local"
LOCAL_PROVIDER = "agentflow.local"

V = TypeVar("V")


def traced(
    run: Callable[[], tuple[V, int]],
    *,
    name: str,
    pricing: Pricing | None,
    number: int,
    texts: int,
    batch_size: int,
) -> V:
    """``run()`` (which returns the vectors and the tokens read) inside its span."""
    from agentflow.pipeline.account import pricing_attributes, record_attempt

    endpoint = f"local/{name}"
    span = tracing.tracer().start_span(
        f"embeddings {name}",
        attributes={A.AGENTFLOW_TIER: LOCAL_TIER, **pricing_attributes(pricing)},
    )
    t0 = time.perf_counter()
    try:
        vectors, tokens = run()
    except BaseException as exc:
        tracing.record_error(span, exc)
        span.end()
        raise
    latency = time.perf_counter() - t0
    usage = Usage(prompt_tokens=tokens)
    cost = Cost() if pricing is None else pricing.cost(usage)
    span.set_attributes(
        tracing.embedding_attributes(
            model=name,
            provider=LOCAL_PROVIDER,
            prompt_tokens=tokens,
            cost_input=float(cost.input_usd),
            endpoint=endpoint,
            attempt=1,
            invocation_parameters={"batch_size": batch_size, "texts": texts},
        )
    )
    span.end()
    tracing.record_call(
        model=name,
        provider=LOCAL_PROVIDER,
        operation="embeddings",
        input_tokens=tokens,
        duration_s=latency,
        cost_usd=float(cost.total_usd),
    )
    frame = current_step.get()
    attempt = Attempt(
        number=number,
        tier=LOCAL_TIER,
        endpoint=endpoint,
        model=name,
        usage=usage,
        cost=cost,
        latency_s=latency,
        ok=True,
        step=None if frame is None else frame.policy.name,
    )
    record_attempt(attempt, frame, current_run.get())
    return vectors
