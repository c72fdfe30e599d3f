"""Routing for ``tier="auto"`` steps, and an offline harness to choose a policy.

    from agentflow.routing import Rule, RuleRouter

    af.configure(zoo=zoo, router=RuleRouter(
        rules=[Rule("heavy", min_tokens=2000), Rule("small", kinds="retrieval")],
        default="workhorse",
    ))

A router is anything with ``choose(messages, *, kind, tiers) -> tier``. ``RuleRouter``
follows hand-written rules; ``KnnRouter``, ``LogisticRouter`` and ``MfRouter`` (matrix
factorisation) learn from labelled outcomes (which tier answered which prompt correctly)
and pick the tier with the best expected gain for its price, trading cost for quality
with their ``threshold``. They embed prompts with ``af.LocalEmbedder()`` when the
``embed`` extra is installed (``default_embedder``), else ``HashingEmbedder``.
``evaluate`` compares them with escalation, a random router and an oracle offline, and
scores them as the literature does (APGR, CPT(50%), CPT(80%), bootstrap intervals);
``read_routellm_csv`` reads RouteLLM's public outcome files; ``agentflow route train`` /
``agentflow route eval`` do the same from the command line.
"""

from agentflow.routing._embed import Embedder, HashingEmbedder, default_embedder
from agentflow.routing._embed_cache import CachedEmbedder
from agentflow.routing._harness import Curve, HarnessReport, Point, evaluate
from agentflow.routing._learned import KnnRouter, LearnedRouter, LogisticRouter
from agentflow.routing._load import SAMPLE_OUTCOMES, load_router
from agentflow.routing._metrics import Estimate, GapMetrics
from agentflow.routing._mf import MfRouter
from agentflow.routing._outcomes import Outcomes, OutcomesError, read_outcomes
from agentflow.routing._plot import plot_report
from agentflow.routing._routellm import DEFAULT_PRICES, read_contamination, read_routellm_csv
from agentflow.routing._router import Router
from agentflow.routing._rules import Rule, RuleRouter
from agentflow.routing._train import train_router

__all__ = [
    "DEFAULT_PRICES",
    "SAMPLE_OUTCOMES",
    "CachedEmbedder",
    "Curve",
    "Embedder",
    "Estimate",
    "GapMetrics",
    "HarnessReport",
    "HashingEmbedder",
    "KnnRouter",
    "LearnedRouter",
    "LogisticRouter",
    "MfRouter",
    "Outcomes",
    "OutcomesError",
    "Point",
    "Router",
    "Rule",
    "RuleRouter",
    "default_embedder",
    "evaluate",
    "load_router",
    "plot_report",
    "read_contamination",
    "read_outcomes",
    "read_routellm_csv",
    "train_router",
]
