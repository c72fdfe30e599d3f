"""Routers learned from labelled outcomes: k-nearest neighbours and logistic regression.

Both estimate, for a new prompt, the probability that each tier answers it correctly.
They decide by one of two rules:

* ``rule="gain"`` (the default): the tier with the best expected correctness for its
  price, ``argmax P(tier right) - threshold * cost(tier) / cost(strongest tier)``. A
  costlier tier is taken when its expected gain in correctness is worth its extra price:
  ``threshold`` is the gain that would justify paying one call of the strongest tier.
  0 always takes the likeliest tier; higher thresholds call costly tiers less often.
  Ranking prompts by the strong model's expected gain is what the literature's best
  routers do; it beats the chance that the cheap model is right (APGR 0.591 -> 0.624 on
  GSM8K with the same probabilities).
* ``rule="confidence"``: the cheapest tier whose probability reaches ``threshold``; when
  none does, the tier most likely to be right (0 always takes the cheapest tier).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from agentflow._errors import ConfigError
from agentflow.routing._embed import (
    Embedder,
    HashingEmbedder,
    default_embedder,
    embed_texts,
    embedder_from_dict,
)
from agentflow.routing._outcomes import Outcomes
from agentflow.routing._router import (
    check_choice,
    request_text,
    write_router_file,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "KnnRouter",
    "LearnedRouter",
    "LogisticRouter",
    "Rule",
    "best_k",
    "check_dimensions",
    "pick_by_gain",
    "pick_tiers",
]

L = TypeVar("L", bound="LearnedRouter")
Rule = Literal["gain", "confidence"]
RULES: tuple[Rule, ...] = ("gain", "confidence")
DEFAULT_THRESHOLD: dict[str, float] = {"gain": 0.1, "confidence": 0.5}
"""The threshold a router gets when none is given, per rule."""


def pick_tiers(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Per row, the index of the first (cheapest) column >= threshold; when none is, the
    column with the highest probability (the cheaper one on ties)."""
    ok = probabilities >= threshold
    likeliest = np.nan_to_num(probabilities, nan=-np.inf).argmax(axis=1)
    picks: np.ndarray = np.where(ok.any(axis=1), ok.argmax(axis=1), likeliest)
    return picks


def pick_by_gain(
    probabilities: np.ndarray, costs: np.ndarray, threshold: float | np.ndarray
) -> np.ndarray:
    """Per row, the column with the highest ``P - threshold * cost / cost[-1]`` (the
    cheaper one on ties); ``costs`` are per column, cheapest first. A 1-d ``threshold``
    gives one row of picks per threshold, shape ``(thresholds, rows)``."""
    price = np.asarray(costs, dtype=float)
    scale = float(price.max()) if price.size and float(price.max()) > 0 else 1.0
    t = np.asarray(threshold, dtype=float)
    p = np.nan_to_num(probabilities, nan=-np.inf)
    with np.errstate(invalid="ignore"):
        utility = p[None, :, :] - np.multiply.outer(t.reshape(-1), price / scale)[:, None, :]
    utility = np.where(np.isinf(t.reshape(-1))[:, None, None], -price[None, None, :], utility)
    utility = np.where(np.isneginf(t.reshape(-1))[:, None, None], price[None, None, :], utility)
    # a costlier tier must win by more than rounding: exact ties go to the cheaper one
    picks: np.ndarray = (utility - 1e-12 * np.arange(price.size)).argmax(axis=2)
    return picks if t.ndim else picks[0]


def _check_rule(rule: str) -> Rule:
    if rule not in RULES:
        raise ConfigError(
            f"rule={rule!r} is not a routing rule; use 'gain' (expected gain per dollar, "
            "the default) or 'confidence' (the cheapest tier likely enough to be right)"
        )
    return "gain" if rule == "gain" else "confidence"


def _check_costs(costs: Sequence[float] | np.ndarray | None, tiers: int) -> np.ndarray | None:
    if costs is None:
        return None
    price = np.asarray(costs, dtype=float)
    if price.shape != (tiers,) or not np.all(np.isfinite(price)) or np.any(price < 0):
        raise ConfigError(
            f"costs must give one price per tier (USD per call, >= 0), {tiers} in all; got "
            f"{list(costs)!r}"
        )
    return price


