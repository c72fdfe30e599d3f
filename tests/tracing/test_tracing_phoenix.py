"""Phoenix helpers, and a real Phoenix pricing agentflow's spans like agentflow does."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

import tracing
from tracing.phoenix import PhoenixError, PhoenixServer, ensure_phoenix, name_pattern
from tracing.phoenix._pricing import _price


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


def test_name_pattern_is_escaped_and_anchored() -> None:
    pattern = name_pattern("openai/smollm2-135m.q4+x")
    assert pattern == r"^openai/smollm2\-135m\.q4\+x$"
    assert re.search(pattern, "openai/smollm2-135m.q4+x")
    assert not re.search(pattern, "openai/smollm2-135m.q4+x-large")
    assert not re.search(pattern, "openai/smollm2-135mXq4+x")


def test_prices_accept_decimals_mappings_and_per_token_objects() -> None:
    assert _price("m", Price(1.0, 2.0, 0.5)).costs() == [
        ("input", "PROMPT", 1.0),
        ("output", "COMPLETION", 2.0),
        ("cache_read", "PROMPT", 0.5),
    ]
    decimal_price = {"input_per_mtok": Decimal("0.15"), "output_per_mtok": Decimal("0.6")}
    assert _price("m", decimal_price).cache_read is None

    class GpuHour:
        def per_token(self) -> Price:
            return Price(3.0, 4.0)

    assert _price("m", GpuHour()).input == 3.0
    with pytest.raises(TypeError, match="output_per_mtok"):
        _price("m", {"input_per_mtok": 1})
    with pytest.raises(ValueError, match=">= 0"):
        _price("m", Price(-1.0, 1.0))


def test_ensure_phoenix_honours_phoenix_bin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "phoenix"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PHOENIX_BIN", str(fake))
    assert ensure_phoenix() == fake
    monkeypatch.setenv("PHOENIX_BIN", str(tmp_path / "missing"))
    with pytest.raises(PhoenixError, match="PHOENIX_BIN"):
        ensure_phoenix()


def test_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "phoenix"
    fake.write_text("#!/bin/sh\necho 'boom: port in use' >&2\nexit 7\n")
    fake.chmod(0o755)
    server = PhoenixServer(executable=fake, startup_timeout=10)
    with pytest.raises(PhoenixError, match=r"(?s)exited with code 7.*boom: port in use"):
        server.start()


def test_unreachable_phoenix_says_what_to_do() -> None:
    with pytest.raises(PhoenixError, match="Is it running"):
        tracing.phoenix.register_pricing("http://127.0.0.1:9", {"m": Price(1, 2)}, timeout=2)


# --- a real Phoenix -------------------------------------------------------------------


@pytest.fixture(scope="module")
def phoenix() -> Iterator[PhoenixServer]:
    try:
        server = PhoenixServer().start()
    except PhoenixError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Phoenix is required in CI: {error}")
        pytest.skip(f"no Phoenix here ({error}); CI installs it with ensure_phoenix()")
    try:
        yield server
    finally:
        server.stop()


MODEL = "smollm2-135m"
PRICE = Price(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.5)
# (prompt tokens incl. cached, cached or None if unreported, completion tokens)
CALLS = [(1200, 800, 150), (300, None, 40)]


def _call_cost(prompt: int, cached: int | None, completion: int) -> tuple[float, float, float]:
    cached_n = cached or 0
    return (
        (prompt - cached_n) * PRICE.input_per_mtok / 1e6,
        cached_n * (PRICE.cached_input_per_mtok or 0) / 1e6,
        completion * PRICE.output_per_mtok / 1e6,
    )


@pytest.mark.integration
def test_phoenix_prices_the_span_tree_like_agentflow(phoenix: PhoenixServer) -> None:
    from opentelemetry.trace import SpanKind

    # Pricing first: Phoenix prices spans once, when they arrive.
    assert phoenix.register_pricing({MODEL: PRICE}) == [MODEL]
    assert phoenix.register_pricing({MODEL: PRICE}) == []  # idempotent

    project = f"agentflow-it-{uuid.uuid4().hex[:8]}"
    providers = tracing.setup(project=project, otlp_endpoint=phoenix.otlp_endpoint,
                              set_global=False)  # fmt: skip
    tracer = providers.tracer_provider.get_tracer("agentflow")
    costs = [_call_cost(*call) for call in CALLS]
    expected = sum(sum(c) for c in costs)
    rollup = tracing.rollup_attributes(
        prompt_tokens=sum(p for p, _, _ in CALLS),
        cached_prompt_tokens=sum(c or 0 for _, c, _ in CALLS),
        completion_tokens=sum(o for _, _, o in CALLS),
        cost_input=sum(c[0] for c in costs),
        cost_cached_input=sum(c[1] for c in costs),
        cost_output=sum(c[2] for c in costs),
        calls=len(CALLS),
    )
    try:
        with tracer.start_as_current_span(
            "run research", attributes=tracing.run_attributes(name="research", session_id="s1")
        ) as run:
            with tracer.start_as_current_span(
                "step make_plan",
                attributes=tracing.step_attributes(name="make_plan", kind="planning"),
            ) as step:
                for attempt, ((prompt, cached, completion), cost) in enumerate(
                    zip(CALLS, costs, strict=True), start=1
                ):
                    with tracer.start_as_current_span(
                        f"chat {MODEL}",
                        kind=SpanKind.CLIENT,
                        attributes=tracing.llm_attributes(
                            model=MODEL,
                            provider="openai",
                            prompt_tokens=prompt,
                            cached_prompt_tokens=cached,
                            completion_tokens=completion,
                            cost_input=cost[0],
                            cost_cached_input=cost[1],
                            cost_output=cost[2],
                            attempt=attempt,
                        ),
                    ):
                        pass
                with tracer.start_as_current_span(
                    f"cache {MODEL}",
                    attributes=tracing.cache_hit_attributes(
                        kind="exact", saved_usd=sum(costs[0]), model=MODEL
                    ),
                ):
                    pass
                step.set_attributes(rollup)
            run.set_attributes(rollup)
        assert providers.force_flush()
    finally:
        providers.shutdown()

    spans = phoenix.wait_for_spans(project, count=5)
    by_name: dict[str, list[dict[str, object]]] = {}
    for span in spans:
        by_name.setdefault(str(span["name"]), []).append(span)
    (run_span,) = by_name["run research"]
    (step_span,) = by_name["step make_plan"]
    llm_spans = by_name[f"chat {MODEL}"]
    (hit_span,) = by_name[f"cache {MODEL}"]
    run_id = f"{run.get_span_context().span_id:016x}"
    step_id = f"{step.get_span_context().span_id:016x}"
    assert run_span["span_kind"] == "AGENT"
    assert run_span["parent_id"] is None
    assert step_span["span_kind"] == "CHAIN"
    assert step_span["parent_id"] == run_id
    assert len(llm_spans) == 2
    assert {s["span_kind"] for s in llm_spans} == {"LLM"}
    assert {s["parent_id"] for s in [*llm_spans, hit_span]} == {step_id}

    trace_id = run.get_span_context().trace_id
    deadline = time.monotonic() + 30
    summary = phoenix.trace_cost(trace_id)
    while (summary is None or summary.total_cost is None) and time.monotonic() < deadline:
        time.sleep(0.5)
        summary = phoenix.trace_cost(trace_id)
    assert summary is not None
    assert summary.total_cost == pytest.approx(expected, abs=1e-9)
    assert summary.prompt_cost == pytest.approx(sum(c[0] + c[1] for c in costs), abs=1e-9)
    assert summary.completion_cost == pytest.approx(sum(c[2] for c in costs), abs=1e-9)
    # Roll-ups and the cache hit added no tokens: Phoenix counted each call once.
    assert summary.total_tokens == sum(p + o for p, _, o in CALLS)
    # And agentflow's own numbers on the spans agree with Phoenix.
    assert run_span["attributes"]["agentflow.cost.total_usd"] == pytest.approx(  # type: ignore[index]
        summary.total_cost, abs=1e-9
    )
    project_summary = phoenix.project_cost(project)
    assert project_summary is not None
    assert project_summary.total_cost == pytest.approx(expected, abs=1e-9)


@pytest.mark.integration
def test_register_pricing_updates_a_changed_price(phoenix: PhoenixServer) -> None:
    name = f"self-hosted/{uuid.uuid4().hex[:6]}.gguf"
    base = phoenix.base_url
    assert tracing.phoenix.register_pricing(base, {name: Price(1.0, 2.0)}, wait=False) == [name]
    assert tracing.phoenix.register_pricing(base, {name: Price(1.0, 2.0)}, wait=False) == []
    assert tracing.phoenix.register_pricing(base, {name: Price(1.0, 3.0, 0.1)}, wait=False) == [
        name
    ]
    models = tracing.phoenix._pricing._custom_models(base, None, 10.0)
    (model,) = [m for m in models if m["name"] == name]
    assert model["namePattern"] == name_pattern(name)
    prices = {p["tokenType"]: p["costPerMillionTokens"] for p in model["tokenPrices"]}
    assert prices == {"input": 1.0, "output": 3.0, "cache_read": 0.1}
