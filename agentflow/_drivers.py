"""Run a pipeline plan: synchronously (``af.complete``) or under asyncio (``af.acomplete``).

The plan decides; a driver only performs what it yields: a litellm call, a sleep, a
scorer call, an embedding function call.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

from agentflow._caching import Embed
from agentflow._context import in_scorer
from agentflow._layout import mark_for_provider
from agentflow._litellm import litellm
from agentflow._pipeline import Call, Context, Outcome, Score, ScoreFailed, Sleep
from agentflow._routing import inflight
from agentflow._scoring import finish_score, start_score

__all__ = ["arun_plan", "run_plan"]

T = TypeVar("T")

# agentflow retries and fails over itself, so every call made is an attempt we can see;
# and it caches answers itself: a global ``litellm.cache`` an application set must not
# serve (unaccounted, untraced) or store agentflow's calls
_NO_HIDDEN_RETRIES = {"num_retries": 0, "max_retries": 0, "caching": False}


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
    kwargs["cache"] = {"no-cache": True, "no-store": True}  # litellm's own cache: off
    if ctx.operation == "embeddings":
        kwargs["input"] = ctx.params["input"]
        if call.endpoint.provider == "openai":
            kwargs["client"] = _embedding_client(call, use_async)
    elif ctx.prefix_cache:
        # providers that need explicit cache markers (Anthropic) get cache_control
        messages, kwargs = mark_for_provider(
            call.endpoint.provider, call.endpoint.model, ctx.messages, kwargs
        )
        kwargs["messages"] = messages
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
    kwargs = _kwargs(ctx, call)
    endpoint = call.endpoint.id
    inflight.begin(endpoint)  # the replica's load, for the router's load guard
    t0 = time.perf_counter()
    try:
        response = fn(**kwargs)
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    finally:
        inflight.end(endpoint)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


async def _call_async(ctx: Context, call: Call) -> Outcome:
    ll = litellm()
    fn = ll.aembedding if ctx.operation == "embeddings" else ll.acompletion
    kwargs = _kwargs(ctx, call, use_async=True)
    endpoint = call.endpoint.id
    inflight.begin(endpoint)
    t0 = time.perf_counter()
    try:
        response = await fn(**kwargs)
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    finally:
        inflight.end(endpoint)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


def _score_sync(instruction: Score) -> float | ScoreFailed | None:
    token = in_scorer.set(True)  # calls the scorer makes skip escalation and caching
    try:
        value = start_score(
            instruction.escalate,
            instruction.completion,
            use_async=False,
            messages=instruction.messages,
        )
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
    except Exception as err:
        return ScoreFailed(err)
    finally:
        in_scorer.reset(token)
    return _finish_score(value)


async def _score_async(instruction: Score) -> float | ScoreFailed | None:
    token = in_scorer.set(True)
    try:
        value = start_score(
            instruction.escalate,
            instruction.completion,
            use_async=True,
            messages=instruction.messages,
        )
        if inspect.isawaitable(value):
            value = await value
    except Exception as err:
        return ScoreFailed(err)
    finally:
        in_scorer.reset(token)
    return _finish_score(value)


def _finish_score(value: Any) -> float | ScoreFailed | None:
    try:
        return finish_score(value)
    except Exception as err:  # the scorer broke its contract: a bug, never "unconfident"
        return ScoreFailed(err, fatal=True)


async def _awaited(value: Awaitable[T]) -> T:
    return await value


def _embed_sync(instruction: Embed) -> Any:
    """The vectors, or the exception the embedder raised (the cache stage degrades)."""
    try:
        value = instruction.embedder(instruction.texts)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
    except Exception as err:
        return err
    return value


async def _embed_async(instruction: Embed) -> Any:
    try:
        value = instruction.embedder(instruction.texts)
        if inspect.isawaitable(value):
            value = await value
    except Exception as err:
        return err
    return value


def run_plan(ctx: Context, plan: Generator[Any, Any, T]) -> T:
    litellm()  # imported before the first span starts, so no span times the import
    to_send: Any = None
    while True:
        try:
            instruction = plan.send(to_send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the plan's return value
        if isinstance(instruction, Call):
            to_send = _call_sync(instruction.ctx or ctx, instruction)
        elif isinstance(instruction, Sleep):
            time.sleep(instruction.seconds)
            to_send = None
        elif isinstance(instruction, Score):
            to_send = _score_sync(instruction)
        elif isinstance(instruction, Embed):
            to_send = _embed_sync(instruction)
        else:  # pragma: no cover - the plan yields only the four above
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
            to_send = await _call_async(instruction.ctx or ctx, instruction)
        elif isinstance(instruction, Sleep):
            await asyncio.sleep(instruction.seconds)
            to_send = None
        elif isinstance(instruction, Score):
            to_send = await _score_async(instruction)
        elif isinstance(instruction, Embed):
            to_send = await _embed_async(instruction)
        else:  # pragma: no cover
            raise TypeError(f"unknown instruction {instruction!r}")
