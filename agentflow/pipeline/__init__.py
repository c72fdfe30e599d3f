"""The call pipeline behind ``af.complete``: one module per stage and the plan that
orders them.

    request   the value every stage reads (the request and what it has produced)
    effects   what the plan asks a driver to do (call, sleep, score, embed, blocking I/O)
    route     stage 1: the tier (a router for tier="auto") and the replica order
    budget    stage 2: cap max_tokens, reserve the worst case, settle the actual cost
    cache     stage 3: exact and semantic response caches
    layout    stage 4: stable prefix first; provider cache markers; trimming
    call      stage 5: request shaping, the transport, error classes, tenacity backoff
    openai_http  the fast path: agentflow's own HTTP client for OpenAI-compatible engines
    openai_wire  its request body, JSON replies and engine errors
    score     stage 6: run the step's scorer
    account   stage 7: usage normalised, priced; spans, metrics, totals
    plan      the order of the stages (the only module that imports them together)
    drivers   the sync and async drivers over one table of effects
    stream    chunk iterators that settle when the stream ends

Stages import only ``request`` and ``effects`` (and agentflow's values below them),
never the plan or each other; a test checks that there is no import cycle.
"""

from agentflow.pipeline.drivers import EFFECTS, arun_plan, run_plan
from agentflow.pipeline.plan import (
    abuild_request,
    build_embedding_request,
    build_request,
    plan_completion,
    plan_embedding,
    plan_stream,
)
from agentflow.pipeline.request import Request, Slot

__all__ = [
    "EFFECTS",
    "Request",
    "Slot",
    "abuild_request",
    "arun_plan",
    "build_embedding_request",
    "build_request",
    "plan_completion",
    "plan_embedding",
    "plan_stream",
    "run_plan",
]
