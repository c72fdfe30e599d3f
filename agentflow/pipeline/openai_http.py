"""The fast call path: OpenAI-compatible engines over httpx, without litellm.

Self-hosted llama.cpp, vLLM and SGLang speak the OpenAI protocol, and they are the
endpoints agentflow exists for. For an endpoint with an ``api_base`` whose provider is
OpenAI-compatible (``openai/``, ``hosted_vllm/``, ...), the call stage posts the request
itself on one pooled ``httpx`` client per endpoint (and per event loop), instead of going
through litellm: the same body litellm would send (its model prefix stripped, a pydantic
``response_format`` turned into the same strict JSON schema), the same usage, the same
error classes, a fraction of the client time.

What comes back is the engine's JSON as a ``JsonObject``: a ``dict`` whose keys read as
attributes too (``response.choices[0].message.content``, a missing optional field reads
as ``None``, like the OpenAI SDK's models), so ``Completion.raw`` and the chunks of a
stream read the same on either path. Failures become ``EngineStatusError`` (the HTTP
status, the body and the ``Retry-After`` header the call stage classifies),
``EngineConnectionError``, ``EngineTimeoutError`` or ``ReplyTooLarge``.

A reply is read with a cap (``Endpoint.max_reply_bytes``; 16 MiB for chat, 256 MiB for
embeddings) and, for a call under a retry policy's ``max_time``, a deadline checked after
every read: a reply that drips in byte by byte is cut when the deadline passes.

Async clients belong to one event loop: each loop gets its own, closed when that loop
shuts down (``asyncio.run`` ends), so no socket outlives the loop that opened it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Final

from agentflow.pipeline.effects import Call, Outcome
from agentflow.pipeline.openai_wire import (
    EngineConnectionError,
    EngineError,
    EngineStatusError,
    EngineTimeoutError,
    JsonObject,
    ReplyTooLarge,
    encode,
    headers,
    loads,
    reply_cap,
    request_body,
    response_format,
    schema_ready,
    status_error,
    timeout_of,
    url_of,
)

if TYPE_CHECKING:
    import httpx

    from agentflow._zoo import Endpoint

__all__ = [
    "AsyncSSEStream",
    "SSEStream",
    "asend",
    "close_clients",
    "send",
]


# --- pooled clients -------------------------------------------------------------------------
_MAX_CONNECTIONS: Final = 100
_MAX_KEEPALIVE: Final = 20
_sync_clients: dict[str, httpx.Client] = {}
_sync_lock = threading.Lock()


def _new_client(*, sync: bool) -> Any:
    import httpx  # imported with the first client: ``import agentflow`` stays light

    from agentflow._secrets import redact_library_logs

    redact_library_logs()  # secrets never reach httpx's or httpcore's DEBUG logs
    limits = httpx.Limits(
        max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_KEEPALIVE
    )
    kind = httpx.Client if sync else httpx.AsyncClient
    return kind(limits=limits, trust_env=False)


def _sync_client(endpoint: Endpoint) -> httpx.Client:
    key = endpoint.api_base or ""
    client = _sync_clients.get(key)
    if client is None:
        with _sync_lock:
            client = _sync_clients.get(key)
            if client is None:
                client = _sync_clients[key] = _new_client(sync=True)
    return client


class _LoopClients:
    """One event loop's async clients, closed when the loop shuts down."""

    __slots__ = ("clients", "closer")

    def __init__(self) -> None:
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.closer: Any = None


_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = (
    weakref.WeakKeyDictionary()
)


async def _close_at_shutdown(
    loop: weakref.ref[asyncio.AbstractEventLoop], held: _LoopClients
) -> AsyncGenerator[None, None]:
    """An async generator that never ends: ``loop.shutdown_asyncgens()`` (which
    ``asyncio.run`` calls before closing its loop) closes it, and its clean-up closes
    the loop's clients while the loop still runs."""
    try:
        yield
    finally:
        clients = list(held.clients.values())
        held.clients.clear()
        running = loop()
        if running is not None:
            _loop_clients.pop(running, None)
        for client in clients:
            await client.aclose()


