"""Replica health: cooldowns, half-open probes, recoveries, active /health probes.

Real loopback servers and a real closed port; the spans and metrics are read back from
in-memory exporters.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
import tracing
from agentflow.pipeline.health import HealthProbes, ReplicaHealth, counts_against, replica_health
from agentflow.pipeline.layout import prefix_key
from agentflow.pipeline.route import rendezvous
from agentflow.testing import Fault, LoopbackServer, Reply

RETRY = af.RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there: connection refused


def _system(i: int) -> dict[str, str]:
    return {"role": "system", "content": f"You are assistant number {i}. " * 8}


def _ask(i: int) -> af.Completion:
    return af.complete(messages=[_system(i), {"role": "user", "content": "hi"}])


@pytest.fixture
def live() -> Iterator[list[LoopbackServer]]:
    with LoopbackServer(name="a") as a, LoopbackServer(name="b") as b:
        yield [a, b]


@pytest.fixture
def telemetry() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    with tracing.use_providers(tracer_provider=tp, meter_provider=MeterProvider([reader])):
        yield exporter, reader


def _health_counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    """``{(event, endpoint): count}`` from the agentflow.replica.health counter."""
    counts: dict[tuple[str, str], int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != "agentflow.replica.health":
                    continue
                for point in metric.data.data_points:
                    a = point.attributes or {}
                    key = (str(a["agentflow.replica.event"]), str(a["agentflow.endpoint"]))
                    value = getattr(point, "value", 0)  # a counter: NumberDataPoint
                    counts[key] = counts.get(key, 0) + int(value)
    return counts


def _events(exporter: InMemorySpanExporter) -> list[tuple[str, str]]:
    return [
        (e.name, str((e.attributes or {}).get("agentflow.endpoint")))
        for s in exporter.get_finished_spans()
        for e in s.events
        if e.name.startswith("agentflow.replica.")
    ]


def _fleet(live: list[LoopbackServer], dead_port: int) -> tuple[af.ModelZoo, af.Endpoint]:
    dead = af.Endpoint(
        model="openai/m", api_base=f"http://127.0.0.1:{dead_port}/v1", name="dead", timeout=2
    )
    eps = [af.Endpoint(model="openai/m", api_base=s.base_url, name=s.name, timeout=2) for s in live]
    zoo = af.ModelZoo(tiers=[af.Tier("pool", endpoints=[*eps, dead])])
    af.configure(zoo=zoo, retry=RETRY)
    return zoo, dead


def _pinned_to(endpoint: af.Endpoint, zoo: af.ModelZoo, n: int = 200) -> list[int]:
    """Prefixes (of ``_ask``) whose first replica is ``endpoint``."""
    eps = zoo.tier("pool").endpoints
    return [
        i
        for i in range(n)
        if rendezvous(prefix_key([_system(i), {"role": "user", "content": "hi"}]), eps)[0].id
        == endpoint.id
    ]


# -- passive: the plan's own failures -------------------------------------------------------
def test_a_dead_replica_costs_one_failed_attempt_per_cooldown(
    live: list[LoopbackServer], telemetry: Any
) -> None:
    exporter, reader = telemetry
    replica_health.configure(cooldown=30.0)
    zoo, dead = _fleet(live, _closed_port())
    pinned = _pinned_to(dead, zoo)
    assert len(pinned) > 20

    completions = [_ask(i) for i in range(60)]

    failed = [a for c in completions for a in c.attempts if not a.ok]
    assert [a.endpoint for a in failed] == ["dead"]  # one, for 60 calls (20+ pinned there)
    first = completions[pinned[0]]
    # the call that met the dead replica failed over at once: no retry, no backoff sleep
    assert [a.ok for a in first.attempts] == [False, True]
    assert all(c.endpoint in ("a", "b") for c in completions)
    assert replica_health.state("dead").status == "cooling"
    assert ("agentflow.replica.cooldown", "dead") in _events(exporter)
    assert _health_counts(reader) == {("cooldown", "dead"): 1}


def test_after_the_cooldown_one_call_probes_and_the_replica_recovers(
    live: list[LoopbackServer], telemetry: Any
) -> None:
    exporter, reader = telemetry
    replica_health.configure(cooldown=0.3)
    port = _closed_port()
    zoo, dead = _fleet(live, port)
    pinned = _pinned_to(dead, zoo)
    assert _ask(pinned[0]).attempts[0].endpoint == "dead"  # the failure: a cooldown begins
    assert replica_health.state("dead").status == "cooling"
    assert _ask(pinned[1]).endpoint in ("a", "b")  # resting: not even tried
    assert len(_ask(pinned[1]).attempts) == 1

    with LoopbackServer(name="back", port=port) as back:  # the replica comes back
        time.sleep(0.35)
        assert replica_health.state("dead").status == "half-open"
        probe = _ask(pinned[2])
        assert probe.endpoint == "dead"  # the probe went there and succeeded
        assert replica_health.state("dead").status == "healthy"
        assert _ask(pinned[3]).endpoint == "dead"  # its prefixes are back home
        assert len(back.requests) == 2

    names = [n for n, ep in _events(exporter) if ep == "dead"]
    assert names == [
        "agentflow.replica.cooldown",
        "agentflow.replica.probe",
        "agentflow.replica.recovered",
    ]
    counts = _health_counts(reader)
    assert counts == {("cooldown", "dead"): 1, ("probe", "dead"): 1, ("recovered", "dead"): 1}


def test_a_failed_probe_doubles_the_cooldown(live: list[LoopbackServer]) -> None:
    replica_health.configure(cooldown=0.2, max_cooldown=0.5)
    zoo, dead = _fleet(live, _closed_port())
    pinned = _pinned_to(dead, zoo)
    _ask(pinned[0])
    assert replica_health.state("dead").failures == 1
    time.sleep(0.25)
    c = _ask(pinned[1])  # the probe fails: a longer cooldown
    assert [a.endpoint for a in c.attempts if not a.ok] == ["dead"]
    state = replica_health.state("dead")
    assert (state.status, state.failures) == ("cooling", 2)
    assert 0.3 < state.cooldown_left_s <= 0.4
    time.sleep(0.45)
    _ask(pinned[2])
    state = replica_health.state("dead")
    assert state.failures == 3
    assert 0.4 < state.cooldown_left_s <= 0.5  # capped at max_cooldown


def test_a_flapping_replica_rests_then_comes_back(live: list[LoopbackServer]) -> None:
    replica_health.configure(cooldown=0.2)
    a, b = live
    eps = [af.Endpoint(model="openai/m", api_base=s.base_url, name=s.name) for s in live]
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("pool", endpoints=eps)]), retry=RETRY)
    key_of = {e.id: e for e in eps}
    first = rendezvous(prefix_key([_system(0), {"role": "user", "content": "hi"}]), eps)[0]
    flaky = a if first.id == "a" else b
    flaky.script(Fault.status(503), Reply("back"))
    c = _ask(0)
    assert [(x.endpoint, x.ok) for x in c.attempts] == [(flaky.name, False), (c.endpoint, True)]
    assert c.endpoint != flaky.name
    assert _ask(0).endpoint != flaky.name  # resting
    time.sleep(0.25)
    assert _ask(0).text == "back"  # the probe
    assert replica_health.state(key_of[flaky.name].id).status == "healthy"
    assert _ask(0).endpoint == flaky.name


def test_a_single_replica_in_cooldown_is_still_tried(srv: LoopbackServer) -> None:
    """A call never fails without trying: with no other candidate, the resting replica
    is tried (and retried) as a last resort."""
    replica_health.configure(cooldown=30.0)
    ep = af.Endpoint(model="openai/m", api_base=srv.base_url, name="only")
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("solo", endpoints=[ep])]), retry=RETRY)
    srv.script(Fault.status(503))
    c = af.complete(messages=[{"role": "user", "content": "hi"}])
    assert [x.ok for x in c.attempts] == [False, True]  # retried: nothing else to try
    assert replica_health.state("only").status == "healthy"  # it answered: recovered
    srv.script(Fault.status(503), Fault.status(503), Fault.status(503))
    with pytest.raises(af.CallError):
        af.complete(messages=[{"role": "user", "content": "again"}])
    assert replica_health.state("only").status == "cooling"
    assert af.complete(messages=[{"role": "user", "content": "now"}]).endpoint == "only"


def test_a_resting_replica_goes_after_the_fallback_tier(srv: LoopbackServer) -> None:
    replica_health.configure(cooldown=30.0)
    down = af.Endpoint(model="openai/m", api_base=f"http://127.0.0.1:{_closed_port()}/v1")
    big = af.Endpoint(model="openai/big", api_base=srv.base_url, name="big")
    af.configure(
        zoo=af.ModelZoo(
            tiers=[af.Tier("small", endpoints=[down], fallback="big"), af.Tier("big", [big])]
        ),
        retry=RETRY,
    )
    first = af.complete(messages=[{"role": "user", "content": "hi"}])
    assert [(x.endpoint, x.ok) for x in first.attempts] == [(down.id, False), ("big", True)]
    for _ in range(5):
        c = af.complete(messages=[{"role": "user", "content": "hi"}])
        assert [(x.endpoint, x.ok) for x in c.attempts] == [("big", True)]


async def test_concurrent_async_calls_pay_for_a_dead_replica_once_per_window(
    live: list[LoopbackServer],
) -> None:
    replica_health.configure(cooldown=30.0)
    zoo, dead = _fleet(live, _closed_port())
    pinned = _pinned_to(dead, zoo)
    first = await af.acomplete(messages=[_system(pinned[0]), {"role": "user", "content": "hi"}])
    assert first.attempts[0].endpoint == "dead"
    results = await asyncio.gather(
        *(af.acomplete(messages=[_system(i), {"role": "user", "content": "hi"}]) for i in range(80))
    )
    assert all(a.ok for c in results for a in c.attempts)  # none went to the dead one


def test_what_counts_against_a_replica() -> None:
    class StatusError(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(f"HTTP {code}")
            self.status_code = code

    assert counts_against(ConnectionRefusedError("refused"))
    assert counts_against(TimeoutError("slow"))
    assert counts_against(StatusError(503))
    assert counts_against(StatusError(500))
    assert counts_against(StatusError(404))  # the model is not served there
    assert not counts_against(StatusError(429))  # busy, not broken
    assert not counts_against(StatusError(400))  # the request is wrong
    assert not counts_against(StatusError(408))


def test_only_one_probe_at_a_time() -> None:
    health = ReplicaHealth(cooldown=0.05, probe_lease=0.2)
    assert health.failed("r", ConnectionRefusedError())
    assert not health.admit("r")  # cooling
    time.sleep(0.06)
    assert health.available("r")
    assert health.admit("r")  # the probe
    assert not health.admit("r")  # a second caller waits for its result
    assert health.state("r").status == "probing"
    time.sleep(0.21)  # the probe never reported (a cancelled call): its lease ends
    assert health.admit("r")
    health.succeeded("r")
    assert health.state("r").status == "healthy"


def test_bad_settings_say_what_to_pass() -> None:
    with pytest.raises(af.ConfigError, match="positive number of seconds"):
        ReplicaHealth(cooldown=0)
    with pytest.raises(af.ConfigError, match="cooldown <= max_cooldown"):
        ReplicaHealth(cooldown=10, max_cooldown=1)
    with pytest.raises(af.ConfigError, match="positive number"):
        HealthProbes([], interval=-1)


# -- active: GET /health ---------------------------------------------------------------------
def test_health_probes_find_a_dead_replica_before_any_call(
    live: list[LoopbackServer], telemetry: Any
) -> None:
    exporter, reader = telemetry
    replica_health.configure(cooldown=30.0)
    zoo, _ = _fleet(live, _closed_port())
    b = live[1]
    b.health_status = 503  # loading, say
    probes = HealthProbes(zoo, interval=0.05, timeout=1.0)

    assert probes.probe_all() == {"a": True, "b": False, "dead": False}
    assert replica_health.state("dead").status == "cooling"
    assert replica_health.state("b").status == "cooling"
    # every call now goes to a: no call pays for finding out
    for c in [_ask(i) for i in range(20)]:
        assert [(x.endpoint, x.ok) for x in c.attempts] == [("a", True)]

    b.health_status = 200
    with probes:  # the background thread: b answers again and recovers at once
        deadline = time.monotonic() + 3
        while replica_health.state("b").status != "healthy" and time.monotonic() < deadline:
            time.sleep(0.02)
    assert replica_health.state("b").status == "healthy"
    assert replica_health.state("dead").status == "cooling"
    health_spans = [s for s in exporter.get_finished_spans() if s.name == "replica health"]
    seen = {
        (e.name, (e.attributes or {})["agentflow.endpoint"]) for s in health_spans for e in s.events
    }
    assert seen >= {
        ("agentflow.replica.cooldown", "dead"),
        ("agentflow.replica.cooldown", "b"),
        ("agentflow.replica.recovered", "b"),
    }
    counts = _health_counts(reader)
    assert counts[("recovered", "b")] == 1
    assert counts[("cooldown", "dead")] == 1  # probed again while cooling: no new event


# -- real llama-server replicas: one killed mid-run, then restarted -------------------------
def test_real_llama_replica_killed_mid_run_and_restarted() -> None:
    from agentflow.local import LlamaServer

    replica_health.configure(cooldown=0.5, max_cooldown=2.0)
    servers = [
        LlamaServer("smollm2", port=_closed_port(), threads=1, parallel=2, ctx_size=2048)
        for _ in range(2)
    ]
    try:
        for s in servers:
            s.start()
        eps = [
            af.Endpoint(
                model="openai/" + s.alias, api_base=s.base_url, name=f"llama-{i}", timeout=120
            )
            for i, s in enumerate(servers)
        ]
        zoo = af.ModelZoo(tiers=[af.Tier("pool", endpoints=eps)])
        af.configure(zoo=zoo, retry=RETRY)

        def brief(i: int) -> list[dict[str, str]]:
            return [
                {"role": "system", "content": f"You are assistant number {i}. Be brief."},
                {"role": "user", "content": "Say ok."},
            ]

        def ask(i: int) -> af.Completion:
            return af.complete(messages=brief(i), max_tokens=2)

        victim = eps[0]
        homes = [(i, rendezvous(prefix_key(brief(i)), eps)[0].id) for i in range(40)]
        pinned = [i for i, home in homes if home == victim.id][:6]
        assert len(pinned) == 6
        assert {ask(i).endpoint for i in pinned} == {victim.id}

        servers[0].stop()  # killed mid-run
        t0 = time.monotonic()
        during = [ask(i) for i in pinned for _ in range(2)]
        elapsed = time.monotonic() - t0
        assert all(c.endpoint == "llama-1" for c in during)
        failed = [a for c in during for a in c.attempts if not a.ok]
        assert all(a.endpoint == victim.id for a in failed)
        # at most one failed attempt per cooldown window (0.5 s, 1 s, 2 s, 2 s, ...)
        assert 1 <= len(failed) <= 2 + int(elapsed / 0.5)

        servers[0].start()  # back, on the same port
        time.sleep(replica_health.state(victim.id).cooldown_left_s + 0.05)
        after = [ask(i).endpoint for i in pinned]
        assert after == [victim.id] * len(pinned)  # the probe succeeded: its prefixes came home
        assert replica_health.state(victim.id).status == "healthy"
    finally:
        for s in servers:
            s.stop()


# -- shared through Redis --------------------------------------------------------------------
def test_cooldowns_and_recoveries_are_shared_through_redis(redis_url: str) -> None:
    import uuid

    from agentflow.pipeline.health_sync import HealthSync

    prefix = f"test-health-{uuid.uuid4().hex}:"
    here, there = ReplicaHealth(cooldown=30.0), ReplicaHealth(cooldown=30.0)
    sync_here = HealthSync(redis_url, prefix=prefix, health=here)
    sync_there = HealthSync(redis_url, prefix=prefix, health=there, interval=0.05)
    try:
        assert here.failed("replica-1", ConnectionRefusedError("refused"))
        assert there.state("replica-1").status == "healthy"  # nothing shared yet
        sync_here.sync()
        sync_there.sync()
        shared = there.state("replica-1")
        assert shared.status == "cooling"
        assert 29 < shared.cooldown_left_s <= 30
        assert not there.admit("replica-1")  # the other process skips it too

        with sync_there:  # its thread: a recovery seen here reaches there
            here.succeeded("replica-1")
            sync_here.sync()
            deadline = time.monotonic() + 3
            while there.state("replica-1").status != "healthy" and time.monotonic() < deadline:
                time.sleep(0.02)
        assert there.state("replica-1").status == "healthy"
        # a value agentflow did not write is ignored, never decoded as anything else
        sync_there.client.set(prefix + "replica-2", b"\x80\x04not json")
        sync_there.sync()
        assert there.state("replica-2").status == "healthy"
    finally:
        sync_here.close()
        sync_there.close()
    with pytest.raises(af.ConfigError, match="exactly one of url"):
        HealthSync()
