"""``af.complete(stream=True)``: chunks as they come, settled when the stream ends.

One face (``CompletionStream`` / ``AsyncCompletionStream``) over two kinds of stream:

- **live**: the engine's chunks. Usage comes from the engine's final usage chunk
  (``stream_options.include_usage``). A stream that fails midway or is closed early
  still settles: the prompt as counted and the completion tokens received so far. One
  that ends normally is stored in the step's response cache; a partial one never is.
  The replica counts it as in flight (the router's load guard) until it ends.
- **replay**: an answer that is already settled, served from the response cache or held
  back until the step's scorer accepted it (``Escalate(stream="buffer")``), replayed
  as chunks shaped like the engine's (word by word, then the finish reason, then the
  usage).

A stream dropped without being closed (garbage-collected) closes its HTTP response, so
the engine stops generating, settles what was received and ends its span with an error.
Under asyncio the closing is a task on the stream's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from agentflow._completion import Completion
from agentflow._errors import CallError
from agentflow._response import build_completion
from agentflow.pipeline.account import (
    end_attempt_span,
    normalise_usage,
    price,
    record_attempt,
    record_failure,
    record_routing,
)
from agentflow.pipeline.budget import BudgetGate, counter_for
from agentflow.pipeline.cache import CacheStage
from agentflow.pipeline.openai_wire import JsonObject
from agentflow.pipeline.request import Slot
from agentflow.pipeline.route import inflight
from budgets import Usage

__all__ = [
    "AsyncCompletionStream",
    "CompletionStream",
    "ReplayState",
    "StreamAbandoned",
    "StreamStart",
    "StreamState",
    "replay_chunks",
    "stream_state",
]

log = logging.getLogger("agentflow.stream")

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
_closing: set[asyncio.Task[None]] = set()  # abandoned async streams being closed


class StreamAbandoned(Exception):  # recorded on the attempt, never raised
    """A stream garbage-collected before it ended, without ``close()`` / ``aclose()``."""

    def __init__(self) -> None:
        super().__init__(
            "the stream was abandoned (garbage-collected before its end without close() "
            "or aclose()); its response was closed and what was received was paid for: "
            "close a stream you stop reading, or use it in a with block"
        )


@dataclass(slots=True)
class StreamStart:
    """What ``plan_stream`` gives: a live attempt (its slot, the gate that settles it,
    the cache stage that stores its answer) or a settled answer to replay."""

    slot: Slot | None = None
    gate: BudgetGate | None = None
    cache: CacheStage | None = None
    replay: Completion | None = None


def _delta(chunk: Any) -> tuple[str, Any, str | None]:
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return "", None, None
    choice = choices[0]
    delta = getattr(choice, "delta", None)
    text = getattr(delta, "content", None) or ""
    tool_calls = getattr(delta, "tool_calls", None)
    return text, tool_calls, getattr(choice, "finish_reason", None)


# --- replays ------------------------------------------------------------------------------
def _pieces(text: str) -> list[str]:
    """Words with their leading whitespace, as an engine streams them."""
    return re.findall(r"\s*\S+|\s+$", text)


def replay_chunks(completion: Completion) -> list[Any]:
    """``completion`` as the chunks an engine would have streamed: the role, the text
    word by word, each tool call, the finish reason, then the usage (zero for a cache
    hit). Each reads by attribute (``chunk.choices[0].delta.content``) and has
    ``model_dump()``, like the engine's chunks on either call path."""
    base = {
        "id": f"chatcmpl-agentflow-{uuid.uuid4().hex[:16]}",
        "created": int(time.time()),
        "model": completion.model,
        "object": "chat.completion.chunk",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in _pieces(completion.text)]
    for index, call in enumerate(completion.tool_calls):
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        delta = {
            "index": index,
            "id": call.get("id"),
            "type": "function",
            "function": {"name": fn.get("name"), "arguments": arguments},
        }
        chunks.append(chunk({"tool_calls": [delta]}))
    finish = completion.finish_reason
    if finish not in _FINISH_REASONS:
        finish = "tool_calls" if completion.tool_calls else "stop"
    chunks.append(chunk({}, finish))
    u = completion.usage
    details = {"cached_tokens": u.cached_prompt_tokens}
    if u.cache_write_tokens:  # litellm's (and OpenAI's) name for cache-write tokens
        details["cache_write_tokens"] = u.cache_write_tokens
    usage = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": details,
    }
    chunks.append({**base, "choices": [], "usage": usage})
    # JSON objects that read as attributes, as the fast call path's chunks do
    return json.loads(json.dumps(chunks), object_hook=JsonObject)  # type: ignore[no-any-return]


