"""A matrix-factorisation router, after RouteLLM's MF router (Ong et al., 2024).

Each tier gets a learned vector ``v_tier``; the prompt's embedding ``x`` is projected to
the same small space by a learned matrix ``W``; the logit that the tier answers the
prompt correctly is::

    score(tier, prompt) = w · (v_tier ⊙ (W x)) + b_tier

``w`` weighs the latent dimensions and ``b_tier`` is the tier's overall log-odds, so a
tier's probability starts at its accuracy and the factors learn where a prompt departs
from it. The model is fitted by the logistic loss (L2-regularised) with full-batch
gradient descent in numpy, Adam step sizes, from a seeded start: the same outcomes and
seed give the same router. It decides like the other learned routers (``rule="gain"``:
expected gain in correctness per dollar).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from agentflow._errors import ConfigError
from agentflow.routing._embed import Embedder, default_embedder, embed_texts
from agentflow.routing._learned import LearnedRouter, _sigmoid, check_dimensions
from agentflow.routing._outcomes import Outcomes

__all__ = ["MfRouter"]


class MfRouter(LearnedRouter):
    """P(tier correct) = sigmoid(w · (v_tier ⊙ (W x)) + b_tier) on the prompt's vector x.

    ``projection``: ``W``, shape ``(latent, dim)``; ``tier_vectors``: ``v``, one row per
    tier; ``weights``: ``w``, ``(latent,)``; ``bias``: ``b``, one per tier.
    """

    kind = "mf"

    def __init__(
        self,
        tiers: Sequence[str],
        projection: np.ndarray,
        tier_vectors: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        *,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        rule: str = "gain",
        costs: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        super().__init__(tiers, threshold, embedder, rule=rule, costs=costs)
        self.projection = np.asarray(projection, dtype=float)
        self.tier_vectors = np.asarray(tier_vectors, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        self.bias = np.asarray(bias, dtype=float)
        latent = self.projection.shape[0] if self.projection.ndim == 2 else -1
        if (
            latent < 1
            or self.tier_vectors.shape != (len(self.tiers), latent)
            or self.weights.shape != (latent,)
            or self.bias.shape != (len(self.tiers),)
        ):
            raise ConfigError(
                "MfRouter: projection must be (latent, dim), tier_vectors (tiers, latent), "
                f"weights (latent,) and bias (tiers,); got {self.projection.shape}, "
                f"{self.tier_vectors.shape}, {self.weights.shape}, {self.bias.shape} "
                f"for {len(self.tiers)} tiers"
            )

    @classmethod
    def train(
        cls,
        outcomes: Outcomes,
        *,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        rule: str = "gain",
        latent: int = 64,
        l2: float = 1e-3,
        steps: int | None = None,
        learning_rate: float = 0.01,
        seed: int = 0,
    ) -> MfRouter:
        """Fit on labelled outcomes: ``latent`` dimensions, ``l2`` on every parameter but
        the biases, ``steps`` full-batch Adam steps of ``learning_rate``, the start drawn
        with ``seed``. ``steps=None`` stops early: it fits on 80% of the prompts (split
        with ``seed``), takes the number of steps (up to ``MAX_STEPS``) with the lowest
        log-loss on the other 20%, and fits that many steps on all of them."""
        if isinstance(latent, bool) or not isinstance(latent, int) or latent < 1:
            raise ConfigError(f"MfRouter.train(latent={latent!r}) must be a whole number >= 1")
        if l2 < 0 or (steps is not None and steps < 1) or learning_rate <= 0:
            raise ConfigError("MfRouter.train needs l2 >= 0, steps >= 1, learning_rate > 0")
        embedder = embedder if embedder is not None else default_embedder()
        x = embed_texts(embedder, outcomes.prompts)
        y = outcomes.correct.astype(float)
        if steps is None:
            steps = _early_stop(x, y, latent, l2, learning_rate, seed)
        params = _fit(x, y, latent, l2, steps, learning_rate, seed)
        return cls(
            outcomes.tiers,
            params["W"],
            params["v"],
            params["w"],
            params["b"],
            threshold=threshold,
            embedder=embedder,
            rule=rule,
            costs=outcomes.cost.mean(axis=0),
        )

    def _predict(self, vectors: np.ndarray) -> np.ndarray:
        check_dimensions(vectors, self.projection.shape[1])
        return _sigmoid(
            _logits(self.projection, self.tier_vectors, self.weights, self.bias, vectors)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "projection": np.round(self.projection, 8).tolist(),
            "tier_vectors": np.round(self.tier_vectors, 8).tolist(),
            "weights": np.round(self.weights, 8).tolist(),
            "bias": self.bias.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], embedder: Embedder | None = None) -> MfRouter:
        return cls(
            data["tiers"],
            np.asarray(data["projection"], dtype=float),
            np.asarray(data["tier_vectors"], dtype=float),
            np.asarray(data["weights"], dtype=float),
            np.asarray(data["bias"], dtype=float),
            threshold=float(data["threshold"]),
            embedder=cls._embedder_for(data, embedder),
            **cls._rule_of(data),
        )


MAX_STEPS = 500
"""The most full-batch steps ``MfRouter.train`` tries when it stops early."""


def _start(x: np.ndarray, y: np.ndarray, latent: int, seed: int) -> dict[str, np.ndarray]:
    """Random factors drawn with ``seed``; each tier's bias at its smoothed log-odds."""
    n, dim = x.shape
    rng = np.random.default_rng(seed)
    prior = (y.mean(axis=0) + 0.5 / n) / (1 + 1 / n)
    return {
        "W": rng.normal(0.0, 1.0 / np.sqrt(dim), (latent, dim)),
        "v": rng.normal(0.0, 1.0 / np.sqrt(latent), (y.shape[1], latent)),
        "w": np.ones(latent),
        "b": np.log(prior / (1 - prior)),
    }


