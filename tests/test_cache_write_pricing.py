"""Prompt-cache writes: counted, priced at their premium, put on spans, and netted out of
the report's prefix-cache savings.

Anthropic bills the prompt tokens it writes to its prompt cache
(``cache_creation_input_tokens``) above the input price and the ones it reads back
(``cache_read_input_tokens``) below it. The end-to-end tests call litellm's
``anthropic/`` provider against a real loopback HTTP server that answers Anthropic's
``/v1/messages`` wire format (JSON and server-sent events), so litellm's own parsing of
Anthropic usage is part of what is tested. Expected figures are worked out here by hand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
import tracing
from agentflow.cli import _report as _report_cli
from agentflow.pipeline.account import normalise_usage
from budgets import Cost, GpuHourPricing, TokenPricing, Usage

# Anthropic-style prices, USD per million tokens: writes 1.25x input, reads 0.1x
HAIKU = TokenPricing(
    input_per_mtok=1, output_per_mtok=5, cached_input_per_mtok="0.10", cache_write_per_mtok="1.25"
)
# what one reply reports: Anthropic's input_tokens excludes the cache reads and writes
PLAIN, WRITES, READS, OUTPUT = 50, 1000, 2000, 10
PROMPT = PLAIN + WRITES + READS  # 3050: every input token, as Usage counts them
MILLION = Decimal(1_000_000)
EXPECTED = Cost(
    input_usd=Decimal(PLAIN) * 1 / MILLION,
    cached_input_usd=Decimal(READS) * Decimal("0.10") / MILLION,
    output_usd=Decimal(OUTPUT) * 5 / MILLION,
    cache_write_usd=Decimal(WRITES) * Decimal("1.25") / MILLION,
)


# -- values and pricing ---------------------------------------------------------------------


def test_usage_counts_cache_writes_inside_the_prompt() -> None:
    u = Usage(PROMPT, READS, OUTPUT, WRITES)
    assert u == Usage(
        prompt_tokens=PROMPT,
        cached_prompt_tokens=READS,
        completion_tokens=OUTPUT,
        cache_write_tokens=WRITES,
    )
    assert u.uncached_prompt_tokens == PLAIN
    assert u.total_tokens == PROMPT + OUTPUT
    assert Usage(10, 4, 1).cache_write_tokens == 0  # positional callers are unchanged
    total = sum([u, Usage(100, 0, 5, 60)], Usage())
    assert total == Usage(PROMPT + 100, READS, OUTPUT + 5, WRITES + 60)
    assert total.uncached_prompt_tokens == PLAIN + 40


def test_usage_refuses_more_cache_tokens_than_prompt_tokens() -> None:
    with pytest.raises(
        ValueError, match=r"cached_prompt_tokens \(60\) \+ cache_write_tokens \(50\)"
    ):
        Usage(prompt_tokens=100, cached_prompt_tokens=60, cache_write_tokens=50)
    with pytest.raises(ValueError, match="negative"):
        Usage(prompt_tokens=100, cache_write_tokens=-1)
    assert Usage(100, 60, 0, 40).uncached_prompt_tokens == 0  # exactly full is fine


def test_cost_sums_cache_writes_into_prompt_and_total() -> None:
    c = Cost(Decimal("1"), Decimal("2"), Decimal("4"), Decimal("8"))
    assert c.cache_write_usd == Decimal("8")
    assert c.prompt_usd == Decimal("11")
    assert c.total_usd == Decimal("15")
    assert (c + c).cache_write_usd == Decimal("16")
    assert sum([c, c], Cost()).total_usd == Decimal("30")
    assert Cost(Decimal("1")).total_usd == Decimal("1")  # old callers: writes default to 0


def test_token_pricing_charges_the_write_premium() -> None:
    assert HAIKU.cost(Usage(PROMPT, READS, OUTPUT, WRITES)) == EXPECTED
    # 50 plain ($50e-6) + 2000 read ($200e-6) + 1000 written ($1250e-6) + 10 out ($50e-6)
    assert EXPECTED.prompt_usd == Decimal("0.0015")
    assert EXPECTED.total_usd == Decimal("0.00155")
    assert EXPECTED.cache_write_usd == Decimal("0.00125")
    assert HAIKU.effective_cache_write_per_mtok == Decimal("1.25")


def test_unset_cache_write_price_is_the_input_price_never_free() -> None:
    plain = TokenPricing(input_per_mtok=3, output_per_mtok=15, cached_input_per_mtok="0.3")
    assert plain.cache_write_per_mtok is None
    assert plain.effective_cache_write_per_mtok == Decimal(3)
    cost = plain.cost(Usage(1_000_000, 0, 0, 1_000_000))
    assert cost.cache_write_usd == Decimal(3)
    assert cost.input_usd == 0
    # same total as if the provider had not reported the write at all
    assert cost.total_usd == plain.cost(Usage(1_000_000, 0, 0)).total_usd


def test_cache_write_price_is_validated_and_loads_from_toml_tables() -> None:
    with pytest.raises(ValueError, match="cache_write_per_mtok must be >= 0"):
        TokenPricing(input_per_mtok=1, output_per_mtok=1, cache_write_per_mtok=-1)
    endpoint = af.Endpoint(
        model="anthropic/claude-haiku-4-5",
        pricing={"input_per_mtok": 1, "output_per_mtok": 5, "cache_write_per_mtok": "1.25"},
    )
    assert endpoint.pricing == TokenPricing(
        input_per_mtok=1, output_per_mtok=5, cache_write_per_mtok="1.25"
    )


def test_gpu_hour_cache_writes_cost_a_prefill() -> None:
    gpu = GpuHourPricing(usd_per_gpu_hour=3.6, prompt_tokens_per_s=1000, output_tokens_per_s=100)
    written = gpu.cost(Usage(1000, 0, 0, 400))
    plain = gpu.cost(Usage(1000, 0, 0))
    assert written.total_usd == plain.total_usd == Decimal("0.001")  # 1 s of a $3.60/h GPU
    assert written.cache_write_usd == Decimal("0.0004")
    assert gpu.per_token().effective_cache_write_per_mtok == gpu.per_token().input_per_mtok


# -- reading usage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [
        # litellm's OpenAI-shaped usage for an Anthropic reply (both places at once)
        {
            "prompt_tokens": PROMPT,
            "completion_tokens": OUTPUT,
            "prompt_tokens_details": {
                "cached_tokens": READS,
                "cache_write_tokens": WRITES,
                "cache_creation_tokens": WRITES,
            },
            "cache_creation_input_tokens": WRITES,
            "cache_read_input_tokens": READS,
        },
        # only the top-level Anthropic names
        {
            "prompt_tokens": PROMPT,
            "completion_tokens": OUTPUT,
            "cache_creation_input_tokens": WRITES,
            "cache_read_input_tokens": READS,
        },
        # only the Anthropic/Bedrock detail name
        {
            "prompt_tokens": PROMPT,
            "completion_tokens": OUTPUT,
            "prompt_tokens_details": {"cached_tokens": READS, "cache_creation_tokens": WRITES},
        },
    ],
)
def test_normalise_usage_reads_cache_writes(usage: dict[str, Any]) -> None:
    assert normalise_usage(usage) == (Usage(PROMPT, READS, OUTPUT, WRITES), True)


def test_normalise_usage_without_cache_writes_and_with_impossible_ones() -> None:
    assert normalise_usage({"prompt_tokens": 10, "completion_tokens": 2}) == (
        Usage(10, 0, 2),
        False,
    )
    # a provider that reports more cache tokens than prompt tokens: clamped, never refused
    odd = {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 5,
    }
    assert normalise_usage(odd) == (Usage(10, 8, 2, 2), True)


def test_llm_and_rollup_attributes_carry_cache_writes() -> None:
    attrs = tracing.llm_attributes(
        model="claude-haiku-4-5",
        provider="anthropic",
        prompt_tokens=PROMPT,
        cached_prompt_tokens=READS,
        completion_tokens=OUTPUT,
        cost_input=0.00005,
        cost_cached_input=0.0002,
        cost_output=0.00005,
        cache_write_prompt_tokens=WRITES,
        cost_cache_write=0.00125,
    )
    assert attrs["llm.token_count.prompt_details.cache_write"] == WRITES
    assert attrs["llm.cost.prompt_details.cache_write"] == 0.00125
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == WRITES
    assert attrs["llm.cost.prompt"] == pytest.approx(0.0015)
    assert attrs["llm.cost.total"] == pytest.approx(0.00155)
    with pytest.raises(ValueError, match=r"include cached \(read\) and cache-write"):
        tracing.llm_attributes(
            model="m",
            provider="p",
            prompt_tokens=10,
            cached_prompt_tokens=6,
            completion_tokens=0,
            cost_input=0,
            cost_cached_input=0,
            cost_output=0,
            cache_write_prompt_tokens=5,
        )
    rollup = tracing.rollup_attributes(
        prompt_tokens=PROMPT,
        cached_prompt_tokens=READS,
        completion_tokens=OUTPUT,
        cost_input=0.00005,
        cost_cached_input=0.0002,
        cost_output=0.00005,
        calls=1,
        cache_write_prompt_tokens=WRITES,
        cost_cache_write=0.00125,
    )
    assert rollup["agentflow.tokens.cache_write_prompt"] == WRITES
    assert rollup["agentflow.cost.cache_write_usd"] == 0.00125
    assert rollup["agentflow.cost.total_usd"] == pytest.approx(0.00155)
    without = tracing.rollup_attributes(
        prompt_tokens=1,
        cached_prompt_tokens=0,
        completion_tokens=1,
        cost_input=1,
        cost_cached_input=0,
        cost_output=1,
        calls=1,
    )
    assert "agentflow.cost.cache_write_usd" not in without  # old spans look as before


# -- a real Anthropic-speaking loopback server ------------------------------------------------


@dataclass
class AnthropicServer:
    """Answers ``POST /v1/messages`` as Anthropic does; ``usages`` are the replies' usage
    blocks in order (the last one repeats)."""

    usages: list[dict[str, int]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    def next_usage(self) -> dict[str, int]:
        return self.usages.pop(0) if len(self.usages) > 1 else self.usages[0]


def _handler(server: AnthropicServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append({"path": self.path, "body": body})
            usage = server.next_usage()
            message = {
                "id": "msg_loopback",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "Paris."}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
            if body.get("stream"):
                start = {
                    **message,
                    "content": [],
                    "stop_reason": None,
                    "usage": {**usage, "output_tokens": 1},
                }
                events = [
                    ("message_start", {"type": "message_start", "message": start}),
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "text", "text": ""},
                        },
                    ),
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": "Paris."},
                        },
                    ),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    (
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": usage["output_tokens"]},
                        },
                    ),
                    ("message_stop", {"type": "message_stop"}),
                ]
                data = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)
                self._send(data.encode(), "text/event-stream")
            else:
                self._send(json.dumps(message).encode(), "application/json")

        def _send(self, data: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


ANTHROPIC_USAGE = {
    "input_tokens": PLAIN,
    "cache_creation_input_tokens": WRITES,
    "cache_read_input_tokens": READS,
    "output_tokens": OUTPUT,
}


@pytest.fixture
def anthropic() -> Iterator[AnthropicServer]:
    server = AnthropicServer(usages=[dict(ANTHROPIC_USAGE)])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _configure(server: AnthropicServer) -> None:
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier(
                    "claude",
                    endpoints=[
                        af.Endpoint(
                            model="anthropic/claude-haiku-4-5",
                            api_base=server.base_url,
                            api_key="sk-ant-loopback",
                            pricing=HAIKU,
                        )
                    ],
                )
            ]
        )
    )


def _llm_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("openinference.span.kind") == "LLM"
    ]


def _check_span(span: ReadableSpan) -> None:
    attrs = dict(span.attributes or {})
    assert attrs["llm.token_count.prompt"] == PROMPT
    assert attrs["llm.token_count.prompt_details.cache_read"] == READS
    assert attrs["llm.token_count.prompt_details.cache_write"] == WRITES
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == WRITES
    assert attrs["llm.cost.prompt_details.input"] == float(EXPECTED.input_usd)
    assert attrs["llm.cost.prompt_details.cache_read"] == float(EXPECTED.cached_input_usd)
    assert attrs["llm.cost.prompt_details.cache_write"] == float(EXPECTED.cache_write_usd)
    assert attrs["llm.cost.prompt"] == pytest.approx(float(EXPECTED.prompt_usd), rel=1e-12)
    assert attrs["llm.cost.total"] == pytest.approx(float(EXPECTED.total_usd), rel=1e-12)
    assert attrs["agentflow.pricing.cache_write_per_mtok"] == 1.25
    assert attrs["agentflow.pricing.cached_input_per_mtok"] == 0.1


def test_anthropic_reply_through_litellm(
    anthropic: AnthropicServer, spans: InMemorySpanExporter
) -> None:
    _configure(anthropic)
    with af.run("cached-prompt") as run:
        answer = af.complete([{"role": "user", "content": "Capital of France?"}], max_tokens=20)
    assert anthropic.requests[0]["path"] == "/v1/messages"
    assert answer.text == "Paris."
    assert answer.usage == Usage(PROMPT, READS, OUTPUT, WRITES)
    assert answer.cost == EXPECTED
    assert run.cost == EXPECTED
    assert run.usage.cache_write_tokens == WRITES
    (llm,) = _llm_spans(spans)
    _check_span(llm)
    (root,) = [s for s in spans.get_finished_spans() if s.parent is None]
    rollup = dict(root.attributes or {})
    assert rollup["agentflow.tokens.cache_write_prompt"] == WRITES
    assert rollup["agentflow.cost.cache_write_usd"] == float(EXPECTED.cache_write_usd)
    assert rollup["agentflow.cost.total_usd"] == pytest.approx(float(EXPECTED.total_usd))


def test_our_price_matches_litellms_cost_map(anthropic: AnthropicServer) -> None:
    """``Endpoint(pricing="litellm")`` takes the model's prices from litellm's price map,
    and agentflow then charges what litellm's ``completion_cost`` charges for the same
    Anthropic reply: both count cache reads and writes the same way."""
    import litellm

    entry = litellm.model_cost["claude-haiku-4-5"]

    def per_mtok(key: str) -> Decimal:
        return Decimal(str(entry[key])) * MILLION

    pricing = af.litellm_pricing("anthropic/claude-haiku-4-5")
    assert pricing == TokenPricing(
        input_per_mtok=per_mtok("input_cost_per_token"),
        output_per_mtok=per_mtok("output_cost_per_token"),
        cached_input_per_mtok=per_mtok("cache_read_input_token_cost"),
        cache_write_per_mtok=per_mtok("cache_creation_input_token_cost"),
    )
    assert pricing == HAIKU  # the prices the other tests use are litellm's too
    endpoint = af.Endpoint(
        model="anthropic/claude-haiku-4-5",
        api_base=anthropic.base_url,
        api_key="sk-ant-loopback",
        pricing="litellm",
    )
    assert endpoint.pricing == pricing
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("claude", endpoints=[endpoint])]))
    answer = af.complete([{"role": "user", "content": "Capital of France?"}], max_tokens=20)
    ours = answer.cost.total_usd
    theirs = litellm.completion_cost(completion_response=answer.raw)
    assert float(ours) == pytest.approx(theirs, rel=1e-9)
    # and ignoring the write premium would have undercharged
    assert pricing.cost(Usage(PROMPT, READS, OUTPUT)).total_usd < ours


def test_streamed_anthropic_reply_through_litellm(
    anthropic: AnthropicServer, spans: InMemorySpanExporter
) -> None:
    _configure(anthropic)
    with af.run("cached-prompt-stream") as run:
        stream = af.complete(
            [{"role": "user", "content": "Capital of France?"}], max_tokens=20, stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert anthropic.requests[0]["body"]["stream"] is True
    assert text == "Paris."
    assert stream.completion is not None
    assert stream.completion.usage == Usage(PROMPT, READS, OUTPUT, WRITES)
    assert not stream.completion.usage_estimated
    assert stream.completion.cost == EXPECTED
    assert run.cost == EXPECTED
    (llm,) = _llm_spans(spans)
    _check_span(llm)


# -- the report's prefix-cache savings --------------------------------------------------------


def _report_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(path), "--json"])
    capsys.readouterr()
    assert args.func(args) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_report_nets_the_write_premium_out_of_prefix_cache_savings(
    anthropic: AnthropicServer,
    spans: InMemorySpanExporter,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """First call writes the cache (and reads nothing), the next two read it back:
    saved = reads x (input - read price) - writes x (write price - input)."""
    first = {
        "input_tokens": 40,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 0,
        "output_tokens": 5,
    }
    hit = {
        "input_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3000,
        "output_tokens": 5,
    }
    anthropic.usages = [first, hit, hit]
    _configure(anthropic)
    with af.run("three-turns"):
        answers = [
            af.complete([{"role": "user", "content": f"turn {i}"}], max_tokens=20) for i in range(3)
        ]
    assert [a.usage.cache_write_tokens for a in answers] == [3000, 0, 0]
    path = tmp_path / "spans.jsonl"
    exporter = tracing.JsonlSpanExporter(path)
    exporter.export(spans.get_finished_spans())
    exporter.shutdown()
    data = _report_json(path, capsys)
    premium = 3000 * (1.25 - 1.0) / 1e6  # 0.00075 paid over the input price
    reads = 2 * 3000 * (1.0 - 0.10) / 1e6  # 0.0054 saved on the two reads
    assert data["totals"]["saved"]["prefix_cache"] == pytest.approx(reads - premium, rel=1e-9)
    assert data["totals"]["usd"] == pytest.approx(
        float(sum((a.cost for a in answers), Cost()).total_usd), rel=1e-9
    )

    # a cache written and never read back is a loss, not a saving
    written_only = tmp_path / "written-only.jsonl"
    exporter = tracing.JsonlSpanExporter(written_only)
    writer = [
        s
        for s in spans.get_finished_spans()
        if s.parent is None
        or (s.attributes or {}).get("llm.token_count.prompt_details.cache_write")
    ]
    assert len(writer) == 2  # the run and its first call
    exporter.export(writer)
    exporter.shutdown()
    data = _report_json(written_only, capsys)
    assert data["totals"]["saved"]["prefix_cache"] == pytest.approx(-premium, rel=1e-9)


# -- Phoenix prices cache writes the same way -------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("_session_exporter")
def test_phoenix_prices_cache_writes_like_agentflow(anthropic: AnthropicServer) -> None:
    """With the endpoint's price registered (``cache_write`` included), a real Phoenix's
    cost for the trace equals the run's cost; without a ``cache_write`` price Phoenix
    would charge the writes at the input price and come out lower."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tests._workload import _Switch
    from tracing.phoenix import PhoenixError, PhoenixServer

    try:
        phoenix = PhoenixServer().start()
    except PhoenixError as error:
        pytest.fail(f"this test needs Arize Phoenix (pip install arize-phoenix): {error}")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    switch = _Switch(SimpleSpanProcessor(OTLPSpanExporter(endpoint=phoenix.otlp_endpoint)))
    provider.add_span_processor(switch)
    # a name Phoenix has no built-in price for, and a 1-hour write price (2x input)
    pricing = HAIKU.model_copy(update={"cache_write_per_mtok": Decimal(2)})
    try:
        af.configure(
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "claude",
                        endpoints=[
                            af.Endpoint(
                                model="anthropic/claude-loopback-7",
                                api_base=anthropic.base_url,
                                api_key="sk-ant-loopback",
                                pricing=pricing,
                            )
                        ],
                    )
                ]
            )
        )
        assert phoenix.register_pricing({"claude-loopback-7": pricing}) == ["claude-loopback-7"]
        with af.run("phoenix-cache-write") as run:
            af.complete([{"role": "user", "content": "Capital of France?"}], max_tokens=20)
        assert run.usage.cache_write_tokens == WRITES
        assert run.trace_id is not None
        deadline = time.monotonic() + 30
        summary = phoenix.trace_cost(run.trace_id)
        while (summary is None or summary.total_cost is None) and time.monotonic() < deadline:
            time.sleep(0.5)
            summary = phoenix.trace_cost(run.trace_id)
        assert summary is not None
        assert summary.total_cost == pytest.approx(float(run.cost.total_usd), abs=1e-12)
        # 50 x $1 + 2000 x $0.10 + 1000 x $2 + 10 x $5, per million
        assert float(run.cost.total_usd) == pytest.approx(0.0023, abs=1e-15)
    finally:
        switch.on = False
        phoenix.stop()


