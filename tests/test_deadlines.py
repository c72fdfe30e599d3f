"""``RetryPolicy.max_time`` bounds a call's wall time; ``Retry-After`` as an HTTP date is
honoured; a replica asking for a long wait is left for a healthy one at once; a refused
connection is not recorded as an HTTP 500."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace

import pytest

import agentflow as af
from agentflow.pipeline.call import litellm, retry_after
from agentflow.testing import Fault, LoopbackServer, Reply
from tests.conftest import USER, _endpoint


@pytest.fixture(autouse=True)
def _litellm_imported() -> None:
    litellm()  # its import takes seconds on a busy machine: never inside a timing


def test_max_time_bounds_a_slow_reply_sync(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    af.configure(retry=af.RetryPolicy(max_time=1.0, initial_backoff=0.01, max_backoff=0.02))
    srv.default = Reply("late", latency=6)
    t0 = time.monotonic()
    with pytest.raises(af.CallError):
        af.complete(USER)
    assert time.monotonic() - t0 < 4  # not the 6 s the reply takes, nor 5 s x retries


async def test_max_time_bounds_a_slow_reply_async(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    af.configure(retry=af.RetryPolicy(max_time=1.0, initial_backoff=0.01, max_backoff=0.02))
    srv.default = Reply("late", latency=6)
    t0 = time.monotonic()
    with pytest.raises(af.CallError) as err:
        await af.acomplete(USER)
    assert time.monotonic() - t0 < 4
    assert "max_time" in str(err.value) or "Timeout" in str(err.value)


def test_retry_after_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    err = SimpleNamespace(
        response=SimpleNamespace(headers={"retry-after": format_datetime(when, usegmt=True)})
    )
    asked = retry_after(err)  # type: ignore[arg-type]
    assert asked is not None
    assert 25 < asked <= 30
    past = SimpleNamespace(headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after(past) == 0.0  # type: ignore[arg-type]
    assert retry_after(SimpleNamespace(headers={"retry-after": "soon"})) is None  # type: ignore[arg-type]


def test_a_long_retry_after_fails_over_to_a_healthy_replica_at_once() -> None:
    with LoopbackServer(name="busy") as busy, LoopbackServer(name="free") as free:
        busy.default = Fault.status(429, retry_after=25)
        free.default = Reply("from the free replica")
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("pool", endpoints=[_endpoint(busy), _endpoint(free)])]),
            retry=af.RetryPolicy(max_retry_after=30),
        )
        for i in range(4):  # different prefixes: some are pinned to the busy replica
            t0 = time.monotonic()
            answer = af.complete([{"role": "user", "content": f"question {i}"}])
            assert answer.text == "from the free replica"
            assert time.monotonic() - t0 < 10  # not the 25 s the busy replica asked for


def test_a_refused_connection_has_no_http_status(zoo: af.ModelZoo) -> None:
    with LoopbackServer() as gone:
        dead = _endpoint(gone)
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("dead", endpoints=[dead])]),
        retry=af.RetryPolicy(max_attempts=1),
    )
    with pytest.raises(af.CallError) as err:
        af.complete(USER)
    assert err.value.attempts
    assert all(a.status_code is None for a in err.value.attempts)
