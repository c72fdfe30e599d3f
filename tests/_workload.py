"""A recorded workload for the report tests: a synthetic burst of calls against a
loopback fleet, one tier priced by the GPU-hour (two replicas), one by the token, spans
written to a JSONL file, and every ``Completion`` kept so a test can work out by hand what
the report should say.

One warm-up call happens before the window; the window is ``[since_s, since_s + 60 s)``
and holds everything else: ``classify`` (specialist, 16 prefixes so both replicas serve),
``answer`` (heavy), ``lookup`` twice with an exact cache (one hit) and one streamed call.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

import agentflow as af
import tracing
from agentflow import _config
from agentflow.testing import LoopbackServer, Reply
from budgets import GpuHourPricing, TokenPricing

GPU = GpuHourPricing(
    usd_per_gpu_hour=Decimal("1.10"), gpus=2, prompt_tokens_per_s=2000, output_tokens_per_s=500
)
TOKENS = TokenPricing(input_per_mtok=2.5, cached_input_per_mtok=1.25, output_per_mtok=10)
WINDOW_S = 60.0
CLASSIFY_CALLS = 200
ANSWER_CALLS = 30


class _Switch(SpanProcessor):
    """Forwards to ``inner`` until turned off: processors cannot be removed from a provider."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.on = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.on:
            self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.inner.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis) if self.on else True


@contextmanager
def spans_to_jsonl(path: Path) -> Iterator[Path]:
    """While open, ended spans also go to ``path`` as JSONL (what ``agentflow report``
    reads); the global provider must be an SDK one (the conftest's ``spans`` installs it)."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = tracing.JsonlSpanExporter(path)
    switch = _Switch(SimpleSpanProcessor(exporter))
    provider.add_span_processor(switch)
    try:
        yield path
    finally:
        switch.on = False
        exporter.shutdown()


@dataclass
class Workload:
    path: Path
    since_s: float  # the window's start, a whole millisecond
    completions: list[af.Completion]  # every call inside the window
    warmup: af.Completion

    @property
    def until_s(self) -> float:
        return self.since_s + WINDOW_S


async def _burst() -> list[af.Completion]:
    gate = asyncio.Semaphore(16)

    @af.step(name="classify", tier="specialist")
    async def classify(i: int) -> af.Completion:
        system = {"role": "system", "content": f"You sort tickets of queue {i % 16}. " * 8}
        async with gate:
            return await af.acomplete(messages=[system, {"role": "user", "content": f"#{i}"}])

    @af.step(name="answer", tier="heavy")
    async def answer(i: int) -> af.Completion:
        async with gate:
            return await af.acomplete(messages=[{"role": "user", "content": f"Explain {i}"}])

    @af.step(name="lookup", tier="heavy", cache="exact")
    async def lookup() -> af.Completion:
        return await af.acomplete(messages=[{"role": "user", "content": "Opening hours?"}])

    @af.step(name="stream", tier="specialist")
    async def stream() -> af.Completion:
        chunks = await af.acomplete(
            messages=[{"role": "user", "content": "Stream it"}], stream=True
        )
        async for _ in chunks:
            pass
        assert chunks.completion is not None
        return chunks.completion

    async with af.run("burst"):
        done = await asyncio.gather(
            *(classify(i) for i in range(CLASSIFY_CALLS)),
            *(answer(i) for i in range(ANSWER_CALLS)),
        )
        first = await lookup()
        second = await lookup()
        streamed = await stream()
    return [*done, first, second, streamed]


def record(tmp_path: Path, also: SpanExporter | None = None) -> Workload:
    """Run the workload with spans going to ``tmp_path/spans.jsonl`` (and to ``also``,
    e.g. a Phoenix's OTLP endpoint)."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)  # the conftest's ``spans`` installs one
    path = tmp_path / "spans.jsonl"
    exporter = tracing.JsonlSpanExporter(path)
    switch = _Switch(SimpleSpanProcessor(exporter))
    provider.add_span_processor(switch)
    extra = _Switch(BatchSpanProcessor(also)) if also is not None else None
    if extra is not None:
        provider.add_span_processor(extra)
    try:
        with (
            LoopbackServer(name="replica-a") as a,
            LoopbackServer(name="replica-b") as b,
            LoopbackServer(name="heavy") as h,
        ):
            a.default = Reply(
                "ok", prompt_tokens=300, cached_tokens=200, completion_tokens=20, chunk_delay=0.01
            )
            b.default = Reply(
                "ok", prompt_tokens=120, cached_tokens=0, completion_tokens=8, chunk_delay=0.01
            )
            h.default = Reply("sure", prompt_tokens=400, cached_tokens=100, completion_tokens=30)

            def gpu(srv: LoopbackServer) -> af.Endpoint:
                return af.Endpoint(model="openai/small", api_base=srv.base_url, pricing=GPU)

            af.configure(
                zoo=af.ModelZoo(
                    tiers=[
                        af.Tier("specialist", endpoints=[gpu(a), gpu(b)]),
                        af.Tier(
                            "heavy",
                            endpoints=[
                                af.Endpoint(model="openai/big", api_base=h.base_url, pricing=TOKENS)
                            ],
                        ),
                    ]
                ),
                retry=af.RetryPolicy(initial_backoff=0.01),
                cache_dir=tmp_path / "cache",  # a fresh response cache: one hit, not two
            )
            with af.run("warmup"):
                warmup = af.complete(messages=[{"role": "user", "content": "warm up"}])
            since_s = math.ceil(time.time() * 1000 + 2) / 1000
            while time.time() < since_s:
                time.sleep(0.001)
            completions = asyncio.run(_burst())
            assert time.time() < since_s + WINDOW_S, "the burst outran its window"
    finally:
        if extra is not None:
            extra.force_flush()
            extra.on = False
        switch.on = False
        exporter.shutdown()
        _config.reset()
    return Workload(path, since_s, completions, warmup)
