"""SemanticCache: nearest hit above the threshold, hard partitions, persistence, TTL,
eviction, dimensions, threads and processes, and a failing backend as a warned miss."""

from __future__ import annotations

import base64
import logging
import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentflow._errors import AgentflowError, ConfigError
from agentflow.cache import (
    CacheStats,
    DiskStore,
    EmbeddingDimensionError,
    MemoryStore,
    RedisStore,
    SemanticCache,
)
from tests.cache._helpers import FakeClock

PARIS = {"text": "Paris"}
LYON = {"text": "Lyon"}


def assert_hit(
    found: tuple[dict[str, Any], float] | None, value: dict[str, Any], similarity: float
) -> None:
    assert found is not None, "expected a hit, got a miss"
    assert found[0] == value
    assert found[1] == pytest.approx(similarity, abs=1e-5)


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_nearest_hit_above_threshold_with_its_similarity() -> None:
    cache = SemanticCache()
    cache.add("p", [1.0, 0.0, 0.0], PARIS)
    cache.add("p", [0.0, 1.0, 0.0], LYON)
    query = [0.6, 0.8, 0.0]  # cos 0.6 to PARIS, 0.8 to LYON
    found = cache.lookup("p", query, threshold=0.75)
    assert found is not None
    value, similarity = found
    assert value == LYON
    assert similarity == pytest.approx(0.8, abs=1e-6)
    # not normalised on the way in: the scale of a vector does not matter
    found = cache.lookup("p", [30.0, 0.0, 0.0], threshold=0.99)
    assert found is not None
    assert found[0] == PARIS
    assert found[1] == pytest.approx(1.0, abs=1e-6)


def test_below_threshold_is_a_miss() -> None:
    cache = SemanticCache()
    cache.add("p", [1.0, 0.0], PARIS)
    assert cache.lookup("p", unit(1.0, 1.0), threshold=0.8) is None  # cos 0.707
    assert cache.lookup("p", unit(1.0, 1.0), threshold=0.7) is not None
    assert cache.lookup("empty", [1.0, 0.0], threshold=-1.0) is None
    assert cache.stats == CacheStats(hits=1, misses=2, errors=0)


def test_returned_values_are_copies() -> None:
    cache = SemanticCache()
    cache.add("p", [1.0, 0.0], {"list": [1]})
    found = cache.lookup("p", [1.0, 0.0], 0.9)
    assert found is not None
    found[0]["list"].append(2)
    assert_hit(cache.lookup("p", [1.0, 0.0], 0.9), {"list": [1]}, 1.0)


def test_tenant_partitions_never_see_each_other(tmp_path: Path) -> None:
    cache = SemanticCache(tmp_path)
    cache.add("part-v1:tenant-a", [1.0, 0.0], PARIS)
    cache.add("part-v1:tenant-b", [0.0, 1.0], LYON)
    assert_hit(cache.lookup("part-v1:tenant-b", [1.0, 0.0], threshold=-1.0), LYON, 0.0)
    assert cache.lookup("part-v1:tenant-c", [1.0, 0.0], threshold=-1.0) is None
    fresh = SemanticCache(tmp_path)  # and from the persisted store too
    assert fresh.lookup("part-v1:tenant-c", [1.0, 0.0], threshold=-1.0) is None
    found = fresh.lookup("part-v1:tenant-a", [0.0, 1.0], threshold=-1.0)
    assert found is not None
    assert found[0] == PARIS
    # a partition must not reach another's keys by its name either
    cache.add("a", [1.0, 0.0], PARIS)
    assert cache.lookup("a:0", [1.0, 0.0], threshold=-1.0) is None


def test_persists_across_instances_on_one_directory(tmp_path: Path) -> None:
    first = SemanticCache(tmp_path)
    first.add("p", [1.0, 0.0, 0.0], PARIS, ttl=3600)
    first.add("p", [0.0, 0.0, 1.0], LYON)
    first.close()
    second = SemanticCache(tmp_path)
    assert_hit(second.lookup("p", [1.0, 0.1, 0.0], 0.9), PARIS, 1 / math.sqrt(1.01))
    assert_hit(second.lookup("p", [0.0, 0.0, 1.0], 0.9), LYON, 1.0)
    second.close()


