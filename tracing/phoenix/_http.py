"""A tiny JSON-over-HTTP client for Phoenix's REST and GraphQL APIs (stdlib only)."""

from __future__ import annotations

import ipaddress
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from tracing._errors import PhoenixError
from tracing._redact import redact

__all__ = ["get_json", "graphql", "post_json"]


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    key = api_key if api_key is not None else os.environ.get("PHOENIX_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _request(
    method: str,
    url: str,
    *,
    body: Mapping[str, Any] | None,
    api_key: str | None,
    timeout: float,
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=_headers(api_key))
    # A loopback Phoenix is never reached through an HTTP proxy from the environment.
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(url) else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as error:
        detail = redact(error.read().decode(errors="replace")[:500])
        raise PhoenixError(
            f"Phoenix answered {method} {url} with HTTP {error.code}: {detail}. "
            "Check the URL and, if Phoenix has auth enabled, PHOENIX_API_KEY."
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise PhoenixError(
            f"could not reach Phoenix at {url}: {error}. Is it running? "
            "(tracing.phoenix.PhoenixServer starts one.)"
        ) from None
    try:
        return json.loads(payload)
    except json.JSONDecodeError:
        raise PhoenixError(
            f"Phoenix answered {method} {url} with something that is not JSON: "
            f"{payload[:200]!r}. Is base_url Phoenix's root URL?"
        ) from None


def get_json(url: str, *, api_key: str | None = None, timeout: float = 10.0) -> Any:
    return _request("GET", url, body=None, api_key=api_key, timeout=timeout)


def post_json(
    url: str, body: Mapping[str, Any], *, api_key: str | None = None, timeout: float = 10.0
) -> Any:
    return _request("POST", url, body=body, api_key=api_key, timeout=timeout)


def graphql(
    base_url: str,
    query: str,
    variables: Mapping[str, Any] | None = None,
    *,
    api_key: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """POST a GraphQL query to ``{base_url}/graphql``; its ``data``, or PhoenixError."""
    body: dict[str, Any] = {"query": query}
    if variables:
        body["variables"] = dict(variables)
    answer = post_json(base_url.rstrip("/") + "/graphql", body, api_key=api_key, timeout=timeout)
    if not isinstance(answer, dict):
        raise PhoenixError(f"Phoenix's GraphQL answer is not an object: {answer!r:.200}")
    if answer.get("errors"):
        messages = "; ".join(str(e.get("message", e)) for e in answer["errors"])
        raise PhoenixError(f"Phoenix's GraphQL API refused the request: {messages}")
    data = answer.get("data")
    if not isinstance(data, dict):
        raise PhoenixError(f"Phoenix's GraphQL answer has no data: {answer!r:.200}")
    return data
