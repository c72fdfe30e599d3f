"""The response cache in the call pipeline, over real HTTP: a repeated request costs
nothing and reaches no endpoint, tenants never share, and what must not be replayed is
never stored."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

import agentflow as af
from agentflow.testing import Fault, LoopbackServer, Reply
from agentflow.testing._tokens import embed as toy_embed
from budgets import Cost, Usage

Q = [
    {"role": "system", "content": "You answer geography questions in one word."},
    {"role": "user", "content": "What is the capital of France?"},
]


def _chat_calls(srv: LoopbackServer) -> int:
    return sum(1 for r in srv.requests if r.path.endswith("/chat/completions"))


def _embedding_calls(srv: LoopbackServer) -> int:
    return sum(1 for r in srv.requests if r.path.endswith("/embeddings"))


@pytest.fixture
def cached(zoo: af.ModelZoo) -> Iterator[Any]:
    """A step with the exact cache, on the small tier."""

    @af.step(tier="small", cache="exact")
    def ask(messages: list[dict[str, Any]] = Q, **params: Any) -> af.Completion:
        return af.complete(messages=messages, **params)

    return ask


# -- a repeated request costs nothing and reaches no endpoint --------------------------


def test_repeat_is_served_from_the_cache_at_no_cost(
    cached: Any, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    srv.script(Reply("Paris", prompt_tokens=1000, completion_tokens=10))
    with af.run("r", user_id="alice") as run:
        first = cached()
        second = cached()
    assert _chat_calls(srv) == 1
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.text == "Paris"
    assert second.message["content"] == "Paris"
    assert second.usage == Usage()
    assert second.cost == Cost()
    (hit,) = second.attempts
    assert hit.cache_hit
    assert hit.ok
    assert hit.endpoint == "cache:exact"
    assert hit.saved_usd == first.cost.total_usd > 0
    # the run paid once and knows what the cache saved
    assert run.cost == first.cost
    assert run.totals.cache_hits == 1
    assert run.totals.saved_usd == first.cost.total_usd
    report = run.report()
    assert "response cache: 1 (50%) of calls answered from the cache" in report
    assert f"saved ${first.cost.total_usd:.6f}" in report
    llm = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert len(llm) == 2
    attrs = dict(llm[1].attributes or {})
    assert attrs["agentflow.cache.hit"] is True
    assert attrs["agentflow.cache.kind"] == "exact"
    assert attrs["llm.cost.total"] == 0.0
    assert attrs["agentflow.cost.saved_usd"] == pytest.approx(float(first.cost.total_usd))
    assert "llm.token_count.prompt" not in attrs  # Phoenix must not price a hit


async def test_async_calls_share_the_cache(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.step(tier="small", cache="exact")
    async def ask() -> af.Completion:
        return await af.acomplete(messages=Q)

    srv.script(Reply("Paris"))
    assert not (await ask()).cache_hit
    assert (await ask()).cache_hit
    assert _chat_calls(srv) == 1


def test_the_cache_survives_a_new_process_configuration(
    cached: Any, srv: LoopbackServer, zoo: af.ModelZoo
) -> None:
    srv.script(Reply("Paris"))
    cached()
    from agentflow.pipeline import cache as cache_stage

    cache_stage.reset_stores()  # as a new process would: only the disk remembers
    af.configure(zoo=zoo)
    assert cached().cache_hit
    assert _chat_calls(srv) == 1


# -- what the key holds ------------------------------------------------------------------


class City(BaseModel):
    name: str


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a city up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize(
    "change",
    [
        {"tools": TOOLS},
        {"tool_choice": "none", "tools": TOOLS},
        {"response_format": {"type": "json_object"}},
        {"temperature": 0},
        {"seed": 7},
        {"max_tokens": 5},
    ],
    ids=["tools", "tool_choice", "response_format", "temperature", "seed", "max_tokens"],
)
def test_the_key_changes_with_the_request(
    cached: Any, srv: LoopbackServer, change: dict[str, Any]
) -> None:
    srv.default = Reply('{"name": "Paris"}')
    cached()
    assert not cached(**change).cache_hit
    assert cached(**change).cache_hit
    assert _chat_calls(srv) == 2


def test_pydantic_response_format_is_parsed_again_on_a_hit(
    cached: Any, srv: LoopbackServer
) -> None:
    srv.script(Reply(json={"name": "Paris"}))
    cached(response_format=City)
    hit = cached(response_format=City)
    assert hit.cache_hit
    assert hit.parsed == City(name="Paris")


def test_the_step_is_part_of_the_key(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.step(tier="small", cache="exact")
    def one() -> af.Completion:
        return af.complete(messages=Q)

    @af.step(tier="small", cache="exact")
    def two() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris")
    one()
    assert not two().cache_hit
    assert one().cache_hit


def test_an_unserialisable_request_part_is_a_clear_error(cached: Any, srv: LoopbackServer) -> None:
    with pytest.raises(af.CacheKeyError, match=r"messages\[1\]"):
        cached(messages=[Q[0], {"role": "user", "content": object()}])
    assert _chat_calls(srv) == 0


# -- tenants never share -----------------------------------------------------------------


def test_tenants_never_share_answers(cached: Any, srv: LoopbackServer) -> None:
    srv.default = Reply("Paris")
    with af.run("a", user_id="alice"):
        cached()
    with af.run("b", user_id="bob"):
        assert not cached().cache_hit
    with af.run("a2", user_id="alice"):
        assert cached().cache_hit
    with af.run("anon"):
        assert not cached().cache_hit
    assert _chat_calls(srv) == 3


def test_global_and_explicit_scopes(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.step(tier="small", cache=af.CachePolicy(scope="global"))
    def shared() -> af.Completion:
        return af.complete(messages=Q)

    @af.step(tier="small", cache=af.CachePolicy(scope=lambda run: run.metadata["org"]))
    def per_org() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris")
    with af.run("a", user_id="alice", metadata={"org": "acme"}):
        shared()
        per_org()
    with af.run("b", user_id="bob", metadata={"org": "acme"}):
        assert shared().cache_hit
        assert per_org().cache_hit
    with af.run("c", user_id="carol", metadata={"org": "globex"}):
        assert not per_org().cache_hit


# -- never cached --------------------------------------------------------------------------


def test_errors_are_never_cached(cached: Any, srv: LoopbackServer) -> None:
    srv.script(Fault.status(400, body="bad request"), Reply("Paris"), Reply("Lyon"))
    with pytest.raises(af.CallError):
        cached()
    assert cached().text == "Paris"
    assert cached().cache_hit


def test_sampled_calls_are_not_cached_unless_the_step_opts_in(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.step(tier="small", cache="exact")
    def strict() -> af.Completion:
        return af.complete(messages=Q, temperature=0.7)

    @af.step(tier="small", cache=af.CachePolicy(allow_sampled=True))
    def relaxed() -> af.Completion:
        return af.complete(messages=Q, temperature=0.7)

    srv.default = Reply("Paris")
    strict()
    assert not strict().cache_hit
    relaxed()
    assert relaxed().cache_hit
    assert _chat_calls(srv) == 3


def test_tool_calls_are_not_cached_unless_the_step_allows(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    call = Reply(tool_calls=[{"name": "lookup", "arguments": {"q": "France"}}])

    @af.step(tier="small", cache="exact")
    def strict() -> af.Completion:
        return af.complete(messages=Q, tools=TOOLS)

    @af.step(tier="small", cache=af.CachePolicy(allow_tool_calls=True))
    def relaxed() -> af.Completion:
        return af.complete(messages=Q, tools=TOOLS)

    srv.default = call
    assert strict().tool_calls
    assert not strict().cache_hit
    relaxed()
    hit = relaxed()
    assert hit.cache_hit
    assert hit.tool_calls[0]["function"]["name"] == "lookup"


def test_unconfident_answers_are_not_stored(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.step(
        tier="small",
        cache="exact",
        escalate=af.Escalate(min_confidence=0.9, scorer=lambda c: 0.1),
    )
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris")
    first = ask()
    assert first.confident is False
    assert not ask().cache_hit


# -- per-call switches and TTL --------------------------------------------------------------


def test_bypass_refresh_and_litellm_style_switches(cached: Any, srv: LoopbackServer) -> None:
    srv.script(Reply("Paris"), Reply("Paris!"), Reply("Paris?"), Reply("Paris."))
    cached()
    assert cached(cache="bypass").text == "Paris!"  # neither reads nor writes
    assert cached().text == "Paris"
    assert cached(cache="refresh").text == "Paris?"  # skips the read, stores the answer
    assert cached().text == "Paris?"
    assert cached(cache={"no-cache": True, "no-store": True}).text == "Paris."
    assert cached().text == "Paris?"
    with pytest.raises(af.ConfigError, match="unknown cache option"):
        cached(cache={"no-cahce": True})


def test_entries_expire_after_their_ttl(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.step(tier="small", cache=af.CachePolicy(ttl=0.4))
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris")
    ask()
    assert ask().cache_hit
    time.sleep(0.6)
    assert not ask().cache_hit


def test_a_call_outside_any_step_can_ask_for_the_cache(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.default = Reply("Paris")
    af.complete(messages=Q, cache="exact")
    assert af.complete(messages=Q, cache="exact").cache_hit
    assert not af.complete(messages=Q).cache_hit
    with pytest.raises(af.ConfigError, match="streamed"):
        af.complete(messages=Q, cache="exact", stream=True)


# -- faults: a broken backend never fails the call, a bad entry is never served --------------


def test_a_cache_backend_that_is_down_degrades_to_no_cache(
    srv: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[make_endpoint(srv)])]),
        retry=fast_retry,
        cache_backend="redis://127.0.0.1:1/0",  # nothing listens on port 1
    )

    @af.step(tier="small", cache="exact")
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris")
    with pytest.warns(RuntimeWarning, match="cache"):
        assert ask().text == "Paris"
    assert not ask().cache_hit
    assert _chat_calls(srv) == 2


class _DictStore:
    """A store a test can tamper with: any object with get/set is a cache backend."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()

    def close(self) -> None:
        pass