def test_adds_by_another_instance_show_up_at_once(tmp_path: Path) -> None:
    reader, writer = SemanticCache(tmp_path), SemanticCache(tmp_path)
    assert reader.lookup("p", [1.0, 0.0], 0.9) is None  # loaded, empty
    writer.add("p", [1.0, 0.0], PARIS)
    assert_hit(reader.lookup("p", [1.0, 0.0], 0.9), PARIS, 1.0)
    writer.clear("p")
    assert reader.lookup("p", [1.0, 0.0], 0.9) is None
    writer.add("p", [0.0, 1.0], LYON)  # a new epoch: the reader starts over
    assert_hit(reader.lookup("p", [1.0, 0.0], -1.0), LYON, 0.0)


def test_ttl_filters_and_evicts_expired_entries(clock: FakeClock) -> None:
    cache = SemanticCache(clock=clock)
    cache.add("p", [1.0, 0.0], PARIS, ttl=10)
    cache.add("p", [0.9, 0.1], LYON, ttl=100)
    assert_hit(cache.lookup("p", [1.0, 0.0], 0.9), PARIS, 1.0)
    clock.advance(10.5)
    found = cache.lookup("p", [1.0, 0.0], 0.9)  # PARIS expired: the next best answers
    assert found is not None
    assert found[0] == LYON
    assert len(cache) == 1
    clock.advance(100)
    assert cache.lookup("p", [1.0, 0.0], -1.0) is None
    assert len(cache) == 0


def test_ttl_holds_across_instances(tmp_path: Path, clock: FakeClock) -> None:
    SemanticCache(tmp_path, clock=clock).add("p", [1.0, 0.0], PARIS, ttl=60)
    later = FakeClock(clock.now + 61)
    assert SemanticCache(tmp_path, clock=later).lookup("p", [1.0, 0.0], -1.0) is None
    assert SemanticCache(tmp_path, clock=clock).lookup("p", [1.0, 0.0], 0.9) is not None


def test_ttl_in_real_time_on_the_disk_store(tmp_path: Path) -> None:
    import time

    cache = SemanticCache(tmp_path)
    cache.add("p", [1.0, 0.0], PARIS, ttl=0.2)
    time.sleep(0.4)
    assert cache.lookup("p", [1.0, 0.0], -1.0) is None
    assert SemanticCache(tmp_path).lookup("p", [1.0, 0.0], -1.0) is None


def test_many_expiries_keep_the_right_rows(clock: FakeClock) -> None:
    cache = SemanticCache(clock=clock)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(200, 16))
    for i, vector in enumerate(vectors):
        cache.add("p", vector, {"i": i}, ttl=10 + (i % 7))
    clock.advance(13.5)  # ttl 10..13 gone (i % 7 in 0..3), 14..16 live
    for i, vector in enumerate(vectors):
        found = cache.lookup("p", vector, 0.999)
        if i % 7 <= 3:
            assert found is None or found[0]["i"] != i
        else:
            assert found is not None
            assert found[0] == {"i": i}


def test_dimension_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    cache = SemanticCache(tmp_path)
    cache.add("p", np.ones(384), PARIS)
    with pytest.raises(EmbeddingDimensionError, match="384-dim vectors, got a 768-dim") as info:
        cache.lookup("p", np.ones(768), 0.9)
    assert (info.value.expected, info.value.got) == (384, 768)
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AgentflowError)
    with pytest.raises(EmbeddingDimensionError):
        cache.add("p", np.ones(768), PARIS)
    with pytest.raises(EmbeddingDimensionError):  # the persisted partition knows its dims
        SemanticCache(tmp_path).add("p", np.ones(768), PARIS)
    cache.add("other", np.ones(768), PARIS)  # another partition may use other dims


@pytest.mark.parametrize(
    ("vector", "match"),
    [([0.0, 0.0], "non-zero"), ([math.nan, 1.0], "finite"), ([[1.0, 0.0]], "1-D"), ([], "1-D")],
)
def test_bad_vectors_are_refused(vector: list[float], match: str) -> None:
    cache = SemanticCache()
    with pytest.raises(ValueError, match=match):
        cache.add("p", vector, PARIS)
    with pytest.raises(ValueError, match=match):
        cache.lookup("p", vector, 0.5)


def test_bad_threshold_and_values_are_refused() -> None:
    cache = SemanticCache()
    with pytest.raises(ValueError, match="threshold"):
        cache.lookup("p", [1.0], 1.5)
    with pytest.raises(TypeError, match="JSON"):
        cache.add("p", [1.0], {"x": object()})
    assert len(cache) == 0


