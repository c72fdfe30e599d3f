"""Cache keys: one canonical JSON form per request, hashed.

Two requests share a key exactly when the model would be asked the same thing: the same
tier, messages, tools, tool_choice, response_format and sampling parameters, for the same
step and tenant scope. Transport parameters (timeouts, credentials, endpoints, headers,
metadata, streaming) do not change the answer and stay out of the key, so a retry through
another replica, or a rotated API key, still hits.

The canonical form is ``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)`` over a tree built here from JSON-native values only.
There is no ``default=str`` fallback: ``str(obj)`` often holds a memory address, which
would make every key unique and the cache silently useless. A value with no JSON form
raises ``CacheKeyError`` naming its exact place (``messages[2].content``,
``tools[0].function.parameters``). Normalisations, each because the wire form is the same:

- tuples are lists; dict keys that are ints become strings (as every JSON encoder does);
- a float with an integral value is that integer (``temperature=0`` and ``0.0`` hit);
- ``None`` at the top level of a message or of the params means "not set" and is dropped;
- a pydantic model instance is its ``model_dump(mode="json")``; a pydantic model class (a
  ``response_format``) is ``{"pydantic": qualified name, "schema": model_json_schema()}``.

Keys carry a format-version prefix (``req-v1:``, ``part-v1:``), and the version is also
inside the hashed document, so a future change of layout never collides with old entries.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from agentflow._errors import CacheKeyError

__all__ = [
    "KEY_FORMAT_VERSION",
    "is_transport_param",
    "partition_key",
    "request_key",
]

KEY_FORMAT_VERSION = 1

# Parameters that say how to reach the model or how to deliver the answer, not what the
# answer is. Everything else (including parameters unknown here, such as extra_body with a
# server's own sampling knobs) stays in the key: a needless miss is cheap, a wrong hit is not.
_TRANSPORT_PARAMS = frozenset(
    {
        "model",  # the tier stands for the model; replicas of a tier may spell it differently
        "messages",  # passed separately
        "stream",
        "stream_options",
        "timeout",
        "request_timeout",
        "num_retries",
        "max_retries",
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "custom_llm_provider",
        "extra_headers",
        "headers",
        "extra_query",
        "metadata",
        "user",
        "safety_identifier",
        "store",
        "caching",
        "cache",
        "azure_ad_token_provider",
        "litellm_call_id",
        "litellm_logging_obj",
        "logger_fn",
    }
)
_CREDENTIAL_SUFFIXES = ("_key", "_token", "_secret", "_password", "_credentials")
_PROVIDER_PREFIXES = ("aws_", "azure_", "vertex_")

_MAX_DEPTH = 100  # deeper than any real request; a cycle would recurse forever
_EXACT_INT_FLOAT = 2.0**53


def is_transport_param(name: str) -> bool:
    """True when ``name`` is a parameter the key ignores (it cannot change the answer)."""
    return (
        name in _TRANSPORT_PARAMS
        or name.endswith(_CREDENTIAL_SUFFIXES)
        or name.startswith(_PROVIDER_PREFIXES)
    )


def _child(part: str, name: str) -> str:
    return f"{part}.{name}" if name.isidentifier() else f"{part}[{name!r}]"


def _canonical(value: object, part: str, depth: int = 0) -> Any:
    """``value`` as a tree of exact JSON types, or CacheKeyError naming ``part``."""
    if depth > _MAX_DEPTH:
        raise CacheKeyError(part, value, f"nested more than {_MAX_DEPTH} levels deep; a cycle?")
    if value is None or type(value) is bool:
        return value
    # subclasses (str enums, numpy float64) keep their plain value, as JSON encoders do
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CacheKeyError(part, value, f"{value!r} has no JSON form; pass a finite number")
        number = float.__float__(value)
        return int(number) if number.is_integer() and abs(number) < _EXACT_INT_FLOAT else number
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str):
                name = str.__str__(key)
            elif isinstance(key, int) and not isinstance(key, bool):
                name = str(int.__int__(key))  # logit_bias={50256: -100} is sent as "50256"
            else:
                raise CacheKeyError(f"{part} key {key!r}", key, "JSON object keys are strings")
            if name in out:
                raise CacheKeyError(
                    f"{part} key {key!r}", key, f"another key of {part} is also {name!r} in JSON"
                )
            out[name] = _canonical(item, _child(part, name), depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{part}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, type) and issubclass(value, BaseModel):
        try:
            schema = value.model_json_schema()
        except Exception as exc:  # pydantic raises several types for unschemable fields
            raise CacheKeyError(part, value, f"model_json_schema() failed: {exc}") from exc
        name = f"{value.__module__}.{value.__qualname__}"
        return {"pydantic": name, "schema": _canonical(schema, part, depth + 1)}
    if isinstance(value, BaseModel):
        try:
            dumped = value.model_dump(mode="json")
        except Exception as exc:  # a field with no JSON serialiser
            raise CacheKeyError(part, value, f"model_dump(mode='json') failed: {exc}") from exc
        return _canonical(dumped, part, depth + 1)
    if isinstance(value, set | frozenset):
        raise CacheKeyError(part, value, "a set has no order; pass a sorted list")
    if isinstance(value, bytes | bytearray):
        raise CacheKeyError(part, value, "pass text, e.g. base64 in a data: URL")
    raise CacheKeyError(part, value)


def _messages(messages: object) -> list[Any]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise CacheKeyError("messages", messages, "expected a list of chat messages")
    out = []
    for i, message in enumerate(messages):
        canonical = _canonical(message, f"messages[{i}]")
        if isinstance(canonical, dict):  # {"content": None} and no content are one message
            canonical = {k: v for k, v in canonical.items() if v is not None}
        out.append(canonical)
    return out


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise CacheKeyError(f"params key {name!r}", name, "parameter names are strings")
        if value is None or is_transport_param(name):
            continue
        out[name] = _canonical(value, name)
    return out


def _digest(document: dict[str, Any], prefix: str) -> str:
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return prefix + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _base(tier: str, step: str | None, scope: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "v": KEY_FORMAT_VERSION,
        "tier": _canonical(tier, "tier"),
        "step": _canonical(step, "step"),
        "scope": _canonical(scope, "scope"),
        "params": _params(params),
    }


def request_key(
    *,
    tier: str,
    messages: Sequence[Any],
    params: Mapping[str, Any],
    step: str | None,
    scope: str,
) -> str:
    """The exact-cache key of a request: ``"req-v1:" + sha256 hex`` of its canonical JSON.

    ``params`` are litellm's chat arguments other than ``messages`` (tools, tool_choice,
    response_format, temperature, max_tokens, seed, logprobs, extra_body...); transport
    parameters are ignored (see ``is_transport_param``). ``scope`` is the tenant scope
    (e.g. ``"user:u1"``): tenants never share a key. Raises ``CacheKeyError`` naming the
    first part that has no canonical JSON form.
    """
    document = _base(tier, step, scope, params)
    document["kind"] = "request"
    document["messages"] = _messages(messages)
    return _digest(document, f"req-v{KEY_FORMAT_VERSION}:")


def _cut_text(content: object) -> object:
    """``content`` with its text cut out: None for a string, and for a list of parts the
    same list with each text part's ``text`` removed. Non-text parts (images, audio) stay
    in place: a similar question about another image is another partition."""
    if not isinstance(content, list):
        return None
    return [
        {k: v for k, v in part.items() if k != "text"}
        if isinstance(part, dict) and part.get("type") == "text"
        else part
        for part in content
    ]


def partition_key(
    *,
    tier: str,
    messages: Sequence[Any],
    params: Mapping[str, Any],
    step: str | None,
    scope: str,
    embedder: str = "",
) -> str:
    """The semantic cache partition of a request: ``"part-v1:" + sha256 hex``.

    The partition is the request without the text that gets embedded, which is the last
    user message's text: tier, step, scope, params, and every message, that one included
    with its text cut out and its position kept (its role, name and non-text parts stay).
    So a semantic hit is only served when two requests differ in nothing but the wording
    of that message: the same system prompt, the same history before it (a conversation
    whose earlier turns differ is another partition), the same messages after it (tool
    results), the same tools, response_format and sampling, for the same step and tenant.

    Pass ``embedder`` (the embedding model's or function's name) so that a change of
    embedding model starts fresh partitions instead of comparing two models' vectors.
    Without a user message nothing is cut out (semantic caching has no text to match then).
    Raises ``CacheKeyError`` like ``request_key``.
    """
    canonical = _messages(messages)
    text_at = None
    for index in range(len(canonical) - 1, -1, -1):
        message = canonical[index]
        if isinstance(message, dict) and message.get("role") == "user":
            stub = {k: v for k, v in message.items() if k != "content"}
            rest = _cut_text(message.get("content"))
            if rest is not None:
                stub["content"] = rest
            canonical[index] = stub
            text_at = index
            break
    document = _base(tier, step, scope, params)
    document["kind"] = "partition"
    document["messages"] = canonical
    document["text_at"] = text_at
    document["embedder"] = _canonical(embedder, "embedder")
    return _digest(document, f"part-v{KEY_FORMAT_VERSION}:")
