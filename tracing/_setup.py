"""``tracing.setup()``: tracer and meter providers, exporters, and flushing on exit.

Shutdown is bounded: ``Providers.shutdown()`` stops every span processor and the meter
provider in parallel and waits at most ``shutdown_timeout_s`` (20 s by default: two
default OTLP export timeouts, so a collector that answers within the exporter's timeout
still gets the batch in flight and the last one). Spans no collector took by then — and
every batch an exporter failed to deliver before — are written to the spill file
(``tracing._spill``), with a ``UnsentSpansWarning``: never dropped silently.

Nothing here runs at import: the SDK and the exporters are imported inside ``setup()``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from tracing._content import ContentConfig, set_content_config
from tracing._warnings import UnsentSpansWarning

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    from tracing._spill import SpillFile

__all__ = ["SHUTDOWN_TIMEOUT_S", "Providers", "UnsentSpansWarning", "setup"]

logger = logging.getLogger(__name__)

DEFAULT_PROJECT: Final = "agentflow"
_FLUSH_TIMEOUT_MS: Final = 10_000
SHUTDOWN_TIMEOUT_S: Final = 20.0
"""How long ``Providers.shutdown()`` waits for exporters, by default."""


@dataclass(eq=False)
class Providers:
    """What ``setup()`` built. ``shutdown()`` flushes and stops everything (idempotent)."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    content: ContentConfig
    exporters: list[SpanExporter] = field(default_factory=list)
    spill_path: str | None = None
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S
    _processors: list[BatchSpanProcessor] = field(default_factory=list, repr=False)
    _spill: SpillFile | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: int = _FLUSH_TIMEOUT_MS) -> bool:
        """Export every finished span and pending metric now; False on timeout."""
        if self._closed:
            return True
        spans_ok = self.tracer_provider.force_flush(timeout_millis)
        metrics_ok = self.meter_provider.force_flush(timeout_millis)
        return bool(spans_ok) and bool(metrics_ok)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Flush, then shut the providers and their exporters down, in at most
        ``timeout_s`` seconds (default ``shutdown_timeout_s``, 20 s).

        Every span processor and the meter provider stop in parallel. Spans an exporter
        still queued or had in flight at the deadline are written to ``spill_path``
        with a ``UnsentSpansWarning``, as are batches a collector refused or never
        answered before; metrics not exported by then are dropped.
        """
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        budget = self.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + max(0.0, budget)
        stopping = [(_start(p.shutdown, "tracing-shutdown-spans"), p) for p in self._processors]
        meters = _start(self.meter_provider.shutdown, "tracing-shutdown-metrics")
        late = []
        for thread, processor in stopping:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                late.append(processor)
        if late:
            from tracing._spill import spill_leftovers

            spill_leftovers(late)
        if self._spill is not None and self._spill.count:
            from tracing._spill import warn_unsent

            why = f"{len(late)} exporter(s) still busy at shutdown" if late else "exports failed"
            warn_unsent(self._spill.count, "their destination", why, self._spill.path)
        meters.join(max(0.0, deadline - time.monotonic()))
        if meters.is_alive():
            logger.warning("metrics were not exported within %.0f s of shutdown", budget)
        # the processors are shut (or abandoned) already: this stops the provider itself
        self.tracer_provider.shutdown()


def _start(target: Callable[[], Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except Exception:  # one failing exporter must not stop the others
            logger.exception("shutting tracing down failed")

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


# Providers that still need flushing on exit or SIGTERM.
_live: set[Providers] = set()
_handler_lock = threading.Lock()
_sigterm_installed = False
_previous_sigterm: Callable[[int, FrameType | None], Any] | int | None = None


def _flush_all() -> None:
    for providers in list(_live):
        try:
            providers.force_flush()
        except Exception:  # a failing exporter must not stop the others from flushing
            logger.exception("flushing spans failed")


def _shutdown_all() -> None:
    for providers in list(_live):
        try:
            providers.shutdown()
        except Exception:
            logger.exception("shutting tracing down failed")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    previous = _previous_sigterm
    # Work from another thread: the interrupted main thread may hold a lock the flush
    # needs (it may itself be mid-flush), and the handler must not deadlock on it. When
    # the process is about to die, shut down (bounded, spilling what is unsent);
    # otherwise only flush.
    dying = not callable(previous) and previous != signal.SIG_IGN
    work = _shutdown_all if dying else _flush_all
    worker = threading.Thread(target=work, name="tracing-sigterm-flush", daemon=True)
    worker.start()
    bound = max((p.shutdown_timeout_s for p in list(_live)), default=0.0) if dying else 0.0
    worker.join(max(bound, _FLUSH_TIMEOUT_MS / 1000) + 1)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:
        # Default behaviour: die of SIGTERM, as the process would have without us.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_exit_hooks() -> None:
    global _sigterm_installed, _previous_sigterm
    with _handler_lock:
        if _sigterm_installed:
            return
        atexit.register(_shutdown_all)
        if threading.current_thread() is not threading.main_thread():
            warnings.warn(
                "tracing.setup() was called outside the main thread, so no SIGTERM handler "
                "was installed; call it from the main thread to flush spans on SIGTERM.",
                RuntimeWarning,
                stacklevel=3,
            )
            _sigterm_installed = True
            return
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True


def _resource(project: str, service_name: str | None) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    from tracing._conventions import OPENINFERENCE_PROJECT_NAME

    attributes: dict[str, str] = {OPENINFERENCE_PROJECT_NAME: project}
    if service_name is not None:
        attributes[SERVICE_NAME] = service_name
    elif not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = project
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; the
    # attributes given here win over them.
    return Resource.create(attributes)


def _metrics_endpoint(explicit: str | None) -> str | None:
    """Where OTLP metrics go: the explicit endpoint, or a standard variable when set."""
    if explicit:
        return explicit
    if os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
    if base := os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return base.rstrip("/") + "/v1/metrics"
    return None


def setup(
    project: str | None = None,
    otlp_endpoint: str | None = None,
    jsonl_path: str | os.PathLike[str] | None = None,
    console: bool = False,
    capture_content: bool | None = None,
    service_name: str | None = None,
    set_global: bool = True,
    *,
    otlp_metrics_endpoint: str | None = None,
    exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    spill_path: str | os.PathLike[str] | None = None,
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
) -> Providers:
    """Configure OpenTelemetry tracing and metrics for an application.

    - ``project``: the Phoenix project (resource ``openinference.project.name``); default
      ``PHOENIX_PROJECT_NAME`` or ``"agentflow"``. ``service.name`` is ``service_name``,
      else ``OTEL_SERVICE_NAME``, else the project.
    - ``otlp_endpoint``: OTLP/HTTP traces URL, e.g. ``"http://127.0.0.1:6006/v1/traces"``;
      when None, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
      are used if set. Metrics go over OTLP to ``otlp_metrics_endpoint`` or the
      standard metrics variables (Phoenix takes traces only, so they are not derived from
      ``otlp_endpoint``).
    - ``jsonl_path``: also append every span to this file (``JsonlSpanExporter``).
    - ``console``: also print spans (and metrics) to stdout.
    - ``capture_content``: put prompt and completion text on spans (see ``ContentConfig``;
      None reads ``AGENTFLOW_CAPTURE_CONTENT``, default true).
    - ``set_global``: install the providers as OpenTelemetry's global ones, which is
      where agentflow emits. If the application already set its own, they are kept and a
      warning says so. With ``set_global=False``, pass the returned providers to
      ``tracing.use_providers(...)`` to have agentflow emit through them.
    - ``exporters`` / ``metric_readers``: more span exporters and metric readers.
    - ``spill_path``: where spans go that an exporter could not deliver (OTLP and
      ``exporters``: a collector down, hung, or still busy at shutdown), as JSONL; default
      ``~/.cache/agentflow/unsent-spans/<project>-<pid>.jsonl`` (``$XDG_CACHE_HOME``
      honoured). Created only when something is spilled; a ``UnsentSpansWarning`` says so.
    - ``shutdown_timeout_s``: the most ``Providers.shutdown()`` (and so the exit and
      SIGTERM hooks) waits for exporters (default 20 s).

    Every exporter sits behind a ``BatchSpanProcessor`` and a ``RedactingSpanExporter``.
    Spans are flushed at normal exit and on SIGTERM (then the previous SIGTERM behaviour
    runs).
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from tracing._export import RedactingSpanExporter
    from tracing._spill import SpillFile, SpillingSpanExporter, default_spill_path

    if not shutdown_timeout_s >= 0:  # NaN too
        from tracing._errors import TracingError

        raise TracingError(
            f"tracing.setup(shutdown_timeout_s={shutdown_timeout_s!r}): expected the "
            "seconds shutdown may wait for exporters, >= 0 (default 20)"
        )
    project = project or os.environ.get("PHOENIX_PROJECT_NAME") or DEFAULT_PROJECT
    resource = _resource(project, service_name)
    spill = SpillFile(spill_path if spill_path is not None else default_spill_path(project))

    span_exporters: list[SpanExporter] = []
    local: list[SpanExporter] = []  # written here: nothing to spill them to
    traces_env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if otlp_endpoint or traces_env:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # With no explicit endpoint the exporter reads the OTEL_* variables itself.
        span_exporters.append(
            OTLPSpanExporter(endpoint=otlp_endpoint) if otlp_endpoint else OTLPSpanExporter()
        )
    if console:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        local.append(ConsoleSpanExporter())
        span_exporters.append(local[-1])
    if jsonl_path is not None:
        from tracing._jsonl import JsonlSpanExporter

        local.append(JsonlSpanExporter(jsonl_path))
        span_exporters.append(local[-1])
    span_exporters.extend(exporters)

    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    processors = []
    for exporter in span_exporters:
        is_local = any(exporter is x for x in local)
        inner = exporter if is_local else SpillingSpanExporter(exporter, spill)
        processors.append(BatchSpanProcessor(RedactingSpanExporter(inner)))
        tracer_provider.add_span_processor(processors[-1])

    readers: list[MetricReader] = []
    if endpoint := _metrics_endpoint(otlp_metrics_endpoint):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint)))
    if console:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    readers.extend(metric_readers)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=readers, shutdown_on_exit=False
    )

    content = ContentConfig.from_env(capture_content=capture_content)
    set_content_config(content)
    providers = Providers(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        content=content,
        exporters=span_exporters,
        spill_path=str(spill.path),
        shutdown_timeout_s=shutdown_timeout_s,
        _processors=processors,
        _spill=spill,
    )

    if set_global:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(tracer_provider)
        else:
            warnings.warn(
                "tracing.setup(): a global TracerProvider was already set (by the "
                "application or an earlier setup()); it was kept. Pass set_global=False to "
                "use the returned providers explicitly, or call setup() once, first.",
                RuntimeWarning,
                stacklevel=2,
            )
        # The API exposes no proxy class for meters; an SDK provider means one is set.
        if not isinstance(metrics.get_meter_provider(), MeterProvider):
            metrics.set_meter_provider(meter_provider)

    _live.add(providers)
    _install_exit_hooks()
    return providers
