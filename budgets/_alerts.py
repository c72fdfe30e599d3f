"""Budget alerts: soft thresholds that fire once each per ledger key and window.

``Budget(max_usd=5, window=timedelta(days=1), alerts=(0.5, 0.8, 1.0))`` asks to be told
when the settled spend of any of its limits reaches 50 %, 80 % and 100 % of it. After a
settle, ``Ledger.alerts_due()`` reads the key's settled totals, finds every threshold
reached, and *claims* each one in the backend with an atomic set-if-absent (a dict entry
under the memory backend's lock, diskcache's ``add`` inside SQLite, Redis ``SET NX``):
only the caller that wins the claim gets the ``BudgetAlert``. So a threshold fires once
per (ledger key, window, limit, threshold) across the threads of a process, and across
processes and machines that share a diskcache or Redis backend. A third-party backend
without ``claim`` falls back to a process-local set: once per process.

What fires is the caller's business: agentflow turns each alert into a span event, a
metric and a user callback (``af.configure(on_budget_alert=...)``).
"""

from __future__ import annotations

import functools
import math
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from budgets._amounts import from_nano
from budgets._backends._base import Amounts, LedgerBackend, Limits
from budgets._budget import LIMIT_NAMES

__all__ = [
    "BudgetAlert",
    "Point",
    "alert_of",
    "forget_seen",
    "marker",
    "points",
    "remember",
    "unseen",
]


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A soft threshold of a budget was reached (once per ledger key, window, limit and
    threshold).

    ``budget`` is the ledger's name (e.g. ``"tenant 'alice' budget"``), ``key`` its
    backend key (``"tenant:alice"``), ``limit`` the limit's name (``"max_usd"``, ...),
    ``threshold`` the fraction reached (0.8), ``spent`` the settled amount that reached it
    (``Decimal`` dollars for ``max_usd``, an int otherwise) and ``maximum`` the limit.
    ``window_start`` is when the budget's window began (UTC), None for a budget without
    a window.
    """

    budget: str
    key: str
    limit: str
    threshold: float
    spent: Decimal | int
    maximum: Decimal | int
    window_start: datetime | None = None

    @property
    def fraction(self) -> float:
        """``spent / maximum`` (may pass 1: the engine's count is recorded as is)."""
        return float(Decimal(self.spent) / Decimal(self.maximum))

    def __str__(self) -> str:
        unit = "$" if self.limit == "max_usd" else ""
        return (
            f"{self.budget} reached {self.threshold:.0%} of {self.limit}: "
            f"spent {unit}{self.spent} of {unit}{self.maximum}"
        )


@dataclass(frozen=True, slots=True)
class Point:
    """One threshold of one limit: reached when ``spent[index] >= need`` (backend units),
    claimed under ``marker``."""

    index: int
    threshold: float
    need: int
    marker: str


@functools.lru_cache(maxsize=1024)
def points(thresholds: tuple[float, ...], limits: Limits) -> tuple[Point, ...]:
    """Every (set limit, threshold) pair of a budget, with the amount that reaches it."""
    return tuple(
        # exact: 0.7 × 10 is 7.000000000000001 in floats, which would need 8
        Point(index, t, math.ceil(Fraction(repr(t)) * limit), marker(index, t))
        for index, limit in enumerate(limits)
        if limit is not None
        for t in thresholds
    )


def marker(limit_index: int, threshold: float) -> str:
    """The name of one threshold's claim, unique within a ledger key (and window)."""
    return f"alert:{LIMIT_NAMES[limit_index]}:{threshold!r}"


def alert_of(
    name: str,
    key: str,
    index: int,
    threshold: float,
    limits: Limits,
    spent: Amounts,
    window: timedelta | None,
    window_index: int | None,
) -> BudgetAlert:
    limit = limits[index]
    assert limit is not None  # only a set limit is checked
    start = None
    if window is not None and window_index is not None:
        start = datetime.fromtimestamp(0, UTC) + window * window_index
    if index == 0:
        return BudgetAlert(
            name, key, LIMIT_NAMES[0], threshold, from_nano(spent[0]), from_nano(limit), start
        )
    return BudgetAlert(name, key, LIMIT_NAMES[index], threshold, spent[index], limit, start)


# --- claims already made or lost, per backend: never asked for twice by this process -----
_seen: weakref.WeakKeyDictionary[LedgerBackend, dict[tuple[str, str], float]] = (
    weakref.WeakKeyDictionary()
)
_seen_lock = threading.Lock()
_SEEN_MAX = 10_000


def unseen(backend: LedgerBackend, key: str, candidates: tuple[Point, ...]) -> list[Point]:
    """The points of ``key`` whose claim this process has neither made nor lost."""
    now = time.monotonic()
    with _seen_lock:
        names = _seen.get(backend)
        if names is None:
            return list(candidates)
        return [p for p in candidates if names.get((key, p.marker), 0.0) <= now]


def remember(backend: LedgerBackend, key: str, name: str, ttl_s: float | None) -> None:
    """This process made or lost the claim ``name`` of ``key``: it need not ask the
    backend again until the claim's window has passed."""
    now = time.monotonic()
    with _seen_lock:
        names = _seen.setdefault(backend, {})
        if len(names) >= _SEEN_MAX:
            for old in [n for n, until in names.items() if until <= now]:
                del names[old]
            if len(names) >= _SEEN_MAX:
                names.clear()  # only a shortcut: the backend's claim is the truth
        names[(key, name)] = math.inf if ttl_s is None else now + ttl_s


def forget_seen() -> None:
    """Forget which claims this process made (tests)."""
    with _seen_lock:
        _seen.clear()
