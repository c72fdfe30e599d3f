"""A call that never comes back — its task cancelled by ``asyncio.wait_for``, or the
process interrupted — releases every budget hold (step, run, tenant; memory, disk and
Redis ledgers) and still ends its span, with an error status."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agentflow as af
from agentflow.pipeline.call import litellm
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import Budget, DiskCacheBackend, LedgerBackend, MemoryBackend, RedisBackend
from tests.conftest import USER


@pytest.fixture(params=["memory", "disk", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBackend]:
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "disk":
        yield DiskCacheBackend(tmp_path / "ledger")
    else:
        url = request.getfixturevalue("redis_url")
        yield RedisBackend(url, prefix=f"cancel-{uuid.uuid4().hex}:")


def _held(ledger: Any) -> int:
    return int(ledger.in_flight().calls)


async def test_cancelled_calls_hold_nothing_and_end_their_spans(
    srv: LoopbackServer,
    zoo: af.ModelZoo,
    backend: LedgerBackend,
    spans: InMemorySpanExporter,
) -> None:
    litellm()  # imported first: a cancel during its seconds-long import would hold nothing
    af.configure(tenant_budget=Budget(max_usd=1, window=timedelta(days=1)), ledger_backend=backend)
    srv.default = Fault.hang(5)

    @af.step(tier="small", budget=Budget(max_usd=1))
    async def ask() -> af.Completion:
        return await af.acomplete(USER)

    async with af.run("cancel", user_id="tenant-c", budget=Budget(max_usd=1)) as run:
        for _ in range(10):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ask(), timeout=1.0)
        assert _held(run.ledger) == 0
        assert run.tenant_ledger is not None
        assert _held(run.tenant_ledger) == 0
        # the budget is whole again: the next call is paid for, not refused
        srv.default = Reply("fine")
        assert (await ask()).text == "fine"
    attempts = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    failed = [s for s in attempts if s.status.status_code == StatusCode.ERROR]
    sent = sum(r.path.endswith("/chat/completions") for r in srv.requests)
    # every attempt has its LLM span, ended (one per request that reached the engine, and
    # one for a call cancelled before its request left); the cancelled ones with an error
    assert len(attempts) >= sent
    assert len(failed) == len(attempts) - 1 >= 5
    assert all("CancelledError" in (s.status.description or "") for s in failed)


def test_keyboard_interrupt_releases_holds(
    srv: LoopbackServer, zoo: af.ModelZoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentflow.pipeline import call

    def interrupted(_: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(call, "send", interrupted)
    with af.run("interrupt", budget=Budget(max_usd=1)) as run:
        with pytest.raises(KeyboardInterrupt):
            af.complete(USER)
        assert run.ledger is not None
        assert _held(run.ledger) == 0
        assert run.ledger.spent().calls == 0
