"""The engine's own busy time: its /metrics counters parsed (llama-server, vLLM, SGLang),
sampled into ``agentflow.engine.sample`` spans at run start and end, and set beside
agentflow's attributed busy GPU-hours by ``agentflow report``.

Fixtures: ``llama_server_metrics_*.txt`` were captured from the installed llama-server;
``vllm_metrics_busy_time.txt`` and ``sglang_metrics_gpu_time.txt`` carry the engines'
documented counter names with values composed for the test (no GPU here).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
import tracing
from agentflow import _config
from agentflow.cli import _report as _report_cli
from agentflow.local import LlamaServer
from agentflow.pipeline.engine_time import (
    ENGINE_SAMPLE_SPAN,
    EngineSampler,
    busy_increase,
    engine_sampler,
    read_engine_time,
)
from agentflow.testing import LoopbackServer, Reply
from budgets import GpuHourPricing
from tests._workload import spans_to_jsonl
from tracing import attributes as A

FIXTURES = Path(__file__).parent / "fixtures"
GPUS = 2
GPU = GpuHourPricing(
    usd_per_gpu_hour=Decimal("1.10"), gpus=GPUS, prompt_tokens_per_s=2000, output_tokens_per_s=500
)


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _llama_metrics(prompt_s: float, predicted_s: float) -> str:
    """The captured llama-server payload with its two time counters set."""
    lines = []
    for line in _fixture("llama_server_metrics_busy.txt").splitlines():
        if line.startswith("llamacpp:prompt_seconds_total "):
            line = f"llamacpp:prompt_seconds_total {prompt_s}"
        elif line.startswith("llamacpp:tokens_predicted_seconds_total "):
            line = f"llamacpp:tokens_predicted_seconds_total {predicted_s}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# -- parsing the recorded payloads ---------------------------------------------------------
def test_llama_server_counters() -> None:
    busy = read_engine_time(_fixture("llama_server_metrics_busy.txt"))
    assert busy is not None
    assert busy.engine == "llama.cpp"
    assert busy.source == "llama-server /metrics"
    assert busy.busy_seconds == pytest.approx(0.620502 + 0.0)  # prompt + generation seconds
    assert busy.process_start_s is None  # llama-server does not export it
    idle = read_engine_time(_fixture("llama_server_metrics_idle.txt"))
    assert idle is not None
    assert idle.busy_seconds == 0.0


def test_vllm_prefill_plus_decode_not_e2e() -> None:
    text = _fixture("vllm_metrics_busy_time.txt")
    got = read_engine_time(text)
    assert got is not None
    assert got.engine == "vllm"
    assert got.source == "vLLM /metrics"
    # both data-parallel engines, prefill + decode; the e2e sums (360.75) include queueing
    assert got.busy_seconds == 41.5 + 38.25 + 134.5 + 122.25
    assert got.counters == (
        "vllm:request_prefill_time_seconds_sum",
        "vllm:request_decode_time_seconds_sum",
    )
    assert got.process_start_s == 1.7651e9
    # a build without the per-phase histograms: the RUNNING-phase one
    older = "\n".join(
        line
        for line in text.splitlines()
        if "prefill_time" not in line and "decode_time" not in line
    )
    fallback = read_engine_time(older)
    assert fallback is not None
    assert fallback.counters == ("vllm:request_inference_time_seconds_sum",)
    assert fallback.busy_seconds == 176.0 + 160.5


def test_sglang_gpu_execution_seconds() -> None:
    got = read_engine_time(_fixture("sglang_metrics_gpu_time.txt"))
    assert got is not None
    assert got.engine == "sglang"
    assert got.source == "SGLang /metrics"
    assert got.busy_seconds == 310.5 + 1402.25  # extend and decode; idle (12.75) left out
    assert got.process_start_s == 1.7652e9


@pytest.mark.parametrize(
    "name", ["vllm_metrics.txt", "vllm_v0_metrics.txt", "sglang_metrics.txt", "not metrics"]
)
def test_payloads_without_a_busy_counter(name: str) -> None:
    # the load fixtures carry no time counter (SGLang's func_latency_seconds is the
    # tokenizer's function latency, not GPU time): no reading rather than a wrong one
    text = _fixture(name) if name.endswith(".txt") else "<html>not metrics</html>"
    assert read_engine_time(text) is None


def test_busy_increase_counts_restarts() -> None:
    assert busy_increase([(10.0, None), (12.5, None), (20.0, None)]) == 10.0
    # llama-server restarted between the 2nd and 3rd reading: its counter went down
    assert busy_increase([(10.0, None), (12.5, None), (1.5, None), (4.0, None)]) == 2.5 + 1.5 + 2.5
    # vLLM restarted and, by the next reading, had counted past the old value
    assert busy_increase([(10.0, 100.0), (30.0, 200.0)]) == 30.0
    assert busy_increase([(10.0, 100.0)]) == 0.0


# -- recording and the report, on a loopback engine ---------------------------------------
@pytest.fixture
def span_file(tmp_path: Path, _session_exporter: InMemorySpanExporter) -> Iterator[Path]:
    """Spans ended during the test also go to ``tmp_path/spans.jsonl``."""
    with spans_to_jsonl(tmp_path / "spans.jsonl") as path:
        yield path


def _report_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", *argv, "--json"])
    assert args.func(args) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def _samples(path: Path) -> list[dict[str, Any]]:
    return [s for s in tracing.read_spans(path) if s["name"] == ENGINE_SAMPLE_SPAN]


def test_report_gives_the_counters_increase_exactly(
    span_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_prompt, a_gen, b_prompt, b_gen = 10.25, 0.25, 28.75, 17.75  # A = 10.5 s, B = 46.5 s
    with LoopbackServer(name="engine") as srv:
        srv.default = Reply("ok", prompt_tokens=300, completion_tokens=20)
        srv.metrics = _llama_metrics(a_prompt, a_gen)
        ep = af.Endpoint(model="openai/small", api_base=srv.base_url, pricing=GPU, name="gpu-a")
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("specialist", endpoints=[ep])]),
            engine_metrics=True,
            cache_dir=tmp_path / "cache",
        )
        with af.run("sampled") as run:
            assert engine_sampler.flush()  # the run-start reading is in
            af.complete(messages=[{"role": "user", "content": "hi"}])
            af.complete(messages=[{"role": "user", "content": "again"}])
            srv.metrics = _llama_metrics(b_prompt, b_gen)
        assert engine_sampler.flush()
    samples = _samples(span_file)
    assert [s["attributes"][A.AGENTFLOW_ENGINE_TRIGGER] for s in samples] == [
        "run_start",
        "run_end",
    ]
    run_span = next(s for s in tracing.read_spans(span_file) if s["name"] == "run sampled")
    assert {s["parent_id"] for s in samples} == {run_span["span_id"]}  # in the run's trace
    assert samples[0]["attributes"][A.AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL] == 10.5
    assert samples[0]["attributes"][A.AGENTFLOW_ENGINE_KIND] == "llama.cpp"
    assert run.trace_id == samples[0]["trace_id"]

    got = _report_json(capsys, str(span_file))["endpoints"]["gpu-a"]
    assert got["engine_busy_gpu_hours"] == (46.5 - 10.5) / 3600 * GPUS
    assert got["engine_utilisation"] == got["engine_busy_gpu_hours"] / got["provisioned_gpu_hours"]
    assert got["engine_busy_source"] == "llama-server /metrics"
    assert got["busy_gpu_hours"] > 0  # agentflow's own figure stays beside it

    # the text table's last two columns and the page's utilisation section
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    page_path = tmp_path / "report.html"
    args = parser.parse_args(["report", str(span_file), "--html", str(page_path)])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("GPU-hour endpoints"))
    assert lines[start].endswith("engine GPU-h busy  engine util")
    row = lines[start + 2].split()
    assert row[0] == "gpu-a"
    assert row[-2:] == [f"{got['engine_busy_gpu_hours']:.6f}", f"{got['engine_utilisation']:.1%}"]
    page = page_path.read_text(encoding="utf-8")
    utilisation = page[page.index('id="utilisation"') : page.index('id="savings"')]
    assert '<table class="engine-busy">' in utilisation
    assert "llama-server /metrics" in utilisation
    assert f"{got['engine_busy_gpu_hours']:.6f}" in utilisation


def test_failed_samples_are_recorded_never_raised(
    span_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LoopbackServer(name="engine") as srv:
        srv.default = Reply("ok", prompt_tokens=30, completion_tokens=5)
        srv.metrics = None  # GET /metrics answers 404, as llama-server without --metrics
        ep = af.Endpoint(model="openai/small", api_base=srv.base_url, pricing=GPU, name="gpu-b")
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("specialist", endpoints=[ep])]),
            engine_metrics=True,
            cache_dir=tmp_path / "cache",
        )
        with af.run("unsampled"):
            af.complete(messages=[{"role": "user", "content": "hi"}])
        assert engine_sampler.flush()
    samples = _samples(span_file)
    assert len(samples) == 2
    for sample in samples:
        assert sample["status"]["code"] == "ERROR"
        assert "404" in sample["attributes"][A.AGENTFLOW_ENGINE_SAMPLE_ERROR]
    got = _report_json(capsys, str(span_file))["endpoints"]["gpu-b"]
    assert got["engine_busy_gpu_hours"] is None
    assert got["engine_utilisation"] is None
    assert got["engine_busy_source"] is None
    assert got["busy_gpu_hours"] > 0


def test_off_by_default_and_a_bad_switch_fails(
    span_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackServer(name="engine") as srv:
        srv.metrics = _llama_metrics(1.0, 1.0)
        ep = af.Endpoint(model="openai/small", api_base=srv.base_url, pricing=GPU)
        af.configure(zoo=af.ModelZoo(tiers=[af.Tier("t", endpoints=[ep])]))
        with af.run("quiet"):
            af.complete(messages=[{"role": "user", "content": "hi"}])
        assert engine_sampler.flush()
        assert [r.path for r in srv.requests if r.path == "/metrics"] == []
    assert _samples(span_file) == []
    with pytest.raises(af.ConfigError, match="engine_metrics must be True or False"):
        af.configure(engine_metrics="yes")  # type: ignore[arg-type]
    _config.reset()
    monkeypatch.setenv("AGENTFLOW_ENGINE_METRICS", "maybe")
    with pytest.raises(af.ConfigError, match="AGENTFLOW_ENGINE_METRICS"):
        _config.get_config()
    monkeypatch.setenv("AGENTFLOW_ENGINE_METRICS", "1")
    assert _config.get_config().engine_metrics is True


def test_down_engine_costs_the_caller_nothing(span_file: Path) -> None:
    sampler = EngineSampler(timeout=0.2)
    ep = af.Endpoint(model="openai/x", api_base="http://127.0.0.1:9/v1", pricing=GPU, name="down")
    with sampler:
        sampler.request([ep], None, "run_start")  # returns at once
        assert sampler.flush()
    (sample,) = _samples(span_file)
    assert sample["attributes"][A.AGENTFLOW_ENDPOINT] == "down"
    assert "failed" in sample["attributes"][A.AGENTFLOW_ENGINE_SAMPLE_ERROR]


# -- a real llama-server ------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    # agentflow's LlamaServer starts it with --metrics; one slot, so the engine's
    # slot-seconds are its busy wall time
    with LlamaServer("smollm2", threads=1, parallel=1, ctx_size=2048) as server:
        yield server


@pytest.mark.integration
def test_real_llama_server_busy_time_against_agentflows(
    llama: LlamaServer, span_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = af.Endpoint(
        model="openai/" + llama.alias, api_base=llama.base_url, pricing=GPU, name="llama"
    )
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("specialist", endpoints=[ep])]),
        engine_metrics=True,
        cache_dir=tmp_path / "cache",
    )
    with af.run("real"):
        for question in ("Name a colour.", "Name a fruit.", "Name a planet."):
            c = af.complete(
                messages=[{"role": "user", "content": question}], max_tokens=16, temperature=0
            )
            assert c.usage.completion_tokens > 0
    assert engine_sampler.flush()
    samples = _samples(span_file)
    assert [s["attributes"].get(A.AGENTFLOW_ENGINE_SAMPLE_ERROR) for s in samples] == [None, None]
    got = _report_json(capsys, str(span_file))["endpoints"]["llama"]
    assert got["engine_busy_source"] == "llama-server /metrics"
    assert 0 < got["engine_busy_gpu_hours"] <= got["provisioned_gpu_hours"]
    assert 0 < got["engine_utilisation"] <= 1
    # agentflow prices calls at an assumed GPU throughput; the engine measures its own
    print(
        f"\nagentflow busy {got['busy_gpu_hours']:.9f} GPU-h, engine busy "
        f"{got['engine_busy_gpu_hours']:.9f} GPU-h, provisioned "
        f"{got['provisioned_gpu_hours']:.9f} GPU-h"
    )
    assert got["busy_gpu_hours"] > 0


def test_window_takes_the_samples_nearest_its_edges_from_outside() -> None:
    from agentflow.cli._calls import Window
    from agentflow.cli._economics import engine_busy_seconds
    from agentflow.cli._spans import SpanRecord

    def sample(at_s: int, busy: float, endpoint: str = "gpu") -> SpanRecord:
        attrs = {
            A.AGENTFLOW_ENDPOINT: endpoint,
            A.AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL: busy,
            A.AGENTFLOW_ENGINE_BUSY_SOURCE: "llama-server /metrics",
        }
        ns = at_s * 10**9
        return SpanRecord("t", f"s{at_s}", None, ENGINE_SAMPLE_SPAN, "", ns, ns, False, attrs)

    failed = SpanRecord("t", "x", None, ENGINE_SAMPLE_SPAN, "", 70 * 10**9, None, True, {})
    spans = [sample(0, 10.0), sample(50, 15.0), sample(100, 20.0), sample(200, 5.0), failed]
    spans.append(sample(120, 1.0, endpoint="lonely"))  # one sample: no figure
    window = Window(60 * 10**9, 150 * 10**9)
    # from t=50 (15 s) to t=200, where the counter restarted at 0 and reached 5 s
    assert engine_busy_seconds(spans, window) == {
        "gpu": (20.0 - 15.0 + 5.0, "llama-server /metrics")
    }
    # no sample outside: the first and last inside
    inside_only = engine_busy_seconds(spans[1:], Window(40 * 10**9, 1000 * 10**9))
    assert inside_only["gpu"][0] == (20.0 - 15.0) + 5.0


def test_a_garbled_answer_ends_one_round_not_the_sampler(span_file: Path) -> None:
    """An engine that answers something that is not HTTP (here a bad status line) gives
    an ERROR sample; the thread lives on and the next reading works."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def garble() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"NOT-HTTP garbage\r\n\r\n")

    thread = threading.Thread(target=garble, daemon=True)
    thread.start()
    sampler = EngineSampler(timeout=2.0)
    bad = af.Endpoint(model="openai/x", api_base=f"http://127.0.0.1:{port}/v1", pricing=GPU)
    try:
        with sampler, LoopbackServer(name="engine") as srv:
            srv.metrics = _llama_metrics(1.0, 2.0)
            good = af.Endpoint(model="openai/y", api_base=srv.base_url, pricing=GPU, name="ok")
            sampler.request([bad], None, "run_start")
            assert sampler.flush()
            assert sampler.running  # the round failed, the thread did not
            sampler.request([good], None, "run_start")
            assert sampler.flush()
    finally:
        listener.close()
        thread.join(5)
    first, second = _samples(span_file)
    assert first["status"]["code"] == "ERROR"
    assert "BadStatusLine" in first["attributes"][A.AGENTFLOW_ENGINE_SAMPLE_ERROR]
    assert second["attributes"][A.AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL] == 3.0


def test_runs_asking_together_each_get_their_sample_from_one_read(span_file: Path) -> None:
    tracer = tracing.tracer()
    with LoopbackServer(name="engine") as srv:
        srv.metrics = _llama_metrics(4.0, 1.0)
        ep = af.Endpoint(model="openai/y", api_base=srv.base_url, pricing=GPU, name="shared")
        one, two = tracer.start_span("run one"), tracer.start_span("run two")
        sampler = EngineSampler()
        # both runs ask before the thread takes the requests (it waits on the lock held
        # here): one GET, one span under each run
        with sampler._cond:
            sampler.request([ep], trace.set_span_in_context(one), "run_start")
            sampler.request([ep], trace.set_span_in_context(two), "run_start")
        with sampler:
            assert sampler.flush()
        one.end()
        two.end()
        reads = [r for r in srv.requests if r.path == "/metrics"]
    samples = _samples(span_file)
    assert len(reads) == 1
    assert {s["parent_id"] for s in samples} == {
        format(one.get_span_context().span_id, "016x"),
        format(two.get_span_context().span_id, "016x"),
    }
    assert all(s["attributes"][A.AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL] == 5.0 for s in samples)
