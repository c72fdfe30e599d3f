"""Per-tenant quotas: ``af.configure(tenant_budget=...)`` takes one budget, several (a
daily dollar budget plus requests- and tokens-per-minute limits), a mapping by user id or
a function of it; every budget is reserved before the call and settled after it, on the
memory, diskcache and Redis ledger backends, against a real loopback server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import agentflow as af
from agentflow._config import get_config
from agentflow.testing import LoopbackServer, Reply
from budgets import (
    Budget,
    BudgetExceeded,
    DiskCacheBackend,
    LedgerBackend,
    MemoryBackend,
    RedisBackend,
    Spend,
    TokenPricing,
)

PRICE = TokenPricing(input_per_mtok=1, output_per_mtok=2)
QUESTION = [{"role": "user", "content": "hi"}]
DAILY = Budget(max_usd=5, window=timedelta(days=1))


@pytest.fixture(params=["memory", "disk", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBackend]:
    made: LedgerBackend
    if request.param == "memory":
        made = MemoryBackend()
    elif request.param == "disk":
        made = DiskCacheBackend(tmp_path / "ledger")
    else:
        made = RedisBackend(request.getfixturevalue("redis_url"), prefix=f"q-{uuid.uuid4().hex}:")
    yield made
    made.close()


@pytest.fixture
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.default = Reply("ok", prompt_tokens=10, completion_tokens=2)
        yield server


def _zoo(srv: LoopbackServer) -> af.ModelZoo:
    endpoint = af.Endpoint(model="openai/small", api_base=srv.base_url, pricing=PRICE)
    return af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])])


def _served(srv: LoopbackServer) -> int:
    return sum(1 for r in srv.requests if r.path.endswith("/chat/completions"))


def _calls_until_refused(user_id: str, most: int = 10) -> tuple[int, BudgetExceeded | None]:
    with af.run("r", user_id=user_id):
        for made in range(most):
            try:
                af.complete(QUESTION)
            except BudgetExceeded as exc:
                return made, exc
    return most, None


def _start_of_window(window_s: float) -> float:
    """Sleep until just after a window boundary (windows are aligned on the epoch)."""
    now = time.time()
    start = (now // window_s + 1) * window_s
    time.sleep(start - now + 0.02)
    return start


# --- which budgets apply to whom ----------------------------------------------------


def test_a_mapping_gives_each_tenant_its_limits(srv: LoopbackServer) -> None:
    af.configure(
        zoo=_zoo(srv),
        tenant_budget={
            "alice": Budget(max_calls=2),
            "bob": [Budget(max_calls=1)],
            "vip": None,  # no tenant budget at all
            "*": Budget(max_calls=3),  # everyone else
        },
    )
    made, refusal = _calls_until_refused("alice")
    assert made == 2
    assert refusal is not None
    assert refusal.budget == "tenant 'alice' budget"
    assert _calls_until_refused("bob")[0] == 1
    made, refusal = _calls_until_refused("carol")
    assert made == 3
    assert refusal is not None
    assert refusal.budget == "tenant 'carol' budget"
    assert _calls_until_refused("vip") == (10, None)
    assert _served(srv) == 2 + 1 + 3 + 10


def test_a_mapping_without_a_default_leaves_other_tenants_unlimited(srv: LoopbackServer) -> None:
    af.configure(zoo=_zoo(srv), tenant_budget={"alice": Budget(max_calls=1)})
    assert _calls_until_refused("alice")[0] == 1
    assert _calls_until_refused("zed", most=4) == (4, None)


def test_a_function_of_the_tenant_picks_its_budgets(srv: LoopbackServer) -> None:
    asked: list[str] = []

    def plan_of(user_id: str) -> Budget | list[Budget] | None:
        asked.append(user_id)
        if user_id.startswith("free-"):
            return Budget(max_calls=1, window=timedelta(days=1))
        if user_id.startswith("pro-"):
            return [DAILY, Budget(max_calls=3, window=timedelta(minutes=1))]
        return None

    af.configure(zoo=_zoo(srv), tenant_budget=plan_of)
    assert _calls_until_refused("free-1")[0] == 1
    made, refusal = _calls_until_refused("pro-1")
    assert made == 3
    assert refusal is not None
    assert refusal.budget == "tenant 'pro-1' budget #2 (per minute)"
    assert refusal.limit == "max_calls"
    assert _calls_until_refused("internal", most=5) == (5, None)
    assert asked == ["free-1", "pro-1", "internal"]  # once per run


def test_a_function_returning_something_else_fails_when_the_run_starts(
    srv: LoopbackServer,
) -> None:
    af.configure(zoo=_zoo(srv), tenant_budget=lambda user_id: {"max_calls": 3})  # type: ignore[arg-type]
    with pytest.raises(af.ConfigError, match=r"returned .* for user id 'u1'; return a budgets"):
        af.run("r", user_id="u1")
    assert _served(srv) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"max_usd": 5}, r"did you mean tenant_budget=Budget\(max_usd=...\)"),
        ({"alice": 5}, r"tenant_budget\['alice'\] must be a budgets.Budget"),
        ({1: Budget(max_calls=1)}, "keys are user ids"),
        ([], "tenant_budget must be a budgets.Budget"),
        ([Budget(max_calls=1), "x"], "tenant_budget must be a budgets.Budget"),
        ("5 dollars", "a mapping {user_id: budget"),
        (Budget, "tenant_budget must be a budgets.Budget"),
    ],
)
def test_bad_tenant_budgets_fail_at_configure(value: Any, message: str) -> None:
    with pytest.raises(af.ConfigError, match=message):
        af.configure(tenant_budget=value)


# --- rate limits: requests and tokens per window, on every backend -------------------


def test_requests_per_window_refuse_the_61st_call_then_allow_the_next_window(
    srv: LoopbackServer, backend: LedgerBackend
) -> None:
    window_s = 3.0
    af.configure(
        zoo=_zoo(srv),
        tenant_budget=[DAILY, Budget(max_calls=60, window=timedelta(seconds=window_s))],
        ledger_backend=backend,
    )
    start = _start_of_window(window_s)
    with af.run("burst", user_id="acme"):
        for _ in range(60):
            af.complete(QUESTION)
        with pytest.raises(BudgetExceeded) as refused:
            af.complete(QUESTION)
        assert time.time() < start + window_s, "the 60 calls did not fit in one window"
        assert refused.value.budget == "tenant 'acme' budget #2 (per 3 s)"
        assert refused.value.limit == "max_calls"
        # it says how long until the window lets calls through again
        assert refused.value.retry_after_s is not None
        assert 0 < refused.value.retry_after_s <= start + window_s - time.time() + 0.05
        assert "window starts again in" in str(refused.value)
        assert _served(srv) == 60

        _start_of_window(window_s)
        af.complete(QUESTION)  # a new window: allowed again
    assert _served(srv) == 61
    daily, per_window = get_config().tenant_ledgers("acme")
    assert daily.key == "tenant:acme"
    assert per_window.key == "tenant:acme:2"
    # the refused call's daily hold was rolled back: only served calls count
    assert daily.spent().calls == 61
    assert per_window.spent().calls == 1
    assert daily.in_flight() == Spend()
    assert per_window.in_flight() == Spend()


def test_concurrent_calls_never_pass_the_requests_per_window_limit(
    srv: LoopbackServer, backend: LedgerBackend
) -> None:
    window_s = 5.0
    af.configure(
        zoo=_zoo(srv),
        tenant_budget=[DAILY, Budget(max_calls=60, window=timedelta(seconds=window_s))],
        ledger_backend=backend,
    )

    async def burst() -> list[Any]:
        async with af.run("burst", user_id="acme"):
            results = await asyncio.gather(
                *(af.acomplete(QUESTION) for _ in range(80)), return_exceptions=True
            )
        if isinstance(backend, RedisBackend):
            await backend.aclose()
        return results

    start = _start_of_window(window_s)
    results = asyncio.run(burst())
    assert time.time() < start + window_s, "the burst did not fit in one window"
    paid = [r for r in results if isinstance(r, af.Completion)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert (len(paid), len(refused)) == (60, 20), results
    assert {(r.budget, r.limit) for r in refused} == {
        ("tenant 'acme' budget #2 (per 5 s)", "max_calls")
    }
    assert _served(srv) == 60
    daily, per_window = get_config().tenant_ledgers("acme")
    assert daily.spent().calls == per_window.spent().calls == 60
    assert daily.in_flight() == Spend()
    assert per_window.in_flight() == Spend()


def test_tokens_per_window_limit_input_tokens(srv: LoopbackServer, backend: LedgerBackend) -> None:
    af.configure(
        zoo=_zoo(srv),
        tenant_budget=[DAILY, Budget(max_input_tokens=100, window=timedelta(minutes=1))],
        ledger_backend=backend,
    )
    made, refusal = _calls_until_refused("acme", most=20)
    assert refusal is not None
    assert refusal.limit == "max_input_tokens"
    assert refusal.budget == "tenant 'acme' budget #2 (per minute)"
    # each call's prompt is 10 engine tokens: the per-minute 100 never overspent
    assert 8 <= made <= 10
    per_minute = get_config().tenant_ledgers("acme")[1]
    assert per_minute.spent().input_tokens == 10 * made <= 100


def test_a_budget_without_a_window_has_no_retry_after(srv: LoopbackServer) -> None:
    af.configure(zoo=_zoo(srv), tenant_budget=Budget(max_calls=1))
    with af.run("once", user_id="acme"):
        af.complete(QUESTION)
        with pytest.raises(BudgetExceeded) as refused:
            af.complete(QUESTION)
    assert refused.value.retry_after_s is None
    assert "window" not in str(refused.value)


def test_the_run_keeps_and_reports_every_tenant_budget(srv: LoopbackServer) -> None:
    per_minute = Budget(max_calls=60, window=timedelta(minutes=1))
    tokens = Budget(max_input_tokens=1000, window=timedelta(minutes=1))
    af.configure(zoo=_zoo(srv), tenant_budget=[DAILY, per_minute, tokens])
    with af.run("report", user_id="acme") as run:
        af.complete(QUESTION)
        af.complete(QUESTION)
    assert [lg.key for lg in run.tenant_ledgers] == [
        "tenant:acme",
        "tenant:acme:2",
        "tenant:acme:3",
    ]
    assert run.tenant_ledger is run.tenant_ledgers[0]
    report = run.report()
    assert "tenant 'acme' budget #1 (per day) max_usd: spent" in report
    assert "tenant 'acme' budget #2 (per minute) max_calls: spent 2 of 60 (3.3%)" in report
    assert (
        "tenant 'acme' budget #3 (per minute) max_input_tokens: spent 20 of 1000 (2.0%)" in report
    )
