"""tracing.use_providers(), tracing.tracer() and tracing.meter(): injected providers.

Every test injects fresh SDK providers with in-memory exporters and checks where spans
and metric points land, during the injection and after it ends; none relies on (or sets)
the global providers, which may or may not have been set by other tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracing


@dataclass
class Sink:
    """A tracer provider and a meter provider that keep what they receive in memory."""

    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def span_names(self) -> list[str]:
        return [span.name for span in self.spans.get_finished_spans()]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for found in scope_metrics.metrics
            if found.name == metric
            for point in found.data.data_points
        ]

    def cost(self) -> float:
        return float(sum(point.value for point in self.points("agentflow.cost")))

    def inject(self) -> AbstractContextManager[None]:
        return tracing.use_providers(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )


def _sink() -> Sink:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    return Sink(tracer_provider, spans, meter_provider, reader)


@pytest.fixture
def sink() -> Iterator[Sink]:
    made = _sink()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


@pytest.fixture
def other() -> Iterator[Sink]:
    made = _sink()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


@pytest.fixture(autouse=True)
def _no_injection_leaks() -> Iterator[None]:
    """Every test starts and ends on the global providers."""
    tracing.use_providers()
    yield
    tracing.use_providers()


def _span(name: str) -> None:
    with tracing.tracer().start_as_current_span(name):
        pass


def _call(cost_usd: float) -> None:
    tracing.record_call(model="m", provider="openai", input_tokens=10, cost_usd=cost_usd)


def test_spans_and_metrics_reach_the_injected_providers_until_exit(sink: Sink) -> None:
    _span("before")
    _call(1.0)
    with sink.inject():
        _span("inside")
        _call(0.25)
        tracing.meter().create_counter("tests.direct").add(3)
    _span("after")
    _call(4.0)

    assert sink.span_names() == ["inside"]
    assert sink.cost() == pytest.approx(0.25)
    (tokens,) = sink.points("gen_ai.client.token.usage")
    assert tokens.sum == 10
    (direct,) = sink.points("tests.direct")
    assert direct.value == 3
    scopes = {span.instrumentation_scope for span in sink.spans.get_finished_spans()}
    assert [scope.name for scope in scopes if scope is not None] == ["agentflow"]


def test_the_switch_happens_at_the_call_and_the_exit_restores(sink: Sink) -> None:
    restore = sink.inject()  # a plain call switches already
    try:
        _span("plain call")
    finally:
        with restore:  # entering the returned object later is allowed too
            pass
    _span("after")
    assert sink.span_names() == ["plain call"]


def test_calling_with_no_provider_goes_back_to_the_global_ones(sink: Sink) -> None:
    sink.inject()
    _span("injected")
    tracing.use_providers()
    _span("global")
    _call(1.0)
    assert sink.span_names() == ["injected"]
    assert sink.cost() == 0


def test_none_means_the_global_provider_for_that_signal(sink: Sink) -> None:
    with tracing.use_providers(tracer_provider=sink.tracer_provider):
        _span("traced")
        _call(1.0)
    with tracing.use_providers(meter_provider=sink.meter_provider):
        _span("not traced")
        _call(2.0)
    assert sink.span_names() == ["traced"]
    assert sink.cost() == pytest.approx(2.0)


def test_nested_injections_restore_in_turn(sink: Sink, other: Sink) -> None:
    with sink.inject():
        _span("outer 1")
        _call(1.0)
        outer_tracer = tracing.tracer()
        with other.inject():
            _span("inner")
            _call(10.0)
            assert tracing.tracer() is not outer_tracer
        _span("outer 2")
        _call(2.0)  # the default instruments follow the provider back
        assert tracing.tracer() is outer_tracer  # the outer selection's cache came back
    _span("outside")
    _call(100.0)

    assert sink.span_names() == ["outer 1", "outer 2"]
    assert other.span_names() == ["inner"]
    assert sink.cost() == pytest.approx(3.0)
    assert other.cost() == pytest.approx(10.0)


def test_tracers_and_meters_are_cached_per_provider_and_name(sink: Sink, other: Sink) -> None:
    with sink.inject():
        assert tracing.tracer() is tracing.tracer()
        assert tracing.tracer("mine") is tracing.tracer("mine")
        assert tracing.tracer("mine") is not tracing.tracer()
        assert tracing.meter() is tracing.meter()
        tracing.tracer("mine").start_span("s").end()
    (span,) = sink.spans.get_finished_spans()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "mine"
    with other.inject():
        assert tracing.meter() is other.meter_provider.get_meter("agentflow")


def test_explicit_metrics_ignore_the_injection(sink: Sink, other: Sink) -> None:
    mine = tracing.Metrics(other.meter_provider)
    with sink.inject():
        mine.record_call(model="m", provider="openai", cost_usd=1.0)
        tracing.Metrics().record_call(model="m", provider="openai", cost_usd=2.0)
    assert other.cost() == pytest.approx(1.0)
    assert sink.cost() == pytest.approx(2.0)


def test_exiting_out_of_order_warns(sink: Sink, other: Sink) -> None:
    outer = sink.inject()
    inner = other.inject()
    with pytest.warns(RuntimeWarning, match="later injection was still active"):
        outer.__exit__(None, None, None)
    _span("global again")
    with pytest.warns(RuntimeWarning):  # puts `sink` back: the documented cost of misuse
        inner.__exit__(None, None, None)
    _span("sink again")
    assert sink.span_names() == ["sink again"]
    assert other.span_names() == []


def test_exiting_twice_restores_once(sink: Sink, other: Sink) -> None:
    with sink.inject():
        restore = other.inject()
        restore.__exit__(None, None, None)
        restore.__exit__(None, None, None)
        _span("still sink")
    assert sink.span_names() == ["still sink"]


def test_worker_threads_see_the_injection(sink: Sink) -> None:
    """Process-wide, not a context variable: pool threads do not inherit the caller's
    context, and their telemetry must still reach the injected providers."""

    def work(i: int) -> None:
        _span(f"worker {i}")
        _call(1.0)

    with sink.inject(), ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(8)))
    assert sorted(sink.span_names()) == sorted(f"worker {i}" for i in range(8))
    assert sink.cost() == pytest.approx(8.0)


def test_concurrent_first_use_makes_one_tracer_and_loses_no_measurement(sink: Sink) -> None:
    threads = 8
    calls = 200
    start = threading.Barrier(threads)
    tracers: list[object] = []

    def work() -> None:
        start.wait()
        tracers.append(tracing.tracer("concurrent"))
        for _ in range(calls):
            _call(1.0)
            with tracing.tracer("concurrent").start_as_current_span("s"):
                pass

    with sink.inject():
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    assert len({id(t) for t in tracers}) == 1
    assert len(sink.span_names()) == threads * calls
    assert sink.cost() == pytest.approx(threads * calls)
