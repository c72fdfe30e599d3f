"""No code from disk: a ledger row budgets did not write is never decoded.

diskcache's default ``Disk`` unpickles any row whose mode column says pickle. The
diskcache ledger stores JSON text through ``JsonDisk``, so a pickled row planted in its
SQLite database (one that would create a marker file when unpickled) raises
``LedgerCorrupted`` naming the file, and the marker never appears. Redis replies and
stored values are checked the same way.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

from budgets import (
    Budget,
    BudgetError,
    DiskCacheBackend,
    Ledger,
    LedgerCorrupted,
    RedisBackend,
)

D = Decimal
MODE_PICKLE = 4  # diskcache.core.MODE_PICKLE


class _Payload:
    """Unpickling this calls os.system, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _plant(database: Path, key: str, value: bytes, mode: int = MODE_PICKLE) -> None:
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM Cache WHERE key = ?", (key,))
        db.execute(
            "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count,"
            " tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, NULL, ?)",
            (key, time.time(), time.time(), mode, sqlite3.Binary(value)),
        )
    db.close()


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    marker = tmp_path / "pwned"
    backend = DiskCacheBackend(directory)
    ledger = Ledger(Budget(max_usd=1), backend=backend, key="tenant:u1")
    ledger.settle(ledger.reserve(usd=D("0.2")), usd=D("0.1"), input_tokens=1, output_tokens=1)

    # the attacker replaces the tenant's row by a pickle, and plants another for a new key
    blob = pickle.dumps(_Payload(marker))
    _plant(directory / "cache.db", "budgets:ledger:tenant:u1", blob)
    _plant(directory / "cache.db", "budgets:ledger:tenant:u2", blob)

    for read in (
        ledger.spent,
        ledger.holds,
        lambda: ledger.reserve(usd=D("0.1")),
        lambda: Ledger(Budget(max_usd=1), backend=backend, key="tenant:u2").remaining(),
        backend.hold_keys,
    ):
        with pytest.raises(LedgerCorrupted) as refused:
            read()
        assert str(directory / "cache.db") in str(refused.value)
        assert "Delete" in str(refused.value)
        assert "restore it from a backup" in str(refused.value)
    assert not marker.exists()  # no code ran
    assert isinstance(refused.value, BudgetError)

    # unpickling the very same row the default way would have run it: the test is real
    pickle.loads(blob)
    assert marker.exists()
    backend.close()


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b'{"spent": [0, 0, 0], "in_flight": [0, 0, 0, 0], "res": {}}',
        b'{"spent": [0, 0, 0, 0], "in_flight": [0, 0, 0, -5], "res": {}}',
        b'{"spent": [0, 0, 0, 0], "in_flight": [0, 0, 0, 0], "res": {"r": ["1", 0, 0, 1]}}',
        b'{"spent": [0, 0, 0, 0.5], "in_flight": [0, 0, 0, 0], "res": {}}',
    ],
)
def test_malformed_json_is_refused(tmp_path: Path, document: bytes) -> None:
    directory = tmp_path / "ledger"
    backend = DiskCacheBackend(directory)
    ledger = Ledger(Budget(max_usd=1), backend=backend, key="k")
    ledger.release(ledger.reserve(usd=D("0.1")))
    with sqlite3.connect(directory / "cache.db") as db:
        db.execute(
            "UPDATE Cache SET value = ? WHERE key = 'budgets:ledger:k'", (document.decode(),)
        )
    db.close()
    with pytest.raises(LedgerCorrupted, match="did not write"):
        ledger.reserve(usd=D("0.1"))
    backend.close()


def test_redis_refuses_malformed_counters_and_holds(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    backend = RedisBackend(redis_url, prefix="tamper:")
    ledger = Ledger(Budget(max_usd=1), backend=backend, key="k")
    res = ledger.reserve(usd=D("0.1"))

    client.hset("tamper:{k}", "s:usd", "1e3")  # not an integer: not "0"
    for read in (ledger.spent, lambda: ledger.reserve(usd=D("0.1")), ledger.holds):
        with pytest.raises(LedgerCorrupted, match=r"s:usd .*DEL"):
            read()
    client.hset("tamper:{k}", "s:usd", "0")

    client.hset("tamper:{k}:res", res.id, "cos(1) 0 0 1")
    with pytest.raises(LedgerCorrupted, match="malformed"):
        ledger.holds()
    with pytest.raises(LedgerCorrupted, match="malformed"):
        ledger.settle(res, usd=D("0.1"), input_tokens=0, output_tokens=0)
    client.delete("tamper:{k}:res")

    client.delete("tamper:{k}")
    client.set("tamper:{k}", b"\x80\x04pickle")  # the wrong type altogether
    with pytest.raises(LedgerCorrupted):
        ledger.spent()
    client.delete("tamper:{k}")
    assert ledger.spent().usd == 0
    backend.close()
    client.close()
