"""Reservation records with leases, shared by the memory and diskcache backends.

A record is seven integers: the four amounts (nano-USD, input, output, calls), when it
was made and when its lease ends (milliseconds since the epoch), and whether it lapsed
(0 live, 1 lapsed). A lapsed record no longer counts as in flight; it is kept for one
more lease so a late settle can still record the actual spend, then forgotten. A record
from before leases (four integers) has no lease: created and expires are 0, it never
lapses on its own, and ``release_stale`` can drop it. Redis runs the same rules in Lua.

The functions below mutate the caller's ``records`` and ``in_flight`` in place and must
run inside the backend's lock or transaction.
"""

from __future__ import annotations

import math
import time

from budgets._backends._base import Amounts, Hold

__all__ = [
    "Record",
    "close",
    "due",
    "hold_of",
    "new_record",
    "now_ms",
    "release_stale",
    "sweep",
]

Record = list[int]
"""[usd, input, output, calls, created_ms, expires_ms, lapsed]"""


def now_ms() -> int:
    return int(time.time() * 1000)


def new_record(ask: Amounts, now: int, lease_s: float) -> Record:
    return [*ask, now, now + max(int(lease_s * 1000), 1), 0]


def due(record: Record) -> int | None:
    """When the record next changes by itself: its lease ends (live) or it is forgotten
    (lapsed, one lease later); None for a record without a lease."""
    created, expires, lapsed = record[4], record[5], record[6]
    if expires == 0:
        return None
    return expires + (expires - created) if lapsed else expires


def _take(in_flight: list[int], record: Record) -> None:
    for index in range(4):
        in_flight[index] -= record[index]


def sweep(records: dict[str, Record], in_flight: list[int], now: int) -> int | None:
    """Lapse the holds whose lease ended, forget lapsed ones kept long enough; return
    when the next record is due (None: none ever)."""
    soonest: int | None = None
    for reservation_id, record in list(records.items()):
        when = due(record)
        if when is not None and when <= now and not record[6]:
            _take(in_flight, record)
            record[6] = 1
            when = due(record)
        if when is not None and when <= now:
            del records[reservation_id]
        elif when is not None and (soonest is None or when < soonest):
            soonest = when
    return soonest


def close(
    records: dict[str, Record],
    in_flight: list[int],
    spent: list[int],
    reservation_id: str,
    actual: tuple[int, int, int] | None,
) -> bool:
    """Settle (``actual`` given) or release a hold; False when it is not there. A lapsed
    hold left in flight already: settling it only records the spend."""
    record = records.pop(reservation_id, None)
    if record is None:
        return False
    if not record[6]:
        _take(in_flight, record)
    if actual is not None:
        for index in range(3):
            spent[index] += actual[index]
        spent[3] += record[3]
    return True


def release_stale(
    records: dict[str, Record], in_flight: list[int], now: int, older_than_s: float
) -> list[str]:
    older_than = older_than_s * 1000
    gone = [rid for rid, record in records.items() if now - record[4] >= older_than]
    for reservation_id in gone:
        record = records.pop(reservation_id)
        if not record[6]:
            _take(in_flight, record)
    return gone


def hold_of(reservation_id: str, record: Record, now: int) -> Hold:
    amounts: Amounts = (record[0], record[1], record[2], record[3])
    if record[5] == 0:
        return Hold(reservation_id, amounts, math.inf, math.inf)
    return Hold(reservation_id, amounts, (now - record[4]) / 1000, (record[5] - now) / 1000)
