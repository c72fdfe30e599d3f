"""Concurrent runs in asyncio tasks and threads keep their own totals: run state lives on
contextvars and never mixes, and a shared budget is never overspent."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import pytest

import agentflow as af
from agentflow._context import current_run, current_step
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget, Cost, Usage


def _calls(srv: LoopbackServer) -> list[Any]:
    """The model calls the server received (token counting asks ``/tokenize`` too)."""
    return [r for r in srv.requests if r.path.endswith(("/chat/completions", "/embeddings"))]


N_TASKS = 100
N_THREADS = 8


def _calls_for(i: int) -> int:
    return i % 3 + 1  # runs make 1, 2 or 3 calls, so totals tell them apart


def _check_run(run: af.Run, completions: list[af.Completion], tag: str, step: str) -> None:
    assert run.totals.calls == len(completions), tag
    assert run.totals.errors == 0, tag
    assert run.usage == sum((c.usage for c in completions), Usage()), tag
    assert run.cost == sum((c.cost for c in completions), Cost()), tag
    assert run.cost.total_usd > 0
    # the run's attempts are exactly its own calls' attempts
    assert sorted(id(a) for a in run.attempts) == sorted(
        id(a) for c in completions for a in c.attempts
    ), tag
    assert all(c.text.startswith(f"echo: {tag} ") for c in completions), tag
    assert set(run.steps) == {step}, tag
    assert run.steps[step].calls == len(completions), tag
    assert run.ledger is not None
    assert run.ledger.spent().usd == run.cost.total_usd, tag
    assert run.ledger.spent().calls == len(completions), tag


async def test_100_asyncio_runs_and_8_threads_keep_separate_totals(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.default = Reply(latency=0.01)  # echo the prompt, slowly enough to interleave

    @af.step(name="async-work")
    async def async_work(tag: str, n: int) -> list[af.Completion]:
        out = []
        for k in range(n):
            c = await af.acomplete(messages=[{"role": "user", "content": f"{tag} call {k}"}])
            frame = current_step.get()
            assert frame is not None
            assert frame.policy.name == "async-work"
            out.append(c)
        return out

    @af.step(name="thread-work")
    def thread_work(tag: str, n: int) -> list[af.Completion]:
        return [
            af.complete(messages=[{"role": "user", "content": f"{tag} call {k}"}]) for k in range(n)
        ]

    async def one_task(i: int) -> tuple[af.Run, list[af.Completion], str]:
        tag = f"task-{i}"
        async with af.run(tag, budget=Budget(max_usd=1), user_id=tag) as run:
            completions = await async_work(tag, _calls_for(i))
            assert current_run.get() is run  # after every await, still our run
        assert current_run.get() is None
        return run, completions, tag

    thread_results: dict[int, tuple[af.Run, list[af.Completion], str]] = {}
    thread_errors: list[BaseException] = []

    def one_thread(i: int) -> None:
        try:
            assert current_run.get() is None  # a new thread starts with no run
            tag = f"thread-{i}"
            with af.run(tag, budget=Budget(max_usd=1)) as run:
                completions = thread_work(tag, _calls_for(i) + 1)
                assert current_run.get() is run
            thread_results[i] = (run, completions, tag)
        except BaseException as exc:  # surfaced in the main thread below
            thread_errors.append(exc)

    threads = [threading.Thread(target=one_thread, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    results = await asyncio.gather(*(asyncio.create_task(one_task(i)) for i in range(N_TASKS)))
    for t in threads:
        t.join(timeout=60)
    assert not thread_errors, thread_errors
    assert len(thread_results) == N_THREADS

    for i, (run, completions, tag) in enumerate(results):
        assert len(completions) == _calls_for(i)
        _check_run(run, completions, tag, "async-work")
    for i, (run, completions, tag) in thread_results.items():
        assert len(completions) == _calls_for(i) + 1
        _check_run(run, completions, tag, "thread-work")

    expected = sum(_calls_for(i) for i in range(N_TASKS)) + sum(
        _calls_for(i) + 1 for i in range(N_THREADS)
    )
    assert len(_calls(srv)) == expected
    assert current_run.get() is None


async def test_tasks_created_in_a_run_belong_to_it(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.default = Reply("x", prompt_tokens=3, completion_tokens=1, latency=0.01)
    async with af.run("fan-out") as run:
        await asyncio.gather(
            *(af.acomplete(messages=[{"role": "user", "content": "q"}]) for _ in range(10))
        )
    assert run.totals.calls == 10
    assert run.usage == Usage(30, 0, 10)
    assert run.cost.total_usd == Decimal("0.00005")


def test_a_thread_does_not_inherit_the_callers_run(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    done: list[Any] = []
    with af.run("main") as run:
        t = threading.Thread(
            target=lambda: done.append(af.complete(messages=[{"role": "user", "content": "q"}]))
        )
        t.start()
        t.join(timeout=30)
        af.complete(messages=[{"role": "user", "content": "q"}])
    assert len(done) == 1
    assert run.totals.calls == 1  # only the main thread's call


async def test_concurrent_calls_never_overspend_a_shared_budget(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.default = Reply("x", latency=0.05)
    async with af.run("shared", budget=Budget(max_calls=10)) as run:
        outcomes = await asyncio.gather(
            *(af.acomplete(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(25)),
            return_exceptions=True,
        )
    ok = [o for o in outcomes if isinstance(o, af.Completion)]
    refused = [o for o in outcomes if isinstance(o, af.BudgetExceededError)]
    assert len(ok) == 10
    assert len(refused) == 15
    assert len(_calls(srv)) == 10
    assert run.totals.calls == 10
    assert run.ledger is not None
    assert run.ledger.spent().calls == 10


@pytest.mark.parametrize("n_threads", [8])
def test_threads_share_one_run_budget_safely(
    zoo: af.ModelZoo, srv: LoopbackServer, n_threads: int
) -> None:
    """Threads given the same run explicitly (the user copies the context) add up exactly."""
    import contextvars

    srv.default = Reply("x", prompt_tokens=10, completion_tokens=2, latency=0.01)
    with af.run("threads", budget=Budget(max_usd=1)) as run:
        workers = []
        for _ in range(n_threads):
            ctx = contextvars.copy_context()
            workers.append(
                threading.Thread(
                    target=ctx.run,
                    args=(
                        lambda: [
                            af.complete(messages=[{"role": "user", "content": "q"}])
                            for _ in range(5)
                        ],
                    ),
                )
            )
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
    calls = n_threads * 5
    assert run.totals.calls == calls
    assert run.usage == Usage(10 * calls, 0, 2 * calls)
    assert run.cost.total_usd == Decimal("0.000014") * calls
    assert run.ledger is not None
    assert run.ledger.spent().usd == run.cost.total_usd
