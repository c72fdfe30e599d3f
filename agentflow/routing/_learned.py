"""Routers learned from labelled outcomes: k-nearest neighbours and logistic regression.

Both estimate, for a new prompt, the probability that each tier answers it correctly,
and pick the cheapest tier whose probability reaches ``threshold``; when none does, the
tier most likely to be right. ``threshold`` is the cost/quality knob (as RouteLLM's): 0
always takes the cheapest tier, above 1 always the likeliest; in between, a higher
threshold buys quality with money.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from agentflow._errors import ConfigError
from agentflow.routing._embed import Embedder, HashingEmbedder, embed_texts, embedder_from_dict
from agentflow.routing._outcomes import Outcomes
from agentflow.routing._router import (
    check_choice,
    request_text,
    write_router_file,
)

__all__ = ["KnnRouter", "LearnedRouter", "LogisticRouter", "pick_tiers", "train_router"]

L = TypeVar("L", bound="LearnedRouter")


def pick_tiers(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Per row, the index of the first (cheapest) column >= threshold; when none is, the
    column with the highest probability (the cheaper one on ties)."""
    ok = probabilities >= threshold
    likeliest = np.nan_to_num(probabilities, nan=-np.inf).argmax(axis=1)
    picks: np.ndarray = np.where(ok.any(axis=1), ok.argmax(axis=1), likeliest)
    return picks


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
        raise ConfigError(
            f"threshold must be a number >= 0 (a probability; above 1 means always the "
            f"tier most likely to be right), got {threshold!r}"
        )
    return float(threshold)


class LearnedRouter:
    """Common to the learned routers: tiers, threshold, embedder, choose, save."""

    kind: ClassVar[str] = ""

    def __init__(self, tiers: Sequence[str], threshold: float, embedder: Embedder | None) -> None:
        if not tiers or len(set(tiers)) != len(tiers):
            raise ConfigError(f"a router needs distinct tier names, cheapest first, got {tiers}")
        self.tiers = tuple(tiers)
        self.threshold = _check_threshold(threshold)
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()

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
        return [self.tiers[i] for i in pick_tiers(self.predict(texts), self.threshold)]

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
        choice = pick_tiers(p[cols][None, :], self.threshold)[0]
        return check_choice(self.tiers[cols[choice]], tiers, type(self).__name__)

    def _embedder_dict(self) -> dict[str, Any] | None:
        """The default embedder's settings; None for a custom one (a file cannot hold it)."""
        return self.embedder.to_dict() if isinstance(self.embedder, HashingEmbedder) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tiers": list(self.tiers),
            "threshold": self.threshold,
            "embedder": self._embedder_dict(),
        }

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


class KnnRouter(LearnedRouter):
    """P(tier correct) = the share of the ``k`` most similar training prompts (cosine)
    that the tier answered correctly, smoothed toward the tier's overall accuracy."""

    kind = "knn"

    def __init__(
        self,
        tiers: Sequence[str],
        vectors: np.ndarray,
        correct: np.ndarray,
        *,
        k: int = 7,
        threshold: float = 0.5,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(tiers, threshold, embedder)
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
        k: int = 7,
        threshold: float = 0.5,
        embedder: Embedder | None = None,
    ) -> KnnRouter:
        embedder = embedder if embedder is not None else HashingEmbedder()
        vectors = embed_texts(embedder, outcomes.prompts)
        return cls(
            outcomes.tiers, vectors, outcomes.correct, k=k, threshold=threshold, embedder=embedder
        )

    def _predict(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[1] != self.vectors.shape[1]:
            raise ConfigError(
                f"the embedder gives {vectors.shape[1]}-dimensional vectors, the router was "
                f"trained on {self.vectors.shape[1]}; load it with the embedder it was trained with"
            )
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
        threshold: float = 0.5,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(tiers, threshold, embedder)
        self.weights = np.asarray(weights, dtype=float)  # (dim, tiers)
        self.bias = np.asarray(bias, dtype=float)  # (tiers,)
        if self.weights.ndim != 2 or self.weights.shape[1] != len(self.tiers):
            raise ConfigError("LogisticRouter: weights must be (dim, tiers)")

    @classmethod
    def train(
        cls,
        outcomes: Outcomes,
        *,
        threshold: float = 0.5,
        embedder: Embedder | None = None,
        l2: float = 1e-3,
        steps: int = 500,
        learning_rate: float = 1.0,
    ) -> LogisticRouter:
        if l2 < 0 or steps < 1 or learning_rate <= 0:
            raise ConfigError("LogisticRouter.train needs l2 >= 0, steps >= 1, learning_rate > 0")
        embedder = embedder if embedder is not None else HashingEmbedder()
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
        return cls(outcomes.tiers, w, b, threshold=threshold, embedder=embedder)

    def _predict(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[1] != self.weights.shape[0]:
            raise ConfigError(
                f"the embedder gives {vectors.shape[1]}-dimensional vectors, the router was "
                f"trained on {self.weights.shape[0]}; load it with the embedder it was trained with"
            )
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
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|
    return result


ROUTER_KINDS: dict[str, type[KnnRouter] | type[LogisticRouter]] = {
    "knn": KnnRouter,
    "logistic": LogisticRouter,
}


def train_router(
    outcomes: Outcomes,
    kind: str = "knn",
    *,
    threshold: float = 0.5,
    embedder: Embedder | None = None,
    **options: Any,
) -> KnnRouter | LogisticRouter:
    """Train a ``"knn"`` (options: ``k``) or ``"logistic"`` (``l2``, ``steps``,
    ``learning_rate``) router on labelled outcomes."""
    if kind not in ROUTER_KINDS:
        raise ConfigError(f"unknown router kind {kind!r}; use {', '.join(map(repr, ROUTER_KINDS))}")
    return ROUTER_KINDS[kind].train(outcomes, threshold=threshold, embedder=embedder, **options)
