"""``agentflow report`` on a real JSONL span file written while agentflow ran against the
loopback server: tables per run, step, tier and endpoint, the run roll-up check, --html."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
import tracing
from agentflow import _config
from agentflow.cli import _report as _report_cli
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import TokenPricing
from tests._workload import spans_to_jsonl

Q = [{"role": "user", "content": "What is the capital of France?"}]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser


def _report(*argv: str) -> int:
    args = _parser().parse_args(["report", *argv])
    code: int = args.func(args)
    return code


def _row(out: str, table: str, label: str) -> list[str]:
    """The cells of ``label``'s row in the ``by TABLE`` table of the printed report."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"by {table} "))
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = line.split()
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in table {table!r}:\n{out}")


@pytest.fixture
def span_file(tmp_path: Path, spans: InMemorySpanExporter) -> Iterator[tuple[Path, af.Run]]:
    """Runs a two-step agent (the first step's first call fails with a 500) with spans
    going to a JSONL file; yields the file and the finished run."""
    try:
        with spans_to_jsonl(tmp_path / "spans.jsonl") as path, LoopbackServer(name="report") as srv:
            pricing = TokenPricing(input_per_mtok=1, output_per_mtok=2)
            endpoint = af.Endpoint(model="openai/m", api_base=srv.base_url, pricing=pricing)
            af.configure(
                zoo=af.ModelZoo(tiers=[af.Tier("specialist", endpoints=[endpoint])]),
                retry=af.RetryPolicy(initial_backoff=0.01),
            )

            @af.plan(name="plan")
            def plan() -> str:
                return af.complete(messages=Q).text

            @af.tool(name="lookup")
            def lookup() -> str:
                return af.complete(messages=Q).text

            srv.script(
                Fault.status(500),
                Reply("a plan", prompt_tokens=100, completion_tokens=10),
                Reply("Paris", prompt_tokens=50, cached_tokens=20, completion_tokens=5),
            )
            with af.run("agent") as run:
                plan()
                lookup()
        yield path, run
    finally:
        _config.reset()


def test_report_tables_from_real_span_file(
    span_file: tuple[Path, af.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    path, run = span_file
    assert _report(str(path)) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "warning" not in captured.err
    total = _report_cli.format_usd(float(run.cost.total_usd))
    assert total == "0.00018000"  # 150 in × $1/M + 15 out × $2/M

    # columns: calls, cache hits, prompt tok, cached, completion tok, cost USD, saved USD,
    # p50, p99, errors
    calls, hits, prompt, _, completion, cost, saved, _, _, errors = _row(out, "run", "agent")
    assert (calls, prompt, completion, cost, errors) == ("3", "150", "15", total, "1")
    assert (hits, saved) == ("0", "0.00000000")
    plan = _row(out, "step", "plan")
    assert (plan[0], plan[5], plan[9]) == ("2", "0.00012000", "1")  # the 500, then the answer
    lookup = _row(out, "step", "lookup")
    assert (lookup[0], lookup[3], lookup[5], lookup[9]) == ("1", "40%", "0.00006000", "0")
    tier = _row(out, "tier", "specialist")
    assert (tier[0], tier[5], tier[9]) == ("3", total, "1")
    (endpoint_line,) = [line for line in out.splitlines() if line.startswith("openai/m@")]
    assert endpoint_line.split()[1] == "3"
    assert endpoint_line.split()[6] == total


def test_report_html_and_by(
    span_file: tuple[Path, af.Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = span_file
    page = tmp_path / "report.html"
    assert _report(str(path), "--html", str(page), "--by", "step,tier") == 0
    out = capsys.readouterr().out
    assert "by step" in out
    assert "by tier" in out
    assert "by run" not in out
    text = page.read_text(encoding="utf-8")
    assert "<svg" in text
    assert "plan" in text
    assert "lookup" in text
    assert "specialist" in text
    assert "<script" not in text
    # nothing fetched (endpoint labels may show their URL as text)
    for fetch in ("src=", "href=", "url(", "@import", "<link", "<iframe", "<object"):
        assert fetch not in text


def test_report_warns_when_run_rollup_disagrees(
    span_file: tuple[Path, af.Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = span_file
    records: list[dict[str, Any]] = list(tracing.read_spans(path))
    # drop the successful lookup call: the run's roll-up no longer equals its LLM spans
    kept = [
        r
        for r in records
        if not (
            r["attributes"].get("openinference.span.kind") == "LLM"
            and r["attributes"].get("llm.cost.total") == pytest.approx(6e-05)
        )
    ]
    assert len(kept) == len(records) - 1
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    assert _report(str(partial)) == 0
    err = capsys.readouterr().err
    assert "warning: run 'agent'" in err
    assert "0.00012000" in err
    assert "0.00018000" in err


def test_report_malformed_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "x"\nnot json at all\n', encoding="utf-8")
    assert _report(str(bad)) == 1
    assert "line 1 is not JSON" in capsys.readouterr().err

    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"hello": 1}\n', encoding="utf-8")
    assert _report(str(wrong)) == 1
    assert "not a span record" in capsys.readouterr().err

    assert _report(str(tmp_path / "missing.jsonl")) == 1
    assert "no such span file" in capsys.readouterr().err


def test_report_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert _report() == 1
    assert "give a JSONL span file" in capsys.readouterr().err


def test_report_counts_cache_hits_and_savings(
    zoo: af.ModelZoo,
    srv: LoopbackServer,
    tmp_path: Path,
    spans: InMemorySpanExporter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    @af.step(tier="small", cache="exact")
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.default = Reply("Paris", prompt_tokens=100, completion_tokens=10)
    with spans_to_jsonl(tmp_path / "spans.jsonl") as path:
        first = ask()
        ask()
    assert _report(str(path)) == 0
    out = capsys.readouterr().out
    cache = _row(out, "endpoint", "cache:exact")
    assert (cache[0], cache[1]) == ("1", "1")  # one call, and it was a hit
    assert cache[5] == "0.00000000"
    assert cache[6] == _report_cli.format_usd(float(first.cost.total_usd))
    step = _row(out, "step", "ask")
    assert (step[0], step[1]) == ("2", "1")
