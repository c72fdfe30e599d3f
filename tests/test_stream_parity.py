"""Streams get what non-streamed calls get: ``on_budget`` downgrade and trim, the exact
response cache (served as chunks, and stored when a stream ends normally), escalation in
``Escalate(stream="buffer")`` mode, the load guard counting a stream until it ends, time
to first token on the ``Completion``, and an abandoned async stream closes its HTTP
response instead of letting the engine generate on."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agentflow as af
from agentflow.pipeline.route import inflight
from agentflow.testing import Fault, LoopbackServer, Reply
from agentflow.testing._tokens import embed as toy_embed
from budgets import Budget, TokenPricing
from tracing import attributes as A

CHEAP = TokenPricing(input_per_mtok=1, output_per_mtok=2)
DEAR = TokenPricing(input_per_mtok=1000, output_per_mtok=2000)
Q = [{"role": "user", "content": "What is the capital of France?"}]


def _chat(srv: LoopbackServer) -> list[Any]:
    return [r for r in srv.requests if r.path.endswith("/chat/completions")]


def _text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    return (choices[0].delta.content or "") if choices else ""


@pytest.fixture(params=["auto", "litellm"])
def two_servers(request: pytest.FixtureRequest) -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    """``small`` (cheap) and ``big`` (dear), each on its own loopback server, called on
    agentflow's own HTTP client (``transport="auto"``) or through litellm."""
    transport = request.param
    with LoopbackServer(name="small") as small, LoopbackServer(name="big") as big:
        af.configure(
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "small",
                        endpoints=[
                            af.Endpoint(
                                model="openai/s",
                                api_base=small.base_url,
                                pricing=CHEAP,
                                transport=transport,
                            )
                        ],
                    ),
                    af.Tier(
                        "big",
                        endpoints=[
                            af.Endpoint(
                                model="openai/b",
                                api_base=big.base_url,
                                pricing=DEAR,
                                transport=transport,
                            )
                        ],
                    ),
                ]
            ),
            cache_backend="memory",
        )
        yield small, big


# --- on_budget ---------------------------------------------------------------------------


