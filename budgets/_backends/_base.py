"""The one interface every ledger backend implements.

A backend stores, per ledger key, four counters twice over — what was *spent* (settled)
and what is *in flight* (reserved, not yet settled) — plus the open reservations. It deals
in integers only: the ledger converts dollars to whole nano-dollars before calling it,
which keeps the arithmetic exact everywhere, including inside Redis' Lua (whose numbers
are doubles, exact up to 2**53).

The check-and-reserve step must be atomic for all concurrent callers the backend is meant
for: threads in one process (memory), processes on one machine (diskcache), machines
sharing a server (Redis). That single property is what makes overspending impossible.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["Amounts", "LedgerBackend", "Limits", "Refusal", "Totals", "check_limits"]

Amounts = tuple[int, int, int, int]
"""(nano-USD, input tokens, output tokens, calls), in ``budgets.LIMIT_NAMES`` order."""

Limits = tuple[int | None, int | None, int | None, int | None]
"""The limits in the same units and order; ``None`` is unlimited."""

ZERO_AMOUNTS: Amounts = (0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation was refused: the index of the first limit that said no, and what
    that counter held (spent + in flight) at the time."""

    index: int
    used: int


@dataclass(frozen=True, slots=True)
class Totals:
    spent: Amounts = ZERO_AMOUNTS
    in_flight: Amounts = ZERO_AMOUNTS


def check_limits(
    spent: Amounts, in_flight: Amounts, ask: Amounts, limits: Limits
) -> Refusal | None:
    """The admission rule, shared by the Python backends (Redis runs the same rule in Lua).

    A call is admitted when, for every set limit, spent + in flight + asked <= limit.
    """
    for index, limit in enumerate(limits):
        if limit is None:
            continue
        used = spent[index] + in_flight[index]
        if used + ask[index] > limit:
            return Refusal(index, used)
    return None


class LedgerBackend(ABC):
    """Where ledgers keep their counters. Implement the four sync methods; the async
    twins default to running them in a worker thread.

    ``reserve`` must check ``limits`` and record the reservation in one atomic step, and
    record nothing when it refuses. ``settle`` and ``release`` return False when the
    reservation is unknown (already settled or released), True otherwise. ``ttl_s`` asks
    the backend to drop the key's state after that many seconds (windowed budgets); a
    backend may keep it longer.
    """

    max_limit: int | None = None
    """The largest limit this backend can compare exactly, in backend units (None = any)."""

    @abstractmethod
    def reserve(
        self, key: str, reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> Refusal | None: ...

    @abstractmethod
    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool: ...

    @abstractmethod
    def release(self, key: str, reservation_id: str) -> bool: ...

    @abstractmethod
    def totals(self, key: str) -> Totals: ...

    async def areserve(
        self, key: str, reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> Refusal | None:
        return await asyncio.to_thread(self.reserve, key, reservation_id, ask, limits, ttl_s)

    async def asettle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        return await asyncio.to_thread(self.settle, key, reservation_id, actual)

    async def arelease(self, key: str, reservation_id: str) -> bool:
        return await asyncio.to_thread(self.release, key, reservation_id)

    async def atotals(self, key: str) -> Totals:
        return await asyncio.to_thread(self.totals, key)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or files; the backend must not be used afterwards."""
