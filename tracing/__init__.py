"""tracing: OpenTelemetry spans and metrics that attribute cost across a model cascade.

Usable without agentflow. Attribute names follow OpenInference (what Arize Phoenix
reads) and the OpenTelemetry GenAI conventions; agentflow's own live under
``agentflow.*``. Importing this package is cheap and configures nothing: the SDK is set
up only by ``tracing.setup()``.

    import tracing
    providers = tracing.setup(project="research", jsonl_path="spans.jsonl")
    with tracing.tracer().start_as_current_span("chat") as span:
        span.set_attributes(tracing.llm_attributes(model=..., provider=..., ...))

``tracing.tracer()`` / ``tracing.meter()`` come from the global providers unless
``tracing.use_providers(...)`` injected others (tests do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracing import _conventions as attributes
from tracing._attributes import (
    cache_hit_attributes,
    embedding_attributes,
    llm_attributes,
    rollup_attributes,
    run_attributes,
    session_attributes,
    step_attributes,
)
from tracing._content import (
    ContentConfig,
    content_attributes,
    content_config,
    set_content_config,
    truncate,
)
from tracing._errors import PhoenixError, TracingError
from tracing._metrics import Metrics, record_cache_hit, record_call
from tracing._providers import meter, tracer, use_providers
from tracing._redact import (
    RedactingFilter,
    install_log_redaction,
    is_secret_key,
    redact,
    register_secrets,
)
from tracing._setup import Providers, setup
from tracing._spans import record_error
from tracing._warnings import UnsentSpansWarning

if TYPE_CHECKING:
    from tracing._export import RedactingSpanExporter
    from tracing._jsonl import JsonlSpanExporter, read_spans

__all__ = [
    "ContentConfig",
    "JsonlSpanExporter",
    "Metrics",
    "PhoenixError",
    "Providers",
    "RedactingFilter",
    "RedactingSpanExporter",
    "TracingError",
    "UnsentSpansWarning",
    "attributes",
    "cache_hit_attributes",
    "content_attributes",
    "content_config",
    "embedding_attributes",
    "install_log_redaction",
    "is_secret_key",
    "llm_attributes",
    "meter",
    "read_spans",
    "record_cache_hit",
    "record_call",
    "record_error",
    "redact",
    "register_secrets",
    "rollup_attributes",
    "run_attributes",
    "session_attributes",
    "set_content_config",
    "setup",
    "step_attributes",
    "tracer",
    "truncate",
    "use_providers",
]

# Names whose modules import the OpenTelemetry SDK: loaded on first use.
_LAZY = {
    "JsonlSpanExporter": "tracing._jsonl",
    "read_spans": "tracing._jsonl",
    "RedactingSpanExporter": "tracing._export",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'tracing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
