"""Prefix affinity over two loopback replicas of one tier: each prefix sticks to one
replica, prefixes spread across both, a dead replica's prefixes fail over and come back,
and the load guard spills a hot prefix off a busy replica."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest

import agentflow as af
from agentflow.pipeline.health import HealthProbes
from agentflow.pipeline.layout import prefix_key, static
from agentflow.pipeline.route import (
    LOAD_GUARD_FACTOR,
    LOAD_GUARD_MIN,
    InFlight,
    candidates,
    inflight,
    overloaded,
)
from agentflow.testing import LoopbackServer

N_PREFIXES = 40
RETRY_ONCE = af.RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.02)


@pytest.fixture
def replicas() -> Iterator[dict[str, LoopbackServer]]:
    with LoopbackServer(name="a") as a, LoopbackServer(name="b") as b:
        yield {"replica-a": a, "replica-b": b}


@pytest.fixture
def pool(replicas: dict[str, LoopbackServer], make_endpoint: Any) -> af.ModelZoo:
    """One tier, two replicas named so that routing does not depend on the ports."""
    zoo = af.ModelZoo(
        tiers=[
            af.Tier(
                "pool",
                endpoints=[
                    make_endpoint(srv, "m", name=name, timeout=2.0)
                    for name, srv in replicas.items()
                ],
            )
        ]
    )
    af.configure(zoo=zoo, retry=RETRY_ONCE)
    return zoo


def _system(i: int) -> dict[str, str]:
    return {"role": "system", "content": f"You are agent number {i}. Follow policy {i * 7}."}


def _ask(prefix: int, question: str) -> str:
    """The replica that answered one call with prefix ``prefix``."""
    c = af.complete([_system(prefix), {"role": "user", "content": question}], max_tokens=4)
    assert c.attempts[-1].ok
    return c.endpoint


def _placement() -> dict[int, str]:
    return {p: _ask(p, "first question") for p in range(N_PREFIXES)}


def test_each_prefix_sticks_to_one_replica_and_both_share_the_load(
    pool: af.ModelZoo, replicas: dict[str, LoopbackServer]
) -> None:
    placed: dict[int, set[str]] = defaultdict(set)
    for question in ("What is due?", "When is it due?", "Who pays?"):
        for p in range(N_PREFIXES):
            placed[p].add(_ask(p, question))
    assert all(len(where) == 1 for where in placed.values())
    share = Counter(next(iter(where)) for where in placed.values())
    assert set(share) == set(replicas)
    for name in replicas:
        assert 0.3 * N_PREFIXES <= share[name] <= 0.7 * N_PREFIXES, share
        # the servers saw what the router says
        assert len(replicas[name].requests) == 3 * share[name]


def test_static_messages_are_part_of_the_prefix(pool: af.ModelZoo) -> None:
    system = {"role": "system", "content": "You answer from the document."}
    where: dict[int, set[str]] = defaultdict(set)
    for doc in range(20):
        document = static({"role": "user", "content": f"Document {doc}: the fee is {doc} EUR."})
        for question in ("What is the fee?", "Is there a fee?"):
            c = af.complete([system, {"role": "user", "content": question}, document])
            where[doc].add(c.endpoint)
    assert all(len(w) == 1 for w in where.values())  # one document, one replica
    assert len({next(iter(w)) for w in where.values()}) == 2  # documents spread


def test_prefix_cache_off_takes_turns(pool: af.ModelZoo) -> None:
    @af.step(prefix_cache=False)
    def ask(question: str) -> str:
        return af.complete([_system(1), {"role": "user", "content": question}]).endpoint

    seen = [ask(f"question {i}") for i in range(6)]
    assert all(x != y for x, y in pairwise(seen))
    assert set(seen) == {"replica-a", "replica-b"}


def test_a_dead_replicas_prefixes_fail_over_and_come_back(
    pool: af.ModelZoo, replicas: dict[str, LoopbackServer]
) -> None:
    before = _placement()
    dead = "replica-a"
    replicas[dead].stop()
    during = {p: _ask(p, "second question") for p in range(N_PREFIXES)}
    assert set(during.values()) == {"replica-b"}
    # prefixes pinned to the live replica never moved
    assert all(during[p] == before[p] for p in before if before[p] != dead)
    replicas[dead].start()  # same port: the replica is back
    HealthProbes(pool).probe_all()  # its health probe sees it: out of its cooldown
    after = {p: _ask(p, "third question") for p in range(N_PREFIXES)}
    assert after == before


def _first(zoo: af.ModelZoo, messages: list[dict[str, str]]) -> list[str]:
    return [e.id for _, e in candidates(zoo, "pool", prefix_key(messages))]


@pytest.fixture
def load() -> Iterator[Any]:
    """``load(endpoint_id, n)`` raises the in-flight count; undone after the test."""
    added: list[str] = []

    def add(endpoint_id: str, n: int) -> None:
        for _ in range(n):
            inflight.begin(endpoint_id)
            added.append(endpoint_id)

    yield add
    for endpoint_id in added:
        inflight.end(endpoint_id)


def test_load_guard_spills_a_hot_prefix_and_keeps_the_failover_order(
    pool: af.ModelZoo, load: Any
) -> None:
    messages = [_system(3), {"role": "user", "content": "q"}]
    pinned, other = _first(pool, messages)
    load(pinned, LOAD_GUARD_MIN - 1)
    assert _first(pool, messages) == [pinned, other]  # a small queue: the cache wins
    load(pinned, 1)
    assert _first(pool, messages) == [other, pinned]  # overloaded: spill, pinned is next
    # the other replica busy too: the pinned one may carry FACTOR x its load + 1
    load(other, 3)
    limit = int(LOAD_GUARD_FACTOR * 3 + 1)
    assert inflight.count(pinned) < limit
    assert _first(pool, messages) == [pinned, other]
    load(pinned, limit - inflight.count(pinned))
    assert _first(pool, messages) == [other, pinned]


def test_load_guard_stays_when_every_replica_is_busy(pool: af.ModelZoo, load: Any) -> None:
    messages = [_system(5), {"role": "user", "content": "q"}]
    pinned, other = _first(pool, messages)
    load(pinned, 20)
    load(other, 20)
    assert _first(pool, messages) == [pinned, other]


def test_load_guard_diverts_a_real_call(
    pool: af.ModelZoo, replicas: dict[str, LoopbackServer], load: Any
) -> None:
    pinned = _ask(8, "warm")
    other = ({"replica-a", "replica-b"} - {pinned}).pop()
    load(pinned, LOAD_GUARD_MIN)
    assert _ask(8, "while busy") == other
    assert len(replicas[other].requests) == 1


def test_load_guard_math_with_three_replicas() -> None:
    assert not overloaded([LOAD_GUARD_MIN - 1, 0, 0], 0)
    assert overloaded([LOAD_GUARD_MIN, 0, 0], 0)
    assert not overloaded([8, 4, 4], 0)  # 8 < 2 x 4 + 1
    assert overloaded([9, 4, 4], 0)
    assert not overloaded([0, 9, 4], 0)


def test_inflight_counts_are_thread_safe() -> None:
    counter = InFlight()

    def work() -> None:
        for _ in range(5000):
            counter.begin("e")
            counter.end("e")
        counter.begin("e")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.count("e") == 8
    assert counter.counts(["e", "unknown"]) == [8, 0]
    for _ in range(10):  # more ends than begins never go below zero
        counter.end("e")
    assert counter.count("e") == 0