async def _async_client(endpoint: Endpoint) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    held = _loop_clients.get(loop)
    if held is None:
        held = _loop_clients[loop] = _LoopClients()
        closer = _close_at_shutdown(weakref.ref(loop), held)
        await closer.asend(None)  # started: the loop now tracks it for its shutdown
        held.closer = closer
    key = endpoint.api_base or ""
    client = held.clients.get(key)
    if client is None:
        client = held.clients[key] = _new_client(sync=False)
    return client


def close_clients() -> None:
    """Close the pooled sync clients and forget every loop's clients (testing; the
    pools are rebuilt on demand)."""
    with _sync_lock:
        clients = list(_sync_clients.values())
        _sync_clients.clear()
    for client in clients:
        client.close()
    _loop_clients.clear()


# --- errors ------------------------------------------------------------------------------------
def _transport_error(err: httpx.TransportError, call: Call, timeout: float) -> EngineError:
    import httpx

    where = f"{call.endpoint.id} ({url_of(call)})"
    if isinstance(err, httpx.TimeoutException):
        return EngineTimeoutError(
            f"no answer from {where} within {timeout:.3g} s ({type(err).__name__})"
        )
    return EngineConnectionError(f"no answer from {where}: {type(err).__name__}: {err}")


def _status_error(response: httpx.Response, raw: bytes, url: str) -> EngineStatusError:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return status_error(response.status_code, body, response, url)


def _deadline_passed(call: Call) -> EngineTimeoutError:
    return EngineTimeoutError(
        f"no complete answer from {call.endpoint.id} within the retry policy's max_time"
    )


def _too_large(call: Call, cap: int) -> ReplyTooLarge:
    return ReplyTooLarge(
        f"the reply from {call.endpoint.id} is larger than {cap} bytes; not read further. "
        "Raise Endpoint(max_reply_bytes=...) if replies this large are expected."
    )


# --- sync ------------------------------------------------------------------------------------
def send(call: Call) -> Outcome:
    """Perform ``call`` (blocking); the error, if any, is in the Outcome."""
    t0 = time.perf_counter()
    try:
        response = _send(call)
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


def _send(call: Call) -> Any:
    import httpx

    client = _sync_client(call.endpoint)
    url, timeout, cap = url_of(call), timeout_of(call), reply_cap(call)
    content = encode(request_body(call))
    request = client.build_request(
        "POST", url, content=content, headers=headers(call.kwargs), timeout=timeout
    )
    try:
        response = client.send(request, stream=True)
    except httpx.TransportError as err:
        raise _transport_error(err, call, timeout) from err
    if call.operation == "chat_stream" and response.status_code < 400:
        return SSEStream(response, call, cap)
    try:
        raw = _read(response.iter_bytes(), call, cap)
    except httpx.TransportError as err:
        raise _transport_error(err, call, timeout) from err
    finally:
        response.close()
    if response.status_code >= 400:
        raise _status_error(response, raw, url)
    return loads(raw)


