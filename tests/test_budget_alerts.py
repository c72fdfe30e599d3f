"""Budget alerts: ``Budget(alerts=(0.5, 0.8, 1.0))`` fires each threshold exactly once per
ledger key and window, as a span event, a metric and the ``on_budget_alert`` callback;
under threads, asyncio tasks and several backend instances sharing one store (what
separate processes see), on the memory, diskcache and Redis backends."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

import agentflow as af
import tracing
from agentflow.testing import LoopbackServer, Reply
from budgets import (
    Budget,
    BudgetAlert,
    DiskCacheBackend,
    Ledger,
    LedgerBackend,
    MemoryBackend,
    RedisBackend,
    TokenPricing,
)

PRICE = TokenPricing(input_per_mtok=1, output_per_mtok=2)
THRESHOLDS = (0.5, 0.8, 1.0)
QUESTION = [{"role": "user", "content": "hi"}]

# each test gets fresh backends; the "second" one is another instance on the same store,
# as another process would open it
BackendPair = tuple[LedgerBackend, LedgerBackend]


@pytest.fixture(params=["memory", "disk", "redis"])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendPair]:
    kind = request.param
    made: list[LedgerBackend] = []
    if kind == "memory":
        one = MemoryBackend()
        made = [one, one]  # one process: the same instance
    elif kind == "disk":
        made = [DiskCacheBackend(tmp_path / "ledger"), DiskCacheBackend(tmp_path / "ledger")]
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"alerts-{uuid.uuid4().hex}:"
        made = [RedisBackend(url, prefix=prefix), RedisBackend(url, prefix=prefix)]
    yield made[0], made[1]
    for backend in {id(b): b for b in made}.values():
        backend.close()


def _zoo(srv: LoopbackServer) -> af.ModelZoo:
    endpoint = af.Endpoint(model="openai/small", api_base=srv.base_url, pricing=PRICE)
    return af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])])


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    with tracing.use_providers(meter_provider=MeterProvider([reader])):
        yield reader


def _alert_counts(reader: InMemoryMetricReader) -> dict[tuple[Any, ...], int]:
    counts: dict[tuple[Any, ...], int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "agentflow.budget.alerts":
                    continue
                for point in metric.data.data_points:
                    a = point.attributes or {}
                    key = (
                        a.get("agentflow.budget.scope"),
                        a.get("agentflow.budget.limit"),
                        a.get("agentflow.budget.threshold"),
                    )
                    counts[key] = counts.get(key, 0) + int(point.value)  # type: ignore[union-attr]  # a counter: sums
    return counts


def _alert_events(spans: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [
        dict(event.attributes or {})
        for span in spans.get_finished_spans()
        for event in span.events
        if event.name == "agentflow.budget.alert"
    ]


# --- the ledger alone ---------------------------------------------------------------


def test_each_threshold_once_under_threads_and_two_instances(backends: BackendPair) -> None:
    first, second = backends
    budget = Budget(max_usd=Decimal("0.05"), max_calls=50, alerts=THRESHOLDS)
    ledgers = [
        Ledger(budget, name="tenant 'acme' budget", backend=backend, key="tenant:acme")
        for backend in (first, second)
    ]
    fired: list[BudgetAlert] = []
    lock = threading.Lock()

    def one_call(i: int) -> None:
        ledger = ledgers[i % 2]  # half the calls through each instance
        hold = ledger.reserve(usd=Decimal("0.001"))
        ledger.settle(hold, usd=Decimal("0.001"), input_tokens=10, output_tokens=5)
        due = ledger.alerts_due()
        with lock:
            fired.extend(due)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one_call, range(50)))

    got = sorted((a.limit, a.threshold) for a in fired)
    expected = sorted((limit, t) for limit in ("max_usd", "max_calls") for t in THRESHOLDS)
    assert got == expected  # every threshold of both limits, each exactly once
    for alert in fired:
        assert alert.budget == "tenant 'acme' budget"
        assert alert.key == "tenant:acme"
        assert alert.window_start is None
        assert alert.spent >= Decimal(str(alert.threshold)) * Decimal(alert.maximum)
        assert alert.fraction >= alert.threshold
    calls = {a.threshold: a for a in fired if a.limit == "max_calls"}
    assert calls[1.0].spent == 50
    assert calls[1.0].maximum == 50
    usd = {a.threshold: a for a in fired if a.limit == "max_usd"}
    assert usd[1.0].maximum == Decimal("0.05")
    assert str(calls[0.8]).startswith("tenant 'acme' budget reached 80% of max_calls: spent ")
    # nothing more to tell, whichever instance asks
    assert ledgers[0].alerts_due() == []
    assert ledgers[1].alerts_due() == []


_WORKER = """
import json, sys
from budgets import Budget, DiskCacheBackend, Ledger, RedisBackend
kind, where, prefix = sys.argv[1:4]
backend = DiskCacheBackend(where) if kind == "disk" else RedisBackend(where, prefix=prefix)
ledger = Ledger(Budget(max_calls=100, alerts=(0.5, 0.8, 1.0)), backend=backend, key="tenant:p")
fired = []
for _ in range(25):
    ledger.settle(ledger.reserve(), usd=0, input_tokens=1, output_tokens=1)
    fired += [[a.limit, a.threshold, a.spent] for a in ledger.alerts_due()]
