"""Stage 5, call: shape the request, send it, classify what failed and say how long to
back off (tenacity's wait and stop strategies).

Two transports carry a call: an OpenAI-compatible server at an ``api_base`` (llama.cpp,
vLLM, SGLang, ...) is called on agentflow's own pooled HTTP client
(``agentflow.pipeline.openai_http``, the fast path); every other provider goes through
litellm, imported lazily (``agentflow._litellm``) and only when a call needs it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from agentflow._litellm import imported, litellm, warm_up
from agentflow.pipeline import openai_http, openai_wire
from agentflow.pipeline.effects import Call, Outcome, status_code

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from agentflow._policy import RetryPolicy
    from agentflow._zoo import Endpoint

__all__ = [
    "Backoff",
    "asend",
    "classify",
    "litellm",
    "ready",
    "request_kwargs",
    "reset_clients",
    "retry_after",
    "send",
    "warm_up",
]

# --- request shaping -------------------------------------------------------------------
# agentflow retries and fails over itself, so every call made is an attempt we can see;
# and it caches answers itself: a global ``litellm.cache`` an application set must not
# serve (unaccounted, untraced) or store agentflow's calls
_NO_HIDDEN_RETRIES = {"num_retries": 0, "max_retries": 0, "caching": False}


def request_kwargs(
    endpoint: Endpoint,
    params: Mapping[str, Any],
    operation: str,
    *,
    messages: list[dict[str, Any]] | None = None,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    """litellm's keyword arguments for one attempt at ``endpoint``."""
    kwargs = endpoint.litellm_params()
    kwargs.update(params)
    kwargs.update(_NO_HIDDEN_RETRIES)
    kwargs["cache"] = {"no-cache": True, "no-store": True}  # litellm's own cache: off
    if operation == "embeddings":
        kwargs["input"] = texts
    else:
        kwargs["messages"] = messages
    if kwargs.get("tools"):
        # litellm would otherwise import its MCP bridge (and the `mcp` package) for any
        # call with tools; agentflow passes tools to the engine as they are
        kwargs["_skip_mcp_handler"] = True
        if endpoint.tool_choice_by_turn and kwargs.get("tool_choice") in (None, "auto"):
            kwargs["tool_choice"] = _choice_by_turn(messages or [])
            kwargs.setdefault("parallel_tool_calls", False)  # one call at a time
    if operation == "chat_stream":
        kwargs["stream"] = True
        opts = dict(kwargs.get("stream_options") or {})
        opts["include_usage"] = True  # the engine's own usage settles the stream
        kwargs["stream_options"] = opts
    return kwargs


def _choice_by_turn(messages: list[dict[str, Any]]) -> str:
    """``Endpoint(tool_choice_by_turn=True)``: a tool call on the user's turn, an answer
    once a tool has answered (for models too small to choose)."""
    last = messages[-1].get("role") if messages else None
    return "none" if last == "tool" else "required"


_clients: dict[tuple[str, bool], Any] = {}


def _embedding_client(endpoint: Endpoint, use_async: bool) -> Any:
    """An OpenAI client that never retries, for litellm's embedding path: it treats
    ``max_retries=0`` as unset and sets 2 on any client it is given, so those retries
    would happen where agentflow cannot see (or trace, or pay for) them."""
    key = (endpoint.id, use_async)
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

        params = endpoint.litellm_params()
        client = _clients[key] = NoRetryClient(
            base_url=params.get("api_base"),
            api_key=params.get("api_key") or "none",
            timeout=endpoint.timeout,
        )
    return client


def reset_clients() -> None:
    """Drop the pooled clients (testing; they are rebuilt on demand)."""
    _clients.clear()
    openai_http.close_clients()


def ready(endpoint: Endpoint) -> bool:
    """Whether a call to ``endpoint`` can start now: it takes the fast path, or litellm
    is imported already (the plan imports it first, outside any span's time)."""
    return imported() or endpoint.fast_path


def _final_kwargs(call: Call, use_async: bool) -> dict[str, Any]:
    kwargs = call.kwargs
    if call.deadline is not None:  # no single wait may outlast the call's max_time
        left = max(call.deadline - time.monotonic(), 0.001)
        timeout = kwargs.get("timeout")
        if not isinstance(timeout, int | float) or left < timeout:
            kwargs = {**kwargs, "timeout": left}
    if call.operation == "embeddings" and call.endpoint.provider == "openai":
        return {**kwargs, "client": _embedding_client(call.endpoint, use_async)}
    return kwargs


def send(call: Call) -> Outcome:
    """Perform ``call`` (blocking); the error, if any, is in the Outcome."""
    if call.endpoint.fast_path:
        return openai_http.send(call)
    ll = litellm()
    fn = ll.embedding if call.operation == "embeddings" else ll.completion
    kwargs = _final_kwargs(call, False)
    t0 = time.perf_counter()
    try:
        response = fn(**kwargs)
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


