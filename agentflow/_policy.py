"""Per-step policies: step kinds, caching, escalation and retries.

Each policy is validated when it is built, so a typo fails at decoration time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from agentflow._errors import ConfigError, UnknownStepKindError

__all__ = [
    "STEP_KINDS",
    "CachePolicy",
    "Escalate",
    "OnBudget",
    "RetryPolicy",
    "StepKind",
    "check_kind",
    "coerce_cache",
]

StepKind = Literal["planning", "retrieval", "tool", "verification", "generic"]
STEP_KINDS: tuple[str, ...] = get_args(StepKind)
OnBudget = Literal["raise", "downgrade", "trim"]
_ON_BUDGET: tuple[str, ...] = get_args(OnBudget)


def check_kind(kind: str) -> StepKind:
    if kind not in STEP_KINDS:
        raise UnknownStepKindError(kind, STEP_KINDS)
    return kind  # type: ignore[return-value]  # checked against the Literal's values above


def check_on_budget(value: str) -> OnBudget:
    if value not in _ON_BUDGET:
        raise ConfigError(
            f"on_budget={value!r} is not a budget policy; use one of {', '.join(_ON_BUDGET)}"
        )
    return value  # type: ignore[return-value]  # checked against the Literal's values above


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How a step reuses answers.

    ``kind``: ``"exact"`` (the canonical request) or ``"semantic"`` (embedding
    similarity above ``threshold``). ``scope="user"`` partitions by the run's user, so
    tenants never share answers; ``"global"`` shares across users.
    """

    kind: Literal["exact", "semantic"] = "exact"
    threshold: float = 0.95
    ttl: float | None = None
    scope: Literal["user", "session", "global"] = "user"
    allow_tool_calls: bool = False
    allow_sampled: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("exact", "semantic"):
            raise ConfigError(f"cache kind {self.kind!r} is unknown; use 'exact' or 'semantic'")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"cache threshold must be in [0, 1], got {self.threshold}")
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigError(f"cache ttl must be a positive number of seconds, got {self.ttl}")
        if self.scope not in ("user", "session", "global"):
            raise ConfigError(f"cache scope {self.scope!r} is unknown; use user, session or global")


def coerce_cache(cache: str | CachePolicy | bool | None) -> CachePolicy | None:
    if cache is None or cache is False:
        return None
    if isinstance(cache, CachePolicy):
        return cache
    if cache in ("exact", "semantic"):
        return CachePolicy(kind=cache)
    raise ConfigError(
        f"cache={cache!r} is not a cache policy; use 'exact', 'semantic', "
        "af.CachePolicy(...) or None"
    )


Scorer = str | Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Escalate:
    """Confidence escalation: a cheap tier answers; below ``min_confidence`` the request
    climbs the zoo's order, up to ``up_to`` (default: the strongest tier)."""

    min_confidence: float = 0.8
    scorer: Scorer = "logprob"
    up_to: str | None = None
    max_attempts: int | None = None
    on_unconfident: Literal["return", "raise"] = "return"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(
                f"min_confidence must be in [0, 1], got {self.min_confidence}; "
                "it is compared with a probability-like score"
            )
        if isinstance(self.scorer, str) and self.scorer not in ("logprob", "logprob_min"):
            raise ConfigError(
                f"unknown scorer {self.scorer!r}; use 'logprob', 'logprob_min' or a function "
                "taking the Completion and returning a float in [0, 1] or a bool"
            )
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.on_unconfident not in ("return", "raise"):
            raise ConfigError("on_unconfident must be 'return' or 'raise'")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one endpoint before failing over to the next replica.

    Rate limits (honouring ``Retry-After``), 5xx, timeouts and connection errors are
    retried with jittered exponential backoff, at most ``max_attempts`` times per
    endpoint and ``max_time`` seconds per call in all.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_time: float = 120.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ConfigError("need 0 <= initial_backoff <= max_backoff")
        if self.max_time <= 0:
            raise ConfigError(f"max_time must be positive, got {self.max_time}")
