"""When the engine counts a prompt larger than our local count, concurrent calls still
overspend a budget by at most one call's worth: the first reply of an endpoint teaches
the ratio (the other calls wait for it, holding nothing), later holds are scaled by it."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

import agentflow as af
from agentflow.pipeline.budget import count_ratio_for, counter_for
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import (
    Budget,
    DiskCacheBackend,
    LedgerBackend,
    MemoryBackend,
    RedisBackend,
    TokenPricing,
    Usage,
)
from tests.conftest import API_KEY

PRICE = TokenPricing(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))
PROMPT = [{"role": "user", "content": "word " * 200}]
OUTPUT = 20  # tokens each answer has, and the max_tokens each call asks for
RATIO = 2  # the engine counts the prompt twice as large as we do
CALLS = 50
FITS = 10  # the budget pays for this many calls at the engine's counts


@pytest.fixture(params=["memory", "disk", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBackend]:
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "disk":
        yield DiskCacheBackend(tmp_path / "ledger")
    else:
        url = request.getfixturevalue("redis_url")
        yield RedisBackend(url, prefix=f"overspend-{uuid.uuid4().hex}:")


def _setup(srv: LoopbackServer, backend: LedgerBackend) -> tuple[af.Endpoint, Decimal]:
    """A zoo whose engine reports RATIO x our prompt count; one call's actual cost."""
    endpoint = af.Endpoint(
        model="openai/counts-more", api_base=srv.base_url, api_key=API_KEY, pricing=PRICE
    )
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("t", endpoints=[endpoint])]), ledger_backend=backend
    )
    local = counter_for(endpoint).count_messages(PROMPT)
    srv.default = Reply(
        "ok " * OUTPUT, prompt_tokens=local * RATIO, completion_tokens=OUTPUT, latency=0.1
    )
    return endpoint, PRICE.cost(Usage(local * RATIO, 0, OUTPUT)).total_usd


def _check(run: af.Run, one_call: Decimal, paid: int) -> None:
    assert run.ledger is not None
    spent = run.ledger.spent()
    limit = one_call * FITS
    assert spent.calls == paid
    assert run.ledger.in_flight().calls == 0
    # the documented bound: at most one call's worth past the budget (before the fix,
    # 50 concurrent calls spent 16 calls' worth of a budget that pays for 10)
    assert spent.usd <= limit + one_call, (spent.usd, limit, one_call)
    assert paid >= FITS // 2  # the budget is used, not refused wholesale


async def test_concurrent_calls_overspend_at_most_one_call(
    srv: LoopbackServer, backend: LedgerBackend
) -> None:
    endpoint, one_call = _setup(srv, backend)

    async def call() -> int:
        try:
            await af.acomplete(PROMPT, max_tokens=OUTPUT)
        except af.BudgetExceededError:
            return 0
        return 1

    async with af.run("overspend", budget=Budget(max_usd=one_call * FITS)) as run:
        paid = sum(await asyncio.gather(*(call() for _ in range(CALLS))))
    _check(run, one_call, paid)
    # the endpoint learned how much larger its engine counts
    assert count_ratio_for(endpoint).ratio == pytest.approx(RATIO)


def test_threads_overspend_at_most_one_call(srv: LoopbackServer) -> None:
    _, one_call = _setup(srv, MemoryBackend())

    def call() -> int:
        try:
            af.complete(PROMPT, max_tokens=OUTPUT)
        except af.BudgetExceededError:
            return 0
        return 1

    with af.run("overspend-threads", budget=Budget(max_usd=one_call * FITS)) as run:
        inside = contextvars.copy_context()  # each thread calls inside the run
        with ThreadPoolExecutor(16) as pool:
            paid = sum(pool.map(lambda _: inside.copy().run(call), range(CALLS)))
    _check(run, one_call, paid)


async def test_a_failed_probe_hands_over_to_the_next_call(srv: LoopbackServer) -> None:
    endpoint, one_call = _setup(srv, MemoryBackend())
    srv.script(Fault.status(400))  # the first call (the probe) fails

    async def call() -> str:
        try:
            return (await af.acomplete(PROMPT, max_tokens=OUTPUT)).text
        except af.CallError:
            return "failed"

    async with af.run("probe-fails", budget=Budget(max_usd=one_call * FITS)):
        answers = await asyncio.wait_for(asyncio.gather(*(call() for _ in range(5))), 30)
    assert answers.count("failed") == 1
    assert count_ratio_for(endpoint).ratio == pytest.approx(RATIO)
