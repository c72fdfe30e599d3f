"""Routing for ``tier="auto"`` steps, and an offline harness to choose a policy.

    from agentflow.routing import Rule, RuleRouter

    af.configure(zoo=zoo, router=RuleRouter(
        rules=[Rule("heavy", min_tokens=2000), Rule("small", kinds="retrieval")],
        default="workhorse",
    ))

A router is anything with ``choose(messages, *, kind, tiers) -> tier``. ``RuleRouter``
follows hand-written rules; ``KnnRouter`` and ``LogisticRouter`` learn from labelled
outcomes (which tier answered which prompt correctly) and trade cost for quality with
their ``threshold``. ``evaluate`` compares them with escalation and an oracle offline;
``agentflow route train`` / ``agentflow route eval`` do the same from the command line.
"""

from agentflow.routing._embed import Embedder, HashingEmbedder
from agentflow.routing._harness import Curve, HarnessReport, Point, evaluate
from agentflow.routing._learned import KnnRouter, LearnedRouter, LogisticRouter, train_router
from agentflow.routing._load import SAMPLE_OUTCOMES, load_router
from agentflow.routing._outcomes import (
    DEFAULT_COSTS,
    Outcomes,
    OutcomesError,
    read_outcomes,
    read_routellm_csv,
)
from agentflow.routing._plot import plot_report
from agentflow.routing._router import Router
from agentflow.routing._rules import Rule, RuleRouter

__all__ = [
    "DEFAULT_COSTS",
    "SAMPLE_OUTCOMES",
    "Curve",
    "Embedder",
    "HarnessReport",
    "HashingEmbedder",
    "KnnRouter",
    "LearnedRouter",
    "LogisticRouter",
    "Outcomes",
    "OutcomesError",
    "Point",
    "Router",
    "Rule",
    "RuleRouter",
    "evaluate",
    "load_router",
    "plot_report",
    "read_outcomes",
    "read_routellm_csv",
    "train_router",
]
