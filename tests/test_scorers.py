"""The confidence scorers: each one alone, their combinations, judge and agreement over a
scripted loopback zoo, bad inputs, and escalation through a step with each of them."""

from __future__ import annotations

import asyncio
import inspect
import math
import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

import agentflow as af
from agentflow import _scoring, scorers
from agentflow.testing import LoopbackServer, Reply
from budgets import Cost, Usage

Q = [{"role": "user", "content": "What is the capital of France?"}]


def _completion(
    text: str = "Paris", logprobs: list[float] | None = None, **kw: Any
) -> af.Completion:
    fields: dict[str, Any] = {
        "text": text,
        "message": {"role": "assistant", "content": text},
        "tier": "small",
        "model": "small-model",
        "endpoint": "openai/small-model@test",
        "usage": Usage(10, 0, 2),
        "cost": Cost(),
        "logprobs": logprobs,
    }
    fields.update(kw)
    return af.Completion(**fields)


def _bodies(srv: LoopbackServer, model: str) -> list[dict[str, Any]]:
    return [
        r.body
        for r in srv.requests
        if r.path.endswith("/chat/completions") and r.body.get("model") == model
    ]


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    """The missing-logprobs warning is once per endpoint per process: reset it."""
    _scoring.reset_warnings()
    yield
    _scoring.reset_warnings()


# -- logprobs ---------------------------------------------------------------------------


def test_logprob_is_the_geometric_mean_and_logprob_min_the_least_likely_token() -> None:
    c = _completion("Paris is it", logprobs=[-0.1, -0.3, -0.2])
    assert scorers.logprob()(c) == pytest.approx(math.exp(-0.2))
    assert scorers.logprob_min()(c) == pytest.approx(math.exp(-0.3))
    # the strings are the same scorers
    assert _scoring.as_scorer("logprob")(c) == pytest.approx(math.exp(-0.2))
    assert _scoring.as_scorer("logprob_min")(c) == pytest.approx(math.exp(-0.3))


def test_logprob_scorer_reads_what_a_real_engine_answer_carries(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("Paris surely", logprobs=[-0.05, -0.15]))
    c = af.complete(messages=Q, logprobs=True)
    assert c.logprobs == pytest.approx([-0.05, -0.15])
    assert scorers.logprob()(c) == pytest.approx(math.exp(-0.1))


def test_missing_logprobs_score_none_and_warn_once_per_endpoint() -> None:
    a = _completion("Paris", logprobs=None, endpoint="openai/m@http://a")
    b = _completion("Paris", logprobs=[], endpoint="openai/m@http://b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert scorers.logprob()(a) is None
        assert scorers.logprob_min()(a) is None  # same endpoint: no second warning
        assert scorers.logprob()(b) is None
    messages = [str(w.message) for w in caught if w.category is scorers.MissingLogprobsWarning]
    assert len(messages) == 2
    assert "openai/m@http://a" in messages[0]
    assert "unconfident" in messages[0]
    assert "openai/m@http://b" in messages[1]


def test_an_empty_answer_or_a_cache_hit_without_logprobs_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scorers.logprob()(_completion("", logprobs=None)) is None
        assert scorers.logprob()(_completion("Paris", cache_hit=True)) is None


# -- verifier, schema -------------------------------------------------------------------


def test_verifier_takes_sync_and_async_functions_floats_and_bools() -> None:
    async def async_check(c: af.Completion) -> float:
        await asyncio.sleep(0)
        return 0.25

    c = _completion("Paris")
    assert scorers.verifier(lambda c: "Paris" in c.text)(c) == 1.0
    assert scorers.verifier(lambda c: False)(c) == 0.0
    assert scorers.verifier(async_check)(c) == 0.25
    # through the pipeline's contract: a value, or an awaitable in either mode
    escalate = af.Escalate(scorer=async_check)
    value = _scoring.as_scorer(escalate.scorer).start(c, use_async=False)
    assert inspect.isawaitable(value)
    assert _scoring.finish_score(asyncio.run(value)) == 0.25


class City(BaseModel):
    city: str
    population: int


def test_schema_scores_whether_the_answer_parses() -> None:
    check = scorers.schema(City)
    assert check(_completion('{"city": "Paris", "population": 2100000}')) == 1.0
    assert check(_completion('{"city": "Paris"}')) == 0.0  # population missing
    assert check(_completion("Paris, about two million")) == 0.0
    parsed = City(city="Lyon", population=5)
    assert check(_completion("not even looked at", parsed=parsed)) == 1.0
    assert check(_completion("{}", parsed={"city": "Lyon", "population": 5})) == 1.0


# -- judge ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        ("8", 0.8),
        ("8/10", 0.8),
        ("Grade: 7", 0.7),
        ("7.5 - mostly right", 0.75),
        ("4 out of 5", 0.8),
        ("85%", 0.85),
        ("10", 1.0),
        ("0", 0.0),
        ("Yes", 1.0),
        ("Incorrect.", 0.0),
        ("not correct", 0.0),
        ("The answer is correct.", 1.0),
        ("banana", None),
        ("", None),
        ("42", None),  # out of the 0-10 scale and no verdict
    ],
)
def test_parse_grade(reply: str, grade: float | None) -> None:
    parsed = scorers.parse_grade(reply)
    assert parsed == (None if grade is None else pytest.approx(grade))


