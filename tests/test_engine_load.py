"""Engine-reported load: parsing llama-server, vLLM and SGLang metrics, the background
poller, and bounded-load routing on it (a saturated pinned replica spills, and its
prefixes come back when it drains). Fixtures in tests/fixtures/ are real payloads
(llama-server, captured from the installed build) or the engines' documented ones.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import agentflow as af
from agentflow.local import LlamaServer
from agentflow.pipeline.layout import prefix_key
from agentflow.pipeline.load import (
    EngineLoad,
    EngineLoadMonitor,
    engine_load,
    parse_prometheus,
    read_engine_load,
)
from agentflow.pipeline.route import candidates, rendezvous
from agentflow.testing import LoopbackServer, Reply

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEM = {"role": "system", "content": "You answer questions about invoices. " * 10}


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _llama_metrics(processing: int, deferred: int) -> str:
    """The real llama-server payload with its two load gauges set."""
    lines = []
    for line in _fixture("llama_server_metrics_busy.txt").splitlines():
        if line.startswith("llamacpp:requests_processing "):
            line = f"llamacpp:requests_processing {processing}"
        elif line.startswith("llamacpp:requests_deferred "):
            line = f"llamacpp:requests_deferred {deferred}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# -- parsing: the engines' payloads -------------------------------------------------------
def test_llama_server_busy_payload() -> None:
    slots = json.loads(_fixture("llama_server_metrics_slots_busy.json"))
    load = read_engine_load(_fixture("llama_server_metrics_busy.txt"), slots)
    assert load == EngineLoad("llama.cpp", running=2, waiting=1, kv_cache_usage=None, slots=2)
    assert load.load == 3
    # one request behind a short batch: cheaper than recomputing its prefix elsewhere
    assert not load.saturated
    assert EngineLoad("llama.cpp", running=2, waiting=2, slots=2).saturated  # a full batch


def test_llama_server_idle_payload() -> None:
    load = read_engine_load(_fixture("llama_server_metrics_idle.txt"), [{}, {}])
    assert load is not None
    assert (load.running, load.waiting, load.slots) == (0, 0, 2)
    assert not load.saturated


def test_vllm_payload_sums_engines_and_takes_the_fullest_kv_cache() -> None:
    load = read_engine_load(_fixture("vllm_metrics.txt"))
    assert load == EngineLoad("vllm", running=46, waiting=3, kv_cache_usage=0.9312)
    assert load.saturated  # a queue has formed


def test_vllm_v0_payload_reads_the_old_kv_cache_name() -> None:
    load = read_engine_load(_fixture("vllm_v0_metrics.txt"))
    assert load == EngineLoad("vllm", running=8, waiting=0, kv_cache_usage=0.4125)
    assert not load.saturated


def test_sglang_payload() -> None:
    load = read_engine_load(_fixture("sglang_metrics.txt"))
    assert load == EngineLoad("sglang", running=162, waiting=2826, kv_cache_usage=0.28)
    assert load.saturated


def test_a_full_kv_cache_saturates_without_a_queue() -> None:
    assert EngineLoad("vllm", running=3, waiting=0, kv_cache_usage=0.97).saturated
    assert not EngineLoad("vllm", running=3, waiting=0, kv_cache_usage=0.5).saturated
    assert EngineLoad("vllm", running=3, waiting=1, kv_cache_usage=0.5).saturated
    assert not EngineLoad("llama.cpp", running=2, waiting=0, slots=2).saturated
    assert EngineLoad("llama.cpp", running=4, waiting=1).saturated  # slots unknown


def test_prometheus_text_edge_cases() -> None:
    text = (
        "# HELP x A gauge\n"
        'vllm:num_requests_running{model_name="my model {v2}",engine="0"} 4 1712000000000\n'
        "vllm:num_requests_waiting NaN\n"
        "garbage line\n"
        "vllm:num_requests_waiting 2\n"
        "\n"
    )
    samples = parse_prometheus(text)
    assert samples["vllm:num_requests_running"] == [4.0]
    assert len(samples["vllm:num_requests_waiting"]) == 2
    assert read_engine_load("some_other_engine_total 3\n") is None
    assert read_engine_load("") is None


# -- the poller ------------------------------------------------------------------------------
@pytest.fixture
def pool() -> Iterator[tuple[af.ModelZoo, dict[str, LoopbackServer]]]:
    with LoopbackServer(name="a") as a, LoopbackServer(name="b") as b:
        servers = {"a": a, "b": b}
        eps = [
            af.Endpoint(model="openai/m", api_base=s.base_url, name=n) for n, s in servers.items()
        ]
        zoo = af.ModelZoo(tiers=[af.Tier("pool", endpoints=eps)])
        af.configure(zoo=zoo, retry=af.RetryPolicy(initial_backoff=0.01, max_backoff=0.05))
        for s in servers.values():
            s.metrics = _llama_metrics(0, 0)
        yield zoo, servers
    engine_load.reset()


def _pinned(zoo: af.ModelZoo) -> str:
    key = prefix_key([SYSTEM, {"role": "user", "content": "x"}])
    return rendezvous(key, zoo.tier("pool").endpoints)[0].id


def _ask(question: str) -> af.Completion:
    return af.complete(messages=[SYSTEM, {"role": "user", "content": question}])


def test_the_monitor_polls_off_the_call_path(
    pool: tuple[af.ModelZoo, dict[str, LoopbackServer]],
) -> None:
    zoo, servers = pool
    monitor = EngineLoadMonitor(interval=0.05)
    monitor.watch(zoo.endpoints())
    assert monitor.get("a") is None  # watching sends nothing by itself
    assert not [r for s in servers.values() for r in s.requests if r.path == "/metrics"]
    with monitor:
        _wait_for(lambda: monitor.get("a") is not None and monitor.get("b") is not None)
    reading = monitor.get("a")
    assert reading == EngineLoad("llama.cpp", running=0, waiting=0, slots=None)
    slots_asked = [r for r in servers["a"].requests if r.path == "/slots"]
    assert len(slots_asked) == 1  # asked once (the loopback server has none: 404)
    monitor.configure(ttl=0.05)
    time.sleep(0.1)
    assert monitor.get("a") is None  # stale once the poller stopped


def test_a_replica_without_metrics_is_asked_rarely(srv: LoopbackServer) -> None:
    ep = af.Endpoint(model="openai/m", api_base=srv.base_url, name="plain")
    monitor = EngineLoadMonitor(interval=0.02)
    monitor.watch([ep])
    with monitor:
        time.sleep(0.3)
    assert monitor.get("plain") is None
    assert len([r for r in srv.requests if r.path == "/metrics"]) == 1  # 404: next in 30 s


def test_bad_monitor_settings_say_what_to_pass() -> None:
    with pytest.raises(af.ConfigError, match="positive number of seconds"):
        EngineLoadMonitor(interval=0)
    with pytest.raises(af.ConfigError, match="timeout"):
        EngineLoadMonitor(timeout=-1)


# -- routing on engine load ------------------------------------------------------------------
def test_a_saturated_pinned_replica_spills_and_comes_back_when_it_drains(
    pool: tuple[af.ModelZoo, dict[str, LoopbackServer]],
) -> None:
    zoo, servers = pool
    home = _pinned(zoo)
    other = "b" if home == "a" else "a"
    engine_load.start(zoo, interval=0.05)
    _wait_for(lambda: engine_load.get(home) is not None)
    assert _ask("q0").endpoint == home  # idle: affinity

    servers[home].metrics = _llama_metrics(2, 3)  # another process filled it: a queue
    _wait_for(lambda: (r := engine_load.get(home)) is not None and r.saturated)
    spilled = [_ask(f"q{i}").endpoint for i in range(1, 6)]
    assert spilled == [other] * 5
    # failover order still has the home replica right after the spill target
    key = prefix_key([SYSTEM, {"role": "user", "content": "x"}])
    assert [e.id for _, e in candidates(zoo, "pool", key)] == [other, home]

    servers[home].metrics = _llama_metrics(1, 0)  # drained
    _wait_for(lambda: (r := engine_load.get(home)) is not None and not r.saturated)
    assert [_ask(f"r{i}").endpoint for i in range(3)] == [home] * 3


def test_when_every_replica_is_saturated_the_prefix_stays_home(
    pool: tuple[af.ModelZoo, dict[str, LoopbackServer]],
) -> None:
    zoo, servers = pool
    home = _pinned(zoo)
    for s in servers.values():
        s.metrics = _llama_metrics(2, 5)
    engine_load.start(zoo, interval=0.05)
    _wait_for(lambda: all((r := engine_load.get(n)) is not None and r.saturated for n in "ab"))
    assert _ask("q").endpoint == home  # spilling would only move the queue


def test_engine_load_counts_other_processes_in_the_load_guard(
    pool: tuple[af.ModelZoo, dict[str, LoopbackServer]],
) -> None:
    """vLLM reports no slots: a replica whose queue is far above the others' spills by
    the same guard as in-flight counts (≥ 2 × the others' mean + 1, at least 4)."""
    zoo, servers = pool
    home = _pinned(zoo)
    vllm = "vllm:num_requests_running {}\nvllm:num_requests_waiting 0\n"
    servers["a"].metrics = vllm.format(1)
    servers["b"].metrics = vllm.format(1)
    engine_load.start(zoo, interval=0.05)
    _wait_for(lambda: engine_load.get("a") is not None and engine_load.get("b") is not None)
    assert _ask("q").endpoint == home
    servers[home].metrics = vllm.format(12)  # running, not waiting: only the guard sees it
    _wait_for(lambda: (r := engine_load.get(home)) is not None and r.running == 12)
    assert _ask("q").endpoint != home


def test_without_the_monitor_routing_ignores_metrics(
    pool: tuple[af.ModelZoo, dict[str, LoopbackServer]],
) -> None:
    zoo, servers = pool
    home = _pinned(zoo)
    servers[home].metrics = _llama_metrics(2, 9)
    assert [_ask(f"q{i}").endpoint for i in range(3)] == [home] * 3
    assert not [r for s in servers.values() for r in s.requests if r.path == "/metrics"]


# -- a real llama-server -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    with LlamaServer("smollm2", threads=1, parallel=2, ctx_size=2048) as server:
        yield server


def test_real_llama_server_reports_its_queue(llama: LlamaServer) -> None:
    ep = af.Endpoint(model="openai/" + llama.alias, api_base=llama.base_url, name="llama")
    monitor = EngineLoadMonitor(interval=0.05, timeout=2.0)
    monitor.watch([ep])
    with monitor:
        _wait_for(lambda: monitor.get("llama") is not None, timeout=10)
        idle = monitor.get("llama")
        assert idle == EngineLoad("llama.cpp", running=0, waiting=0, slots=2)
        assert monitor.context_window("llama") == 1024  # /props: 2048 over 2 slots

        def call() -> None:
            body = {
                "messages": [{"role": "user", "content": "Tell a long story about a cat."}],
                "max_tokens": 200,
            }
            request = urllib.request.Request(
                f"{llama.base_url}/chat/completions",
                json.dumps(body).encode(),
                {"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=120).read()

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        _wait_for(
            lambda: (r := monitor.get("llama")) is not None and r.running == 2 and r.waiting == 2,
            timeout=30,
        )
        busy = monitor.get("llama")
        assert busy is not None
        assert busy.saturated
        for t in threads:
            t.join()
        _wait_for(lambda: (r := monitor.get("llama")) is not None and r.load == 0, timeout=10)
        drained = monitor.get("llama")
        assert drained is not None
        assert not drained.saturated


# -- context windows ---------------------------------------------------------------------------
LONG = [{"role": "user", "content": "Summarise this clause of the contract. " * 40}]


def _tiers(srv: LoopbackServer, window: int, fallback: bool) -> None:
    small = af.Endpoint(
        model="openai/small-model", api_base=srv.base_url, name="small", context_window=window
    )
    big = af.Endpoint(model="openai/big-model", api_base=srv.base_url, name="big")
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier("small", endpoints=[small], fallback="big" if fallback else None),
                af.Tier("big", endpoints=[big]),
            ]
        )
    )


