"""Warnings agentflow raises when it had to guess or cut, each once per endpoint or step.

UserWarning
 ├── UsageEstimatedWarning   an engine answered without usage: tokens were counted
 └── BudgetCapWarning        an answer was cut short by a budget's max_tokens cap
"""

from __future__ import annotations

import threading
import warnings

from agentflow._errors import AgentflowError

__all__ = ["BudgetCapWarning", "UsageEstimatedWarning", "reset_warned", "warn_once"]


class UsageEstimatedWarning(AgentflowError, UserWarning):
    """An endpoint answered without ``usage``: agentflow counted the prompt and the
    reply itself and priced that (``Completion.usage_estimated`` and the span's
    ``agentflow.usage.estimated`` say so). Emitted once per endpoint."""


class BudgetCapWarning(AgentflowError, UserWarning):
    """An answer stopped at the ``max_tokens`` a budget allowed, not the caller's:
    ``finish_reason`` is ``"length"`` and the span has ``agentflow.budget.capped``.
    Emitted once per step (or endpoint outside a step)."""


_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def warn_once(category: type[UserWarning], key: str, message: str) -> None:
    """Warn ``message`` the first time ``(category, key)`` is seen in this process."""
    with _lock:
        if (category.__name__, key) in _warned:
            return
        _warned.add((category.__name__, key))
    warnings.warn(message, category, stacklevel=4)


def reset_warned() -> None:
    """Warn again about what was warned about already (testing)."""
    with _lock:
        _warned.clear()
