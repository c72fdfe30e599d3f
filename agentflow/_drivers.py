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


def _kwargs(ctx: Context, call: Call) -> dict[str, Any]:
    kwargs = call.endpoint.litellm_params()
    kwargs.update(call.params)
    kwargs.update(_NO_HIDDEN_RETRIES)
    if ctx.operation == "embeddings":
        kwargs["input"] = ctx.params["input"]
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
        response = await fn(**_kwargs(ctx, call))
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


def run_plan(ctx: Context, plan: Generator[Any, Any, T]) -> T:
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
