"""Shared fixtures: loopback OpenAI servers, a two-tier zoo on them, spans, clean config.

agentflow's configuration is process-global, so every test starts and ends without one.
agentflow emits spans through the global OpenTelemetry tracer (a ProxyTracer taken at
import), and the global provider can be set only once per process: ``spans`` sets it once
per session with an in-memory exporter and clears that exporter for each test.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
from agentflow import _config
from agentflow.testing import LoopbackServer, reset_state
from budgets import TokenPricing

# A key that tests look for on spans, in reprs and in logs: it must never show up.
API_KEY = "sk-loopback-secret-0123456789"

# $1 per 1M input tokens, $0.50 per 1M cached input tokens, $2 per 1M output tokens
SMALL_PRICE = TokenPricing(
    input_per_mtok=Decimal("1"), cached_input_per_mtok=Decimal("0.5"), output_per_mtok=Decimal("2")
)
# ten times the small tier
BIG_PRICE = TokenPricing(
    input_per_mtok=Decimal("10"), cached_input_per_mtok=Decimal("5"), output_per_mtok=Decimal("20")
)
FAST_RETRY = af.RetryPolicy(initial_backoff=0.01, max_backoff=0.05)

USER = [{"role": "user", "content": "What is the capital of France?"}]


def _endpoint(
    srv: LoopbackServer,
    model: str = "small-model",
    *,
    pricing: Any = SMALL_PRICE,
    timeout: float = 5.0,
    **extra: Any,
) -> af.Endpoint:
    """An endpoint on a loopback server; ``model`` is what the server sees."""
    return af.Endpoint(
        model=f"openai/{model}",
        api_base=srv.base_url,
        api_key=API_KEY,
        pricing=pricing,
        timeout=timeout,
        **extra,
    )


def _two_tier_zoo(srv: LoopbackServer) -> af.ModelZoo:
    """``small`` (small-model, SMALL_PRICE) then ``big`` (big-model, BIG_PRICE) on ``srv``."""
    return af.ModelZoo(
        tiers=[
            af.Tier("small", endpoints=[_endpoint(srv, "small-model")]),
            af.Tier("big", endpoints=[_endpoint(srv, "big-model", pricing=BIG_PRICE)]),
        ]
    )


@pytest.fixture
def api_key() -> str:
    """The key every loopback endpoint is given; it must never show on spans or reprs."""
    return API_KEY


@pytest.fixture
def make_endpoint() -> Any:
    """``make_endpoint(srv, model="small-model", pricing=..., timeout=5.0, **extra)``."""
    return _endpoint


@pytest.fixture
def fast_retry() -> af.RetryPolicy:
    return FAST_RETRY


@pytest.fixture(autouse=True)
def _clean_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test sees another's zoo, nor a step another test decorated with its own tiers,
    nor an answer another test cached (each test gets its own AGENTFLOW_CACHE_DIR)."""
    reset_state()
    cache_before = os.environ.get("AGENTFLOW_CACHE_DIR")
    os.environ["AGENTFLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("agentflow-cache"))
    steps_before = set(_config._steps)
    env_before = os.environ.get("AGENTFLOW_CONFIG")
    yield
    _config.reset()
    for policy in set(_config._steps) - steps_before:
        _config._steps.discard(policy)
    if env_before is None:
        os.environ.pop("AGENTFLOW_CONFIG", None)
    reset_state()
    if cache_before is None:
        os.environ.pop("AGENTFLOW_CACHE_DIR", None)
    else:
        os.environ["AGENTFLOW_CACHE_DIR"] = cache_before


@pytest.fixture
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer(name="primary") as server:
        yield server


@pytest.fixture
def zoo(srv: LoopbackServer) -> af.ModelZoo:
    """The two-tier zoo on ``srv``, configured with fast retries."""
    z = _two_tier_zoo(srv)
    af.configure(zoo=z, retry=FAST_RETRY)
    return z


# -- spans ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _session_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # someone (tracing.setup in another test) set the global provider first: join it
        current.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider
    return exporter


@pytest.fixture
def spans(_session_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The spans agentflow ends during this test (``spans.get_finished_spans()``)."""
    _session_exporter.clear()
    yield _session_exporter
    _session_exporter.clear()


# -- Redis ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole session. Without
    redis-server this skips locally and FAILS when ``CI`` is set."""
    from tests._redis import start_redis

    server = start_redis()
    try:
        yield server.url
    finally:
        server.stop()
