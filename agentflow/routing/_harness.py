"""The offline harness: cost/quality curves of routing policies on labelled outcomes.

From each prompt's result at each tier it computes, as (mean cost per prompt, share
answered correctly) points:

* each single tier (always the cheapest, ..., always the strongest);
* the **cascade** at thresholds t, as ``af.Escalate(min_confidence=t)`` runs it: answer
  at the cheapest tier, climb while the answer's confidence < t (unknown climbs), pay
  for every tier tried; when no tier reaches t, the most confident answer is kept;
* a learned **router** at thresholds t, cross-validated: each prompt is routed by a
  router trained on the other folds, never on itself;
* the **oracle**: the cheapest correct tier (the cheapest tier when none is correct).

The "strongest" tier is the last (most expensive) one. For each curve the harness
reports the cheapest *measured* operating point whose quality is at least the strongest
tier's (the nearest point, not an interpolation between points), its cost reduction
against always using the strongest tier, and the share of the oracle's saving it
captures. When a cheaper tier is more accurate than the strongest, the same figures are
given at that best single tier's quality too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from agentflow._errors import ConfigError
from agentflow.routing._learned import LearnedRouter, pick_tiers, train_router
from agentflow.routing._outcomes import Outcomes

__all__ = [
    "Curve",
    "HarnessReport",
    "Point",
    "cascade_curve",
    "cross_validated_probabilities",
    "evaluate",
    "oracle_point",
    "router_curve",
    "tier_points",
]

CurveKind = Literal["tier", "cascade", "router", "oracle"]
_EPS = 1e-12


@dataclass(frozen=True)
class Point:
    """One operating point: mean cost per prompt, share correct, and the threshold (or
    tier) that gives it."""

    cost: float
    quality: float
    threshold: float | None = None
    label: str = ""


@dataclass(frozen=True)
class Curve:
    name: str
    kind: CurveKind
    points: tuple[Point, ...]

    def cheapest_at(self, quality: float) -> Point | None:
        """The cheapest measured point with at least ``quality`` (None if none has)."""
        good = [p for p in self.points if p.quality >= quality - _EPS]
        return min(good, key=lambda p: (p.cost, -p.quality)) if good else None


@dataclass(frozen=True)
class HarnessReport:
    outcomes: Outcomes
    curves: tuple[Curve, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def strongest(self) -> Point:
        """Always the last (most expensive) tier."""
        return self.curve(f"always {self.outcomes.tiers[-1]}").points[0]

    @property
    def best_tier(self) -> Point:
        """The most accurate single tier (the cheaper one on ties)."""
        tiers = [c.points[0] for c in self.curves if c.kind == "tier"]
        return max(tiers, key=lambda p: (p.quality, -p.cost))

    @property
    def oracle(self) -> Point:
        return self.curve("oracle").points[0]

    def curve(self, name: str) -> Curve:
        for c in self.curves:
            if c.name == name:
                return c
        raise KeyError(f"no curve {name!r}; curves: {[c.name for c in self.curves]}")

    def references(self) -> list[Point]:
        """The strongest tier, and the best single tier when it is more accurate."""
        refs = [self.strongest]
        if self.best_tier.quality > self.strongest.quality + _EPS:
            refs.append(self.best_tier)
        return refs

    def at_quality(self, curve: Curve, reference: Point | None = None) -> Point | None:
        """The cheapest point of ``curve`` at least as good as ``reference`` (default:
        the strongest tier)."""
        return curve.cheapest_at((reference or self.strongest).quality)

    def cost_reduction(self, curve: Curve, reference: Point | None = None) -> float | None:
        """1 - cost / the reference's cost, at the reference's quality (None: the curve
        never reaches it). The reference defaults to the strongest tier."""
        ref = reference or self.strongest
        point = self.at_quality(curve, ref)
        if point is None or ref.cost <= 0:
            return None
        return 1.0 - point.cost / ref.cost

    def oracle_share(self, curve: Curve, reference: Point | None = None) -> float | None:
        """The share of the oracle's saving (against the reference, default the strongest
        tier) that the curve captures at the reference's quality."""
        ref = reference or self.strongest
        point = self.at_quality(curve, ref)
        saving = ref.cost - self.oracle.cost
        if point is None or saving <= 0:
            return None
        return (ref.cost - point.cost) / saving

    def render(self) -> str:
        """The report as plain text: each policy's best point, then the figures at the
        strongest tier's quality (and at the best single tier's, if different)."""
        o = self.outcomes
        lines = [
            f"{len(o.prompts)} prompts × {len(o.tiers)} tiers, cheapest first: "
            + ", ".join(o.tiers),
            "",
            f"{'policy':<34}{'points':>7}{'best quality':>14}{'at cost/prompt':>16}"
            f"{'threshold':>11}",
        ]
        for c in self.curves:
            top = max(c.points, key=lambda p: (p.quality, -p.cost))
            lines.append(
                f"{c.name:<34}{len(c.points):>7}{top.quality:>14.1%}{_usd(top.cost):>16}"
                f"{_threshold(top.threshold):>11}"
            )
        for ref in self.references():
            which = "strongest" if ref is self.strongest else "best single"
            lines += [
                "",
                f"At the {which} tier's quality ({ref.quality:.1%}: always {ref.label} at "
                f"{_usd(ref.cost)}/prompt), the cheapest measured point of each policy",
                "(the nearest operating point, not interpolated):",
                "",
                f"{'policy':<34}{'threshold':>10}{'cost/prompt':>13}{'quality':>9}"
                f"{'cost cut':>10}{'of oracle':>11}",
            ]
            for c in self.curves:
                p = self.at_quality(c, ref)
                if p is None:
                    lines.append(f"{c.name:<34}{'does not reach that quality':>53}")
                    continue
                lines.append(
                    f"{c.name:<34}{_threshold(p.threshold):>10}{_usd(p.cost):>13}"
                    f"{p.quality:>9.1%}{_pct(self.cost_reduction(c, ref)):>10}"
                    f"{_pct(self.oracle_share(c, ref)):>11}"
                )
        lines += ["", *self.notes] if self.notes else []
        return "\n".join(lines).rstrip() + "\n"