def test_an_entry_with_bad_fields_is_dropped_not_served(
    srv: LoopbackServer,
    make_endpoint: Any,
    fast_retry: af.RetryPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _DictStore()
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[make_endpoint(srv)])]),
        retry=fast_retry,
        cache_backend=store,
    )

    @af.step(tier="small", cache="exact")
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris"), Reply("Paris again"))
    ask()
    (key,) = store.data
    store.data[key] = {**store.data[key], "text": 42, "cost_usd": "lots"}
    with caplog.at_level(logging.WARNING, logger="agentflow.cache"):
        answer = ask()
    assert answer.text == "Paris again"
    assert not answer.cache_hit
    assert "bad fields" in caplog.text


# -- shared across machines: Redis ----------------------------------------------------------


@pytest.mark.integration
def test_redis_backend_shares_answers_across_processes(
    srv: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy, redis_url: str
) -> None:
    zoo = af.ModelZoo(tiers=[af.Tier("small", endpoints=[make_endpoint(srv)])])
    af.configure(zoo=zoo, retry=fast_retry, cache_backend=redis_url)

    @af.step(tier="small", cache="exact")
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris")
    with af.run("machine-1", user_id="alice"):
        ask()
    from agentflow.pipeline import cache as cache_stage

    cache_stage.reset_stores()  # a second machine: nothing in memory, only Redis
    af.configure(zoo=zoo, cache_backend=redis_url)
    with af.run("machine-2", user_id="alice"):
        assert ask().cache_hit
    with af.run("machine-2", user_id="bob"):
        assert not ask().cache_hit
    assert _chat_calls(srv) == 2


