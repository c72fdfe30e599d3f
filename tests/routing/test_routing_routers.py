"""RuleRouter and the learned routers: choices, the threshold knob, JSON round trips, and
``tier="auto"`` steps routed over a loopback zoo."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import agentflow as af
from agentflow.routing import (
    HashingEmbedder,
    KnnRouter,
    LogisticRouter,
    Outcomes,
    Router,
    Rule,
    RuleRouter,
    load_router,
    train_router,
)
from agentflow.testing import LoopbackServer, Reply

TIERS = ("small", "big")


def _ask(text: str, system: str | None = None) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": text}]


# -- rules ------------------------------------------------------------------------------


def test_the_first_matching_rule_wins() -> None:
    router = RuleRouter(
        rules=[
            Rule("big", min_tokens=200),
            Rule("small", kinds="retrieval"),
            Rule("big", keywords=["prove", "Derive"]),
            Rule("big", regex=r"\d+\s*[*×]\s*\d+"),
            Rule("small", max_chars=12),
        ],
        default="big",
    )
    assert isinstance(router, Router)
    choose = router.choose
    assert choose(_ask("hi " * 300), kind="retrieval", tiers=TIERS) == "big"  # rule 1 first
    assert choose(_ask("prove it"), kind="retrieval", tiers=TIERS) == "small"
    assert choose(_ask("Please DERIVE the formula"), kind="generic", tiers=TIERS) == "big"
    assert choose(_ask("what is 12 * 7"), kind="generic", tiers=TIERS) == "big"
    assert choose(_ask("hello there"), kind="generic", tiers=TIERS) == "small"
    assert choose(_ask("a longer message here"), kind="generic", tiers=TIERS) == "big"
    assert router.explain(_ask("hello there")) == (4, "small")
    assert router.explain(_ask("a longer message here")) == (None, "big")


def test_length_rules_count_the_whole_prompt_keywords_only_the_user() -> None:
    router = RuleRouter([Rule("big", min_chars=100), Rule("big", keywords="secret")])
    long_system = "You are careful. " * 10
    # chars: the system prompt counts; keywords: only user text does
    assert router.choose(_ask("hi", long_system), kind="generic", tiers=TIERS) == "big"
    assert router.choose(_ask("hi", "secret"), kind="generic", tiers=TIERS) == "small"
    assert router.choose(_ask("a SECRET"), kind="generic", tiers=TIERS) == "big"


def test_no_default_means_the_cheapest_tier_and_unknown_tiers_fail() -> None:
    assert (
        RuleRouter([Rule("big", max_tokens=1)]).choose(
            _ask("many words here"), kind="tool", tiers=("tiny", "big")
        )
        == "tiny"
    )
    router = RuleRouter([Rule("huge", kinds=["tool"])])
    with pytest.raises(af.UnknownTierError, match="RuleRouter rule 1") as info:
        router.choose(_ask("x"), kind="tool", tiers=TIERS)
    assert info.value.valid == TIERS


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Rule("big"), "has no condition"),
        (lambda: Rule("big", kinds="thinking"), "'planning', 'retrieval'"),
        (lambda: Rule("big", regex="(unclosed"), "does not compile"),
        (lambda: Rule("big", min_tokens=10, max_tokens=5), "minimum is above the maximum"),
        (lambda: Rule("big", max_chars=-1), "whole number >= 0"),
        (lambda: Rule("", keywords="x"), "needs a tier name"),
        (lambda: Rule("big", keywords=[]), "non-empty string"),
        (lambda: RuleRouter(["big"]), "takes Rule objects"),  # type: ignore[list-item]
    ],
)
def test_bad_rules_fail_when_built(make: Any, expected: str) -> None:
    with pytest.raises(af.ConfigError) as info:
        make()
    assert expected in str(info.value)


def test_a_rule_router_round_trips_through_json(tmp_path: Path) -> None:
    router = RuleRouter(
        [Rule("big", min_tokens=50, kinds=["planning"]), Rule("big", regex=r"(?i)proof")],
        default="small",
    )
    router.save(tmp_path / "rules.json")
    assert json.loads((tmp_path / "rules.json").read_text())["kind"] == "rules"
    loaded = load_router(tmp_path / "rules.json")
    assert isinstance(loaded, RuleRouter)
    assert loaded.rules == router.rules
    assert loaded.default == "small"
    assert loaded.choose(_ask("a Proof"), kind="generic", tiers=TIERS) == "big"


# -- learned routers --------------------------------------------------------------------


def _outcomes(n: int = 40) -> Outcomes:
    """small gets facts right and sums wrong; big gets both right at 10x the cost."""
    prompts, correct = [], []
    for i in range(n):
        if i % 2:
            prompts.append(f"What is {i} plus {i + 3}?")
            correct.append((False, True))
        else:
            prompts.append(f"Which city is the capital of country number {i}?")
            correct.append((True, True))
    c = np.array(correct)
    return Outcomes(
        tuple(prompts),
        TIERS,
        c,
        np.tile([1.0, 10.0], (n, 1)),
        np.full(c.shape, np.nan),
    )


@pytest.mark.parametrize("kind", ["knn", "logistic"])
def test_a_learned_router_sends_each_prompt_to_the_cheapest_tier_it_trusts(kind: str) -> None:
    router = train_router(_outcomes(), kind)
    assert router.pick(
        ["What is 5 plus 8?", "Which city is the capital of country number 99?"]
    ) == [
        "big",
        "small",
    ]
    p = router.predict(["What is 5 plus 8?"])[0]
    assert p[0] < 0.5 < p[1]
    assert router.choose(_ask("What is 7 plus 2?"), kind="generic", tiers=TIERS) == "big"


def test_the_gain_threshold_trades_cost_for_quality() -> None:
    router = train_router(_outcomes(), "knn")  # the gain rule, priced 1 and 10 per call
    texts = ["What is 5 plus 8?", "Which city is the capital of country number 99?"]
    p = router.predict(texts)
    gain = p[:, 1] - p[:, 0]  # what big adds, for 9/10 of its price
    assert router.threshold == 0.1
    assert router.with_threshold(0.0).pick(texts) == [TIERS[int(i)] for i in p.argmax(axis=1)]
    assert router.with_threshold(2.0).pick(texts) == ["small", "small"]  # nothing worth 2x
    middle = float(gain.mean() / 0.9)  # between the sum's gain and the fact's
    assert gain[1] / 0.9 < middle < gain[0] / 0.9
    assert router.with_threshold(middle).pick(texts) == ["big", "small"]


def test_the_confidence_threshold_trades_cost_for_quality() -> None:
    router = train_router(_outcomes(), "knn", rule="confidence")
    texts = ["What is 5 plus 8?", "Which city is the capital of country number 99?"]
    assert router.with_threshold(0.0).pick(texts) == ["small", "small"]  # always cheapest
    assert router.with_threshold(0.99).pick(texts) == ["big", "big"]  # trusts no one: big
    # above 1 no tier is trusted: each prompt goes to its likeliest tier
    likeliest = [TIERS[int(np.argmax(p))] for p in router.predict(texts)]
    assert router.with_threshold(1.01).pick(texts) == likeliest
    assert router.threshold == 0.5  # with_threshold leaves the original alone
    with pytest.raises(af.ConfigError, match="threshold must be a number >= 0"):
        router.with_threshold(-0.1)


def test_choose_uses_only_tiers_the_zoo_has() -> None:
    router = train_router(_outcomes(), "knn")
    # the zoo has no "big": the router's own choice among what exists
    assert router.choose(_ask("What is 1 plus 2?"), kind="generic", tiers=("small",)) == "small"
    with pytest.raises(af.ConfigError, match="none of which is in the zoo"):
        router.choose(_ask("x"), kind="generic", tiers=("other",))


@pytest.mark.parametrize("kind", ["knn", "logistic"])
def test_learned_routers_round_trip_through_json(tmp_path: Path, kind: str) -> None:
    router = train_router(_outcomes(), kind, threshold=0.6)
    path = tmp_path / "router.json"
    router.save(path)
    data = json.loads(path.read_text())
    assert (data["format"], data["kind"], data["tiers"]) == ("agentflow-router", kind, list(TIERS))
    loaded = load_router(path)
    assert type(loaded) is type(router)
    assert isinstance(loaded, KnnRouter | LogisticRouter)
    assert loaded.threshold == 0.6
    texts = ["What is 11 plus 4?", "Which city is the capital of country number 3?", "hello"]
    assert np.allclose(loaded.predict(texts), router.predict(texts), atol=1e-5)


def test_a_custom_embedder_must_be_given_again_at_load(tmp_path: Path) -> None:
    def embed(texts: Sequence[str]) -> list[list[float]]:
        return [[float("plus" in t), float("capital" in t), 1.0] for t in texts]

    router = train_router(_outcomes(), "knn", embedder=embed, k=3, threshold=0.2)
    assert router.pick(["3 plus 4"]) == ["big"]
    router.save(tmp_path / "r.json")
    with pytest.raises(af.ConfigError, match="custom embedder"):
        load_router(tmp_path / "r.json")
    loaded = load_router(tmp_path / "r.json", embedder=embed)
    assert isinstance(loaded, KnnRouter)
    assert loaded.pick(["the capital"]) == ["small"]


def test_the_hashing_embedder_is_deterministic_and_unit_length() -> None:
    e = HashingEmbedder(dim=64)
    a, b = e(["Hello world", "hello   WORLD"]), e(["Hello world"])
    assert a.shape == (2, 64)
    assert np.allclose(a[0], a[1])  # case and spacing do not matter
    assert np.allclose(a[0], b[0])
    assert np.linalg.norm(a[0]) == pytest.approx(1.0)
    assert np.allclose(e([""]), 0.0)


def test_bad_router_files_say_what_they_are(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(af.ConfigError, match="not an agentflow router file"):
        load_router(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("not json")
    with pytest.raises(af.ConfigError, match="not JSON"):
        load_router(tmp_path / "y.json")
    with pytest.raises(af.ConfigError, match="unknown router kind 'forest'"):
        train_router(_outcomes(), "forest")


# -- tier="auto" steps (the pipeline calls router.choose) --------------------------------


def test_an_auto_step_follows_its_rule_router(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    router = RuleRouter([Rule("big", keywords="prove")], default="small")

    @af.step(tier="auto", router=router)
    def answer(question: str) -> af.Completion:
        return af.complete(messages=_ask(question))

    srv.script(Reply("done"))
    srv.script(Reply("done"))
    assert answer("Prove that 2 is prime").tier == "big"
    assert answer("Say hi").tier == "small"
    assert [r.body["model"] for r in srv.requests if r.body] == ["big-model", "small-model"]


def test_the_configured_router_serves_every_auto_step(
    zoo: af.ModelZoo, srv: LoopbackServer, tmp_path: Path
) -> None:
    train_router(_outcomes(), "knn").save(tmp_path / "router.json")
    af.configure(router=load_router(tmp_path / "router.json"))

    @af.plan(tier="auto")
    def answer(question: str) -> af.Completion:
        return af.complete(messages=_ask(question))

    assert answer("What is 17 plus 20?").tier == "big"
    assert answer("Which city is the capital of country number 8?").tier == "small"
