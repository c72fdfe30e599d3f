"""Nothing is free by accident: a reply without usage is counted and priced, an endpoint
without pricing under a dollar budget is refused, an answer cut by a budget's cap is
flagged, and ``max_tokens=0`` is refused rather than turned into a default."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget
from tests.conftest import USER, _endpoint


def _chat_requests(srv: LoopbackServer) -> int:
    return sum(r.path.endswith("/chat/completions") for r in srv.requests)


NO_USAGE = Reply("Paris is the capital of France.", prompt_tokens=0, completion_tokens=0)


def test_a_reply_without_usage_is_counted_priced_and_marked(
    srv: LoopbackServer, zoo: af.ModelZoo, spans: InMemorySpanExporter
) -> None:
    srv.default = NO_USAGE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = af.complete(USER)
        second = af.complete(USER)
    assert first.usage_estimated
    assert first.usage.prompt_tokens > 0
    assert first.usage.completion_tokens > 0
    assert first.cost.total_usd > 0
    assert first.attempts[-1].usage_estimated
    assert second.cost == first.cost
    estimated = [w for w in caught if issubclass(w.category, af.UsageEstimatedWarning)]
    assert len(estimated) == 1  # once per endpoint
    llm = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert all((s.attributes or {}).get("agentflow.usage.estimated") is True for s in llm)


def test_a_budget_holds_against_replies_without_usage(
    srv: LoopbackServer, zoo: af.ModelZoo
) -> None:
    srv.default = NO_USAGE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", af.UsageEstimatedWarning)
        one = af.complete(USER, max_tokens=16)
    budget = Budget(max_usd=one.cost.total_usd * Decimal("3.5"))
    paid = 0
    with warnings.catch_warnings(), af.run("no-usage", budget=budget) as run:
        warnings.simplefilter("ignore", af.UsageEstimatedWarning)

        def spend() -> None:
            nonlocal paid
            for _ in range(20):
                af.complete(USER, max_tokens=16)
                paid += 1

        with pytest.raises(af.BudgetExceededError):
            spend()
    assert paid <= 3
    assert run.cost.total_usd <= budget.max_usd


def test_an_unpriced_endpoint_under_a_dollar_budget_is_refused_before_paying(
    srv: LoopbackServer,
) -> None:
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("free", endpoints=[_endpoint(srv, pricing=None)])]))
    with af.run("unpriced", budget=Budget(max_usd=1)), pytest.raises(af.ConfigError) as err:
        af.complete(USER)
    assert "no pricing" in str(err.value)
    assert _chat_requests(srv) == 0
    # without a dollar budget the endpoint is fine
    assert af.complete(USER).text


def test_an_answer_cut_by_the_budget_cap_is_flagged(
    srv: LoopbackServer, zoo: af.ModelZoo, spans: InMemorySpanExporter
) -> None:
    srv.default = Reply("a long answer that", completion_tokens=5, finish_reason="length")

    @af.step(tier="small", budget=Budget(max_output_tokens=5))
    def short() -> af.Completion:
        return af.complete(USER, max_tokens=100)

    with pytest.warns(af.BudgetCapWarning):
        answer = short()
    assert answer.finish_reason == "length"
    assert answer.capped_by_budget
    assert srv.requests[-1].body["max_tokens"] == 5
    llm = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert (llm[-1].attributes or {}).get("agentflow.budget.capped") == 5
    # the caller's own max_tokens is not a budget's cut
    srv.default = Reply("ok", completion_tokens=3, finish_reason="length")
    assert not af.complete(USER, max_tokens=3).capped_by_budget


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_bad_max_tokens_are_refused_before_paying(
    srv: LoopbackServer, zoo: af.ModelZoo, value: object
) -> None:
    with af.run("zero", budget=Budget(max_usd=1)), pytest.raises(af.ConfigError) as err:
        af.complete(USER, max_tokens=value)
    assert "max_tokens must be a positive int" in str(err.value)
    assert _chat_requests(srv) == 0