class ReplayState:
    """A stream of an answer already accounted for: its chunks are replayed."""

    def __init__(self, answer: Completion) -> None:
        self.answer = answer
        self.completion: Completion | None = None  # set at the end, like a live stream
        self.parts: list[str] = []
        self.settled = False

    def chunks(self) -> Iterator[Any]:
        return iter(replay_chunks(self.answer))

    async def achunks(self) -> AsyncIterator[Any]:
        for chunk in replay_chunks(self.answer):
            yield chunk

    def on_chunk(self, chunk: Any) -> None:
        text, _, _ = _delta(chunk)
        if text:
            self.parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def finish(self, error: BaseException | None = None, *, complete: bool = False) -> Completion:
        self.settled = True
        self.completion = self.answer
        return self.answer

    async def afinish(
        self, error: BaseException | None = None, *, complete: bool = False
    ) -> Completion:
        return self.finish(error, complete=complete)

    def close_source(self) -> None:
        """Nothing to close: no connection is open."""

    async def aclose_source(self) -> None:
        """Nothing to close: no connection is open."""


# --- live streams -------------------------------------------------------------------------
class StreamState:
    """Accumulates one streamed attempt and settles it exactly once."""

    def __init__(self, slot: Slot, gate: BudgetGate, cache: CacheStage | None = None) -> None:
        self.slot = slot
        self.gate = gate
        self.cache = cache  # stores the answer when the stream ends normally
        self.started = time.perf_counter() - slot.outcome.latency_s
        self.ttft_s: float | None = None
        self.parts: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.completion: Completion | None = None
        self.settled = False
        self._in_flight = True  # the replica is busy until the stream ends
        inflight.begin(slot.endpoint.id)
        self._run = slot.request.run  # its span ends after this stream settles
        if self._run is not None:
            self._run._stream_opened()

    def chunks(self) -> Iterator[Any]:
        return iter(self.slot.outcome.response)

    def achunks(self) -> AsyncIterator[Any]:
        return self.slot.outcome.response.__aiter__()  # type: ignore[no-any-return]

    def on_chunk(self, chunk: Any) -> None:
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.started
        text, tool_calls, finish = _delta(chunk)
        if text:
            self.parts.append(text)
        for tc in tool_calls or []:
            entry = self.tool_calls.setdefault(
                getattr(tc, "index", 0) or 0,
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            entry["id"] = getattr(tc, "id", None) or entry["id"]
            fn = getattr(tc, "function", None)
            if fn is not None:
                entry["function"]["name"] += getattr(fn, "name", None) or ""
                entry["function"]["arguments"] += getattr(fn, "arguments", None) or ""
        if finish:
            self.finish_reason = finish
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "prompt_tokens", None):
            self.usage = usage

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def _estimated_usage(self) -> Usage:
        counter = counter_for(self.slot.endpoint)
        request = self.slot.request
        prompt = counter.count_messages(request.messages, request.params.get("tools"))
        return Usage(prompt, 0, counter.count_text(self.text) if self.parts else 0)

    @property
    def blocks(self) -> bool:
        """Whether settling does I/O: a ledger on disk or Redis, or a count of the
        prompt through the engine's ``/tokenize`` when the engine sent no usage."""
        return self.gate.blocking or (
            self.usage is None and self.slot.endpoint.api_base is not None
        )

    # the HTTP response: closing it tells the engine to stop generating
    def close_source(self) -> None:
        close = getattr(self.slot.outcome.response, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):  # already closed, or the peer is gone
                result = close()
                if inspect.iscoroutine(result):
                    result.close()

    async def aclose_source(self) -> None:
        response = self.slot.outcome.response
        close = getattr(response, "aclose", None) or getattr(response, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                result = close()
                if inspect.isawaitable(result):
                    await result

    # settling
    def finish(
        self, error: BaseException | None = None, *, complete: bool = False
    ) -> Completion | None:
        """Settle what was received (once); ``complete``: the stream ended normally,
        so its answer may be stored in the response cache."""
        fresh = not self.settled
        completion = self._settle(error)
        cache = self.cache if fresh and complete and self._whole() else None
        if cache is not None and completion is not None:
            try:
                cache.store_now(completion)
            except Exception as err:  # the answer is paid for and delivered: never fail it
                log.warning("a finished stream's answer was not cached: %s", err)
        return completion

    async def afinish(
        self, error: BaseException | None = None, *, complete: bool = False
    ) -> Completion | None:
        """``finish`` under asyncio: its I/O in a worker thread, never on the loop."""
        fresh = not self.settled
        if self.settled or not self.blocks:
            completion = self._settle(error)
        else:
            completion = await asyncio.to_thread(self._settle, error)
        cache = self.cache if fresh and complete and self._whole() else None
        if cache is not None and completion is not None:
            try:
                await cache.astore(completion)
            except Exception as err:
                log.warning("a finished stream's answer was not cached: %s", err)
        return completion

    def _whole(self) -> bool:
        """Whether the engine said the answer finished (a stream that only stopped
        sending is not known to be whole, so it is never stored)."""
        return bool(self.finish_reason)

    def _settle(self, error: BaseException | None) -> Completion | None:
        if self.settled:
            return self.completion
        self.settled = True
        try:
            return self._account(error)
        finally:
            if self._in_flight:
                self._in_flight = False
                inflight.end(self.slot.endpoint.id)
            if self._run is not None:
                run, self._run = self._run, None
                run._stream_closed()

    def _account(self, error: BaseException | None) -> Completion | None:
        slot = self.slot
        slot.outcome.latency_s = time.perf_counter() - self.started
        estimated = self.usage is None
        if not estimated:
            usage, reported = normalise_usage(self.usage)
        else:  # no usage chunk (cut, abandoned, or an engine that sends none): count it
            usage, reported = self._estimated_usage(), False
        cost = price(slot.endpoint, usage)
        self.gate.settle_now(slot.reservations, usage, cost)
        if error is not None:
            record_failure(slot, error, usage)
            return None
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        response = {"choices": [{"message": message, "finish_reason": self.finish_reason}]}
        request = slot.request
        attempt = slot.attempt(usage, cost, reported, ttft_s=self.ttft_s, usage_estimated=estimated)
        request.attempts.append(attempt)
        record_attempt(attempt, request.frame, request.run)
        completion = build_completion(
            response, slot.endpoint, slot.tier, request.params, slot.outcome.latency_s
        )
        completion.usage, completion.cost = usage, cost
        completion.usage_estimated = estimated
        completion.ttft_s = self.ttft_s
        completion.attempts = list(request.attempts)
        end_attempt_span(
            slot.span,
            attempt,
            slot.endpoint,
            params=slot.params,
            messages=request.messages,
            output_message=message,
            output_text=self.text,
            finish_reason=self.finish_reason,
            extra=record_routing(request, attempt, slot.endpoint, None),
        )
        self.completion = completion
        return completion


def stream_state(start: StreamStart) -> StreamState | ReplayState:
    """The state of the stream ``plan_stream`` started."""
    if start.replay is not None:
        return ReplayState(start.replay)
    assert start.slot is not None, "a live stream has a slot"
    assert start.gate is not None, "a live stream has a budget gate"
    return StreamState(start.slot, start.gate, start.cache)


def _mid_stream_error(state: StreamState | ReplayState, err: BaseException) -> CallError:
    if not isinstance(state, StreamState):  # a replay reads a list: only a bug gets here
        return CallError(f"replaying a stream failed: {type(err).__name__}: {err}", [])
    return CallError(
        f"the stream from {state.slot.endpoint.id} failed after {len(state.parts)} chunks "
        f"({type(err).__name__}: {err}); what was received was paid for and recorded",
        state.slot.request.attempts,
    )


# --- the stream objects -------------------------------------------------------------------
class CompletionStream:
    """Iterate the chunks; ``.completion`` holds the settled result at the end."""

    def __init__(self, state: StreamState | ReplayState) -> None:
        self._state = state
        self._iter: Iterator[Any] = state.chunks()

    @property
    def completion(self) -> Completion | None:
        return self._state.completion

    @property
    def text(self) -> str:
        return self._state.text

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._iter)
        except StopIteration:
            self._state.finish(complete=True)
            raise
        except Exception as err:
            self._state.finish(err)
            raise _mid_stream_error(self._state, err) from err
        self._state.on_chunk(chunk)
        return chunk

    def close(self) -> None:
        """Stop reading: the response is closed (the engine stops generating) and what
        was received so far is settled."""
        if not self._state.settled:
            self._state.close_source()
            self._state.finish()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # nothing can be raised from a finaliser
            state = self._state
            if not state.settled:
                state.close_source()
                state.finish(StreamAbandoned())


