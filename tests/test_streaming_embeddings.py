"""Streaming completions settle what was used — at the end, when cut, when abandoned — and
embeddings go through the same tiers, pricing and accounting."""

from __future__ import annotations

import gc
import math
from decimal import Decimal
from typing import Any

import pytest

import agentflow as af
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import Budget, Cost, Usage


def _calls(srv: LoopbackServer) -> list[Any]:
    """The model calls the server received (token counting asks ``/tokenize`` too)."""
    return [r for r in srv.requests if r.path.endswith(("/chat/completions", "/embeddings"))]


Q = [{"role": "user", "content": "What is the capital of France?"}]


def _content(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    return (choices[0].delta.content or "") if choices else ""


def test_stream_yields_chunks_and_settles_with_the_engines_usage(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("one two three four", prompt_tokens=50, cached_tokens=10, completion_tokens=4))
    with af.run("stream") as run:
        stream = af.complete(messages=Q, stream=True)
        assert isinstance(stream, af.CompletionStream)
        assert stream.completion is None  # nothing settled before the end
        texts = [_content(chunk) for chunk in stream]

    assert "".join(texts) == "one two three four"
    assert [t for t in texts if t] == ["one", " two", " three", " four"]  # chunk by chunk
    body = _calls(srv)[-1].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}

    c = stream.completion
    assert c is not None
    assert c.text == "one two three four"
    assert c.usage == Usage(50, 10, 4)  # the engine's own figures, not an estimate
    # 40 uncached * $1/M + 10 cached * $0.5/M + 4 out * $2/M
    assert c.cost == Cost(Decimal("0.00004"), Decimal("0.000005"), Decimal("0.000008"))
    assert len(c.attempts) == 1
    assert c.attempts[0].ok
    assert c.attempts[0].ttft_s is not None
    assert run.totals.calls == 1
    assert run.cost == c.cost


def test_stream_is_retried_before_the_first_chunk(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.status(503), Reply("fine", prompt_tokens=5, completion_tokens=1))
    stream = af.complete(messages=Q, stream=True)
    assert "".join(_content(c) for c in stream) == "fine"
    assert stream.completion is not None
    assert [a.ok for a in stream.completion.attempts] == [False, True]


def test_stream_cut_midway_raises_call_error_and_records_what_was_received(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Fault.stream_cut(after_chunks=3))
    received: list[str] = []
    with af.run("cut", budget=Budget(max_usd=1)) as run:
        stream = af.complete(
            messages=[{"role": "user", "content": "alpha beta gamma delta epsilon zeta"}],
            stream=True,
        )

        def drain() -> None:
            for chunk in stream:
                received.append(_content(chunk))

        with pytest.raises(af.CallError) as info:
            drain()

    assert "".join(received) == "echo: alpha beta"  # three content chunks, then the cut
    err = info.value
    assert "stream" in str(err)
    (attempt,) = run.attempts
    assert attempt.ok is False
    assert attempt.error is not None
    assert attempt.usage.completion_tokens > 0  # the tokens received were paid for
    assert attempt.usage.prompt_tokens > 0
    assert run.cost.total_usd > 0
    assert err.attempts == [attempt]
    assert run.ledger is not None
    assert run.ledger.spent().usd == run.cost.total_usd  # settled, not left reserved


def test_abandoned_stream_settles_on_close(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("a b c d e f g h", prompt_tokens=20, completion_tokens=8, chunk_delay=0.01))
    with af.run("abandon", budget=Budget(max_usd=1)) as run:
        stream = af.complete(messages=Q, stream=True)
        for i, _chunk in enumerate(stream):
            if i == 2:  # the role chunk, "a", " b"
                break
        stream.close()

    c = stream.completion
    assert c is not None
    assert c.text == "a b"
    # no usage chunk came: what was received is counted by the endpoint's tokenizer
    assert c.usage.completion_tokens >= 1
    assert c.usage.prompt_tokens > 0
    assert run.totals.calls == 1
    assert run.cost.total_usd > 0
    assert run.ledger is not None
    assert run.ledger.spent().usd == run.cost.total_usd
    assert run.ledger.remaining().usd == 1 - run.cost.total_usd  # nothing left reserved


def test_abandoned_stream_settles_on_with_exit(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("a b c d e f g h", chunk_delay=0.01))
    with af.run("with") as run:
        with af.complete(messages=Q, stream=True) as stream:
            next(stream)
            next(stream)
        assert run.totals.calls == 1
    assert stream.completion is not None
    assert stream.completion.text == "a"


def test_abandoned_stream_settles_when_garbage_collected(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("a b c d e f g h", chunk_delay=0.01))
    with af.run("gc") as run:
        stream = af.complete(messages=Q, stream=True)
        next(stream)
        next(stream)
        del stream
        gc.collect()
        assert run.totals.calls == 1
    assert run.attempts[0].usage.completion_tokens >= 1


