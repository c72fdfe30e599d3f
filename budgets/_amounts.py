"""The ledger's values and its unit: whole nano-dollars.

``Spend``, ``Remaining`` and ``Reservation`` are what the ledger hands out. Dollars reach
a backend as integers of 1e-9 USD, rounded up (a hold or a cost is never under-counted),
which keeps every backend's arithmetic exact, Redis' Lua (doubles) included.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from budgets._backends._base import Amounts
from budgets._values import ZERO

__all__ = [
    "Remaining",
    "Reservation",
    "Spend",
    "UsdLike",
    "as_count",
    "as_usd",
    "from_nano",
    "spend_of",
    "to_nano",
]

UsdLike = Decimal | int | float | str
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Spend:
    """Totals of a ledger: settled (``Ledger.spent``) or held (``Ledger.in_flight``)."""

    usd: Decimal = ZERO
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0


@dataclass(frozen=True, slots=True)
class Remaining:
    """What each limit still allows (limit - settled - in flight, never below 0);
    ``None`` where the budget sets no limit."""

    usd: Decimal | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    calls: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on a ledger. Close it exactly once: ``settle`` or ``release``.

    ``key`` is where the hold lives in the backend (for a windowed budget, the window it
    was made in, so a call that straddles midnight settles into the day it started).
    """

    id: str
    ledger_key: str
    key: str
    usd: Decimal
    input_tokens: int
    output_tokens: int
    calls: int


def as_usd(value: UsdLike, what: str) -> Decimal:
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{what} must be a finite amount of USD >= 0, got {value!r}")
    return amount


def as_count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an int >= 0, got {value!r}")
    return value


def to_nano(usd: Decimal, rounding: str = ROUND_CEILING) -> int:
    return int(usd.scaleb(9).to_integral_value(rounding=rounding))


def from_nano(nano: int) -> Decimal:
    # 5000000 -> 0.005, not 0.005000000 (what messages and reprs show); 10E+0 -> 10
    usd = Decimal(nano).scaleb(-9).normalize()
    return usd.quantize(_ONE) if usd.as_tuple().exponent > 0 else usd  # type: ignore[operator]


def spend_of(amounts: Amounts) -> Spend:
    return Spend(from_nano(amounts[0]), amounts[1], amounts[2], amounts[3])