class AsyncCompletionStream:
    """``async for chunk in await af.acomplete(..., stream=True)``."""

    def __init__(self, state: StreamState | ReplayState) -> None:
        self._state = state
        self._iter: AsyncIterator[Any] = state.achunks()
        try:  # an abandoned stream is closed on its own loop
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @property
    def completion(self) -> Completion | None:
        return self._state.completion

    @property
    def text(self) -> str:
        return self._state.text

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._iter.__anext__()
        except StopAsyncIteration:
            await self._state.afinish(complete=True)
            raise
        except Exception as err:
            await self._state.afinish(err)
            raise _mid_stream_error(self._state, err) from err
        self._state.on_chunk(chunk)
        return chunk

    async def aclose(self) -> None:
        """Stop reading: the response is closed (the engine stops generating) and what
        was received so far is settled."""
        if not self._state.settled:
            await self._state.aclose_source()
            await self._state.afinish()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # nothing can be raised from a finaliser
            state, loop = self._state, self._loop
            if state.settled:
                return
            if isinstance(state, ReplayState):  # no connection, no ledger: nothing to wait on
                state.finish(StreamAbandoned())
                return
            if loop is not None and not loop.is_closed():
                try:  # the finaliser may run on any thread: hand the closing to the loop
                    loop.call_soon_threadsafe(_close_abandoned, loop, state)
                    return
                except RuntimeError:
                    pass  # the loop closed meanwhile
            state.finish(StreamAbandoned())  # no loop left to close the response on


def _close_abandoned(loop: asyncio.AbstractEventLoop, state: StreamState) -> None:
    task = loop.create_task(_aabandon(state))
    _closing.add(task)  # a strong reference until it is done
    task.add_done_callback(_closing.discard)


async def _aabandon(state: StreamState) -> None:
    try:
        await state.aclose_source()
    finally:
        try:
            await state.afinish(StreamAbandoned())
        except Exception as err:  # a background task: nobody would see it raised
            log.warning("settling an abandoned stream failed: %s", err)
