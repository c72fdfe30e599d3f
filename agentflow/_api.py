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

from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from agentflow._completion import Completion, Embedding
from agentflow._errors import ConfigError
from agentflow.pipeline import (
    abuild_request,
    arun_plan,
    build_embedding_request,
    build_request,
    plan_completion,
    plan_embedding,
    plan_stream,
    run_plan,
)
from agentflow.pipeline.stream import AsyncCompletionStream, CompletionStream, stream_state

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
    if _stream_flag(stream):
        request = build_request(messages, params, tier, operation="chat_stream")
        return CompletionStream(stream_state(run_plan(plan_stream(request))))
    return run_plan(plan_completion(build_request(messages, params, tier)))


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
    if _stream_flag(stream):
        request = await abuild_request(messages, params, tier, operation="chat_stream")
        return AsyncCompletionStream(stream_state(await arun_plan(plan_stream(request))))
    return await arun_plan(plan_completion(await abuild_request(messages, params, tier)))


def _texts(input: str | Sequence[str]) -> list[str]:
    if isinstance(input, str):
        return [input]
    if isinstance(input, Mapping) or not isinstance(input, Sequence):
        raise ConfigError(
            "af.embed takes a str or a non-empty list of str, got "
            f"{type(input).__name__} {input!r:.80}; pass the text(s) to embed"
        )
    return list(input)


def _stream_flag(stream: object) -> bool:
    if not isinstance(stream, bool):
        raise ConfigError(
            f"stream must be True or False, got {type(stream).__name__} {stream!r:.40}; "
            "pass stream=True for a chunk iterator, or leave it out"
        )
    return stream


def embed(input: str | Sequence[str], *, tier: str | None = None, **params: Any) -> Embedding:
    """Embed text(s) through the same tiers, pricing, budgets and spans as completions."""
    return run_plan(plan_embedding(build_embedding_request(_texts(input), tier, params)))


async def aembed(
    input: str | Sequence[str], *, tier: str | None = None, **params: Any
) -> Embedding:
    return await arun_plan(plan_embedding(build_embedding_request(_texts(input), tier, params)))
