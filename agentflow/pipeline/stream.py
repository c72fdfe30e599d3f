"""``af.complete(stream=True)``: chunks as they come, settled when the stream ends.

Usage comes from the engine's final usage chunk (``stream_options.include_usage``). A
stream that fails midway or is abandoned (closed, garbage-collected, left in a ``with``)
still settles: the prompt as counted and the completion tokens received so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
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
)
from agentflow.pipeline.budget import BudgetGate, counter_for
from agentflow.pipeline.request import Slot
from budgets import Usage

__all__ = ["AsyncCompletionStream", "CompletionStream", "StreamState"]


def _delta(chunk: Any) -> tuple[str, Any, str | None]:
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return "", None, None
    choice = choices[0]
    delta = getattr(choice, "delta", None)
    text = getattr(delta, "content", None) or ""
    tool_calls = getattr(delta, "tool_calls", None)
    return text, tool_calls, getattr(choice, "finish_reason", None)


class StreamState:
    """Accumulates one streamed attempt and settles it exactly once."""

    def __init__(self, slot: Slot, gate: BudgetGate) -> None:
        self.slot = slot
        self.gate = gate
        self.started = time.perf_counter() - slot.outcome.latency_s
        self.ttft_s: float | None = None
        self.parts: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.completion: Completion | None = None
        self.settled = False

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

    async def afinish(self, error: BaseException | None = None) -> Completion | None:
        """``finish`` under asyncio: its I/O in a worker thread, never on the loop."""
        if self.settled or not self.blocks:
            return self.finish(error)
        return await asyncio.to_thread(self.finish, error)

    def finish(self, error: BaseException | None = None) -> Completion | None:
        if self.settled:
            return self.completion
        self.settled = True
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
        )
        self.completion = completion
        return completion


def _mid_stream_error(state: StreamState, err: BaseException) -> CallError:
    return CallError(
        f"the stream from {state.slot.endpoint.id} failed after {len(state.parts)} chunks "
        f"({type(err).__name__}: {err}); what was received was paid for and recorded",
        state.slot.request.attempts,
    )


class CompletionStream:
    """Iterate litellm's chunks; ``.completion`` holds the settled result at the end."""

    def __init__(self, state: StreamState) -> None:
        self._state = state
        self._iter: Iterator[Any] = iter(state.slot.outcome.response)

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
            self._state.finish()
            raise
        except Exception as err:
            self._state.finish(err)
            raise _mid_stream_error(self._state, err) from err
        self._state.on_chunk(chunk)
        return chunk

    def close(self) -> None:
        """Stop reading; what was received so far is settled."""
        if self._state.completion is None:
            self._state.finish()
            close = getattr(self._iter, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # nothing can be raised from a finaliser
            self._state.finish()


class AsyncCompletionStream:
    """``async for chunk in await af.acomplete(..., stream=True)``."""

    def __init__(self, state: StreamState) -> None:
        self._state = state
        self._iter: AsyncIterator[Any] = state.slot.outcome.response.__aiter__()

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
            await self._state.afinish()
            raise
        except Exception as err:
            await self._state.afinish(err)
            raise _mid_stream_error(self._state, err) from err
        self._state.on_chunk(chunk)
        return chunk

    async def aclose(self) -> None:
        if self._state.completion is None:
            await self._state.afinish()
            close = getattr(self._iter, "aclose", None)
            if close is not None:
                await close()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # nothing can be raised from a finaliser
            self._state.finish()
