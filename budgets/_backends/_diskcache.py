"""diskcache backend: ledgers shared by the processes of one machine."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from budgets._backends import _records
from budgets._backends._base import (
    DEFAULT_LEASE_S,
    Amounts,
    Hold,
    LedgerBackend,
    Limits,
    Refusal,
    Totals,
    check_lease,
    check_limits,
)
from budgets._errors import LedgerCorrupted

__all__ = ["DiskCacheBackend"]

_PREFIX = "budgets:ledger:"
_CLAIM_PREFIX = "budgets:claim:"  # budget alerts fired (``claim``)


def _amounts(values: list[int]) -> Amounts:
    return (values[0], values[1], values[2], values[3])


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


class _State:
    """A key's JSON document: counters, the holds by id, and when the next one is due."""

    __slots__ = ("in_flight", "next_due", "records", "spent")

    def __init__(self, doc: object) -> None:
        if not isinstance(doc, dict):
            raise ValueError("the document is not a JSON object")
        spent, in_flight, res = doc.get("spent"), doc.get("in_flight"), doc.get("res")
        for name, counters in (("spent", spent), ("in_flight", in_flight)):
            if not (isinstance(counters, list) and len(counters) == 4):
                raise ValueError(f"{name!r} is not a list of 4 counters")
            if not all(_is_count(v) for v in counters):
                raise ValueError(f"{name!r} holds something else than integers >= 0")
        if not isinstance(res, dict):
            raise ValueError("'res' is not an object of reservations")
        self.records: dict[str, _records.Record] = {}
        for reservation_id, record in res.items():
            if not (
                isinstance(record, list)
                and len(record) in (4, 7)
                and all(_is_count(v) for v in record)
            ):
                raise ValueError(f"reservation {reservation_id!r} is not 4 or 7 integers >= 0")
            self.records[reservation_id] = record if len(record) == 7 else [*record, 0, 0, 0]
        next_due = doc.get("next")
        if next_due is not None and not _is_count(next_due):
            raise ValueError("'next' is not an integer")
        self.spent: list[int] = spent  # type: ignore[assignment]  # checked above
        self.in_flight: list[int] = in_flight  # type: ignore[assignment]
        self.next_due: int | None = next_due

    def sweep(self, now: int) -> None:
        if self.next_due is not None and self.next_due <= now:
            self.next_due = _records.sweep(self.records, self.in_flight, now)

    def dump(self) -> str:
        doc = {
            "spent": self.spent,
            "in_flight": self.in_flight,
            "res": self.records,
            "next": self.next_due,
        }
        return json.dumps(doc, separators=(",", ":"))


_EMPTY = {"spent": [0, 0, 0, 0], "in_flight": [0, 0, 0, 0], "res": {}}


