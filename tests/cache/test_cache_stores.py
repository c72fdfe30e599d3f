"""The stores: one contract over memory, a real diskcache directory and a real Redis; JSON
only, tampered entries never executed or served, failures as CacheBackendError."""

from __future__ import annotations

import logging
import math
import os
import pickle
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache
import pytest
from diskcache.core import MODE_PICKLE, MODE_TEXT

from agentflow._errors import CacheBackendError
from agentflow.cache import CacheStore, DiskStore, MemoryStore, RedisStore
from tests.cache._helpers import FakeClock

ANSWER = {"text": "Paris", "message": {"role": "assistant", "content": "Paris"}, "n": 1.5}


def test_every_store_is_a_cache_store(store: CacheStore) -> None:
    assert isinstance(store, CacheStore)


def test_round_trip_delete_and_missing(store: CacheStore) -> None:
    assert store.get("k") is None
    store.set("k", ANSWER)
    assert store.get("k") == ANSWER
    store.set("k", {"text": "Lyon"})  # overwrite
    assert store.get("k") == {"text": "Lyon"}
    store.delete("k")
    assert store.get("k") is None
    store.delete("never-set")  # no error


def test_values_are_copies_not_shared_objects(store: CacheStore) -> None:
    value: dict[str, Any] = {"list": [1, 2], "ü": "ß"}
    store.set("k", value)
    value["list"].append(3)
    got = store.get("k")
    assert got == {"list": [1, 2], "ü": "ß"}
    assert got is not None
    got["list"].append(4)
    assert store.get("k") == {"list": [1, 2], "ü": "ß"}


def test_a_second_client_sees_the_same_entries(make_store: Callable[[str], CacheStore]) -> None:
    for kind in ("disk", "redis"):
        first, second = make_store(kind), make_store(kind)
        first.set("shared", ANSWER)
        assert second.get("shared") == ANSWER


def test_ttl_expires_entries_in_real_time(store: CacheStore) -> None:
    store.set("short", ANSWER, ttl=0.3)
    store.set("long", ANSWER, ttl=60)
    store.set("forever", ANSWER, None)
    assert store.get("short") == ANSWER
    time.sleep(0.6)
    assert store.get("short") is None
    assert store.get("long") == ANSWER
    assert store.get("forever") == ANSWER


def test_memory_store_ttl_with_an_injected_clock(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    store.set("k", ANSWER, ttl=10)
    clock.advance(9.9)
    assert store.get("k") == ANSWER
    clock.advance(0.2)
    assert store.get("k") is None


def test_memory_store_max_entries_drops_the_oldest_stored() -> None:
    store = MemoryStore(max_entries=2)
    store.set("a", {"v": 1})
    store.set("b", {"v": 2})
    store.set("a", {"v": 3})  # re-storing makes it the newest
    store.set("c", {"v": 4})
    assert store.get("b") is None
    assert store.get("a") == {"v": 3}
    assert store.get("c") == {"v": 4}


def test_clear_drops_every_entry(store: CacheStore) -> None:
    store.set("a", ANSWER)
    store.set("b", ANSWER, ttl=60)
    store.clear()
    assert store.get("a") is None
    assert store.get("b") is None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"obj": object()}, TypeError),
        ({"raw": b"bytes"}, TypeError),
        (["not", "a", "dict"], TypeError),
        ({"nan": math.nan}, ValueError),
    ],
)
def test_values_with_no_json_form_are_refused(store: CacheStore, value: Any, error: type) -> None:
    with pytest.raises(error, match="JSON"):
        store.set("k", value)
    assert store.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1, math.nan, "10"])
def test_bad_ttls_are_refused(store: CacheStore, ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.set("k", ANSWER, ttl=ttl)


# -- diskcache: tampered rows are never unpickled, read through a path, or served ------------


def _tamper(directory: Path, key: str, **columns: Any) -> None:
    with sqlite3.connect(directory / "cache.db") as db:
        sets = ", ".join(f"{name} = ?" for name in columns)
        changed = db.execute(f"UPDATE Cache SET {sets} WHERE key = ?", (*columns.values(), key))
        assert changed.rowcount == 1


def _rows(directory: Path, key: str) -> int:
    with sqlite3.connect(directory / "cache.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM Cache WHERE key = ?", (key,)).fetchone()[0])


class _MakeDir:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def test_a_pickle_mode_row_is_never_unpickled_and_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "cache"
    DiskStore(directory).set("k", ANSWER)
    marker = tmp_path / "pwned"
    _tamper(directory, "k", mode=MODE_PICKLE, value=pickle.dumps(_MakeDir(marker)))

    store = DiskStore(directory)
    with caplog.at_level(logging.WARNING, logger="agentflow.cache"):
        assert store.get("k") is None
    assert not marker.exists(), "the tampered pickle ran"
    assert _rows(directory, "k") == 0, "the tampered row was not deleted"
    assert any("corrupt" in r.message and "'k'" in r.message for r in caplog.records)
    store.close()

    # the control: the same tampered row does run code through diskcache's default Disk
    DiskStore(directory).set("k", ANSWER)
    _tamper(directory, "k", mode=MODE_PICKLE, value=pickle.dumps(_MakeDir(marker)))
    with diskcache.Cache(str(directory)) as vanilla:
        vanilla.get("k")
    assert marker.exists()


