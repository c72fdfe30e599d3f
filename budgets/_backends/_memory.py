"""In-memory backend: the default, private to one process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

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

__all__ = ["MemoryBackend"]


@dataclass(slots=True)
class _State:
    spent: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    in_flight: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    reservations: dict[str, _records.Record] = field(default_factory=dict)
    expires_at: float | None = None
    next_due: int | None = None  # ms: when a hold's lease ends or a lapsed one is dropped

    def sweep(self, now: int) -> None:
        if self.next_due is not None and self.next_due <= now:
            self.next_due = _records.sweep(self.reservations, self.in_flight, now)


def _amounts(values: list[int]) -> Amounts:
    return (values[0], values[1], values[2], values[3])


class MemoryBackend(LedgerBackend):
    """Counters in a dict behind one ``threading.Lock``.

    Safe across threads and asyncio tasks of one process. The async twins take the same
    lock without a thread hop: it is held for a few microseconds and never across an
    ``await``, so it cannot stall the event loop. Share one instance between ledgers to
    share keys (e.g. one per-tenant budget seen from many runs). ``lease_s`` is the
    default lease of a hold (see ``LedgerBackend``).
    """

    _SWEEP_EVERY_S = 60.0

    def __init__(self, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.lease_s = check_lease(lease_s)
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}
        self._next_sweep = 0.0

    def _state(self, key: str, ttl_s: float | None) -> _State:
        state = self._states.get(key)
        if state is None:
            now = time.monotonic()
            # Drop expired windows when a new key appears (a new window is one), at most
            # once a minute so many tenants do not make every new key scan them all.
            if now >= self._next_sweep:
                self._next_sweep = now + self._SWEEP_EVERY_S
                for old in [
                    k for k, s in self._states.items() if s.expires_at and s.expires_at < now
                ]:
                    del self._states[old]
            state = self._states[key] = _State()
        if ttl_s is not None:
            state.expires_at = time.monotonic() + ttl_s
        return state

    def _swept(self, key: str) -> _State | None:
        state = self._states.get(key)
        if state is not None:
            state.sweep(_records.now_ms())
        return state

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
        with self._lock:
            state = self._state(key, ttl_s)
            now = _records.now_ms()
            state.sweep(now)
            refusal = check_limits(_amounts(state.spent), _amounts(state.in_flight), ask, limits)
            if refusal is not None:
                return refusal
            if reservation_id in state.reservations:
                raise ValueError(f"reservation id {reservation_id!r} is already in use")
            record = _records.new_record(ask, now, lease)
            state.reservations[reservation_id] = record
            for index in range(4):
                state.in_flight[index] += ask[index]
            if state.next_due is None or record[5] < state.next_due:
                state.next_due = record[5]
            return None

    def _close(self, key: str, reservation_id: str, actual: tuple[int, int, int] | None) -> bool:
        with self._lock:
            state = self._swept(key)
            if state is None:
                return False
            return _records.close(
                state.reservations, state.in_flight, state.spent, reservation_id, actual
            )

    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        return self._close(key, reservation_id, actual)

    def release(self, key: str, reservation_id: str) -> bool:
        return self._close(key, reservation_id, None)

    def totals(self, key: str) -> Totals:
        with self._lock:
            state = self._swept(key)
            if state is None:
                return Totals()
            return Totals(_amounts(state.spent), _amounts(state.in_flight))

    def holds(self, key: str) -> list[Hold]:
        with self._lock:
            state = self._swept(key)
            if state is None:
                return []
            now = _records.now_ms()
            records = sorted(state.reservations.items(), key=lambda item: item[1][4])
            return [_records.hold_of(rid, record, now) for rid, record in records]

    def release_stale(self, key: str, older_than_s: float) -> list[str]:
        with self._lock:
            state = self._swept(key)
            if state is None:
                return []
            return _records.release_stale(
                state.reservations, state.in_flight, _records.now_ms(), older_than_s
            )

    def hold_keys(self) -> list[str]:
        with self._lock:
            return sorted(key for key, state in self._states.items() if state.reservations)

    async def areserve(
        self,
        key: str,
        reservation_id: str,
        ask: Amounts,
        limits: Limits,
        ttl_s: float | None,
        lease_s: float | None = None,
    ) -> Refusal | None:
        return self.reserve(key, reservation_id, ask, limits, ttl_s, lease_s)

    async def asettle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        return self.settle(key, reservation_id, actual)

    async def arelease(self, key: str, reservation_id: str) -> bool:
        return self.release(key, reservation_id)

    async def atotals(self, key: str) -> Totals:
        return self.totals(key)

    async def aclaim(self, key: str, name: str, ttl_s: float | None) -> bool:
        return self.claim(key, name, ttl_s)  # a lock held for microseconds: no thread hop
