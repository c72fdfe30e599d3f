"""Prefix affinity against two real llama-server replicas: one long system prompt stays
on one replica, whose prefix cache then serves it; round-robin alternates."""

from __future__ import annotations

from itertools import pairwise

import pytest

import agentflow as af

pytestmark = pytest.mark.integration

# its own text: no other test has put this prefix in a replica's cache
SYSTEM = "You are the affinity test's billing assistant. " + " ".join(
    f"Billing rule {i}: quote the invoice number and answer in one line." for i in range(40)
)
QUESTIONS = ("What is an invoice?", "What is a refund?", "What is a credit note?")


@pytest.fixture
def pool(replica_zoo: af.ModelZoo) -> af.ModelZoo:
    return replica_zoo


def _ask(question: str) -> af.Completion:
    return af.complete(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        max_tokens=4,
        temperature=0.0,
    )


def test_a_long_system_prompt_stays_on_one_replica_and_hits_its_cache(
    pool: af.ModelZoo,
) -> None:
    @af.plan(tier="specialist")  # prefix_cache=True is the default
    def answer(question: str) -> af.Completion:
        return _ask(question)

    calls = [answer(q) for q in QUESTIONS]
    assert len({c.endpoint for c in calls}) == 1
    assert calls[0].usage.prompt_tokens > 300
    for c in calls[1:]:
        assert c.attempts[-1].cached_tokens_reported
        assert c.usage.cached_prompt_tokens > 0
        # the whole system prompt came from the cache, only the question was computed
        assert c.usage.cached_prompt_tokens > c.usage.prompt_tokens - 40


def test_without_prefix_affinity_replicas_take_turns(pool: af.ModelZoo) -> None:
    @af.plan(tier="specialist", prefix_cache=False)
    def answer(question: str) -> af.Completion:
        return _ask(question)

    endpoints = [answer(q).endpoint for q in (*QUESTIONS, "What is a receipt?")]
    assert all(a != b for a, b in pairwise(endpoints))
    assert len(set(endpoints)) == 2
