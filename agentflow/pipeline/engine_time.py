"""The engine's own busy time: what llama-server, vLLM and SGLang count in ``/metrics``,
sampled into ``agentflow.engine.sample`` spans so ``agentflow report`` can set it beside
the GPU time agentflow attributed to calls.

The counters (monotonic, reset when the engine restarts):

- llama-server (``--metrics``): ``llamacpp:prompt_seconds_total`` +
  ``llamacpp:tokens_predicted_seconds_total``, the seconds its slots spent on prompts and
  on generating. Per slot: two slots decoding in one batch count two seconds per second.
- vLLM: ``vllm:request_prefill_time_seconds_sum`` + ``vllm:request_decode_time_seconds_sum``
  (else ``vllm:request_inference_time_seconds_sum``, their sum in one histogram): the
  seconds requests spent being computed, queueing left out (``e2e_request_latency``
  would count waiting as busy). Per request: a batch of 8 counts 8 seconds per second.
- SGLang (``--enable-metrics``): ``sglang:gpu_execution_seconds_total`` (every
  ``category`` but ``idle``: the empty batches data-parallel attention runs to keep its
  ranks in step serve no request), the wall time its GPU spent on forward passes:
  batching does not inflate it. Older builds lack it: no reading.

So for llama-server and vLLM the figure is request-seconds: the busy wall time when
requests run one at a time, more than it (up to the batch size) when they overlap.
Label sets (vLLM's data-parallel engines) are summed. ``process_start_time_seconds``
(vLLM and SGLang export it) tells a restart apart; llama-server's reset shows as a
counter going down.

Sampling is opt-in (``af.configure(engine_metrics=True)`` or
``AGENTFLOW_ENGINE_METRICS=1``): at each run's start and end, every replica of the zoo
that is priced by the GPU-hour and has an ``api_base`` is read with one ``GET /metrics``
(short timeout) in a daemon thread, never on a call's path; the span (a child of the
run's) records the reading, or why there is none. Nothing raises into user code.
"""

from __future__ import annotations

import atexit
import itertools
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

import tracing
from agentflow.pipeline.load import parse_prometheus, root_url
from agentflow.pipeline.poller import Poller
from tracing import attributes as A

if TYPE_CHECKING:
    from agentflow._zoo import Endpoint, ModelZoo

__all__ = [
    "ENGINE_SAMPLE_SPAN",
    "EngineSampler",
    "EngineTime",
    "busy_increase",
    "engine_sampler",
    "gpu_hour_replicas",
    "read_engine_time",
    "readings_of",
    "sample_run",
]

ENGINE_SAMPLE_SPAN: Final = "agentflow.engine.sample"

# engine → (what the report calls the source, counter sets in order of preference)
_COUNTERS: Final[dict[str, tuple[str, tuple[tuple[str, ...], ...]]]] = {
    "llama.cpp": (
        "llama-server /metrics",
        (("llamacpp:prompt_seconds_total", "llamacpp:tokens_predicted_seconds_total"),),
    ),
    "vllm": (
        "vLLM /metrics",
        (
            ("vllm:request_prefill_time_seconds_sum", "vllm:request_decode_time_seconds_sum"),
            ("vllm:request_inference_time_seconds_sum",),
        ),
    ),
    "sglang": ("SGLang /metrics", (("sglang:gpu_execution_seconds_total",),)),
}
_PREFIXES: Final = {"llamacpp:": "llama.cpp", "vllm:": "vllm", "sglang:": "sglang"}
_PROCESS_START: Final = "process_start_time_seconds"
# SGLang's idle forward passes (data-parallel attention's empty batches): not busy serving
_IDLE: Final = re.compile(r'^sglang:gpu_execution_seconds_total\{[^}]*category="idle".*$', re.M)


@dataclass(frozen=True, slots=True)
class EngineTime:
    """One reading of an engine's busy-time counters."""

    engine: str  # "llama.cpp", "vllm" or "sglang"
    busy_seconds: float  # the counters' sum since the engine started
    source: str  # "llama-server /metrics", "vLLM /metrics", "SGLang /metrics"
    counters: tuple[str, ...]  # which counters were summed
    process_start_s: float | None = None  # epoch seconds the engine's process started


def read_engine_time(metrics: str) -> EngineTime | None:
    """The busy-time counters in an engine's ``/metrics`` text; None if it is not
    llama-server, vLLM or SGLang, or exports none of them (see the module docstring)."""
    samples = parse_prometheus(_IDLE.sub("", metrics))
    engine = next((e for name in samples for p, e in _PREFIXES.items() if name.startswith(p)), None)
    if engine is None:
        return None
    source, choices = _COUNTERS[engine]
    for names in choices:
        if all(samples.get(name) for name in names):
            start = samples.get(_PROCESS_START)
            return EngineTime(
                engine=engine,
                busy_seconds=sum(sum(samples[name]) for name in names),
                source=source,
                counters=names,
                process_start_s=min(start) if start else None,
            )
    return None


def busy_increase(readings: Sequence[tuple[float, float | None]]) -> float:
    """The busy seconds between the first and the last of ``readings`` (``(busy_seconds,
    process_start_s)`` in time order), as Prometheus' ``increase`` counts them: a counter
    that went down, or a new process start, is a restart, after which the new value is
    all new."""
    total = 0.0
    for (before, started_before), (after, started_after) in itertools.pairwise(readings):
        restarted = started_before is not None and started_after not in (None, started_before)
        total += after if restarted or after < before else after - before
    return total


# -- sampling ----------------------------------------------------------------------------


