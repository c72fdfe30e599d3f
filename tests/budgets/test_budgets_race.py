"""200 concurrent calls against a budget that pays for about 50: never an overspend.

On every backend, with threads, asyncio tasks and (diskcache, Redis) separate processes.
Exactly the calls whose reservation succeeded reach the endpoint; every refusal happened
because the hold really did not fit; settled totals match the actuals to the nano-dollar.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from _race import ASK, BUDGET, Outcome, run_tasks, run_threads

from budgets import Ledger, LedgerBackend, Spend

CALLERS = 200
assert BUDGET.max_usd is not None
MAX_USD = BUDGET.max_usd
ROOM = int(MAX_USD / ASK)  # 50 holds fit at once


def check(ledger: Ledger, outcome: Outcome, callers: int = CALLERS) -> None:
    spent = ledger.spent()
    assert outcome.unjustified_refusals == []
    assert spent.usd <= MAX_USD, f"overspent: {spent.usd} > {MAX_USD}"
    assert spent.usd == outcome.settled_usd  # exact: Decimal all the way
    assert spent.calls == outcome.settled
    assert ledger.in_flight() == Spend()  # every hold was settled or refunded
    assert outcome.reserved + outcome.refused == callers
    assert outcome.reached_endpoint == outcome.reserved == outcome.settled + outcome.released
    assert outcome.reserved >= ROOM  # refusals never left paid-for room unused
    assert outcome.refused > 0  # the race was real: the budget ran out


def test_threads_never_overspend(backend: LedgerBackend) -> None:
    ledger = Ledger(BUDGET, name="run 'race'", backend=backend)
    check(ledger, run_threads(ledger, CALLERS, seed=1))


async def test_asyncio_tasks_never_overspend(backend: LedgerBackend) -> None:
    ledger = Ledger(BUDGET, name="run 'race'", backend=backend)
    check(ledger, await run_tasks(ledger, CALLERS, seed=2))


@pytest.mark.parametrize("backend_kind", ["diskcache", "redis"])
def test_processes_never_overspend(
    backend_kind: str,
    make_backend: Callable[[], LedgerBackend],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    location = (
        str(tmp_path / "ledger")
        if backend_kind == "diskcache"
        else request.getfixturevalue("redis_url")
    )
    script = Path(__file__).with_name("_race.py")
    processes, per_process = 4, CALLERS // 4
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), backend_kind, location, str(per_process), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(processes)
    ]
    total = Outcome()
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        fields = json.loads(out)
        fields["settled_usd"] = Decimal(fields["settled_usd"])
        total += Outcome(**fields)

    ledger = Ledger(BUDGET, name="run 'race'", backend=make_backend(), key="race")
    check(ledger, total)
