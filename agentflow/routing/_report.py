"""What the harness reports: operating points, curves, and the report (text and JSON)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from agentflow.routing._metrics import GapMetrics
from agentflow.routing._outcomes import Outcomes

__all__ = ["Curve", "CurveKind", "HarnessReport", "Point"]

CurveKind = Literal["tier", "cascade", "router", "oracle"]
_EPS = 1e-12


@dataclass(frozen=True)
class Point:
    """One operating point: mean cost per prompt (USD), share correct, the threshold (or
    tier) that gives it, and the share of prompts that call the strongest tier."""

    cost: float
    quality: float
    threshold: float | None = None
    label: str = ""
    strong_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        t = self.threshold
        return {
            "cost_usd": self.cost,
            "quality": self.quality,
            "strong_share": self.strong_share,
            "threshold": None if t is None or not math.isfinite(t) else t,
            **({"label": self.label} if self.label else {}),
        }


@dataclass(frozen=True)
class Curve:
    name: str
    kind: CurveKind
    points: tuple[Point, ...]
    metrics: GapMetrics | None = None

    def cheapest_at(self, quality: float) -> Point | None:
        """The cheapest measured point with at least ``quality`` (None if none has)."""
        good = [p for p in self.points if p.quality >= quality - _EPS]
        return min(good, key=lambda p: (p.cost, -p.quality)) if good else None


@dataclass(frozen=True)
class HarnessReport:
    """Every policy's curve on one set of outcomes, the field's metrics for the cascade
    and the routers, and the random router's expected figures (``random``)."""

    outcomes: Outcomes
    curves: tuple[Curve, ...]
    notes: tuple[str, ...] = field(default=())
    random: GapMetrics | None = None
    split: str = ""

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

    def for_gap(self, curve: Curve, share: float) -> Point | None:
        """The cheapest measured point of ``curve`` that recovers ``share`` (e.g. 0.8) of
        the gap between the cheapest and the strongest tier: its threshold is the one
        to deploy for that quality (None: never reached, or no gap)."""
        q = self.outcomes.correct.mean(axis=0)
        if q[-1] <= q[0]:
            return None
        return curve.cheapest_at(float(q[0] + share * (q[-1] - q[0])))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``agentflow route eval --json`` prints)."""
        o = self.outcomes
        policies = []
        for c in self.curves:
            entry: dict[str, Any] = {
                "name": c.name,
                "kind": c.kind,
                "metrics": None if c.metrics is None else c.metrics.to_dict(),
                "points": [p.to_dict() for p in c.points],
            }
            if c.metrics is not None:
                entry["for_gap"] = {
                    f"{round(share * 100)}%": None if p is None else p.to_dict()
                    for share in (0.5, 0.8)
                    for p in [self.for_gap(c, share)]
                }
            if c.kind != "tier":
                at = {}
                for ref in self.references():
                    p = self.at_quality(c, ref)
                    at[ref.label] = {
                        "point": None if p is None else p.to_dict(),
                        "cost_reduction": self.cost_reduction(c, ref),
                        "oracle_share": self.oracle_share(c, ref),
                    }
                entry["at_quality_of"] = at
            policies.append(entry)
        return {
            "source": o.source,
            "prompts": len(o.prompts),
            "tiers": list(o.tiers),
            "weak": o.tiers[0],
            "strong": o.tiers[-1],
            "split": self.split,
            "cost_unit": "USD per prompt",
            "random": None if self.random is None else self.random.to_dict(),
            "policies": policies,
            "notes": [*o.notes, *self.notes],
        }

    def render(self) -> str:
        """The report as plain text: the field's metrics, each policy's best point, then
        the figures at the strongest tier's quality (and the best single tier's)."""
        o = self.outcomes
        w = max(34, *(len(c.name) + 2 for c in self.curves))
        lines = [
            f"{len(o.prompts)} prompts × {len(o.tiers)} tiers, cheapest first: "
            + ", ".join(o.tiers)
            + (f" ({self.split})" if self.split else ""),
        ]
        lines += [f"  {n}" for n in o.notes]
        rated = [c for c in self.curves if c.metrics is not None]
        if self.random is not None and self.random.apgr.value is not None and rated:
            r = self.random
            resamples = max(c.metrics.resamples for c in rated if c.metrics is not None)
            ci = f"; [95% bootstrap interval, {resamples} resamples]" if resamples else ""
            lines += [
                "",
                f"Between always {o.tiers[0]} ({r.weak_quality:.1%} correct) and always "
                f"{o.tiers[-1]} ({r.strong_quality:.1%}); CPT = share of prompts calling "
                f"{o.tiers[-1]}{ci}:",
                "",
                f"{'policy':<{w}}{'APGR':<24}{'CPT(50%)':<24}{'CPT(80%)':<24}",
            ]
            for name, m in [("random router (expected)", r), *((c.name, c.metrics) for c in rated)]:
                assert m is not None
                cpt = [m.cpt.get(p) for p in (0.5, 0.8)]
                lines.append(
                    f"{name:<{w}}{m.apgr.render():<24}"
                    + "".join(f"{(e.render(True) if e else '-'):<24}" for e in cpt)
                )
            lines += [
                "",
                "The cheapest measured point recovering 50% / 80% of the gap "
                "(deploy its threshold):",
            ]
            for c in rated:
                for share in (0.5, 0.8):
                    p = self.for_gap(c, share)
                    if p is not None:
                        lines.append(
                            f"  {c.name} at {share:.0%}: threshold {_threshold(p.threshold)}, "
                            f"{_share(p.strong_share)} strong calls, {p.quality:.1%} correct, "
                            f"{_usd(p.cost)}/prompt"
                        )
        lines += [
            "",
            f"{'policy':<{w}}{'points':>7}{'best quality':>14}{'at USD/prompt':>15}"
            f"{'strong calls':>14}{'threshold':>11}",
        ]
        for c in self.curves:
            top = max(c.points, key=lambda p: (p.quality, -p.cost))
            lines.append(
                f"{c.name:<{w}}{len(c.points):>7}{top.quality:>14.1%}{_usd(top.cost):>15}"
                f"{_share(top.strong_share):>14}{_threshold(top.threshold):>11}"
            )
        for ref in self.references():
            which = "strongest" if ref is self.strongest else "best single"
            lines += [
                "",
                f"At the {which} tier's quality ({ref.quality:.1%}: always {ref.label} at "
                f"{_usd(ref.cost)}/prompt), the cheapest measured point of each policy",
                "(the nearest operating point, not interpolated):",
                "",
                f"{'policy':<{w}}{'threshold':>10}{'USD/prompt':>12}{'quality':>9}"
                f"{'strong calls':>14}{'cost cut':>10}{'of oracle':>11}",
            ]
            for c in self.curves:
                p = self.at_quality(c, ref)
                if p is None:
                    lines.append(f"{c.name:<{w}}{'does not reach that quality':>66}")
                    continue
                lines.append(
                    f"{c.name:<{w}}{_threshold(p.threshold):>10}{_usd(p.cost):>12}"
                    f"{p.quality:>9.1%}{_share(p.strong_share):>14}"
                    f"{_pct(self.cost_reduction(c, ref)):>10}"
                    f"{_pct(self.oracle_share(c, ref)):>11}"
                )
        lines += ["", *self.notes] if self.notes else []
        return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def _usd(value: float) -> str:
    return f"${value:.3g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _threshold(value: float | None) -> str:
    if value is None:
        return "-"
    return ("-" if value < 0 else "") + "inf" if math.isinf(value) else f"{value:.3g}"
