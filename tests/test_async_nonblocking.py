"""Under ``af.acomplete`` nothing blocks the event loop: blocking I/O (a ledger on Redis
or disk, a ``/tokenize`` request) goes through its async twin or a worker thread.

The ledger backend here blocks in every sync operation and records the thread it ran
on; under asyncio none of those may run on the event loop's thread. (The size of the
loop's lag is measured by ``benchmarks/bench_async_lag.py``, not asserted here.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import agentflow as af
from agentflow.testing import LoopbackServer
from budgets import Budget, MemoryBackend, TokenCounter
from tests.conftest import USER

BLOCK_S = 0.05


class SlowBackend(MemoryBackend):
    """A memory ledger whose sync operations block, as a slow Redis or disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.sync_threads: list[int] = []
        self.async_calls = 0

    def _block(self) -> None:
        self.sync_threads.append(threading.get_ident())
        time.sleep(BLOCK_S)

    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        self._block()
        return super().reserve(*args, **kwargs)

    def settle(self, *args: Any, **kwargs: Any) -> Any:
        self._block()
        return super().settle(*args, **kwargs)

    def release(self, *args: Any, **kwargs: Any) -> Any:
        self._block()
        return super().release(*args, **kwargs)

    def totals(self, *args: Any, **kwargs: Any) -> Any:
        self._block()
        return super().totals(*args, **kwargs)

    async def areserve(self, *args: Any, **kwargs: Any) -> Any:
        self.async_calls += 1
        await asyncio.sleep(BLOCK_S)
        return MemoryBackend.reserve(self, *args, **kwargs)

    async def asettle(self, *args: Any, **kwargs: Any) -> Any:
        self.async_calls += 1
        await asyncio.sleep(BLOCK_S)
        return MemoryBackend.settle(self, *args, **kwargs)

    async def arelease(self, *args: Any, **kwargs: Any) -> Any:
        self.async_calls += 1
        await asyncio.sleep(BLOCK_S)
        return MemoryBackend.release(self, *args, **kwargs)


async def test_a_blocking_ledger_is_never_touched_on_the_loop(
    srv: LoopbackServer, zoo: af.ModelZoo
) -> None:
    backend = SlowBackend()
    af.configure(tenant_budget=Budget(max_usd=1, window=timedelta(days=1)), ledger_backend=backend)
    loop_thread = threading.get_ident()
    async with af.run("lag", user_id="tenant-a", budget=Budget(max_usd=1)) as run:
        answers = await asyncio.gather(*(af.acomplete(USER, tier="small") for _ in range(8)))
    assert all(a.text for a in answers)
    assert run.totals.calls == 8
    assert backend.async_calls == 16  # a reserve and a settle per call, through the twins
    assert backend.sync_threads, "remaining() has no async twin: it runs in a worker thread"
    assert loop_thread not in backend.sync_threads
    # and the sync path still works on the same backend
    with af.run("sync", user_id="tenant-a"):
        assert af.complete(USER, tier="small").text


async def test_counting_through_tokenize_is_off_the_loop(
    srv: LoopbackServer, zoo: af.ModelZoo, monkeypatch: Any
) -> None:
    """The engine's ``/tokenize`` (a self-hosted endpoint's exact count) is an HTTP
    request: under asyncio it is made through ``acount_messages``, never the sync one."""
    loop_thread = threading.get_ident()
    seen: list[int] = []
    real = TokenCounter.for_endpoint

    def spying_counter(*args: Any, **kwargs: Any) -> TokenCounter:
        counter = real(*args, **kwargs)
        count = counter.count_messages

        def count_messages(*a: Any, **k: Any) -> int:
            seen.append(threading.get_ident())
            return count(*a, **k)

        counter.count_messages = count_messages  # type: ignore[method-assign]
        return counter

    monkeypatch.setattr(TokenCounter, "for_endpoint", staticmethod(spying_counter))
    with af.run("count", budget=Budget(max_usd=1)):
        answer = await af.acomplete(USER, tier="small")
    assert answer.text
    assert seen, "the budgeted call counted its prompt"
    assert loop_thread not in seen


async def test_a_router_runs_off_the_loop(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    """``tier="auto"``: the router (a learned one embeds the prompt; its ``RouteContext``
    reads the ledgers) is asked in a worker thread, inline for a plain call."""
    loop_thread = threading.get_ident()
    seen: list[int] = []

    class SlowRouter:
        def choose(self, messages: Any, *, kind: str, tiers: Any, context: Any) -> str:
            seen.append(threading.get_ident())
            context.remaining()  # what a budget-aware router reads
            time.sleep(BLOCK_S)  # an embedding model's forward pass
            return "small"

    backend = SlowBackend()
    af.configure(
        router=SlowRouter(),
        ledger_backend=backend,
        tenant_budget=Budget(max_usd=1, window=timedelta(days=1)),
    )
    async with af.run("routed", user_id="tenant-a", budget=Budget(max_usd=1)):
        answers = await asyncio.gather(*(af.acomplete(USER, tier="auto") for _ in range(4)))
        stream = await af.acomplete(USER, tier="auto", stream=True)
        async for _ in stream:
            pass
    assert all(a.tier == "small" for a in answers)
    assert len(seen) == 5
    assert loop_thread not in seen
    assert loop_thread not in backend.sync_threads