def _read(chunks: Iterator[bytes], call: Call, cap: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    deadline = call.deadline
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise _too_large(call, cap)
        parts.append(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise _deadline_passed(call)
    return b"".join(parts)


# --- async -----------------------------------------------------------------------------------
async def asend(call: Call) -> Outcome:
    """Perform ``call`` under asyncio; the error, if any, is in the Outcome. A call still
    running at its deadline (``Call.deadline``) is cancelled."""
    t0 = time.perf_counter()
    try:
        if call.deadline is None:
            response = await _asend(call)
        else:
            left = max(call.deadline - time.monotonic(), 0.001)
            try:
                response = await asyncio.wait_for(_asend(call), left)
            except TimeoutError:
                raise EngineTimeoutError(
                    f"no complete answer from {call.endpoint.id} within the retry "
                    f"policy's max_time ({left:.1f} s were left)"
                ) from None
    except Exception as err:
        return Outcome(error=err, latency_s=time.perf_counter() - t0)
    return Outcome(response=response, latency_s=time.perf_counter() - t0)


async def _asend(call: Call) -> Any:
    import httpx

    fmt = call.kwargs.get("response_format")
    if isinstance(fmt, type) and not schema_ready():
        await asyncio.to_thread(response_format, fmt)  # the SDK's import: never on the loop
    client = await _async_client(call.endpoint)
    url, timeout, cap = url_of(call), timeout_of(call), reply_cap(call)
    content = encode(request_body(call))
    request = client.build_request(
        "POST", url, content=content, headers=headers(call.kwargs), timeout=timeout
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TransportError as err:
        raise _transport_error(err, call, timeout) from err
    if call.operation == "chat_stream" and response.status_code < 400:
        return AsyncSSEStream(response, call, cap)
    try:
        raw = await _aread(response, call, cap)
    except httpx.TransportError as err:
        raise _transport_error(err, call, timeout) from err
    finally:
        await response.aclose()
    if response.status_code >= 400:
        raise _status_error(response, raw, url)
    return loads(raw)


async def _aread(response: httpx.Response, call: Call, cap: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise _too_large(call, cap)
        parts.append(chunk)
    return b"".join(parts)


# --- server-sent events --------------------------------------------------------------------
def _event(line: str, call: Call) -> JsonObject | None:
    """One SSE line: a chunk, None (not a data line, or the end), or an error raised."""
    import httpx

    if not line.startswith("data:"):
        if line.startswith("error:"):  # llama-server reports a failure mid-stream so
            raise status_error(500, line[6:].strip(), httpx.Response(500), url_of(call))
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    chunk = loads(data)
    error = chunk.get("error") if isinstance(chunk, dict) else None
    if error is not None and not chunk.get("choices"):
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and code >= 400 else 500
        raise status_error(status, chunk, httpx.Response(status), url_of(call))
    return chunk  # type: ignore[no-any-return]  # object_hook: every object is a JsonObject


class _Lines:
    """What the sync and async streams share: the reply's size so far, under its cap,
    and each line read as an SSE event."""

    def __init__(self, response: httpx.Response, call: Call, cap: int) -> None:
        self.response = response
        self._call = call
        self._cap = cap
        self._size = 0

    def _chunk(self, line: str) -> JsonObject | None:
        self._size += len(line) + 1
        if self._size > self._cap:
            raise _too_large(self._call, self._cap)
        return _event(line, self._call)

    def _failed(self, err: httpx.TransportError) -> EngineError:
        return _transport_error(err, self._call, timeout_of(self._call))


class SSEStream(_Lines):
    """The chunks of a streamed chat reply, read as they come (``close()`` stops)."""

    def __init__(self, response: httpx.Response, call: Call, cap: int) -> None:
        super().__init__(response, call, cap)
        self._lines = response.iter_lines()

    def __iter__(self) -> Iterator[JsonObject]:
        return self

    def __next__(self) -> JsonObject:
        import httpx

        try:
            for line in self._lines:
                chunk = self._chunk(line)
                if chunk is not None:
                    return chunk
        except httpx.TransportError as err:
            self.close()
            raise self._failed(err) from err
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        self.response.close()


class AsyncSSEStream(_Lines):
    """``SSEStream`` under asyncio (``aclose()`` stops)."""

    def __init__(self, response: httpx.Response, call: Call, cap: int) -> None:
        super().__init__(response, call, cap)
        self._lines = response.aiter_lines()

    def __aiter__(self) -> AsyncIterator[JsonObject]:
        return self

    async def __anext__(self) -> JsonObject:
        import httpx

        try:
            async for line in self._lines:
                chunk = self._chunk(line)
                if chunk is not None:
                    return chunk
        except httpx.TransportError as err:
            await self.aclose()
            raise self._failed(err) from err
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        await self.response.aclose()
