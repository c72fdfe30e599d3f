"""Loading routers from their JSON files, and the sample outcomes shipped with agentflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentflow._errors import ConfigError
from agentflow.routing._embed import Embedder
from agentflow.routing._learned import KnnRouter, LogisticRouter
from agentflow.routing._mf import MfRouter
from agentflow.routing._router import read_router_file
from agentflow.routing._rules import RuleRouter

__all__ = ["SAMPLE_OUTCOMES", "load_router"]

SAMPLE_OUTCOMES = Path(__file__).parent / "data" / "sample_outcomes.jsonl"
"""Real outcomes of local models on short checkable questions (see the docs)."""


def load_router(
    path: str | Path, *, embedder: Embedder | None = None
) -> RuleRouter | KnnRouter | LogisticRouter | MfRouter:
    """A router saved with ``router.save(path)`` or ``agentflow route train``.

    A learned router comes back with the embedder it was trained with (the file names
    ``LocalEmbedder`` or ``HashingEmbedder`` and its settings). ``embedder``: give it
    when that was a custom one (a file cannot hold a function).
    """
    data: dict[str, Any] = read_router_file(path)
    kind = data.get("kind")
    try:
        if kind == "rules":
            return RuleRouter.from_dict(data)
        if kind == "knn":
            return KnnRouter.from_dict(data, embedder)
        if kind == "logistic":
            return LogisticRouter.from_dict(data, embedder)
        if kind == "mf":
            return MfRouter.from_dict(data, embedder)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{path}: a broken {kind} router file ({err!r})") from None
    raise ConfigError(f"{path}: unknown router kind {kind!r}; expected rules, knn, logistic or mf")