def check_dimensions(vectors: np.ndarray, trained: int) -> None:
    """``ConfigError`` when the embedder's vectors are not the size the router learned."""
    if vectors.shape[1] != trained:
        raise ConfigError(
            f"the embedder gives {vectors.shape[1]}-dimensional vectors, the router was "
            f"trained on {trained}; load it with the embedder it was trained with"
        )


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
        raise ConfigError(
            f"threshold must be a number >= 0 (a probability; above 1 means always the "
            f"tier most likely to be right), got {threshold!r}"
        )
    return float(threshold)


class LearnedRouter:
    """Common to the learned routers: tiers, rule, threshold, costs, embedder, choose, save.

    ``costs``: each tier's USD per call, cheapest first (``train`` takes the outcomes'
    means); without them the gain rule prices the tiers 1, 2, 3, ... (their order).
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        tiers: Sequence[str],
        threshold: float | None,
        embedder: Embedder | None,
        *,
        rule: str = "gain",
        costs: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        if not tiers or len(set(tiers)) != len(tiers):
            raise ConfigError(f"a router needs distinct tier names, cheapest first, got {tiers}")
        self.tiers = tuple(tiers)
        self.rule: Rule = _check_rule(rule)
        self.threshold = _check_threshold(
            DEFAULT_THRESHOLD[self.rule] if threshold is None else threshold
        )
        self.costs = _check_costs(costs, len(self.tiers))
        self.embedder: Embedder = embedder if embedder is not None else default_embedder()

    @property
    def prices(self) -> np.ndarray:
        """The costs the gain rule weighs: ``costs``, or 1, 2, 3, ... without them."""
        if self.costs is not None:
            return self.costs
        return np.arange(1.0, len(self.tiers) + 1.0)

    def decide(self, probabilities: np.ndarray, columns: Sequence[int] | None = None) -> np.ndarray:
        """The column each row of ``probabilities`` picks by this router's rule and
        threshold (``columns``: which of the router's tiers the columns are)."""
        if self.rule == "confidence":
            return pick_tiers(probabilities, self.threshold)
        prices = self.prices
        cols = list(range(len(self.tiers))) if columns is None else list(columns)
        # the scale stays the strongest tier's price, also when it is not in the zoo
        scaled = np.append(prices[cols], prices.max())
        p = np.concatenate([probabilities, np.full((len(probabilities), 1), -np.inf)], axis=1)
        return pick_by_gain(p, scaled, self.threshold)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """P(each tier answers correctly), shape ``(len(texts), len(tiers))``."""
        return self._predict(embed_texts(self.embedder, texts))

    def _predict(self, vectors: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def with_threshold(self: L, threshold: float) -> L:
        """A copy of this router with another threshold (the model is shared)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.threshold = _check_threshold(threshold)
        return clone

    def pick(self, texts: Sequence[str]) -> list[str]:
        """The tier this router picks for each text, among its own tiers."""
        return [self.tiers[i] for i in self.decide(self.predict(texts))]

    def choose(
        self, messages: Sequence[Mapping[str, Any]], *, kind: str, tiers: Sequence[str]
    ) -> str:
        known = [t for t in self.tiers if t in tiers]
        if not known:
            raise ConfigError(
                f"{type(self).__name__} was trained on tiers {list(self.tiers)}, none of which "
                f"is in the zoo {list(tiers)}; retrain it on outcomes of the zoo's tiers"
            )
        p = self.predict([request_text(messages)])[0]
        cols = [self.tiers.index(t) for t in sorted(known, key=list(tiers).index)]
        choice = self.decide(p[cols][None, :], cols)[0]
        return check_choice(self.tiers[cols[choice]], tiers, type(self).__name__)

    def _embedder_dict(self) -> dict[str, Any] | None:
        """The embedder's settings (``HashingEmbedder``, ``LocalEmbedder`` with its shipped
        model); None for a custom one (a file cannot hold it)."""
        if isinstance(self.embedder, HashingEmbedder):
            return self.embedder.to_dict()
        to_dict = getattr(self.embedder, "router_dict", None)
        return to_dict() if callable(to_dict) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tiers": list(self.tiers),
            "threshold": self.threshold,
            "rule": self.rule,
            "costs": None if self.costs is None else self.costs.tolist(),
            "embedder": self._embedder_dict(),
        }

    @staticmethod
    def _rule_of(data: Mapping[str, Any]) -> dict[str, Any]:
        """Rule and costs from a router file; files from before the gain rule decided by
        confidence."""
        return {"rule": data.get("rule", "confidence"), "costs": data.get("costs")}

    def save(self, path: str | Path) -> None:
        """Write the router as JSON (no pickle: safe to load from anywhere)."""
        write_router_file(path, self.to_dict())

    @staticmethod
    def _embedder_for(data: Mapping[str, Any], embedder: Embedder | None) -> Embedder:
        saved = embedder_from_dict(data.get("embedder"))
        if embedder is not None:
            return embedder
        if saved is None:
            raise ConfigError(
                "this router was trained with a custom embedder, which a file cannot hold; "
                "load it with load_router(path, embedder=<the same embedder>)"
            )
        return saved


K_CANDIDATES = (5, 10, 25, 50, 100, 200)


def best_k(
    vectors: np.ndarray, correct: np.ndarray, candidates: Sequence[int] = K_CANDIDATES
) -> int:
    """The k whose leave-one-out kNN probabilities have the lowest Brier score."""
    n = len(vectors)
    ks = [k for k in candidates if k < n] or [max(1, n - 1)]
    top = max(ks)
    prior = correct.mean(axis=0)
    errors = np.zeros(len(ks))
    for start in range(0, n, 512):
        rows = np.arange(start, min(start + 512, n))
        similarity = vectors[rows] @ vectors.T
        similarity[np.arange(len(rows)), rows] = -np.inf  # not itself
        nearest = np.argpartition(-similarity, top - 1, axis=1)[:, :top]
        order = np.take_along_axis(similarity, nearest, axis=1).argsort(axis=1)[:, ::-1]
        ranked = np.take_along_axis(nearest, order, axis=1)
        hits = np.cumsum(correct[ranked], axis=1)  # (rows, top, tiers)
        for i, k in enumerate(ks):
            p = (hits[:, k - 1] + prior) / (k + 1)
            errors[i] += float(((p - correct[rows]) ** 2).sum())
    return ks[int(errors.argmin())]


class KnnRouter(LearnedRouter):
    """P(tier correct) = the share of the ``k`` most similar training prompts (cosine)
    that the tier answered correctly, smoothed toward the tier's overall accuracy
    (``train`` picks k by leave-one-out calibration unless given)."""

    kind = "knn"

    def __init__(
        self,
        tiers: Sequence[str],
        vectors: np.ndarray,
        correct: np.ndarray,
        *,
        k: int = 7,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        rule: str = "gain",
        costs: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        super().__init__(tiers, threshold, embedder, rule=rule, costs=costs)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"KnnRouter(k={k!r}) must be a whole number >= 1")
        self.vectors = np.asarray(vectors, dtype=float)
        self.correct = np.asarray(correct, dtype=float)
        if self.correct.shape != (len(self.vectors), len(self.tiers)):
            raise ConfigError("KnnRouter: one row of correctness per vector, one column per tier")
        self.k = k
        self.prior = self.correct.mean(axis=0)

    @classmethod
    def train(
        cls,
        outcomes: Outcomes,
        *,
        k: int | None = None,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        rule: str = "gain",
    ) -> KnnRouter:
        """``k=None`` picks k among ``K_CANDIDATES`` by the leave-one-out Brier score of
        the probabilities on the training prompts (the best calibrated)."""
        embedder = embedder if embedder is not None else default_embedder()
        vectors = embed_texts(embedder, outcomes.prompts)
        correct = outcomes.correct.astype(float)
        return cls(
            outcomes.tiers,
            vectors,
            correct,
            k=best_k(vectors, correct) if k is None else k,
            threshold=threshold,
            embedder=embedder,
            rule=rule,
            costs=outcomes.cost.mean(axis=0),
        )

    def _predict(self, vectors: np.ndarray) -> np.ndarray:
        check_dimensions(vectors, self.vectors.shape[1])
        k = min(self.k, len(self.vectors))
        similarity = vectors @ self.vectors.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        hits = self.correct[nearest].sum(axis=1)  # (n, tiers)
        smoothed: np.ndarray = (hits + self.prior) / (k + 1)  # a pseudo-neighbour at the prior
        return smoothed

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for v in self.vectors:
            nz = np.flatnonzero(v)
            rows.append([nz.tolist(), np.round(v[nz], 6).tolist()])
        return {
            **super().to_dict(),
            "k": self.k,
            "dim": int(self.vectors.shape[1]),
            "vectors": rows,
            "correct": self.correct.astype(int).tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], embedder: Embedder | None = None) -> KnnRouter:
        vectors = np.zeros((len(data["vectors"]), int(data["dim"])))
        for row, (indices, values) in zip(vectors, data["vectors"], strict=True):
            row[indices] = values
        return cls(
            data["tiers"],
            vectors,
            np.asarray(data["correct"], dtype=float),
            k=int(data["k"]),
            threshold=float(data["threshold"]),
            embedder=cls._embedder_for(data, embedder),
            **cls._rule_of(data),
        )


class LogisticRouter(LearnedRouter):
    """One L2-regularised logistic regression per tier (numpy, full-batch gradient
    descent) from the prompt's vector to P(tier correct)."""

    kind = "logistic"

    def __init__(
        self,
        tiers: Sequence[str],
        weights: np.ndarray,
        bias: np.ndarray,
        *,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        rule: str = "gain",
        costs: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        super().__init__(tiers, threshold, embedder, rule=rule, costs=costs)
        self.weights = np.asarray(weights, dtype=float)  # (dim, tiers)
        self.bias = np.asarray(bias, dtype=float)  # (tiers,)
        if self.weights.ndim != 2 or self.weights.shape[1] != len(self.tiers):
            raise ConfigError("LogisticRouter: weights must be (dim, tiers)")

    @classmethod
    def train(
        cls,
        outcomes: Outcomes,
        *,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        rule: str = "gain",
        l2: float = 1e-3,
        steps: int = 500,
        learning_rate: float = 1.0,
    ) -> LogisticRouter:
        if l2 < 0 or steps < 1 or learning_rate <= 0:
            raise ConfigError("LogisticRouter.train needs l2 >= 0, steps >= 1, learning_rate > 0")
        embedder = embedder if embedder is not None else default_embedder()
        x = embed_texts(embedder, outcomes.prompts)
        y = outcomes.correct.astype(float)
        n, dim = x.shape
        w = np.zeros((dim, y.shape[1]))
        b = np.log((y.mean(axis=0) + 0.5 / n) / (1 - y.mean(axis=0) + 0.5 / n))  # the prior
        for _ in range(steps):
            p = _sigmoid(x @ w + b)
            error = (p - y) / n
            w -= learning_rate * (x.T @ error + l2 * w)
            b -= learning_rate * error.sum(axis=0)
        return cls(
            outcomes.tiers,
            w,
            b,
            threshold=threshold,
            embedder=embedder,
            rule=rule,
            costs=outcomes.cost.mean(axis=0),
        )

    def _predict(self, vectors: np.ndarray) -> np.ndarray:
        check_dimensions(vectors, self.weights.shape[0])
        return _sigmoid(vectors @ self.weights + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "weights": np.round(self.weights.T, 8).tolist(),
            "bias": self.bias.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], embedder: Embedder | None = None) -> LogisticRouter:
        return cls(
            data["tiers"],
            np.asarray(data["weights"], dtype=float).T,
            np.asarray(data["bias"], dtype=float),
            threshold=float(data["threshold"]),
            embedder=cls._embedder_for(data, embedder),
            **cls._rule_of(data),
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|
    return result