class DiskCacheBackend(LedgerBackend):
    """Counters in a diskcache (SQLite) directory, one JSON document per ledger key.

    Every operation runs inside ``Cache.transact()``, an SQLite ``BEGIN IMMEDIATE``
    transaction: it holds the database's write lock from the read to the write, so the
    check-and-reserve (and the lapsing of holds whose lease ended) is atomic across every
    thread and process that opens the same directory.

    Values are JSON text stored inline through ``JsonDisk``: nothing is ever pickled or
    unpickled. A row budgets did not write (a pickle, a side file, malformed JSON) raises
    ``LedgerCorrupted`` naming the database file, without decoding it.

    The cache is opened with ``eviction_policy="none"``: a size-based eviction would
    silently forget what was spent. Windowed keys still expire. ``lease_s`` is the
    default lease of a hold (see ``LedgerBackend``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        timeout: float = 60.0,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        import diskcache

        from budgets._backends._jsondisk import JsonDisk

        self.lease_s = check_lease(lease_s)
        self.directory = os.fspath(directory)
        self._cache = diskcache.Cache(
            self.directory, timeout=timeout, eviction_policy="none", disk=JsonDisk
        )

    def _corrupted(self, key: str, why: object) -> LedgerCorrupted:
        database = os.path.join(self.directory, "cache.db")
        return LedgerCorrupted(
            f"the ledger database {database} holds a row for ledger key {key!r} that "
            f"budgets did not write ({why}); it was not decoded, so no code in it ran. "
            f"Delete {self.directory} to start its ledgers from zero, or restore it from a "
            "backup."
        )

    def _load(self, key: str) -> tuple[_State, float | None]:
        """The key's state and the seconds it has left (None: no expiry)."""
        from budgets._backends._jsondisk import UnsafeEntry

        try:
            raw, expire_time = self._cache.get(_PREFIX + key, expire_time=True)
        except UnsafeEntry as exc:
            raise self._corrupted(key, exc) from None
        if raw is None:
            return _State(json.loads(json.dumps(_EMPTY))), None
        ttl_s = None if expire_time is None else max(expire_time - time.time(), 0.001)
        try:
            state = _State(json.loads(raw))
        except ValueError as exc:  # json.JSONDecodeError is one
            raise self._corrupted(key, exc) from None
        return state, ttl_s

    def _store(self, key: str, state: _State, ttl_s: float | None) -> None:
        self._cache.set(_PREFIX + key, state.dump(), expire=ttl_s)

    @contextmanager
    def _swept(self, key: str, ttl_s: float | None = None) -> Iterator[tuple[_State, int]]:
        """The key's state with lapsed holds swept, written back on exit (inside one
        transaction). ``ttl_s`` None keeps the key's current expiry."""
        with self._cache.transact():
            state, left_s = self._load(key)
            now = _records.now_ms()
            before = state.dump()
            state.sweep(now)
            yield state, now
            if state.dump() != before or ttl_s is not None:
                self._store(key, state, left_s if ttl_s is None else ttl_s)

    def reserve(
        self,
        key: str,
        reservation_id: str,
        ask: Amounts,
        limits: Limits,
        ttl_s: float | None,
        lease_s: float | None = None,
    ) -> Refusal | None:
        lease = self.lease_s if lease_s is None else check_lease(lease_s)
        with self._cache.transact():
            state, left_s = self._load(key)
            now = _records.now_ms()
            state.sweep(now)
            refusal = check_limits(_amounts(state.spent), _amounts(state.in_flight), ask, limits)
            if refusal is not None:
                return refusal  # a sweep that lapsed holds is written by the next success
            if reservation_id in state.records:
                raise ValueError(f"reservation id {reservation_id!r} is already in use")
            record = _records.new_record(ask, now, lease)
            state.records[reservation_id] = record
            state.in_flight = [a + b for a, b in zip(state.in_flight, ask, strict=True)]
            if state.next_due is None or record[5] < state.next_due:
                state.next_due = record[5]
            self._store(key, state, left_s if ttl_s is None else ttl_s)
            return None

    def _close(self, key: str, reservation_id: str, actual: tuple[int, int, int] | None) -> bool:
        with self._swept(key) as (state, _):
            return _records.close(
                state.records, state.in_flight, state.spent, reservation_id, actual
            )

    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        return self._close(key, reservation_id, actual)

    def release(self, key: str, reservation_id: str) -> bool:
        return self._close(key, reservation_id, None)

    def totals(self, key: str) -> Totals:
        state, _ = self._load(key)
        state.sweep(_records.now_ms())  # read-only: the next write stores the sweep
        return Totals(_amounts(state.spent), _amounts(state.in_flight))

    def holds(self, key: str) -> list[Hold]:
        state, _ = self._load(key)
        now = _records.now_ms()
        state.sweep(now)
        records = sorted(state.records.items(), key=lambda item: item[1][4])
        return [_records.hold_of(rid, record, now) for rid, record in records]

    def release_stale(self, key: str, older_than_s: float) -> list[str]:
        with self._swept(key) as (state, now):
            return _records.release_stale(state.records, state.in_flight, now, older_than_s)

    def hold_keys(self) -> list[str]:
        from budgets._backends._jsondisk import UnsafeEntry

        try:
            names: list[Any] = list(self._cache.iterkeys())
        except UnsafeEntry as exc:
            raise self._corrupted("(a key)", exc) from None
        keys = [name[len(_PREFIX) :] for name in names if name.startswith(_PREFIX)]
        return sorted(key for key in keys if self._load(key)[0].records)

    def claim(self, key: str, name: str, ttl_s: float | None) -> bool:
        """diskcache's ``add``: set-if-absent inside one SQLite transaction, so one
        process of all those sharing the directory wins."""
        return bool(self._cache.add(f"{_CLAIM_PREFIX}{key}\n{name}", "1", expire=ttl_s))

    def close(self) -> None:
        self._cache.close()