def _steps(
    x: np.ndarray, y: np.ndarray, latent: int, l2: float, learning_rate: float, seed: int
) -> Iterator[dict[str, np.ndarray]]:
    """The parameters after each full-batch Adam step (the same dict, updated in place)."""
    params = _start(x, y, latent, seed)
    moments = {k: (np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    while True:
        step += 1
        for k, g in _gradients(params, x, y, l2).items():
            m, s = moments[k]
            m[...] = beta1 * m + (1 - beta1) * g
            s[...] = beta2 * s + (1 - beta2) * g * g
            params[k] -= (
                learning_rate * (m / (1 - beta1**step)) / (np.sqrt(s / (1 - beta2**step)) + eps)
            )
        yield params


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    latent: int,
    l2: float,
    steps: int,
    learning_rate: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """The parameters after ``steps`` steps."""
    for params in islice(_steps(x, y, latent, l2, learning_rate, seed), steps - 1, None):
        return params
    raise AssertionError("unreachable: _steps never ends")  # pragma: no cover


def _early_stop(
    x: np.ndarray, y: np.ndarray, latent: int, l2: float, learning_rate: float, seed: int
) -> int:
    """The number of steps with the lowest log-loss on a seeded 20% of the prompts, when
    fitted on the other 80%."""
    n = len(x)
    if n < 10:
        return MAX_STEPS // 5
    order = np.random.default_rng(seed).permutation(n)
    held, kept = order[: n // 5], order[n // 5 :]
    best, best_loss = 1, math.inf
    fitting = _steps(x[kept], y[kept], latent, l2, learning_rate, seed)
    for step, params in enumerate(islice(fitting, MAX_STEPS), start=1):
        z = _logits(params["W"], params["v"], params["w"], params["b"], x[held])
        loss = float((np.logaddexp(0.0, z) - y[held] * z).mean())
        if loss < best_loss - 1e-9:
            best, best_loss = step, loss
    return best


def _logits(
    projection: np.ndarray,
    tier_vectors: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    x: np.ndarray,
) -> np.ndarray:
    """``w · (v_tier ⊙ (W x)) + b_tier`` for every row of ``x`` and tier: ``x`` times the
    ``(dim, tiers)`` matrix ``Wᵀ (v ⊙ w)ᵀ``, which costs dim × tiers per prompt."""
    scores: np.ndarray = x @ (projection.T @ (tier_vectors * weights).T) + bias
    return scores


def _gradients(
    params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, l2: float
) -> dict[str, np.ndarray]:
    """The gradient of the mean (over prompts, summed over tiers) logistic loss plus
    ``l2 / 2`` times the squared norms of ``W``, ``v`` and ``w``."""
    w_proj, v, w, b = params["W"], params["v"], params["w"], params["b"]
    u = v * w  # (tiers, latent)
    dz = (_sigmoid(_logits(w_proj, v, w, b, x)) - y) / len(x)  # (n, tiers)
    g = dz.T @ x  # (tiers, dim): the prompts enter only here, never through (n, latent)
    du = g @ w_proj.T  # (tiers, latent)
    return {
        "W": u.T @ g + l2 * w_proj,
        "v": du * w + l2 * v,
        "w": (du * v).sum(axis=0) + l2 * w,
        "b": dz.sum(axis=0),
    }