def test_judge_asks_the_judge_tier_and_reads_its_grade(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    answer = _completion("Lyon")
    judge = scorers.judge(tier="big")
    srv.script(Reply("2"), Reply("I cannot grade this"), model="big-model")

    assert judge(answer, Q) == pytest.approx(0.2)
    assert judge(answer, Q) is None  # an unparseable verdict counts as unconfident

    first = _bodies(srv, "big-model")[0]
    assert (first["temperature"], first["max_tokens"]) == (0.0, 16)
    system, user = first["messages"]
    assert system["role"] == "system"
    assert "0 to 10" in system["content"]
    assert "What is the capital of France?" in user["content"]
    assert "Lyon" in user["content"]
    assert judge.tiers() == ("big",)
    assert not judge.needs_logprobs


async def test_judge_uses_acomplete_in_the_async_driver(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("9/10"), model="big-model")
    value = scorers.judge(tier="big").start(_completion("Paris"), use_async=True, messages=Q)
    assert inspect.iscoroutine(value)
    assert await value == pytest.approx(0.9)


def test_judge_with_its_own_prompt_and_parser(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("PASS"), model="big-model")
    judge = scorers.judge(
        tier="big",
        prompt="Is {answer!r} a city? Say PASS or FAIL.",
        parse=lambda text: text.strip() == "PASS",
    )
    assert judge(_completion("Paris"), Q) == 1.0
    (body,) = _bodies(srv, "big-model")
    assert body["messages"] == [{"role": "user", "content": "Is 'Paris' a city? Say PASS or FAIL."}]


# -- agreement --------------------------------------------------------------------------


def test_agreement_samples_the_answers_tier_and_counts_who_agrees(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("paris."), Reply("Lyon"), model="small-model")
    score = scorers.agreement(n=3, temperature=0.9)(_completion("Paris"), Q)
    assert score == pytest.approx(2 / 3)  # Paris, paris. (normalised) and Lyon
    bodies = _bodies(srv, "small-model")
    assert len(bodies) == 2  # n - 1 extra samples
    assert all(b["messages"] == Q and b["temperature"] == 0.9 for b in bodies)
    assert all(b["max_tokens"] == 2 * 2 + 16 for b in bodies)  # twice the answer, plus room


async def test_agreement_async_samples_concurrently(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("The answer is 12"), Reply("12"), Reply("13"), model="big-model")
    scorer = scorers.agreement(n=4, normalize="number")
    value = scorer.start(_completion("12.", tier="big"), use_async=True, messages=Q)
    assert await value == pytest.approx(3 / 4)
    assert len(_bodies(srv, "big-model")) == 3


def test_agreement_without_the_request_says_what_it_needs() -> None:
    with pytest.raises(af.AgentflowError, match="needs the request's messages"):
        scorers.agreement()(_completion("Paris"))


# -- combinations -----------------------------------------------------------------------


def _const(value: float | None) -> scorers.FunctionScorer:
    return scorers.verifier(lambda c: value)


def test_all_of_is_the_min_any_of_the_max_weighted_the_mean() -> None:
    c = _completion("Paris")
    assert scorers.all_of(_const(0.9), _const(0.4), _const(0.7))(c) == 0.4
    assert scorers.any_of(_const(0.2), _const(0.6), _const(0.5))(c) == 0.6
    assert scorers.weighted({_const(1.0): 0.75, _const(0.2): 0.25})(c) == pytest.approx(0.8)
    assert scorers.weighted([(_const(0.5), 1), (_const(0.5), 1)])(c) == pytest.approx(0.5)


def test_unknown_scores_in_combinations() -> None:
    c = _completion("Paris")
    assert scorers.all_of(_const(0.9), _const(None))(c) is None  # unknown: unconfident
    assert scorers.any_of(_const(None), _const(0.3))(c) == 0.3
    assert scorers.any_of(_const(None), _const(None))(c) is None
    assert scorers.weighted({_const(None): 0.5, _const(1.0): 0.5})(c) == 0.5  # None counts 0


def test_all_of_stops_at_the_first_zero_so_a_costly_judge_is_not_paid(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    combined = scorers.all_of(lambda c: "Paris" in c.text, scorers.judge(tier="big"))
    assert combined(_completion("Lyon"), Q) == 0.0
    assert _bodies(srv, "big-model") == []
    srv.script(Reply("9"), model="big-model")
    assert combined(_completion("Paris"), Q) == pytest.approx(0.9)
    # any_of stops at the first 1.0
    assert scorers.any_of(lambda c: True, scorers.judge(tier="big"))(_completion("x"), Q) == 1.0
    assert len(_bodies(srv, "big-model")) == 1


def test_a_combination_with_an_async_part_is_awaitable_in_the_sync_driver() -> None:
    async def slow(c: af.Completion) -> float:
        return 0.5

    combined = scorers.all_of(_const(0.9), slow, "logprob")
    c = _completion("a b", logprobs=[-0.1, -0.1])
    value = combined.start(c, use_async=False, messages=Q)
    assert inspect.isawaitable(value)
    assert asyncio.run(_await(value)) == 0.5
    assert combined(c) == 0.5
    assert asyncio.run(_await(combined.start(c, use_async=True))) == 0.5


async def _await(value: Any) -> Any:
    return await value


def test_needs_logprobs_sees_into_combinations() -> None:
    nl = _scoring.needs_logprobs
    assert nl("logprob")
    assert nl("logprob_min")
    assert nl(scorers.logprob())
    assert nl(scorers.logprob_min())
    assert not nl(lambda c: 1.0)
    assert not nl(scorers.judge(tier="big"))
    assert nl(scorers.all_of(scorers.schema(City), scorers.any_of(lambda c: 0.0, "logprob")))
    assert nl(scorers.weighted({"logprob_min": 0.5, scorers.judge(tier="big"): 0.5}))
    assert not nl(scorers.all_of(scorers.schema(City), scorers.agreement()))
    assert _scoring.scorer_tiers(
        scorers.any_of(scorers.judge(tier="big"), scorers.all_of(scorers.judge(tier="x")))
    ) == ("big", "x")


# -- bad inputs -------------------------------------------------------------------------


def _message(make: Any) -> str:
    with pytest.raises(af.ConfigError) as info:
        make()
    return str(info.value)


def test_an_unknown_scorer_name_lists_the_valid_ones() -> None:
    message = _message(lambda: af.Escalate(scorer="confidence"))
    for option in ("'logprob'", "'logprob_min'", "judge(tier=...)", "agreement(", "all_of("):
        assert option in message


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: af.Escalate(scorer=42), "got int 42"),
        (lambda: af.Escalate(scorer=lambda c, extra: 1.0), "cannot be called with the Completion"),
        (lambda: scorers.all_of(), "needs at least one scorer"),
        (lambda: scorers.any_of("logprob", "nope"), "any_of() scorer 2: unknown scorer 'nope'"),
        (lambda: scorers.weighted({"logprob": 1.5}), "must be in [0, 1], got 1.5"),
        (lambda: scorers.weighted({"logprob": -0.1}), "must be in [0, 1]"),
        (lambda: scorers.weighted({"logprob": 0}), "at least one weight above 0"),
        (lambda: scorers.weighted({}), "needs at least one scorer"),
        (lambda: scorers.weighted(["logprob"]), "(scorer, weight) pairs"),
        (lambda: scorers.judge(tier=""), "needs the name of a zoo tier"),
        (lambda: scorers.judge(tier="big", prompt="Grade {reply}"), "{answer}"),
        (lambda: scorers.judge(tier="big", prompt="no fields"), "{answer}"),
        (lambda: scorers.agreement(n=1), "n >= 2"),
        (lambda: scorers.agreement(temperature=0), "above 0"),
        (lambda: scorers.agreement(normalize="fuzzy"), "'text', 'number', 'exact'"),
        (lambda: scorers.schema(dict), "pydantic model class"),  # type: ignore[arg-type]
        (lambda: scorers.verifier("logprob"), "got str"),  # type: ignore[arg-type]
    ],
)
def test_bad_scorers_fail_when_built_with_the_valid_options(make: Any, expected: str) -> None:
    assert expected in _message(make)


