"""A router whose ``choose`` takes ``context`` sees the call's budgets and the replicas'
load before anything is sent (``agentflow.pipeline.route.RouteContext``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import agentflow as af
from agentflow.pipeline.route import RouteContext, inflight
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget, TokenPricing

CHEAP = TokenPricing(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))
DEAR = TokenPricing(input_per_mtok=Decimal(100), output_per_mtok=Decimal(200))
Q = [{"role": "user", "content": "Summarise the report."}]


class BudgetAwareRouter:
    """The strong tier while the budget has more than $0.01 left, else the cheap one."""

    def __init__(self) -> None:
        self.seen: list[tuple[Decimal | None, dict[str, float]]] = []

    def choose(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        kind: str,
        tiers: Sequence[str],
        context: RouteContext,
    ) -> str:
        left = context.remaining_usd()
        self.seen.append((left, context.load("strong")))
        return "strong" if left is None or left > Decimal("0.01") else "cheap"


class PlainRouter:
    def choose(self, messages: Any, *, kind: str, tiers: Sequence[str]) -> str:
        return "cheap"


def _zoo(srv: LoopbackServer) -> af.ModelZoo:
    cheap = af.Endpoint(model="openai/cheap", api_base=srv.base_url, pricing=CHEAP)
    strong = af.Endpoint(
        model="openai/strong", api_base=srv.base_url, pricing=DEAR, name="strong-0"
    )
    return af.ModelZoo(
        tiers=[af.Tier("cheap", endpoints=[cheap]), af.Tier("strong", endpoints=[strong])]
    )


def test_a_router_sees_the_budget_left_and_routes_down_before_sending() -> None:
    router = BudgetAwareRouter()
    with LoopbackServer() as srv:
        srv.default = Reply("ok", prompt_tokens=50, completion_tokens=40)
        af.configure(zoo=_zoo(srv), router=router)

        @af.step(tier="auto")
        def summarise() -> af.Completion:
            return af.complete(messages=Q, max_tokens=40)

        with af.run("budgeted", budget=Budget(max_usd=Decimal("0.03"))) as run:
            tiers = [summarise().tier for _ in range(3)]
        sent = [r.model for r in srv.requests if r.path.endswith("/chat/completions")]
    # $0.013 a strong call: the first fits with $0.03 left, the second sees $0.017, the
    # third sees less than $0.01 and is routed down before anything is sent
    assert tiers == ["strong", "strong", "cheap"]
    assert sent == ["strong", "strong", "cheap"]
    assert router.seen[0][0] == Decimal("0.03")
    assert router.seen[2][0] is not None
    assert router.seen[2][0] < Decimal("0.01")
    assert run.cost.total_usd <= Decimal("0.03")
    assert router.seen[0][1] == {"strong-0": 0.0}


def test_the_context_reports_the_replicas_in_flight_load() -> None:
    with LoopbackServer() as srv:
        zoo = _zoo(srv)
        context = RouteContext(zoo)
        inflight.begin("strong-0")
        try:
            assert context.load("strong") == {"strong-0": 1.0}
        finally:
            inflight.end("strong-0")
        assert context.remaining() == []
        assert context.remaining_usd() is None


def test_a_router_without_context_is_called_as_before() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("ok")
        af.configure(zoo=_zoo(srv), router=PlainRouter())
        assert af.complete(messages=Q, tier="auto").tier == "cheap"
