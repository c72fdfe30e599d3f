"""No secret survives onto a span, an event or a log line."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, Tracer

import tracing

KEY = "sk-test-1234567890abcdef"
SECRETS = (KEY, "Bearer xyz", "hunter2", "AKIAABCDEFGHIJKLMNOP", "hf_abcdefghijklmnopqrst")


@pytest.mark.parametrize(
    "text",
    [
        f"key {KEY} here",
        "Authorization: Bearer xyz",
        '{"Authorization": "Bearer xyz"}',
        f"{{'api_key': '{KEY}'}}",
        f"https://api.example/v1?api_key={KEY}&q=1",
        f"OPENAI_API_KEY={KEY}",
        "password=hunter2",
        "aws AKIAABCDEFGHIJKLMNOP",
        "hf_abcdefghijklmnopqrst",
        "postgres://user:hunter2@db/x",
        "headers={'x-api-key': 'hunter2'}",
    ],
)
def test_redact_removes_credentials(text: str) -> None:
    cleaned = tracing.redact(text)
    assert "[REDACTED]" in cleaned
    assert not [s for s in SECRETS if s in cleaned]


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=256 prompt_tokens: 12",
        "the secret of a good plan is a short one",
        "Bearer",
        "task-management is hard",
    ],
)
def test_redact_leaves_ordinary_text(text: str) -> None:
    assert tracing.redact(text) == text


def test_logging_filter_redacts_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(tracing.RedactingFilter())
    logger = logging.getLogger("tests.tracing.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with %s", f"Authorization: Bearer xyz and {KEY}")
        try:
            raise RuntimeError(f"refused key {KEY}")
        except RuntimeError:
            logger.exception("call failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "calling with Authorization: [REDACTED]" in out
    assert "RuntimeError: refused key [REDACTED]" in out
    assert not [s for s in SECRETS if s in out]


def test_record_error_redacts(tracer: Tracer, span_exporter: InMemorySpanExporter) -> None:
    with tracer.start_as_current_span("call", record_exception=False) as span:
        tracing.record_error(span, PermissionError(f"Incorrect API key provided: {KEY}"))
    (finished,) = span_exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.attributes is not None
    assert finished.attributes["error.type"] == "PermissionError"
    (event,) = finished.events
    assert event.name == "exception"
    text = repr(finished.to_json())
    assert KEY not in text
    assert "[REDACTED]" in str(finished.status.description)


def test_exporter_wrapper_scrubs_everything(
    tracer: Tracer, span_exporter: InMemorySpanExporter
) -> None:
    """Secrets that reached a span by any route are gone once it is exported."""
    from tracing import RedactingSpanExporter

    span = tracer.start_span(f"call {KEY}")
    span.set_attribute("raw", f"Authorization: Bearer xyz {KEY}")
    span.set_attribute("many", ["ok", KEY])
    span.add_event("retry", {"why": f"401 for {KEY}"})
    span.record_exception(ValueError("Authorization: Bearer xyz"))
    span.set_status(StatusCode.ERROR, f"failed with {KEY}")
    span.end()
    sink = InMemorySpanExporter()
    RedactingSpanExporter(sink).export(span_exporter.get_finished_spans())
    (clean,) = sink.get_finished_spans()
    text = clean.to_json()
    assert not [s for s in SECRETS if s in text]
    assert clean.attributes is not None
    assert clean.attributes["many"] == ("ok", "[REDACTED]")
    assert clean.status.status_code is StatusCode.ERROR


def test_setup_pipeline_never_writes_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    providers = tracing.setup(project="redact", jsonl_path=path, set_global=False)
    try:
        tracer = providers.tracer_provider.get_tracer("tests")
        run_attrs = tracing.run_attributes(
            name="r", metadata={"note": f"Authorization: Bearer xyz {KEY}"}
        )
        content = tracing.content_attributes([{"role": "user", "content": f"key {KEY}"}])
        with (
            tracer.start_as_current_span("run", attributes=run_attrs),
            tracer.start_as_current_span("llm", attributes=content) as span,
        ):
            # What start_as_current_span does with an escaping exception, unredacted.
            span.record_exception(RuntimeError(f"provider said: invalid key {KEY}"))
        providers.force_flush()
    finally:
        providers.shutdown()
    text = path.read_text()
    assert text.count("\n") == 2
    assert not [s for s in SECRETS if s in text]
    assert "[REDACTED]" in text


@pytest.mark.parametrize(
    "text",
    [
        "x" * 200_000,
        "a=b " * 50_000,
        "key: " * 40_000,
        "http://" + "u" * 200_000,
        "sk-" * 60_000,
        "Bearer " * 30_000,
    ],
    ids=["word", "pairs", "keys", "url", "sk", "bearer"],
)
def test_redact_is_linear_on_long_text(text: str) -> None:
    """A whole 200 kB prompt is redacted quickly (no quadratic backtracking)."""
    import time

    started = time.perf_counter()
    tracing.redact(text)
    assert time.perf_counter() - started < 1.0
