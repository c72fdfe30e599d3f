"""``agentflow report --json`` on a recorded burst against a loopback fleet priced by the
GPU-hour: utilisation, idle cost, $/Mtok, savings and latency, each checked against
numbers worked out here by hand from the calls' usage and the endpoints' prices — not
through the report's code, nor through ``budgets``' pricing."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracing
from agentflow.cli import _report as _report_cli
from tests._workload import ANSWER_CALLS, CLASSIFY_CALLS, WINDOW_S, Workload, record
from tracing.phoenix import PhoenixError, PhoenixServer

# the prices the workload gives its endpoints, retyped here on purpose
USD_PER_GPU_HOUR, GPUS, PROMPT_TPS, OUTPUT_TPS = 1.10, 2, 2000.0, 500.0
INPUT, CACHED_INPUT, OUTPUT = 2.5e-6, 1.25e-6, 10e-6  # USD per token on "heavy"


@pytest.fixture(scope="module")
def workload(
    tmp_path_factory: pytest.TempPathFactory, _session_exporter: InMemorySpanExporter
) -> Workload:
    return record(tmp_path_factory.mktemp("economics"))


def _report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", *argv])
    code: int = args.func(args)
    return code


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert _report(*argv, "--json") == 0
    captured = capsys.readouterr()
    data: dict[str, Any] = json.loads(captured.out)
    return data


def _window_args(w: Workload) -> list[str]:
    until = datetime.fromtimestamp(w.until_s, tz=UTC).isoformat()  # ISO form for one bound
    return ["--since", f"{w.since_s:.3f}", "--until", until]


def _gpu_seconds(usage: Any) -> tuple[float, float]:
    """(prompt, output) GPU-seconds of a call: cached prompt tokens skip prefill."""
    uncached = usage.prompt_tokens - usage.cached_prompt_tokens
    return GPUS * uncached / PROMPT_TPS, GPUS * usage.completion_tokens / OUTPUT_TPS


def test_utilisation_and_idle_cost_by_hand(
    workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _json(capsys, str(workload.path), *_window_args(workload))
    assert data["window"]["seconds"] == pytest.approx(WINDOW_S, rel=1e-6)
    specialist = [c for c in workload.completions if c.tier == "specialist"]
    replicas = sorted({c.endpoint for c in specialist})
    assert len(replicas) == 2, "both replicas must serve for this test to mean anything"
    provisioned_h = WINDOW_S * GPUS / 3600  # one replica: window × GPUs
    usd_per_gpu_s = USD_PER_GPU_HOUR / 3600
    for name in replicas:
        served = [c for c in specialist if c.endpoint == name]
        seconds = [_gpu_seconds(c.usage) for c in served]
        busy_in, busy_out = sum(s[0] for s in seconds), sum(s[1] for s in seconds)
        busy_h = (busy_in + busy_out) / 3600
        idle_usd = (provisioned_h - busy_h) * USD_PER_GPU_HOUR
        prompt = sum(c.usage.prompt_tokens for c in served)
        completion = sum(c.usage.completion_tokens for c in served)
        got = data["endpoints"][name]
        assert got["tier"] == "specialist"
        assert got["calls"] == len(served)
        assert got["provisioned_gpu_hours"] == pytest.approx(provisioned_h, rel=1e-6)
        assert got["busy_gpu_hours"] == pytest.approx(busy_h, rel=1e-9)
        assert got["utilisation"] == pytest.approx(busy_h / provisioned_h, rel=1e-6)
        assert 0 < got["utilisation"] < 1
        assert got["idle_usd"] == pytest.approx(idle_usd, rel=1e-6)
        # measured $/Mtok: what the tokens were charged, per million of them
        per_in = busy_in * usd_per_gpu_s / prompt * 1e6
        per_out = busy_out * usd_per_gpu_s / completion * 1e6
        assert got["usd_per_mtok_input"] == pytest.approx(per_in, rel=1e-9)
        assert got["usd_per_mtok_output"] == pytest.approx(per_out, rel=1e-9)
        # idle spread over input and output by the GPU time each took
        spread_in = busy_in * usd_per_gpu_s + idle_usd * busy_in / (busy_in + busy_out)
        spread_out = busy_out * usd_per_gpu_s + idle_usd * busy_out / (busy_in + busy_out)
        assert got["usd_per_mtok_input_with_idle"] == pytest.approx(spread_in / prompt * 1e6)
        assert got["usd_per_mtok_output_with_idle"] == pytest.approx(spread_out / completion * 1e6)
        # the whole provisioned cost lands on the tokens once idle is spread in
        total_with_idle = (
            got["usd_per_mtok_input_with_idle"] * prompt
            + got["usd_per_mtok_output_with_idle"] * completion
        ) / 1e6
        assert total_with_idle == pytest.approx(provisioned_h * USD_PER_GPU_HOUR)
        # and agentflow charged the calls exactly their busy time
        assert float(sum(c.cost.total_usd for c in served)) == pytest.approx(
            busy_h * USD_PER_GPU_HOUR, rel=1e-9
        )

    tier = data["tiers"]["specialist"]
    assert tier["provisioned_gpu_hours"] == pytest.approx(2 * provisioned_h, rel=1e-6)
    assert tier["idle_usd"] == pytest.approx(
        sum(data["endpoints"][n]["idle_usd"] for n in replicas)
    )
    assert tier["capacity"]["replicas_up"] == 2
    assert tier["capacity"]["replicas_for_peak"] >= 1
    totals = data["totals"]
    assert totals["idle_usd"] == pytest.approx(tier["idle_usd"])

    # the token-priced tier has no GPU figures, and its $/Mtok is its price mix
    heavy = [c for c in workload.completions if c.tier == "heavy" and not c.cache_hit]
    (heavy_name,) = {c.endpoint for c in heavy}
    got = data["endpoints"][heavy_name]
    assert got["provisioned_gpu_hours"] is None
    assert got["utilisation"] is None
    assert got["idle_usd"] is None
    prompt = sum(c.usage.prompt_tokens for c in heavy)
    cached = sum(c.usage.cached_prompt_tokens for c in heavy)
    paid_in = (prompt - cached) * INPUT + cached * CACHED_INPUT
    assert got["usd_per_mtok_input"] == pytest.approx(paid_in / prompt * 1e6)
    assert got["usd_per_mtok_output"] == pytest.approx(OUTPUT * 1e6)
    assert got["usd_per_mtok_input_with_idle"] == got["usd_per_mtok_input"]


def test_window_leaves_out_what_started_before_it(
    workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    inside = _json(capsys, str(workload.path), *_window_args(workload))
    everything = _json(capsys, str(workload.path))
    assert inside["totals"]["calls"] == len(workload.completions)
    assert everything["totals"]["calls"] == len(workload.completions) + 1  # the warm-up
    assert everything["window"]["seconds"] < WINDOW_S  # first call to last, by default
    # a window after the burst: every replica up, nothing served, all of it idle
    later = workload.until_s + 100
    quiet = _json(
        capsys, str(workload.path), "--since", f"{later:.3f}", "--until", f"{later + 10:.3f}"
    )
    assert quiet["totals"]["calls"] == 0
    for name, got in quiet["endpoints"].items():
        if got["pricing"] != "gpu_hour":
            continue
        assert got["busy_gpu_hours"] == 0
        assert got["utilisation"] == 0
        assert got["idle_usd"] == pytest.approx(10 * GPUS / 3600 * USD_PER_GPU_HOUR, rel=1e-6)
        assert got["usd_per_mtok_input_with_idle"] is None, name  # no token to carry it


def test_savings_by_kind_by_hand(workload: Workload, capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, str(workload.path), *_window_args(workload))
    prefix = 0.0
    for c in workload.completions:
        if c.cache_hit:
            continue
        if c.tier == "specialist":  # cached tokens cost no GPU time at all
            prefix += GPUS * c.usage.cached_prompt_tokens / PROMPT_TPS * USD_PER_GPU_HOUR / 3600
        else:
            prefix += c.usage.cached_prompt_tokens * (INPUT - CACHED_INPUT)
    first_lookup, hit = workload.completions[-3], workload.completions[-2]
    assert hit.cache_hit
    assert sum(c.cache_hit for c in workload.completions) == 1
    saved = data["totals"]["saved"]
    assert saved["prefix_cache"] == pytest.approx(prefix, rel=1e-9)
    assert saved["response_cache"] == pytest.approx(float(first_lookup.cost.total_usd))
    assert saved["semantic_cache"] == 0
    assert data["totals"]["saved_usd"] == pytest.approx(sum(saved.values()))
    lookup = data["steps"]["lookup"]
    assert lookup["calls"] == 2
    assert lookup["cache_hits"] == 1
    assert lookup["saved"]["response_cache"] == pytest.approx(float(first_lookup.cost.total_usd))
    assert sum(s["saved_usd"] for s in data["steps"].values()) == pytest.approx(
        data["totals"]["saved_usd"]
    )


def _nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_latency_percentiles_ttft_and_traffic(
    workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _json(capsys, str(workload.path), *_window_args(workload))
    llm = [
        r
        for r in tracing.read_spans(workload.path)
        if r["attributes"].get("openinference.span.kind") == "LLM"
        and r["start_time_ns"] >= workload.since_s * 1e9
    ]
    heavy_ms = [
        (r["end_time_ns"] - r["start_time_ns"]) / 1e6
        for r in llm
        if r["attributes"].get("agentflow.tier") == "heavy"
        and not r["attributes"].get("agentflow.cache.hit")
    ]
    assert len(heavy_ms) == ANSWER_CALLS + 1  # the answers and the first lookup
    for p in (50, 95, 99):
        assert data["tiers"]["heavy"][f"p{p}_ms"] == pytest.approx(_nearest_rank(heavy_ms, p))
    for name in ("classify", "answer", "lookup", "stream"):
        step = data["steps"][name]
        assert step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"]
        assert {"calls", "usd", "saved_usd"} <= set(step)
    assert data["steps"]["classify"]["calls"] == CLASSIFY_CALLS
    assert data["steps"]["answer"]["calls"] == ANSWER_CALLS
    (ttft,) = [
        r["attributes"]["agentflow.ttft_s"] for r in llm if "agentflow.ttft_s" in r["attributes"]
    ]
    assert data["steps"]["stream"]["ttft_p99_ms"] == pytest.approx(ttft * 1000)
    assert data["steps"]["classify"]["ttft_p50_ms"] is None  # nothing streamed there

    traffic = data["traffic"]
    assert traffic["bucket_s"] == 1  # 60 one-second buckets over a 60 s window
    assert len(traffic["buckets"]) == 60
    assert sum(b["calls"] for b in traffic["buckets"]) == len(llm)
    assert traffic["calls_per_min"] == pytest.approx(len(llm) / WINDOW_S * 60, rel=1e-6)
    peak = max(b["calls"] for b in traffic["buckets"])
    assert traffic["peak_to_mean"] == pytest.approx(peak / (len(llm) / 60))
    assert traffic["peak_to_mean"] > 10  # a burst in a quiet minute
    assert math.fsum(b["usd"] for b in traffic["buckets"]) == pytest.approx(data["totals"]["usd"])


def test_text_report_shows_utilisation(
    workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report(str(workload.path), *_window_args(workload)) == 0
    out = capsys.readouterr().out
    data = _json(capsys, str(workload.path), *_window_args(workload))
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("GPU-hour endpoints"))
    rows = {line.split()[0]: line.split()[1:] for line in lines[start + 2 : start + 4]}
    for name, cells in rows.items():
        got = data["endpoints"][name]
        assert cells[2] == f"{got['utilisation']:.1%}"
        assert cells[3] == f"{got['idle_usd']:.8f}"
    assert "prefix cache" in out


def test_bad_window(workload: Workload, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _report(str(workload.path), "--since", "yesterday-ish")
    assert "ISO 8601" in capsys.readouterr().err
    assert _report(str(workload.path), "--since", "2000", "--until", "1000") == 1
    assert "the window is empty" in capsys.readouterr().err


def test_every_llm_span_carries_its_pricing(workload: Workload) -> None:
    records = list(tracing.read_spans(workload.path))
    calls = [
        r["attributes"]
        for r in records
        if r["attributes"].get("openinference.span.kind") == "LLM"
        and not r["attributes"].get("agentflow.cache.hit")
    ]
    assert calls
    for attrs in calls:
        assert attrs["agentflow.endpoint"]
        if attrs["agentflow.tier"] == "specialist":
            assert attrs["agentflow.pricing.kind"] == "gpu_hour"
            assert attrs["agentflow.pricing.usd_per_gpu_hour"] == USD_PER_GPU_HOUR
            assert attrs["agentflow.pricing.gpus"] == GPUS
            assert attrs["agentflow.pricing.prompt_tokens_per_s"] == PROMPT_TPS
            assert attrs["agentflow.pricing.output_tokens_per_s"] == OUTPUT_TPS
        else:
            assert attrs["agentflow.pricing.kind"] == "token"
            assert attrs["agentflow.pricing.input_per_mtok"] == INPUT * 1e6
            assert attrs["agentflow.pricing.cached_input_per_mtok"] == CACHED_INPUT * 1e6


def test_run_rollup_agrees(workload: Workload, capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, str(workload.path))
    assert data["warnings"] == []
    burst = data["runs"]["burst"]
    assert burst["calls"] == len(workload.completions)
    assert burst["usd"] == pytest.approx(sum(float(c.cost.total_usd) for c in workload.completions))


@pytest.fixture(scope="module")
def phoenix() -> Iterator[PhoenixServer]:
    try:
        server = PhoenixServer().start()
    except PhoenixError as error:
        pytest.fail(f"this test needs Arize Phoenix (pip install arize-phoenix): {error}")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.usefixtures("_session_exporter")
def test_phoenix_gives_the_same_economics(
    phoenix: PhoenixServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report read back from a real Phoenix says what the JSONL file says."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    workload = record(tmp_path, also=OTLPSpanExporter(endpoint=phoenix.otlp_endpoint))
    count = sum(1 for _ in tracing.read_spans(workload.path))
    phoenix.wait_for_spans("default", count=count, timeout=60)
    window = _window_args(workload)
    from_file = _json(capsys, str(workload.path), *window)
    from_phoenix = _json(capsys, "--phoenix", phoenix.base_url, *window)
    assert from_phoenix["span_count"] == count
    assert from_phoenix["totals"]["calls"] == from_file["totals"]["calls"]
    for key in ("usd", "saved_usd", "provisioned_gpu_hours", "busy_gpu_hours", "idle_usd"):
        assert from_phoenix["totals"][key] == pytest.approx(from_file["totals"][key], rel=1e-9)
    assert from_phoenix["endpoints"].keys() == from_file["endpoints"].keys()
    for name, got in from_phoenix["endpoints"].items():
        want = from_file["endpoints"][name]
        for key in ("utilisation", "idle_usd", "usd_per_mtok_input", "usd_per_mtok_output"):
            expected = None if want[key] is None else pytest.approx(want[key], rel=1e-9)
            assert got[key] == expected, (name, key)


def test_spans_without_pricing_still_report(
    workload: Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spans recorded before ``agentflow.pricing.*`` existed: costs and latency as
    before, no GPU figures, nothing made up; a file of runs without calls gets a window
    from its spans."""
    records = list(tracing.read_spans(workload.path))
    for r in records:
        r["attributes"] = {
            k: v for k, v in r["attributes"].items() if not k.startswith("agentflow.pricing.")
        }
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    data = _json(capsys, str(old), *_window_args(workload))
    assert data["totals"]["calls"] == len(workload.completions)
    assert data["totals"]["usd"] == pytest.approx(
        sum(float(c.cost.total_usd) for c in workload.completions)
    )
    assert data["totals"]["provisioned_gpu_hours"] == 0
    assert data["totals"]["saved"]["prefix_cache"] == 0  # no price to value cached tokens
    for got in data["endpoints"].values():
        assert got["pricing"] is None
        assert got["utilisation"] is None

    runs_only = tmp_path / "runs.jsonl"
    kept = [r for r in records if r["attributes"].get("openinference.span.kind") == "AGENT"]
    runs_only.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    empty = _json(capsys, str(runs_only))
    assert empty["totals"]["calls"] == 0
    first = min(r["start_time_ns"] for r in kept)
    assert empty["window"]["since"].startswith(
        datetime.fromtimestamp(first / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M")
    )
