"""Leases: a hold cannot outlive its lease, on every backend.

A process killed mid-call (SIGKILL, no cleanup) leaves its holds in the diskcache and
Redis ledgers; they are listed, stop counting once their lease lapses, and can be
released through the API and the ``agentflow budgets holds`` command. A late settle of a
lapsed hold records the actual spend once; a late release changes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from agentflow.cli import main as cli
from budgets import (
    Budget,
    BudgetExceeded,
    DiskCacheBackend,
    Ledger,
    LedgerBackend,
    MemoryBackend,
    RedisBackend,
    ReservationError,
    Spend,
)

D = Decimal
LEASE_S = 1.0  # long enough for a loaded CI machine between two lines of a test
ROOT = Path(__file__).resolve().parents[2]


def _wait_for_lapse(seconds: float = LEASE_S) -> None:
    time.sleep(seconds + 0.15)


def test_a_lapsed_hold_stops_counting_and_a_late_settle_counts_once(
    backend: LedgerBackend,
) -> None:
    ledger = Ledger(Budget(max_usd=1, max_calls=3), name="run 'slow'", backend=backend)
    slow = ledger.reserve(usd=D("0.8"), output_tokens=100)
    quick = Ledger(
        Budget(max_usd=1), backend=ledger.backend, key=ledger.key, lease_s=LEASE_S
    ).reserve(usd=D("0.1"))
    with pytest.raises(BudgetExceeded):
        ledger.reserve(usd=D("0.2"))  # 0.9 in flight

    (listed,) = [h for h in ledger.holds() if h.id == quick.id]
    assert listed.usd == D("0.1")
    assert listed.amounts[3] == 1
    assert 0 <= listed.age_s < LEASE_S < listed.age_s + listed.expires_in_s + 0.01
    assert not listed.lapsed

    _wait_for_lapse()
    assert ledger.in_flight() == Spend(D("0.8"), 0, 100, 1)  # only the default-lease hold
    (lapsed,) = [h for h in ledger.holds() if h.id == quick.id]
    assert lapsed.lapsed
    assert lapsed.expires_in_s < 0
    fits = ledger.reserve(usd=D("0.2"))  # the lapsed 0.1 no longer counts

    # the call came back after all: its spend is recorded, and only once
    ledger.settle(quick, usd=D("0.05"), input_tokens=10, output_tokens=20)
    with pytest.raises(ReservationError):
        ledger.settle(quick, usd=D("0.05"), input_tokens=10, output_tokens=20)
    assert ledger.spent() == Spend(D("0.05"), 10, 20, 1)
    assert ledger.in_flight() == Spend(D("1.0"), 0, 100, 2)
    assert [h.id for h in ledger.holds()] == [slow.id, fits.id]
    ledger.release(slow)
    ledger.release(fits)
    assert ledger.in_flight() == Spend()


def test_a_late_release_of_a_lapsed_hold_changes_nothing(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=1), backend=backend, lease_s=LEASE_S)
    res = ledger.reserve(usd=D("0.5"))
    _wait_for_lapse()
    assert ledger.in_flight() == Spend()
    ledger.release(res)  # no error: the call failed late, nothing counts
    assert ledger.in_flight() == Spend()
    assert ledger.spent() == Spend()
    assert ledger.holds() == []
    with pytest.raises(ReservationError):
        ledger.release(res)


def test_lapsed_holds_are_forgotten_after_a_second_lease(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=1), backend=backend, lease_s=LEASE_S)
    res = ledger.reserve(usd=D("0.5"))
    _wait_for_lapse(2 * LEASE_S)
    assert ledger.holds() == []
    with pytest.raises(ReservationError, match="lapsed more than two leases ago"):
        ledger.settle(res, usd=D("0.5"), input_tokens=0, output_tokens=0)
    assert ledger.spent() == Spend()


def test_release_stale_drops_old_holds_only(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=1), backend=backend)
    old = ledger.reserve(usd=D("0.3"))
    time.sleep(0.3)
    new = ledger.reserve(usd=D("0.3"))
    assert ledger.release_stale(older_than_s=0.2) == [old.id]
    assert ledger.in_flight().usd == D("0.3")
    with pytest.raises(ReservationError):
        ledger.settle(old, usd=D("0.3"), input_tokens=0, output_tokens=0)
    assert ledger.release_stale(older_than_s=0) == [new.id]
    assert ledger.in_flight() == Spend()
    assert ledger.holds() == []


def test_lease_must_be_a_positive_number_of_seconds() -> None:
    with pytest.raises(ValueError, match="lease_s must be a finite number of seconds"):
        Ledger(Budget(max_usd=1), lease_s=0)
    with pytest.raises(ValueError, match="lease_s must be a finite number"):
        MemoryBackend(lease_s=float("inf"))
    assert MemoryBackend().lease_s == 600.0


_CHILD = textwrap.dedent(
    """
    import sys, time
    from decimal import Decimal
    from budgets import Budget, DiskCacheBackend, Ledger, RedisBackend

    kind, location, lease_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if kind == "disk":
        backend = DiskCacheBackend(location, lease_s=lease_s)
    else:
        backend = RedisBackend(location, lease_s=lease_s)
    budget = Budget(max_usd=1)
    a = Ledger(budget, backend=backend, key="tenant:a").reserve(usd=Decimal("0.6"))
    b = Ledger(budget, backend=backend, key="tenant:b").reserve(usd=Decimal("0.7"))
    print(a.id, b.id, flush=True)
    time.sleep(600)  # "calling the model" when the process is killed
    """
)


def _kill_mid_call(kind: str, location: str, lease_s: float) -> tuple[str, str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, kind, location, str(lease_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    a, b = line.split()
    return a, b


@pytest.mark.parametrize("kind", ["disk", "redis"])
def test_holds_of_a_killed_process_are_listed_lapse_and_release(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lease_s = 3.0  # counted from the reserve: the listing below must fit in it
    where: list[str]
    backend: LedgerBackend
    if kind == "disk":
        location = str(tmp_path / "ledger")
        where = ["--disk", location]
        make: Callable[[], LedgerBackend] = lambda: DiskCacheBackend(location)  # noqa: E731
    else:
        import redis

        location = request.getfixturevalue("redis_url")
        redis.Redis.from_url(location).flushdb()
        where = ["--redis", location]
        make = lambda: RedisBackend(location)  # noqa: E731
    backend = make()
    budget = Budget(max_usd=1)
    tenant_a = Ledger(budget, backend=backend, key="tenant:a")
    tenant_b = Ledger(budget, backend=backend, key="tenant:b")

    a, b = _kill_mid_call(kind, location, lease_s)

    # the dead process's holds are there, and still count while their lease runs
    assert [h.id for h in tenant_a.holds()] == [a]
    assert [h.id for h in tenant_b.holds()] == [b]
    assert tenant_b.in_flight().usd == D("0.7")
    with pytest.raises(BudgetExceeded):
        tenant_b.reserve(usd=D("0.5"))
    assert cli(["budgets", "holds", *where]) == 0
    listing = capsys.readouterr().out
    assert a in listing
    assert b in listing
    assert "tenant:a" in listing
    assert "0.6" in listing

    # an operator who knows the process is gone releases tenant a's hold at once (API)
    assert backend.release_stale("tenant:a", older_than_s=0) == [a]
    assert tenant_a.in_flight() == Spend()
    assert tenant_a.holds() == []

    # tenant b's hold lapses by itself: it stops counting, and stays listed as lapsed
    time.sleep(lease_s + 0.2)
    assert tenant_b.in_flight() == Spend()
    tenant_b.release(tenant_b.reserve(usd=D("0.9")))
    (lapsed,) = tenant_b.holds()
    assert lapsed.id == b
    assert lapsed.lapsed

    # ... and the command releases it
    assert cli(["budgets", "holds", *where, "--key", "tenant:b", "--release-older-than", "0"]) == 0
    assert b in capsys.readouterr().out
    assert tenant_b.holds() == []
    assert tenant_b.spent() == Spend()
    assert cli(["budgets", "holds", *where]) == 0
    assert "no holds" in capsys.readouterr().out
    backend.close()
