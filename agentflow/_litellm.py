"""litellm, imported lazily with offline-safe settings.

``import litellm`` costs seconds and, without ``LITELLM_LOCAL_MODEL_COST_MAP=True``,
fetches a price map from the network. agentflow never imports it at ``import agentflow``.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

__all__ = ["classify", "litellm", "retry_after"]

_lock = threading.Lock()
_module: ModuleType | None = None


def litellm() -> ModuleType:
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            # litellm overwrites TIKTOKEN_CACHE_DIR with its bundled encodings; keep ours
            custom = os.environ.get("TIKTOKEN_CACHE_DIR")
            if custom and "CUSTOM_TIKTOKEN_CACHE_DIR" not in os.environ:
                os.environ["CUSTOM_TIKTOKEN_CACHE_DIR"] = custom
            import litellm as mod

            mod.telemetry = False
            mod.suppress_debug_info = True
            mod.drop_params = False
            _module = mod
    return _module


_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def status_code(err: BaseException) -> int | None:
    code = getattr(err, "status_code", None)
    return code if isinstance(code, int) else None


def classify(err: BaseException) -> str:
    """``"retry"`` (transient: same endpoint again), ``"failover"`` (this endpoint is
    gone: try the next) or ``"fatal"`` (the request itself is wrong: stop)."""
    name = type(err).__name__
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
        return None
