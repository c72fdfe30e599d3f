"""Run a pipeline plan: synchronously (``af.complete``) or under asyncio (``af.acomplete``).

The plan decides; a driver only performs what it yields: a litellm call, a sleep, a
scorer call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any, TypeVar

from agentflow._litellm import litellm
from agentflow._pipeline import Call, Context, Outcome, Score, Sleep
from agentflow._scoring import finish_score, is_awaitable, start_score

__all__ = ["arun_plan", "run_plan"]

T = TypeVar("T")

# agentflow retries and fails over itself, so every call made is an attempt we can see
_NO_HIDDEN_RETRIES = {"num_retries": 0, "max_retries": 0}


_clients: dict[tuple[str, bool], Any] = {}


def _embedding_client(call: Call, use_async: bool) -> Any:
    """An OpenAI client that never retries, for litellm's embedding path: it treats
    ``max_retries=0`` as unset and sets 2 on any client it is given, so those retries
    would happen where agentflow cannot see (or trace, or pay for) them."""
    e = call.endpoint
    key = (e.id, use_async)
    client = _clients.get(key)
    if client is None:
        import openai

        base = openai.AsyncOpenAI if use_async else openai.OpenAI

        class NoRetryClient(base):  # type: ignore[valid-type,misc]  # a runtime-chosen base
            @property
            def max_retries(self) -> int:
                return 0

            @max_retries.setter
            def max_retries(self, value: int) -> None:
                pass  # litellm's 2 is ignored: agentflow retries itself

        params = e.litellm_params()
        client = _clients[key] = NoRetryClient(
            base_url=params.get("api_base"),
            api_key=params.get("api_key") or "none",
            timeout=e.timeout,
        )
    return client


def _kwargs(ctx: Context, call: Call, use_async: bool = False) -> dict[str, Any]:
    kwargs = call.endpoint.litellm_params()
    kwargs.update(call.params)
    kwargs.update(_NO_HIDDEN_RETRIES)
    if ctx.operation == "embeddings":
        kwargs["input"] = ctx.params["input"]
        if call.endpoint.provider == "openai":
            kwargs["client"] = _embedding_client(call, use_async)
    else:
        kwargs["messages"] = ctx.messages
    if kwargs.get("tools"):
        # litellm would otherwise import its MCP bridge (and the `mcp` package) for any
        # call with tools; agentflow passes tools to the engine as they are
        kwargs["_skip_mcp_handler"] = True
    if ctx.operation == "chat_stream":
        kwargs["stream"] = True
        opts = dict(kwargs.get("stream_options") or {})
        opts["include_usage"] = True  # the engine's own usage settles the stream
        kwargs["stream_options"] = opts
    return kwargs


def _call_sync(ctx: Context, call: Call) -> Outcome:
    ll = litellm()
    fn = ll.embedding if ctx.operation == "embeddings" else ll.completion
    t0 = time.perf_counter()
    try:
        response = fn(**_kwargs(ctx, call))
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


async def _call_async(ctx: Context, call: Call) -> Outcome:
    ll = litellm()
    fn = ll.aembedding if ctx.operation == "embeddings" else ll.acompletion
    t0 = time.perf_counter()
    try:
        response = await fn(**_kwargs(ctx, call, use_async=True))
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


def run_plan(ctx: Context, plan: Generator[Any, Any, T]) -> T:
    litellm()  # imported before the first span starts, so no span times the import
    to_send: Any = None
    while True:
        try:
            instruction = plan.send(to_send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the plan's return value
        if isinstance(instruction, Call):
            to_send = _call_sync(ctx, instruction)
        elif isinstance(instruction, Sleep):
            time.sleep(instruction.seconds)
            to_send = None
        elif isinstance(instruction, Score):
            value = start_score(instruction.escalate, instruction.completion)
            if is_awaitable(value):
                value = asyncio.run(value)
            to_send = finish_score(value)
        else:  # pragma: no cover - the plan yields only the three above
            raise TypeError(f"unknown instruction {instruction!r}")


async def arun_plan(ctx: Context, plan: Generator[Any, Any, T]) -> T:
    litellm()  # imported before the first span starts, so no span times the import
    to_send: Any = None
    while True:
        try:
            instruction = plan.send(to_send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the plan's return value
        if isinstance(instruction, Call):
            to_send = await _call_async(ctx, instruction)
        elif isinstance(instruction, Sleep):
            await asyncio.sleep(instruction.seconds)
            to_send = None
        elif isinstance(instruction, Score):
            value = start_score(instruction.escalate, instruction.completion)
            if is_awaitable(value):
                value = await value
            to_send = finish_score(value)
        else:  # pragma: no cover
            raise TypeError(f"unknown instruction {instruction!r}")
