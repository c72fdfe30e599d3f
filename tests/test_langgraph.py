"""Decorated steps as real LangGraph nodes: LangGraph still injects ``config`` and
``runtime``, sync and async nodes run, and the step spans sit under the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from openinference.semconv.trace import SpanAttributes
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
from agentflow.testing import LoopbackServer, Reply
from tracing import attributes as A


def _calls(srv: LoopbackServer) -> list[Any]:
    """The model calls the server received (token counting asks ``/tokenize`` too)."""
    return [r for r in srv.requests if r.path.endswith(("/chat/completions", "/embeddings"))]


class State(TypedDict, total=False):
    question: str
    plan: str
    answer: str
    thread_id: str
    checked: bool


def _spans_by_name(spans: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in spans.get_finished_spans()}


def test_sync_node_receives_config_and_is_a_step(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    @af.plan(tier="big", name="plan-node")
    def plan_node(state: State, config: RunnableConfig) -> State:
        c = af.complete(messages=[{"role": "user", "content": state["question"]}])
        return {"plan": c.text, "thread_id": config["configurable"]["thread_id"]}

    @af.tool(name="tool-node")
    def tool_node(state: State) -> State:
        return {"answer": state["plan"].upper()}

    graph = StateGraph(State)
    graph.add_node("plan", plan_node)
    graph.add_node("tool", tool_node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "tool")
    graph.add_edge("tool", END)
    app = graph.compile()

    srv.script(Reply("search then answer", prompt_tokens=12, completion_tokens=3))
    with af.run("graph") as run:
        out = app.invoke({"question": "capital?"}, config={"configurable": {"thread_id": "t-1"}})

    assert out["thread_id"] == "t-1"  # LangGraph injected the config into the decorated node
    assert out["plan"] == "search then answer"
    assert out["answer"] == "SEARCH THEN ANSWER"
    assert _calls(srv)[-1].body["model"] == "big-model"
    assert run.steps["plan-node"].calls == 1
    assert run.steps["tool-node"].invocations == 1

    by_name = _spans_by_name(spans)
    run_span, plan_span, tool_span = (
        by_name["run graph"],
        by_name["plan-node"],
        by_name["tool-node"],
    )
    assert plan_span.parent.span_id == run_span.context.span_id
    assert tool_span.parent.span_id == run_span.context.span_id
    assert plan_span.attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] == "CHAIN"
    assert tool_span.attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] == "TOOL"
    (llm,) = [s for s in spans.get_finished_spans() if s.name == "chat big-model"]
    assert llm.parent.span_id == plan_span.context.span_id
    assert plan_span.attributes[A.AGENTFLOW_CALLS] == 1


async def test_async_node_receives_config_under_ainvoke(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    @af.verify(tier="small", name="check-node")
    async def check_node(state: State, config: RunnableConfig) -> State:
        c = await af.acomplete(messages=[{"role": "user", "content": state["question"]}])
        return {"checked": c.text == "yes", "thread_id": config["configurable"]["thread_id"]}

    # a sync node under ainvoke runs in LangGraph's executor with the context copied
    @af.retrieve(tier="big", name="fetch-node")
    def fetch_node(state: State) -> State:
        return {"plan": af.complete(messages=[{"role": "user", "content": "fetch"}]).text}

    graph = StateGraph(State)
    graph.add_node("fetch", fetch_node)
    graph.add_node("check", check_node)
    graph.add_edge(START, "fetch")
    graph.add_edge("fetch", "check")
    graph.add_edge("check", END)
    app = graph.compile()

    srv.script(Reply("docs"), model="big-model")
    srv.script(Reply("yes"), model="small-model")
    async with af.run("agraph") as run:
        out = await app.ainvoke({"question": "ok?"}, config={"configurable": {"thread_id": "t-9"}})

    assert out == {"question": "ok?", "plan": "docs", "checked": True, "thread_id": "t-9"}
    assert run.steps["check-node"].calls == 1
    assert run.steps["fetch-node"].calls == 1
    assert [a.step for a in run.attempts] == ["fetch-node", "check-node"]

    by_name = _spans_by_name(spans)
    run_span = by_name["run agraph"]
    for name, kind in (("check-node", "EVALUATOR"), ("fetch-node", "RETRIEVER")):
        span = by_name[name]
        assert span.parent.span_id == run_span.context.span_id, name
        assert span.attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] == kind
        assert span.attributes[A.AGENTFLOW_CALLS] == 1


@dataclass
class Ctx:
    user: str


def test_node_receives_the_runtime(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.tool(name="runtime-node")
    def node(state: State, runtime: Runtime[Ctx]) -> State:
        return {"answer": f"hello {runtime.context.user}"}

    graph = StateGraph(State, context_schema=Ctx)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    out = graph.compile().invoke({"question": "?"}, context=Ctx(user="ada"))
    assert out["answer"] == "hello ada"


async def test_async_node_stream_mode_updates(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.plan(tier="small", name="astream-node")
    async def node(state: State, config: RunnableConfig) -> State:
        c = await af.acomplete(messages=[{"role": "user", "content": state["question"]}])
        return {"answer": c.text}

    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    app = graph.compile()
    srv.script(Reply("streamed"))
    async with af.run("astream") as run:
        updates = [u async for u in app.astream({"question": "q"}, stream_mode="updates")]
    assert updates == [{"node": {"answer": "streamed"}}]
    assert run.steps["astream-node"].calls == 1
