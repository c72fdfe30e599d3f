"""Fixtures for the tracing tests.

Each test gets its own TracerProvider / MeterProvider: the global ones can be set only
once per process, so no test relies on them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

import tracing


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def tracer(tracer_provider: TracerProvider) -> Tracer:
    return tracer_provider.get_tracer("tests")


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[metric_reader], shutdown_on_exit=False)
    yield provider
    provider.shutdown()


@pytest.fixture
def metrics(meter_provider: MeterProvider) -> tracing.Metrics:
    return tracing.Metrics(meter_provider)


@pytest.fixture(autouse=True)
def _clean_content_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's content settings, and none leaks its own."""
    for name in (
        "OPENINFERENCE_HIDE_INPUTS",
        "OPENINFERENCE_HIDE_OUTPUTS",
        "AGENTFLOW_CAPTURE_CONTENT",
        "AGENTFLOW_MAX_CONTENT_CHARS",
    ):
        monkeypatch.delenv(name, raising=False)
    before = tracing.content_config()
    yield
    tracing.set_content_config(before)
