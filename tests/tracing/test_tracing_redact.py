"""No secret survives onto a span, an event or a log line."""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path
from urllib.parse import quote, quote_plus

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


# -- registered secrets --------------------------------------------------------------------

HEX_KEY = "5f0c3a9e41b27d86c0e4f1a2b3c4d5e6"  # 32 hex digits: no key shape matches it


def test_a_registered_secret_is_redacted_whatever_its_shape() -> None:
    text = f"Incorrect API key provided: {HEX_KEY}"
    tracing.register_secrets([HEX_KEY])
    assert tracing.redact(text) == "Incorrect API key provided: [REDACTED]"
    assert tracing.redact(f"{HEX_KEY}{HEX_KEY}") == "[REDACTED][REDACTED]"
    tracing.register_secrets([HEX_KEY, None])  # again: a no-op
    assert tracing.redact("ordinary text") == "ordinary text"


def test_a_registered_secret_is_redacted_in_json_reprs_and_urls() -> None:
    secret = 'pa"ss/w0rd\\with spaces'
    tracing.register_secrets([secret])
    for text in (
        json.dumps({"auth": secret}),
        repr({"auth": secret}),
        f"https://h/v1?k={quote(secret, safe='')}",
        f"https://h/v1?k={quote_plus(secret)}",
        f"plain {secret} text",
    ):
        cleaned = tracing.redact(text)
        assert "[REDACTED]" in cleaned, text
        assert "w0rd" not in cleaned, text


def test_short_values_are_not_registered() -> None:
    tracing.register_secrets(["plan", "admin", "", "     "])
    for text in ("make a plan", "admin panel", "a      b"):
        assert tracing.redact(text) == text


def test_registering_is_thread_safe() -> None:
    values = [f"thread-secret-{i:04d}-{'z' * 8}" for i in range(200)]
    barrier = threading.Barrier(4)

    def register(chunk: list[str]) -> None:
        barrier.wait()
        for v in chunk:
            tracing.register_secrets([v])
            assert v not in tracing.redact(f"x {v} y")

    threads = [threading.Thread(target=register, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = " ".join(values)
    assert tracing.redact(text) == " ".join(["[REDACTED]"] * len(values))


def test_log_redaction_covers_the_logger_its_children_and_its_handlers() -> None:
    secret = "9d8c7b6a5f4e3d2c1b0a9d8c7b6a5f4e"
    tracing.register_secrets([secret])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent = logging.getLogger("tests.redact.lib")
    child = logging.getLogger("tests.redact.lib.http11")
    root_stream = io.StringIO()
    root_handler = logging.StreamHandler(root_stream)
    logging.getLogger("tests.redact").addHandler(root_handler)
    parent.addHandler(handler)
    try:
        for logger in (parent, child):
            logger.setLevel(logging.DEBUG)
        tracing.install_log_redaction(["tests.redact.lib"])
        filt = tracing.install_log_redaction(["tests.redact.lib"])  # idempotent
        assert parent.filters.count(filt) == child.filters.count(filt) == 1
        assert handler.filters.count(filt) == 1
        parent.debug("request options: %s", {"headers": {"X-Key": secret}})
        child.debug("send_request_headers %r", [(b"x-key", secret)])
        late = logging.getLogger("tests.redact.lib.late")  # created after install
        late.setLevel(logging.DEBUG)
        late.debug("late %s", secret)
    finally:
        parent.removeHandler(handler)
        logging.getLogger("tests.redact").removeHandler(root_handler)
    out = stream.getvalue()
    assert out.count("[REDACTED]") == 3
    assert secret not in out
    # the root-side handler saw the parent's and the child's records redacted too
    assert secret not in root_stream.getvalue().splitlines()[0]
    assert secret not in root_stream.getvalue().splitlines()[1]


def test_logging_filter_survives_a_bad_format_string() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert tracing.RedactingFilter().filter(record) is True
