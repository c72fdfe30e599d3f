"""The fast path and litellm give the same answers, costs, spans and errors.

An OpenAI-compatible endpoint is called on agentflow's own HTTP client by default
(``agentflow.pipeline.openai_http``); ``transport="litellm"`` sends the same call through
litellm. Each scenario below runs twice against identically scripted loopback servers,
once per transport, and everything a user can see is compared field by field: the body
the engine received, the ``Completion`` (text, message, tool calls, logprobs, parsed
output, usage, cost, attempts), the LLM spans' attributes and status, and for faults the
error class, how it was classified and how many attempts were made.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

import agentflow as af
from agentflow.pipeline import openai_wire
from agentflow.pipeline.call import classify
from agentflow.testing import Fault, LoopbackServer, Reply, set_testing
from budgets import TokenPricing

PRICE = TokenPricing(
    input_per_mtok=Decimal("1"), cached_input_per_mtok=Decimal("0.5"), output_per_mtok=Decimal("2")
)
USER = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a city up.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


class City(BaseModel):
    name: str
    population: int


# attributes that differ between any two runs, whatever the transport
_CALL_ID = re.compile(r"call_[0-9a-f]{8,}")  # tool call ids the server makes up
_VOLATILE = {"agentflow.latency_ms", "agentflow.endpoint", "agentflow.ttft_s"}


def _zoo(srv: LoopbackServer, transport: str, *, replicas: int = 1) -> af.ModelZoo:
    endpoints = [
        af.Endpoint(
            model="openai/small-model",
            api_base=srv.base_url,
            api_key="sk-parity-0123456789",
            pricing=PRICE,
            timeout=2.0,
            transport=transport,
            name=f"replica-{i}",
        )
        for i in range(replicas)
    ]
    return af.ModelZoo(tiers=[af.Tier("small", endpoints=endpoints)])


def _without_ids(message: Any) -> Any:
    """The message with its tool calls' ids blanked (the server makes up new ones)."""
    if not isinstance(message, dict) or not message.get("tool_calls"):
        return message
    calls = [{**call, "id": bool(call.get("id"))} for call in message["tool_calls"]]
    return {**message, "tool_calls": calls}


def _completion_view(c: Any) -> dict[str, Any]:
    return {
        "text": c.text,
        "message": _without_ids(c.message),
        "finish_reason": c.finish_reason,
        "logprobs": c.logprobs,
        "parsed": c.parsed.model_dump() if isinstance(c.parsed, BaseModel) else c.parsed,
        "usage": c.usage,
        "cost": c.cost,
        "usage_estimated": c.usage_estimated,
        "tier": c.tier,
        "model": c.model,
        "attempts": [(a.number, a.cache_hit, a.error is None) for a in c.attempts],
    }


def _error_view(err: BaseException) -> dict[str, Any]:
    attempts = getattr(err, "attempts", [])
    cause = err.__cause__
    return {
        "type": type(err).__name__,
        "cause_kind": classify(cause) if cause is not None else None,
        "cause_status": getattr(cause, "status_code", None),
        "attempts": [(a.number, a.error is None) for a in attempts],
    }


def _span_view(spans: Any) -> list[dict[str, Any]]:
    views = []
    for span in spans.get_finished_spans():
        attrs = dict(span.attributes or {})
        if attrs.get("openinference.span.kind") not in ("LLM", "EMBEDDING"):
            continue
        kept = {
            k: _CALL_ID.sub("call_ID", v) if isinstance(v, str) else v
            for k, v in attrs.items()
            if k not in _VOLATILE and "error" not in k and "exception" not in k
        }
        views.append({"name": span.name, "status": span.status.status_code.name, **kept})
    return views


def _run(
    transport: str,
    spans: Any,
    script: list[Any],
    action: Callable[[], Any],
    *,
    replicas: int = 1,
) -> dict[str, Any]:
    spans.clear()
    with LoopbackServer(name=f"parity-{transport}") as srv:
        srv.script(*script)
        with set_testing():  # no backoff sleeps, no response cache (and a fresh state)
            af.configure(
                zoo=_zoo(srv, transport, replicas=replicas), retry=af.RetryPolicy(max_attempts=2)
            )
            try:
                outcome = {"ok": _completion_view(action())}
            except af.AgentflowError as err:
                outcome = {"error": _error_view(err)}
        bodies = [(r.path, r.body) for r in srv.requests if r.path.startswith("/v1/")]
        auth = {r.headers.get("authorization") for r in srv.requests if r.path.startswith("/v1/")}
    return {**outcome, "bodies": bodies, "auth": auth, "spans": _span_view(spans)}


def _chat(**params: Any) -> Callable[[], Any]:
    return lambda: af.complete(messages=USER, tier="small", **params)


