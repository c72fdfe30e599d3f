"""Fixtures for the budgets tests: one ledger-backend suite over three real stores.

``backend`` is parametrized over memory, diskcache (a tmp_path directory) and Redis (a
real redis-server started once per session on a free loopback port). Without
redis-server the Redis cases skip locally, and FAIL when the ``CI`` env var is set: CI
must prove the race test on real Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from budgets import DiskCacheBackend, LedgerBackend, MemoryBackend, RedisBackend

BACKENDS = ["memory", "diskcache", "redis"]


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_backend(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], LedgerBackend]]:
    """Builds clients of one shared store: each call returns a new backend object (a new
    connection, as another process would open) onto the same data. Memory has no second
    client, so it returns the same object."""
    made: list[LedgerBackend] = []
    if backend_kind == "redis":
        url = request.getfixturevalue("redis_url")
        import redis

        redis.Redis.from_url(url).flushdb()
    memory = MemoryBackend()

    def make() -> LedgerBackend:
        backend: LedgerBackend
        if backend_kind == "memory":
            backend = memory
        elif backend_kind == "diskcache":
            backend = DiskCacheBackend(tmp_path / "ledger")
        else:
            backend = RedisBackend(url)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
async def backend(make_backend: Callable[[], LedgerBackend]) -> AsyncIterator[LedgerBackend]:
    """One backend of the parametrized kind (async so it can close the Redis client of
    the test's event loop)."""
    made = make_backend()
    yield made
    if isinstance(made, RedisBackend):
        await made.aclose()
