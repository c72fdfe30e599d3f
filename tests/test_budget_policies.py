"""Budget policies in the pipeline: per-tenant windowed budgets across runs, and a step's
``on_budget`` when a call cannot fit: raise, downgrade to a cheaper tier, trim history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

import agentflow as af
from agentflow._config import reset
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget, BudgetExceeded, TokenPricing

CHEAP = TokenPricing(input_per_mtok=1, output_per_mtok=2)
DEAR = TokenPricing(input_per_mtok=1000, output_per_mtok=2000)


@pytest.fixture
def two_tiers() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    with LoopbackServer(name="small") as small, LoopbackServer(name="big") as big:
        af.configure(
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "small",
                        endpoints=[
                            af.Endpoint(model="openai/s", api_base=small.base_url, pricing=CHEAP)
                        ],
                    ),
                    af.Tier(
                        "big",
                        endpoints=[
                            af.Endpoint(model="openai/b", api_base=big.base_url, pricing=DEAR)
                        ],
                    ),
                ]
            ),
            tenant_budget=Budget(max_calls=3, window=timedelta(days=1)),
        )
        yield small, big
        reset()


def _chat(srv: LoopbackServer) -> int:
    return sum(1 for r in srv.requests if r.path.endswith("/chat/completions"))


def test_tenant_budget_spans_runs_and_isolates_tenants(
    two_tiers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_tiers
    q = [{"role": "user", "content": "hi"}]
    with af.run("a1", user_id="alice") as r1:
        af.complete(q)
        af.complete(q)
    with af.run("a2", user_id="alice") as r2:
        af.complete(q)
        with pytest.raises(BudgetExceeded) as info:
            af.complete(q)  # alice's 4th call today
    assert "tenant 'alice' budget" in str(info.value)
    assert info.value.limit == "max_calls"
    with af.run("b1", user_id="bob"):
        af.complete(q)  # bob has his own budget
    assert _chat(small) == 4
    assert r1.totals.calls == 2
    assert r2.totals.calls == 1
    assert "tenant 'alice' budget max_calls: spent 3 of 3" in r2.report()


def test_downgrade_answers_on_a_cheaper_tier_that_fits(
    two_tiers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, big = two_tiers
    small.default = Reply("cheap answer", prompt_tokens=10, completion_tokens=2)

    @af.step(tier="big", budget=Budget(max_usd=0.001), on_budget="downgrade")
    def ask() -> af.Completion:
        return af.complete([{"role": "user", "content": "a question " * 20}], max_tokens=50)

    c = ask()
    assert c.tier == "small"
    assert c.text == "cheap answer"
    assert _chat(big) == 0  # the dear tier was never called


def test_raise_is_the_default_and_nothing_is_sent(
    two_tiers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    _, big = two_tiers

    @af.step(tier="big", budget=Budget(max_usd=0.001))
    def ask() -> af.Completion:
        return af.complete([{"role": "user", "content": "a question " * 20}], max_tokens=50)

    with pytest.raises(af.BudgetExceededError) as info:
        ask()
    assert "step 'ask' budget" in str(info.value)
    assert _chat(big) == 0


def test_trim_drops_the_oldest_turns_until_the_prompt_fits(
    two_tiers: tuple[LoopbackServer, LoopbackServer],
) -> None:
    small, _ = two_tiers
    history = [{"role": "system", "content": "be brief"}]
    for i in range(6):
        history += [
            {"role": "user", "content": f"old question {i} " + "padding " * 40},
            {"role": "assistant", "content": f"old answer {i} " + "padding " * 40},
        ]
    history.append({"role": "user", "content": "the question now"})

    @af.step(tier="small", budget=Budget(max_input_tokens=200), on_budget="trim")
    def ask() -> af.Completion:
        return af.complete(history, max_tokens=5)

    c = ask()
    sent = next(r for r in small.requests if r.path.endswith("/chat/completions")).body
    assert sent is not None
    roles = [m["role"] for m in sent["messages"]]
    assert roles[0] == "system"  # the system prompt is kept
    assert sent["messages"][-1]["content"] == "the question now"  # and the question
    assert len(sent["messages"]) < len(history)
    assert c.usage.prompt_tokens <= 200