# -- semantic cache ---------------------------------------------------------------------------


def _toy_embedder(texts: list[str]) -> list[list[float]]:
    return [toy_embed(t, 64) for t in texts]


def test_semantic_cache_serves_a_paraphrase_with_its_similarity(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    @af.step(
        tier="small",
        cache=af.CachePolicy(kind="semantic", threshold=0.8, embedder=_toy_embedder),
    )
    def ask(question: str) -> af.Completion:
        return af.complete(messages=[Q[0], {"role": "user", "content": question}])

    srv.default = Reply("Paris")
    with af.run("a", user_id="alice"):
        ask("What is the capital of France?")
        hit = ask("what is the capital of france")
        miss = ask("How tall is Mount Everest in meters?")
    with af.run("b", user_id="bob"):
        other = ask("what is the capital of france")
    assert hit.cache_hit
    assert hit.cache_similarity is not None
    assert 0.8 <= hit.cache_similarity < 1.0
    assert hit.attempts[-1].endpoint == "cache:semantic"
    assert not miss.cache_hit
    assert not other.cache_hit  # another tenant never gets alice's answer
    assert _chat_calls(srv) == 3
    hit_span = next(
        s for s in spans.get_finished_spans() if (s.attributes or {}).get("agentflow.cache.hit")
    )
    assert hit_span.attributes is not None
    assert hit_span.attributes["agentflow.cache.kind"] == "semantic"
    assert hit_span.attributes["agentflow.cache.similarity"] == pytest.approx(hit.cache_similarity)


def test_semantic_cache_embeds_through_a_zoo_tier(
    srv: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier("small", endpoints=[make_endpoint(srv)]),
                af.Tier("embedder", endpoints=[make_endpoint(srv, "embed-model")]),
            ]
        ),
        retry=fast_retry,
        embedder="embedder",
    )

    @af.step(tier="small", cache=af.CachePolicy(kind="semantic", threshold=0.8))
    def ask(question: str) -> af.Completion:
        return af.complete(messages=[Q[0], {"role": "user", "content": question}])

    srv.default = Reply("Paris")
    with af.run("a", user_id="alice") as run:
        ask("What is the capital of France?")
        hit = ask("what is the capital of france")
    assert hit.cache_hit
    assert _chat_calls(srv) == 1
    assert _embedding_calls(srv) == 2
    # the embeddings are paid for and attributed like any other call
    assert run.totals.calls == 4
    assert run.totals.usage.prompt_tokens > 0


