"""``RuleRouter``: hand-written rules on prompt length, step kind and keywords."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentflow._errors import ConfigError
from agentflow._policy import STEP_KINDS
from agentflow.routing._router import (
    check_choice,
    message_text,
    read_router_file,
    request_text,
    write_router_file,
)

__all__ = ["Rule", "RuleRouter"]


def _names(value: str | Iterable[str] | None, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"Rule({what}=...) takes a non-empty string or list of strings")
    return items


@dataclass(frozen=True)
class Rule:
    """Send a request to ``tier`` when every condition given holds.

    ``min_tokens`` / ``max_tokens``: the whole prompt's length in tokens (system prompt
    included, counted offline); ``min_chars`` / ``max_chars``: in characters.
    ``kinds``: the step kinds it applies to. ``keywords``: any of them in the user
    messages (case-insensitive). ``regex``: a pattern found in the user messages
    (``re.search``; add ``(?i)`` for case-insensitive).
    """

    tier: str
    min_tokens: int | None = None
    max_tokens: int | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    kinds: str | Sequence[str] | None = None
    keywords: str | Sequence[str] | None = None
    regex: str | None = None
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tier, str) or not self.tier:
            raise ConfigError(f"Rule(tier=...) needs a tier name, got {self.tier!r}")
        for low, high in (("min_tokens", "max_tokens"), ("min_chars", "max_chars")):
            lo, hi = getattr(self, low), getattr(self, high)
            for name, value in ((low, lo), (high, hi)):
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 0
                ):
                    raise ConfigError(f"Rule({name}={value!r}) must be a whole number >= 0")
            if lo is not None and hi is not None and lo > hi:
                raise ConfigError(
                    f"Rule({low}={lo}, {high}={hi}): the minimum is above the maximum"
                )
        kinds = _names(self.kinds, "kinds")
        if kinds is not None:
            unknown = [k for k in kinds if k not in STEP_KINDS]
            if unknown:
                raise ConfigError(
                    f"Rule(kinds=...) has unknown step kind(s) {unknown}; valid kinds are "
                    f"{', '.join(map(repr, STEP_KINDS))}"
                )
        object.__setattr__(self, "kinds", kinds)
        keywords = _names(self.keywords, "keywords")
        object.__setattr__(
            self, "keywords", None if keywords is None else tuple(k.casefold() for k in keywords)
        )
        if self.regex is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.regex))
            except (re.error, TypeError) as err:
                raise ConfigError(f"Rule(regex={self.regex!r}) does not compile: {err}") from None
        conditions = (
            self.min_tokens,
            self.max_tokens,
            self.min_chars,
            self.max_chars,
            self.kinds,
            self.keywords,
            self.regex,
        )
        if all(c is None for c in conditions):
            raise ConfigError(
                f"Rule({self.tier!r}) has no condition; give one (max_tokens=, kinds=, "
                "keywords=, regex=, ...) or make the tier the router's default="
            )

    @property
    def uses_tokens(self) -> bool:
        return self.min_tokens is not None or self.max_tokens is not None

    def matches(self, *, text: str, chars: int, tokens: int | None, kind: str) -> bool:
        """True when every condition holds for a request (``tokens`` None: not counted)."""
        if self.kinds is not None and kind not in self.kinds:
            return False
        if self.min_chars is not None and chars < self.min_chars:
            return False
        if self.max_chars is not None and chars > self.max_chars:
            return False
        if tokens is not None:
            if self.min_tokens is not None and tokens < self.min_tokens:
                return False
            if self.max_tokens is not None and tokens > self.max_tokens:
                return False
        if self.keywords is not None:
            folded = text.casefold()
            if not any(k in folded for k in self.keywords):
                return False
        return self._pattern is None or self._pattern.search(text) is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_pattern", None)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items() if v is not None}


class RuleRouter:
    """The first rule that matches picks the tier; ``default`` (None: the cheapest tier)
    when none does.

    ``token_model`` names the tokenizer the token rules count with (offline, see
    ``budgets.TokenCounter.for_model``).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        default: str | None = None,
        *,
        token_model: str = "gpt-4o",
    ) -> None:
        rules = list(rules)
        bad = [r for r in rules if not isinstance(r, Rule)]
        if bad:
            raise ConfigError(f"RuleRouter(rules=...) takes Rule objects, got {bad[0]!r}")
        if default is not None and (not isinstance(default, str) or not default):
            raise ConfigError(f"RuleRouter(default=...) must be a tier name, got {default!r}")
        self.rules = tuple(rules)
        self.default = default
        self.token_model = token_model

    def _tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        from budgets import TokenCounter

        return TokenCounter.for_model(self.token_model).count_messages(messages)

    def explain(
        self, messages: Sequence[Mapping[str, Any]], *, kind: str = "generic"
    ) -> tuple[int | None, str | None]:
        """(index of the first matching rule or None, its tier or the default)."""
        text = request_text(messages)
        chars = sum(len(message_text(m)) for m in messages)
        tokens = self._tokens(messages) if any(r.uses_tokens for r in self.rules) else None
        for index, rule in enumerate(self.rules):
            if rule.matches(text=text, chars=chars, tokens=tokens, kind=kind):
                return index, rule.tier
        return None, self.default

    def choose(
        self, messages: Sequence[Mapping[str, Any]], *, kind: str, tiers: Sequence[str]
    ) -> str:
        index, tier = self.explain(messages, kind=kind)
        if tier is None:
            return tiers[0]
        where = f"RuleRouter rule {index + 1}" if index is not None else "RuleRouter default"
        return check_choice(tier, tiers, where)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "rules",
            "rules": [r.to_dict() for r in self.rules],
            "default": self.default,
            "token_model": self.token_model,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleRouter:
        try:
            rules = [Rule(**r) for r in data["rules"]]
        except (KeyError, TypeError) as err:
            raise ConfigError(f"bad rules in the router file: {err}") from None
        return cls(rules, data.get("default"), token_model=data.get("token_model", "gpt-4o"))

    def save(self, path: str | Path) -> None:
        write_router_file(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RuleRouter:
        return cls.from_dict(read_router_file(path))

    def __repr__(self) -> str:
        return f"RuleRouter({len(self.rules)} rules, default={self.default!r})"
