"""ExactCache: hits and misses counted, and a backend that is down is a warned miss."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import pytest

from agentflow.cache import CacheStats, CacheStore, DiskStore, ExactCache, MemoryStore, RedisStore
from agentflow.cache._degrade import backend_warnings
from tests._redis import start_redis
from tests.cache._helpers import FakeClock

ANSWER = {"text": "Paris", "cost_usd": "0.0001"}


def test_lookup_save_and_stats(store: CacheStore) -> None:
    cache = ExactCache(store)
    assert cache.lookup("req-v1:a") is None
    cache.save("req-v1:a", ANSWER, ttl=60)
    assert cache.lookup("req-v1:a") == ANSWER
    assert cache.lookup("req-v1:b") is None
    assert cache.stats == CacheStats(hits=1, misses=2, errors=0)


async def test_async_twins(store: CacheStore) -> None:
    cache = ExactCache(store)
    await cache.asave("k", ANSWER)
    assert await cache.alookup("k") == ANSWER
    assert cache.stats.hits == 1


def test_save_ttl_expires(tmp_path: Path) -> None:
    cache = ExactCache(DiskStore(tmp_path))
    cache.save("k", ANSWER, ttl=0.2)
    assert cache.lookup("k") == ANSWER
    time.sleep(0.4)
    assert cache.lookup("k") is None


def test_a_value_with_no_json_form_is_a_bug_not_an_outage() -> None:
    cache = ExactCache(MemoryStore())
    with pytest.raises(TypeError, match="JSON"):
        cache.save("k", {"when": object()})
    with pytest.raises(ValueError, match="ttl"):
        cache.save("k", ANSWER, ttl=0)


def test_redis_down_is_a_warned_miss_and_save_is_a_no_op(
    closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ExactCache(RedisStore(closed_port_url))
    with (
        caplog.at_level(logging.WARNING, logger="agentflow.cache"),
        pytest.warns(RuntimeWarning, match=r"redis redis://127\.0\.0\.1:\d+/0 failed to read"),
    ):
        assert cache.lookup("k") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning within 30 s would raise here
        cache.save("k", ANSWER)
        assert cache.lookup("k") is None
    assert cache.stats == CacheStats(hits=0, misses=2, errors=3)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "goes on without the cache" in warned[0].message
    cache.close()


def test_a_redis_server_that_stops_mid_run_is_a_warned_miss() -> None:
    server = start_redis()
    cache = ExactCache(RedisStore(server.url))
    try:
        cache.save("k", ANSWER)
        assert cache.lookup("k") == ANSWER
        server.stop()
        start = time.monotonic()
        with pytest.warns(RuntimeWarning, match="Connection refused|Error"):
            assert cache.lookup("k") is None
        cache.save("k2", ANSWER)  # no-op, no exception
        assert time.monotonic() - start < 5, "a dead Redis stalled the call"
        assert cache.stats.errors == 2
    finally:
        server.stop()
        cache.close()


def test_warnings_are_rate_limited_per_backend(
    closed_port_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(backend_warnings, "clock", clock)
    redis_cache = ExactCache(RedisStore(closed_port_url))
    another_client = ExactCache(RedisStore(closed_port_url))  # the same backend
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    disk_cache = ExactCache(DiskStore(not_a_dir))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        redis_cache.lookup("k")
        another_client.lookup("k")
        redis_cache.save("k", ANSWER)
        disk_cache.lookup("k")  # another backend warns on its own
        clock.advance(29)
        redis_cache.lookup("k")
        clock.advance(2)
        redis_cache.lookup("k")  # 31 s after the first warning
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(messages) == 3, messages
    assert "redis" in messages[0]
    assert "diskcache" in messages[1]
    assert "redis" in messages[2]
    for cache in (redis_cache, another_client, disk_cache):
        cache.close()


def test_a_unwritable_disk_cache_is_a_warned_miss(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    cache = ExactCache(DiskStore(not_a_dir))
    with pytest.warns(RuntimeWarning, match="diskcache"):
        assert cache.lookup("k") is None
    cache.save("k", ANSWER)
    assert cache.stats == CacheStats(hits=0, misses=1, errors=2)