def _stream(**params: Any) -> Callable[[], Any]:
    def go() -> Any:
        stream = af.complete(messages=USER, tier="small", stream=True, **params)
        texts = [c.choices[0].delta.content for c in stream if c.choices]
        assert stream.completion is not None
        assert "".join(t or "" for t in texts) == stream.completion.text
        return stream.completion

    return go


def _achat(**params: Any) -> Callable[[], Any]:
    async def go() -> Any:
        return await af.acomplete(messages=USER, tier="small", **params)

    return lambda: asyncio.run(go())


def _astream() -> Callable[[], Any]:
    async def go() -> Any:
        stream = await af.acomplete(messages=USER, tier="small", stream=True)
        async for _ in stream:
            pass
        return stream.completion

    return lambda: asyncio.run(go())


class _EmbeddingView:
    """An ``Embedding`` read like a completion for the comparison."""

    def __init__(self, e: Any) -> None:
        self.text = json.dumps([round(v, 6) for v in e.vectors[0]][:8])
        self.message = {"vectors": len(e.vectors), "dims": len(e.vectors[0])}
        self.finish_reason = self.logprobs = self.parsed = None
        self.usage, self.cost, self.tier, self.model = e.usage, e.cost, e.tier, e.model
        self.usage_estimated = False
        self.attempts = e.attempts


SCENARIOS: dict[str, tuple[list[Any], Callable[[], Any]]] = {
    "plain": ([Reply("Paris.")], _chat(temperature=0.2, max_tokens=20, seed=7, stop=["\n"])),
    "tools": (
        [Reply(tool_calls=[{"name": "lookup", "arguments": {"city": "Paris"}}])],
        _chat(tools=TOOLS, tool_choice="required"),
    ),
    "logprobs": (
        [Reply("Paris is the capital.", logprobs=[-0.1, -0.2, -0.3, -0.05])],
        _chat(logprobs=True, top_logprobs=2),
    ),
    "structured": (
        [Reply(json={"name": "Paris", "population": 2100000})],
        _chat(response_format=City),
    ),
    "json_object": (
        [Reply(json={"name": "Paris"})],
        _chat(response_format={"type": "json_object"}),
    ),
    "cached_tokens": ([Reply("Paris.", prompt_tokens=40, cached_tokens=32)], _chat()),
    "no_usage_reported": ([Reply("Paris.", prompt_tokens=0, completion_tokens=0)], _chat()),
    "stream_with_usage": ([Reply("Paris is the capital of France.")], _stream()),
    "stream_tools": (
        [Reply(tool_calls=[{"name": "lookup", "arguments": {"city": "Paris"}}])],
        _stream(tools=TOOLS),
    ),
    "async": ([Reply("Paris.")], _achat(max_tokens=20)),
    "async_stream": ([Reply("Paris is the capital of France.")], _astream()),
    "embeddings": (
        [Reply()],
        lambda: _EmbeddingView(af.embed(["Paris", "Lyon"], tier="small")),
    ),
    # faults: the same classification, attempts and spans on both paths
    "retry_500_then_ok": ([Fault.status(500), Reply("Paris.")], _chat()),
    "retry_429_retry_after": ([Fault.status(429, retry_after=0.01), Reply("Paris.")], _chat()),
    "fatal_400": ([Fault.status(400, body="bad request: no such parameter")], _chat()),
    "failover_401": (
        [Fault.status(401, body="Incorrect API key provided"), Reply("Paris.")],
        _chat(),
    ),
    "context_overflow": (
        [Fault.status(400, body="the request exceeds the available context size")],
        _chat(),
    ),
    "malformed_json_then_ok": ([Fault.malformed_json(), Reply("Paris.")], _chat()),
    "reset_then_ok": ([Fault.reset(), Reply("Paris.")], _chat()),
    "hang_then_ok": ([Fault.hang(3.0), Reply("Paris.")], _chat()),
    "always_503": ([Fault.status(503)] * 4, _chat()),
    "async_500_then_ok": ([Fault.status(500), Reply("Paris.")], _achat()),
    "stream_cut": ([Fault.stream_cut(2)], _stream()),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fast_path_matches_litellm(name: str, spans: Any) -> None:
    script, action = SCENARIOS[name]
    via_litellm = _run("litellm", spans, script, action)
    fast = _run("auto", spans, script, action)
    assert fast["bodies"] == via_litellm["bodies"]
    assert fast["auth"] == via_litellm["auth"] == {"Bearer sk-parity-0123456789"}
    assert fast.get("ok") == via_litellm.get("ok")
    if name == "stream_cut":
        # the connection dropped mid-stream: the fast path says so (a connection error,
        # no HTTP status); litellm wraps it as a status-500 error. Neither is retried
        for view in (fast, via_litellm):
            view["error"].pop("cause_status"), view["error"].pop("cause_kind")
        assert fast["error"]["type"] == "CallError"
    assert fast.get("error") == via_litellm.get("error")
    assert fast["spans"] == via_litellm["spans"]
    assert fast["spans"], "each call is an LLM span"


def test_the_fast_path_is_the_default_and_a_setting_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = af.Endpoint(model="openai/m", api_base="http://127.0.0.1:1/v1")
    assert endpoint.fast_path
    assert not af.Endpoint(model="openai/m", api_base="http://x/v1", transport="litellm").fast_path
    assert not af.Endpoint(model="openai/gpt-4o-mini").fast_path  # no api_base: litellm
    assert not af.Endpoint(model="anthropic/claude", api_base="http://x").fast_path
    assert af.Endpoint(model="hosted_vllm/m", api_base="http://x/v1").fast_path
    monkeypatch.setenv("AGENTFLOW_TRANSPORT", "litellm")
    assert not endpoint.fast_path


def test_a_bad_transport_is_a_config_error() -> None:
    with pytest.raises(af.ConfigError, match="transport"):
        af.Endpoint(model="openai/m", api_base="http://x/v1", transport="grpc")


def test_the_fast_path_never_imports_litellm() -> None:
    import subprocess
    import sys

    code = (
        "import sys, asyncio\n"
        "import agentflow as af\n"
        "from agentflow.testing import LoopbackServer\n"
        "with LoopbackServer() as srv:\n"
        "    af.configure(zoo=af.ModelZoo(tiers=[af.Tier('t', endpoints=[af.Endpoint("
        "model='openai/m', api_base=srv.base_url)])]))\n"
        "    af.complete(messages=[{'role': 'user', 'content': 'hi'}], tier='t')\n"
        "    asyncio.run(af.acomplete(messages=[{'role': 'user', 'content': 'hi'}], tier='t'))\n"
        "    list(af.complete(messages=[{'role': 'user', 'content': 'hi'}], tier='t',"
        " stream=True))\n"
        "    af.embed(['a'], tier='t')\n"
        "import time; time.sleep(0.2)\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def test_a_reply_larger_than_the_cap_is_refused_and_the_next_replica_answers(
    spans: Any,
) -> None:
    with LoopbackServer() as srv:
        big = "x " * 400_000  # ~800 kB of text
        srv.script(Reply(big), Reply("Paris."))
        endpoints = [
            af.Endpoint(
                model="openai/small-model",
                api_base=srv.base_url,
                name=f"r{i}",
                max_reply_bytes=100_000,
            )
            for i in range(2)
        ]
        af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=endpoints)]))
        c = af.complete(messages=USER, tier="small")
    assert c.text == "Paris."
    first = c.attempts[0]
    assert first.error is not None
    assert "larger than 100000 bytes" in first.error
    assert len(c.attempts) == 2
    assert c.attempts[1].error is None
    assert {a.endpoint for a in c.attempts} == {"r0", "r1"}  # failed over to the other