async def test_async_stream(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("x y z", prompt_tokens=5, completion_tokens=3))
    async with af.run("astream") as run:
        stream = await af.acomplete(messages=Q, stream=True)
        assert isinstance(stream, af.AsyncCompletionStream)
        texts = [_content(chunk) async for chunk in stream]
    assert "".join(texts) == "x y z"
    assert stream.completion is not None
    assert stream.completion.usage == Usage(5, 0, 3)
    assert run.totals.calls == 1
    assert run.cost.total_usd == Decimal("0.000011")


async def test_async_stream_abandoned_with_async_with(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("a b c d e f", chunk_delay=0.01))
    async with af.run("aabandon") as run:
        async with await af.acomplete(messages=Q, stream=True) as stream:
            await stream.__anext__()
            await stream.__anext__()
        assert run.totals.calls == 1
    assert stream.completion is not None
    assert stream.completion.text == "a"


async def test_async_stream_cut(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.stream_cut(after_chunks=1))
    async with af.run("acut") as run:
        stream = await af.acomplete(messages=Q, stream=True)
        with pytest.raises(af.CallError):
            async for _ in stream:
                pass
    assert run.totals.calls == 1
    assert run.totals.errors == 1
    assert run.cost.total_usd > 0


def test_stream_in_a_step_is_attributed_to_the_step(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.plan(tier="big", name="streamer")
    def streamer() -> af.CompletionStream:
        return af.complete(messages=Q, stream=True)

    srv.script(Reply("p q", prompt_tokens=3, completion_tokens=2))
    with af.run("step-stream") as run:
        stream = streamer()
        list(stream)  # consumed after the step returned: still the step's call
    assert _calls(srv)[-1].body["model"] == "big-model"
    assert run.steps["streamer"].calls == 1
    assert run.attempts[0].step == "streamer"


# -- embeddings ------------------------------------------------------------------------------


def test_embed_returns_vectors_usage_and_cost_and_is_accounted(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.retrieve(tier="small", name="embedder")
    def embed_docs(docs: list[str]) -> af.Embedding:
        return af.embed(docs)

    with af.run("embed") as run:
        e = embed_docs(["hello", "world!!!", "paris"])

    assert isinstance(e, af.Embedding)
    assert len(e.vectors) == 3
    assert all(len(v) == 64 for v in e.vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-6) for v in e.vectors)
    assert e.vectors[0] != e.vectors[1]
    body = _calls(srv)[-1].body
    assert _calls(srv)[-1].path.endswith("/embeddings")
    assert body["input"] == ["hello", "world!!!", "paris"]
    assert body["model"] == "small-model"
    # the loopback server counts ceil(chars / 4): 2 + 2 + 2
    assert e.usage == Usage(prompt_tokens=6)
    assert e.cost.total_usd == Decimal("0.000006")
    assert (e.tier, e.model) == ("small", "small-model")
    assert len(e.attempts) == 1
    assert e.attempts[0].ok
    assert run.totals.calls == 1
    assert run.cost.total_usd == Decimal("0.000006")
    assert run.steps["embedder"].calls == 1
    assert run.steps["embedder"].usage == Usage(prompt_tokens=6)


def test_embed_a_single_string_with_params(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(prompt_tokens=9))
    e = af.embed("hello", tier="big", user="u-42")
    assert len(e.vectors) == 1
    assert len(e.vectors[0]) == 64
    assert _calls(srv)[-1].body["model"] == "big-model"
    assert _calls(srv)[-1].body["user"] == "u-42"
    assert e.usage.prompt_tokens == 9
    assert e.cost.total_usd == Decimal("0.00009")  # $10 per million on the big tier


def test_embed_is_retried_by_agentflow_not_hidden_in_the_client(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Fault.status(500), Reply(prompt_tokens=1))
    e = af.embed("hello")
    # every call the server saw is an attempt agentflow reports (and will trace)
    assert len(_calls(srv)) == 2
    assert [a.ok for a in e.attempts] == [False, True]
    assert e.attempts[0].status_code == 500


async def test_aembed_is_retried_by_agentflow_not_hidden_in_the_client(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Fault.status(500), Reply(prompt_tokens=1))
    e = await af.aembed("hello")
    assert len(_calls(srv)) == 2
    assert [a.ok for a in e.attempts] == [False, True]


async def test_aembed(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    async with af.run("aembed") as run:
        e = await af.aembed(["a", "bb"])
    assert len(e.vectors) == 2
    assert e.usage == Usage(prompt_tokens=2)
    assert run.totals.calls == 1
    assert run.cost.total_usd == Decimal("0.000002")


def test_embed_respects_the_run_budget(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    with af.run("emb-budget", budget=Budget(max_calls=1)) as run:
        af.embed("hello")
        with pytest.raises(af.BudgetExceededError):
            af.embed("again")
    assert len([r for r in _calls(srv) if r.path.endswith("/embeddings")]) == 1
    assert run.ledger is not None
    assert run.ledger.spent().calls == 1
