"""setup(), the JSONL exporter, flushing at exit and on SIGTERM, and a cheap import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import tracing

REPO = Path(__file__).resolve().parents[2]


def _run_child(code: str, *args: str, timeout: float = 60) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_jsonl_round_trip(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    path = tmp_path / "out" / "spans.jsonl"
    exporter = tracing.JsonlSpanExporter(path)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with (
        tracer.start_as_current_span("run", attributes=tracing.run_attributes(name="r")) as run,
        tracer.start_as_current_span("llm", attributes={"tags": ("a", "b")}) as llm,
    ):
        llm.add_event("first_token", {"agentflow.ttft_s": 0.12})
    provider.shutdown()

    spans = list(tracing.read_spans(path))
    assert [s["name"] for s in spans] == ["llm", "run"]
    child, root = spans
    assert root["parent_id"] is None
    assert child["parent_id"] == root["span_id"] == f"{run.get_span_context().span_id:016x}"
    assert child["trace_id"] == root["trace_id"] == f"{llm.get_span_context().trace_id:032x}"
    assert child["attributes"]["tags"] == ["a", "b"]
    assert child["events"][0]["name"] == "first_token"
    assert child["events"][0]["attributes"] == {"agentflow.ttft_s": 0.12}
    assert root["attributes"]["openinference.span.kind"] == "AGENT"
    assert root["status"] == {"code": "UNSET", "description": None}
    assert root["start_time_ns"] <= child["start_time_ns"] <= child["end_time_ns"]
    assert root["end_time_ns"] >= child["end_time_ns"]
    assert "service.name" in root["resource"]
    assert root["scope"]["name"] == "tests"


def test_jsonl_is_thread_safe_and_appends(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"name": "earlier"}) + "\n")
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(tracing.JsonlSpanExporter(path)))
    tracer = provider.get_tracer("tests")

    def work(n: int) -> None:
        for i in range(100):
            with tracer.start_as_current_span(f"t{n}-{i}"):
                pass

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    provider.shutdown()
    spans = list(tracing.read_spans(path))
    assert spans[0] == {"name": "earlier"}
    assert len(spans) == 401
    assert len({s["span_id"] for s in spans[1:]}) == 400


def test_setup_resource_and_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    providers = tracing.setup(
        project="research", jsonl_path=tmp_path / "s.jsonl", capture_content=False,
        set_global=False,
    )  # fmt: skip
    try:
        resource = providers.tracer_provider.resource.attributes
        assert resource["openinference.project.name"] == "research"
        assert resource["service.name"] == "research"
        assert tracing.content_config().capture_content is False
        assert providers.content == tracing.content_config()
        assert [type(e).__name__ for e in providers.exporters] == ["JsonlSpanExporter"]
    finally:
        providers.shutdown()
        providers.shutdown()  # idempotent


def test_setup_honours_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-agent")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    providers = tracing.setup(project="p", set_global=False)
    try:
        resource = providers.tracer_provider.resource.attributes
        assert resource["service.name"] == "billing-agent"
        assert resource["deployment.environment"] == "test"
        assert [type(e) for e in providers.exporters] == [OTLPSpanExporter]
    finally:
        # Nothing was exported: shutting down does not touch the (closed) port.
        providers.shutdown()
    explicit = tracing.setup(project="p", service_name="svc", set_global=False)
    try:
        assert explicit.tracer_provider.resource.attributes["service.name"] == "svc"
    finally:
        explicit.shutdown()


def test_import_is_cheap_and_standalone() -> None:
    code = """
        import sys, tracing, tracing.phoenix
        heavy = sorted(m for m in sys.modules if m.startswith(
            ("opentelemetry.sdk", "opentelemetry.exporter", "agentflow", "budgets", "litellm",
             "phoenix", "httpx", "google.protobuf")))
        print(heavy)
    """
    child = _run_child(code)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "[]"


CHILD = """
    import os, signal, sys, time
    from opentelemetry import trace
    import tracing

    mode = sys.argv[2]
    if mode == "chain":
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, previous)
    tracing.setup(project="sigterm", jsonl_path=sys.argv[1])
    tracer = trace.get_tracer("child")
    with tracer.start_as_current_span("run"):
        for i in range(199):
            with tracer.start_as_current_span(f"llm {i}"):
                pass
    print("ready", flush=True)
    if mode == "exit":
        sys.exit(0)
    time.sleep(60)
    print("not killed", flush=True)
"""


@pytest.mark.parametrize(
    ("mode", "returncode"), [("default", -signal.SIGTERM), ("chain", 3), ("exit", 0)]
)
def test_spans_survive_sigterm_and_exit(tmp_path: Path, mode: str, returncode: int) -> None:
    """The batch processor would hold these spans for 5 s; SIGTERM or exit flushes them."""
    path = tmp_path / "spans.jsonl"
    child = _run_child(CHILD, str(path), mode)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    if mode != "exit":
        child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == returncode, err
    assert ("previous handler ran" in out) is (mode == "chain")
    spans = list(tracing.read_spans(path))
    assert len(spans) == 200
    assert {s["resource"]["openinference.project.name"] for s in spans} == {"sigterm"}
