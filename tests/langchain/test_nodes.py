"""Undecorated LangGraph nodes are steps: a ``ChatAgentflow`` call from a node is a step
named after the node (span, ``run.steps`` totals, report row), with a policy set by node
name through ``ChatAgentflow(nodes=...)`` or ``agentflow.langchain.node_policies``."""

from __future__ import annotations

import warnings
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from openinference.semconv.trace import SpanAttributes
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
from agentflow.langchain import ChatAgentflow, node_policies
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget
from tracing import attributes as A

with warnings.catch_warnings():  # deprecated in favour of langchain.agents, still shipped
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent

FINAL = "It is sunny in Paris today."
QUESTION = {"messages": [("user", "What is the weather in Paris?")]}


def _chats(srv: LoopbackServer) -> list[Any]:
    return [r for r in srv.requests if r.path.endswith("/chat/completions")]


def _script_round_trip(srv: LoopbackServer, **where: Any) -> None:
    call = {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call-1"}
    srv.script(Reply(tool_calls=[call]), Reply(FINAL), **where)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def _agent(model: ChatAgentflow) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, [get_weather])


def _kind(span: Any) -> Any:
    return span.attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND]


# --- the agent node is a step ---------------------------------------------------------
def test_the_react_agents_node_is_a_step_with_totals_spans_and_a_report_row(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    agent = _agent(ChatAgentflow(tier="small"))
    _script_round_trip(srv)

    with af.run("react") as run:
        out = agent.invoke(QUESTION)

    assert out["messages"][-1].content == FINAL
    assert set(run.steps) == {"agent"}  # the tools node made no model call
    step = run.steps["agent"]
    assert (step.kind, step.calls) == ("generic", 2)
    assert step.cost == run.cost
    assert step.cost.total_usd > 0
    assert [a.step for a in run.attempts] == ["agent", "agent"]
    assert any(line.lstrip().startswith("agent") for line in run.report().splitlines())

    finished = spans.get_finished_spans()
    (run_span,) = [s for s in finished if s.name == "run react"]
    steps = [s for s in finished if s.name == "agent"]
    llms = [s for s in finished if s.name == "chat small-model"]
    assert len(steps) == len(llms) == 2  # one step span per model call
    for step_span, llm in zip(steps, llms, strict=True):
        assert step_span.parent.span_id == run_span.context.span_id
        assert llm.parent.span_id == step_span.context.span_id
        assert _kind(step_span) == "CHAIN"
        assert step_span.attributes[A.AGENTFLOW_STEP_NAME] == "agent"
        assert step_span.attributes[A.AGENTFLOW_CALLS] == 1


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream"])
async def test_every_entry_point_runs_in_the_node_step(
    how: str, zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    agent = _agent(ChatAgentflow(tier="small"))
    _script_round_trip(srv)

    async with af.run(f"react-{how}") as run:
        if how == "invoke":
            out = agent.invoke(QUESTION)
        elif how == "ainvoke":
            out = await agent.ainvoke(QUESTION)
        elif how == "stream":  # the graph makes the model stream (_stream)
            parts = list(agent.stream(QUESTION, stream_mode="messages"))
        else:  # _astream
            parts = [p async for p in agent.astream(QUESTION, stream_mode="messages")]

    if how in ("invoke", "ainvoke"):
        assert out["messages"][-1].content == FINAL
    else:
        tokens = [
            str(c.content)
            for c, meta in parts
            if isinstance(c, AIMessageChunk) and meta["langgraph_node"] == "agent"
        ]
        assert "".join(tokens) == FINAL
        assert all(r.body["stream"] is True for r in _chats(srv))
    assert run.steps["agent"].calls == 2
    assert run.steps["agent"].cost == run.cost
    finished = spans.get_finished_spans()
    step_ids = {s.context.span_id for s in finished if s.name == "agent"}
    llms = [s for s in finished if s.name == "chat small-model"]
    assert len(step_ids) == len(llms) == 2
    assert {s.parent.span_id for s in llms} == step_ids


def test_outside_langgraph_and_inside_a_decorated_step_there_is_no_node_step(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    model = ChatAgentflow(tier="small", nodes={"agent": {"tier": "big"}})

    @af.plan(name="planner")
    def agent_node(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    class State(TypedDict):
        messages: list[Any]

    graph = StateGraph(State)
    graph.add_node("agent", agent_node)  # a node named "agent", but decorated
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    app = graph.compile()

    srv.script(Reply("plain"), Reply("planned"))
    with af.run("decorated") as run:
        assert model.invoke("hi").content == "plain"  # no LangGraph: no step
        out = app.invoke({"messages": [("user", "plan it")]})

    assert out["messages"][-1].content == "planned"
    # the decorated step's name, no "agent" node step; the call made outside LangGraph and
    # outside any step is the run's "(no step)" row
    assert set(run.steps) == {"planner", "(no step)"}
    assert run.steps["(no step)"].calls == 1
    assert run.steps["planner"].calls == 1
    assert [r.body["model"] for r in _chats(srv)] == ["small-model", "small-model"]
    names = [s.name for s in spans.get_finished_spans()]
    assert "agent" not in names
    assert names.count("planner") == 1


# --- node policies --------------------------------------------------------------------
def test_node_policies_set_the_agent_nodes_tier_and_kind(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    node_policies({"agent": {"tier": "big", "kind": "planning"}})
    agent = _agent(ChatAgentflow(tier="small"))  # the graph's code is unchanged
    _script_round_trip(srv, model="big-model")

    with af.run("react-big") as run:
        out = agent.invoke(QUESTION)

    assert out["messages"][-1].content == FINAL
    assert srv.requests[-1].body["model"] == "big-model"
    assert [r.body["model"] for r in _chats(srv)] == ["big-model", "big-model"]
    assert isinstance(out["messages"][-1], AIMessage)
    assert out["messages"][-1].response_metadata["tier"] == "big"
    assert run.steps["agent"].kind == "planning"
    assert set(run.steps["agent"].tiers) == {"big"}
    step_spans = [s for s in spans.get_finished_spans() if s.name == "agent"]
    assert {_kind(s) for s in step_spans} == {"CHAIN"}
    assert {s.attributes[A.AGENTFLOW_TIER] for s in step_spans} == {"big"}


def test_the_models_own_nodes_win_over_node_policies_and_a_bound_tier_over_both(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    node_policies({"agent": {"tier": "small"}, "tools": {"kind": "tool"}})
    agent = _agent(ChatAgentflow(nodes={"agent": {"tier": "big", "kind": "verification"}}))
    _script_round_trip(srv, model="big-model")

    with af.run("react-own") as run:
        agent.invoke(QUESTION)

    assert [r.body["model"] for r in _chats(srv)] == ["big-model", "big-model"]
    assert run.steps["agent"].kind == "verification"
    assert {_kind(s) for s in spans.get_finished_spans() if s.name == "agent"} == {"EVALUATOR"}

    # a tier bound to the call wins over the node's
    app = _two_call_graph(ChatAgentflow(nodes={"agent": {"tier": "big"}}).bind(tier="small"))
    srv.script(Reply("a draft"), Reply("revised"), model="small-model")
    with af.run("bound") as run:
        assert app.invoke({"text": "a poem"}) == {"text": "revised"}
    assert [r.body["model"] for r in _chats(srv)][-2:] == ["small-model", "small-model"]
    assert run.steps["agent"].calls == 2


class Draft(TypedDict):
    text: str


def _two_call_graph(model: Any) -> Any:
    """One undecorated node "agent" that calls the model twice: draft, then revise."""

    def agent(state: Draft) -> Draft:
        draft = model.invoke(f"Draft: {state['text']}")
        return {"text": str(model.invoke(f"Revise: {draft.content}").content)}

    graph = StateGraph(Draft)
    graph.add_node("agent", agent)
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    return graph.compile()


def test_a_node_budget_holds_for_one_node_invocation(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    node_policies({"agent": {"budget": Budget(max_calls=1)}})
    app = _two_call_graph(ChatAgentflow(tier="small"))
    srv.script(Reply("a draft"), Reply("revised"))

    with pytest.raises(af.BudgetExceededError) as caught, af.run("two-calls") as run:
        app.invoke({"text": "a poem"})

    assert "agent" in str(caught.value)
    assert len(_chats(srv)) == 1  # the second call of the invocation was never sent
    assert run.steps["agent"].calls == 1

    # the next invocation of the node has its own budget: one call again
    srv.script(Reply("another draft"), Reply("never sent"))
    with pytest.raises(af.BudgetExceededError), af.run("two-calls-again"):
        app.invoke({"text": "a song"})
    assert [r.body["messages"][-1]["content"] for r in _chats(srv)] == [
        "Draft: a poem",
        "Draft: a song",
    ]


def test_each_turn_of_the_react_agent_is_one_node_invocation(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    # the agent node runs twice (before and after the tool): each run may make one call
    agent = _agent(ChatAgentflow(tier="small", nodes={"agent": {"budget": Budget(max_calls=1)}}))
    _script_round_trip(srv)

    with af.run("react-turns") as run:
        out = agent.invoke(QUESTION)

    assert out["messages"][-1].content == FINAL
    assert run.steps["agent"].calls == 2


def test_a_node_with_a_cache_reuses_the_answer(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    model = ChatAgentflow(tier="small", temperature=0, nodes={"agent": {"cache": "exact"}})

    def agent(state: Draft) -> Draft:
        return {"text": str(model.invoke(state["text"]).content)}

    graph = StateGraph(Draft)
    graph.add_node("agent", agent)
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    app = graph.compile()
    srv.script(Reply("Paris."))

    with af.run("cached") as run:
        first = app.invoke({"text": "Capital of France?"})
        second = app.invoke({"text": "Capital of France?"})

    assert first == second == {"text": "Paris."}
    assert len(_chats(srv)) == 1
    assert run.steps["agent"].totals.cache_hits == 1


# --- bad options ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"teir": "big"}, "unknown option(s) ['teir']"),
        ({"name": "x"}, "the node's name is the step's name"),
        ({"kind": "thinking"}, "thinking"),
        ({"budget": 0.01}, "budget must be a budgets.Budget, got"),
        ({"cache": "fuzzy"}, "cache='fuzzy' is not a cache policy"),
        ({"escalate": 0.8}, "escalate must be an af.Escalate"),
        ({"tier": ""}, "tier must be a tier name"),
        ({"tier": "huge"}, "huge"),  # the zoo is configured: unknown tiers fail now
        ("big", "needs a dict of step options, got"),
    ],
)
def test_bad_node_options_raise_config_error_naming_the_node(
    zoo: af.ModelZoo, options: Any, expected: str
) -> None:
    with pytest.raises(af.ConfigError, match="node 'agent'") as caught:
        ChatAgentflow(nodes={"agent": options})
    assert expected in str(caught.value)
    assert "ChatAgentflow nodes" in str(caught.value)

    with pytest.raises(af.ConfigError, match="node 'agent'") as caught:
        node_policies({"agent": options})
    assert expected in str(caught.value)


def test_node_policies_need_a_mapping_of_named_nodes() -> None:
    with pytest.raises(af.ConfigError, match="must be a dict"):
        node_policies(["agent"])  # type: ignore[arg-type]
    with pytest.raises(af.ConfigError, match="node names must be non-empty str"):
        ChatAgentflow(nodes={"": {"tier": "big"}})


def test_a_node_tier_is_checked_when_the_zoo_is_configured_later(srv: LoopbackServer) -> None:
    node_policies({"agent": {"tier": "huge"}})  # no zoo yet: nothing to check against
    with pytest.raises(af.ConfigError, match="huge"):
        af.configure(
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "small",
                        endpoints=[af.Endpoint(model="openai/m", api_base=srv.base_url)],
                    )
                ]
            )
        )
