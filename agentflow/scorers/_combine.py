"""Combinations of scorers: ``all_of`` (min), ``any_of`` (max), ``weighted`` (mean).

Parts run in the order given, so put cheap scorers (a schema check, logprobs) before
costly ones (a judge): ``all_of`` stops at the first part that says 0 or cannot tell,
``any_of`` at the first that says 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentflow._errors import ConfigError
from agentflow._scoring import Messages, Scorer, as_scorer, finish_score

if TYPE_CHECKING:
    from agentflow._completion import Completion

__all__ = ["AllOf", "AnyOf", "Combination", "Weighted", "all_of", "any_of", "weighted"]


class Combination(Scorer):
    """Scores ``parts`` in order and combines their confidences."""

    label = "combination"

    def __init__(self, parts: Sequence[tuple[Scorer, float]]) -> None:
        if not parts:
            raise ConfigError(f"{self.label}() needs at least one scorer")
        self.parts = tuple(parts)

    @property
    def scorers(self) -> tuple[Scorer, ...]:
        return tuple(scorer for scorer, _ in self.parts)

    @property
    def needs_logprobs(self) -> bool:
        return any(s.needs_logprobs for s in self.scorers)

    def tiers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for s in self.scorers for t in s.tiers()))

    def combine(self, values: Sequence[float | None]) -> float | None:
        raise NotImplementedError

    def settled(self, values: Sequence[float | None]) -> bool:
        """True when the parts not run yet cannot change the result."""
        return False

    def start(
        self, completion: Completion, *, use_async: bool, messages: Messages | None = None
    ) -> Any:
        if use_async:
            return self._finish(completion, messages, [], None, 0, use_async=True)
        values: list[float | None] = []
        for index, scorer in enumerate(self.scorers):
            value = scorer.start(completion, use_async=False, messages=messages)
            if inspect.isawaitable(value):  # an async part: the rest runs in the coroutine
                return self._finish(completion, messages, values, value, index + 1, False)
            values.append(finish_score(value))
            if self.settled(values):
                break
        return self.combine(values)

    def score(self, completion: Completion, messages: Messages | None) -> float | None:
        return self(completion, messages)

    async def _finish(
        self,
        completion: Completion,
        messages: Messages | None,
        values: list[float | None],
        pending: Any,
        index: int,
        use_async: bool,
    ) -> float | None:
        values = list(values)
        if pending is not None:
            values.append(finish_score(await pending))
        for scorer in self.scorers[index:]:
            if self.settled(values):
                break
            value = scorer.start(completion, use_async=use_async, messages=messages)
            if inspect.isawaitable(value):
                value = await value
            values.append(finish_score(value))
        return self.combine(values)

    def __repr__(self) -> str:
        return f"{self.label}({', '.join(map(repr, self.scorers))})"


class AllOf(Combination):
    """The lowest confidence; unknown (None) if any part cannot tell."""

    label = "all_of"

    def combine(self, values: Sequence[float | None]) -> float | None:
        if any(v is None for v in values):
            return None
        return min(v for v in values if v is not None)

    def settled(self, values: Sequence[float | None]) -> bool:
        return bool(values) and (values[-1] is None or values[-1] == 0.0)


class AnyOf(Combination):
    """The highest confidence among the parts that can tell; None if none can."""

    label = "any_of"

    def combine(self, values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    def settled(self, values: Sequence[float | None]) -> bool:
        return bool(values) and values[-1] == 1.0


class Weighted(Combination):
    """The weighted mean of the parts' confidences; a part that cannot tell counts as 0."""

    label = "weighted"

    def __init__(self, parts: Sequence[tuple[Scorer, float]]) -> None:
        super().__init__(parts)
        if sum(w for _, w in self.parts) <= 0:
            raise ConfigError("weighted() needs at least one weight above 0")

    def combine(self, values: Sequence[float | None]) -> float | None:
        weights = [w for _, w in self.parts]
        total = sum(weights)
        mean = sum(w * (v or 0.0) for w, v in zip(weights, values, strict=True)) / total
        return min(1.0, max(0.0, mean))  # rounding must not leave [0, 1]

    def __repr__(self) -> str:
        inner = ", ".join(f"{s!r}: {w}" for s, w in self.parts)
        return f"weighted({{{inner}}})"


def _part(scorer: Any, where: str) -> Scorer:
    try:
        return as_scorer(scorer)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def all_of(*scorers: Any) -> AllOf:
    """Confident only if every scorer is: the minimum of their confidences."""
    return AllOf([(_part(s, f"all_of() scorer {i + 1}"), 1.0) for i, s in enumerate(scorers)])


def any_of(*scorers: Any) -> AnyOf:
    """Confident if any scorer is: the maximum of their confidences."""
    return AnyOf([(_part(s, f"any_of() scorer {i + 1}"), 1.0) for i, s in enumerate(scorers)])


def weighted(parts: Mapping[Any, float] | Iterable[tuple[Any, float]]) -> Weighted:
    """The weighted mean of several scorers' confidences, weights in [0, 1]:
    ``weighted({scorers.logprob(): 0.3, scorers.judge(tier="heavy"): 0.7})`` or a list
    of ``(scorer, weight)`` pairs."""
    items = list(parts.items()) if isinstance(parts, Mapping) else list(parts)
    checked: list[tuple[Scorer, float]] = []
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ConfigError(
                f"weighted() part {i + 1} is {item!r}; give {{scorer: weight}} or a list "
                "of (scorer, weight) pairs"
            )
        scorer, weight = item
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0.0 <= weight <= 1.0
        ):
            raise ConfigError(f"weighted() weight of {scorer!r} must be in [0, 1], got {weight!r}")
        checked.append((_part(scorer, f"weighted() part {i + 1}"), float(weight)))
    return Weighted(checked)
