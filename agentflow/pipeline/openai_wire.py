"""What goes over the wire to an OpenAI-compatible engine, and what comes back: the
request body (what litellm would send), the engine's JSON as a ``JsonObject``, and the
errors a failed call becomes. ``agentflow.pipeline.openai_http`` sends it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from agentflow._zoo import OPENAI_COMPATIBLE
from agentflow.pipeline.effects import Call

if TYPE_CHECKING:
    import httpx

    from agentflow._zoo import Endpoint

__all__ = [
    "CHAT_REPLY_CAP",
    "EMBEDDINGS_REPLY_CAP",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "EngineConnectionError",
    "EngineError",
    "EngineStatusError",
    "EngineTimeoutError",
    "InternalServerError",
    "JsonObject",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReplyTooLarge",
    "UnprocessableEntityError",
    "encode",
    "headers",
    "loads",
    "reply_cap",
    "request_body",
    "response_format",
    "schema_ready",
    "status_error",
    "timeout_of",
    "url_of",
    "wire_model",
]

CHAT_REPLY_CAP: Final = 16 * 1024 * 1024
EMBEDDINGS_REPLY_CAP: Final = 256 * 1024 * 1024


# --- what comes back ---------------------------------------------------------------------
class JsonObject(dict[str, Any]):
    """An engine's JSON object: a ``dict`` whose keys also read as attributes.

    ``obj.usage`` is ``obj["usage"]``; a key the engine did not send reads as ``None``
    (as an unset optional field of the OpenAI SDK's models does). ``model_dump()``
    returns plain dicts and lists, as a pydantic model's would.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):  # copy, pickle, ... protocols look for these
                raise AttributeError(name) from None
            return None

    def model_dump(self, *, exclude_none: bool = False, **_: Any) -> dict[str, Any]:
        return _plain(self, exclude_none)  # type: ignore[no-any-return]  # a dict in, a dict out

    def __repr__(self) -> str:
        return f"JsonObject({dict.__repr__(self)})"


def _plain(value: Any, exclude_none: bool) -> Any:
    if isinstance(value, dict):
        return {
            k: _plain(v, exclude_none) for k, v in value.items() if not (exclude_none and v is None)
        }
    if isinstance(value, list):
        return [_plain(v, exclude_none) for v in value]
    return value


def loads(data: bytes | str) -> Any:
    return json.loads(data, object_hook=JsonObject)


# --- what can go wrong -------------------------------------------------------------------
class EngineError(Exception):
    """A call to an OpenAI-compatible engine failed (the call stage classifies it)."""


class EngineStatusError(EngineError):
    """The engine answered with an HTTP error status; ``body`` is what it said."""

    def __init__(self, status_code: int, body: Any, response: httpx.Response, url: str) -> None:
        self.status_code = status_code
        self.body = body
        self.response = response  # its headers carry Retry-After
        self.url = url
        text = body if isinstance(body, str) else json.dumps(body)
        super().__init__(f"Error code: {status_code} - {text[:2000]}")


class BadRequestError(EngineStatusError):
    """HTTP 400: the request is wrong (or, with a context-length message, too long)."""


class AuthenticationError(EngineStatusError):
    """HTTP 401."""


class PermissionDeniedError(EngineStatusError):
    """HTTP 403."""


class NotFoundError(EngineStatusError):
    """HTTP 404: no such model or route on this replica."""


class ConflictError(EngineStatusError):
    """HTTP 409."""


class UnprocessableEntityError(EngineStatusError):
    """HTTP 422."""


class RateLimitError(EngineStatusError):
    """HTTP 429 (its ``Retry-After`` is honoured)."""


class InternalServerError(EngineStatusError):
    """HTTP 5xx."""


# the OpenAI SDK's names for each status, so an attempt's error reads the same as there
_STATUS_ERRORS: Final[dict[int, type[EngineStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(
    status_code: int, body: Any, response: httpx.Response, url: str
) -> EngineStatusError:
    """The ``EngineStatusError`` subclass for ``status_code``."""
    kind = _STATUS_ERRORS.get(status_code)
    if kind is None:
        kind = InternalServerError if status_code >= 500 else EngineStatusError
    return kind(status_code, body, response, url)


class EngineConnectionError(EngineError, ConnectionError):
    """No HTTP answer: the connection was refused, reset or broke mid-reply."""


class EngineTimeoutError(EngineError, TimeoutError):
    """No (complete) answer within the endpoint's timeout or the call's deadline."""


class ReplyTooLarge(EngineError):
    """The reply is larger than the endpoint's ``max_reply_bytes``: not read further."""


# --- the request ---------------------------------------------------------------------------
# litellm's own arguments and the endpoint's connection settings: never in the body
_NOT_BODY: Final = frozenset(
    {
        "model",
        "api_base",
        "base_url",
        "api_key",
        "timeout",
        "stream_timeout",
        "num_retries",
        "max_retries",
        "caching",
        "cache",
        "_skip_mcp_handler",
        "metadata",
        "drop_params",
        "custom_llm_provider",
        "extra_headers",
        "headers",
        "extra_body",
        "client",
        "messages",
        "input",
        "litellm_call_id",
        "litellm_logging_obj",
        "api_version",
    }
)


def wire_model(endpoint: Endpoint) -> str:
    """The model name the engine expects: litellm's provider prefix stripped."""
    model = endpoint.model
    prefix, _, rest = model.partition("/")
    return rest if rest and prefix in OPENAI_COMPATIBLE else model


@lru_cache(maxsize=256)
def _strict_schema(model: type) -> dict[str, Any]:
    """A pydantic model as the strict JSON schema litellm (and the OpenAI SDK) send."""
    from openai.lib._pydantic import to_strict_json_schema  # the SDK's own converter

    return to_strict_json_schema(model)


def schema_ready() -> bool:
    """Whether the schema converter is imported (the async path imports it off-loop)."""
    import sys

    return "openai.lib._pydantic" in sys.modules


def response_format(value: Any) -> Any:
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return {
            "type": "json_schema",
            "json_schema": {
                "schema": _strict_schema(value),
                "name": value.__name__,
                "strict": True,
            },
        }
    return value


def request_body(call: Call) -> dict[str, Any]:
    """The JSON body of ``call``: what litellm would send an OpenAI-compatible server."""
    kwargs = call.kwargs
    body: dict[str, Any] = {"model": wire_model(call.endpoint)}
    if call.operation == "embeddings":
        body["input"] = kwargs.get("input")
    else:
        body["messages"] = kwargs.get("messages")
    for key, value in kwargs.items():
        if key in _NOT_BODY or value is None:
            continue
        body[key] = response_format(value) if key == "response_format" else value
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        body.update(extra)
    return body


def headers(kwargs: Mapping[str, Any]) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    key = kwargs.get("api_key")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    for name in ("headers", "extra_headers"):
        extra = kwargs.get(name)
        if isinstance(extra, Mapping):
            headers.update({str(k): str(v) for k, v in extra.items()})
    return headers


def _default(value: Any) -> Any:
    """JSON for what ``json`` cannot encode: pydantic objects (a message handed back)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, default=_default, ensure_ascii=False).encode()


def url_of(call: Call) -> str:
    base = call.endpoint.api_base or ""
    return base + ("/embeddings" if call.operation == "embeddings" else "/chat/completions")


def timeout_of(call: Call) -> float:
    timeout = call.kwargs.get("timeout")
    value = float(timeout) if isinstance(timeout, int | float) else call.endpoint.timeout
    if call.deadline is not None:
        value = min(value, max(call.deadline - time.monotonic(), 0.001))
    return value


def reply_cap(call: Call) -> int:
    cap = call.endpoint.max_reply_bytes
    if cap is not None:
        return cap
    return EMBEDDINGS_REPLY_CAP if call.operation == "embeddings" else CHAT_REPLY_CAP
