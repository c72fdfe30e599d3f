"""The one interface every ledger backend implements.

A backend stores, per ledger key, four counters twice over — what was *spent* (settled)
and what is *in flight* (reserved, not yet settled) — plus the open reservations. It deals
in integers only: the ledger converts dollars to whole nano-dollars before calling it,
which keeps the arithmetic exact everywhere, including inside Redis' Lua (whose numbers
are doubles, exact up to 2**53).

The check-and-reserve step must be atomic for all concurrent callers the backend is meant
for: threads in one process (memory), processes on one machine (diskcache), machines
sharing a server (Redis). That single property is what makes overspending impossible.

Every reservation has a lease. A hold whose lease ran out (its process crashed, or its
call outlived the lease) *lapses*: it stops counting as in flight, in the same atomic step
as the next operation on its key. A lapsed hold is remembered for one more lease, so a
late ``settle`` still records the actual spend (and ``release`` does nothing more); after
that it is forgotten. A crashed process therefore holds at most its in-flight holds, for
at most ``lease_s``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "DEFAULT_LEASE_S",
    "Amounts",
    "Hold",
    "LedgerBackend",
    "Limits",
    "Refusal",
    "Totals",
    "check_lease",
    "check_limits",
]

DEFAULT_LEASE_S = 600.0
"""How long a hold counts as in flight unless settled or released first (10 minutes)."""

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


@dataclass(frozen=True, slots=True)
class Hold:
    """One open or lapsed reservation, as ``LedgerBackend.holds`` lists it.

    ``amounts`` is (nano-USD, input tokens, output tokens, calls); ``age_s`` the seconds
    since it was made; ``expires_in_s`` the seconds its lease has left, negative once it
    lapsed (then it no longer counts as in flight). A hold from before leases existed has
    no lease: ``expires_in_s`` is ``math.inf`` and ``age_s`` unknown (``math.inf``).
    """

    id: str
    amounts: Amounts
    age_s: float
    expires_in_s: float

    @property
    def lapsed(self) -> bool:
        return self.expires_in_s <= 0

    @property
    def usd(self) -> Decimal:
        return Decimal(self.amounts[0]).scaleb(-9).normalize()


def check_lease(lease_s: float) -> float:
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float):
        raise TypeError(f"lease_s must be a number of seconds, got {lease_s!r}")
    if not (math.isfinite(lease_s) and lease_s >= 0.001):
        raise ValueError(
            f"lease_s must be a finite number of seconds >= 0.001, got {lease_s!r}; give "
            "the longest a call may take (e.g. 600)"
        )
    return float(lease_s)


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


# the claims of backends that do not make their own (``LedgerBackend.claim``)
_local_claims: weakref.WeakKeyDictionary[LedgerBackend, dict[tuple[str, str], float]] = (
    weakref.WeakKeyDictionary()
)
_local_claims_lock = threading.Lock()


class LedgerBackend(ABC):
    """Where ledgers keep their counters. Implement the four sync methods; the async
    twins default to running them in a worker thread.

    ``reserve`` must check ``limits`` and record the reservation in one atomic step, and
    record nothing when it refuses. ``settle`` and ``release`` return False when the
    reservation is unknown (already settled or released), True otherwise. ``ttl_s`` asks
    the backend to drop the key's state after that many seconds (windowed budgets); a
    backend may keep it longer. ``lease_s`` is the hold's lease (None: the backend's
    ``lease_s``); expired holds must stop counting in the same atomic step that checks
    the limits, and settling a lapsed hold records the actual spend without taking the
    hold off in flight a second time.
    """

    max_limit: int | None = None
    """The largest limit this backend can compare exactly, in backend units (None = any)."""

    lease_s: float = DEFAULT_LEASE_S
    """The lease of a hold when the ledger gives none."""

    @abstractmethod
    def reserve(
        self,
        key: str,
        reservation_id: str,
        ask: Amounts,
        limits: Limits,
        ttl_s: float | None,
        lease_s: float | None = None,
    ) -> Refusal | None: ...

    @abstractmethod
    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool: ...

    @abstractmethod
    def release(self, key: str, reservation_id: str) -> bool: ...

    @abstractmethod
    def totals(self, key: str) -> Totals: ...

    def holds(self, key: str) -> list[Hold]:
        """The key's open and lapsed holds, oldest first."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its holds")

    def release_stale(self, key: str, older_than_s: float) -> list[str]:
        """Drop the key's holds made at least ``older_than_s`` seconds ago, lapsed or
        not; return their ids. A settle of one of them afterwards raises
        ``ReservationError``: release only the holds of processes you know are gone."""
        raise NotImplementedError(f"{type(self).__name__} cannot release stale holds")

    def hold_keys(self) -> list[str]:
        """Every key with an open or lapsed hold, sorted."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    def claim(self, key: str, name: str, ttl_s: float | None) -> bool:
        """Set the flag ``name`` of ``key`` if it is not set yet, atomically: True for the
        one caller that set it (budget alerts fire once). ``ttl_s`` drops it after that
        many seconds (None: never). This default is private to the process (a backend
        shared across processes should override it with its own set-if-absent)."""
        now = time.monotonic()
        with _local_claims_lock:
            claims = _local_claims.setdefault(self, {})
            until = claims.get((key, name))
            if until is not None and until > now:
                return False
            claims[(key, name)] = math.inf if ttl_s is None else now + ttl_s
            return True

    async def aclaim(self, key: str, name: str, ttl_s: float | None) -> bool:
        return await asyncio.to_thread(self.claim, key, name, ttl_s)

    async def areserve(
        self,
        key: str,
        reservation_id: str,
        ask: Amounts,
        limits: Limits,
        ttl_s: float | None,
        lease_s: float | None = None,
    ) -> Refusal | None:
        return await asyncio.to_thread(
            self.reserve, key, reservation_id, ask, limits, ttl_s, lease_s
        )

    async def asettle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        return await asyncio.to_thread(self.settle, key, reservation_id, actual)

    async def arelease(self, key: str, reservation_id: str) -> bool:
        return await asyncio.to_thread(self.release, key, reservation_id)

    async def atotals(self, key: str) -> Totals:
        return await asyncio.to_thread(self.totals, key)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or files; the backend must not be used afterwards."""
