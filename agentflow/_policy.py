"""Per-step policies: step kinds, caching, escalation and retries.

Each policy is validated when it is built, so a typo fails at decoration time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import tracing
from agentflow._errors import ConfigError, UnknownStepKindError, UnknownTierError
from agentflow._scoring import check_scorer, scorer_tiers
from agentflow._validate import check_bool, check_int, check_name, check_number, describe
from budgets import Budget

if TYPE_CHECKING:
    from agentflow._zoo import ModelZoo

__all__ = [
    "AUTO",
    "STEP_KINDS",
    "CacheControl",
    "CachePolicy",
    "Escalate",
    "OnBudget",
    "RetryPolicy",
    "StepKind",
    "StepPolicy",
    "cache_control",
    "check_kind",
    "coerce_cache",
]

StepKind = Literal["planning", "retrieval", "tool", "verification", "generic"]
STEP_KINDS: tuple[str, ...] = get_args(StepKind)
OnBudget = Literal["raise", "downgrade", "trim"]
AUTO = "auto"  # tier="auto": a router picks the tier per request
_ON_BUDGET: tuple[str, ...] = get_args(OnBudget)


def check_kind(kind: str) -> StepKind:
    if not isinstance(kind, str) or kind not in STEP_KINDS:
        raise UnknownStepKindError(kind, STEP_KINDS)
    return kind  # type: ignore[return-value]  # checked against the Literal's values above


def check_on_budget(value: str) -> OnBudget:
    if not isinstance(value, str) or value not in _ON_BUDGET:
        raise ConfigError(
            f"on_budget={value!r} is not a budget policy; use one of "
            f"{', '.join(map(repr, _ON_BUDGET))}"
        )
    return value  # type: ignore[return-value]  # checked against the Literal's values above


Scope = Literal["user", "session", "global"] | Callable[[Any], str]
Embedder = str | Callable[[list[str]], Any]
CacheText = Callable[[list[dict[str, Any]]], str]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How a step reuses answers.

    ``kind``: ``"exact"`` (the canonical request: tier, messages, tools, tool_choice,
    response_format, sampling parameters, step and tenant scope) or ``"semantic"``
    (embedding similarity of the step's cache text above ``threshold``).

    ``scope``: whose answers may be reused. ``"user"`` (the default) partitions by the
    run's ``user_id``, so tenants never share answers; ``"session"`` by ``session_id``;
    ``"global"`` shares across everyone; a function ``run -> str`` names an explicit
    partition (it receives the current ``af.Run`` or None).

    ``ttl``: seconds an answer stays valid (None: until evicted). ``allow_tool_calls``
    caches answers that call tools; ``allow_sampled`` caches calls with temperature > 0.
    ``embedder`` (semantic only): a zoo tier with an embeddings endpoint, or a function
    ``list[str] -> list[vector]`` (sync or async); None uses ``af.configure(embedder=...)``.
    ``text``: what the semantic cache embeds (default: the last user message).
    ``guard`` (semantic only): checks that turn a similar-looking hit into a miss when the
    two questions differ where embeddings are blind — ``"default"`` (numbers and
    negation), ``"all"`` (also units, dates and names), a tuple of those check names
    (``"numbers"``, ``"negation"``, ``"units"``, ``"dates"``, ``"entities"``), or
    ``None`` (off). Measured in docs/semantic-cache.md.
    """

    kind: Literal["exact", "semantic"] = "exact"
    threshold: float = 0.95
    ttl: float | None = None
    scope: Scope = "user"
    allow_tool_calls: bool = False
    allow_sampled: bool = False
    embedder: Embedder | None = None
    text: CacheText | None = None
    guard: str | tuple[str, ...] | None = "default"

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in ("exact", "semantic"):
            raise ConfigError(f"cache kind {self.kind!r} is unknown; use 'exact' or 'semantic'")
        check_number(
            "cache threshold",
            self.threshold,
            low=0.0,
            high=1.0,
            hint="pass the cosine similarity above which a cached answer is reused, e.g. 0.95",
        )
        check_ttl(self.ttl)
        if not callable(self.scope) and (
            not isinstance(self.scope, str) or self.scope not in ("user", "session", "global")
        ):
            raise ConfigError(
                f"cache scope {self.scope!r} is unknown; use 'user', 'session', 'global' or a "
                "function run -> partition name"
            )
        if self.embedder is not None and not (
            callable(self.embedder) or (isinstance(self.embedder, str) and self.embedder)
        ):
            raise ConfigError(
                "embedder must be a zoo tier name or a function list[str] -> list[vector], "
                f"got {describe(self.embedder)}; pass one of those or leave it out"
            )
        if self.text is not None and not callable(self.text):
            raise ConfigError(
                f"text must be a function messages -> str, got {describe(self.text)}; pass "
                "one, or leave it out to embed the last user message"
            )
        check_bool("cache allow_tool_calls", self.allow_tool_calls)
        check_bool("cache allow_sampled", self.allow_sampled)
        _check_guard(self.guard)


