"""``train_router``: a learned router of a named kind, trained on labelled outcomes."""

from __future__ import annotations

from typing import Any

from agentflow._errors import ConfigError
from agentflow.routing._embed import Embedder
from agentflow.routing._learned import KnnRouter, LogisticRouter
from agentflow.routing._mf import MfRouter
from agentflow.routing._outcomes import Outcomes

__all__ = ["ROUTER_KINDS", "train_router"]

ROUTER_KINDS: dict[str, type[KnnRouter] | type[LogisticRouter] | type[MfRouter]] = {
    "knn": KnnRouter,
    "logistic": LogisticRouter,
    "mf": MfRouter,
}
"""The learned routers by the name ``train_router``, the CLI and router files use."""


def train_router(
    outcomes: Outcomes,
    kind: str = "knn",
    *,
    threshold: float | None = None,
    embedder: Embedder | None = None,
    rule: str = "gain",
    **options: Any,
) -> KnnRouter | LogisticRouter | MfRouter:
    """Train a ``"knn"`` (options: ``k``), ``"logistic"`` (``l2``, ``steps``,
    ``learning_rate``) or ``"mf"`` matrix-factorisation (``latent``, ``l2``, ``steps``,
    ``learning_rate``, ``seed``) router on labelled outcomes. ``embedder``: default
    ``af.LocalEmbedder()`` when the ``embed`` extra is installed, else
    ``HashingEmbedder()``. ``rule``: ``"gain"`` (expected gain per dollar, priced by the
    outcomes' mean cost per tier) or ``"confidence"``; ``threshold`` defaults to
    ``DEFAULT_THRESHOLD[rule]``."""
    if kind not in ROUTER_KINDS:
        raise ConfigError(f"unknown router kind {kind!r}; use {', '.join(map(repr, ROUTER_KINDS))}")
    return ROUTER_KINDS[kind].train(
        outcomes, threshold=threshold, embedder=embedder, rule=rule, **options
    )