def test_a_20_mb_reply_is_not_read_whole(spans: Any) -> None:
    with LoopbackServer() as srv:
        srv.script(Reply("y " * 10_000_000))  # 20 MB of text
        af.configure(
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "small", endpoints=[af.Endpoint(model="openai/m", api_base=srv.base_url)]
                    )
                ]
            ),
            retry=af.RetryPolicy(max_attempts=1),
        )
        with pytest.raises(af.CallError, match="larger than"):
            af.complete(messages=USER, tier="small")


def test_a_dripping_reply_is_cut_at_max_time_sync(spans: Any) -> None:
    """Each 16-byte piece arrives well within the read timeout; the whole would take
    about 17 s. max_time (1 s) bounds the call on the sync fast path too (litellm's sync
    client cannot be interrupted between reads: it would take the 17 s)."""
    import time

    with LoopbackServer() as srv:
        srv.script(Reply("word " * 1000, chunk_delay=0.05))
        endpoint = af.Endpoint(model="openai/m", api_base=srv.base_url, timeout=2)
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])]),
            retry=af.RetryPolicy(max_attempts=1, max_time=1.0),
        )
        t0 = time.monotonic()
        with pytest.raises(af.CallError):
            af.complete(messages=USER, tier="small")
        elapsed = time.monotonic() - t0
    assert elapsed < 1.5


def test_json_object_reads_as_attributes() -> None:
    obj = openai_wire.loads(b'{"choices": [{"message": {"content": "hi"}}], "x": null}')
    assert obj.choices[0].message.content == "hi"
    assert obj.usage is None
    assert obj.model_dump(exclude_none=True) == {"choices": [{"message": {"content": "hi"}}]}
    with pytest.raises(AttributeError):
        obj.__deepcopy_missing__  # noqa: B018  # dunders are not keys
