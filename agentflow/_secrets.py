"""Which configured values are secrets, how they are kept out of reprs, and how they are
kept out of litellm's, httpx's and openai's logs.

An ``Endpoint``'s secrets are its ``api_key``, every litellm parameter that is a
credential (``aws_secret_access_key``, ``vertex_credentials``, ``azure_ad_token``, ...)
and the values of its ``extra_headers`` / ``headers`` (all but well-known harmless ones
such as ``Content-Type``). They are held as pydantic secrets (masked in ``repr`` and
``model_dump``), handed to litellm in the clear, and registered with
``tracing.register_secrets`` so that ``tracing.redact`` (spans, exports, attempt errors,
``CallError`` messages, log records) replaces them wherever they show up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pydantic import Secret, SecretStr

import tracing

__all__ = [
    "HEADER_PARAMS",
    "LIBRARY_LOGGERS",
    "is_credential_param",
    "is_secret_header",
    "protect",
    "redact_library_logs",
    "reveal",
    "secret_values",
]

# The loggers that see request options, headers and provider error bodies at DEBUG.
LIBRARY_LOGGERS: Final = (
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "httpx",
    "httpcore",
    "openai",
)

# litellm parameters holding HTTP headers; their values are secrets unless the header
# is a well-known harmless one.
HEADER_PARAMS: Final = frozenset({"extra_headers", "headers"})
_PUBLIC_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "anthropic-beta",
        "anthropic-version",
        "cache-control",
        "connection",
        "content-type",
        "http-referer",
        "openai-beta",
        "referer",
        "user-agent",
        "x-title",
    }
)
# litellm credential parameters whose names tracing.is_secret_key does not know.
_CREDENTIAL_PARAMS: Final = frozenset(
    {
        "aws_access_key_id",
        "azure_ad_token",
        "client_secret",
        "credentials",
        "private_key",
        "private_key_id",
        "refresh_token",
        "vertex_ai_credentials",
        "vertex_credentials",
    }
)
_CREDENTIAL_SUFFIXES: Final = ("_token", "_credentials", "_secret", "_password", "private_key")


def is_credential_param(name: str) -> bool:
    """Whether a litellm parameter (or a key inside a credentials mapping) holds a
    credential: ``api_key``, ``aws_secret_access_key``, ``vertex_credentials``, ..."""
    normal = name.lower().replace("-", "_")
    if "cost" in normal:  # input_cost_per_token is a price, not a token
        return False
    return (
        normal in _CREDENTIAL_PARAMS
        or tracing.is_secret_key(normal)
        or normal.endswith(_CREDENTIAL_SUFFIXES)
    )


def is_secret_header(name: str) -> bool:
    """Whether a header's value is a secret: all are, but ``Content-Type`` and the like."""
    return name.lower() not in _PUBLIC_HEADERS


def reveal(value: Any) -> Any:
    """``value`` with every pydantic secret inside it unwrapped (what litellm gets)."""
    if isinstance(value, SecretStr | Secret):
        return reveal(value.get_secret_value())
    if isinstance(value, Mapping):
        return {k: reveal(v) for k, v in value.items()}
    return value


def protect(name: str, value: Any) -> Any:
    """A litellm parameter as an Endpoint holds it: credentials and secret header values
    wrapped in pydantic secrets, anything else as it is."""
    if name in HEADER_PARAMS and isinstance(value, Mapping):
        return {
            k: SecretStr(v) if isinstance(v, str) and is_secret_header(str(k)) else v
            for k, v in value.items()
        }
    if is_credential_param(name):
        if isinstance(value, str):
            return SecretStr(value)
        if isinstance(value, Mapping):
            return Secret[dict[str, Any]](dict(value))
    return value


def _leaves(value: Any) -> Iterator[str]:
    """The secret strings inside a credential: the value itself and, for a credentials
    mapping (or its JSON text), the values of its credential keys."""
    value = reveal(value)
    if isinstance(value, str):
        yield value
        if value.lstrip().startswith("{"):
            try:
                parsed = json.loads(value)
            except ValueError:
                return
            yield from _mapping_leaves(parsed)
    elif isinstance(value, Mapping):
        yield from _mapping_leaves(value)


def _mapping_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if is_credential_param(str(k)):
                yield from _leaves(v)
            else:
                yield from _mapping_leaves(v)


def secret_values(params: Mapping[str, Any]) -> list[str]:
    """The plain secret strings among an endpoint's litellm parameters."""
    found: list[str] = []
    for name, value in params.items():
        if name in HEADER_PARAMS and isinstance(value, Mapping):
            found += (
                v for k, v in reveal(value).items() if isinstance(v, str) and is_secret_header(k)
            )
        elif is_credential_param(name):
            found += _leaves(value)
    return found


def redact_library_logs() -> None:
    """Filter the records of litellm's, httpx's, httpcore's and openai's loggers through
    ``tracing.redact`` (registered secrets included). Idempotent; agentflow calls it
    once, right after it imports litellm."""
    tracing.install_log_redaction(LIBRARY_LOGGERS)
