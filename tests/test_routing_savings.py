"""Routing savings: what a request's answer would have cost on the zoo's strongest tier,
minus what the request paid for its answers (rejected cheaper ones included), on the
answer's span and in ``agentflow report --json``. Every figure is worked out here by hand
from the scripted token counts and the prices, retyped below on purpose."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
from agentflow.cli import _report as _report_cli
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget, GpuHourPricing, TokenPricing
from tests._workload import spans_to_jsonl
from tracing import attributes as A

Q = [{"role": "user", "content": "What is the capital of France?"}]
MICRO = Decimal("0.000001")  # USD per token at $1 per million
# (input, output) USD per million tokens; nothing here reports cached tokens
PRICES = {"small": (1, 2), "mid": (3, 6), "big": (10, 20)}


def _usd(tier: str, prompt: int, completion: int) -> Decimal:
    """A call's cost by hand: tokens × the tier's price per million."""
    per_in, per_out = PRICES[tier]
    return (prompt * per_in + completion * per_out) * MICRO


@pytest.fixture
def span_file(tmp_path: Path, spans: InMemorySpanExporter) -> Iterator[Path]:
    """Spans also go to a JSONL file while the test runs, as ``agentflow report`` reads."""
    with spans_to_jsonl(tmp_path / "spans.jsonl") as path:
        yield path


def _zoo(srv: LoopbackServer, big: Any = None) -> af.ModelZoo:
    def tier(name: str, pricing: Any = None) -> af.Tier:
        per_in, per_out = PRICES[name]
        price = pricing or TokenPricing(input_per_mtok=per_in, output_per_mtok=per_out)
        endpoint = af.Endpoint(model=f"openai/{name}-model", api_base=srv.base_url, pricing=price)
        return af.Tier(name, endpoints=[endpoint])

    zoo = af.ModelZoo(tiers=[tier("small"), tier("mid"), tier("big", big)])
    af.configure(zoo=zoo, retry=af.RetryPolicy(initial_backoff=0.01))
    return zoo


def _confident_from(tier: str) -> Any:
    """A scorer confident in the answers of ``tier`` and stronger tiers only."""
    order = list(PRICES)

    def scorer(c: af.Completion) -> float:
        return 0.9 if order.index(c.tier) >= order.index(tier) else 0.1

    return scorer


def _json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(path), "--json"])
    assert args.func(args) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_routing_savings_on_spans_and_in_the_report(
    srv: LoopbackServer,
    span_file: Path,
    spans: InMemorySpanExporter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _zoo(srv)

    def answer() -> af.Completion:
        return af.complete(messages=Q)

    steps = {
        "classify": af.step(name="classify", tier="small")(answer),
        "check_mid": af.step(
            name="check_mid",
            tier="small",
            escalate=af.Escalate(min_confidence=0.8, scorer=_confident_from("mid")),
        )(answer),
        "check_big": af.step(
            name="check_big",
            tier="small",
            escalate=af.Escalate(min_confidence=0.8, scorer=_confident_from("big")),
        )(answer),
        "doubt": af.step(name="doubt", tier="small", escalate=af.Escalate(scorer=lambda c: 0.1))(
            answer
        ),
        "heavy": af.step(name="heavy", tier="big")(answer),
        "lookup": af.step(name="lookup", tier="small", cache="exact")(answer),
    }
    srv.script(
        Reply("a", prompt_tokens=100, completion_tokens=10),  # classify: small
        Reply("b", prompt_tokens=200, completion_tokens=20),  # check_mid: small, rejected
        Reply("c", prompt_tokens=200, completion_tokens=30),  # check_mid: mid, accepted
        Reply("d", prompt_tokens=300, completion_tokens=40),  # check_big: small, rejected
        Reply("e", prompt_tokens=300, completion_tokens=40),  # check_big: mid, rejected
        Reply("f", prompt_tokens=300, completion_tokens=40),  # check_big: big, accepted
        Reply("g", prompt_tokens=10, completion_tokens=1),  # doubt: small, rejected
        Reply("h", prompt_tokens=10, completion_tokens=1),  # doubt: mid, rejected
        Reply("i", prompt_tokens=10, completion_tokens=1),  # doubt: big, kept (unconfident)
        Reply("j", prompt_tokens=50, completion_tokens=5),  # heavy: big
        Reply("k", prompt_tokens=80, completion_tokens=8),  # lookup: small, then a cache hit
    )
    with af.run("agent") as run:
        for name in ("classify", "check_mid", "check_big", "doubt", "heavy", "lookup"):
            steps[name]()
        hit = steps["lookup"]()
    assert hit.cache_hit

    # by hand: strongest = the answer's tokens at big's prices; saved = that − all paid
    expected: dict[str, tuple[Decimal, Decimal]] = {  # step: (strongest, routing saved)
        "classify": (_usd("big", 100, 10), _usd("big", 100, 10) - _usd("small", 100, 10)),
        "check_mid": (
            _usd("big", 200, 30),
            _usd("big", 200, 30) - _usd("mid", 200, 30) - _usd("small", 200, 20),
        ),
        # escalated to the strongest tier: it saved nothing and paid the tax below it
        "check_big": (
            _usd("big", 300, 40),
            -(_usd("small", 300, 40) + _usd("mid", 300, 40)),
        ),
        "doubt": (_usd("big", 10, 1), -(_usd("small", 10, 1) + _usd("mid", 10, 1))),
        "heavy": (_usd("big", 50, 5), Decimal(0)),
        "lookup": (_usd("big", 80, 8), _usd("big", 80, 8) - _usd("small", 80, 8)),
    }
    assert expected["classify"][1] == Decimal("0.00108")
    assert expected["check_mid"][1] == Decimal("0.00158")
    assert expected["check_big"][1] == Decimal("-0.00152")  # the escalation tax, as a loss
    # per tier: a request's saving lands on the tier that gave its answer
    by_tier = {
        "small": expected["classify"][1] + expected["lookup"][1],
        "mid": expected["check_mid"][1],
        "big": expected["check_big"][1] + expected["doubt"][1] + expected["heavy"][1],
    }
    total = sum((s for _, s in expected.values()), Decimal(0))
    assert total == Decimal("0.001956")

    llm = sorted(
        (s for s in spans.get_finished_spans() if s.name.startswith("chat ")),
        key=lambda s: s.start_time or 0,
    )
    assert len(llm) == 12  # eleven answers and the cache hit
    answers = {0: "classify", 2: "check_mid", 5: "check_big", 8: "doubt", 9: "heavy"}
    answers[10] = "lookup"
    for i, span in enumerate(llm):
        attrs = span.attributes or {}
        if i in answers:
            strongest, saved = expected[answers[i]]
            assert attrs[A.AGENTFLOW_ROUTE_STRONGEST_USD] == float(strongest), answers[i]
            assert attrs[A.AGENTFLOW_ROUTE_SAVED_USD] == float(saved), answers[i]
        else:  # rejected answers a stronger tier replaced, and the cache hit
            assert A.AGENTFLOW_ROUTE_STRONGEST_USD not in attrs, i
            assert A.AGENTFLOW_ROUTE_SAVED_USD not in attrs, i
    assert llm[11].attributes[A.AGENTFLOW_CACHE_HIT] is True  # type: ignore[index]
    assert llm[5].attributes[A.AGENTFLOW_ESCALATION_TAX_USD] == float(  # type: ignore[index]
        -expected["check_big"][1]
    )

    # the run's totals have them too, exactly, per step and per tier, and run.report()
    assert run.totals.routing_saved_usd == total
    for name, (_, saved) in expected.items():
        assert run.steps[name].totals.routing_saved_usd == saved, name
    for tier, saved in by_tier.items():
        got = sum(
            (s.tiers[tier].routing_saved_usd for s in run.steps.values() if tier in s.tiers),
            Decimal(0),
        )
        assert got == saved, tier
    report = run.report()
    assert "routing: saved $0.001956 against calling the strongest tier" in report
    rows = {
        cells[2]: cells for cells in map(str.split, report.splitlines()) if cells[0] == "check_big"
    }
    assert rows["big"][-2] == "-$0.001520"  # routing, then time: on the answering tier
    assert rows["small"][-2] == rows["mid"][-2] == "$0.000000"

    data = _json(span_file, capsys)
    for name, (_, saved) in expected.items():
        step = data["steps"][name]
        assert step["saved"]["routing"] == pytest.approx(float(saved), rel=1e-12, abs=1e-15)
    # the cache hit keeps its own kind: the first lookup's cost, no routing counted twice
    lookup = data["steps"]["lookup"]["saved"]
    assert lookup["response_cache"] == pytest.approx(float(_usd("small", 80, 8)), rel=1e-12)
    assert data["steps"]["check_big"]["saved_usd"] < 0
    assert data["steps"]["check_big"]["escalation"]["escalation_tax_usd"] == pytest.approx(
        float(-expected["check_big"][1]), rel=1e-12
    )
    for tier, saved in by_tier.items():
        assert data["tiers"][tier]["saved"]["routing"] == pytest.approx(float(saved), rel=1e-12)
    assert data["totals"]["saved"]["routing"] == pytest.approx(float(total), rel=1e-12)
    assert data["runs"]["agent"]["saved"]["routing"] == pytest.approx(float(total), rel=1e-12)
    assert data["runs"]["agent"]["steps"]["check_big"]["saved"]["routing"] == pytest.approx(
        float(expected["check_big"][1]), rel=1e-12
    )

    # the text report: routing in the saved line, and a per-step table of savings by kind
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(span_file)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"routing {_report_cli.format_usd(float(total))}" in out
    lines = out.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("saved USD by step ")))
    (row,) = [line for line in lines[table:] if line.startswith("check_big ")]
    assert row.split()[1:] == ["0.00000000"] * 3 + ["-0.00152000"] * 2  # caches, routing, total

    # the page: the escalation tax per step as bars, routing among the savings by kind
    page = span_file.with_suffix(".html")
    args = parser.parse_args(["report", str(span_file), "--html", str(page)])
    assert args.func(args) == 0
    html = page.read_text(encoding="utf-8")
    section = html[html.index('<section id="escalation">') :]
    section = section[: section.index("</section>")]
    assert "<title>check_big: $0.001520 tax</title>" in section
    assert "<title>check_mid: $0.000240 tax</title>" in section
    assert '<table class="escalation">' in section
    assert "<td>check_big</td><td>3</td><td>2</td>" in section
    assert "<td>-$0.001520</td></tr>" in section  # check_big's routing saving, a loss
    assert "<title>routing: $0.001956</title>" in html


def test_strongest_tier_priced_by_the_gpu_hour(
    srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    # $3.60 per GPU-hour = $0.001 per GPU-second; 1000 prompt and 100 output tokens per s
    gpu = GpuHourPricing(
        usd_per_gpu_hour=Decimal("3.6"), gpus=1, prompt_tokens_per_s=1000, output_tokens_per_s=100
    )
    _zoo(srv, big=gpu)

    @af.step(name="classify", tier="small")
    def classify() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("a", prompt_tokens=100, completion_tokens=10))
    classify()
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    attrs = span.attributes or {}
    # 100 / 1000 s of prefill + 10 / 100 s of decoding = 0.2 GPU-s at $0.001
    strongest = Decimal("0.2") * Decimal("0.001")
    assert attrs[A.AGENTFLOW_ROUTE_STRONGEST_USD] == float(strongest)
    assert attrs[A.AGENTFLOW_ROUTE_SAVED_USD] == float(strongest - _usd("small", 100, 10))


def test_an_unscored_stream_records_its_routing_saving(
    srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    _zoo(srv)

    @af.step(name="chatty", tier="small")
    def chatty() -> str:
        chunks = af.complete(messages=Q, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    srv.script(Reply("a b c", prompt_tokens=100, completion_tokens=3))
    with af.run("streamed") as run:
        assert chatty() == "a b c"
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    attrs = span.attributes or {}
    saved = _usd("big", 100, 3) - _usd("small", 100, 3)
    assert attrs[A.AGENTFLOW_ROUTE_STRONGEST_USD] == float(_usd("big", 100, 3))
    assert attrs[A.AGENTFLOW_ROUTE_SAVED_USD] == float(saved)
    assert run.totals.routing_saved_usd == saved


def test_a_climb_the_budget_stops_settles_on_the_answer_it_has(
    srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    """The scorer rejects the cheap answer, but the run's budget cannot pay for the
    strong tier: the request settles on the cheap answer, and its span carries the
    routing saving (before, a climb stopped by the budget recorded none)."""
    cheap = TokenPricing(input_per_mtok=1, output_per_mtok=1)
    dear = TokenPricing(input_per_mtok=1000, output_per_mtok=1000)
    tiers = [
        af.Tier(
            name, endpoints=[af.Endpoint(model=f"openai/{name}", api_base=srv.base_url, pricing=p)]
        )
        for name, p in (("small", cheap), ("big", dear))
    ]
    af.configure(zoo=af.ModelZoo(tiers=tiers), retry=af.RetryPolicy(initial_backoff=0.01))

    @af.step(
        name="check", tier="small", escalate=af.Escalate(scorer=lambda c: 0.1, min_confidence=0.5)
    )
    def check() -> af.Completion:
        return af.complete(messages=Q, max_tokens=10)

    srv.default = Reply("a", prompt_tokens=20, completion_tokens=5)
    # $0.001: the small answer ($0.000025) fits, a 20-token prompt on big ($0.02) never does
    with af.run("thrifty", budget=Budget(max_usd="0.001")) as run:
        answer = check()
    assert answer.tier == "small"
    assert len([r for r in srv.requests if r.path.endswith("/chat/completions")]) == 1
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    attrs = span.attributes or {}
    strongest = Decimal(20 * 1000 + 5 * 1000) * MICRO
    paid = Decimal(20 + 5) * MICRO
    assert attrs[A.AGENTFLOW_ROUTE_STRONGEST_USD] == float(strongest)
    assert attrs[A.AGENTFLOW_ROUTE_SAVED_USD] == float(strongest - paid)
    assert run.totals.routing_saved_usd == strongest - paid
