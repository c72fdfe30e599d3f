"""The offline harness: cost/quality curves of routing policies on labelled outcomes.

From each prompt's result at each tier it computes, as (mean cost per prompt, share
answered correctly, share of prompts calling the strongest tier) points:

* each single tier (always the cheapest, ..., always the strongest);
* the **cascade** at thresholds t, as ``af.Escalate(min_confidence=t)`` runs it: answer
  at the cheapest tier, climb while the answer's confidence < t (unknown climbs), pay
  for every tier tried; when no tier reaches t, the most confident answer is kept;
* a learned **router** at thresholds t, cross-validated (each prompt is routed by a
  router trained on the other folds, never on itself) or on a held-out share of the
  prompts (the router trained on the rest);
* the **oracle**: the cheapest correct tier (the cheapest tier when none is correct).

The cascade and the routers get the field's metrics (``_metrics.py``: APGR, CPT(50%),
CPT(80%) with bootstrap intervals, against the random router's 0.5 / 50% / 80%), between
the cheapest tier (the "weak model") and the last, most expensive one (the "strong").
For each curve the harness also reports the cheapest *measured* operating point whose
quality is at least the strongest tier's (the nearest point, not an interpolation),
its cost reduction against always using the strongest tier and the share of the
oracle's saving it captures; when a cheaper tier is more accurate than the strongest,
the same figures at that best single tier's quality too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from agentflow._errors import ConfigError
from agentflow.routing._embed import Embedder
from agentflow.routing._learned import (
    LearnedRouter,
    Rule,
    pick_by_gain,
    pick_tiers,
)
from agentflow.routing._metrics import Sweep, gap_metrics, random_metrics
from agentflow.routing._outcomes import Outcomes
from agentflow.routing._report import Curve, CurveKind, HarnessReport, Point
from agentflow.routing._train import train_router

__all__ = [
    "Curve",
    "HarnessReport",
    "Point",
    "cascade_curve",
    "cross_validated_probabilities",
    "evaluate",
    "oracle_point",
    "router_curve",
    "router_sweep",
    "split_holdout",
    "tier_points",
]

MAX_POINTS = 400
"""Thresholds swept per curve at most (quantiles of the candidates beyond that)."""


def tier_points(outcomes: Outcomes) -> list[Curve]:
    """Always one tier, for each tier."""
    last = len(outcomes.tiers) - 1
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
                    1.0 if j == last else 0.0,
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
    point = Point(
        float(cost[rows, choice].mean()),
        float(correct.any(axis=1).mean()),
        strong_share=float((choice == len(outcomes.tiers) - 1).mean()),
    )
    return Curve("oracle", "oracle", (point,))


def _grid(values: np.ndarray, ends: tuple[float, ...], limit: int = MAX_POINTS) -> list[float]:
    """The distinct finite values (at most ``limit``, picked at evenly spaced
    quantiles) and ``ends``, ascending."""
    finite = np.unique(values[np.isfinite(values)])
    if len(finite) > limit:
        finite = np.unique(np.quantile(finite, np.linspace(0, 1, limit), method="nearest"))
    return sorted({*ends, *finite.tolist()})


def _thresholds(values: np.ndarray) -> list[float]:
    return _grid(values, (0.0, math.inf))


def _dedupe(points: list[Point]) -> tuple[Point, ...]:
    seen: dict[tuple[float, float], Point] = {}
    for p in points:
        seen.setdefault((round(p.cost, 15), round(p.quality, 12)), p)
    return tuple(sorted(seen.values(), key=lambda p: (p.cost, p.quality)))


def _curve(
    outcomes: Outcomes,
    name: str,
    kind: CurveKind,
    sweep: Sweep,
    resamples: int,
    seed: int,
) -> Curve:
    points = [
        Point(
            float(sweep.cost[k].mean()),
            float(sweep.correct[k].mean()),
            float(sweep.thresholds[k]),
            strong_share=float(sweep.strong[k].mean()),
        )
        for k in range(len(sweep.thresholds))
    ]
    metrics = None
    if len(outcomes.tiers) > 1:
        metrics = gap_metrics(
            sweep,
            outcomes.correct[:, 0],
            outcomes.correct[:, -1],
            resamples=resamples,
            seed=seed,
        )
    return Curve(name, kind, _dedupe(points), metrics)


def cascade_curve(outcomes: Outcomes, *, resamples: int = 0, seed: int = 0) -> Curve:
    """``af.Escalate(min_confidence=t)`` at each distinct threshold t: answer at the
    cheapest tier, climb while the confidence is below t or unknown, pay for every tier
    tried; when no tier reaches t, keep the most confident answer (unknown counts as 0,
    the cheaper one wins ties), as the pipeline does. Its metrics count a prompt as a
    strong call when the climb reached the strongest tier."""
    passes_at = np.nan_to_num(outcomes.confidence, nan=-1.0)  # unknown never passes
    likeliest = np.nan_to_num(outcomes.confidence, nan=0.0).argmax(axis=1)
    paid = np.cumsum(outcomes.cost, axis=1)
    rows = np.arange(len(outcomes.prompts))
    last = len(outcomes.tiers) - 1
    thresholds = _thresholds(outcomes.confidence)
    strong, correct, cost = [], [], []
    for t in thresholds:
        passes = passes_at >= t
        stopped = passes.any(axis=1)
        stop = passes.argmax(axis=1)
        answer = np.where(stopped, stop, likeliest)
        cost.append(np.where(stopped, paid[rows, stop], paid[:, -1]))
        correct.append(outcomes.correct[rows, answer])
        strong.append(~stopped | (stop == last))
    sweep = Sweep(np.asarray(thresholds), np.array(strong), np.array(correct), np.array(cost))
    return _curve(outcomes, "cascade (escalation)", "cascade", sweep, resamples, seed)


def router_sweep(
    outcomes: Outcomes,
    probabilities: np.ndarray,
    *,
    rule: Rule = "gain",
    costs: np.ndarray | None = None,
) -> Sweep:
    """A router's decisions at each threshold of its rule, strong calls rising.

    ``"gain"``: the tier with the best ``P - t * cost / cost[-1]`` (``costs``: per tier,
    default the outcomes' mean cost per call) at every breakpoint t where a prompt
    changes tier, from +inf (always the cheapest tier) to -inf (always the costliest):
    for two tiers, every prompt ranked by the strong model's expected gain.
    ``"confidence"``: the cheapest tier with P >= t, else the likeliest, t from 0 up.
    """
    rows = np.arange(len(outcomes.prompts))
    if rule == "confidence":
        grid = np.asarray(_thresholds(probabilities))
        picks = np.stack([pick_tiers(probabilities, t) for t in grid])
    else:
        price = outcomes.cost.mean(axis=0) if costs is None else np.asarray(costs, dtype=float)
        scale = float(price.max()) if float(price.max()) > 0 else 1.0
        breaks = []
        for i in range(len(price)):
            for j in range(i + 1, len(price)):
                step = (price[j] - price[i]) / scale
                if step > 0:
                    breaks.append((probabilities[:, j] - probabilities[:, i]) / step)
        values = np.concatenate(breaks) if breaks else np.zeros(0)
        grid = np.asarray(_grid(values, (math.inf, -math.inf)))[::-1]  # +inf first
        picks = np.concatenate(
            [pick_by_gain(probabilities, price, grid[k : k + 64]) for k in range(0, len(grid), 64)]
        )
    return Sweep(
        grid,
        picks == len(outcomes.tiers) - 1,
        outcomes.correct[rows, picks],
        outcomes.cost[rows, picks],
    )


def router_curve(
    outcomes: Outcomes,
    probabilities: np.ndarray,
    name: str,
    *,
    rule: Rule = "gain",
    costs: np.ndarray | None = None,
    resamples: int = 0,
    seed: int = 0,
) -> Curve:
    """The curve of a router with these P(tier correct) per prompt, deciding by ``rule``
    (see ``router_sweep``), with its metrics."""
    sweep = router_sweep(outcomes, probabilities, rule=rule, costs=costs)
    return _curve(outcomes, name, "router", sweep, resamples, seed)


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


def split_holdout(outcomes: Outcomes, share: float, seed: int = 0) -> tuple[Outcomes, Outcomes]:
    """(training part, held-out part): ``share`` of the prompts, drawn with ``seed``."""
    n = len(outcomes.prompts)
    if isinstance(share, bool) or not 0 < share < 1:
        raise ConfigError(f"holdout must be a share of the prompts in (0, 1), got {share!r}")
    test = min(max(round(n * share), 1), n - 1)
    if n < 2:
        raise ConfigError(f"a held-out split needs at least 2 prompts, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return outcomes.take(np.sort(order[test:])), outcomes.take(np.sort(order[:test]))


def _trainer(kind: str, embedder: Embedder | None) -> Trainer:
    def train(outcomes: Outcomes) -> LearnedRouter:
        return train_router(outcomes, kind, embedder=embedder)

    return train


def evaluate(
    outcomes: Outcomes,
    *,
    router: LearnedRouter | None = None,
    kind: str | Sequence[str] = "knn",
    folds: int = 5,
    seed: int = 0,
    train: Trainer | None = None,
    holdout: float | None = None,
    rules: tuple[Rule, ...] = ("gain",),
    resamples: int = 1000,
    embedder: Embedder | None = None,
) -> HarnessReport:
    """Every policy's curve on ``outcomes``, with APGR / CPT for the cascade and routers.

    The router curve comes from ``router`` as given (it must not have been trained on
    these outcomes; its own rule and costs), or from a ``kind`` router (several kinds,
    such as ``("knn", "mf")``, give one curve each; or
    ``train(outcomes)``) cross-validated over ``folds`` folds, or, with ``holdout`` (a
    share such as 0.2), trained on the other prompts and every policy scored on the
    held-out ones. ``rules``: the decision rules to draw the trained router's curve
    with. ``seed`` draws the folds or the split and the bootstrap; ``resamples``: the
    bootstrap's (0: no intervals). ``embedder``: the trained router's (default: the
    routers' default).
    """
    if not rules or any(r not in ("gain", "confidence") for r in rules):
        raise ConfigError(f"rules must name 'gain' and/or 'confidence', got {rules!r}")
    notes: list[str] = []
    split = ""
    training = outcomes
    if holdout is not None:
        training, outcomes = split_holdout(outcomes, holdout, seed)
        split = f"held-out {holdout:.0%}: {len(outcomes.prompts)} prompts, seed {seed}; " + (
            "the router as given"
            if router is not None
            else f"router trained on the other {len(training.prompts)}"
        )
    curves: list[Curve] = tier_points(outcomes)
    if outcomes.has_confidence:
        curves.append(cascade_curve(outcomes, resamples=resamples, seed=seed))
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
            costs = router.prices if router.rule == "gain" else None
            notes.append(
                "router: evaluated as given; its figures are fair only if it was not "
                "trained on these prompts"
            )
            chosen = [(name, router.rule, costs, probabilities)]
        else:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            if not kinds:
                raise ConfigError("kind names no router; give one or more of knn, logistic, mf")
            chosen = []
            for one in kinds if train is None else ["custom"]:
                trainer = train or _trainer(one, embedder)
                if holdout is not None:
                    probabilities = trainer(training).predict(outcomes.prompts)
                    where = f"held-out {holdout:.0%}"
                else:
                    probabilities = cross_validated_probabilities(outcomes, trainer, folds, seed)
                    where = f"{min(folds, len(outcomes.prompts))}-fold"
                by = {"gain": "", "confidence": ", by P(cheap right)"}
                chosen += [
                    (f"router ({one}, {where}{by[r]})", r, None, probabilities) for r in rules
                ]
        for name, rule, costs, probabilities in chosen:
            curves.append(
                router_curve(
                    outcomes,
                    probabilities,
                    name,
                    rule=rule,
                    costs=costs,
                    resamples=resamples,
                    seed=seed,
                )
            )
    curves.append(oracle_point(outcomes))
    report = HarnessReport(outcomes, tuple(curves))
    if len(report.references()) > 1:
        notes.append(
            f"note: the most expensive tier ({outcomes.tiers[-1]}) is not the most accurate "
            f"({report.best_tier.label} is), so the figures are also given at "
            f"{report.best_tier.label}'s quality"
        )
    random = None
    if len(outcomes.tiers) > 1:
        q = outcomes.correct.mean(axis=0)
        random = random_metrics(float(q[0]), float(q[-1]))
        if q[-1] <= q[0]:
            notes.append(
                f"APGR and CPT are undefined: always {outcomes.tiers[-1]} is not more "
                f"accurate than always {outcomes.tiers[0]}"
            )
    return HarnessReport(outcomes, tuple(curves), tuple(notes), random, split)
