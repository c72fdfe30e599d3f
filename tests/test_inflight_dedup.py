"""In-flight de-duplication: identical concurrent cached calls reach the engine once.

The first call with a cache key leads; the others wait for it and are served its stored
answer as cache hits (cost 0, with what they saved). A leader that fails releases its
followers, who then ask the engine themselves; different tenants never share a flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from decimal import Decimal
from typing import Any

import pytest

import agentflow as af
from agentflow.pipeline import dedup
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import TokenPricing

PRICE = TokenPricing(input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"))
Q = [{"role": "user", "content": "What is the capital of France?"}]


def _configure(srv: LoopbackServer) -> None:
    endpoint = af.Endpoint(model="openai/m", api_base=srv.base_url, pricing=PRICE, timeout=10)
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])]))


def _engine_calls(srv: LoopbackServer) -> int:
    return sum(r.path.endswith("/chat/completions") for r in srv.requests)


# the steps are decorated per test: a step decorated at import would be checked
# against every other test's zoo
async def acached() -> af.Completion:
    step = af.step(tier="small", cache="exact", name="cached")(_aanswer)
    return await step()


async def _aanswer() -> af.Completion:
    return await af.acomplete(messages=Q)


def cached() -> af.Completion:
    return af.step(tier="small", cache="exact", name="cached")(_answer)()


def _answer() -> af.Completion:
    return af.complete(messages=Q)


@pytest.mark.parametrize("n", [8, 64, 256])
def test_identical_concurrent_async_calls_reach_the_engine_once(n: int) -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("Paris.", latency=0.3)
        _configure(srv)

        async def storm() -> list[af.Completion]:
            return list(await asyncio.gather(*(acached() for _ in range(n))))

        with af.run("storm") as run:
            answers = asyncio.run(storm())
        assert _engine_calls(srv) == 1
    assert {a.text for a in answers} == {"Paris."}
    hits = [a for a in answers if a.cache_hit]
    assert len(hits) == n - 1
    assert all(a.cost.total_usd == 0 for a in hits)
    assert all(a.attempts[-1].saved_usd > 0 for a in hits)  # what each follower saved
    assert run.totals.calls == n  # every call is in the run's totals, the hits too
    assert dedup.in_flight() == 0


def test_identical_concurrent_sync_calls_reach_the_engine_once() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("Paris.", latency=0.3)
        _configure(srv)
        answers: list[af.Completion] = []
        lock = threading.Lock()

        def worker() -> None:
            c = cached()
            with lock:
                answers.append(c)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _engine_calls(srv) == 1
    assert len(answers) == 8
    assert sum(a.cache_hit for a in answers) == 7


def test_a_failed_leader_releases_its_followers_who_ask_themselves() -> None:
    with LoopbackServer() as srv:
        # the leader gets a fatal 400; the followers then call the engine themselves
        srv.script(Fault.status(400, body="bad request"))
        srv.default = Reply("Paris.", latency=0.2)
        _configure(srv)

        async def storm() -> list[Any]:
            return list(
                await asyncio.gather(*(acached() for _ in range(4)), return_exceptions=True)
            )

        results = asyncio.run(storm())
    errors = [r for r in results if isinstance(r, BaseException)]
    answers = [r for r in results if not isinstance(r, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], af.CallError)
    assert answers
    assert {a.text for a in answers} == {"Paris."}
    assert dedup.in_flight() == 0


def test_a_stuck_leader_blocks_followers_no_longer_than_max_time() -> None:
    import time

    with LoopbackServer() as srv:
        srv.script(Reply("late", latency=3.0))
        srv.default = Reply("Paris.")
        endpoint = af.Endpoint(model="openai/m", api_base=srv.base_url, timeout=10)
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])]),
            retry=af.RetryPolicy(max_time=0.5, max_attempts=1),
        )

        async def follower_after_leader() -> tuple[float, Any]:
            leader = asyncio.ensure_future(acached())
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            follower = await acached()
            waited = time.monotonic() - t0
            with contextlib.suppress(af.CallError):
                await leader
            return waited, follower

        waited, follower = asyncio.run(follower_after_leader())
    assert follower.text == "Paris."  # it asked the engine itself after max_time
    assert waited < 2.0


def test_different_tenants_never_share_a_flight() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("Paris.", latency=0.2)
        _configure(srv)

        async def tenant(user: str) -> af.Completion:
            with af.run("t", user_id=user):
                return await acached()

        async def both() -> list[af.Completion]:
            return list(await asyncio.gather(tenant("alice"), tenant("bob")))

        answers = asyncio.run(both())
        assert _engine_calls(srv) == 2
    assert not any(a.cache_hit for a in answers)
