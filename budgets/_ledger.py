"""Ledger: reserve the worst case before a call, settle the actual cost after it.

Why reserve first: two concurrent calls that each check "is there money left?" and then
spend would both pass the check and overspend together. The ledger instead holds the
call's worst case (prompt tokens counted, ``max_tokens`` of output, the price of both) as
*in flight* in one atomic step that also checks every limit; when the call returns, the
actual amounts replace the hold (``settle``), or the hold is dropped when the call failed
(``release``). Spent + in flight never exceeds a limit at admission time, however many
threads, tasks, processes or machines share the ledger's backend.

Every hold has a lease (``lease_s``, 10 minutes unless the ledger or backend says
otherwise): a process killed mid-call cannot keep its holds in flight for longer than
that. A hold whose lease lapsed stops counting as in flight; settling it later still
records the actual spend, releasing it does nothing more, and neither counts it twice.

Dollars are counted in whole nano-dollars (1e-9 USD), rounded up, so the ledger can only
over-count, by at most a nano-dollar per amount; this keeps every backend exact,
including Redis' Lua scripts (whose numbers are doubles).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from budgets import _alerts
from budgets._alerts import BudgetAlert
from budgets._amounts import (
    Remaining,
    Reservation,
    Spend,
    UsdLike,
    as_count,
    as_usd,
    from_nano,
    spend_of,
    to_nano,
)
from budgets._backends._base import (
    Amounts,
    Hold,
    LedgerBackend,
    Limits,
    Refusal,
    Totals,
    check_lease,
)
from budgets._backends._memory import MemoryBackend
from budgets._budget import LIMIT_NAMES, Budget
from budgets._errors import BudgetExceeded, ReservationError
from budgets._values import ZERO

__all__ = ["Ledger", "areserve_all", "reserve_all"]

MICROSECOND = timedelta(microseconds=1)


class Ledger:
    """Enforces one ``Budget`` over a backend key.

    ``name`` says which budget refused in ``BudgetExceeded`` (e.g. ``"run 'research'"``).
    ``backend=None`` gives an in-memory backend private to this ledger; pass a shared
    backend and a ``key`` (e.g. ``"tenant:u1"``) to share the spend with every ledger on
    that key, in this process or (diskcache, Redis) others. For a windowed budget the key
    gets the window's index appended, so each window starts from zero.

    ``clock`` (seconds since the epoch) decides the window; ``error`` is the
    ``BudgetExceeded`` subclass raised on refusal (agentflow raises its own).
    ``lease_s`` is how long a hold counts as in flight unless settled or released first
    (None: the backend's ``lease_s``, 600 s by default); give the longest a call may
    take. A crashed process's holds stop counting once their lease lapses.
    """

    def __init__(
        self,
        budget: Budget,
        name: str = "budget",
        backend: LedgerBackend | None = None,
        key: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        error: type[BudgetExceeded] = BudgetExceeded,
        lease_s: float | None = None,
    ) -> None:
        self.budget = budget
        self.lease_s = None if lease_s is None else check_lease(lease_s)
        self.name = name
        self.backend = MemoryBackend() if backend is None else backend
        self.key = uuid.uuid4().hex if key is None else key
        self._clock = clock
        self._error = error
        usd = None if budget.max_usd is None else to_nano(budget.max_usd, ROUND_FLOOR)
        self._limits: Limits = (
            usd,
            budget.max_input_tokens,
            budget.max_output_tokens,
            budget.max_calls,
        )
        if usd == 0:
            raise ValueError(
                f"max_usd={budget.max_usd} is below the ledger's resolution of 1e-9 USD; "
                "give at least 0.000000001, or leave max_usd unset for no limit"
            )
        cap = self.backend.max_limit
        for index, limit in enumerate(self._limits):
            if cap is not None and limit is not None and limit > cap:
                most = f"${from_nano(cap):,}" if index == 0 else f"{cap:,}"
                raise ValueError(
                    f"{LIMIT_NAMES[index]} is too large for {type(self.backend).__name__}, "
                    f"which compares at most {most} exactly; split the budget or use "
                    "another backend"
                )
        self._window_us = None if budget.window is None else budget.window // MICROSECOND
        self._alert_points = _alerts.points(budget.alerts, self._limits) if budget.alerts else ()

    def __repr__(self) -> str:
        return f"Ledger({self.budget!r}, name={self.name!r}, key={self.key!r})"

    def _where(self) -> tuple[str, float | None]:
        """The backend key for now, and how long the backend should keep it."""
        if self._window_us is None:
            return self.key, None
        now_us = int(self._clock() * 1_000_000)
        index = now_us // self._window_us
        # keep this window and the next: a hold made just before the boundary settles late
        ttl_s = ((index + 2) * self._window_us - now_us) / 1_000_000
        return f"{self.key}:window={self._window_us}us:{index}", ttl_s

    def _hold(
        self, usd: UsdLike, input_tokens: int, output_tokens: int, calls: int
    ) -> tuple[Reservation, Amounts, float | None]:
        amount = as_usd(usd, "usd")
        ask: Amounts = (
            to_nano(amount),
            as_count(input_tokens, "input_tokens"),
            as_count(output_tokens, "output_tokens"),
            as_count(calls, "calls"),
        )
        key, ttl_s = self._where()
        res = Reservation(uuid.uuid4().hex, self.key, key, amount, *ask[1:])
        return res, ask, ttl_s

    def _refused(self, res: Reservation, refusal: Refusal) -> BudgetExceeded:
        limit = self._limits[refusal.index]
        assert limit is not None  # only a set limit can refuse
        left = max(limit - refusal.used, 0)
        asked = (res.usd, res.input_tokens, res.output_tokens, res.calls)[refusal.index]
        remaining: object = from_nano(left) if refusal.index == 0 else left
        limit_name = LIMIT_NAMES[refusal.index]
        return self.refusal(
            limit_name, asked, remaining, retry_after_s=self.retry_after(limit_name, asked)
        )

    def refusal(
        self, limit: str, asked: object, remaining: object, *, retry_after_s: float | None = None
    ) -> BudgetExceeded:
        """The error this ledger raises when ``limit`` refuses a call (its ``error`` class,
        named after the ledger). ``retry_after_s`` goes to the error; an ``error`` class
        whose ``__init__`` predates it (four arguments) gets it as an attribute."""
        if retry_after_s is None:
            return self._error(self.name, limit, asked, remaining)
        try:
            return self._error(self.name, limit, asked, remaining, retry_after_s=retry_after_s)
        except TypeError:  # a custom error class with the older signature
            err = self._error(self.name, limit, asked, remaining)
            err.retry_after_s = retry_after_s
            return err

    def retry_after(self, limit: str, asked: Decimal | int) -> float | None:
        """How long until ``limit`` (``"max_calls"``, ...) could let ``asked`` through: the
        window's reset, or None without a window or when ``asked`` exceeds the whole
        limit (waiting would not help)."""
        whole = getattr(self.budget, limit)
        return self.window_resets_in() if whole is not None and asked <= whole else None

    def window_resets_in(self) -> float | None:
        """Seconds until this budget's window starts again from zero (``None`` for a
        budget with no window): what a refusal's ``retry_after_s`` says."""
        if self._window_us is None:
            return None
        now_us = int(self._clock() * 1_000_000)
        return ((now_us // self._window_us + 1) * self._window_us - now_us) / 1_000_000

    def _own(self, res: Reservation) -> None:
        if res.ledger_key != self.key:
            raise ReservationError(
                f"reservation {res.id} belongs to ledger key {res.ledger_key!r}, not "
                f"{self.key!r}; settle or release it with the ledger that reserved it"
            )

    def _closed(self, res: Reservation) -> ReservationError:
        return ReservationError(
            f"reservation {res.id} on {self.name} is already settled or released (or was "
            "dropped by release_stale, or lapsed more than two leases ago); close each "
            "reservation exactly once (settle after the call, release if it failed)"
        )

    @staticmethod
    def _actual(usd: UsdLike, input_tokens: int, output_tokens: int) -> tuple[int, int, int]:
        return (
            to_nano(as_usd(usd, "usd")),
            as_count(input_tokens, "input_tokens"),
            as_count(output_tokens, "output_tokens"),
        )

    def reserve(
        self,
        usd: UsdLike = ZERO,
        input_tokens: int = 0,
        output_tokens: int = 0,
        calls: int = 1,
    ) -> Reservation:
        """Hold the call's worst case, or raise ``BudgetExceeded`` naming the first
        limit (``LIMIT_NAMES`` order) that refuses; nothing is held on refusal."""
        res, ask, ttl_s = self._hold(usd, input_tokens, output_tokens, calls)
        try:
            refusal = self.backend.reserve(res.key, res.id, ask, self._limits, ttl_s, self.lease_s)
        except BaseException:
            # e.g. a timeout after the backend applied it: never leave a hidden hold
            with suppress(Exception):
                self.backend.release(res.key, res.id)
            raise
        if refusal is not None:
            raise self._refused(res, refusal)
        return res

    def settle(self, res: Reservation, usd: UsdLike, input_tokens: int, output_tokens: int) -> None:
        """Replace the hold by what the call actually used (the engine is the truth: an
        actual above the hold is recorded as is). The reserved calls count as spent.
        A hold whose lease lapsed is settled all the same: the actual spend is recorded
        (the lapsed hold stopped counting as in flight already)."""
        self._own(res)
        if not self.backend.settle(res.key, res.id, self._actual(usd, input_tokens, output_tokens)):
            raise self._closed(res)

    def release(self, res: Reservation) -> None:
        """Drop the hold of a call that failed: nothing of it counts, calls included.
        On a hold whose lease lapsed this changes nothing (but still closes it)."""
        self._own(res)
        if not self.backend.release(res.key, res.id):
            raise self._closed(res)

    async def areserve(
        self,
        usd: UsdLike = ZERO,
        input_tokens: int = 0,
        output_tokens: int = 0,
        calls: int = 1,
    ) -> Reservation:
        """``reserve`` for asyncio; a cancelled reserve leaves no hold behind."""
        res, ask, ttl_s = self._hold(usd, input_tokens, output_tokens, calls)
        try:
            refusal = await self.backend.areserve(
                res.key, res.id, ask, self._limits, ttl_s, self.lease_s
            )
        except BaseException:
            with suppress(Exception):
                await self.backend.arelease(res.key, res.id)
            raise
        if refusal is not None:
            raise self._refused(res, refusal)
        return res

    async def asettle(
        self, res: Reservation, usd: UsdLike, input_tokens: int, output_tokens: int
    ) -> None:
        self._own(res)
        actual = self._actual(usd, input_tokens, output_tokens)
        if not await self.backend.asettle(res.key, res.id, actual):
            raise self._closed(res)

    async def arelease(self, res: Reservation) -> None:
        self._own(res)
        if not await self.backend.arelease(res.key, res.id):
            raise self._closed(res)

    # --- soft thresholds (``Budget.alerts``) ----------------------------------------
    def _due(self) -> tuple[str, float | None, list[_alerts.Point]] | None:
        """The window's key and TTL and the thresholds not yet claimed by this process,
        or None when there is nothing left to check (no alerts, or all claimed)."""
        if not self._alert_points:
            return None
        key, ttl_s = self._where()
        pending = _alerts.unseen(self.backend, key, self._alert_points)
        return (key, ttl_s, pending) if pending else None

    def _alert(self, key: str, point: _alerts.Point, spent: Amounts) -> BudgetAlert:
        window_index = None if self._window_us is None else int(key.rsplit(":", 1)[1])
        return _alerts.alert_of(
            self.name,
            self.key,
            point.index,
            point.threshold,
            self._limits,
            spent,
            self.budget.window,
            window_index,
        )

    def alerts_due(self) -> list[BudgetAlert]:
        """The ``Budget.alerts`` thresholds the settled spend has reached and nobody has
        been told of yet: call after ``settle``. Each (key, window, limit, threshold) is
        returned once, to the one caller that claims it in the backend (atomic there:
        across threads, and across processes for diskcache and Redis)."""
        due = self._due()
        if due is None:
            return []
        key, ttl_s, pending = due
        spent = self.backend.totals(key).spent
        fired: list[BudgetAlert] = []
        for point in pending:
            if spent[point.index] >= point.need:
                if self.backend.claim(key, point.marker, ttl_s):
                    fired.append(self._alert(key, point, spent))
                _alerts.remember(self.backend, key, point.marker, ttl_s)
        return fired

    async def aalerts_due(self) -> list[BudgetAlert]:
        """``alerts_due`` for asyncio."""
        due = self._due()
        if due is None:
            return []
        key, ttl_s, pending = due
        spent = (await self.backend.atotals(key)).spent
        fired: list[BudgetAlert] = []
        for point in pending:
            if spent[point.index] >= point.need:
                if await self.backend.aclaim(key, point.marker, ttl_s):
                    fired.append(self._alert(key, point, spent))
                _alerts.remember(self.backend, key, point.marker, ttl_s)
        return fired

    def _totals(self) -> Totals:
        return self.backend.totals(self._where()[0])

    def spent(self) -> Spend:
        """Settled totals (of the current window, for a windowed budget)."""
        return spend_of(self._totals().spent)

    def in_flight(self) -> Spend:
        """What open reservations hold right now."""
        return spend_of(self._totals().in_flight)

    def holds(self) -> list[Hold]:
        """The open and lapsed holds on this ledger's key (the current window's, for a
        windowed budget), oldest first: id, amounts, age and lease left."""
        return self.backend.holds(self._where()[0])

    def release_stale(self, older_than_s: float) -> list[str]:
        """Drop the holds on this ledger's key made at least ``older_than_s`` seconds
        ago (say, by a process that was killed) and return their ids. Their own process
        can no longer settle them (``ReservationError``): release only holds whose
        process you know is gone, or wait for their lease to lapse."""
        return self.backend.release_stale(self._where()[0], older_than_s)

    def remaining(self) -> Remaining:
        """Per limit: limit - settled - in flight, floored at 0; None where unlimited."""
        totals = self._totals()
        left: list[int | None] = [
            None if limit is None else max(limit - spent - held, 0)
            for limit, spent, held in zip(self._limits, totals.spent, totals.in_flight, strict=True)
        ]
        usd = None if left[0] is None else from_nano(left[0])
        return Remaining(usd, left[1], left[2], left[3])


def _rollback(pairs: Sequence[tuple[Ledger, Reservation]], error: BaseException) -> None:
    for ledger, res in pairs:
        try:
            ledger.release(res)
        except Exception as exc:
            error.add_note(f"rolling back the hold on {ledger.name} failed too: {exc!r}")


def reserve_all(
    ledgers: Sequence[Ledger],
    usd: UsdLike = ZERO,
    input_tokens: int = 0,
    output_tokens: int = 0,
    calls: int = 1,
) -> list[Reservation]:
    """Reserve the same amounts in every ledger (e.g. step, run and tenant), or in none:
    when one refuses, the holds already made are released and the error re-raised."""
    held: list[tuple[Ledger, Reservation]] = []
    try:
        for ledger in ledgers:
            held.append((ledger, ledger.reserve(usd, input_tokens, output_tokens, calls)))
    except BaseException as exc:
        _rollback(held, exc)
        raise
    return [res for _, res in held]


async def areserve_all(
    ledgers: Sequence[Ledger],
    usd: UsdLike = ZERO,
    input_tokens: int = 0,
    output_tokens: int = 0,
    calls: int = 1,
) -> list[Reservation]:
    """``reserve_all`` for asyncio: all or nothing."""
    held: list[tuple[Ledger, Reservation]] = []
    try:
        for ledger in ledgers:
            held.append((ledger, await ledger.areserve(usd, input_tokens, output_tokens, calls)))
    except BaseException as exc:
        for ledger, res in held:
            try:
                await ledger.arelease(res)
            except Exception as rollback_exc:
                exc.add_note(f"rolling back the hold on {ledger.name} failed too: {rollback_exc!r}")
        raise
    return [res for _, res in held]