def _usd(value: float) -> str:
    return f"${value:.3g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _threshold(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.3g}"


def tier_points(outcomes: Outcomes) -> list[Curve]:
    """Always one tier, for each tier."""
    return [
        Curve(
            f"always {tier}",
            "tier",
            (
                Point(
                    float(outcomes.cost[:, j].mean()),
                    float(outcomes.correct[:, j].mean()),
                    None,
                    tier,
                ),
            ),
        )
        for j, tier in enumerate(outcomes.tiers)
    ]


def oracle_point(outcomes: Outcomes) -> Curve:
    """Per prompt, the cheapest tier that answered correctly; the cheapest tier when none
    did (by each prompt's own costs)."""
    correct, cost = outcomes.correct, outcomes.cost
    choice = np.where(
        correct.any(axis=1), np.where(correct, cost, np.inf).argmin(axis=1), cost.argmin(axis=1)
    )
    rows = np.arange(len(choice))
    point = Point(float(cost[rows, choice].mean()), float(correct.any(axis=1).mean()))
    return Curve("oracle", "oracle", (point,))


def _thresholds(values: np.ndarray) -> list[float]:
    finite = np.unique(values[np.isfinite(values)])
    return sorted({0.0, *finite.tolist(), math.inf})


def _dedupe(points: list[Point]) -> tuple[Point, ...]:
    seen: dict[tuple[float, float], Point] = {}
    for p in points:
        seen.setdefault((round(p.cost, 15), round(p.quality, 12)), p)
    return tuple(sorted(seen.values(), key=lambda p: (p.cost, p.quality)))


