"""af.complete end to end against real llama-server replicas: usage, cached tokens,
logprobs, GPU-hour cost, prefix affinity, streaming and the step/run accounting."""

from __future__ import annotations

from decimal import Decimal

import pytest

import agentflow as af
from budgets import Budget, Usage

pytestmark = pytest.mark.integration

LONG_SYSTEM = "You are a terse assistant for cost engineering. " + " ".join(
    f"Rule {i}: answer with a short sentence and never repeat the question." for i in range(60)
)


@pytest.fixture
def zoo(replica_zoo: af.ModelZoo) -> af.ModelZoo:
    return replica_zoo


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": question}]


def test_chat_logprobs_usage_and_gpu_hour_cost(zoo: af.ModelZoo) -> None:
    c = af.complete(_messages("What is a GPU-hour?"), max_tokens=12, logprobs=True, temperature=0.0)
    assert c.text.strip()
    assert c.logprobs
    assert all(lp <= 0.0 for lp in c.logprobs)
    assert c.usage.prompt_tokens > 300  # the long system prompt, counted by the engine
    assert 0 < c.usage.completion_tokens <= 12
    pricing = zoo.tier("specialist").endpoints[0].pricing
    assert pricing is not None
    assert c.cost == pricing.cost(c.usage)
    assert c.cost.total_usd > Decimal(0)
    assert len(c.attempts) == 1
    assert c.attempts[0].ok


def test_same_prefix_lands_on_one_replica_and_hits_its_cache(zoo: af.ModelZoo) -> None:
    with af.run("prefix", budget=Budget(max_usd=1)) as run:
        first = af.complete(_messages("Name one cache."), max_tokens=8, temperature=0.0)
        second = af.complete(_messages("Name one GPU."), max_tokens=8, temperature=0.0)
    assert first.endpoint == second.endpoint  # prefix affinity pins the replica
    assert second.attempts[-1].cached_tokens_reported
    assert second.usage.cached_prompt_tokens > 300
    # cached tokens skip prefill: with GpuHourPricing they cost nothing
    assert second.cost.input_usd < first.cost.input_usd
    assert run.usage == first.usage + second.usage
    assert run.cost.total_usd == first.cost.total_usd + second.cost.total_usd


def test_stream_settles_with_engine_usage(zoo: af.ModelZoo) -> None:
    stream = af.complete(_messages("Count to three."), max_tokens=10, stream=True)
    chunks = list(stream)
    assert chunks
    c = stream.completion
    assert c is not None
    assert c.text == stream.text
    assert c.attempts[-1].cached_tokens_reported  # usage came from the engine's final chunk
    assert c.usage.completion_tokens > 0
    assert c.attempts[-1].ttft_s is not None


def test_decorated_steps_account_to_run(zoo: af.ModelZoo) -> None:
    @af.plan(tier="specialist")
    def plan(q: str) -> str:
        return af.complete(_messages(q), max_tokens=8).text

    @af.verify(tier="specialist")
    async def check(q: str) -> str:
        return (await af.acomplete(_messages(q), max_tokens=4)).text

    import asyncio

    with af.run("steps") as run:
        plan("Plan a cheap agent.")
        asyncio.run(check("Is it cheap?"))
    assert set(run.steps) == {"plan", "check"}
    assert run.totals.calls == 2
    assert sum((s.usage for s in run.steps.values()), Usage()) == run.usage