async def asend(call: Call) -> Outcome:
    """Perform ``call`` under asyncio; the error, if any, is in the Outcome. A call
    still running at its deadline (``Call.deadline``, the retry policy's ``max_time``)
    is cancelled: a reply that drips in byte by byte cannot outlast it."""
    if call.endpoint.fast_path:
        return await openai_http.asend(call)
    ll = litellm()
    fn = ll.aembedding if call.operation == "embeddings" else ll.acompletion
    kwargs = _final_kwargs(call, True)
    t0 = time.perf_counter()
    try:
        if call.deadline is None:
            response = await fn(**kwargs)
        else:
            left = max(call.deadline - time.monotonic(), 0.001)
            try:
                response = await asyncio.wait_for(fn(**kwargs), left)
            except TimeoutError:
                raise TimeoutError(
                    f"no complete answer from {call.endpoint.id} within the retry "
                    f"policy's max_time ({left:.1f} s were left)"
                ) from None
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


# --- what failed, and what next ---------------------------------------------------------
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


_CONTEXT_MARKERS = (
    "context_length_exceeded",  # OpenAI
    "maximum context length",  # vLLM, OpenAI
    "exceeds the available context size",  # llama-server
    "exceed_context_size",  # llama-server's error type
    "context window",
    "prompt is too long",  # Anthropic
)


def classify(err: BaseException) -> str:
    """``"retry"`` (transient: same endpoint again), ``"failover"`` (this endpoint is
    gone: try the next), ``"context"`` (the prompt does not fit this model's context
    window: its replicas would refuse it too, a fallback tier may not) or ``"fatal"``
    (the request itself is wrong: stop)."""
    if isinstance(err, openai_wire.ReplyTooLarge):
        return "failover"  # a replica gone wrong: another one may answer sanely
    name = type(err).__name__
    if name == "ContextWindowExceededError" or any(
        marker in str(err).lower() for marker in _CONTEXT_MARKERS
    ):
        return "context"
    if name in ("Timeout", "APITimeoutError", "TimeoutError", "ReadTimeout"):
        return "retry"
    if name in ("APIConnectionError", "ConnectError", "ConnectionError", "RemoteProtocolError"):
        return "retry"
    code = status_code(err)
    if code is not None:
        if code in _RETRYABLE_STATUS or code >= 500:
            return "retry"
        if code in (401, 403, 404):
            return "failover"
        return "fatal"
    if name in ("InternalServerError", "ServiceUnavailableError", "BadGatewayError", "APIError"):
        return "retry"
    if isinstance(err, (ConnectionError, TimeoutError, OSError)):
        return "retry"
    if name in ("JSONDecodeError", "APIResponseValidationError"):
        return "retry"
    return "fatal"


def retry_after(err: BaseException) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``), if it said."""
    headers: Any = None
    response = getattr(err, "response", None)
    if response is not None:
        headers = getattr(response, "headers", None)
    if not headers:
        headers = getattr(err, "litellm_response_headers", None) or getattr(err, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:  # an HTTP date (RFC 9110 allows both forms)
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _RetryAfterFloor:
    """A tenacity wait strategy: jittered exponential backoff, never shorter than what
    the server asked for (``Retry-After``, capped at ``cap`` seconds)."""

    def __init__(self, jitter: Callable[[RetryCallState], float], cap: float) -> None:
        self.jitter = jitter
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self.jitter(retry_state))
        outcome = retry_state.outcome
        err = outcome.exception() if outcome is not None else None
        asked = retry_after(err) if err is not None else None
        return wait if asked is None else max(min(asked, self.cap), wait)


class Backoff:
    """The retry schedule of one endpoint within one call, on tenacity's strategies:
    ``max_attempts`` per endpoint, ``max_time`` for the whole call (from ``started``),
    full-jitter exponential waits with ``Retry-After`` as a floor. Pure arithmetic: the
    plan yields the ``Sleep``."""

    def __init__(self, policy: RetryPolicy, started: float) -> None:
        # imported here: tenacity is only needed once a call fails
        from tenacity import (
            RetryCallState,
            stop_after_attempt,
            stop_after_delay,
            wait_random_exponential,
        )

        self.state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # no Retrying object: we drive the state
        self.state.start_time = started
        self.max_time = policy.max_time
        self.stop = stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_time)
        self.wait = _RetryAfterFloor(
            wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff),
            policy.max_retry_after,
        )

    def next_wait(self, err: BaseException) -> float | None:
        """Seconds to wait before retrying after ``err``, or None: stop (fail over)."""
        state = self.state
        state.set_exception((type(err), err, err.__traceback__))
        if self.stop(state):
            return None
        wait = self.wait(state)
        if (state.seconds_since_start or 0.0) + wait >= self.max_time:
            return None  # the wait would end past the call's deadline
        state.prepare_for_next_attempt()
        return wait