def test_a_stream_downgrades_to_a_cheaper_tier_that_fits(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, big = two_servers
    small.default = Reply("cheap answer", prompt_tokens=10, completion_tokens=2)

    @af.step(tier="big", budget=Budget(max_usd=0.001), on_budget="downgrade")
    def ask() -> str:
        stream = af.complete([{"role": "user", "content": "a question " * 20}], stream=True)
        return "".join(_text(c) for c in stream)

    assert ask() == "cheap answer"
    assert len(_chat(big)) == 0  # the dear tier was never called
    assert len(_chat(small)) == 1
    assert _chat(small)[0].body["stream"] is True


def test_a_stream_trims_the_oldest_turns_until_the_prompt_fits(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    history = [{"role": "system", "content": "be brief"}]
    for i in range(6):
        history += [
            {"role": "user", "content": f"old question {i} " + "padding " * 40},
            {"role": "assistant", "content": f"old answer {i} " + "padding " * 40},
        ]
    history.append({"role": "user", "content": "the question now"})

    @af.step(tier="small", budget=Budget(max_input_tokens=200), on_budget="trim")
    def ask() -> af.CompletionStream:
        return af.complete(history, max_tokens=5, stream=True)

    stream = ask()
    list(stream)
    sent = _chat(small)[0].body
    assert sent["stream"] is True
    assert sent["messages"][0]["role"] == "system"  # the system prompt is kept
    assert sent["messages"][-1]["content"] == "the question now"  # and the question
    assert len(sent["messages"]) < len(history)
    assert stream.completion is not None
    assert stream.completion.usage.prompt_tokens <= 200


# --- the exact cache ---------------------------------------------------------------------


def test_the_exact_cache_serves_a_stream_as_chunks(
    two_servers: tuple[LoopbackServer, LoopbackServer], spans: InMemorySpanExporter
) -> None:
    small, _ = two_servers
    small.script(Reply("Paris is the capital", prompt_tokens=12, completion_tokens=4))

    @af.step(tier="small", cache="exact")
    def ask(stream: bool) -> Any:
        if stream:
            return af.complete(Q, stream=True, temperature=0)
        return af.complete(Q, temperature=0)

    with af.run("cached-stream") as run:
        first = ask(False)  # answered by the engine, stored
        spans.clear()
        stream = ask(True)
        chunks = list(stream)

    assert len(_chat(small)) == 1  # the stream reached no endpoint
    texts = [_text(c) for c in chunks]
    assert "".join(texts) == first.text == "Paris is the capital"
    assert len([t for t in texts if t]) > 1  # replayed in several chunks, not one blob
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason is not None
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    for chunk in chunks:  # shaped like the engine's chunks: attributes and model_dump
        assert isinstance(chunk.model_dump(), dict)

    c = stream.completion
    assert c is not None
    assert c.cache_hit is True
    assert c.text == "Paris is the capital"
    assert c.cost.total_usd == 0
    assert c.usage.prompt_tokens == 0
    assert c.usage.completion_tokens == 0
    assert c.ttft_s is not None
    assert 0 <= c.ttft_s < 0.5
    assert c.attempts[-1].cache_hit is True
    assert c.attempts[-1].ttft_s == c.ttft_s
    assert run.totals.cache_hits == 1
    assert run.totals.calls == 2
    assert run.cost.total_usd == first.cost.total_usd  # the replay cost nothing

    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    attrs = dict(span.attributes or {})
    assert attrs["agentflow.cache.hit"] is True
    assert attrs["agentflow.cost.saved_usd"] == pytest.approx(float(first.cost.total_usd))
    assert attrs["agentflow.ttft_s"] == pytest.approx(c.ttft_s)


def test_a_completed_stream_is_stored_and_serves_the_next_call(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Reply("stored from a stream", prompt_tokens=9, completion_tokens=4))

    @af.step(tier="small", cache="exact")
    def ask(stream: bool) -> Any:
        return af.complete(Q, stream=True) if stream else af.complete(Q)

    streamed = ask(True)
    assert "".join(_text(c) for c in streamed) == "stored from a stream"
    assert streamed.completion is not None
    assert not streamed.completion.cache_hit

    again = ask(False)  # a plain call is served what the stream stored
    assert again.cache_hit is True
    assert again.text == "stored from a stream"
    replay = ask(True)  # and so is another stream
    assert "".join(_text(c) for c in replay) == "stored from a stream"
    assert replay.completion is not None
    assert replay.completion.cache_hit
    assert len(_chat(small)) == 1


def test_a_stream_closed_early_is_not_stored(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Reply("a b c d e f g h", chunk_delay=0.01), Reply("the full answer"))

    @af.step(tier="small", cache="exact")
    def ask() -> af.CompletionStream:
        return af.complete(Q, stream=True)

    with ask() as stream:
        next(stream)
        next(stream)  # "a": then the caller walks away
    assert stream.completion is not None
    assert stream.completion.text == "a"

    full = ask()
    assert "".join(_text(c) for c in full) == "the full answer"  # not the partial "a"
    assert full.completion is not None
    assert not full.completion.cache_hit
    assert len(_chat(small)) == 2


def test_a_stream_cut_by_an_error_is_not_stored(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Fault.stream_cut(after_chunks=2), Reply("the full answer"))

    @af.step(tier="small", cache="exact")
    def ask() -> af.CompletionStream:
        return af.complete(Q, stream=True)

    with pytest.raises(af.CallError):
        list(ask())
    full = ask()
    assert "".join(_text(c) for c in full) == "the full answer"
    assert len(_chat(small)) == 2


async def test_the_exact_cache_serves_and_stores_async_streams(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Reply("async and cached", prompt_tokens=5, completion_tokens=3))

    @af.step(tier="small", cache="exact")
    async def ask() -> af.AsyncCompletionStream:
        return await af.acomplete(Q, stream=True)

    first = await ask()
    assert "".join([_text(c) async for c in first]) == "async and cached"
    second = await ask()
    assert "".join([_text(c) async for c in second]) == "async and cached"
    assert second.completion is not None
    assert second.completion.cache_hit
    assert second.completion.ttft_s is not None
    assert len(_chat(small)) == 1


def test_the_semantic_cache_serves_a_paraphrased_stream(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Reply("Paris", prompt_tokens=8, completion_tokens=1))

    @af.step(
        tier="small",
        cache=af.CachePolicy(
            kind="semantic",
            threshold=0.8,
            embedder=lambda texts: [toy_embed(t, 64) for t in texts],
        ),
    )
    def ask(question: str) -> af.CompletionStream:
        return af.complete([{"role": "user", "content": question}], stream=True)

    with af.run("semantic", user_id="alice"):
        assert "".join(_text(c) for c in ask("What is the capital of France?")) == "Paris"
        again = ask("what is the capital of france")
        assert "".join(_text(c) for c in again) == "Paris"
    assert again.completion is not None
    assert again.completion.cache_hit
    assert again.completion.cache_similarity is not None
    assert len(_chat(small)) == 1


# --- escalation --------------------------------------------------------------------------


def test_buffered_stream_escalates_before_emitting_a_chunk(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, big = two_servers
    small.script(Reply("a weak answer", prompt_tokens=5, completion_tokens=3))
    big.script(Reply("a strong answer", prompt_tokens=5, completion_tokens=3))

    def strong_only(c: af.Completion) -> float:
        return 0.9 if "strong" in c.text else 0.1

    @af.step(
        tier="small",
        escalate=af.Escalate(min_confidence=0.8, scorer=strong_only, stream="buffer"),
    )
    def ask() -> af.CompletionStream:
        return af.complete(Q, stream=True)

    with af.run("buffered") as run:
        stream = ask()
        texts = [_text(c) for c in stream]
    assert "".join(texts) == "a strong answer"  # the rejected answer never reached us
    assert len([t for t in texts if t]) > 1
    c = stream.completion
    assert c is not None
    assert c.tier == "big"
    assert c.confident is True
    assert c.confidence == 0.9
    assert [a.tier for a in c.attempts] == ["small", "big"]
    assert c.ttft_s is not None
    assert c.ttft_s > 0
    assert run.totals.calls == 2
    assert run.cost == c.total_cost
    assert len(_chat(small)) == 1
    assert len(_chat(big)) == 1


def test_an_escalating_step_streams_unscored_by_default(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, big = two_servers
    small.script(Reply("a weak answer"))

    @af.step(tier="small", escalate=af.Escalate(min_confidence=0.8, scorer=lambda c: 0.0))
    def ask() -> af.CompletionStream:
        return af.complete(Q, stream=True)

    stream = ask()
    assert "".join(_text(c) for c in stream) == "a weak answer"  # today's behaviour
    assert len(_chat(big)) == 0


def test_stream_mode_is_validated() -> None:
    with pytest.raises(af.ConfigError, match="stream"):
        af.Escalate(stream="later")  # type: ignore[arg-type]


# --- the load guard and time to first token ----------------------------------------------


def test_the_load_guard_counts_a_stream_until_it_ends(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Reply("one two three"), Reply("four five six"))
    endpoint = _endpoint_id()

    stream = af.complete(Q, stream=True)
    assert inflight.count(endpoint) == 1  # the response is open: the replica is busy
    next(stream)
    assert inflight.count(endpoint) == 1
    list(stream)
    assert inflight.count(endpoint) == 0

    closed = af.complete(Q, stream=True)
    next(closed)
    closed.close()
    assert inflight.count(endpoint) == 0


def _endpoint_id() -> str:
    from agentflow._config import get_zoo

    return get_zoo().tier("small").endpoints[0].id


def test_a_live_stream_has_its_time_to_first_token_on_the_completion(
    two_servers: tuple[LoopbackServer, LoopbackServer], spans: InMemorySpanExporter
) -> None:
    small, _ = two_servers
    small.script(Reply("slow to start", latency=0.2, chunk_delay=0.01))
    stream = af.complete(Q, stream=True)
    list(stream)
    c = stream.completion
    assert c is not None
    assert c.ttft_s is not None
    assert 0.15 < c.ttft_s < c.latency_s
    assert c.attempts[-1].ttft_s == c.ttft_s
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert (span.attributes or {})["agentflow.ttft_s"] == pytest.approx(c.ttft_s)


# --- abandoned streams --------------------------------------------------------------------


def _stream_open(srv: LoopbackServer) -> bool:
    """Whether the server still holds the connection its (last) chat request came on."""
    peer = _chat(srv)[-1].peer
    httpd = srv._httpd  # the server's own view of its open client connections
    assert httpd is not None
    with httpd.connections_lock:
        conns = list(httpd.open_connections)
    peers = set()
    for conn in conns:
        try:
            peers.add(conn.getpeername()[:2])
        except OSError:
            continue  # closed meanwhile
    return tuple(peer) in peers


async def test_an_async_stream_dropped_without_aclose_closes_its_response(
    two_servers: tuple[LoopbackServer, LoopbackServer], spans: InMemorySpanExporter
) -> None:
    small, _ = two_servers
    # 200 chunks, 50 ms apart: 10 s of generating if nobody hangs up
    small.script(Reply(" ".join(f"w{i}" for i in range(200)), chunk_delay=0.05))
    async with af.run("dropped", budget=Budget(max_usd=1)) as run:
        stream = await af.acomplete(Q, stream=True)
        await stream.__anext__()
        await stream.__anext__()
        assert _stream_open(small)
        endpoint = _endpoint_id()
        assert inflight.count(endpoint) == 1
        del stream
        gc.collect()
        for _ in range(60):  # 3 s at most; the reply would take 10 s
            if not _stream_open(small) and run.totals.calls:
                break
            await asyncio.sleep(0.05)
        assert not _stream_open(small)  # the server saw the connection close

    assert inflight.count(endpoint) == 0
    assert run.totals.calls == 1
    (attempt,) = run.attempts
    assert attempt.ok is False  # abandoned, not finished
    assert attempt.error is not None
    assert "abandoned" in attempt.error
    assert attempt.usage.prompt_tokens > 0  # what was received is paid for
    assert run.ledger is not None
    assert run.ledger.spent().usd == run.cost.total_usd
    assert run.ledger.remaining().usd == Decimal(1) - run.cost.total_usd  # no hold left
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert span.status.status_code is StatusCode.ERROR


def test_a_sync_stream_dropped_closes_its_response(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Reply(" ".join(f"w{i}" for i in range(200)), chunk_delay=0.05))
    stream = af.complete(Q, stream=True)
    next(stream)
    next(stream)
    assert _stream_open(small)
    del stream
    gc.collect()
    deadline = time.monotonic() + 3.0
    while _stream_open(small) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _stream_open(small)  # the server saw the connection close


# --- a stream that outlives its run --------------------------------------------------------


def test_a_stream_closed_after_its_run_is_in_the_run_cost(
    two_servers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_servers
    small.script(Reply("a b c d", prompt_tokens=10, completion_tokens=4, chunk_delay=0.01))
    with af.run("outlived", budget=Budget(max_usd=1)) as run:
        stream = af.complete(Q, stream=True)
        next(stream)
    list(stream)  # read to the end after the run is over
    assert run.ledger is not None
    assert run.cost.total_usd > 0
    assert run.ledger.spent().usd == run.cost.total_usd
    assert run.totals.calls == 1
    assert sum(s.totals.cost.total_usd for s in run.steps.values()) == run.cost.total_usd


def test_the_run_span_waits_for_a_stream_that_outlives_the_run(
    two_servers: tuple[LoopbackServer, LoopbackServer], spans: Any
) -> None:
    """The run span's rolled-up cost includes a stream settled after the run ended:
    the span ends when the last of its streams settles."""
    small, _ = two_servers
    small.script(Reply("a b c d", prompt_tokens=10, completion_tokens=4, chunk_delay=0.01))
    with af.run("outlived-span") as run:
        stream = af.complete(Q, stream=True)
        next(stream)
    assert not [s for s in spans.get_finished_spans() if s.name == "run outlived-span"]
    list(stream)
    (span,) = [s for s in spans.get_finished_spans() if s.name == "run outlived-span"]
    attrs = dict(span.attributes or {})
    assert run.cost.total_usd > 0
    assert attrs[A.AGENTFLOW_TOKENS_COMPLETION] == 4
    assert attrs[A.AGENTFLOW_TOKENS_PROMPT] == 10
    assert attrs[A.AGENTFLOW_CALLS] == 1
