"""A configured secret never leaves the process's memory in the clear, whatever its shape.

The key here is 32 hex digits, which no key-shape pattern knows, and the loopback server
echoes it back in a 401 ("Incorrect API key provided: <key>") as providers do. It must
stay off spans and the JSONL export, out of ``CallError`` and ``Attempt.error``, out of
reprs and dumps of the zoo and the config, and out of litellm's, httpx's and openai's
DEBUG logs. Header values and credential parameters are secrets too.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
import tracing
from agentflow.testing import Fault, LoopbackServer

Q = [{"role": "user", "content": "What is the capital of France?"}]
LOGGERS = ("LiteLLM", "httpx", "httpcore", "openai")


@pytest.fixture
def key() -> str:
    """A fresh 32-hex API key: no known key shape matches it."""
    return secrets.token_hex(16)


@pytest.fixture
def header_secret() -> str:
    """A fresh secret header value, also shapeless."""
    return secrets.token_hex(12)


def _zoo(srv: LoopbackServer, key: str, header_secret: str) -> af.ModelZoo:
    endpoint = af.Endpoint(
        model="openai/small-model",
        api_base=srv.base_url,
        api_key=key,
        timeout=5.0,
        extra_headers={"X-Tenant-Auth": header_secret, "Content-Type": "application/json"},
    )
    return af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])])


@pytest.fixture
def keyed_zoo(srv: LoopbackServer, key: str, header_secret: str) -> af.ModelZoo:
    zoo = _zoo(srv, key, header_secret)
    af.configure(zoo=zoo, retry=af.RetryPolicy(initial_backoff=0.01, max_backoff=0.05))
    return zoo


def _refused_call(srv: LoopbackServer, key: str, header_secret: str) -> af.CallError:
    """A call the server refuses with a 401 that quotes the key and the header value."""
    srv.script(
        Fault.status(401, body=f"Incorrect API key provided: {key} (tenant {header_secret})")
    )
    with pytest.raises(af.CallError) as info:
        af.complete(messages=Q)
    return info.value


def test_an_echoed_key_stays_off_spans_errors_and_attempts(
    keyed_zoo: af.ModelZoo,
    srv: LoopbackServer,
    spans: InMemorySpanExporter,
    key: str,
    header_secret: str,
) -> None:
    err = _refused_call(srv, key, header_secret)
    # the key did go out on the wire, the header too
    (request,) = srv.requests
    assert request.headers["authorization"] == f"Bearer {key}"
    assert request.headers["x-tenant-auth"] == header_secret
    message = str(err)
    assert "Incorrect API key provided: [REDACTED]" in message
    assert key not in message
    assert header_secret not in message
    assert key not in repr(err)
    assert err.attempts
    for attempt in err.attempts:
        assert attempt.error is not None
        assert key not in attempt.error
        assert header_secret not in attempt.error
    finished = spans.get_finished_spans()
    assert any(s.events for s in finished)  # the exception event is there, redacted
    for span in finished:
        text = span.to_json()
        assert key not in text, span.name
        assert header_secret not in text, span.name


def test_an_echoed_key_stays_out_of_the_jsonl_export(
    keyed_zoo: af.ModelZoo, srv: LoopbackServer, key: str, header_secret: str, tmp_path: Path
) -> None:
    path = tmp_path / "spans.jsonl"
    providers = tracing.setup(project="secrets", jsonl_path=path, set_global=False)
    try:
        with tracing.use_providers(
            tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
        ):
            _refused_call(srv, key, header_secret)
        providers.force_flush()
    finally:
        providers.shutdown()
    text = path.read_text()
    assert "Incorrect API key provided: [REDACTED]" in text
    assert key not in text
    assert header_secret not in text


def test_secrets_stay_out_of_reprs_and_dumps(
    srv: LoopbackServer, key: str, header_secret: str
) -> None:
    aws_secret = secrets.token_hex(20)
    private_key = "-----BEGIN PRIVATE KEY-----\n" + secrets.token_hex(24) + "\n-----END"
    bedrock = af.Endpoint(
        model="bedrock/anthropic.claude-3-haiku",
        aws_access_key_id="AKIA" + secrets.token_hex(8).upper(),
        aws_secret_access_key=aws_secret,
        headers={"X-Api-Token": header_secret},
    )
    vertex = af.Endpoint(
        model="vertex_ai/gemini-2.0-flash",
        vertex_credentials={"type": "service_account", "private_key": private_key},
    )
    zoo = af.ModelZoo(
        tiers=[
            af.Tier("small", endpoints=list(_zoo(srv, key, header_secret).tiers[0].endpoints)),
            af.Tier("cloud", endpoints=[bedrock, vertex]),
        ]
    )
    config = af.configure(zoo=zoo)
    texts = {
        "repr(zoo)": repr(zoo),
        "str(zoo)": str(zoo),
        "zoo.model_dump_json()": zoo.model_dump_json(),
        "repr(zoo.model_dump())": repr(zoo.model_dump()),
        "zoo.model_dump(mode='json')": repr(zoo.model_dump(mode="json")),
        "repr(tier)": repr(zoo.tier("cloud")),
        "str(endpoint)": str(bedrock),
        "repr(vertex)": repr(vertex),
        "repr(configure())": repr(config),
        "repr(get_config())": repr(af.get_config()),
    }
    for value in (key, header_secret, aws_secret, private_key, private_key.splitlines()[1]):
        leaking = [where for where, text in texts.items() if value in text]
        assert leaking == [], value
    assert "application/json" in repr(zoo)  # a harmless header stays readable
    # litellm still gets every value in the clear
    small = zoo.tier("small").endpoints[0].litellm_params()
    assert small["api_key"] == key
    assert small["extra_headers"] == {
        "X-Tenant-Auth": header_secret,
        "Content-Type": "application/json",
    }
    cloud = bedrock.litellm_params()
    assert cloud["aws_secret_access_key"] == aws_secret
    assert cloud["headers"] == {"X-Api-Token": header_secret}
    assert vertex.litellm_params()["vertex_credentials"]["private_key"] == private_key
    # ...and whatever quotes them later is scrubbed
    for value in (aws_secret, header_secret, private_key):
        assert value not in tracing.redact(f"echo {value!r} and {value}")


def test_a_config_error_does_not_quote_the_key(key: str) -> None:
    with pytest.raises(af.ConfigError, match="api_key") as info:
        af.Endpoint(model="openai/m", api_key=[key])
    assert key not in str(info.value)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """litellm's, httpx's, httpcore's and openai's DEBUG records, as an application that
    turned their logging up would see them."""
    from agentflow._litellm import litellm

    litellm()  # imported first: its import turns httpx's logger down, as in an application
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG)
    return caplog


def _logged(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in records)


@pytest.mark.parametrize("transport", ["litellm", "auto"])
def test_debug_logs_of_litellm_and_httpx_carry_no_secret(
    keyed_zoo: af.ModelZoo,
    srv: LoopbackServer,
    debug_logs: pytest.LogCaptureFixture,
    key: str,
    header_secret: str,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTFLOW_TRANSPORT", transport)  # litellm, or the fast path
    _refused_call(srv, key, header_secret)
    records = debug_logs.records
    names = {r.name.partition(".")[0] for r in records}
    expected = {"httpx", "httpcore"} | ({"LiteLLM", "openai"} if transport == "litellm" else set())
    assert expected <= names, names
    text = _logged(records) + debug_logs.text
    if transport == "litellm":  # litellm logs the error body: the echo, scrubbed
        assert "Incorrect API key provided: [REDACTED]" in text
    assert key not in text
    assert header_secret not in text
    for record in records:
        assert key not in record.getMessage()
        assert header_secret not in str(record.args)