_GUARD_CHECKS = ("numbers", "negation", "units", "dates", "entities")


def _check_guard(guard: Any) -> None:
    if guard is None or guard in ("default", "all"):
        return
    if isinstance(guard, tuple | list) and all(
        isinstance(g, str) and g in _GUARD_CHECKS for g in guard
    ):
        return
    raise ConfigError(
        f"cache guard {guard!r} is unknown; use 'default', 'all', None, or a tuple of "
        f"check names from {_GUARD_CHECKS}"
    )


def check_ttl(ttl: Any) -> None:
    if ttl is not None:
        check_number(
            "cache ttl",
            ttl,
            low=0,
            low_open=True,
            hint="seconds an answer stays valid; use None to keep it until evicted",
        )


_CACHE_HELP = (
    "use 'exact', 'semantic', af.CachePolicy(...) or None on a step; per call also "
    "'bypass' (neither read nor write), 'refresh' (do not read, write the new answer) or "
    "litellm's {'no-cache': bool, 'no-store': bool, 'ttl': seconds}"
)


def coerce_cache(cache: str | CachePolicy | bool | None) -> CachePolicy | None:
    if cache is None or cache is False:
        return None
    if isinstance(cache, CachePolicy):
        return cache
    if cache == "exact" or cache == "semantic":
        return CachePolicy(kind=cache)
    raise ConfigError(f"cache={cache!r} is not a cache policy; {_CACHE_HELP}")


@dataclass(frozen=True, slots=True)
class CacheControl:
    """One call's cache switches: read the cache? write the answer? with which ttl?"""

    policy: CachePolicy | None
    read: bool = True
    write: bool = True
    ttl: float | None = None


def cache_control(step_policy: CachePolicy | None, value: Any) -> CacheControl:
    """Combine the step's policy with a per-call ``cache=`` argument."""
    if value is None:
        return CacheControl(step_policy)
    if value is False or (isinstance(value, str) and value == "bypass"):
        return CacheControl(step_policy, read=False, write=False)
    if isinstance(value, str) and value == "refresh":
        return CacheControl(step_policy, read=False)
    if isinstance(value, dict):
        unknown = set(value) - {"no-cache", "no-store", "ttl", "s-maxage"}
        if unknown:
            raise ConfigError(f"unknown cache option(s) {sorted(map(str, unknown))}; {_CACHE_HELP}")
        for switch in ("no-cache", "no-store"):
            if switch in value:
                check_bool(f"cache[{switch!r}]", value[switch])
        ttl = value.get("ttl")
        check_ttl(ttl)
        return CacheControl(
            step_policy,
            read=not value.get("no-cache", False),
            write=not value.get("no-store", False),
            ttl=ttl,
        )
    return CacheControl(coerce_cache(value))


