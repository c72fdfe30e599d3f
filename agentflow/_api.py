"""``af.complete`` / ``af.acomplete`` / ``af.embed`` / ``af.aembed``.

They take litellm's arguments (messages, tools, response_format, temperature,
max_tokens, logprobs, ...). Inside a step they follow the step's policy; outside any
step, the zoo's default tier. ``tier=`` picks a tier for this one call (``"auto"``: the
router's choice); ``cache=`` switches the response cache for this one call: ``"bypass"``
(neither read nor write), ``"refresh"`` (do not read; store the new answer), litellm's
``{"no-cache": True, "no-store": True, "ttl": 60}``, or ``"exact"``/``"semantic"`` to
cache a call outside a cached step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, overload

from agentflow._budgeting import BudgetGate
from agentflow._completion import Completion, Embedding
from agentflow._drivers import arun_plan, run_plan
from agentflow._pipeline import (
    Context,
    answer_at_tier,
    embedding_context,
    plan_completion,
    run_embedding,
)
from agentflow._stream import AsyncCompletionStream, CompletionStream, StreamState

__all__ = ["acomplete", "aembed", "complete", "embed"]


@overload
def complete(
    messages: Sequence[dict[str, Any]] | None = None,
    *,
    tier: str | None = None,
    stream: Literal[False] = False,
    **params: Any,
) -> Completion: ...
@overload
def complete(
    messages: Sequence[dict[str, Any]] | None = None,
    *,
    tier: str | None = None,
    stream: Literal[True],
    **params: Any,
) -> CompletionStream: ...
def complete(
    messages: Sequence[dict[str, Any]] | None = None,
    *,
    tier: str | None = None,
    stream: bool = False,
    **params: Any,
) -> Completion | CompletionStream:
    """A chat completion through the pipeline; ``stream=True`` gives a chunk iterator."""
    if stream:
        ctx = Context.build(messages, params, tier, operation="chat_stream")
        plan = answer_at_tier(ctx, BudgetGate(ctx), ctx.tier, 0, StreamState)
        return CompletionStream(run_plan(ctx, plan))
    ctx = Context.build(messages, params, tier)
    return run_plan(ctx, plan_completion(ctx))


@overload
async def acomplete(
    messages: Sequence[dict[str, Any]] | None = None,
    *,
    tier: str | None = None,
    stream: Literal[False] = False,
    **params: Any,
) -> Completion: ...
@overload
async def acomplete(
    messages: Sequence[dict[str, Any]] | None = None,
    *,
    tier: str | None = None,
    stream: Literal[True],
    **params: Any,
) -> AsyncCompletionStream: ...
async def acomplete(
    messages: Sequence[dict[str, Any]] | None = None,
    *,
    tier: str | None = None,
    stream: bool = False,
    **params: Any,
) -> Completion | AsyncCompletionStream:
    """The async twin of ``complete``."""
    if stream:
        ctx = Context.build(messages, params, tier, operation="chat_stream")
        plan = answer_at_tier(ctx, BudgetGate(ctx), ctx.tier, 0, StreamState)
        return AsyncCompletionStream(await arun_plan(ctx, plan))
    ctx = Context.build(messages, params, tier)
    return await arun_plan(ctx, plan_completion(ctx))


def _embed_context(input: str | Sequence[str], tier: str | None, params: dict[str, Any]) -> Context:
    texts = [input] if isinstance(input, str) else list(input)
    return embedding_context(texts, tier, params)


def embed(input: str | Sequence[str], *, tier: str | None = None, **params: Any) -> Embedding:
    """Embed text(s) through the same tiers, pricing, budgets and spans as completions."""
    ctx = _embed_context(input, tier, params)
    return run_plan(ctx, run_embedding(ctx))


async def aembed(
    input: str | Sequence[str], *, tier: str | None = None, **params: Any
) -> Embedding:
    ctx = _embed_context(input, tier, params)
    return await arun_plan(ctx, run_embedding(ctx))
