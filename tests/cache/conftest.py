"""Fixtures for the cache storage tests: real stores (memory, a diskcache directory, a
real redis-server), a fake clock, and a clean backend-warning limiter per test.

The Redis cases use a redis-server started once per session on a free loopback port
(``tests/budgets/_redis_server.py``). Without redis-server they skip locally and FAIL when
the ``CI`` env var is set: CI must prove the Redis store on real Redis.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentflow.cache import CacheStore, DiskStore, MemoryStore, RedisStore
from agentflow.cache._degrade import backend_warnings
from tests.cache._helpers import FakeClock

STORES = ["memory", "disk", "redis"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _fresh_backend_warnings() -> Iterator[None]:
    """Each test sees the first warning about a failing backend (the limiter is global)."""
    backend_warnings.reset()
    yield
    backend_warnings.reset()


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL on a loopback port nobody listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def make_store(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], CacheStore]]:
    """``make_store(kind)``: a new store of that kind; each call opens a new client onto
    the same data (the same directory, the same Redis prefix), as another process would.
    Memory has no second client: every call returns the same store."""
    made: list[CacheStore] = []
    memory = MemoryStore()
    prefix = f"test:{request.node.name}:"

    def make(kind: str) -> CacheStore:
        store: CacheStore
        if kind == "memory":
            store = memory
        elif kind == "disk":
            store = DiskStore(tmp_path / "cache")
        else:
            store = RedisStore(request.getfixturevalue("redis_url"), prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, RedisStore):
            store.clear()
        store.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, make_store: Callable[[str], CacheStore]) -> CacheStore:
    kind: str = request.param
    return make_store(kind)
