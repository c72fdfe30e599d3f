"""Distillation data and the escalation tax, on a real escalation: the loopback server
answers the cheap tier with low-probability tokens (rejected by the logprob scorer) and
the strong tier with confident ones (accepted)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
import tracing
from agentflow.cli import _report as report_cli
from agentflow.pipeline.distill import DistillWarning
from agentflow.testing import LoopbackServer, Reply
from tracing import attributes as A

Q = [{"role": "user", "content": "What is the capital of France?"}]
UNSURE = Reply("Lyon", logprobs=[-3.0], prompt_tokens=40, completion_tokens=1)  # p = 0.05
SURE = Reply("Paris", logprobs=[-0.01], prompt_tokens=40, completion_tokens=1)  # p = 0.99


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _escalating_step() -> Any:
    @af.verify(name="check", tier="small", escalate=af.Escalate(min_confidence=0.8))
    def check(question: str) -> af.Completion:
        return af.complete(messages=[{"role": "user", "content": question}], temperature=0.0)

    return check


def test_a_rejected_cheap_answer_and_the_accepted_strong_one_are_one_line(
    zoo: af.ModelZoo, srv: LoopbackServer, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    out = tmp_path / "data" / "distill.jsonl"  # the directory is made on first write
    af.configure(distill_path=out)
    check = _escalating_step()
    srv.script(UNSURE, SURE, SURE)
    with af.run("triage") as run:
        escalated = check("What is the capital of France?")
        direct = check("And of Italy?")  # accepted at the first tier: no line
    assert (escalated.tier, escalated.text, direct.tier) == ("big", "Paris", "small")

    (line,) = _lines(out)
    cheap, strong = escalated.attempts
    assert (line["step"], line["kind"]) == ("check", "verification")
    assert line["run"] == "triage"
    assert line["prompt"] == Q
    assert line["params"] == {"temperature": 0.0}
    assert (line["min_confidence"], line["scorer"]) == (0.8, "logprob")
    (rejected,) = line["rejected"]
    accepted = line["accepted"]
    assert (rejected["tier"], rejected["text"]) == ("small", "Lyon")
    assert (accepted["tier"], accepted["text"]) == ("big", "Paris")
    assert accepted["message"]["content"] == "Paris"
    assert rejected["confidence"] == pytest.approx(math.exp(-3.0))
    assert accepted["confidence"] == pytest.approx(math.exp(-0.01))
    assert rejected["usd"] == pytest.approx(float(cheap.cost.total_usd))
    assert accepted["usd"] == pytest.approx(float(strong.cost.total_usd))
    assert rejected["usage"] == {
        "prompt_tokens": 40,
        "cached_prompt_tokens": 0,
        "completion_tokens": 1,
    }
    assert line["escalation_tax_usd"] == pytest.approx(float(cheap.cost.total_usd))
    assert line["escalation_tax_usd"] > 0
    assert line["trace_id"] == run.trace_id

    # the spans say the same: rejected, then accepted with the tax it cost
    llm = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    by_tier = [(s.attributes or {}) for s in llm]
    assert [a.get(A.AGENTFLOW_ESCALATION_ACCEPTED) for a in by_tier] == [False, True, True]
    assert by_tier[1][A.AGENTFLOW_ESCALATION_TAX_USD] == pytest.approx(line["escalation_tax_usd"])
    assert A.AGENTFLOW_ESCALATION_TAX_USD not in by_tier[2]  # accepted at the first tier


async def test_async_calls_record_too(
    zoo: af.ModelZoo, srv: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "distill.jsonl"
    af.configure(distill_path=str(out))

    @af.verify(name="acheck", tier="small", escalate=af.Escalate(min_confidence=0.8))
    async def check() -> af.Completion:
        return await af.acomplete(messages=Q)

    srv.script(UNSURE, SURE)
    c = await check()
    assert c.tier == "big"
    (line,) = _lines(out)
    assert (line["step"], line["rejected"][0]["text"], line["accepted"]["text"]) == (
        "acheck",
        "Lyon",
        "Paris",
    )


def test_nothing_is_recorded_unless_asked_or_when_no_tier_accepts(
    zoo: af.ModelZoo, srv: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _escalating_step()
    srv.script(UNSURE, SURE)
    assert check("q").tier == "big"  # no distill_path: nothing written anywhere
    assert af.configure().distill_path is None

    out = tmp_path / "env.jsonl"
    monkeypatch.setenv("AGENTFLOW_DISTILL_PATH", str(out))
    from agentflow import _config

    _config.reset()
    af.configure(zoo=zoo)
    assert af.configure().distill_path == out
    srv.script(UNSURE, UNSURE)  # neither tier is confident: the best is kept, no line
    assert check("q").confident is False
    assert not out.exists()
    srv.script(UNSURE, SURE)
    check("q")
    assert len(_lines(out)) == 1
    af.configure(distill_path=False)  # and off again
    srv.script(UNSURE, SURE)
    check("q")
    assert len(_lines(out)) == 1


def test_a_bad_distill_path_fails_at_configure_and_an_unwritable_one_warns(
    zoo: af.ModelZoo, srv: LoopbackServer, tmp_path: Path
) -> None:
    with pytest.raises(af.ConfigError, match="is a directory"):
        af.configure(distill_path=tmp_path)
    with pytest.raises(af.ConfigError, match="distill_path must be a path"):
        af.configure(distill_path=3)  # type: ignore[arg-type]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    af.configure(distill_path=blocker / "distill.jsonl")  # its parent is a file
    check = _escalating_step()
    srv.script(UNSURE, SURE)
    with pytest.warns(DistillWarning, match="cannot append distillation data"):
        c = check("q")
    assert (c.text, c.confident) == ("Paris", True)  # the call still answers


def test_the_report_shows_the_escalation_tax_per_step(
    zoo: af.ModelZoo,
    srv: LoopbackServer,
    tmp_path: Path,
    spans: InMemorySpanExporter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    check = _escalating_step()

    @af.plan(name="plan", tier="small")
    def plan() -> str:
        return af.complete(messages=Q).text

    srv.script(UNSURE, SURE, SURE, UNSURE, SURE, Reply("a plan"))
    with af.run("agent"):
        answers = [check("one"), check("two"), check("three")]
        plan()
    assert [a.tier for a in answers] == ["big", "small", "big"]
    taxes = [float(a.attempts[0].cost.total_usd) for a in answers if a.tier == "big"]
    rejected = taxes  # the two rejected answers are the two taxed ones
    step_usd = sum(float(a.total_cost.total_usd) for a in answers)

    path = tmp_path / "spans.jsonl"
    exporter = tracing.JsonlSpanExporter(path)
    exporter.export(list(spans.get_finished_spans()))
    exporter.shutdown()

    parser = argparse.ArgumentParser(prog="agentflow")
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(path), "--json"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    esc = summary["steps"]["check"]["escalation"]
    assert (esc["scored"], esc["rejected"], esc["escalated"]) == (5, 2, 2)
    assert esc["escalation_tax_usd"] == pytest.approx(sum(taxes), rel=1e-9)
    assert esc["rejected_usd"] == pytest.approx(sum(rejected), rel=1e-9)
    assert esc["escalation_tax_share"] == pytest.approx(sum(taxes) / step_usd, rel=1e-6)
    assert summary["steps"]["plan"]["escalation"]["scored"] == 0
    assert summary["totals"]["escalation"]["escalated"] == 2
    assert summary["runs"]["agent"]["steps"]["check"]["escalation"]["escalated"] == 2

    args = parser.parse_args(["report", str(path)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("escalation "))
    row = next(line for line in lines[header + 2 :] if line.startswith("check "))
    assert row.split()[1:6] == ["5", "2", f"{sum(rejected):.8f}", "2", f"{sum(taxes):.8f}"]