def test_a_replayed_stream_reports_the_cache_writes_it_was_charged() -> None:
    """A stream replayed from an answer already accounted for ends with the same usage
    chunk the engine sent, cache writes included, so a caller reading it sees them."""
    from agentflow._completion import Completion
    from agentflow.pipeline.stream import replay_chunks

    answer = Completion(
        text="Paris.",
        message={"role": "assistant", "content": "Paris."},
        tier="claude",
        model="claude-haiku-4-5",
        endpoint="e",
        usage=Usage(PROMPT, READS, OUTPUT, WRITES),
        cost=EXPECTED,
    )
    usage = replay_chunks(answer)[-1].usage
    assert usage.prompt_tokens_details.cache_write_tokens == WRITES
    assert normalise_usage(usage) == (Usage(PROMPT, READS, OUTPUT, WRITES), True)
    plain = replay_chunks(Completion("a", {}, "t", "m", "e", Usage(5, 0, 1), Cost()))[-1].usage
    assert "cache_write_tokens" not in plain.prompt_tokens_details  # as before: no new key


def test_a_budget_hold_covers_every_prompt_token_being_a_cache_write() -> None:
    """Where a write costs more than a fresh read, the hold before the call assumes the
    whole prompt may be written: a call can never settle above what it held."""
    from agentflow.pipeline.budget import worst_cost

    held = worst_cost(HAIKU, PROMPT, OUTPUT)
    assert held == (Decimal(PROMPT) * Decimal("1.25") + Decimal(OUTPUT) * 5) / MILLION
    assert held >= HAIKU.cost(Usage(PROMPT, READS, OUTPUT, WRITES)).total_usd
    assert held >= HAIKU.cost(Usage(PROMPT, 0, OUTPUT, PROMPT)).total_usd
    # no write premium (OpenAI's automatic caching, GPU-hour engines): the input price
    plain = TokenPricing(input_per_mtok=1, output_per_mtok=5, cached_input_per_mtok="0.5")
    assert worst_cost(plain, PROMPT, OUTPUT) == (Decimal(PROMPT) + Decimal(OUTPUT) * 5) / MILLION


