"""A sync step with an async scorer: the scorer runs on one long-lived event loop, so
the clients its model calls open are made once and reused, instead of one event loop,
client and connection per scored call (which leaked a socket per call while clients
outlived their loops)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os

import agentflow as af
from agentflow._context import current_run, in_scorer
from agentflow.scorers import Scorer
from agentflow.testing import LoopbackServer, Reply
from tests.conftest import USER

CALLS = 50


def _open_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def test_a_sync_step_with_an_async_judge_leaks_no_sockets(
    srv: LoopbackServer, zoo: af.ModelZoo
) -> None:
    srv.default = Reply("yes")

    async def judge(completion: af.Completion) -> float:
        verdict = await af.acomplete(
            [{"role": "user", "content": f"Is this right? {completion.text}"}], tier="small"
        )
        return 0.9 if verdict.text == "yes" else 0.1

    @af.step(tier="small", escalate=af.Escalate(min_confidence=0.5, scorer=judge))
    def answer(i: int) -> af.Completion:
        return af.complete([{"role": "user", "content": f"question {i}"}])

    with af.run("judged") as run:
        for i in range(2):  # warm up: the first calls make the clients that stay
            answer(i)
        before = _open_fds()
        results = [answer(i) for i in range(2, CALLS + 2)]
        after = _open_fds()
    # with litellm's clients (one per event loop, never closed) this was +100 fds over
    # 50 calls: a client socket and the server's end per call
    assert after - before <= 2, (before, after)
    # one connection for the judge's calls, reused: before, one per scored call (50)
    judged = [r for r in srv.requests if "Is this right?" in str((r.body or {}).get("messages"))]
    assert len(judged) == CALLS + 2
    assert len({r.peer for r in judged[2:]}) <= 2
    assert all(r.confident and r.confidence == 0.9 for r in results)
    # the judge's calls ran in the step's run: they are paid and counted there
    assert run.totals.calls == 2 * (CALLS + 2)


def test_async_scorers_from_sync_code_share_one_loop_and_see_the_context(
    srv: LoopbackServer, zoo: af.ModelZoo
) -> None:
    loops: set[int] = set()
    seen: list[tuple[bool, object]] = []
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    class Probe(Scorer):
        async def ascore(self, completion: af.Completion, messages: object) -> float:
            loops.add(id(asyncio.get_running_loop()))
            seen.append((in_scorer.get(), marker.get()))
            return 1.0

        def start(self, completion: af.Completion, *, use_async: bool, messages: object = None):  # type: ignore[no-untyped-def]
            return self.ascore(completion, messages)  # async even when called from sync code

    probe = Probe()
    completion = af.complete(USER)
    marker.set("caller")
    for _ in range(5):
        assert probe(completion) == 1.0

    @af.step(tier="small", escalate=af.Escalate(min_confidence=0.5, scorer=probe))
    def step() -> af.Completion:
        return af.complete(USER)

    with af.run("ctx") as run:
        step()
        assert current_run.get() is run
    assert len(loops) == 1  # one loop for every call, not one per call
    assert seen[:5] == [(False, "caller")] * 5
    assert seen[5] == (True, "caller")  # the pipeline marks scorer calls
