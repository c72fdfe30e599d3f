"""Helpers shared by the cache tests (imported as ``tests.cache._helpers``)."""

from __future__ import annotations

import os

import pytest

from tests.budgets._redis_server import RedisServer, RedisServerUnavailable


def start_redis() -> RedisServer:
    """A new redis-server; skips without one, and FAILS when the ``CI`` env var is set."""
    try:
        return RedisServer().start()
    except RedisServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the Redis cache tests must run, but: {exc}")
        pytest.skip(f"{exc} (with CI set, this is a failure, not a skip)")


class FakeClock:
    """A clock that moves only when told: ``clock.advance(10)``."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