def test_litellm_pricing_reads_the_price_map_without_importing_litellm(tmp_path: Path) -> None:
    """A zoo file can say ``pricing = "litellm"``; reading it never imports litellm."""
    zoo_file = tmp_path / "zoo.toml"
    zoo_file.write_text(
        '[[tiers]]\nname = "mini"\n[[tiers.endpoints]]\n'
        'model = "openai/gpt-4o-mini"\npricing = "litellm"\n'
    )
    code = (
        "import sys, agentflow as af\n"
        f"zoo = af.ModelZoo.from_toml({str(zoo_file)!r})\n"
        "p = zoo.tiers[0].endpoints[0].pricing\n"
        "print(p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok,"
        " p.cache_write_per_mtok, 'litellm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    # gpt-4o-mini: $0.15 in, $0.60 out, $0.075 cached reads; OpenAI has no write price
    assert out == ["0.15", "0.6", "0.075", "None", "False"]


@pytest.mark.parametrize(
    ("model", "closest"),
    [("anthropic/claude-haiku-4.5", "'claude-haiku-4-5'"), ("gpt4o-mini", "'gpt-4o-mini'")],
)
def test_a_model_litellm_does_not_price_is_refused_naming_the_closest(
    model: str, closest: str
) -> None:
    with pytest.raises(af.ConfigError, match="price map has no model") as err:
        af.Endpoint(model=model, pricing="litellm")
    assert closest in str(err.value)
    assert "TokenPricing(" in str(err.value)


def test_whole_dollar_prices_read_as_whole_numbers() -> None:
    # gpt-4o: $2.50 in, $10 out, $1.25 cached reads per million (not Decimal('1E+1'))
    pricing = af.litellm_pricing("openai/gpt-4o")
    assert str(pricing.output_per_mtok) == "10"
    assert (str(pricing.input_per_mtok), str(pricing.cached_input_per_mtok)) == ("2.5", "1.25")
