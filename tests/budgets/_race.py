"""Concurrent callers against one ledger, the way the call pipeline uses it.

Each caller reserves a call's worst case, "calls the endpoint" (counted), waits a little,
then either settles an actual slightly below the hold or, as a failed call, releases it.
Used by the race tests in threads, asyncio tasks and separate processes
(``python _race.py KIND LOCATION CALLERS SEED`` prints the outcome as JSON).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from budgets import (
    Budget,
    BudgetExceeded,
    DiskCacheBackend,
    Ledger,
    LedgerBackend,
    MemoryBackend,
    RedisBackend,
)

ASK = Decimal("0.01")  # worst case of one call
BUDGET = Budget(max_usd=Decimal("0.50"))  # pays for about 50 of them
FAILURE_RATE = 0.25


@dataclass
class Outcome:
    reserved: int = 0
    refused: int = 0
    reached_endpoint: int = 0
    settled: int = 0
    released: int = 0
    settled_usd: Decimal = Decimal(0)
    unjustified_refusals: list[str] = field(default_factory=list)

    def __iadd__(self, other: Outcome) -> Outcome:
        for name in ("reserved", "refused", "reached_endpoint", "settled", "released"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.settled_usd += other.settled_usd
        self.unjustified_refusals += other.unjustified_refusals
        return self


class _Caller:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.outcome = Outcome()

    def refused(self, exc: BudgetExceeded) -> None:
        with self.lock:
            self.outcome.refused += 1
            # a refusal is only fair when the hold really did not fit
            remaining, asked = Decimal(str(exc.remaining)), Decimal(str(exc.asked))
            if not remaining < asked:
                self.outcome.unjustified_refusals.append(str(exc))

    def reached(self) -> tuple[float, Decimal | None]:
        with self.lock:
            self.outcome.reserved += 1
            self.outcome.reached_endpoint += 1
            latency = self.rng.uniform(0, 0.003)
            if self.rng.random() < FAILURE_RATE:
                return latency, None
            # the engine's truth: 90-99.9 % of the worst case
            return latency, ASK * Decimal(self.rng.randint(900, 999)) / 1000

    def closed(self, actual: Decimal | None) -> None:
        with self.lock:
            if actual is None:
                self.outcome.released += 1
            else:
                self.outcome.settled += 1
                self.outcome.settled_usd += actual


def run_threads(ledger: Ledger, callers: int, seed: int = 0) -> Outcome:
    state = _Caller(seed)
    start = threading.Barrier(callers)

    def call() -> None:
        start.wait()
        try:
            res = ledger.reserve(usd=ASK, input_tokens=20, output_tokens=64)
        except BudgetExceeded as exc:
            state.refused(exc)
            return
        latency, actual = state.reached()
        time.sleep(latency)
        if actual is None:
            ledger.release(res)
        else:
            ledger.settle(res, usd=actual, input_tokens=20, output_tokens=60)
        state.closed(actual)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return state.outcome


async def run_tasks(ledger: Ledger, callers: int, seed: int = 0) -> Outcome:
    state = _Caller(seed)

    async def call() -> None:
        try:
            res = await ledger.areserve(usd=ASK, input_tokens=20, output_tokens=64)
        except BudgetExceeded as exc:
            state.refused(exc)
            return
        latency, actual = state.reached()
        await asyncio.sleep(latency)
        if actual is None:
            await ledger.arelease(res)
        else:
            await ledger.asettle(res, usd=actual, input_tokens=20, output_tokens=60)
        state.closed(actual)

    await asyncio.gather(*(call() for _ in range(callers)))
    return state.outcome


def backend_for(kind: str, location: str) -> LedgerBackend:
    if kind == "diskcache":
        return DiskCacheBackend(location)
    if kind == "redis":
        return RedisBackend(location)
    return MemoryBackend()


def main(argv: list[str]) -> None:
    kind, location, callers, seed = argv[0], argv[1], int(argv[2]), int(argv[3])
    backend = backend_for(kind, location)
    ledger = Ledger(BUDGET, name="run 'race'", backend=backend, key="race")
    outcome = run_threads(ledger, callers, seed)
    backend.close()
    print(json.dumps(asdict(outcome), default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
