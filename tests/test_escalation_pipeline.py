"""Escalation and routing in the pipeline: scorers that raise, scorers that call models,
and ``tier="auto"``, against a scripted loopback server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
from agentflow.testing import LoopbackServer, Reply

Q = [{"role": "user", "content": "What is the capital of France?"}]


def _models(srv: LoopbackServer) -> list[str | None]:
    return [r.model for r in srv.requests if r.path.endswith("/chat/completions")]


# -- a scorer that raises ------------------------------------------------------------------


def test_a_scorer_that_raises_makes_the_answer_unconfident_and_is_on_the_span(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    calls: list[str] = []

    def flaky(c: af.Completion) -> float:
        calls.append(c.tier)
        if c.tier == "small":
            raise RuntimeError("the grader is down")
        return 0.9

    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.8, scorer=flaky))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Lyon"), Reply("Paris"))
    c = answer()
    assert (c.text, c.tier, c.confident) == ("Paris", "big", True)
    first, second = c.attempts
    assert first.confidence is None
    assert first.error is not None
    assert "the grader is down" in first.error
    assert second.confidence == 0.9
    llm = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert len(llm) == 2
    events = [e for e in llm[0].events if e.name == "exception"]
    assert events
    assert "the grader is down" in str((events[0].attributes or {}).get("exception.message"))


def test_a_step_can_ask_a_raising_scorer_to_raise(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    def broken(c: af.Completion) -> float:
        raise KeyError("label")

    @af.verify(
        tier="small",
        escalate=af.Escalate(scorer=broken, on_scorer_error="raise"),
    )
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris"))
    with af.run("r") as run, pytest.raises(af.ScorerError, match="KeyError") as info:
        answer()
    assert isinstance(info.value.__cause__, KeyError)
    assert run.totals.calls == 1  # the answer was paid for and attributed, not lost
    assert run.cost.total_usd > 0


async def test_an_async_scorer_that_raises_climbs_too(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    async def flaky(c: af.Completion) -> bool:
        if c.tier == "small":
            raise TimeoutError("judge timed out")
        return True

    @af.verify(tier="small", escalate=af.Escalate(scorer=flaky))
    async def answer() -> af.Completion:
        return await af.acomplete(messages=Q)

    srv.script(Reply("Lyon"), Reply("Paris"))
    c = await answer()
    assert (c.tier, c.confident) == ("big", True)


# -- a scorer that calls a model -----------------------------------------------------------


def test_calls_a_scorer_makes_never_escalate_or_recurse(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    def judge(c: af.Completion) -> float:
        verdict = af.complete(
            messages=[{"role": "user", "content": f"Grade 0-10: {c.text}"}], tier="small"
        )
        return int(verdict.text) / 10

    @af.verify(
        tier="small",
        cache="exact",
        escalate=af.Escalate(min_confidence=0.8, scorer=judge),
    )
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    # answer (small), judge (small) says 3 -> climb; answer (big), judge (small) says 9
    srv.script(Reply("Lyon"), Reply("3"), Reply("Paris"), Reply("9"))
    with af.run("r") as run:
        c = answer()
    assert (c.text, c.tier, c.confidence) == ("Paris", "big", 0.9)
    assert _models(srv) == ["small-model", "small-model", "big-model", "small-model"]
    # the judge's calls are paid for and attributed to the run, like any other call
    assert run.totals.calls == 4
    assert len(c.attempts) == 2


# -- tier="auto" ------------------------------------------------------------------------------


class LengthRouter:
    """Short prompts to the cheapest tier, long ones to the strongest."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, ...]]] = []

    def choose(
        self, messages: Sequence[Mapping[str, Any]], *, kind: str, tiers: Sequence[str]
    ) -> str:
        self.seen.append((kind, tuple(tiers)))
        text = " ".join(str(m.get("content")) for m in messages)
        return tiers[0] if len(text) < 60 else tiers[-1]


def test_auto_tier_asks_the_steps_router(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    router = LengthRouter()

    @af.plan(tier="auto", router=router)
    def plan(question: str) -> af.Completion:
        return af.complete(messages=[{"role": "user", "content": question}])

    srv.default = Reply("ok")
    short = plan("Capital of France?")
    long = plan("Compare the economic histories of France and Germany since 1870 in detail.")
    assert (short.tier, long.tier) == ("small", "big")
    assert router.seen[0] == ("planning", ("small", "big"))
    llm = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert {(s.attributes or {}).get("agentflow.route.router") for s in llm} == {"LengthRouter"}


def test_auto_tier_uses_the_configured_router(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    af.configure(router=LengthRouter())

    @af.step(tier="auto")
    def ask(question: str) -> af.Completion:
        return af.complete(messages=[{"role": "user", "content": question}])

    srv.default = Reply("ok")
    assert ask("hi").tier == "small"


def test_auto_tier_without_a_router_says_how_to_set_one(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.step(tier="auto")
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    with pytest.raises(af.ConfigError, match="router"):
        ask()
    assert _models(srv) == []


def test_a_router_naming_an_unknown_tier_is_a_clear_error(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    class Typo:
        def choose(self, messages: Any, *, kind: str, tiers: Sequence[str]) -> str:
            return "smal"

    @af.step(tier="auto", router=Typo())
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    with pytest.raises(af.UnknownTierError, match="router Typo") as info:
        ask()
    assert info.value.valid == ("small", "big")


def test_router_needs_auto_and_a_choose_method(zoo: af.ModelZoo) -> None:
    def f() -> None: ...

    with pytest.raises(af.ConfigError, match="tier='auto'"):
        af.step(tier="small", router=LengthRouter())(f)
    with pytest.raises(af.ConfigError, match="choose"):
        af.step(tier="auto", router=object())(f)
    with pytest.raises(af.ConfigError, match="choose"):
        af.configure(router=object())


def test_auto_routing_then_escalation(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    class Cheap:
        def choose(self, messages: Any, *, kind: str, tiers: Sequence[str]) -> str:
            return tiers[0]

    @af.step(
        tier="auto",
        router=Cheap(),
        escalate=af.Escalate(min_confidence=0.5, scorer=lambda c: c.tier == "big"),
    )
    def ask() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Lyon"), Reply("Paris"))
    c = ask()
    assert (c.tier, [a.tier for a in c.attempts]) == ("big", ["small", "big"])