def _chat_models(srv: LoopbackServer) -> list[str]:
    return [r.body["model"] for r in srv.requests if r.path.endswith("/chat/completions")]


def test_a_prompt_that_cannot_fit_goes_to_the_fallback_unsent(srv: LoopbackServer) -> None:
    _tiers(srv, window=200, fallback=True)
    c = af.complete(messages=LONG, max_tokens=50)
    assert c.endpoint == "big"
    assert _chat_models(srv) == ["big-model"]  # never sent to the small model
    assert [a.endpoint for a in c.attempts] == ["big"]


def test_a_prompt_that_fits_is_sent(srv: LoopbackServer) -> None:
    _tiers(srv, window=2000, fallback=True)
    assert af.complete(messages=LONG, max_tokens=50).endpoint == "small"
    # max_tokens counts: the same prompt with room for 1900 output tokens does not fit
    assert af.complete(messages=LONG, max_tokens=1900).endpoint == "big"


def test_without_a_tier_with_room_it_fails_at_once_naming_the_sizes(
    srv: LoopbackServer,
) -> None:
    small = af.Endpoint(
        model="openai/small-model", api_base=srv.base_url, name="small", context_window=200
    )
    # no fallback and no stronger tier to move up to
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[small])]))
    with pytest.raises(af.ContextWindowError) as info:
        af.complete(messages=LONG, max_tokens=50)
    message = str(info.value)
    assert "does not fit the context window of tier 'small'" in message
    assert "max_tokens=50" in message
    assert "200-token context window" in message
    assert "-token prompt" in message
    assert _chat_models(srv) == []  # nothing was sent


def test_without_a_fallback_it_moves_up_to_the_next_tier_unsent(srv: LoopbackServer) -> None:
    _tiers(srv, window=200, fallback=False)
    srv.default = Reply("from big")
    assert af.complete(messages=LONG, max_tokens=50).endpoint == "big"
    assert _chat_models(srv) == ["big-model"]  # nothing was sent to the small tier


def test_context_window_must_be_a_positive_int() -> None:
    with pytest.raises(af.ConfigError, match="context size in tokens"):
        af.Endpoint(model="openai/m", context_window=0)


def test_engine_declared_windows() -> None:
    from agentflow.pipeline.load import _window_of

    props = {"default_generation_settings": {"n_ctx": 1024}, "total_slots": 2}
    assert _window_of(props) == 1024
    vllm_models = {"object": "list", "data": [{"id": "qwen", "max_model_len": 32768}]}
    assert _window_of(vllm_models) == 32768
    assert _window_of({"data": [{"id": "loopback"}]}) is None
    assert _window_of(None) is None
