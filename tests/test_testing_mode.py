"""``agentflow.testing.set_testing``: no backoff sleeps, no response cache, fresh state."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import agentflow as af
from agentflow import testing
from agentflow.pipeline.call import litellm
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import Budget
from tests.conftest import USER


def _chat_requests(srv: LoopbackServer) -> int:
    return sum(r.path.endswith("/chat/completions") for r in srv.requests)


@pytest.fixture(autouse=True)
def _testing_off() -> Iterator[None]:
    litellm()  # imported before any timing: its import takes seconds on a busy machine
    yield
    testing.set_testing(False)


def test_retries_do_not_sleep_in_testing_mode(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    # the server asks for 30 s twice: honoured outside testing mode, skipped inside it
    af.configure(retry=af.RetryPolicy(max_retry_after=30))
    srv.script(Fault.status(429, retry_after=30), Fault.status(503, retry_after=30), Reply("ok"))
    with testing.set_testing(True):
        af.configure(zoo=zoo)
        t0 = time.monotonic()
        answer = af.complete(USER)
        elapsed = time.monotonic() - t0
    assert answer.text == "ok"
    assert [a.ok for a in answer.attempts] == [False, False, True]  # the retries still happen
    assert elapsed < 10  # not the 60 s the server asked for


def test_the_response_cache_is_off_in_testing_mode(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    @af.step(tier="small", cache="exact")
    def ask() -> af.Completion:
        return af.complete(USER)

    with testing.set_testing(True):
        af.configure(zoo=zoo)
        first, second = ask(), ask()
        assert not first.cache_hit
        assert not second.cache_hit
        assert _chat_requests(srv) == 2
    # testing mode off again: the cache answers the repeat
    af.configure(zoo=zoo)
    third, fourth = ask(), ask()
    assert not third.cache_hit
    assert fourth.cache_hit
    assert _chat_requests(srv) == 3


def test_testing_mode_can_keep_the_cache(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    @af.step(tier="small", cache="exact")
    def ask() -> af.Completion:
        return af.complete(USER)

    with testing.set_testing(True, cache=True):
        af.configure(zoo=zoo)
        assert [ask().cache_hit, ask().cache_hit] == [False, True]


def test_set_testing_resets_process_state(zoo: af.ModelZoo) -> None:
    assert af.get_config().zoo is zoo
    switch = testing.set_testing(True)
    assert testing.is_testing()
    assert af.get_config().zoo is None  # a fresh process: nothing configured
    with pytest.raises(af.NotConfiguredError):
        af.complete(USER)
    with switch:  # the returned switch is a context manager that puts the old mode back
        pass
    assert not testing.is_testing()


def test_nested_switches_restore_in_turn() -> None:
    with testing.set_testing(True):
        with testing.set_testing(False):
            assert not testing.is_testing()
        assert testing.is_testing()
    assert not testing.is_testing()


def test_reset_state_forgets_configuration_and_in_flight_counts(zoo: af.ModelZoo) -> None:
    from agentflow.pipeline.route import inflight

    inflight.begin("some-endpoint")
    testing.reset_state()
    assert inflight.count("some-endpoint") == 0
    assert af.get_config().zoo is None


async def test_testing_mode_under_asyncio(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    srv.script(Fault.status(503, retry_after=30), Reply("ok"))
    with testing.set_testing(True):
        af.configure(zoo=zoo, retry=af.RetryPolicy(max_retry_after=30))
        t0 = time.monotonic()
        with af.run("t", budget=Budget(max_calls=5)) as run:
            answer = await af.acomplete(USER)
        assert time.monotonic() - t0 < 10
    assert answer.text == "ok"
    assert run.totals.calls == 2