def test_finish_score_rejects_out_of_range_values() -> None:
    assert _scoring.finish_score(True) == 1.0
    assert _scoring.finish_score(0) == 0.0
    assert _scoring.finish_score(None) is None
    for bad in (1.5, -0.1, math.nan, "0.5"):
        with pytest.raises(af.ConfigError, match="bool or a float in"):
            _scoring.finish_score(bad)


# -- through a step (the pipeline wires these in) ---------------------------------------


def test_a_judge_scorer_escalates_a_step_and_its_calls_are_paid(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.verify(
        tier="small",
        escalate=af.Escalate(min_confidence=0.7, scorer=scorers.judge(tier="big")),
    )
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Lyon", prompt_tokens=10, completion_tokens=1), model="small-model")
    srv.script(
        Reply("2", prompt_tokens=40, completion_tokens=1),  # the judge on Lyon
        Reply("Paris", prompt_tokens=10, completion_tokens=1),  # big answers
        Reply("9", prompt_tokens=40, completion_tokens=1),  # the judge on Paris
        model="big-model",
    )
    with af.run("judged") as run:
        c = answer()

    assert (c.text, c.tier, c.confident) == ("Paris", "big", True)
    assert [(a.tier, a.confidence) for a in c.attempts] == [
        ("small", pytest.approx(0.2)),
        ("big", pytest.approx(0.9)),
    ]
    judge_prompts = [b["messages"][-1]["content"] for b in _bodies(srv, "big-model")]
    assert "Lyon" in judge_prompts[0]
    assert "Paris" in judge_prompts[2]
    # the judge's calls never escalate or ask for logprobs themselves
    assert all("logprobs" not in b for b in _bodies(srv, "big-model"))
    # small 10*1 + 1*2; big answer 10*10 + 1*20; two judge calls (40*10 + 1*20) each
    assert run.cost.total_usd == Decimal("0.000972")


def test_the_judge_sees_the_steps_question(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.verify(tier="small", escalate=af.Escalate(scorer=scorers.judge(tier="big")))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris"), model="small-model")
    srv.script(Reply("10"), model="big-model")
    c = answer()
    assert c.confidence == 1.0
    (judge_call,) = _bodies(srv, "big-model")
    assert "What is the capital of France?" in judge_call["messages"][-1]["content"]


def test_a_logprob_scorer_object_asks_for_logprobs(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.verify(
        tier="small",
        escalate=af.Escalate(
            min_confidence=0.8, scorer=scorers.all_of(scorers.logprob_min(), lambda c: True)
        ),
    )
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris maybe", logprobs=[-0.01, -2.0]), model="small-model")
    srv.script(Reply("Paris", logprobs=[-0.01]), model="big-model")
    c = answer()
    assert c.tier == "big"
    assert [a.confidence for a in c.attempts] == pytest.approx([math.exp(-2.0), math.exp(-0.01)])
    assert all(b.get("logprobs") is True for b in _bodies(srv, "small-model"))


def test_an_engine_without_logprobs_climbs_and_warns(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.5))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris", logprobs=False), model="small-model")
    srv.script(Reply("Paris", logprobs=[-0.01]), model="big-model")
    with pytest.warns(scorers.MissingLogprobsWarning, match="small-model"):
        c = answer()
    assert c.tier == "big"
    assert c.attempts[0].confidence is None


def test_agreement_through_a_step_resamples_the_steps_request(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    @af.verify(
        tier="small",
        escalate=af.Escalate(min_confidence=0.6, scorer=scorers.agreement(n=3)),
    )
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris"), Reply("Paris"), Reply("Lyon"), model="small-model")
    c = answer()
    assert (c.tier, c.confidence) == ("small", pytest.approx(2 / 3))
    samples = _bodies(srv, "small-model")[1:]
    assert [b["messages"] for b in samples] == [Q, Q]
    assert all(b["temperature"] == 0.7 for b in samples)


async def test_an_async_step_with_a_judge(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    @af.verify(tier="small", escalate=af.Escalate(scorer=scorers.judge(tier="big")))
    async def answer() -> af.Completion:
        return await af.acomplete(messages=Q)

    srv.script(Reply("Paris"), model="small-model")
    srv.script(Reply("yes"), model="big-model")
    c = await answer()
    assert (c.tier, c.confidence) == ("small", 1.0)


def test_a_scorer_that_raises_makes_the_answer_unconfident(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    def broken(c: af.Completion) -> float:
        raise RuntimeError("verifier crashed")

    @af.verify(tier="small", escalate=af.Escalate(scorer=broken, up_to="small"))
    def answer() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris"), model="small-model")
    c = answer()
    assert c.confident is False
    assert c.attempts[0].confidence is None

    @af.verify(tier="small", escalate=af.Escalate(scorer=broken, on_scorer_error="raise"))
    def strict() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("Paris"), model="small-model")
    with pytest.raises(af.ScorerError, match="verifier crashed"):
        strict()


# -- the import surface -----------------------------------------------------------------


def test_scorers_export_exactly_their_public_names() -> None:
    names = list(scorers.__all__)
    assert names == sorted(set(names), key=lambda n: (not n[:1].isupper(), n))
    assert all(getattr(scorers, n) is not None for n in names)


def test_importing_agentflow_and_its_scorers_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, agentflow, agentflow.scorers\n"
        "heavy = [m for m in ('litellm', 'numpy', 'matplotlib', 'agentflow.routing') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import agentflow.routing\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
