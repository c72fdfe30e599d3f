"""A multi-step agentflow run, traced into a real Arize Phoenix.

One step retries against the loopback server (a 500, then an answer), one step runs on a
real llama-server; Phoenix receives the span tree with the right kinds and parents, and
— with agentflow's prices registered — its cost for the trace equals the run's cost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import agentflow as af
from agentflow._config import reset
from agentflow.local import LlamaServer
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import Budget, GpuHourPricing, TokenPricing
from tests._workload import _Switch
from tracing.phoenix import PhoenixError, PhoenixServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def phoenix() -> Iterator[PhoenixServer]:
    try:
        server = PhoenixServer().start()
    except PhoenixError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Phoenix is required in CI: {error}")
        pytest.skip(f"no Phoenix here ({error}); CI installs it")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def to_phoenix(phoenix: PhoenixServer) -> Iterator[None]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    switch = _Switch(SimpleSpanProcessor(OTLPSpanExporter(endpoint=phoenix.otlp_endpoint)))
    provider.add_span_processor(switch)
    try:
        yield
    finally:
        switch.on = False
        reset()


def _by_name(spans: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        out.setdefault(str(s["name"]), []).append(s)
    return out


def test_phoenix_cost_of_the_trace_equals_the_runs_cost(
    phoenix: PhoenixServer, llama_servers: list[LlamaServer], to_phoenix: None
) -> None:
    llama = llama_servers[0]
    with LoopbackServer(name="api") as srv:
        zoo = af.ModelZoo(tiers=[
            af.Tier("specialist", endpoints=[af.Endpoint(
                model="openai/" + llama.alias, api_base=llama.base_url, timeout=120,
                pricing=GpuHourPricing(usd_per_gpu_hour=1.10, prompt_tokens_per_s=9000,
                                       output_tokens_per_s=350))]),
            af.Tier("workhorse", endpoints=[af.Endpoint(
                model="openai/loop-workhorse", api_base=srv.base_url,
                pricing=TokenPricing(input_per_mtok=2.5, cached_input_per_mtok=1.25,
                                     output_per_mtok=10))]),
        ])  # fmt: skip
        af.configure(zoo=zoo, retry=af.RetryPolicy(initial_backoff=0.01, max_backoff=0.05))
        # Phoenix prices spans as they arrive: register agentflow's prices first
        phoenix.register_pricing(dict(zoo.token_prices()))
        srv.script(
            Fault.status(500),
            Reply("a plan", prompt_tokens=120, cached_tokens=40, completion_tokens=30),
        )

        @af.plan(tier="workhorse")
        def plan(q: str) -> str:
            return af.complete([{"role": "user", "content": q}]).text

        @af.tool(tier="specialist")
        def act(p: str) -> str:
            return af.complete([{"role": "user", "content": p}], max_tokens=8).text

        with af.run("phoenix-e2e", budget=Budget(max_usd=1), session_id="s-1") as run:
            act(plan("Plan a cheap agent."))

    assert run.totals.calls == 3  # the failed attempt, the retry, the llama call
    assert run.trace_id is not None
    spans = _by_name(phoenix.wait_for_spans("default", count=6, timeout=60))
    (run_span,) = spans["run phoenix-e2e"]
    assert run_span["span_kind"] == "AGENT"
    assert run_span["parent_id"] is None
    steps = {s["attributes"]["agentflow.step.name"]: s for s in spans["plan"] + spans["act"]}
    assert steps["plan"]["span_kind"] == "CHAIN"
    assert steps["act"]["span_kind"] == "TOOL"
    run_id = run_span["context"]["span_id"]
    assert {s["parent_id"] for s in steps.values()} == {run_id}
    loop_calls = spans["chat loop-workhorse"]
    assert len(loop_calls) == 2
    assert {s["parent_id"] for s in loop_calls} == {steps["plan"]["context"]["span_id"]}
    assert sorted(s["status_code"] for s in loop_calls) == ["ERROR", "OK"] or sorted(
        s["status_code"] for s in loop_calls
    ) == ["ERROR", "UNSET"]
    (llama_call,) = spans[f"chat {llama.alias}"]
    assert llama_call["parent_id"] == steps["act"]["context"]["span_id"]
    assert llama_call["span_kind"] == "LLM"

    deadline = time.monotonic() + 30
    summary = phoenix.trace_cost(run.trace_id)
    while (summary is None or summary.total_cost is None) and time.monotonic() < deadline:
        time.sleep(0.5)
        summary = phoenix.trace_cost(run.trace_id)
    assert summary is not None
    assert summary.total_cost == pytest.approx(float(run.cost.total_usd), abs=1e-9)
    assert summary.total_tokens == run.usage.total_tokens


def test_phoenix_shows_a_react_agents_node_as_a_step_with_its_cost(
    phoenix: PhoenixServer, to_phoenix: None
) -> None:
    """create_react_agent over ChatAgentflow, nodes undecorated: Phoenix receives the
    ``agent`` node as a CHAIN step span under the run, its LLM calls under it, and
    prices the trace at the run's cost."""
    import warnings

    from langchain_core.tools import tool

    from agentflow.langchain import ChatAgentflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    with LoopbackServer(name="graph") as srv:
        zoo = af.ModelZoo(tiers=[
            af.Tier("small", endpoints=[af.Endpoint(
                model="openai/graph-small", api_base=srv.base_url,
                pricing=TokenPricing(input_per_mtok=2.5, output_per_mtok=10))]),
        ])  # fmt: skip
        af.configure(zoo=zoo)
        phoenix.register_pricing(dict(zoo.token_prices()))
        call = {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call-1"}
        srv.script(
            Reply(tool_calls=[call], prompt_tokens=80, completion_tokens=12),
            Reply("It is sunny in Paris.", prompt_tokens=110, completion_tokens=8),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agent = create_react_agent(ChatAgentflow(tier="small"), [get_weather])
        with af.run("phoenix-graph") as run:
            out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})

    assert out["messages"][-1].content == "It is sunny in Paris."
    assert run.trace_id is not None
    assert set(run.steps) == {"agent"}
    trace_id = run.trace_id
    deadline = time.monotonic() + 60
    mine: list[dict[str, Any]] = []
    while len(mine) < 5 and time.monotonic() < deadline:  # run, 2 steps, 2 LLM calls
        mine = [s for s in phoenix.spans("default") if s["context"]["trace_id"] == trace_id]
        time.sleep(0.25)
    spans = _by_name(mine)
    (run_span,) = spans["run phoenix-graph"]
    agent_steps = spans["agent"]
    assert len(agent_steps) == 2  # the node ran twice: the tool call, then the answer
    assert {s["span_kind"] for s in agent_steps} == {"CHAIN"}
    assert {s["attributes"]["agentflow.step.name"] for s in agent_steps} == {"agent"}
    step_ids = {s["context"]["span_id"] for s in agent_steps}
    llm_calls = spans["chat graph-small"]
    assert len(llm_calls) == 2
    assert {s["parent_id"] for s in llm_calls} == step_ids
    assert {s["parent_id"] for s in agent_steps} == {run_span["context"]["span_id"]}

    deadline = time.monotonic() + 30
    summary = phoenix.trace_cost(run.trace_id)
    while (summary is None or summary.total_cost is None) and time.monotonic() < deadline:
        time.sleep(0.5)
        summary = phoenix.trace_cost(run.trace_id)
    assert summary is not None
    assert summary.total_cost == pytest.approx(float(run.cost.total_usd), abs=1e-9)
    assert summary.total_tokens == run.usage.total_tokens == 210