def test_a_row_pointing_at_a_file_is_neither_read_nor_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "cache"
    victim = tmp_path / "victim.json"
    victim.write_text('{"text": "served from outside the cache"}')
    DiskStore(directory).set("k", ANSWER)
    _tamper(directory, "k", mode=MODE_TEXT, filename="../victim.json", value=None)

    with caplog.at_level(logging.WARNING, logger="agentflow.cache"):
        assert DiskStore(directory).get("k") is None
    assert victim.read_text() == '{"text": "served from outside the cache"}'
    assert _rows(directory, "k") == 0
    assert caplog.records


@pytest.mark.parametrize("raw", ['{"text": "Par', "[1, 2]", '"a string"', "null"])
def test_corrupt_json_rows_are_dropped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    directory = tmp_path / "cache"
    store = DiskStore(directory)
    store.set("k", ANSWER)
    _tamper(directory, "k", value=raw)
    with caplog.at_level(logging.WARNING, logger="agentflow.cache"):
        assert store.get("k") is None
    assert _rows(directory, "k") == 0
    assert [r for r in caplog.records if r.levelno == logging.WARNING and "'k'" in r.message]
    store.set("k", ANSWER)  # the key is usable again
    assert store.get("k") == ANSWER


def test_disk_store_writes_no_pickle_at_all(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    store = DiskStore(directory)
    store.set("k", {"nested": {"list": [1, 2.5, None, True]}}, ttl=60)
    with sqlite3.connect(directory / "cache.db") as db:
        rows = db.execute("SELECT raw, mode, filename, typeof(value) FROM Cache").fetchall()
    assert rows == [(1, 1, None, "text")]  # raw str key, MODE_RAW, inline, text


def test_disk_failures_raise_cache_backend_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    store = DiskStore(not_a_dir)  # opening is deferred: constructing never fails
    with pytest.raises(CacheBackendError, match=r"diskcache .*file.* failed to open"):
        store.get("k")

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "cache.db").write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(CacheBackendError, match="DatabaseError"):
        DiskStore(garbage).set("k", ANSWER)


# -- Redis -----------------------------------------------------------------------------


def test_redis_store_keeps_json_under_its_prefix_with_px_ttl(redis_url: str) -> None:
    import redis

    client: Any = redis.Redis.from_url(redis_url)
    store = RedisStore(client=client, prefix="t:prefix:")
    try:
        store.set("k", ANSWER, ttl=30)
        assert client.get("t:prefix:k") == (
            b'{"text":"Paris","message":{"role":"assistant","content":"Paris"},"n":1.5}'
        )
        assert 29_000 < client.pttl("t:prefix:k") <= 30_000
        client.set("other:k", b"not ours")
        store.clear()
        assert client.get("t:prefix:k") is None
        assert client.get("other:k") == b"not ours", "clear() went beyond the prefix"
    finally:
        client.delete("other:k")
        store.close()
        client.close()


def test_redis_corrupt_value_is_dropped_and_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, prefix="t:corrupt:")
    try:
        client.set("t:corrupt:k", pickle.dumps(_MakeDir(Path("/nonexistent/x"))))
        with caplog.at_level(logging.WARNING, logger="agentflow.cache"):
            assert store.get("k") is None
        assert client.exists("t:corrupt:k") == 0
        assert caplog.records
    finally:
        store.close()
        client.close()


def test_redis_down_raises_cache_backend_error_fast(closed_port_url: str) -> None:
    store = RedisStore(closed_port_url)
    start = time.monotonic()
    operations: list[Callable[[], object]] = [
        lambda: store.get("k"),
        lambda: store.set("k", ANSWER),
        store.clear,
    ]
    for operation in operations:
        with pytest.raises(CacheBackendError, match=r"redis redis://127\.0\.0\.1:\d+/0 failed"):
            operation()
    assert time.monotonic() - start < 5
    store.close()


def test_redis_backend_label_never_shows_the_password() -> None:
    store = RedisStore("redis://:hunter2@127.0.0.1:1/3")
    assert "hunter2" not in store.backend
    assert store.backend == "redis redis://127.0.0.1:1/3"
    with pytest.raises(CacheBackendError) as info:
        store.get("k")
    assert "hunter2" not in str(info.value)
    store.close()


def test_redis_store_needs_exactly_one_of_url_or_client() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RedisStore()
