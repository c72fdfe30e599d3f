"""The ledger contract, on every backend (memory, diskcache, real Redis)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from budgets import (
    Budget,
    BudgetExceeded,
    DiskCacheBackend,
    Ledger,
    LedgerBackend,
    MemoryBackend,
    RedisBackend,
    Remaining,
    ReservationError,
    Spend,
    areserve_all,
    reserve_all,
)

D = Decimal


def test_reserve_then_settle_records_the_actual(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=1, max_output_tokens=1000), name="run 'r'", backend=backend)
    res = ledger.reserve(usd=D("0.30"), input_tokens=100, output_tokens=500)
    assert ledger.in_flight() == Spend(D("0.30"), 100, 500, 1)
    assert ledger.remaining() == Remaining(D("0.70"), None, 500, None)

    ledger.settle(res, usd=D("0.12"), input_tokens=100, output_tokens=200)

    assert ledger.spent() == Spend(D("0.12"), 100, 200, 1)
    assert ledger.in_flight() == Spend()
    assert ledger.remaining() == Remaining(D("0.88"), None, 800, None)


def test_refusal_names_the_first_limit_that_refuses_and_holds_nothing(
    backend: LedgerBackend,
) -> None:
    ledger = Ledger(
        Budget(max_usd=1, max_output_tokens=100, max_calls=5), name="step 'plan'", backend=backend
    )
    with pytest.raises(BudgetExceeded) as both:
        ledger.reserve(usd=2, output_tokens=200)
    assert (both.value.budget, both.value.limit) == ("step 'plan'", "max_usd")
    assert (both.value.asked, both.value.remaining) == (D(2), D(1))

    with pytest.raises(BudgetExceeded) as tokens:
        ledger.reserve(usd=D("0.5"), output_tokens=200)
    assert (tokens.value.limit, tokens.value.asked, tokens.value.remaining) == (
        "max_output_tokens",
        200,
        100,
    )
    assert "step 'plan'" in str(tokens.value)
    assert ledger.in_flight() == Spend()  # nothing was held by either refusal


def test_in_flight_reservations_count_until_released(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=1), backend=backend)
    first = ledger.reserve(usd=D("0.6"))
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(usd=D("0.6"))
    assert refused.value.remaining == D("0.4")

    ledger.release(first)
    second = ledger.reserve(usd=D("0.6"))  # the release refunded all of it
    ledger.settle(second, usd=D("0.6"), input_tokens=0, output_tokens=0)
    assert ledger.spent().usd == D("0.6")


def test_a_failed_call_does_not_count_toward_max_calls(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_calls=2), backend=backend)
    ledger.release(ledger.reserve())  # failed before reaching the engine
    a, b = ledger.reserve(), ledger.reserve()
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve()
    assert (refused.value.limit, refused.value.asked, refused.value.remaining) == (
        "max_calls",
        1,
        0,
    )
    ledger.settle(a, usd=0, input_tokens=1, output_tokens=1)
    ledger.settle(b, usd=0, input_tokens=1, output_tokens=1)
    assert ledger.spent().calls == 2


def test_an_actual_above_the_reservation_is_recorded_and_blocks_later_calls(
    backend: LedgerBackend,
) -> None:
    ledger = Ledger(Budget(max_usd=D("0.10")), backend=backend)
    res = ledger.reserve(usd=D("0.05"))
    ledger.settle(res, usd=D("0.13"), input_tokens=10, output_tokens=900)  # engine knows best

    assert ledger.spent().usd == D("0.13")
    assert ledger.remaining().usd == 0  # floored: the overspend shows in spent()
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(usd=0)  # even a call priced at 0 cannot start on an overdrawn budget
    assert refused.value.remaining == 0


def test_each_reservation_closes_exactly_once(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=1), name="run 'x'", backend=backend)
    settled = ledger.reserve(usd=D("0.1"))
    ledger.settle(settled, usd=D("0.1"), input_tokens=1, output_tokens=1)
    with pytest.raises(ReservationError, match="already settled or released"):
        ledger.settle(settled, usd=D("0.1"), input_tokens=1, output_tokens=1)
    with pytest.raises(ReservationError):
        ledger.release(settled)

    released = ledger.reserve(usd=D("0.1"))
    ledger.release(released)
    with pytest.raises(ReservationError):
        ledger.settle(released, usd=D("0.1"), input_tokens=1, output_tokens=1)
    with pytest.raises(ReservationError):
        ledger.release(released)
    assert ledger.spent() == Spend(D("0.1"), 1, 1, 1)  # the failed closes changed nothing


def test_a_reservation_only_closes_on_its_own_ledger(backend: LedgerBackend) -> None:
    mine = Ledger(Budget(max_usd=1), backend=backend)
    other = Ledger(Budget(max_usd=1), backend=backend)
    res = mine.reserve(usd=D("0.5"))
    with pytest.raises(ReservationError, match="ledger that reserved it"):
        other.settle(res, usd=D("0.5"), input_tokens=0, output_tokens=0)
    assert mine.in_flight().usd == D("0.5")


def test_ledgers_on_one_key_share_the_spend(make_backend: Callable[[], LedgerBackend]) -> None:
    daily = Budget(max_usd=1)
    # two clients of the same store, as two workers serving tenant u1 would have
    worker_a = Ledger(daily, name="tenant u1", backend=make_backend(), key="tenant:u1")
    worker_b = Ledger(daily, name="tenant u1", backend=make_backend(), key="tenant:u1")
    stranger = Ledger(daily, name="tenant u2", backend=make_backend(), key="tenant:u2")

    res = worker_a.reserve(usd=D("0.7"))
    with pytest.raises(BudgetExceeded):
        worker_b.reserve(usd=D("0.7"))
    stranger.release(stranger.reserve(usd=D("0.7")))  # another key is untouched
    worker_b.settle(res, usd=D("0.2"), input_tokens=0, output_tokens=0)  # same key: allowed
    assert worker_a.spent().usd == D("0.2")
    assert worker_b.remaining().usd == D("0.8")


def test_a_window_starts_from_zero_and_late_settles_land_in_their_window(
    backend: LedgerBackend,
) -> None:
    day = 86_400.0
    now = [10 * day + 3600]  # 01:00 UTC on day 10
    budget = Budget(max_usd=1, window=timedelta(days=1))
    ledger = Ledger(budget, name="tenant u1", backend=backend, key="t:u1", clock=lambda: now[0])

    ledger.settle(ledger.reserve(usd=D("0.9")), usd=D("0.9"), input_tokens=0, output_tokens=0)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(usd=D("0.2"))
    late = ledger.reserve(usd=D("0.1"))  # fits; its call ends after midnight

    now[0] = 11 * day + 60  # 00:01 the next day
    assert ledger.spent() == Spend()
    assert ledger.remaining().usd == D(1)
    fresh = ledger.reserve(usd=D("0.2"))
    ledger.settle(late, usd=D("0.1"), input_tokens=0, output_tokens=0)  # into day 10
    ledger.settle(fresh, usd=D("0.2"), input_tokens=0, output_tokens=0)
    assert ledger.spent().usd == D("0.2")

    now[0] = 10 * day + 7200  # day 10 again, as a clock would see it
    assert ledger.spent().usd == D("1.0")


def test_an_unlimited_budget_keeps_totals(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(), backend=backend)
    for _ in range(3):
        res = ledger.reserve(usd=D(10) ** 6, input_tokens=10**9, output_tokens=10**9)
        ledger.settle(res, usd=D("0.000000001"), input_tokens=7, output_tokens=5)
    assert ledger.spent() == Spend(D("0.000000003"), 21, 15, 3)
    assert ledger.remaining() == Remaining()


def test_dollars_are_counted_in_nano_dollars_rounded_up(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=D("0.000000010")), backend=backend)
    res = ledger.reserve(usd=D("0.0000000091"))  # 9.1 nano-dollars hold 10
    with pytest.raises(BudgetExceeded):
        ledger.reserve(usd=D("0.000000001"))
    ledger.settle(res, usd=D("0.0000000001"), input_tokens=0, output_tokens=0)
    assert ledger.spent().usd == D("0.000000001")  # never under-counted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"usd": -1}, "usd must be a finite amount of USD >= 0"),
        ({"usd": "NaN"}, "usd must be a finite amount"),
        ({"input_tokens": -5}, "input_tokens must be an int >= 0"),
        ({"output_tokens": 1.5}, "output_tokens must be an int >= 0"),
        ({"calls": True}, "calls must be an int >= 0"),
    ],
)
def test_bad_amounts_are_refused_before_anything_is_held(
    kwargs: dict[str, object], message: str
) -> None:
    ledger = Ledger(Budget(max_usd=1))
    with pytest.raises(ValueError, match=message):
        ledger.reserve(**kwargs)  # type: ignore[arg-type]
    assert ledger.in_flight() == Spend()


def test_a_usd_limit_below_the_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="below the ledger's resolution of 1e-9 USD"):
        Ledger(Budget(max_usd="0.0000000004"))


def test_float_and_str_dollars_are_read_as_written() -> None:
    ledger = Ledger(Budget(max_usd=0.3))
    ledger.settle(ledger.reserve(usd=0.1), usd=0.1, input_tokens=0, output_tokens=0)
    ledger.settle(ledger.reserve(usd="0.2"), usd="0.2", input_tokens=0, output_tokens=0)
    assert ledger.spent().usd == D("0.3")  # not 0.30000000000000004


def test_reserve_all_holds_in_every_ledger_or_none(backend: LedgerBackend) -> None:
    tenant = Ledger(Budget(max_usd=5), name="tenant u1", backend=backend)
    run = Ledger(Budget(max_usd=1), name="run 'r'", backend=backend)
    step = Ledger(Budget(max_output_tokens=100), name="step 'plan'", backend=backend)

    with pytest.raises(BudgetExceeded) as refused:
        reserve_all([tenant, run, step], usd=D("0.5"), output_tokens=150)
    assert refused.value.budget == "step 'plan'"
    assert tenant.in_flight() == Spend()  # rolled back
    assert run.in_flight() == Spend()

    held = reserve_all([tenant, run, step], usd=D("0.5"), output_tokens=50)
    assert [r.ledger_key for r in held] == [tenant.key, run.key, step.key]
    assert run.remaining().usd == D("0.5")


async def test_async_twins(backend: LedgerBackend) -> None:
    ledger = Ledger(Budget(max_usd=1, max_calls=3), backend=backend)
    res = await ledger.areserve(usd=D("0.4"), output_tokens=10)
    failed = await ledger.areserve(usd=D("0.4"))
    with pytest.raises(BudgetExceeded):
        await ledger.areserve(usd=D("0.4"))
    await ledger.arelease(failed)
    await ledger.asettle(res, usd=D("0.25"), input_tokens=3, output_tokens=4)
    with pytest.raises(ReservationError):
        await ledger.asettle(res, usd=D("0.25"), input_tokens=3, output_tokens=4)
    assert ledger.spent() == Spend(D("0.25"), 3, 4, 1)


async def test_areserve_all_rolls_back(backend: LedgerBackend) -> None:
    run = Ledger(Budget(max_usd=1), name="run", backend=backend)
    step = Ledger(Budget(max_calls=1), name="step", backend=backend)
    await areserve_all([run, step], usd=D("0.1"))
    with pytest.raises(BudgetExceeded, match="step refused"):
        await areserve_all([run, step], usd=D("0.1"))
    assert run.in_flight().usd == D("0.1")  # only the first, successful call's hold


class _AppliedThenTimedOut(MemoryBackend):
    """The store applied the hold but the reply was lost (a network timeout)."""

    def reserve(self, *args: object, **kwargs: object) -> None:
        super().reserve(*args, **kwargs)  # type: ignore[arg-type]
        raise TimeoutError("reply lost")


def test_an_error_mid_reserve_leaves_no_hidden_hold() -> None:
    backend = _AppliedThenTimedOut()
    ledger = Ledger(Budget(max_usd=1), backend=backend)
    with pytest.raises(TimeoutError):
        ledger.reserve(usd=D("0.9"))
    assert ledger.in_flight() == Spend()


def test_redis_refuses_limits_it_cannot_compare_exactly(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    with pytest.raises(
        ValueError, match=r"max_usd is too large for RedisBackend.*\$9,007,199\.254740991"
    ):
        Ledger(Budget(max_usd=10**8), backend=backend)  # 1e17 nano-dollars > 2**53
    Ledger(Budget(max_usd=9_000_000), backend=backend)
    backend.close()


def test_redis_windowed_keys_expire(redis_url: str) -> None:
    import redis

    backend = RedisBackend(redis_url, prefix="ttl-test:")
    ledger = Ledger(Budget(max_usd=1, window=timedelta(hours=1)), backend=backend, key="t")
    ledger.reserve(usd=D("0.1"))
    client = redis.Redis.from_url(redis_url)
    keys = client.keys("ttl-test:*")
    assert len(keys) == 2
    for key in keys:  # this hour and the next, at most
        assert 0 < client.pttl(key) <= 2 * 3600 * 1000
    backend.close()


def test_diskcache_windowed_keys_expire(tmp_path: Path) -> None:
    backend = DiskCacheBackend(tmp_path / "ledger")
    ledger = Ledger(Budget(max_usd=1, window=timedelta(hours=1)), backend=backend, key="t")
    res = ledger.reserve(usd=D("0.1"))
    ledger.settle(res, usd=D("0.1"), input_tokens=0, output_tokens=0)  # keeps the expiry
    import diskcache

    cache = diskcache.Cache(str(tmp_path / "ledger"))
    (key,) = list(cache.iterkeys())
    _, expire_time = cache.get(key, expire_time=True)
    assert 0 < expire_time - time.time() <= 2 * 3600
    cache.close()
    backend.close()


def test_memory_drops_expired_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MemoryBackend, "_SWEEP_EVERY_S", 0.0)
    backend = MemoryBackend()
    now = [0.0]
    budget = Budget(max_usd=1, window=timedelta(milliseconds=20))
    ledger = Ledger(budget, backend=backend, key="t", clock=lambda: now[0])
    ledger.release(ledger.reserve(usd=D("0.1")))
    time.sleep(0.1)  # the first window's state outlived its ttl (two windows)
    now[0] = 1.0  # a later window: a new key, the moment expired ones are swept
    ledger.release(ledger.reserve(usd=D("0.1")))
    assert list(backend._states) == [ledger._where()[0]]


async def test_redis_backend_on_a_ready_client(redis_url: str) -> None:
    import redis

    with pytest.raises(ValueError, match="exactly one of url="):
        RedisBackend()
    client = redis.Redis.from_url(redis_url, decode_responses=True)  # str replies work too
    ledger = Ledger(Budget(max_calls=2), backend=RedisBackend(client=client, prefix="ready:"))
    first = ledger.reserve()
    second = await ledger.areserve()  # no URL: the sync client runs in a worker thread
    with pytest.raises(BudgetExceeded):
        await ledger.areserve()
    await ledger.asettle(second, usd=D("0.01"), input_tokens=1, output_tokens=2)
    ledger.release(first)
    assert ledger.spent() == Spend(D("0.01"), 1, 2, 1)
    client.close()


def test_a_windowed_refusal_says_when_the_window_starts_again(backend: LedgerBackend) -> None:
    hour = 3600.0
    now = [100 * hour + 1000.5]  # 1000.5 s into an hour
    budget = Budget(max_usd=1, max_calls=2, window=timedelta(hours=1))
    ledger = Ledger(budget, name="hourly", backend=backend, key="w", clock=lambda: now[0])
    ledger.settle(ledger.reserve(usd=D("0.9")), usd=D("0.9"), input_tokens=0, output_tokens=0)
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(usd=D("0.2"))
    assert refused.value.retry_after_s == pytest.approx(2599.5)
    assert "window starts again in 43 min 20 s" in str(refused.value)
    assert ledger.window_resets_in() == pytest.approx(2599.5)
    # more than the whole limit never fits: no wait is promised
    with pytest.raises(BudgetExceeded) as never:
        ledger.reserve(usd=D(2))
    assert never.value.retry_after_s is None
    assert "window" not in str(never.value)
    # no window, no wait
    plain = Ledger(Budget(max_calls=1), backend=backend, key="plain")
    plain.reserve(usd=0)
    with pytest.raises(BudgetExceeded) as refused_plain:
        plain.reserve(usd=0)
    assert refused_plain.value.retry_after_s is None
    assert plain.window_resets_in() is None


def test_a_custom_error_class_with_the_older_signature_still_works() -> None:
    class Refused(BudgetExceeded):
        def __init__(self, budget: str, limit: str, asked: object, remaining: object) -> None:
            super().__init__(budget, limit, asked, remaining)

    now = [30.0]
    ledger = Ledger(
        Budget(max_calls=1, window=timedelta(minutes=1)), error=Refused, clock=lambda: now[0]
    )
    ledger.reserve(usd=0)
    with pytest.raises(Refused) as refused:
        ledger.reserve(usd=0)
    assert refused.value.retry_after_s == pytest.approx(30.0)
