"""Sockets: the fast path closes what it opens.

Each event loop gets its own pooled client, closed when the loop shuts down, so 20
``asyncio.run`` loops leave no sockets behind; the sync path keeps one pooled client per
replica whatever the number of calls.
"""

from __future__ import annotations

import asyncio
import gc
import os

import agentflow as af
from agentflow.testing import LoopbackServer, Reply

USER = [{"role": "user", "content": "hi"}]


def _fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def _configure(srv: LoopbackServer) -> None:
    endpoint = af.Endpoint(model="openai/m", api_base=srv.base_url)
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("t", endpoints=[endpoint])]))


def test_twenty_event_loops_leave_no_sockets() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("ok")
        _configure(srv)

        async def burst() -> None:
            await asyncio.gather(*(af.acomplete(messages=USER, tier="t") for _ in range(8)))

        asyncio.run(burst())  # the first loop: imports, thread pools
        before = _fds()
        for _ in range(20):
            asyncio.run(burst())
        after = _fds()
    assert after - before <= 2, f"{after - before} descriptors left by 20 event loops"


def test_an_async_stream_in_a_loop_that_ends_is_closed_with_it() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("one two three four")
        _configure(srv)

        async def stream_one() -> str:
            stream = await af.acomplete(messages=USER, tier="t", stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        assert asyncio.run(stream_one()) == "one two three four"
        before = _fds()
        for _ in range(10):
            asyncio.run(stream_one())
        after = _fds()
    assert after - before <= 2


def test_sync_calls_reuse_one_pooled_connection() -> None:
    with LoopbackServer() as srv:
        srv.default = Reply("ok")
        _configure(srv)
        af.complete(messages=USER, tier="t")
        before = _fds()
        for _ in range(50):
            af.complete(messages=USER, tier="t")
        after = _fds()
        peers = {r.peer for r in srv.requests if r.path.startswith("/v1/")}
    assert after - before <= 1
    assert len(peers) == 1  # keep-alive: one connection served all 51 calls
