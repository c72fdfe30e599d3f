"""The harness on a hand-made dataset: every curve, worked out by hand below."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from agentflow.routing import (
    HarnessReport,
    LearnedRouter,
    Outcomes,
    evaluate,
    plot_report,
    read_outcomes,
)
from agentflow.routing._harness import cascade_curve, oracle_point, router_curve, tier_points

# P(correct) a router might give for each prompt and tier (p1..p4, tiers a, b, c)
P = np.array(
    [
        [0.9, 0.9, 0.9],
        [0.2, 0.7, 0.9],
        [0.1, 0.3, 0.8],
        [0.5, 0.4, 0.6],
    ]
)


def _points(curve: object) -> list[tuple[float, float, float | None]]:
    return [(p.cost, p.quality, p.threshold) for p in curve.points]  # type: ignore[attr-defined]


def test_single_tiers_and_the_oracle(hand_made: Path) -> None:
    o = read_outcomes(hand_made)
    assert o.tiers == ("a", "b", "c")  # ordered by mean cost
    assert [(c.name, _points(c)) for c in tier_points(o)] == [
        ("always a", [(1.0, 0.25, None)]),
        ("always b", [(4.0, 0.5, None)]),
        ("always c", [(10.0, 0.75, None)]),
    ]
    # cheapest correct tier: p1 a (1), p2 b (4), p3 c (10); p4 none correct: a (1)
    assert _points(oracle_point(o)) == [(4.0, 0.75, None)]


def test_the_cascade_pays_for_every_tier_it_tries(hand_made: Path) -> None:
    # cumulative cost when stopping at a, b, c: 1, 5, 15
    # t <= 0.3: everyone stops at a                            cost 1,                 1/4
    # t in (0.3, 0.6]: p2 climbs to b (right)                  (1+5+1+1)/4 = 2,        2/4
    # t in (0.6, 0.8]: p3 climbs through b to c (right)        (1+5+15+1)/4 = 5.5,     3/4
    # t in (0.8, 0.9]: p2 climbs on to c                       (1+15+15+1)/4 = 8,      3/4
    # t in (0.9, 0.95]: p1 climbs to c too                     (15+15+15+1)/4 = 11.5,  3/4
    # t in (0.95, 0.99]: p4's overconfident a climbs; no tier  15,                     3/4
    #   reaches t, so its most confident answer (a, 0.95) is kept: still wrong
    # t > 0.99: the same answers (the most confident ones), so no new point
    assert _points(cascade_curve(read_outcomes(hand_made))) == [
        (1.0, 0.25, 0.0),
        (2.0, 0.5, 0.4),
        (5.5, 0.75, 0.8),
        (8.0, 0.75, 0.9),
        (11.5, 0.75, 0.95),
        (15.0, 0.75, 0.99),
    ]


def test_an_unconfident_cascade_keeps_the_most_confident_answer(hand_made: Path) -> None:
    o = read_outcomes(hand_made)
    # c's confidence unknown: at t = 0.95, p3 (a 0.6, b 0.4, c unknown = 0) climbs to c
    # and keeps a's wrong answer; p1 (0.9, 0.9, 0) keeps a (ties go to the cheaper)
    blind_c = o.confidence.copy()
    blind_c[:, 2] = np.nan
    curve = cascade_curve(Outcomes(o.prompts, o.tiers, o.correct, o.cost, blind_c))
    assert (11.5, 0.5, 0.95) in _points(curve)


def test_a_router_routes_to_the_cheapest_tier_it_trusts(hand_made: Path) -> None:
    o = read_outcomes(hand_made)
    # the cheapest tier with P >= t, else the likeliest tier (costs 1, 4, 10):
    # t <= 0.1: all a                                          1,                      1/4
    # t = 0.2: p3 to b (wrong there)                           (1+1+4+1)/4 = 1.75,     1/4
    # t = 0.3: p2 to b (right)                                 (1+4+4+1)/4 = 2.5,      2/4
    # t in (0.3, 0.5]: p3 to c (right)                         (1+4+10+1)/4 = 4,       3/4
    # t in (0.5, 0.7]: p4 to c (wrong everywhere)              (1+4+10+10)/4 = 6.25,   3/4
    # t in (0.7, 0.8]: p2 to c                                 (1+10+10+10)/4 = 7.75,  3/4
    # t > 0.8: p3, p4 trust no tier: their likeliest is c; p1 trusts none above 0.9:
    #   its likeliest is a (0.9, the cheaper of a tie), so no new point
    assert _points(router_curve(o, P, "r", rule="confidence")) == [
        (1.0, 0.25, 0.0),
        (1.75, 0.25, 0.2),
        (2.5, 0.5, 0.3),
        (4.0, 0.75, 0.4),
        (6.25, 0.75, 0.6),
        (7.75, 0.75, 0.8),
    ]


class _Fixed(LearnedRouter):
    """A 'router' that gives each prompt the probabilities of P, whatever it learned."""

    kind = "fixed"
    trained_on: list[tuple[str, ...]] = []  # noqa: RUF012 - a record for the test

    def __init__(self, tiers: Sequence[str]) -> None:
        super().__init__(tiers, 0.5, None)

    @classmethod
    def train(cls, outcomes: Outcomes) -> _Fixed:
        cls.trained_on.append(outcomes.prompts)
        return cls(outcomes.tiers)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([P[int(t[1]) - 1] for t in texts])


def test_evaluate_reports_cost_reduction_and_oracle_share(hand_made: Path) -> None:
    _Fixed.trained_on = []
    report = evaluate(read_outcomes(hand_made), train=_Fixed.train, folds=4)
    assert isinstance(report, HarnessReport)
    # cross-validated: each router was trained on the three other prompts only
    assert len(_Fixed.trained_on) == 4
    assert all(len(prompts) == 3 for prompts in _Fixed.trained_on)
    assert (report.strongest.cost, report.strongest.quality) == (10.0, 0.75)
    assert (report.oracle.cost, report.oracle.quality) == (4.0, 0.75)

    cascade = report.curve("cascade (escalation)")
    router = report.curve("router (custom, 4-fold)")
    # the cheapest point at the strongest tier's quality (3/4): cascade 5.5 at t=0.8,
    # router 4 at t=0.4; oracle saving = 10 - 4 = 6
    assert report.at_quality(cascade) == cascade.points[2]
    assert report.cost_reduction(cascade) == pytest.approx(0.45)
    assert report.oracle_share(cascade) == pytest.approx(0.75)
    assert report.cost_reduction(router) == pytest.approx(0.6)
    assert report.oracle_share(router) == pytest.approx(1.0)
    assert report.cost_reduction(report.curve("oracle")) == pytest.approx(0.6)
    assert report.cost_reduction(report.curve("always a")) is None  # never reaches 3/4
    assert report.references() == [report.strongest]
    assert report.cost_reduction(report.curve("always c")) == 0.0

    text = report.render()
    assert "4 prompts × 3 tiers, cheapest first: a, b, c" in text
    assert "not interpolated" in text
    assert "does not reach that quality" in text  # always a, always b
    *_, best, at_strongest = (
        line.split() for line in text.splitlines() if line.startswith("cascade")
    )
    # its best quality, at what cost, the share of strong calls, threshold
    assert best[-4:] == ["75.0%", "$5.5", "25.0%", "0.8"]
    assert at_strongest[-6:] == ["0.8", "$5.5", "75.0%", "25.0%", "45%", "75%"]


def test_evaluate_with_a_real_router_cross_validates_it(hand_made: Path) -> None:
    report = evaluate(read_outcomes(hand_made), kind="logistic", folds=2)
    names = [c.name for c in report.curves]
    assert names == [
        "always a",
        "always b",
        "always c",
        "cascade (escalation)",
        "router (logistic, 2-fold)",
        "oracle",
    ]
    router = report.curve("router (logistic, 2-fold)")
    # whatever it learned, its curve starts at always-a and stays within the tiers' costs
    assert (router.points[0].cost, router.points[0].quality) == (1.0, 0.25)
    assert all(1.0 <= p.cost <= 10.0 for p in router.points)


def test_without_confidence_there_is_no_cascade(tmp_path: Path, hand_made: Path) -> None:
    o = read_outcomes(hand_made)
    blind = Outcomes(o.prompts, o.tiers, o.correct, o.cost, np.full(o.cost.shape, np.nan))
    report = evaluate(blind, train=_Fixed.train, folds=2)
    assert "cascade (escalation)" not in [c.name for c in report.curves]
    assert any("no confidence" in n for n in report.notes)


def test_a_costlier_tier_that_is_worse_gets_its_own_figures(hand_made: Path) -> None:
    o = read_outcomes(hand_made).ordered(["a", "c", "b"])  # b last, as if it cost the most
    report = evaluate(o, train=_Fixed.train, folds=2)
    assert any("b) is not the most accurate (c is)" in n for n in report.notes)
    strongest, best = report.references()
    assert (strongest.label, best.label) == ("b", "c")
    # at c's quality (3/4) the oracle costs 4 against c's 10
    assert report.cost_reduction(report.curve("oracle"), best) == pytest.approx(0.6)
    assert "At the best single tier's quality (75.0%: always c at $10/prompt)" in report.render()


def test_the_plot_is_a_png_with_every_curve(tmp_path: Path, hand_made: Path) -> None:
    report = evaluate(read_outcomes(hand_made), train=_Fixed.train, folds=2)
    out = plot_report(report, tmp_path / "curve.png", title="hand-made")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
