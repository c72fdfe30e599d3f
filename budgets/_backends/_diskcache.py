"""diskcache backend: ledgers shared by the processes of one machine."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from budgets._backends._base import (
    ZERO_AMOUNTS,
    Amounts,
    LedgerBackend,
    Limits,
    Refusal,
    Totals,
    check_limits,
)

__all__ = ["DiskCacheBackend"]

_PREFIX = "budgets:ledger:"


def _amounts(values: list[int]) -> Amounts:
    return (values[0], values[1], values[2], values[3])


class DiskCacheBackend(LedgerBackend):
    """Counters in a diskcache (SQLite) directory, one JSON document per ledger key.

    Every operation runs inside ``Cache.transact()``, an SQLite ``BEGIN IMMEDIATE``
    transaction: it holds the database's write lock from the read to the write, so the
    check-and-reserve is atomic across every thread and process that opens the same
    directory. Values are JSON strings (diskcache stores ``str`` as text, never pickled).

    The cache is opened with ``eviction_policy="none"``: a size-based eviction would
    silently forget what was spent. Windowed keys still expire.
    """

    def __init__(self, directory: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        import diskcache

        self.directory = os.fspath(directory)
        self._cache = diskcache.Cache(self.directory, timeout=timeout, eviction_policy="none")

    def _load(self, key: str) -> tuple[dict[str, Any], float | None]:
        """The key's state and the seconds it has left (None: no expiry)."""
        raw, expire_time = self._cache.get(_PREFIX + key, expire_time=True)
        if raw is None:
            fresh = {"spent": list(ZERO_AMOUNTS), "in_flight": list(ZERO_AMOUNTS), "res": {}}
            return fresh, None
        ttl_s = None if expire_time is None else max(expire_time - time.time(), 0.001)
        state: dict[str, Any] = json.loads(raw)
        return state, ttl_s

    def _store(self, key: str, state: dict[str, Any], ttl_s: float | None) -> None:
        self._cache.set(_PREFIX + key, json.dumps(state, separators=(",", ":")), expire=ttl_s)

    def reserve(
        self, key: str, reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> Refusal | None:
        with self._cache.transact():
            state, _ = self._load(key)
            refusal = check_limits(
                _amounts(state["spent"]), _amounts(state["in_flight"]), ask, limits
            )
            if refusal is not None:
                return refusal
            if reservation_id in state["res"]:
                raise ValueError(f"reservation id {reservation_id!r} is already in use")
            state["res"][reservation_id] = list(ask)
            state["in_flight"] = [a + b for a, b in zip(state["in_flight"], ask, strict=True)]
            self._store(key, state, ttl_s)
            return None

    def _close(self, key: str, reservation_id: str, actual: tuple[int, int, int] | None) -> bool:
        with self._cache.transact():
            state, ttl_s = self._load(key)
            reserved = state["res"].pop(reservation_id, None)
            if reserved is None:
                return False
            state["in_flight"] = [a - b for a, b in zip(state["in_flight"], reserved, strict=True)]
            if actual is not None:
                spent = state["spent"]
                state["spent"] = [
                    spent[0] + actual[0],
                    spent[1] + actual[1],
                    spent[2] + actual[2],
                    spent[3] + reserved[3],
                ]
            self._store(key, state, ttl_s)  # keep the window's expiry
            return True

    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        return self._close(key, reservation_id, actual)

    def release(self, key: str, reservation_id: str) -> bool:
        return self._close(key, reservation_id, None)

    def totals(self, key: str) -> Totals:
        state, _ = self._load(key)
        return Totals(_amounts(state["spent"]), _amounts(state["in_flight"]))

    def close(self) -> None:
        self._cache.close()