Scorer = str | Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Escalate:
    """Confidence escalation: a cheap tier answers; below ``min_confidence`` the request
    climbs the zoo's order, up to ``up_to`` (default: the strongest tier).

    ``scorer``: ``"logprob"`` (mean token probability), ``"logprob_min"``, a function
    (sync or async) taking the ``Completion`` and returning a float in [0, 1] or a bool,
    or a scorer from ``agentflow.scorers`` (schema, judge, agreement, combinations).
    ``max_attempts`` caps the tiers tried. When no tier is confident,
    ``on_unconfident="return"`` gives the best answer flagged ``confident=False``;
    ``"raise"`` raises ``CallError``. A scorer that raises makes the answer unconfident
    (the error is recorded on its span) unless ``on_scorer_error="raise"``.

    ``stream``: what ``af.complete(..., stream=True)`` does in the step. ``"direct"``
    (the default) streams the step's tier as it generates, unscored; ``"buffer"`` holds
    the chunks back until the scorer accepts an answer, climbing like a plain call,
    then replays the accepted answer as chunks (its time to first token is the climb's).
    """

    min_confidence: float = 0.8
    scorer: Scorer = "logprob"
    up_to: str | None = None
    max_attempts: int | None = None
    on_unconfident: Literal["return", "raise"] = "return"
    on_scorer_error: Literal["unconfident", "raise"] = "unconfident"
    stream: Literal["direct", "buffer"] = "direct"

    def __post_init__(self) -> None:
        if (
            isinstance(self.min_confidence, bool)
            or not isinstance(self.min_confidence, int | float)
            or not 0.0 <= self.min_confidence <= 1.0
        ):
            raise ConfigError(
                f"min_confidence must be in [0, 1], got {self.min_confidence!r}; "
                "it is compared with a probability-like score: pass e.g. 0.8"
            )
        check_scorer(self.scorer)
        check_name(
            "escalate up_to",
            self.up_to,
            hint="name the strongest zoo tier to climb to, or leave it out for the top tier",
        )
        if self.max_attempts is not None:
            check_int(
                "escalate max_attempts",
                self.max_attempts,
                hint="it caps the tiers tried; leave it out for no cap",
            )
        if self.on_unconfident not in ("return", "raise"):
            raise ConfigError(
                f"on_unconfident must be 'return' or 'raise', got "
                f"{describe(self.on_unconfident)}; use one of those two"
            )
        if self.on_scorer_error not in ("unconfident", "raise"):
            raise ConfigError(
                "on_scorer_error must be 'unconfident' or 'raise', got "
                f"{describe(self.on_scorer_error)}; use one of those two"
            )
        if not isinstance(self.stream, str) or self.stream not in ("direct", "buffer"):
            raise ConfigError(
                f"escalate stream must be 'direct' or 'buffer', got {describe(self.stream)}; "
                "use 'buffer' to score (and escalate) a streamed answer before its first "
                "chunk, or leave it out to stream the step's tier unscored"
            )


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
        check_int("retry max_attempts", self.max_attempts, hint="pass e.g. 3 (1 means no retries)")
        check_number(
            "retry initial_backoff", self.initial_backoff, low=0, hint="pass seconds, e.g. 0.5"
        )
        check_number("retry max_backoff", self.max_backoff, low=0, hint="pass seconds, e.g. 8")
        if self.max_backoff < self.initial_backoff:
            raise ConfigError(
                f"retry needs initial_backoff <= max_backoff, got {self.initial_backoff} > "
                f"{self.max_backoff}; pass a max_backoff of at least initial_backoff"
            )
        check_number(
            "retry max_time",
            self.max_time,
            low=0,
            low_open=True,
            hint="pass the seconds one call may take with all its retries, e.g. 120 (a "
            "large value, not nan or inf, for a generous limit)",
        )
        check_number(
            "retry max_retry_after",
            self.max_retry_after,
            low=0,
            hint="pass the longest Retry-After (seconds) to wait before failing over, e.g. 30",
        )


@dataclass(eq=False)
class StepPolicy:
    """Everything a decorated step says about its model calls."""

    name: str
    kind: StepKind
    tier: str | None = None
    budget: Budget | None = None
    cache: CachePolicy | None = None
    escalate: Escalate | None = None
    prefix_cache: bool = True
    on_budget: OnBudget = "raise"
    router: Any = None

    def __post_init__(self) -> None:
        self.attributes = tracing.step_attributes(name=self.name, kind=self.kind, tier=self.tier)

    def check(self, zoo: ModelZoo) -> None:
        """Fail now, naming this step, if a tier it names is not in the zoo."""
        where = f"step {self.name!r}"
        embedder = self.cache.embedder if self.cache else None
        tier = None if self.tier == AUTO else self.tier
        judges = scorer_tiers(self.escalate.scorer) if self.escalate else ()
        for name in (
            tier,
            self.escalate.up_to if self.escalate else None,
            embedder if isinstance(embedder, str) else None,
            *judges,
        ):
            if name is not None and name not in zoo.names:
                raise UnknownTierError(name, zoo.names, where=where)
        up_to = self.escalate.up_to if self.escalate else None
        if up_to and tier and zoo.index(up_to) < zoo.index(tier):
            raise ConfigError(
                f"{where}: escalate up_to={up_to!r} is below the step's tier "
                f"{self.tier!r}; the zoo's order is {list(zoo.names)}"
            )
