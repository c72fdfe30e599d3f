"""GenAI metrics through an InMemoryMetricReader: names, units, buckets, attributes."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import tracing
from tracing._metrics import DURATION_BUCKETS, TOKEN_BUCKETS

SPEC_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                      16777216, 67108864]  # fmt: skip
SPEC_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                         20.48, 40.96, 81.92]  # fmt: skip


def _metrics(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


def test_bucket_constants_are_the_spec_ones() -> None:
    assert list(TOKEN_BUCKETS) == SPEC_TOKEN_BUCKETS
    assert list(DURATION_BUCKETS) == SPEC_DURATION_BUCKETS


def test_record_call(metrics: tracing.Metrics, metric_reader: InMemoryMetricReader) -> None:
    metrics.record_call(
        model="smollm2-135m",
        provider="openai",
        input_tokens=1200,
        output_tokens=150,
        duration_s=0.7,
        cost_usd=0.0011,
        ttft_s=0.05,
        attributes={"agentflow.tier": "specialist"},
    )
    metrics.record_call(
        model="smollm2-135m", provider="openai", duration_s=0.2, error_type="RateLimitError"
    )
    found = _metrics(metric_reader)

    usage = found["gen_ai.client.token.usage"]
    assert usage.unit == "{token}"
    points = {p.attributes["gen_ai.token.type"]: p for p in usage.data.data_points}
    assert set(points) == {"input", "output"}
    assert points["input"].sum == 1200
    assert points["output"].sum == 150
    assert list(points["input"].explicit_bounds) == SPEC_TOKEN_BUCKETS
    assert points["input"].attributes["gen_ai.request.model"] == "smollm2-135m"
    assert points["input"].attributes["gen_ai.provider.name"] == "openai"
    assert points["input"].attributes["gen_ai.operation.name"] == "chat"
    assert points["input"].attributes["agentflow.tier"] == "specialist"

    duration = found["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    by_error = {p.attributes.get("error.type"): p for p in duration.data.data_points}
    assert set(by_error) == {None, "RateLimitError"}
    assert by_error[None].sum == pytest.approx(0.7)
    assert list(by_error[None].explicit_bounds) == SPEC_DURATION_BUCKETS

    ttft = found["gen_ai.client.operation.time_to_first_chunk"]
    assert ttft.unit == "s"
    (point,) = ttft.data.data_points
    assert point.sum == pytest.approx(0.05)
    assert list(point.explicit_bounds) == SPEC_DURATION_BUCKETS

    cost = found["agentflow.cost"]
    assert cost.unit == "USD"
    (point,) = cost.data.data_points
    assert point.value == pytest.approx(0.0011)


def test_record_cache_hit(metrics: tracing.Metrics, metric_reader: InMemoryMetricReader) -> None:
    metrics.record_cache_hit(kind="exact", saved_usd=0.002)
    metrics.record_cache_hit(kind="exact", saved_usd=0.001)
    metrics.record_cache_hit(kind="semantic", saved_usd=0.0)
    found = _metrics(metric_reader)
    hits = {p.attributes["agentflow.cache.kind"]: p.value for p in found["agentflow.cache.hits"]
            .data.data_points}  # fmt: skip
    assert hits == {"exact": 2, "semantic": 1}
    (saved,) = found["agentflow.cost.saved"].data.data_points
    assert saved.value == pytest.approx(0.003)
    assert found["agentflow.cost.saved"].unit == "USD"


def test_module_functions_use_the_global_meter_and_never_fail() -> None:
    # Before any setup() the global meter is a proxy: recording is a harmless no-op.
    tracing.record_call("m", "p", input_tokens=1, output_tokens=1, duration_s=0.1)
    tracing.record_cache_hit("exact", 0.001)
