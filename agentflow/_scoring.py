"""Stage 6, score: how confident is an answer? (logprobs or the step's own function)."""

from __future__ import annotations

import inspect
import math
from typing import Any

from agentflow._completion import Completion
from agentflow._errors import ConfigError
from agentflow._policy import Escalate

__all__ = ["finish_score", "start_score"]


def _from_logprobs(completion: Completion, how: str) -> float | None:
    lps = completion.logprobs
    if not lps:
        return None  # the engine returned no logprobs: treated as unconfident
    if how == "logprob_min":
        return math.exp(min(lps))
    return math.exp(sum(lps) / len(lps))


def start_score(escalate: Escalate, completion: Completion) -> Any:
    """The score, or an awaitable of it when the scorer is async."""
    scorer = escalate.scorer
    if isinstance(scorer, str):
        return _from_logprobs(completion, scorer)
    return scorer(completion)


def finish_score(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"a scorer must return a bool or a float in [0, 1], got {value!r}")
    return float(value)


def is_awaitable(value: Any) -> bool:
    return inspect.isawaitable(value)
