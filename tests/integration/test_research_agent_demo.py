"""``make demo`` (examples/research_agent.py), run as a user runs it, on real llama-server
replicas it starts itself: it prices them at a throughput it measured on this machine,
prints one table with the prefix-cache savings in dollars, and writes its spans under the
agentflow cache directory, not where it runs."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from agentflow.cli import _report as report_cli
from budgets import Usage

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[2] / "examples" / "research_agent.py"


def _demo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("research_agent_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_demo_prices_honestly_and_prints_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "figures.json"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "AGENTFLOW_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, str(DEMO), "--json", str(out)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"demo failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    figures = json.loads(out.read_text(encoding="utf-8"))

    # spans under the cache directory, nothing left where it ran
    spans = cache / "research-agent" / "spans.jsonl"
    assert figures["spans"] == str(spans)
    assert spans.stat().st_size > 0
    assert list(work.iterdir()) == []

    # priced at the throughput it measured here, kept for the next run, and said so
    pricing = figures["pricing"]
    assert pricing["measured"] is True
    (kept,) = (cache / "research-agent").glob("calibration-*.json")
    measured = json.loads(kept.read_text(encoding="utf-8"))
    assert pricing["prompt_tokens_per_s"] == measured["prompt_tokens_per_s"]
    assert pricing["output_tokens_per_s"] == measured["output_tokens_per_s"]
    assert Decimal(pricing["output_tokens_per_s"]) > 0
    assert "measured on this machine" in done.stdout
    assert "$0.80/hour per replica (assumed)" in done.stdout

    # one table: one header, the five steps, the two cached replays and a total
    assert done.stdout.count("prefix-cache saved $") == 1
    rows = {r["step"]: r for r in figures["rows"]}
    assert list(rows) == [
        "make_plan",
        "retrieve",
        "price_tool",
        "answer",
        "verify",
        "make_plan (again)",
        "retrieve (again)",
        "total",
    ]
    usd_per_s = Decimal(pricing["usd_per_gpu_hour"]) / 3600
    prompt_rate = Decimal(pricing["prompt_tokens_per_s"])
    output_rate = Decimal(pricing["output_tokens_per_s"])
    for name in ("make_plan", "retrieve", "price_tool", "answer", "verify"):
        r = rows[name]
        seconds = (r["prompt_tokens"] - r["cached_prompt_tokens"]) / prompt_rate + Decimal(
            r["completion_tokens"]
        ) / output_rate
        assert Decimal(r["usd"]) == pytest.approx(seconds * usd_per_s, rel=Decimal("1e-9"))
        # the prefix cache: cached tokens at the prefill rate they skipped
        saved = Decimal(r["cached_prompt_tokens"]) / prompt_rate * usd_per_s
        assert Decimal(r["prefix_saved_usd"]) == pytest.approx(saved, rel=Decimal("1e-9"))
    total = rows["total"]
    assert total["cached_prompt_tokens"] > 0  # the shared system prompt was cached
    assert Decimal(total["prefix_saved_usd"]) > 0
    assert f"saving ${Decimal(total['prefix_saved_usd']):.8f}" in done.stdout
    # the replays cost nothing and saved what the first answers cost
    for name in ("make_plan", "retrieve"):
        again = rows[f"{name} (again)"]
        assert (again["endpoint"], Decimal(again["usd"])) == ("cache", Decimal(0))
        assert Decimal(again["cache_saved_usd"]) == Decimal(rows[name]["usd"])

    # `agentflow report` on the span file it names agrees with its table
    parser = argparse.ArgumentParser(prog="agentflow")
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(spans), "--json"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["usd"] == pytest.approx(float(total["usd"]), rel=1e-9)
    saved = report["totals"]["saved"]
    assert saved["prefix_cache"] == pytest.approx(float(total["prefix_saved_usd"]), rel=1e-9)
    assert saved["response_cache"] == pytest.approx(float(total["cache_saved_usd"]), rel=1e-9)
    assert report["totals"]["calls"] == 7


def test_assumed_pricing_says_so_and_savings_follow_the_price(tmp_path: Path) -> None:
    demo = _demo_module()
    args = argparse.Namespace(usd_per_hour="1.10", assume_l4=True, recalibrate=False, api_base=None)
    priced = demo._pricing(args, "http://127.0.0.1:1/v1", "openai/smollm2-135m")
    assert priced.measured is False
    assert "ASSUMED, not measured" in priced.source
    assert "$1.10/hour per replica (given)" in priced.source
    assert priced.pricing.output_tokens_per_s == demo.L4_OUTPUT_TOKENS_PER_S
    # 9000 cached tokens skip 1 s of prefill at an L4's rate: $1.10 / 3600
    saved = demo.prefix_saved(priced.pricing, Usage(9500, 9000, 10))
    assert saved == pytest.approx(Decimal("1.10") / 3600, rel=Decimal("1e-12"))
    assert demo.prefix_saved(priced.pricing, Usage(100, 0, 10)) == 0