def test_semantic_cache_without_an_embedder_says_how_to_give_one(
    zoo: af.ModelZoo, srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentflow.pipeline import cache

    monkeypatch.setattr(cache, "default_embedder", lambda: None)  # no 'embed' extra

    @af.step(tier="small", cache="semantic")
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    with pytest.raises(af.ConfigError, match=r"embedder.*agentflow\[embed\]"):
        ask()


def test_semantic_cache_uses_the_local_embedder_by_default(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    """No embedder named anywhere: af.LocalEmbedder (a real model) embeds the question,
    so a paraphrase is a hit and an unrelated question is not."""

    @af.step(tier="small", cache=af.CachePolicy(kind="semantic", threshold=0.85))
    def ask(q: str) -> af.Completion:
        return af.complete(messages=[{"role": "user", "content": q}])

    srv.default = Reply("Open Settings, then Reset password.")
    first = ask("How do I reset my password?")
    again = ask("How can I reset my password?")
    other = ask("What is the capital of France?")
    assert not first.cache_hit
    assert again.cache_hit
    assert again.cache_similarity is not None
    assert again.cache_similarity >= 0.85
    assert not other.cache_hit


def test_a_failing_embedder_degrades_to_no_semantic_cache(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    def broken(texts: list[str]) -> list[list[float]]:
        raise ConnectionError("embeddings endpoint down")

    @af.step(tier="small", cache=af.CachePolicy(kind="semantic", embedder=broken))
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris")
    with pytest.warns(RuntimeWarning, match="embedder failed"):
        assert ask().text == "Paris"


def test_saved_cost_counts_every_attempt_of_an_escalated_answer(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    scores = iter([0.1, 0.95])

    @af.step(
        tier="small",
        cache="exact",
        escalate=af.Escalate(min_confidence=0.9, scorer=lambda c: next(scores)),
    )
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris?", model="small-model"), Reply("Paris", model="big-model"))
    first = ask()
    assert first.tier == "big"
    hit = ask()
    assert hit.cache_hit
    assert hit.tier == "big"
    assert hit.attempts[0].saved_usd == first.total_cost.total_usd
    assert hit.attempts[0].saved_usd > first.cost.total_usd > Decimal(0)


def test_a_global_litellm_cache_never_serves_or_stores_agentflow_calls(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    import litellm
    from litellm.caching.caching import Cache

    litellm.cache = Cache(type="local")  # an application's own litellm cache, default on
    try:
        srv.default = Reply("Paris")
        af.complete(messages=Q)
        second = af.complete(messages=Q)
    finally:
        litellm.cache = None
    # both calls reached the engine and were paid: nothing answered behind agentflow's back
    assert _chat_calls(srv) == 2
    assert second.cost.total_usd > 0


def test_the_semantic_guard_refuses_a_hit_that_differs_in_its_numbers(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    """Embeddings see "invoice 1042" and "invoice 1043" as the same question; the guard
    (numbers and negation by default) makes the second a miss; a paraphrase still hits."""

    @af.step(tier="small", cache=af.CachePolicy(kind="semantic", threshold=0.8))
    def ask(q: str) -> af.Completion:
        return af.complete(messages=[{"role": "user", "content": q}])

    srv.default = Reply("It is paid.")
    first = ask("Is invoice 1042 paid?")
    other_number = ask("Is invoice 1043 paid?")
    negated = ask("Is invoice 1042 not paid?")
    paraphrase = ask("Has invoice 1042 been paid?")
    assert not first.cache_hit
    assert not other_number.cache_hit
    assert not negated.cache_hit
    assert paraphrase.cache_hit


def test_the_guard_can_be_turned_off(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.step(tier="small", cache=af.CachePolicy(kind="semantic", threshold=0.8, guard=None))
    def ask(q: str) -> af.Completion:
        return af.complete(messages=[{"role": "user", "content": q}])

    srv.default = Reply("It is paid.")
    ask("Is invoice 1042 paid?")
    assert ask("Is invoice 1043 paid?").cache_hit  # the wrong hit the guard prevents


def test_a_bad_guard_is_a_config_error() -> None:
    with pytest.raises(af.ConfigError, match="guard"):
        af.CachePolicy(kind="semantic", guard="strict")