def test_max_entries_evicts_the_oldest(tmp_path: Path) -> None:
    cache = SemanticCache(tmp_path, max_entries=3)
    basis = np.eye(5)
    for i in range(5):
        cache.add("p", basis[i], {"i": i})
    assert len(cache) == 3
    for i in range(5):
        found = cache.lookup("p", basis[i], 0.99)
        assert (found is not None) == (i >= 2), i
    reopened = SemanticCache(tmp_path, max_entries=3)
    assert reopened.lookup("p", basis[0], 0.99) is None
    assert reopened.lookup("p", basis[4], 0.99) is not None
    assert len(reopened) == 3


def test_clear_one_partition_or_all(tmp_path: Path) -> None:
    cache = SemanticCache(tmp_path)
    cache.add("a", [1.0, 0.0], PARIS)
    cache.add("b", [1.0, 0.0], LYON)
    cache.clear("a")
    assert cache.lookup("a", [1.0, 0.0], -1.0) is None
    assert cache.lookup("b", [1.0, 0.0], -1.0) is not None
    assert SemanticCache(tmp_path).lookup("a", [1.0, 0.0], -1.0) is None
    cache.clear()
    assert cache.lookup("b", [1.0, 0.0], -1.0) is None
    assert SemanticCache(tmp_path).lookup("b", [1.0, 0.0], -1.0) is None


def test_a_corrupt_persisted_entry_is_dropped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DiskStore(tmp_path)
    cache = SemanticCache(store=store)
    cache.add("p", [1.0, 0.0], PARIS)
    cache.add("p", [0.0, 1.0], LYON)
    prefix = cache._partition("p").prefix
    entry = store.get(prefix + "0")
    assert entry is not None
    entry["vector"] = base64.b64encode(np.ones(3, dtype="<f4").tobytes()).decode()  # 3 dims
    store.set(prefix + "0", entry)
    with caplog.at_level(logging.WARNING, logger="agentflow.cache"):
        found = SemanticCache(store=store).lookup("p", [1.0, 0.0], -1.0)
    assert_hit(found, LYON, 0.0)
    assert store.get(prefix + "0") is None
    assert any("corrupt semantic cache entry" in r.message for r in caplog.records)


def test_threads_share_partitions_safely() -> None:
    cache = SemanticCache()
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(4, 100, 32))
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(100):
                cache.add(f"p{t % 2}", vectors[t, i], {"t": t, "i": i})
                cache.lookup(f"p{(t + 1) % 2}", vectors[t, i], 0.5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 400
    for t in range(4):
        for i in (0, 50, 99):
            assert_hit(cache.lookup(f"p{t % 2}", vectors[t, i], 0.999), {"t": t, "i": i}, 1.0)


def test_processes_adding_to_one_partition_lose_nothing(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from agentflow.cache import SemanticCache
        cache = SemanticCache(sys.argv[1])
        worker = int(sys.argv[2])
        for i in range(40):
            cache.add("p", [float(worker), float(i), 1.0], {"w": worker, "i": i})
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(w)]) for w in (1, 2, 3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    cache = SemanticCache(tmp_path)
    assert cache.lookup("p", [1.0, 0.0, 1.0], -1.0) is not None
    assert len(cache) == 120
    for worker in (1, 2, 3):
        for i in (0, 39):
            found = cache.lookup("p", [float(worker), float(i), 1.0], 0.99999)
            assert found is not None
            assert found[0] == {"w": worker, "i": i}


async def test_async_twins() -> None:
    cache = SemanticCache(store=MemoryStore())
    await cache.aadd("p", [1.0, 0.0], PARIS)
    assert_hit(await cache.alookup("p", [1.0, 0.0], 0.9), PARIS, 1.0)


def test_redis_backed_semantic_cache(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="test:semantic:")
    try:
        SemanticCache(store=store).add("p", [1.0, 0.0], PARIS, ttl=60)
        found = SemanticCache(store=store).lookup("p", [1.0, 0.0], 0.9)
        assert_hit(found, PARIS, 1.0)
    finally:
        store.clear()
        store.close()


def test_a_failing_backend_is_a_warned_miss_and_add_a_no_op(closed_port_url: str) -> None:
    cache = SemanticCache(store=RedisStore(closed_port_url))
    with pytest.warns(RuntimeWarning, match="redis"):
        assert cache.lookup("p", [1.0, 0.0], 0.5) is None
    cache.add("p", [1.0, 0.0], PARIS)  # rate-limited: no second warning, no exception
    assert cache.stats == CacheStats(hits=0, misses=1, errors=2)
    cache.close()
