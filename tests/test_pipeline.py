"""The call pipeline over real HTTP: usage and cost, retries, failover, budgets, response
formats, tool calls and escalation, each against a scripted loopback server."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

import agentflow as af
from agentflow.pipeline.layout import prefix_key
from agentflow.pipeline.route import rendezvous
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import Budget, BudgetExceeded, Cost, TokenPricing, Usage

Q = [{"role": "user", "content": "What is the capital of France?"}]


def _requests(srv: LoopbackServer) -> list[Any]:
    return [r for r in srv.requests if r.path.endswith("/chat/completions")]


# -- usage and cost --------------------------------------------------------------------


def test_scripted_usage_and_cached_tokens_flow_into_usage_and_cost(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("Paris", prompt_tokens=1234, cached_tokens=1000, completion_tokens=56))
    c = af.complete(messages=Q)

    assert c.text == "Paris"
    assert (c.message["role"], c.message["content"]) == ("assistant", "Paris")
    assert (c.tier, c.model, c.finish_reason) == ("small", "small-model", "stop")
    assert c.endpoint == f"openai/small-model@{srv.base_url}"
    assert c.usage == Usage(prompt_tokens=1234, cached_prompt_tokens=1000, completion_tokens=56)
    # SMALL_PRICE: $1 / $0.50 (cached) / $2 per million tokens, by hand:
    #   234 uncached * 1 = 234e-6; 1000 cached * 0.5 = 500e-6; 56 out * 2 = 112e-6
    assert c.cost == Cost(
        input_usd=Decimal("0.000234"),
        cached_input_usd=Decimal("0.0005"),
        output_usd=Decimal("0.000112"),
    )
    assert c.cost.total_usd == Decimal("0.000846")
    assert isinstance(c.cost.total_usd, Decimal)
    (attempt,) = c.attempts
    assert attempt.ok
    assert attempt.error is None
    assert attempt.usage == c.usage
    assert attempt.cost == c.cost
    assert attempt.cached_tokens_reported is True
    assert attempt.latency_s > 0
    assert c.raw is not None
    assert c.total_cost == c.cost


def test_unreported_cached_tokens_are_priced_as_uncached(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("Paris", prompt_tokens=1000, completion_tokens=10))  # no details field
    c = af.complete(messages=Q)
    assert c.usage == Usage(1000, 0, 10)
    assert c.cost.total_usd == Decimal("0.00102")
    assert c.attempts[0].cached_tokens_reported is False


def test_cached_price_defaults_to_the_input_price(
    srv: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    pricing = TokenPricing(input_per_mtok=3, output_per_mtok=6)  # no cached price given
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("t", endpoints=[make_endpoint(srv, pricing=pricing)])]),
        retry=fast_retry,
    )
    srv.script(Reply("x", prompt_tokens=100, cached_tokens=60, completion_tokens=1))
    c = af.complete(messages=Q)
    assert c.cost == Cost(Decimal("0.00012"), Decimal("0.00018"), Decimal("0.000006"))


def test_request_carries_the_callers_parameters(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    af.complete(messages=Q, temperature=0.2, max_tokens=17, seed=3)
    body = _requests(srv)[-1].body
    assert body["model"] == "small-model"
    assert body["messages"] == Q
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 17, 3)


# -- retries -----------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_after_waiting(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Fault.status(429, retry_after=0.4), Reply("ok"))
    c = af.complete(messages=Q)

    assert c.text == "ok"
    first, second = _requests(srv)
    assert second.time - first.time >= 0.4  # Retry-After honoured (backoff alone is <= 0.05)
    assert [a.ok for a in c.attempts] == [False, True]
    failed = c.attempts[0]
    assert failed.status_code == 429
    assert failed.error is not None
    assert "RateLimit" in failed.error
    assert failed.usage == Usage()
    assert failed.cost.total_usd == 0
    assert [a.number for a in c.attempts] == [1, 2]


def test_500_is_retried(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.status(500), Fault.status(503), Reply("ok"))
    c = af.complete(messages=Q)
    assert c.text == "ok"
    assert len(_requests(srv)) == 3 == len(c.attempts)  # no hidden client retries
    assert [(a.ok, a.status_code) for a in c.attempts] == [(False, 500), (False, 503), (True, None)]


async def test_500_is_retried_async(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.status(502), Reply("ok"))
    c = await af.acomplete(messages=Q)
    assert c.text == "ok"
    assert [a.ok for a in c.attempts] == [False, True]
    assert len(_requests(srv)) == 2


def test_retries_are_bounded_and_every_attempt_is_reported(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.default = Fault.status(500)
    with pytest.raises(af.CallError) as info:
        af.complete(messages=Q)
    err = info.value
    assert len(err.attempts) == 3  # RetryPolicy.max_attempts
    assert len(_requests(srv)) == 3
    assert all(not a.ok and a.status_code == 500 for a in err.attempts)
    assert "'small'" in str(err)


def test_malformed_json_is_retried(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.malformed_json(), Reply("ok"))
    c = af.complete(messages=Q)
    assert c.text == "ok"
    assert [a.ok for a in c.attempts] == [False, True]
    assert len(_requests(srv)) == 2


def test_connection_reset_is_retried(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.reset(), Reply("ok"))
    c = af.complete(messages=Q)
    assert c.text == "ok"
    assert [a.ok for a in c.attempts] == [False, True]
    assert len(_requests(srv)) == 2


def test_400_is_not_retried(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.status(400, body="messages[0].content is too long"), Reply("never"))
    with pytest.raises(af.CallError) as info:
        af.complete(messages=Q)
    err = info.value
    assert len(err.attempts) == 1
    assert err.attempts[0].status_code == 400
    assert len(_requests(srv)) == 1
    assert srv.pending == 1
    assert "fix the request" in str(err)
    assert isinstance(err, af.AgentflowError)


# -- failover ------------------------------------------------------------------------------


@pytest.fixture
def second() -> Iterator[LoopbackServer]:
    with LoopbackServer(name="secondary") as server:
        yield server


def _replicas(
    make_endpoint: Any, a: LoopbackServer, b: LoopbackServer, **kw: Any
) -> tuple[list[af.Endpoint], LoopbackServer, LoopbackServer]:
    """Two replicas of one model, and (primary, secondary) servers in the order the router
    tries them for ``Q``."""
    eps = [make_endpoint(a, "m", **kw), make_endpoint(b, "m", **kw)]
    first = rendezvous(prefix_key(Q), eps)[0]
    primary, secondary = (a, b) if first is eps[0] else (b, a)
    return eps, primary, secondary


def test_hang_past_the_timeout_fails_over_at_once(
    srv: LoopbackServer, second: LoopbackServer, make_endpoint: Any
) -> None:
    eps, primary, secondary = _replicas(make_endpoint, srv, second, timeout=0.5)
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=eps)]),
        retry=af.RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.05),
    )
    primary.default = Fault.hang(3)
    secondary.script(Reply("from the secondary"))

    c = af.complete(messages=Q)

    assert c.text == "from the secondary"
    assert c.endpoint == f"openai/m@{secondary.base_url}"
    # a timeout puts the replica in a cooldown (replica health): the call fails over at
    # once instead of waiting out a second timeout on it
    assert [(a.ok, a.endpoint) for a in c.attempts] == [
        (False, f"openai/m@{primary.base_url}"),
        (True, f"openai/m@{secondary.base_url}"),
    ]
    failed = c.attempts[0]
    assert failed.error is not None
    assert "Timeout" in failed.error
    assert 0.4 < failed.latency_s < 2.0
    assert len(_requests(primary)) == 1


def test_failover_across_replicas_when_one_is_dead(
    srv: LoopbackServer, second: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    eps, primary, secondary = _replicas(make_endpoint, srv, second)
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=eps)]), retry=fast_retry)
    primary.stop()  # the replica is down: connection refused
    secondary.script(Reply("alive"))

    c = af.complete(messages=Q)

    assert c.text == "alive"
    assert c.attempts[-1].ok
    assert c.attempts[-1].endpoint == f"openai/m@{secondary.base_url}"
    dead = c.attempts[:-1]
    assert 1 <= len(dead) <= 3
    assert all(not a.ok and a.endpoint == f"openai/m@{primary.base_url}" for a in dead)


def test_failover_to_the_fallback_tier(
    srv: LoopbackServer, second: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier("small", endpoints=[make_endpoint(srv, "small-model")], fallback="big"),
                af.Tier("big", endpoints=[make_endpoint(second, "big-model")]),
            ]
        ),
        retry=fast_retry,
    )
    srv.stop()
    second.script(Reply("from big", prompt_tokens=10, completion_tokens=1))
    with af.run("fallback") as run:
        c = af.complete(messages=Q)

    assert c.text == "from big"
    assert c.tier == "big"
    assert c.attempts[-1].tier == "big"
    assert c.attempts[-1].ok
    assert {a.tier for a in c.attempts[:-1]} == {"small"}
    assert not any(a.ok for a in c.attempts[:-1])
    assert _requests(second)[-1].body["model"] == "big-model"
    assert run.totals.calls == len(c.attempts)
    assert run.totals.errors == len(c.attempts) - 1


def test_auth_error_fails_over_without_retrying(
    srv: LoopbackServer, second: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    eps, primary, secondary = _replicas(make_endpoint, srv, second)
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=eps)]), retry=fast_retry)
    primary.script(Fault.status(401))
    secondary.script(Reply("ok"))
    c = af.complete(messages=Q)
    assert [a.ok for a in c.attempts] == [False, True]
    assert c.attempts[0].status_code == 401
    assert len(_requests(primary)) == 1


# -- budgets -------------------------------------------------------------------------------


def test_run_budget_caps_max_tokens_sent(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.default = Reply("ok", completion_tokens=1)
    with af.run("capped", budget=Budget(max_usd=Decimal("0.0001"))):
        af.complete(messages=Q, max_tokens=5)
        assert _requests(srv)[-1].body["max_tokens"] == 5  # the caller's own cap fits
        af.complete(messages=Q, max_tokens=10_000)
        capped = _requests(srv)[-1].body["max_tokens"]
        af.complete(messages=Q)  # no max_tokens asked: the budget sets one
        unasked = _requests(srv)[-1].body["max_tokens"]

    for sent in (capped, unasked):
        # $0.0001 at $2 per million output tokens pays for 50 tokens, less the prompt
        assert 0 < sent < 50
        assert Decimal(sent) * Decimal("0.000002") <= Decimal("0.0001")


def test_token_budgets_of_run_and_step_cap_max_tokens(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.plan(budget=Budget(max_output_tokens=5))
    def short() -> None:
        af.complete(messages=Q, max_tokens=100)

    srv.default = Reply("ok", completion_tokens=1)
    with af.run("tokens", budget=Budget(max_output_tokens=7)):
        af.complete(messages=Q, max_tokens=100)
        assert _requests(srv)[-1].body["max_tokens"] == 7
        short()  # 6 left in the run, 5 in the step
        assert _requests(srv)[-1].body["max_tokens"] == 5


def test_a_call_that_cannot_fit_raises_and_never_reaches_the_server(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    with (
        af.run("tight", budget=Budget(max_usd=Decimal("0.000001"))) as run,
        pytest.raises(BudgetExceeded) as info,
    ):
        af.complete(messages=Q)

    err = info.value
    assert isinstance(err, af.BudgetExceededError)
    assert isinstance(err, af.AgentflowError)
    assert "tight" in err.budget
    assert err.limit == "max_usd"
    msg = str(err)
    assert "tight" in msg
    assert "max_usd" in msg
    assert str(err.asked) in msg
    assert str(err.remaining) in msg
    assert "0.000001" in str(err.remaining)
    assert _requests(srv) == []
    assert run.ledger is not None
    assert run.ledger.spent().usd == 0
    assert run.totals.calls == 0


def test_max_calls_budget(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    with af.run("calls", budget=Budget(max_calls=1)):
        af.complete(messages=Q)
        with pytest.raises(af.BudgetExceededError) as info:
            af.complete(messages=Q)
    assert info.value.limit == "max_calls"
    assert len(_requests(srv)) == 1


def test_ledger_settles_the_actual_cost(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("ok", prompt_tokens=20, completion_tokens=3))
    with af.run("settle", budget=Budget(max_usd=1)) as run:
        c = af.complete(messages=Q, max_tokens=500)
    assert run.ledger is not None
    spent = run.ledger.spent()
    assert spent.usd == c.cost.total_usd == Decimal("0.000026")
    assert (spent.input_tokens, spent.output_tokens, spent.calls) == (20, 3, 1)


def test_failed_attempts_are_refunded(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Fault.status(500), Reply("ok", prompt_tokens=20, completion_tokens=3))
    with af.run("refund", budget=Budget(max_usd=1)) as run:
        c = af.complete(messages=Q)
        assert run.ledger is not None
        assert run.ledger.spent().usd == c.cost.total_usd  # only the answer is paid for
        assert run.ledger.spent().calls == 1

        srv.script(Fault.status(400))
        before = run.ledger.spent()
        with pytest.raises(af.CallError):
            af.complete(messages=Q)
        assert run.ledger.spent() == before  # a refused call costs nothing
        assert run.ledger.remaining().usd == Decimal(1) - before.usd  # nothing still held


# -- what comes back -------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def test_tool_calls_come_back_unchanged(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(
        Reply(
            tool_calls=[
                {"id": "call_abc", "name": "search", "arguments": {"q": "Paris"}},
                {"id": "call_def", "name": "search", "arguments": '{"q": "Lyon"}'},
            ]
        )
    )
    c = af.complete(messages=Q, tools=TOOLS, tool_choice="auto")

    wire_calls = [
        {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "search", "arguments": json.dumps({"q": "Paris"})},
        },
        {
            "id": "call_def",
            "type": "function",
            "function": {"name": "search", "arguments": '{"q": "Lyon"}'},
        },
    ]
    assert _requests(srv)[-1].body["tools"] == TOOLS
    assert c.finish_reason == "tool_calls"
    assert c.tool_calls == wire_calls
    # the assistant message as the engine sent it, ready to append to the conversation
    assert c.message == {"role": "assistant", "content": None, "tool_calls": wire_calls}


def test_tool_call_message_round_trips_to_the_engine(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(tool_calls=[{"id": "call_abc", "name": "search", "arguments": {"q": "x"}}]))
    c = af.complete(messages=Q, tools=TOOLS)
    follow_up = [*Q, c.message, {"role": "tool", "tool_call_id": "call_abc", "content": "42"}]
    af.complete(messages=follow_up, tools=TOOLS)

    sent = _requests(srv)[-1].body["messages"][1]
    assert sent["role"] == "assistant"
    assert sent["tool_calls"] == c.tool_calls
    # nothing but OpenAI's own message fields goes back to the engine
    assert set(sent) <= {"role", "content", "tool_calls", "name", "refusal"}, sent


class City(BaseModel):
    city: str
    population: int


def test_pydantic_response_format_gives_parsed(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(json={"city": "Paris", "population": 2_100_000}))
    c = af.complete(messages=Q, response_format=City)
    assert c.parsed == City(city="Paris", population=2_100_000)
    sent = _requests(srv)[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert set(sent["json_schema"]["schema"]["properties"]) == {"city", "population"}


def test_a_reply_that_does_not_validate_raises(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(json={"city": 3}, prompt_tokens=10, completion_tokens=4))
    with af.run("invalid") as run, pytest.raises(af.ResponseValidationError) as info:
        af.complete(messages=Q, response_format=City)
    err = info.value
    assert isinstance(err, af.AgentflowError)
    assert "City" in str(err)
    assert json.loads(err.text) == {"city": 3}
    # the engine answered, so the call was paid for and is on the run's books
    assert run.totals.calls == 1
    assert run.cost.total_usd == Decimal("0.000018")


async def test_pydantic_response_format_async(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(json={"city": "Lyon", "population": 5}))
    c = await af.acomplete(messages=Q, response_format=City)
    assert c.parsed == City(city="Lyon", population=5)


# -- escalation ------------------------------------------------------------------------------


def test_low_logprob_confidence_escalates_to_the_next_tier(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.8))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(
        Reply("maybe Lyon", logprobs=[-2.0, -1.0], prompt_tokens=10, completion_tokens=2),
        model="small-model",
    )
    srv.script(
        Reply("Paris surely", logprobs=[-0.01, -0.03], prompt_tokens=10, completion_tokens=2),
        model="big-model",
    )
    with af.run("escalate") as run:
        c = answer()

    assert c.text == "Paris surely"
    assert c.tier == "big"
    assert c.confident is True
    assert c.confidence == pytest.approx(math.exp(-0.02))
    assert [(a.tier, a.escalation_level, a.ok) for a in c.attempts] == [
        ("small", 0, True),
        ("big", 1, True),
    ]
    assert c.attempts[0].confidence == pytest.approx(math.exp(-1.5))
    assert c.attempts[1].confidence == pytest.approx(math.exp(-0.02))
    reqs = _requests(srv)
    assert [r.body["model"] for r in reqs] == ["small-model", "big-model"]
    assert all(r.body.get("logprobs") is True for r in reqs)  # the scorer needs them
    # both answers were paid for: small 10*1 + 2*2, big 10*10 + 2*20 (per million)
    assert c.total_cost.total_usd == Decimal("0.000154")
    assert run.cost.total_usd == Decimal("0.000154")


def test_confident_first_answer_does_not_escalate(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.8))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris", logprobs=[-0.01]))
    c = answer()
    assert c.tier == "small"
    assert c.confident is True
    assert len(c.attempts) == 1
    assert len(_requests(srv)) == 1


def test_unconfident_everywhere_returns_the_best_or_raises(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.99))
    def best() -> af.Completion:
        return af.complete(messages=Q)

    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.99, on_unconfident="raise"))
    def strict() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("a b", logprobs=[-0.5, -0.5]), model="small-model")
    srv.script(Reply("c d", logprobs=[-0.1, -0.1]), model="big-model")
    c = best()
    assert c.text == "c d"
    assert c.confident is False
    assert len(c.attempts) == 2

    srv.script(Reply("a b", logprobs=[-0.5, -0.5]), model="small-model")
    srv.script(Reply("c d", logprobs=[-0.1, -0.1]), model="big-model")
    with pytest.raises(af.CallError, match="confidence") as info:
        strict()
    assert len(info.value.attempts) == 2


def test_escalation_never_spends_past_the_budget(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.8))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("unsure", logprobs=[-3.0], completion_tokens=1), model="small-model")
    # enough for the small tier, not for the big tier's prompt (ten times the price)
    with af.run("poor", budget=Budget(max_usd=Decimal("0.00008"))):
        c = answer()
    assert c.tier == "small"
    assert c.confident is False
    assert [r.body["model"] for r in _requests(srv)] == ["small-model"]


def test_verifier_function_scorer(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    seen: list[str] = []

    def mentions_paris(c: af.Completion) -> bool:
        seen.append(c.text)
        return "Paris" in c.text

    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.5, scorer=mentions_paris))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Lyon"), model="small-model")
    srv.script(Reply("Paris"), model="big-model")
    c = answer()
    assert seen == ["Lyon", "Paris"]
    assert c.text == "Paris"
    assert c.tier == "big"
    assert [a.confidence for a in c.attempts] == [0.0, 1.0]
    # a function scorer does not need logprobs
    assert all("logprobs" not in r.body for r in _requests(srv))


def test_async_verifier_scorer_from_a_sync_step(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    async def score(c: af.Completion) -> float:
        return 0.9 if "Paris" in c.text else 0.1

    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.5, scorer=score))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Lyon"), model="small-model")
    srv.script(Reply("Paris"), model="big-model")
    c = answer()
    assert c.tier == "big"
    assert [a.confidence for a in c.attempts] == [0.1, 0.9]


async def test_async_verifier_scorer_from_an_async_step(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    async def score(c: af.Completion) -> float:
        return 0.9 if "Paris" in c.text else 0.1

    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.5, scorer=score))
    async def answer() -> af.Completion:
        return await af.acomplete(messages=Q)

    srv.script(Reply("Paris"), model="small-model")
    c = await answer()
    assert c.tier == "small"
    assert c.confidence == 0.9
    assert len(_requests(srv)) == 1


def test_a_scorer_returning_nonsense_is_a_clear_error(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.verify(tier="small", escalate=af.Escalate(scorer=lambda c: 7))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    with pytest.raises(af.ConfigError, match="bool or a float"):
        answer()


def test_retry_after_is_capped_by_max_retry_after(srv: LoopbackServer, make_endpoint: Any) -> None:
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[make_endpoint(srv)])]),
        retry=af.RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.2),
    )
    srv.script(Fault.status(429, retry_after=30), Reply("ok"))
    c = af.complete(messages=Q)
    first, second = _requests(srv)
    assert 0.2 <= second.time - first.time < 5
    assert [a.ok for a in c.attempts] == [False, True]


def test_total_retry_time_is_bounded(srv: LoopbackServer, make_endpoint: Any) -> None:
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[make_endpoint(srv)])]),
        retry=af.RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_time=1.0),
    )
    srv.script(Fault.status(429, retry_after=5), Reply("too late"))
    with pytest.raises(af.CallError) as info:
        af.complete(messages=Q)
    # waiting 5 s would break the 1 s bound: give up instead of sleeping
    assert len(info.value.attempts) == 1
    assert len(_requests(srv)) == 1


async def test_async_failover_when_a_replica_is_dead(
    srv: LoopbackServer, second: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    eps, primary, secondary = _replicas(make_endpoint, srv, second)
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=eps)]), retry=fast_retry)
    primary.stop()
    secondary.script(Reply("alive"))
    c = await af.acomplete(messages=Q)
    assert c.text == "alive"
    assert c.attempts[-1].ok
    assert not any(a.ok for a in c.attempts[:-1])


def test_one_prefix_sticks_to_one_replica(
    srv: LoopbackServer, second: LoopbackServer, make_endpoint: Any, fast_retry: af.RetryPolicy
) -> None:
    eps = [make_endpoint(srv, "m"), make_endpoint(second, "m")]
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=eps)]), retry=fast_retry)
    system = {"role": "system", "content": "You are a careful research assistant. " * 20}
    for i in range(6):
        af.complete(messages=[system, {"role": "user", "content": f"question {i}"}])
    # the shared prefix lands on one replica, whose KV cache then holds it
    assert sorted([len(_requests(srv)), len(_requests(second))]) == [0, 6]


def test_escalation_stops_at_up_to(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.9, up_to="small"))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("unsure", logprobs=[-3.0]))
    c = answer()
    assert c.tier == "small"
    assert c.confident is False
    assert len(_requests(srv)) == 1


def test_step_budget_refusal_names_the_step(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.tool(name="lookup", budget=Budget(max_calls=1))
    def lookup() -> None:
        af.complete(messages=Q)
        af.complete(messages=Q)

    with pytest.raises(BudgetExceeded) as info:
        lookup()
    assert "lookup" in info.value.budget
    assert info.value.limit == "max_calls"
    assert len(_requests(srv)) == 1
