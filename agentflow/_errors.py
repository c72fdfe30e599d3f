"""agentflow's errors. Every one derives from ``AgentflowError``.

    AgentflowError
    ├── ConfigError                 bad zoo, tier, endpoint, pricing or policy (raised at
    │   ├── UnknownTierError        decoration or configure time)
    │   └── UnknownStepKindError
    ├── NotConfiguredError          af.complete before af.configure
    ├── CallError                   a model call failed after retries and failover
    ├── ResponseValidationError     a reply did not validate against response_format
    ├── BudgetExceededError         also a budgets.BudgetExceeded
    ├── CacheKeyError               a request part cannot be serialised into a cache key
    │   └── MessageContentError     a message's content is neither text nor content parts
    │                               (also a ConfigError; raised before any call)
    ├── CacheBackendError           a cache backend is down or refused (the call goes on
    │                               without the cache, with a warning)
    ├── ScorerError                 a scorer raised (only when the step says raise)
    └── LocalServerError            a local llama-server failed to install or start

Messages say what was expected, what came, and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

from budgets import BudgetExceeded

__all__ = [
    "AgentflowError",
    "BudgetExceededError",
    "CacheBackendError",
    "CacheKeyError",
    "CallError",
    "ConfigError",
    "ContextWindowError",
    "LocalServerError",
    "MessageContentError",
    "NotConfiguredError",
    "ResponseValidationError",
    "ScorerError",
    "UnknownStepKindError",
    "UnknownTierError",
]


class AgentflowError(Exception):
    """Root of every error agentflow raises."""


class ConfigError(AgentflowError, ValueError):
    """The zoo, a tier, an endpoint or a step policy is invalid."""


class UnknownTierError(ConfigError):
    def __init__(self, name: str, valid: Iterable[str], where: str | None = None) -> None:
        self.name = name
        self.valid = tuple(valid)
        self.where = where
        at = f"{where}: " if where else ""
        super().__init__(
            f"{at}unknown tier {name!r}; the zoo has {', '.join(map(repr, self.valid))}. "
            "Use one of those names or add the tier to the zoo."
        )


class UnknownStepKindError(ConfigError):
    def __init__(self, kind: str, valid: Iterable[str]) -> None:
        self.kind = kind
        self.valid = tuple(valid)
        super().__init__(
            f"unknown step kind {kind!r}; valid kinds are {', '.join(map(repr, self.valid))}. "
            "Use one of them, or a preset: @af.plan, @af.retrieve, @af.tool, @af.verify."
        )


class NotConfiguredError(AgentflowError, RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "agentflow has no model zoo yet: call af.configure(zoo=af.ModelZoo(...)) or "
            "af.configure(path='agentflow.toml'), or set AGENTFLOW_CONFIG to a TOML file, "
            "before af.complete()."
        )


class CallError(AgentflowError):
    """Every attempt of a model call failed (retries, replicas and fallback tiers)."""

    def __init__(self, message: str, attempts: Iterable[object] = ()) -> None:
        self.attempts = list(attempts)
        super().__init__(message)


class ContextWindowError(CallError):
    """The prompt plus ``max_tokens`` does not fit the context window of a tier, its
    fallbacks, or any stronger tier the call could move up to."""


class ResponseValidationError(AgentflowError, ValueError):
    """The model's reply did not validate against the requested response_format."""

    def __init__(self, message: str, text: str) -> None:
        self.text = text
        super().__init__(message)


class BudgetExceededError(AgentflowError, BudgetExceeded):
    """A budget refused a call (catch ``budgets.BudgetExceeded`` or this)."""


class LocalServerError(AgentflowError, RuntimeError):
    """A local llama-server could not be installed or started."""


class CacheKeyError(AgentflowError, TypeError):
    """A part of the request cannot be serialised into a cache key.

    ``part`` names it (``messages[2].content``, ``tools``, ``response_format``...).
    """

    def __init__(self, part: str, value: object, reason: str = "") -> None:
        self.part = part
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"cannot build a cache key: {part} is a {type(value).__name__}, which has no "
            f"canonical JSON form{why}. Pass JSON-compatible values (str, numbers, lists, "
            "dicts, a pydantic model class for response_format) or turn the cache off for "
            "this step (cache=None)."
        )


class MessageContentError(ConfigError, CacheKeyError):
    """A message's content is neither a str nor a list of content parts.

    Raised before the request is built, so before any call or cache lookup; it is a
    ``ConfigError`` (malformed input) and, as before this check existed, a ``CacheKeyError``
    naming the part in ``part``.
    """

    def __init__(self, part: str, message: str) -> None:
        self.part = part
        Exception.__init__(self, message)


class CacheBackendError(AgentflowError, RuntimeError):
    """A cache backend failed; the pipeline goes on without the cache and warns."""


class ScorerError(AgentflowError):
    """A scorer raised and the step's escalation says ``on_scorer_error="raise"``."""
