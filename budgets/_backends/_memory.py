"""In-memory backend: the default, private to one process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from budgets._backends._base import (
    ZERO_AMOUNTS,
    Amounts,
    LedgerBackend,
    Limits,
    Refusal,
    Totals,
    check_limits,
)

__all__ = ["MemoryBackend"]


@dataclass(slots=True)
class _State:
    spent: Amounts = ZERO_AMOUNTS
    in_flight: Amounts = ZERO_AMOUNTS
    reservations: dict[str, Amounts] = field(default_factory=dict)
    expires_at: float | None = None


def _add(a: Amounts, b: Amounts, sign: int = 1) -> Amounts:
    return (a[0] + sign * b[0], a[1] + sign * b[1], a[2] + sign * b[2], a[3] + sign * b[3])


class MemoryBackend(LedgerBackend):
    """Counters in a dict behind one ``threading.Lock``.

    Safe across threads and asyncio tasks of one process. The async twins take the same
    lock without a thread hop: it is held for a few microseconds and never across an
    ``await``, so it cannot stall the event loop. Share one instance between ledgers to
    share keys (e.g. one per-tenant budget seen from many runs).
    """

    _SWEEP_EVERY_S = 60.0

    def __init__(self) -> None:
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

    def reserve(
        self, key: str, reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> Refusal | None:
        with self._lock:
            state = self._state(key, ttl_s)
            refusal = check_limits(state.spent, state.in_flight, ask, limits)
            if refusal is not None:
                return refusal
            if reservation_id in state.reservations:
                raise ValueError(f"reservation id {reservation_id!r} is already in use")
            state.reservations[reservation_id] = ask
            state.in_flight = _add(state.in_flight, ask)
            return None

    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        with self._lock:
            state = self._states.get(key)
            reserved = None if state is None else state.reservations.pop(reservation_id, None)
            if state is None or reserved is None:
                return False
            state.in_flight = _add(state.in_flight, reserved, -1)
            state.spent = _add(state.spent, (*actual, reserved[3]))
            return True

    def release(self, key: str, reservation_id: str) -> bool:
        with self._lock:
            state = self._states.get(key)
            reserved = None if state is None else state.reservations.pop(reservation_id, None)
            if state is None or reserved is None:
                return False
            state.in_flight = _add(state.in_flight, reserved, -1)
            return True

    def totals(self, key: str) -> Totals:
        with self._lock:
            state = self._states.get(key)
            return Totals() if state is None else Totals(state.spent, state.in_flight)

    async def areserve(
        self, key: str, reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> Refusal | None:
        return self.reserve(key, reservation_id, ask, limits, ttl_s)

    async def asettle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        return self.settle(key, reservation_id, actual)

    async def arelease(self, key: str, reservation_id: str) -> bool:
        return self.release(key, reservation_id)

    async def atotals(self, key: str) -> Totals:
        return self.totals(key)