backend.close()
print(json.dumps(fired))
"""


@pytest.mark.parametrize("kind", ["disk", "redis"])
def test_four_processes_fire_each_threshold_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = str(tmp_path / "ledger")
    if kind == "redis":
        where = request.getfixturevalue("redis_url")
    prefix = f"procs-{uuid.uuid4().hex}:"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, kind, where, prefix],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    fired: list[list[Any]] = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        fired += json.loads(out)
    assert sorted(threshold for _, threshold, _ in fired) == list(THRESHOLDS)
    assert all(
        limit == "max_calls" and spent >= threshold * 100 for limit, threshold, spent in fired
    )


def test_async_tasks_fire_each_threshold_once(backends: BackendPair) -> None:
    first, second = backends
    budget = Budget(max_calls=50, alerts=THRESHOLDS)

    async def main() -> list[BudgetAlert]:
        ledgers = [
            Ledger(budget, name="run budget", backend=backend, key="run:x")
            for backend in (first, second)
        ]

        async def one_call(i: int) -> list[BudgetAlert]:
            ledger = ledgers[i % 2]
            hold = await ledger.areserve()
            await ledger.asettle(hold, usd=0, input_tokens=1, output_tokens=1)
            return await ledger.aalerts_due()

        results = await asyncio.gather(*(one_call(i) for i in range(50)))
        for backend in {id(b): b for b in (first, second)}.values():
            if isinstance(backend, RedisBackend):
                await backend.aclose()
        return [alert for due in results for alert in due]

    fired = asyncio.run(main())
    assert sorted(a.threshold for a in fired) == list(THRESHOLDS)
    for alert in fired:  # what was settled when the winner read it: at least the threshold
        assert alert.threshold * 50 <= alert.spent <= 50
    assert {a.threshold: a.spent for a in fired}[1.0] == 50


def test_a_new_window_fires_again() -> None:
    now = [1_000_000.0]
    budget = Budget(max_calls=2, window=timedelta(seconds=10), alerts=(1.0,))
    ledger = Ledger(budget, backend=MemoryBackend(), key="k", clock=lambda: now[0])
    for _ in range(2):
        ledger.settle(ledger.reserve(), usd=0, input_tokens=0, output_tokens=0)
    (alert,) = ledger.alerts_due()
    assert alert.window_start is not None
    assert alert.window_start.timestamp() == 1_000_000.0
    now[0] += 10
    assert ledger.alerts_due() == []  # the new window has spent nothing yet
    for _ in range(2):
        ledger.settle(ledger.reserve(), usd=0, input_tokens=0, output_tokens=0)
    (again,) = ledger.alerts_due()
    assert again.window_start is not None
    assert again.window_start.timestamp() == 1_000_010.0


def test_a_jump_past_several_thresholds_fires_each_of_them() -> None:
    ledger = Ledger(Budget(max_input_tokens=1000, alerts=THRESHOLDS))
    ledger.settle(ledger.reserve(input_tokens=900), usd=0, input_tokens=850, output_tokens=0)
    assert [a.threshold for a in ledger.alerts_due()] == [0.5, 0.8]


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ((0.5, 0), "in (0, 1]"),
        ((1.5,), "in (0, 1]"),
        ("0.5", "fractions of the limits"),
        ((True,), "fractions such as 0.8"),
    ],
)
def test_bad_alerts_are_refused(alerts: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("]", r"\]")):
        Budget(max_calls=3, alerts=alerts)


def test_alerts_need_a_limit() -> None:
    with pytest.raises(ValidationError, match="sets none; give a limit too"):
        Budget(alerts=(0.5,))
    assert Budget(max_calls=3, alerts=[1.0, 0.5, 0.5]).alerts == (0.5, 1.0)


# --- through agentflow: span event, metric, callback --------------------------------


def _configure(
    srv: LoopbackServer,
    backend: LedgerBackend,
    budget: Budget,
    callback: Callable[[BudgetAlert], object],
) -> None:
    srv.default = Reply("ok", prompt_tokens=10, completion_tokens=2)
    af.configure(
        zoo=_zoo(srv),
        tenant_budget=budget,
        ledger_backend=backend,
        on_budget_alert=callback,
    )


def test_fifty_sync_calls_fire_each_threshold_once_three_ways(
    backends: BackendPair, spans: InMemorySpanExporter, reader: InMemoryMetricReader
) -> None:
    fired: list[BudgetAlert] = []
    with LoopbackServer() as srv:
        _configure(
            srv, backends[0], Budget(max_calls=50, window=timedelta(days=1), alerts=THRESHOLDS),
            fired.append,
        )  # fmt: skip
        with af.run("daily", user_id="acme"):
            for _ in range(50):
                af.complete(QUESTION)

    assert [(a.limit, a.threshold, a.spent, a.maximum) for a in fired] == [
        ("max_calls", 0.5, 25, 50),
        ("max_calls", 0.8, 40, 50),
        ("max_calls", 1.0, 50, 50),
    ]
    assert all(a.budget == "tenant 'acme' budget" and a.key == "tenant:acme" for a in fired)
    assert all(a.window_start is not None for a in fired)
    events = _alert_events(spans)
    assert sorted(
        (e["agentflow.budget.threshold"], e["agentflow.budget.spent"]) for e in events
    ) == [
        (0.5, 25.0),
        (0.8, 40.0),
        (1.0, 50.0),
    ]
    assert {e["agentflow.budget.scope"] for e in events} == {"tenant"}
    assert {e["agentflow.budget.maximum"] for e in events} == {50.0}
    assert _alert_counts(reader) == {
        ("tenant", "max_calls", 0.5): 1,
        ("tenant", "max_calls", 0.8): 1,
        ("tenant", "max_calls", 1.0): 1,
    }


def test_fifty_concurrent_async_calls_fire_each_threshold_once(
    backends: BackendPair, reader: InMemoryMetricReader
) -> None:
    fired: list[BudgetAlert] = []
    # each call: 10 prompt tokens at $1/M + 2 output tokens at $2/M = $0.000014, so 50
    # calls spend $0.0007: half of max_usd, all of max_calls
    budget = Budget(
        max_calls=50, max_usd=Decimal("0.0014"), window=timedelta(days=1), alerts=THRESHOLDS
    )
    with LoopbackServer() as srv:
        _configure(srv, backends[0], budget, fired.append)

        async def main() -> list[af.Completion]:
            async with af.run("burst", user_id="acme"):
                results = await asyncio.gather(
                    *(af.acomplete(QUESTION, max_tokens=2) for _ in range(50))
                )
            if isinstance(backends[0], RedisBackend):
                await backends[0].aclose()
            return results

        results = asyncio.run(main())
    assert len(results) == 50
    assert sorted((a.limit, a.threshold) for a in fired) == [
        ("max_calls", 0.5),
        ("max_calls", 0.8),
        ("max_calls", 1.0),
        ("max_usd", 0.5),
    ]
    for alert in fired:  # settles race the reads: the figure is what the winner saw
        assert Decimal(str(alert.threshold)) * alert.maximum <= alert.spent
    calls = {a.threshold: a for a in fired if a.limit == "max_calls"}
    assert calls[1.0].spent == 50
    (usd,) = [a for a in fired if a.limit == "max_usd"]
    assert (usd.spent, usd.maximum) == (Decimal("0.0007"), Decimal("0.0014"))
    assert _alert_counts(reader) == {
        ("tenant", "max_calls", 0.5): 1,
        ("tenant", "max_calls", 0.8): 1,
        ("tenant", "max_calls", 1.0): 1,
        ("tenant", "max_usd", 0.5): 1,
    }


def test_a_failing_callback_is_logged_and_never_breaks_the_call(
    caplog: pytest.LogCaptureFixture, spans: InMemorySpanExporter
) -> None:
    def broken(alert: BudgetAlert) -> None:
        raise RuntimeError("pager is down")

    with LoopbackServer() as srv:
        _configure(srv, MemoryBackend(), Budget(max_calls=2, alerts=(0.5,)), broken)
        with caplog.at_level(logging.ERROR, logger="agentflow.budget"), af.run("r", user_id="u"):
            answer = af.complete(QUESTION)
    assert answer.text == "ok"
    assert "on_budget_alert raised" in caplog.text
    assert "pager is down" in caplog.text
    assert len(_alert_events(spans)) == 1  # the event was recorded before the callback


def test_run_and_step_budgets_alert_too(spans: InMemorySpanExporter) -> None:
    fired: list[BudgetAlert] = []
    with LoopbackServer() as srv:
        srv.default = Reply("ok", prompt_tokens=10, completion_tokens=2)
        af.configure(zoo=_zoo(srv), on_budget_alert=fired.append)

        @af.step(budget=Budget(max_calls=2, alerts=(1.0,)))
        def twice() -> None:
            af.complete(QUESTION)
            af.complete(QUESTION)

        with af.run("r", budget=Budget(max_calls=4, alerts=(0.5,))):
            twice()
            twice()
    scopes = sorted((a.budget.split(" ")[0], a.threshold) for a in fired)
    # the step's budget is per invocation: both invocations reach 100 % of theirs
    assert scopes == [("run", 0.5), ("step", 1.0), ("step", 1.0)]


def test_on_budget_alert_must_be_callable() -> None:
    with pytest.raises(af.ConfigError, match="on_budget_alert must be a function"):
        af.configure(on_budget_alert="pager")  # type: ignore[arg-type]
