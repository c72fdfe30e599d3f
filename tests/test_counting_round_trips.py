"""A budgeted call to a self-hosted engine need not pay a second HTTP request each time.

``counting="engine"`` (the default) asks the engine's ``/tokenize`` for an exact count,
once per distinct prompt: a prompt counted before (a retry, another replica, a repeated
request) is not asked again. ``counting="local"`` never asks: it counts offline and
scales the hold by how much larger the engine has been counting (learned from the
replies), so concurrent calls still overspend by at most one call's worth.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import agentflow as af
from agentflow.pipeline.budget import count_ratio_for, counter_for
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget, TokenPricing, Usage

PRICE = TokenPricing(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))
OUTPUT = 20


def _counting_requests(srv: LoopbackServer) -> int:
    return sum(r.path in ("/tokenize", "/v1/tokenize", "/apply-template") for r in srv.requests)


def _zoo(srv: LoopbackServer, counting: str) -> af.Endpoint:
    endpoint = af.Endpoint(
        model="openai/m", api_base=srv.base_url, pricing=PRICE, counting=counting
    )
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("t", endpoints=[endpoint])]))
    return endpoint


def test_a_prompt_counted_before_is_not_asked_again() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("ok")
        _zoo(srv, "engine")
        q = [{"role": "user", "content": "What is the capital of France?"}]
        with af.run("same", budget=Budget(max_usd=1)):
            af.complete(q)
            first = _counting_requests(srv)
            for _ in range(9):
                af.complete(q)
        assert first >= 1  # the engine counted it once, exactly
        assert _counting_requests(srv) == first  # and never again


def test_local_counting_asks_the_engine_nothing() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("ok")
        _zoo(srv, "local")
        with af.run("distinct", budget=Budget(max_usd=1)) as run:
            for i in range(10):
                af.complete([{"role": "user", "content": f"Question number {i}?"}])
        assert _counting_requests(srv) == 0
    assert run.totals.calls == 10


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_local_counting_overspends_at_most_one_call(ratio: int) -> None:
    """The engine counts ``ratio`` times what we count offline; 50 concurrent calls with
    distinct prompts under a budget that pays for 10 of them at the engine's counts."""
    with LoopbackServer() as srv:
        endpoint = _zoo(srv, "local")
        prompts = [[{"role": "user", "content": f"item {i} " + "word " * 200}] for i in range(50)]
        local = counter_for(endpoint).count_messages(prompts[0])
        srv.default = Reply(
            "ok " * OUTPUT, prompt_tokens=local * ratio, completion_tokens=OUTPUT, latency=0.05
        )
        one_call = PRICE.cost(Usage(local * ratio, 0, OUTPUT)).total_usd

        async def call(messages: list[dict[str, str]]) -> int:
            try:
                await af.acomplete(messages, max_tokens=OUTPUT)
            except af.BudgetExceededError:
                return 0
            return 1

        async def all_calls() -> int:
            return sum(await asyncio.gather(*(call(p) for p in prompts)))

        with af.run("local-bound", budget=Budget(max_usd=one_call * 10)) as run:
            paid = asyncio.run(all_calls())
        assert _counting_requests(srv) == 0
    assert run.ledger is not None
    spent = run.ledger.spent().usd
    assert spent <= one_call * 11, (spent, one_call)  # at most one call past the budget
    assert paid >= 5
    assert count_ratio_for(endpoint).ratio == pytest.approx(max(ratio, 1), rel=0.05)
