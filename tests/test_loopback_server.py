"""The loopback server speaks OpenAI's HTTP API well enough for httpx, openai and litellm.

Every fault is checked through a real client, the way agentflow's call path meets it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from agentflow.testing import Fault, LoopbackServer, Reply

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported: no network

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}  # 30 characters
]
QUESTION_TOKENS = 8 + 4  # ceil(30 / 4) content tokens + 4 per message


@pytest.fixture
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer(name="test") as server:
        yield server


@pytest.fixture
def client(srv: LoopbackServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    import litellm as module

    return module


def chat(srv: LoopbackServer, **body: Any) -> httpx.Response:
    payload = {"model": "m", "messages": QUESTION, **body}
    return httpx.post(f"{srv.base_url}/chat/completions", json=payload, timeout=5)


def llm(litellm: ModuleType, srv: LoopbackServer, **kwargs: Any) -> Any:
    args = {
        "model": "openai/test",
        "api_base": srv.base_url,
        "api_key": "sk-test",
        "messages": QUESTION,
        "num_retries": 0,
        "max_retries": 0,
        **kwargs,
    }
    return litellm.completion(**args)


def drain(stream: Iterable[Any], received: list[str]) -> None:
    """Read a chat stream into ``received`` until it ends or fails."""
    for chunk in stream:
        received.append(chunk.choices[0].delta.content or "")


# -- answers ------------------------------------------------------------------------


def test_scripted_replies_are_consumed_in_order_then_the_default_echoes(
    srv: LoopbackServer,
) -> None:
    srv.script(Reply(text="Paris"), Reply(text="Lyon is not it"))
    first, second, third = (chat(srv).json() for _ in range(3))

    assert first["choices"][0]["message"] == {"role": "assistant", "content": "Paris"}
    assert first["object"] == "chat.completion"
    assert first["id"].startswith("chatcmpl-")
    assert first["model"] == "m"
    assert first["system_fingerprint"]
    assert first["usage"] == {
        "prompt_tokens": QUESTION_TOKENS,
        "completion_tokens": 1,
        "total_tokens": QUESTION_TOKENS + 1,
    }
    assert second["choices"][0]["message"]["content"] == "Lyon is not it"
    assert second["usage"]["completion_tokens"] == 4
    assert third["choices"][0]["message"]["content"] == "echo: What is the capital of France?"
    assert srv.pending == 0

    srv.default = Reply(text="ok", model="served-model")
    assert chat(srv).json()["choices"][0]["message"]["content"] == "ok"
    assert chat(srv).json()["model"] == "served-model"


def test_usage_reports_cached_tokens_or_leaves_them_out(
    srv: LoopbackServer, client: openai.OpenAI
) -> None:
    srv.script(
        Reply("Paris", prompt_tokens=100, cached_tokens=64, completion_tokens=7), Reply("Paris")
    )

    cached = client.chat.completions.create(model="m", messages=QUESTION)
    unknown = client.chat.completions.create(model="m", messages=QUESTION)

    assert cached.usage is not None
    assert cached.usage.prompt_tokens_details is not None
    assert (cached.usage.prompt_tokens, cached.usage.completion_tokens) == (100, 7)
    assert cached.usage.prompt_tokens_details.cached_tokens == 64
    assert unknown.usage is not None
    assert unknown.usage.prompt_tokens_details is None  # "unknown", not 0
    assert "prompt_tokens_details" not in unknown.usage.model_dump(exclude_none=True)


def test_litellm_reads_text_and_cached_usage(litellm: ModuleType, srv: LoopbackServer) -> None:
    srv.script(Reply("Paris", cached_tokens=4))
    response = llm(litellm, srv)
    assert response.choices[0].message.content == "Paris"
    assert response.usage.prompt_tokens == QUESTION_TOKENS
    assert response.usage.prompt_tokens_details.cached_tokens == 4


def test_logprobs_are_sent_only_when_asked(srv: LoopbackServer, client: openai.OpenAI) -> None:
    srv.script(Reply("Paris it is", logprobs=[-0.1, -2.3, -0.5]), Reply("Paris it is"))

    asked = client.chat.completions.create(
        model="m", messages=QUESTION, logprobs=True, top_logprobs=3
    )
    not_asked = client.chat.completions.create(model="m", messages=QUESTION)

    assert asked.choices[0].logprobs is not None
    content = asked.choices[0].logprobs.content or []
    assert [t.token for t in content] == ["Paris", " it", " is"]
    assert [t.logprob for t in content] == [-0.1, -2.3, -0.5]
    assert content[1].bytes == list(b" it")
    for token in content:
        assert len(token.top_logprobs) == 3
        assert token.token in {t.token for t in token.top_logprobs}
        assert sum(math.exp(t.logprob) for t in token.top_logprobs) <= 1.0 + 1e-9
    assert not_asked.choices[0].logprobs is None


def test_plausible_logprobs_and_max_tokens_truncation(srv: LoopbackServer) -> None:
    srv.script(Reply("one two three four five", logprobs=True))
    body = chat(srv, logprobs=True, max_tokens=2).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == "one two"
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2
    logprobs = [t["logprob"] for t in choice["logprobs"]["content"]]
    assert len(logprobs) == 2
    assert all(-1.0 < lp < 0 for lp in logprobs)


def test_tool_calls_in_openai_format(litellm: ModuleType, srv: LoopbackServer) -> None:
    srv.script(
        Reply(
            tool_calls=[
                {"name": "search", "arguments": {"q": "France"}},
                {"name": "noop", "arguments": "{}"},
            ]
        )
    )
    choice = llm(litellm, srv).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["search", "noop"]
    assert json.loads(calls[0].function.arguments) == {"q": "France"}
    assert calls[0].id.startswith("call_")
    assert calls[0].id != calls[1].id
    assert calls[0].type == "function"


def test_json_reply_for_response_format(srv: LoopbackServer) -> None:
    srv.script(Reply(json={"city": "Paris", "confidence": 0.9}))
    content = chat(srv, response_format={"type": "json_object"}).json()["choices"][0]
    assert json.loads(content["message"]["content"]) == {"city": "Paris", "confidence": 0.9}


def test_reply_rejects_inconsistent_scripts() -> None:
    with pytest.raises(ValueError, match="one logprob per"):
        Reply("two words", logprobs=[-0.1])
    with pytest.raises(ValueError, match="not both"):
        Reply("x", json={"a": 1})
    with pytest.raises(ValueError, match="exceeds prompt_tokens"):
        Reply("x", prompt_tokens=3, cached_tokens=5)
    with pytest.raises(TypeError, match="Reply"):
        LoopbackServer().script("Paris")  # type: ignore[arg-type]


# -- streaming ----------------------------------------------------------------------


def test_litellm_stream_with_include_usage(litellm: ModuleType, srv: LoopbackServer) -> None:
    srv.script(Reply("one two three", cached_tokens=5, chunk_delay=0.01))
    chunks = list(llm(litellm, srv, stream=True, stream_options={"include_usage": True}))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (QUESTION_TOKENS, 3)
    assert usage.prompt_tokens_details.cached_tokens == 5


def test_raw_stream_is_openai_sse_over_chunked_encoding(srv: LoopbackServer) -> None:
    srv.script(Reply("a b"))
    body = {
        "model": "m",
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{srv.base_url}/chat/completions", json=body) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line]

    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["a", " b"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_stream_cut_fails_mid_stream(
    litellm: ModuleType, srv: LoopbackServer, client: openai.OpenAI
) -> None:
    srv.script(Fault.stream_cut(after_chunks=2), Fault.stream_cut(after_chunks=2))
    words = "one two three four five"

    received: list[str] = []
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": words}], stream=True
    )
    # The error class is the transport's (httpx's, or httpx2's under openai 3.x), not
    # ours to pin: what matters is that the stream fails instead of ending cleanly.
    try:
        drain(stream, received)
    except Exception:  # any error will do
        pass
    else:
        pytest.fail("a cut stream ended without an error")
    assert "".join(received) == "echo: one"  # role chunk, then exactly two content chunks

    received = []
    # litellm wraps it in a subclass of openai.APIError; the message (the transport's
    # "incomplete chunked read" under openai 2.x, "Connection error" under 3.x) varies.
    with pytest.raises(openai.APIError):
        drain(llm(litellm, srv, stream=True), received)
    assert received  # it failed after chunks had arrived, not before


def test_text_completions_endpoint(srv: LoopbackServer, client: openai.OpenAI) -> None:
    srv.script(Reply(" upon a time", logprobs=True), Reply(" upon a time"))
    done = client.completions.create(model="base", prompt="Once", logprobs=1)
    assert done.object == "text_completion"
    assert done.choices[0].text == " upon a time"
    assert done.choices[0].logprobs is not None
    assert done.choices[0].logprobs.tokens == [" upon", " a", " time"]
    assert done.usage is not None
    assert done.usage.prompt_tokens == 1

    pieces = list(
        client.completions.create(
            model="base", prompt="Once", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(p.choices[0].text for p in pieces if p.choices) == " upon a time"
    assert pieces[-1].usage is not None
    assert pieces[-1].usage.completion_tokens == 3


# -- faults -------------------------------------------------------------------------


def test_429_carries_retry_after_to_the_client(
    litellm: ModuleType, srv: LoopbackServer, client: openai.OpenAI
) -> None:
    srv.script(Fault.status(429, retry_after=2), Fault.status(429, retry_after=1.5))

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="m", messages=QUESTION)
    assert raised.value.response.headers["retry-after"] == "2"
    assert raised.value.body == {
        "message": "scripted HTTP 429 from loopback server 'test'",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }

    with pytest.raises(litellm.RateLimitError) as via_litellm:
        llm(litellm, srv)
    assert via_litellm.value.litellm_response_headers["retry-after"] == "1.5"


def test_500_and_custom_error_body(
    litellm: ModuleType, srv: LoopbackServer, client: openai.OpenAI
) -> None:
    srv.script(Fault.status(500), Fault.status(503, body="overloaded, come back later"))
    with pytest.raises(litellm.InternalServerError):
        llm(litellm, srv)
    with pytest.raises(openai.InternalServerError, match="overloaded") as raised:
        client.chat.completions.create(model="m", messages=QUESTION)
    assert raised.value.status_code == 503


def test_hang_outlasts_a_short_client_timeout(
    litellm: ModuleType, srv: LoopbackServer, client: openai.OpenAI
) -> None:
    srv.script(Fault.hang(10), Fault.hang(10))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(model="m", messages=QUESTION)
    with pytest.raises(litellm.Timeout):
        llm(litellm, srv, timeout=0.5)
    assert time.monotonic() - started < 4  # two timeouts, not two ten-second hangs
    assert len(srv.requests) == 2  # the hung requests were received and recorded


def test_malformed_json(litellm: ModuleType, srv: LoopbackServer) -> None:
    srv.script(Fault.malformed_json(), Fault.malformed_json())
    response = chat(srv)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    with pytest.raises(openai.APIError, match="Unterminated string"):  # litellm's subclass
        llm(litellm, srv)


def test_reset_is_a_connection_reset(srv: LoopbackServer, client: openai.OpenAI) -> None:
    srv.script(Fault.reset(), Fault.reset())
    with pytest.raises(httpx.ReadError, match="reset"):
        chat(srv)
    with pytest.raises(openai.APIConnectionError) as raised:
        client.chat.completions.create(model="m", messages=QUESTION)
    assert not isinstance(raised.value, openai.APITimeoutError)
    assert chat(srv).status_code == 200  # the server itself is fine


def test_default_fault_models_a_replica_that_is_down(srv: LoopbackServer) -> None:
    srv.default = Fault.status(503)
    assert [chat(srv).status_code for _ in range(3)] == [503, 503, 503]
    srv.reset()
    assert chat(srv).status_code == 200


# -- embeddings, other endpoints ------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors(litellm: ModuleType) -> None:
    with LoopbackServer(embedding_dim=32) as server:
        texts = [
            "What is the capital of France?",
            "what is the capital of france",
            "Bananas are yellow",
        ]
        # the openai client asks for base64 by default and decodes it
        vectors = [
            d.embedding
            for d in openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
            .embeddings.create(model="e", input=texts)
            .data
        ]
        again = litellm.embedding(
            model="openai/e", input=texts[0], api_base=server.base_url, api_key="sk-test"
        )

    assert [len(v) for v in vectors] == [32, 32, 32]
    assert all(abs(math.hypot(*v) - 1) < 1e-5 for v in vectors)
    assert again.data[0]["embedding"] == pytest.approx(vectors[0], abs=1e-6)
    assert again.usage.prompt_tokens == 8

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > 0.8 > cos(vectors[0], vectors[2])


def test_embeddings_consume_the_script(srv: LoopbackServer) -> None:
    srv.script(Fault.status(429), Reply(prompt_tokens=99))
    url = f"{srv.base_url}/embeddings"
    assert httpx.post(url, json={"model": "e", "input": "x"}).status_code == 429
    body = httpx.post(url, json={"model": "e", "input": ["x", "y"]}).json()
    assert body["usage"] == {"prompt_tokens": 99, "total_tokens": 99}
    assert [d["index"] for d in body["data"]] == [0, 1]


def test_health_models_tokenize_and_404(srv: LoopbackServer) -> None:
    srv.script(Reply("x"), model="tier-b")
    assert httpx.get(f"{srv.root_url}/health").json() == {"status": "ok"}
    models = httpx.get(f"{srv.base_url}/models").json()
    assert {m["id"] for m in models["data"]} == {"loopback", "tier-b"}
    content = "You are a careful assistant."
    tokens = httpx.post(f"{srv.root_url}/tokenize", json={"content": content}).json()["tokens"]
    assert len(tokens) == math.ceil(len(content) / 4)  # the prompt_tokens unit
    assert all(isinstance(t, int) for t in tokens)
    missing = httpx.post(f"{srv.base_url}/nowhere", json={})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert srv.pending == 1  # none of those consumed the script


# -- routing, prefix cache, concurrency, recording -------------------------------------


def test_per_model_queues_come_first(srv: LoopbackServer, litellm: ModuleType) -> None:
    srv.script(Reply("shared 1"), Reply("shared 2"))
    srv.script(Reply("tier b"), model="tier-b-model")

    assert llm(litellm, srv, model="openai/tier-b-model").choices[0].message.content == "tier b"
    assert llm(litellm, srv, model="openai/other").choices[0].message.content == "shared 1"
    assert llm(litellm, srv, model="openai/tier-b-model").choices[0].message.content == "shared 2"
    assert [r.model for r in srv.requests] == ["tier-b-model", "other", "tier-b-model"]


def test_prefix_cache_hits_only_on_the_replica_that_saw_the_prefix() -> None:
    system = {"role": "system", "content": "You answer questions about geography. " * 20}

    def cached(server: LoopbackServer, question: str) -> int:
        messages = [system, {"role": "user", "content": question}]
        body = {"model": "m", "messages": messages}
        usage = httpx.post(f"{server.base_url}/chat/completions", json=body).json()["usage"]
        return int(usage["prompt_tokens_details"]["cached_tokens"])

    with (
        LoopbackServer(name="a", prefix_cache=True) as a,
        LoopbackServer(name="b", prefix_cache=True) as b,
    ):
        assert cached(a, "Capital of France?") == 0  # cold
        warm = cached(a, "Capital of Spain?")
        assert cached(b, "Capital of Spain?") == 0  # the other replica never saw it
        repeat = cached(a, "Capital of Spain?")

    shared = len("system: " + system["content"] + "\nuser: Capital of ")
    assert warm == shared // 4
    assert warm < repeat < QUESTION_TOKENS + 200  # a repeat hits all but the last token


def test_100_concurrent_requests_are_all_answered(srv: LoopbackServer) -> None:
    srv.default = Reply(latency=0.2)  # echo, slowly: requests must overlap to finish in time
    n = 120

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(base_url=srv.base_url, limits=limits, timeout=10) as c:
            return await asyncio.gather(
                *(
                    c.post(
                        "/chat/completions",
                        json={"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
                    )
                    for i in range(n)
                )
            )

    started = time.monotonic()
    responses = asyncio.run(main())
    elapsed = time.monotonic() - started

    answers = [r.json()["choices"][0]["message"]["content"] for r in responses]
    assert answers == [f"echo: q{i}" for i in range(n)]
    assert elapsed < 0.2 * n / 4
    assert len(srv.requests) == n


def test_requests_are_recorded(srv: LoopbackServer, client: openai.OpenAI) -> None:
    before = time.time()
    client.chat.completions.create(model="m", messages=QUESTION, temperature=0)
    client.chat.completions.create(model="m", messages=QUESTION, temperature=0)

    first, second = srv.requests
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.body == {"model": "m", "messages": QUESTION, "temperature": 0}
    assert before <= first.time <= second.time <= time.time()
    assert first.peer == second.peer  # one keep-alive connection served both
    srv.reset()
    assert srv.requests == []


def test_latency_and_stop_and_restart_on_the_same_port() -> None:
    server = LoopbackServer(name="r").start()
    port = server.port
    server.script(Reply("slow", latency=0.3))
    started = time.monotonic()
    assert chat(server).json()["choices"][0]["message"]["content"] == "slow"
    assert time.monotonic() - started >= 0.3

    server.stop()
    with pytest.raises(httpx.ConnectError):
        chat(server)
    server.start()
    try:
        assert server.port == port
        assert chat(server).status_code == 200
    finally:
        server.stop()


def test_stop_closes_keep_alive_connections_and_wakes_hangs() -> None:
    server = LoopbackServer().start()
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        body = {"model": "m", "messages": QUESTION}
        assert c.post("/chat/completions", json=body).status_code == 200
        server.script(Fault.hang(30))
        stopper = threading.Timer(0.2, server.stop)
        started = time.monotonic()
        stopper.start()
        with pytest.raises(httpx.RemoteProtocolError):
            c.post("/chat/completions", json=body)
        stopper.join()
        assert time.monotonic() - started < 3
        with pytest.raises(httpx.ConnectError):  # the pooled connection is gone too
            c.post("/chat/completions", json=body)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0
