"""A real redis-server for a test: skipped locally without one, a FAILURE when ``CI`` is set
(CI must prove the Redis ledger and cache backends on real Redis)."""

from __future__ import annotations

import os

import pytest

from tests.budgets._redis_server import RedisServer, RedisServerUnavailable

__all__ = ["start_redis"]


def start_redis() -> RedisServer:
    """A new redis-server on a free loopback port; the caller stops it."""
    try:
        return RedisServer().start()
    except RedisServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the Redis tests must run, but: {exc}")
        pytest.skip(f"{exc} (with CI set, this is a failure, not a skip)")
