"""Run a plan: synchronously (``af.complete``) or under asyncio (``af.acomplete``).

The plan decides; a driver only performs the effects it yields, each through the one
table below: the same effect has a sync and an async way to be done. What a handler
returns is sent back into the plan; what it raises is thrown into the plan (so a
cancelled task or a KeyboardInterrupt reaches the plan's own clean-up). Under asyncio
nothing blocks the loop: blocking I/O goes to its async twin or a worker thread.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from agentflow._errors import CallError
from agentflow.pipeline import call, score
from agentflow.pipeline.effects import Call, Effect, Embed, Io, Outcome, Score, Sleep
from agentflow.pipeline.plan import build_embedding_request, plan_embedding
from agentflow.pipeline.route import inflight

__all__ = ["EFFECTS", "arun_plan", "run_plan"]

T = TypeVar("T")


# --- Call: the replica's load counts the request while it is in flight ----------------
def _call(effect: Call) -> Outcome:
    inflight.begin(effect.endpoint.id)  # the replica's load, for the router's load guard
    try:
        return call.send(effect)
    finally:
        inflight.end(effect.endpoint.id)


async def _acall(effect: Call) -> Outcome:
    inflight.begin(effect.endpoint.id)
    try:
        return await call.asend(effect)
    finally:
        inflight.end(effect.endpoint.id)


# --- Sleep ------------------------------------------------------------------------------
def _sleep(effect: Sleep) -> None:
    time.sleep(effect.seconds)


async def _asleep(effect: Sleep) -> None:
    await asyncio.sleep(effect.seconds)


# --- Embed: a zoo tier (a paid, traced embedding call) or a function ----------------------
def _embed(effect: Embed) -> Any:
    """The vectors, or the exception the embedder raised (the cache stage degrades)."""
    if isinstance(effect.embedder, str):
        request = build_embedding_request(list(effect.texts), effect.embedder, {})
        try:
            return run_plan(plan_embedding(request)).vectors
        except CallError as err:
            return err
    try:
        value = effect.embedder(effect.texts)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
    except Exception as err:
        return err
    return value


async def _aembed(effect: Embed) -> Any:
    if isinstance(effect.embedder, str):
        request = build_embedding_request(list(effect.texts), effect.embedder, {})
        try:
            return (await arun_plan(plan_embedding(request))).vectors
        except CallError as err:
            return err
    try:
        aembed = getattr(effect.embedder, "aembed", None)  # af.LocalEmbedder: off the loop
        value = aembed(effect.texts) if callable(aembed) else effect.embedder(effect.texts)
        if inspect.isawaitable(value):
            value = await value
    except Exception as err:
        return err
    return value


async def _awaited(value: Awaitable[T]) -> T:
    return await value


# --- Io: blocking I/O -------------------------------------------------------------------
def _io(effect: Io) -> Any:
    return effect.run()


async def _aio(effect: Io) -> Any:
    if effect.arun is not None:
        return await effect.arun()
    if not effect.blocking:
        return effect.run()
    return await asyncio.to_thread(effect.run)


EFFECTS: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Awaitable[Any]]]] = {
    Call: (_call, _acall),
    Sleep: (_sleep, _asleep),
    Score: (score.evaluate, score.aevaluate),
    Embed: (_embed, _aembed),
    Io: (_io, _aio),
}
"""Each effect type: how the sync driver performs it, and how the async driver does."""


def run_plan(plan: Generator[Effect, Any, T]) -> T:
    """Run ``plan`` to its end, performing its effects synchronously."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the plan's return value
        value, error = None, None
        try:
            value = EFFECTS[type(effect)][0](effect)
        except BaseException as exc:  # the plan cleans up (releases holds) and decides
            error = exc


async def arun_plan(plan: Generator[Effect, Any, T]) -> T:
    """Run ``plan`` to its end under asyncio; nothing it does blocks the event loop."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            value = await EFFECTS[type(effect)][1](effect)
        except BaseException as exc:
            error = exc
