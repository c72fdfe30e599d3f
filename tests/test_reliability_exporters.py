"""Fault-injected exporters: ``tracing.setup``'s OTLP exporter against a real HTTP
collector stand-in on 127.0.0.1 that answers slowly, hangs for good, or answers 503
first. Finished spans are never lost at shutdown: they reach the collector, or they are
written to the spill file with a ``UnsentSpansWarning``; and shutdown is bounded."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracing

SPANS = 30
SECRET = "sk-proj-" + "a1B2" * 10  # a key shape tracing.redact knows


class Collector:
    """An OTLP/HTTP traces endpoint: ``mode`` "ok", "slow" (answers after ``delay``),
    "hang" (reads the batch, never answers) or "503" (the first ``fail_first``
    requests get 503). ``names`` holds the spans it acknowledged with a 200."""

    def __init__(self, mode: str, *, delay: float = 8.0, fail_first: int = 1) -> None:
        self.mode, self.delay, self.fail_first = mode, delay, fail_first
        self.names: set[str] = set()
        self.requests = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with collector._lock:
                    collector.requests += 1
                    number = collector.requests
                if collector.mode == "hang":
                    collector._release.wait()
                    return
                if collector.mode == "slow":
                    time.sleep(collector.delay)
                if collector.mode == "503" and number <= collector.fail_first:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                with collector._lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.names.update(s.name for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def collector(request: pytest.FixtureRequest) -> Iterator[Collector]:
    c = Collector(request.param)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _fast_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # the first batch leaves after 0.5 s, so one is in flight when shutdown starts
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "500")


def _make_spans(providers: tracing.Providers, gap: float = 0.04) -> set[str]:
    tracer = providers.tracer_provider.get_tracer("fault-injection")
    names = set()
    for i in range(SPANS):
        with tracer.start_as_current_span(f"span-{i}") as span:
            span.set_attribute("echo", f"the server said {SECRET}")
        names.add(f"span-{i}")
        time.sleep(gap)
    return names


def _shutdown(providers: tracing.Providers) -> tuple[float, list[warnings.WarningMessage]]:
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        providers.shutdown()
    unsent = [w for w in caught if issubclass(w.category, tracing.UnsentSpansWarning)]
    return time.monotonic() - started, unsent


def _spilled(path: Path) -> list[dict[str, Any]]:
    return list(tracing.read_spans(path)) if path.exists() else []


@pytest.mark.parametrize("collector", ["slow"], indirect=True)
def test_a_collector_answering_after_8s_gets_every_span(
    collector: Collector, tmp_path: Path
) -> None:
    spill = tmp_path / "unsent.jsonl"
    providers = tracing.setup(otlp_endpoint=collector.url, set_global=False, spill_path=spill)
    names = _make_spans(providers)
    took, unsent = _shutdown(providers)
    # a batch in flight (8 s) and the last one (8 s) fit in the 20 s bound
    assert collector.names == names
    assert took <= providers.shutdown_timeout_s + 1 == 21
    assert not spill.exists()
    assert not unsent


@pytest.mark.parametrize("collector", ["hang"], indirect=True)
def test_a_hung_collector_loses_nothing_at_the_shutdown_deadline(
    collector: Collector, tmp_path: Path
) -> None:
    spill = tmp_path / "unsent.jsonl"
    providers = tracing.setup(
        otlp_endpoint=collector.url, set_global=False, spill_path=spill, shutdown_timeout_s=3
    )
    names = _make_spans(providers)
    took, unsent = _shutdown(providers)
    assert took <= 3 + 1  # the bound holds while the export still hangs
    rows = _spilled(spill)
    assert {r["name"] for r in rows} == names  # the batch in flight and the queued ones
    assert len(rows) == SPANS  # each once
    assert all(r["attributes"]["echo"] == "the server said [REDACTED]" for r in rows)
    assert SECRET not in spill.read_text()
    assert not collector.names
    assert unsent
    assert str(spill) in str(unsent[-1].message)
    assert f"{SPANS} finished spans" in str(unsent[-1].message)


@pytest.mark.parametrize("collector", ["hang"], indirect=True)
def test_a_batch_the_exporter_gives_up_on_is_spilled(
    collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")  # the exporter gives up
    spill = tmp_path / "unsent.jsonl"
    providers = tracing.setup(otlp_endpoint=collector.url, set_global=False, spill_path=spill)
    names = _make_spans(providers)
    took, unsent = _shutdown(providers)
    # no deadline was hit: each failed export spilled its own batch
    assert took < providers.shutdown_timeout_s
    assert {r["name"] for r in _spilled(spill)} == names
    assert unsent


@pytest.mark.parametrize("collector", ["503"], indirect=True)
def test_503_then_ok_delivers_every_span_once(collector: Collector, tmp_path: Path) -> None:
    spill = tmp_path / "unsent.jsonl"
    providers = tracing.setup(otlp_endpoint=collector.url, set_global=False, spill_path=spill)
    names = _make_spans(providers)
    took, unsent = _shutdown(providers)
    assert collector.names == names
    assert collector.requests >= 2  # the 503 was retried
    assert not spill.exists()
    assert not unsent
    assert took < 10


_CHILD = """
import sys, time
import tracing
providers = tracing.setup(otlp_endpoint=sys.argv[1], spill_path=sys.argv[2],
                          shutdown_timeout_s=3)
tracer = providers.tracer_provider.get_tracer("child")
for i in range(30):
    with tracer.start_as_current_span(f"span-{i}"):
        pass
    time.sleep(0.04)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("collector", ["hang"], indirect=True)
def test_sigterm_with_a_hung_collector_spills_and_exits_in_bound(
    collector: Collector, tmp_path: Path
) -> None:
    spill = tmp_path / "unsent.jsonl"
    env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "500"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, collector.url, str(spill)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        child.kill()
    assert child.returncode == -signal.SIGTERM  # it still dies of SIGTERM
    assert took <= 3 + 3  # the bound, plus the handler's margin
    assert len(_spilled(spill)) == SPANS
    assert "UnsentSpansWarning" in stderr, stderr[-2000:]


def test_shutdown_timeout_must_be_a_number_of_seconds() -> None:
    with pytest.raises(tracing.TracingError, match="shutdown_timeout_s"):
        tracing.setup(set_global=False, shutdown_timeout_s=float("nan"))


def test_spill_lines_read_back_as_spans(tmp_path: Path) -> None:
    # the spill file is plain JSONL in the JsonlSpanExporter format
    from opentelemetry.sdk.trace import TracerProvider

    from tracing._spill import SpillFile

    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("one") as span:
        pass
    spill = SpillFile(tmp_path / "x.jsonl")
    finished: Any = span
    assert spill.write([finished, finished]) == 1  # a span is written once
    assert [json.loads(line)["name"] for line in spill.path.read_text().splitlines()] == ["one"]