def cascade_curve(outcomes: Outcomes) -> Curve:
    """``af.Escalate(min_confidence=t)`` at each distinct threshold t: answer at the
    cheapest tier, climb while the confidence is below t or unknown, pay for every tier
    tried; when no tier reaches t, keep the most confident answer (unknown counts as 0,
    the cheaper one wins ties), as the pipeline does."""
    passes_at = np.nan_to_num(outcomes.confidence, nan=-1.0)  # unknown never passes
    likeliest = np.nan_to_num(outcomes.confidence, nan=0.0).argmax(axis=1)
    paid = np.cumsum(outcomes.cost, axis=1)
    rows = np.arange(len(outcomes.prompts))
    points = []
    for t in _thresholds(outcomes.confidence):
        passes = passes_at >= t
        stopped = passes.any(axis=1)
        stop = passes.argmax(axis=1)
        answer = np.where(stopped, stop, likeliest)
        cost = np.where(stopped, paid[rows, stop], paid[:, -1])
        points.append(Point(float(cost.mean()), float(outcomes.correct[rows, answer].mean()), t))
    return Curve("cascade (escalation)", "cascade", _dedupe(points))


def router_curve(outcomes: Outcomes, probabilities: np.ndarray, name: str) -> Curve:
    """Route each prompt to the cheapest tier with P(correct) >= t, else to the tier with
    the highest P(correct)."""
    rows = np.arange(len(outcomes.prompts))
    points = []
    for t in _thresholds(probabilities):
        pick = pick_tiers(probabilities, t)
        points.append(
            Point(
                float(outcomes.cost[rows, pick].mean()),
                float(outcomes.correct[rows, pick].mean()),
                t,
            )
        )
    return Curve(name, "router", _dedupe(points))


Trainer = Callable[[Outcomes], LearnedRouter]


def cross_validated_probabilities(
    outcomes: Outcomes, train: Trainer, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Each prompt's P(tier correct) from a router trained without it (k-fold)."""
    n = len(outcomes.prompts)
    folds = min(folds, n)
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 prompts and 2 folds, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    probabilities = np.zeros(outcomes.correct.shape)
    for fold in np.array_split(order, folds):
        held_out = np.zeros(n, dtype=bool)
        held_out[fold] = True
        router = train(outcomes.take(np.flatnonzero(~held_out)))
        probabilities[fold] = router.predict([outcomes.prompts[i] for i in fold])
    return probabilities


def evaluate(
    outcomes: Outcomes,
    *,
    router: LearnedRouter | None = None,
    kind: str = "knn",
    folds: int = 5,
    seed: int = 0,
    train: Trainer | None = None,
) -> HarnessReport:
    """Every policy's curve on ``outcomes``.

    The router curve comes from ``router`` as given (it must not have been trained on
    these outcomes) or, by default, from a ``kind`` router (or ``train(outcomes)``)
    cross-validated over ``folds`` folds.
    """
    curves: list[Curve] = tier_points(outcomes)
    notes: list[str] = []
    if outcomes.has_confidence:
        curves.append(cascade_curve(outcomes))
    else:
        notes.append("cascade: not evaluated, the data has no confidence per answer")
    if len(outcomes.tiers) > 1:
        if router is not None:
            if tuple(router.tiers) != outcomes.tiers:
                raise ConfigError(
                    f"the router's tiers {list(router.tiers)} are not the data's "
                    f"{list(outcomes.tiers)} (cheapest first)"
                )
            probabilities = router.predict(outcomes.prompts)
            name = f"router ({router.kind}, as given)"
            notes.append(
                "router: evaluated as given; its figures are fair only if it was not "
                "trained on these prompts"
            )
        else:
            trainer = train or (lambda o: train_router(o, kind))
            probabilities = cross_validated_probabilities(outcomes, trainer, folds, seed)
            label = kind if train is None else "custom"
            name = f"router ({label}, {min(folds, len(outcomes.prompts))}-fold)"
        curves.append(router_curve(outcomes, probabilities, name))
    curves.append(oracle_point(outcomes))
    report = HarnessReport(outcomes, tuple(curves))
    if len(report.references()) > 1:
        notes.append(
            f"note: the most expensive tier ({outcomes.tiers[-1]}) is not the most accurate "
            f"({report.best_tier.label} is), so the figures are also given at "
            f"{report.best_tier.label}'s quality"
        )
    return HarnessReport(outcomes, tuple(curves), tuple(notes))
