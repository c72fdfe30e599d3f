"""litellm, imported lazily with offline-safe settings.

``import litellm`` costs seconds and, without ``LITELLM_LOCAL_MODEL_COST_MAP=True``,
fetches a price map from the network. agentflow never imports it at ``import agentflow``;
``warm_up()`` imports it in a background thread once ``af.configure`` runs, so the first
call of a process does not pay for it inside a step's latency.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType

__all__ = ["imported", "litellm", "warm_up"]

_lock = threading.Lock()
_module: ModuleType | None = None


def litellm() -> ModuleType:
    """The litellm module, imported once with offline-safe settings."""
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

            from agentflow._secrets import redact_library_logs

            redact_library_logs()  # secrets never reach litellm's, httpx's or openai's logs
            mod.telemetry = False
            mod.suppress_debug_info = True
            mod.drop_params = False
            _module = mod
    return _module


_warming: threading.Thread | None = None


def warm_up() -> None:
    """Import litellm in a daemon thread (once), so the first call of a process does
    not spend ~3 s importing it inside a step's latency."""
    global _warming
    if _module is not None or _warming is not None:
        return
    _warming = threading.Thread(target=litellm, name="agentflow-litellm-import", daemon=True)
    _warming.start()


def imported() -> bool:
    """Whether litellm is imported already (the async driver never imports it on its loop)."""
    return _module is not None
