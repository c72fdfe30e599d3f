"""Live OpenTelemetry metrics per call, with bounded dimensions (tier, step, endpoint,
cache outcome, status): calls, cost, tokens by kind, latency, time to first token and
calls in flight, read back from a real SDK MeterProvider over a loopback server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import agentflow as af
import tracing
from agentflow.testing import Fault, LoopbackServer, Reply
from tracing import attributes as A

Q = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    with tracing.use_providers(meter_provider=MeterProvider([reader])):
        yield reader


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        point
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def _sums(reader: InMemoryMetricReader, name: str, *keys: str) -> dict[tuple[Any, ...], Any]:
    """``{(attribute values for keys): summed value}`` of a counter, or of a histogram's
    counts."""
    out: dict[tuple[Any, ...], Any] = {}
    for point in _points(reader, name):
        attrs = point.attributes or {}
        key = tuple(attrs.get(k) for k in keys)
        value = getattr(point, "value", None)
        if value is None:
            value = point.count  # a histogram: how many were recorded
        out[key] = out.get(key, 0) + value
    return out


def test_every_call_is_counted_with_its_tier_step_endpoint_cache_outcome_and_status(
    zoo: af.ModelZoo, srv: LoopbackServer, reader: InMemoryMetricReader
) -> None:
    small, big = (t.endpoints[0].id for t in zoo.tiers)

    @af.verify(name="check", tier="small", escalate=af.Escalate(min_confidence=0.8))
    def check() -> af.Completion:
        return af.complete(messages=Q)

    @af.plan(name="plan", tier="small", cache="exact")
    def plan() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(
        Reply("Lyon", logprobs=[-3.0], prompt_tokens=40, cached_tokens=30, completion_tokens=1),
        Fault.status(500),  # the strong tier fails once, then answers
        Reply("Paris", logprobs=[-0.01], prompt_tokens=40, completion_tokens=1),
        Reply("a plan", prompt_tokens=20, completion_tokens=3),
    )
    with af.run("agent") as run:
        checked = check()
        plan()
        plan()  # from the response cache
    assert checked.tier == "big"

    calls = _sums(
        reader,
        "agentflow.calls",
        A.AGENTFLOW_TIER,
        A.AGENTFLOW_STEP_NAME,
        A.AGENTFLOW_ENDPOINT,
        A.AGENTFLOW_CACHE_OUTCOME,
        A.AGENTFLOW_STATUS,
    )
    assert calls == {
        ("small", "check", small, "miss", "ok"): 1,
        ("big", "check", big, "miss", "error"): 1,
        ("big", "check", big, "miss", "ok"): 1,
        ("small", "plan", small, "miss", "ok"): 1,
        ("small", "plan", "cache:exact", "exact", "ok"): 1,
    }
    tokens = _sums(
        reader, "agentflow.tokens", A.AGENTFLOW_STEP_NAME, A.AGENTFLOW_TIER, A.AGENTFLOW_TOKEN_KIND
    )
    assert tokens == {
        ("check", "small", "input_uncached"): 10,
        ("check", "small", "input_cached"): 30,
        ("check", "small", "output"): 1,
        ("check", "big", "input_uncached"): 40,
        ("check", "big", "output"): 1,
        ("plan", "small", "input_uncached"): 20,
        ("plan", "small", "output"): 3,
    }
    cost = _sums(reader, "agentflow.cost", A.AGENTFLOW_TIER)
    by_tier = {
        tier: sum((a.cost.total_usd for a in run.attempts if a.tier == tier), Decimal(0))
        for tier in ("small", "big")
    }
    assert cost[("small",)] == pytest.approx(float(by_tier["small"]))
    assert cost[("big",)] == pytest.approx(float(by_tier["big"]))
    latency = _sums(
        reader,
        "gen_ai.client.operation.duration",
        A.AGENTFLOW_STEP_NAME,
        A.AGENTFLOW_TIER,
        A.ERROR_TYPE,
    )
    assert latency[("check", "big", None)] == 1
    assert sum(v for (step, tier, err), v in latency.items() if err is not None) == 1
    saved = _sums(reader, "agentflow.cost.saved", A.AGENTFLOW_STEP_NAME, A.AGENTFLOW_CACHE_KIND)
    assert saved[("plan", "exact")] > 0
    # nothing left in flight once every call came back
    in_flight = _sums(reader, "agentflow.calls.in_flight", A.AGENTFLOW_ENDPOINT)
    assert in_flight == {(small,): 0, (big,): 0}


def test_calls_in_flight_and_time_to_first_token(
    zoo: af.ModelZoo, srv: LoopbackServer, reader: InMemoryMetricReader
) -> None:
    small = zoo.tiers[0].endpoints[0].id

    @af.step(name="slow", tier="small")
    def slow() -> str:
        return af.complete(messages=Q).text

    srv.script(Reply("Paris", latency=1.0))
    worker = threading.Thread(target=slow)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        seen: dict[tuple[Any, ...], Any] = {}
        while time.monotonic() < deadline and seen.get((small,)) != 1:
            time.sleep(0.02)
            seen = _sums(reader, "agentflow.calls.in_flight", A.AGENTFLOW_ENDPOINT)
        assert seen == {(small,): 1}  # sent, not yet answered
    finally:
        worker.join()
    assert _sums(reader, "agentflow.calls.in_flight", A.AGENTFLOW_ENDPOINT) == {(small,): 0}

    @af.step(name="streamed", tier="small")
    def streamed() -> str:
        stream = af.complete(messages=Q, stream=True)
        for _ in stream:
            pass
        return str(stream.text)

    srv.script(Reply("Paris is the capital", chunk_delay=0.01))
    assert streamed() == "Paris is the capital"
    ttft = _sums(
        reader,
        "gen_ai.client.operation.time_to_first_chunk",
        A.AGENTFLOW_STEP_NAME,
        A.AGENTFLOW_TIER,
        A.AGENTFLOW_ENDPOINT,
    )
    assert ttft == {("streamed", "small", small): 1}
    assert _sums(reader, "agentflow.calls.in_flight", A.AGENTFLOW_ENDPOINT) == {(small,): 0}
