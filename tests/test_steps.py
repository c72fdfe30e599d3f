"""``@af.step`` and its presets on the four kinds of function, against a loopback server.

What a decorator must keep (name, ``__wrapped__``, signature, coroutine-ness), what it
adds (the kind, the step's tier and attribution of its model calls), and what a run
reports afterwards.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
from openinference.semconv.trace import SpanAttributes
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agentflow as af
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget, Cost, Usage
from tracing import attributes as A


def _calls(srv: LoopbackServer) -> list[Any]:
    """The model calls the server received (token counting asks ``/tokenize`` too)."""
    return [r for r in srv.requests if r.path.endswith(("/chat/completions", "/embeddings"))]


Q = [{"role": "user", "content": "question"}]


def _sync(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """Sync doc."""
    return f"{a}{b}{c}"


async def _async(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """Async doc."""
    return f"{a}{b}{c}"


def _gen(a: int, b: str = "x", *, c: float = 1.0) -> Iterator[str]:
    """Gen doc."""
    yield f"{a}{b}{c}"


async def _agen(a: int, b: str = "x", *, c: float = 1.0) -> AsyncIterator[str]:
    """Async gen doc."""
    yield f"{a}{b}{c}"


FUNCS = [_sync, _async, _gen, _agen]
PREDICATES = [
    inspect.iscoroutinefunction,
    inspect.isasyncgenfunction,
    inspect.isgeneratorfunction,
]


@pytest.mark.parametrize("func", FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "decorator",
    [af.step, af.step(), af.step(kind="tool", tier="small"), af.plan, af.retrieve(name="x")],
    ids=["bare-step", "step()", "step(kind,tier)", "bare-plan", "retrieve(name)"],
)
def test_decorators_keep_name_wrapped_signature_and_kind_of_function(
    func: Any, decorator: Any
) -> None:
    wrapped = decorator(func)
    assert wrapped is not func
    assert wrapped.__name__ == func.__name__
    assert wrapped.__qualname__ == func.__qualname__
    assert wrapped.__doc__ == func.__doc__
    assert wrapped.__wrapped__ is func
    assert inspect.signature(wrapped) == inspect.signature(func)
    assert list(inspect.signature(wrapped).parameters) == ["a", "b", "c"]
    for predicate in PREDICATES:
        assert predicate(wrapped) == predicate(func), predicate.__name__


async def test_each_kind_of_function_still_runs_and_returns() -> None:
    assert af.step(_sync)(1, c=2.0) == "1x2.0"
    assert await af.step(_async)(1, "y") == "1y1.0"
    assert list(af.step(_gen)(2)) == ["2x1.0"]
    assert [v async for v in af.step(_agen)(3)] == ["3x1.0"]


@pytest.mark.parametrize(
    ("decorator", "kind"),
    [
        (af.plan, "planning"),
        (af.retrieve, "retrieval"),
        (af.tool, "tool"),
        (af.verify, "verification"),
        (af.step, "generic"),
        (af.step(kind="tool"), "tool"),
        (af.plan(tier="small"), "planning"),
    ],
)
def test_presets_set_the_kind(decorator: Any, kind: str) -> None:
    wrapped = decorator(_sync)
    policy = wrapped.__agentflow_step__
    assert isinstance(policy, af.StepPolicy)
    assert policy.kind == kind
    with af.run("kinds") as run:
        wrapped(1)
    assert run.steps[policy.name].kind == kind
    assert run.steps[policy.name].invocations == 1


def test_step_options_are_kept() -> None:
    budget = Budget(max_output_tokens=64)
    esc = af.Escalate(min_confidence=0.7)

    @af.verify(tier="small", budget=budget, escalate=esc, cache="exact", name="checker")
    def check() -> None: ...

    policy = check.__agentflow_step__  # type: ignore[attr-defined]
    assert (policy.name, policy.tier, policy.budget, policy.escalate) == (
        "checker",
        "small",
        budget,
        esc,
    )
    assert policy.cache == af.CachePolicy(kind="exact")


# -- attribution -----------------------------------------------------------------------


def test_calls_in_a_step_use_its_tier_and_are_attributed_to_it(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.plan(tier="big")
    def make_plan() -> str:
        return af.complete(messages=Q).text

    srv.script(Reply("plan", prompt_tokens=10, completion_tokens=5))
    with af.run("attr") as run:
        assert make_plan() == "plan"
        af.complete(messages=Q)  # outside any step: the zoo's default (cheapest) tier

    assert [r.body["model"] for r in _calls(srv)] == ["big-model", "small-model"]
    name = make_plan.__agentflow_step__.name  # type: ignore[attr-defined]
    assert [a.step for a in run.attempts] == [name, None]
    assert [a.tier for a in run.attempts] == ["big", "small"]
    summary = run.steps[name]
    assert summary.calls == 1
    assert summary.usage == Usage(10, 0, 5)
    # big tier: $10 / $20 per million
    assert summary.cost == Cost(Decimal("0.0001"), Decimal(0), Decimal("0.0001"))
    assert run.totals.calls == 2


def test_generator_step_attributes_its_own_calls_but_not_the_consumers(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.retrieve(tier="small")
    def documents(n: int) -> Iterator[str]:
        for i in range(n):
            yield af.complete(messages=[{"role": "user", "content": f"doc {i}"}]).text

    srv.default = Reply("text", prompt_tokens=10, completion_tokens=2)
    with af.run("gen") as run:
        for _doc in documents(3):
            # the consumer's code runs between the yields: it is not the step's
            af.complete(messages=Q, tier="big")

    name = documents.__agentflow_step__.name  # type: ignore[attr-defined]
    assert run.totals.calls == 6
    assert run.steps[name].calls == 3
    assert [(a.step, a.tier) for a in run.attempts] == [(name, "small"), (None, "big")] * 3
    assert run.steps[name].tiers.keys() == {"small"}


async def test_async_generator_step_attributes_its_own_calls_but_not_the_consumers(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.retrieve(tier="small")
    async def documents(n: int) -> AsyncIterator[str]:
        for i in range(n):
            c = await af.acomplete(messages=[{"role": "user", "content": f"doc {i}"}])
            yield c.text

    srv.default = Reply("text", prompt_tokens=10, completion_tokens=2)
    async with af.run("agen") as run:
        async for _doc in documents(2):
            await af.acomplete(messages=Q, tier="big")

    name = documents.__agentflow_step__.name  # type: ignore[attr-defined]
    assert run.steps[name].calls == 2
    assert [(a.step, a.tier) for a in run.attempts] == [(name, "small"), (None, "big")] * 2


def test_generator_step_send_throw_and_return_value_pass_through() -> None:
    @af.step
    def accumulate() -> Any:
        total = 0
        while True:
            try:
                value = yield total
            except KeyError:
                total = -1
                continue
            if value is None:
                return total
            total += value

    def driver() -> Any:
        return (yield from accumulate())

    gen = driver()
    assert next(gen) == 0
    assert gen.send(5) == 5
    assert gen.send(2) == 7
    assert gen.throw(KeyError("x")) == -1
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == -1


def test_abandoned_generator_step_ends_its_span_without_error(
    spans: InMemorySpanExporter,
) -> None:
    closed = []

    @af.step(name="endless")
    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    gen = endless()
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert closed == [True]
    (span,) = [s for s in spans.get_finished_spans() if s.name == "endless"]
    assert span.status.status_code is not StatusCode.ERROR


# -- exceptions --------------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_exceptions_propagate_and_mark_the_step_span_error(
    spans: InMemorySpanExporter,
) -> None:
    err = Boom("kaput")

    @af.tool(name="sync-fails")
    def sync_fails() -> None:
        raise err

    @af.tool(name="async-fails")
    async def async_fails() -> None:
        raise err

    @af.tool(name="gen-fails")
    def gen_fails() -> Iterator[int]:
        yield 1
        raise err

    @af.tool(name="agen-fails")
    async def agen_fails() -> AsyncIterator[int]:
        yield 1
        raise err

    with af.run("errors") as run:
        with pytest.raises(Boom) as info:
            sync_fails()
        assert info.value is err
        with pytest.raises(Boom) as info:
            await async_fails()
        assert info.value is err
        with pytest.raises(Boom) as info:
            list(gen_fails())
        assert info.value is err
        with pytest.raises(Boom) as info:
            _ = [v async for v in agen_fails()]
        assert info.value is err

    finished = {s.name: s for s in spans.get_finished_spans()}
    for name in ("sync-fails", "async-fails", "gen-fails", "agen-fails"):
        span = finished[name]
        assert span.status.status_code is StatusCode.ERROR, name
        assert "kaput" in (span.status.description or ""), name
        assert any(e.name == "exception" for e in span.events), name
        assert span.attributes[A.AGENTFLOW_STEP_KIND] == "tool"
        assert run.steps[name].invocations == 1
    # the run itself did not fail: the errors were caught inside it
    run_span = finished["run errors"]
    assert run_span.status.status_code is not StatusCode.ERROR


def test_step_state_does_not_leak_after_an_exception(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.plan(tier="big")
    def fails() -> None:
        raise Boom

    with af.run("leak") as run:
        with pytest.raises(Boom):
            fails()
        af.complete(messages=Q)  # no longer in the step: default tier, no step
    assert run.attempts[-1].step is None
    assert _calls(srv)[-1].body["model"] == "small-model"


# -- nesting, run.steps and the report ---------------------------------------------------


def test_nested_steps_roll_up_into_the_parent(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    @af.retrieve(tier="big", name="inner")
    def inner() -> str:
        return af.complete(messages=Q).text

    @af.plan(tier="small", name="outer")
    def outer() -> str:
        first = af.complete(messages=Q).text  # small
        return first + inner()  # big

    srv.script(
        Reply("a", prompt_tokens=100, completion_tokens=10),
        Reply("b", prompt_tokens=200, completion_tokens=20),
    )
    with af.run("nest") as run:
        assert outer() == "ab"

    assert [r.body["model"] for r in _calls(srv)] == ["small-model", "big-model"]
    assert [a.step for a in run.attempts] == ["outer", "inner"]
    assert run.steps["inner"].calls == 1
    assert run.steps["inner"].usage == Usage(200, 0, 20)

    finished = {s.name: s for s in spans.get_finished_spans()}
    outer_span, inner_span = finished["outer"], finished["inner"]
    assert inner_span.parent is not None
    assert inner_span.parent.span_id == outer_span.context.span_id
    # small: 100 * $1/M + 10 * $2/M = $0.00012; big: 200 * $10/M + 20 * $20/M = $0.0024
    assert inner_span.attributes[A.AGENTFLOW_CALLS] == 1
    assert inner_span.attributes[A.AGENTFLOW_COST_TOTAL_USD] == pytest.approx(0.0024)
    assert outer_span.attributes[A.AGENTFLOW_CALLS] == 2
    assert outer_span.attributes[A.AGENTFLOW_TOKENS_PROMPT] == 300
    assert outer_span.attributes[A.AGENTFLOW_TOKENS_COMPLETION] == 30
    assert outer_span.attributes[A.AGENTFLOW_COST_TOTAL_USD] == pytest.approx(0.00252)
    assert run.cost.total_usd == Decimal("0.00252")


def test_run_steps_and_report(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.plan(tier="small", name="planner")
    def planner() -> str:
        return af.complete(messages=Q).text

    @af.verify(tier="big", name="checker")
    def checker() -> str:
        return af.complete(messages=Q).text

    @af.tool(name="no-model")
    def no_model() -> int:
        return 1

    srv.script(
        Reply("p1", prompt_tokens=1000, cached_tokens=500, completion_tokens=100),
        Reply("p2", prompt_tokens=1000, cached_tokens=0, completion_tokens=100),
        Reply("ok", prompt_tokens=50, completion_tokens=1),
    )
    with af.run("report", budget=Budget(max_usd=1)) as run:
        planner()
        planner()
        checker()
        no_model()

    assert list(run.steps) == ["planner", "checker", "no-model"]
    p = run.steps["planner"]
    assert (p.kind, p.invocations, p.calls) == ("planning", 2, 2)
    assert p.usage == Usage(2000, 500, 200)
    # 1500 uncached * $1/M + 500 cached * $0.5/M + 200 out * $2/M
    assert p.cost == Cost(Decimal("0.0015"), Decimal("0.00025"), Decimal("0.0004"))
    assert set(p.tiers) == {"small"}
    c = run.steps["checker"]
    assert (c.kind, c.invocations, c.calls) == ("verification", 1, 1)
    assert c.cost.total_usd == Decimal("0.00052")  # 50 * $10/M + 1 * $20/M
    n = run.steps["no-model"]
    assert (n.kind, n.invocations, n.calls) == ("tool", 1, 0)
    assert n.cost == Cost()

    assert run.cost.total_usd == Decimal("0.00267")
    assert run.usage == Usage(2050, 500, 201)

    report = run.report()
    lines = report.splitlines()
    assert "'report'" in lines[0]
    assert "3 calls" in lines[0]
    assert "$0.002670" in lines[0]
    assert "budget max_usd" in report
    assert "of 1" in report
    planner_row = next(line for line in lines if "planner" in line)
    assert "planning" in planner_row
    assert "small" in planner_row
    assert "$0.002150" in planner_row
    assert "25%" in planner_row  # 500 of 2000 prompt tokens were cached
    checker_row = next(line for line in lines if "checker" in line)
    assert "verification" in checker_row
    assert "big" in checker_row
    assert "$0.000520" in checker_row
    assert any("no-model" in line for line in lines)


def test_steps_work_outside_a_run(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.plan(tier="big")
    def alone() -> str:
        return af.complete(messages=Q).text

    srv.script(Reply("fine"))
    assert alone() == "fine"
    assert _calls(srv)[-1].body["model"] == "big-model"


def test_step_span_carries_kind_and_tier(spans: InMemorySpanExporter) -> None:
    @af.retrieve(tier="small", name="fetch")
    def fetch() -> int:
        return 1

    with af.run("kinds"):
        fetch()
    (span,) = [s for s in spans.get_finished_spans() if s.name == "fetch"]
    assert span.attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] == "RETRIEVER"
    assert span.attributes[A.AGENTFLOW_STEP_NAME] == "fetch"
    assert span.attributes[A.AGENTFLOW_STEP_KIND] == "retrieval"
    assert span.attributes[A.AGENTFLOW_TIER] == "small"


async def test_abandoned_async_generator_step_ends_its_span_without_error(
    spans: InMemorySpanExporter,
) -> None:
    closed = []

    @af.step(name="aendless")
    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    agen = endless()
    assert [await agen.__anext__() for _ in range(2)] == [0, 1]
    await agen.aclose()
    assert closed == [True]
    (span,) = [s for s in spans.get_finished_spans() if s.name == "aendless"]
    assert span.status.status_code is not StatusCode.ERROR


def test_a_run_cannot_be_entered_twice() -> None:
    r = af.run("once")
    with r, pytest.raises(RuntimeError, match="already active"), r:
        pass


def test_calls_outside_any_step_have_a_report_row(zoo: af.ModelZoo) -> None:
    @af.step(tier="small")
    def inside() -> af.Completion:
        return af.complete([{"role": "user", "content": "in a step"}])

    with af.run("rows") as run:
        inside()
        af.complete([{"role": "user", "content": "outside any step"}])
    assert set(run.steps) == {"inside", "(no step)"}
    assert run.steps["(no step)"].calls == 1
    assert sum((s.cost for s in run.steps.values()), Cost()) == run.cost  # rows add up
    assert "(no step)" in run.report()