def _read(url: str, timeout: float) -> tuple[EngineTime | None, str | None]:
    """``(reading, why not)`` from ``url``'s ``/metrics``."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        err.close()
        return None, f"GET /metrics answered {err.code} (llama-server needs --metrics)"
    except Exception as err:  # refused, reset, timed out, a malformed status line...
        return None, f"GET /metrics failed: {type(err).__name__}: {err}"
    reading = read_engine_time(text)
    if reading is None:
        return None, "no busy-time counter in /metrics (not llama-server, vLLM or SGLang?)"
    return reading, None


class EngineSampler(Poller):
    """Samples engines' busy-time counters on request, in a daemon thread, and records
    each reading as an ``agentflow.engine.sample`` span.

    ``request`` never blocks (requests for one replica waiting together are served by one
    read); ``flush`` waits until every request so far is recorded (tests; and at interpreter
    exit, so a run's closing sample is not lost)."""

    thread_name = "agentflow-engine-sample"

    def __init__(self, *, timeout: float = 0.5) -> None:
        super().__init__(interval=60.0)
        self.timeout = timeout
        self._cond = threading.Condition()
        # endpoint id → (endpoint, [(parent context, trigger) of each run that asked])
        self._pending: dict[str, tuple[Endpoint, list[tuple[Context | None, str]]]] = {}
        self._busy = False
        self._exit_hook = False

    def request(self, endpoints: Iterable[Endpoint], parent: Context | None, trigger: str) -> None:
        """Sample these replicas (those with an ``api_base``) soon, off the caller's thread."""
        added = False
        with self._cond:
            for endpoint in endpoints:
                if endpoint.api_base:
                    _, askers = self._pending.setdefault(endpoint.id, (endpoint, []))
                    askers.append((parent, trigger))
                    added = True
            if added and not self._exit_hook:
                atexit.register(self.flush)
                self._exit_hook = True
        if added:
            self.start()
            self.wake()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every request made so far is recorded; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return False
                self._cond.wait(left)
        return True

    def tick(self) -> None:
        with self._cond:
            pending, self._pending = self._pending, {}
            self._busy = bool(pending)
        try:
            for endpoint, askers in pending.values():
                self.sample(endpoint, askers)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def join_timeout(self) -> float:
        return 4 * self.timeout + 1

    def sample(
        self,
        endpoint: Endpoint,
        askers: Sequence[tuple[Context | None, str]] = ((None, "manual"),),
    ) -> EngineTime | None:
        """Read one replica now (blocking) and record a span under each asker's parent
        (``(parent context, trigger)``: runs that asked together share one read); never
        raises for a replica that is down or has no counters (the spans say why)."""
        url = root_url(endpoint)
        if url is None:
            return None
        spans = [
            tracing.tracer().start_span(
                ENGINE_SAMPLE_SPAN,
                context=parent,
                attributes={
                    A.AGENTFLOW_ENDPOINT: tracing.redact(endpoint.id),
                    A.AGENTFLOW_ENGINE_API_BASE: tracing.redact(url),
                    A.AGENTFLOW_ENGINE_TRIGGER: trigger,
                },
            )
            for parent, trigger in askers
        ]
        reading: EngineTime | None = None
        why: str | None = "not read"
        try:
            reading, why = _read(url, self.timeout)
            return reading
        finally:
            for span in spans:
                if reading is not None:
                    span.set_attributes(_reading_attributes(reading))
                else:
                    span.set_attribute(A.AGENTFLOW_ENGINE_SAMPLE_ERROR, tracing.redact(why or ""))
                    span.set_status(Status(StatusCode.ERROR, why))
                span.end()


def _reading_attributes(reading: EngineTime) -> dict[str, str | float]:
    attrs: dict[str, str | float] = {
        A.AGENTFLOW_ENGINE_KIND: reading.engine,
        A.AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL: reading.busy_seconds,
        A.AGENTFLOW_ENGINE_BUSY_SOURCE: reading.source,
    }
    if reading.process_start_s is not None:
        attrs[A.AGENTFLOW_ENGINE_PROCESS_START_S] = reading.process_start_s
    return attrs


engine_sampler = EngineSampler()
"""The process-wide sampler ``af.run`` asks when ``engine_metrics`` is on."""


def gpu_hour_replicas(zoo: ModelZoo) -> list[Endpoint]:
    """The zoo's replicas priced by the GPU-hour with an ``api_base``: those sampled."""
    from budgets import GpuHourPricing

    return [e for e in zoo.endpoints() if e.api_base and isinstance(e.pricing, GpuHourPricing)]


def sample_run(span: trace.Span | None, trigger: str, zoo: ModelZoo | None) -> None:
    """Ask for a sample of ``zoo``'s GPU-hour replicas as a child of the run's ``span``
    (``af.run`` calls this at start and end when ``engine_metrics`` is on)."""
    if zoo is None:
        return
    replicas = gpu_hour_replicas(zoo)
    if replicas:
        parent = trace.set_span_in_context(span) if span is not None else None
        engine_sampler.request(replicas, parent, trigger)


def readings_of(attrs: Mapping[str, object]) -> tuple[float, float | None] | None:
    """``(busy_seconds_total, process_start_s)`` of a sample span's attributes, or None
    (a failed sample)."""
    busy = attrs.get(A.AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL)
    if isinstance(busy, bool) or not isinstance(busy, int | float):
        return None
    start = attrs.get(A.AGENTFLOW_ENGINE_PROCESS_START_S)
    if isinstance(start, bool) or not isinstance(start, int | float):
        return float(busy), None
    return float(busy), float(start)
