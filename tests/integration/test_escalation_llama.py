"""Scorers against real llama-server replicas: the engine returns token logprobs, the
logprob scorers turn them into a confidence in (0, 1], escalation climbs on it, and a
judge's and agreement's extra calls are real calls, paid for in the run."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from decimal import Decimal

import pytest

import agentflow as af
from agentflow import scorers
from agentflow._config import reset
from agentflow.local import LlamaServer
from budgets import GpuHourPricing

pytestmark = pytest.mark.integration

CHEAP = GpuHourPricing(
    usd_per_gpu_hour=1.10, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
)
DEAR = GpuHourPricing(
    usd_per_gpu_hour=4.40, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
)
QUESTION = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture
def zoo(llama_servers: list[LlamaServer]) -> Iterator[af.ModelZoo]:
    """Two tiers on the same SmolLM2 replicas, the second priced four times higher."""
    model = "openai/" + llama_servers[0].alias

    def endpoints(pricing: GpuHourPricing) -> list[af.Endpoint]:
        return [
            af.Endpoint(model=model, api_base=s.base_url, pricing=pricing, timeout=120)
            for s in llama_servers
        ]

    zoo = af.ModelZoo(
        tiers=[
            af.Tier("small", endpoints=endpoints(CHEAP)),
            af.Tier("big", endpoints=endpoints(DEAR)),
        ]
    )
    af.configure(zoo=zoo)
    yield zoo
    reset()


def test_llama_server_logprobs_give_a_confidence_in_0_1(zoo: af.ModelZoo) -> None:
    c = af.complete(QUESTION, tier="small", max_tokens=12, temperature=0.0, logprobs=True)
    assert c.logprobs
    assert len(c.logprobs) == c.usage.completion_tokens
    assert all(lp <= 0.0 for lp in c.logprobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", scorers.MissingLogprobsWarning)
        mean, least = scorers.logprob()(c), scorers.logprob_min()(c)
    assert mean is not None
    assert least is not None
    assert 0.0 < least <= mean <= 1.0
    assert mean == pytest.approx(math.exp(sum(c.logprobs) / len(c.logprobs)))


def test_escalation_on_real_logprobs_climbs_and_pays_for_both(zoo: af.ModelZoo) -> None:
    # no real answer is certain of every token: at min_confidence=1 both tiers are tried
    @af.verify(tier="small", escalate=af.Escalate(min_confidence=1.0, scorer=scorers.logprob()))
    def answer() -> af.Completion:
        return af.complete(QUESTION, max_tokens=12, temperature=0.0)

    with af.run("escalate-llama") as run:
        c = answer()
    assert [a.tier for a in c.attempts] == ["small", "big"]
    assert c.confident is False
    for attempt in c.attempts:
        assert attempt.confidence is not None
        assert 0.0 < attempt.confidence < 1.0
    assert run.cost.total_usd == sum((a.cost.total_usd for a in c.attempts), Decimal(0))


def test_a_judge_on_a_real_model_is_a_paid_call(zoo: af.ModelZoo) -> None:
    @af.verify(
        tier="small",
        escalate=af.Escalate(min_confidence=0.0, scorer=scorers.judge(tier="big", max_tokens=4)),
    )
    def answer() -> af.Completion:
        return af.complete(QUESTION, max_tokens=12, temperature=0.0)

    with af.run("judge-llama") as run:
        c = answer()
    assert c.tier == "small"
    # a 135M model's grade may be anything, or no grade at all (None): both are fine here
    assert c.confidence is None or 0.0 <= c.confidence <= 1.0
    assert run.cost.total_usd > c.cost.total_usd  # the judge's call was paid for too


def test_agreement_resamples_a_real_model(zoo: af.ModelZoo) -> None:
    @af.verify(
        tier="small",
        escalate=af.Escalate(min_confidence=0.0, scorer=scorers.agreement(n=3, max_tokens=12)),
    )
    def answer() -> af.Completion:
        return af.complete(QUESTION, max_tokens=12, temperature=0.0)

    with af.run("agreement-llama") as run:
        c = answer()
    assert c.confidence in (pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0)
    assert run.cost.total_usd > c.cost.total_usd  # two extra samples, paid for
