"""The field's routing metrics (APGR, CPT, strong-call share, random baseline, bootstrap
intervals) on cases worked out by hand, and the gain rule against the confidence rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentflow.routing import GapMetrics, Outcomes, evaluate, read_outcomes
from agentflow.routing._harness import cascade_curve, router_curve, router_sweep, split_holdout
from agentflow.routing._metrics import Sweep, gap_metrics, random_metrics

# the hand-made outcomes (tests/routing/_hand_made.py), tiers a, b, c at 1, 4, 10 per call:
#   p1 right everywhere, p2 right at b and c, p3 right at c only, p4 right nowhere
# so always a: 1/4 correct (the weak model), always c: 3/4 (the strong one), gap 1/2.
P = np.array(
    [
        [0.9, 0.9, 0.9],
        [0.2, 0.7, 0.9],
        [0.1, 0.3, 0.8],
        [0.5, 0.4, 0.6],
    ]
)


def _two_tier(weak: list[bool], strong: list[bool]) -> Outcomes:
    correct = np.array([weak, strong]).T
    n = len(weak)
    return Outcomes(
        tuple(f"q{i}" for i in range(n)),
        ("weak", "strong"),
        correct,
        np.tile([1.0, 10.0], (n, 1)),
        np.full(correct.shape, np.nan),
    )


def test_apgr_and_cpt_of_a_ranking_worked_by_hand() -> None:
    # weak right on q0 only; strong right on q0, q1, q2: q_w = 1/4, q_s = 3/4
    o = _two_tier([True, False, False, False], [True, True, True, False])
    # the router ranks q1 > q3 > q2 > q0 by the strong model's expected gain
    p = np.array([[0.9, 0.9], [0.1, 0.9], [0.5, 0.6], [0.2, 0.5]])
    m = router_curve(o, p, "r", resamples=0).metrics
    assert isinstance(m, GapMetrics)
    # strong calls 0, 1/4 (q1: +1/4), 2/4 (q3: +0), 3/4 (q2: +1/4), 1 (q0: +0):
    # quality 1/4, 2/4, 2/4, 3/4, 3/4; area above 1/4 = 1/4*(1/8 + 1/4 + 3/8 + 1/2) = 5/16
    assert m.apgr.value == pytest.approx((5 / 16) / (1 / 2))
    assert (m.weak_quality, m.strong_quality) == (0.25, 0.75)
    assert m.cpt[0.5].value == pytest.approx(0.25)  # 1/2 of the gap at the first call
    # 80% of the gap (quality 0.65) between (2/4, 0.5) and (3/4, 0.75): 0.5 + 0.15
    assert m.cpt[0.8].value == pytest.approx(0.65)
    assert m.apgr.low is None
    assert m.resamples == 0


def test_ties_count_as_a_random_split_and_a_constant_router_is_random() -> None:
    o = _two_tier([True, False, False, False], [True, True, True, False])
    m = router_curve(o, np.full((4, 2), 0.5), "constant", resamples=0).metrics
    assert m is not None
    assert m.apgr.value == pytest.approx(0.5)  # the straight line: all prompts tied
    assert m.cpt[0.5].value == pytest.approx(0.5)
    assert m.cpt[0.8].value == pytest.approx(0.8)
    r = random_metrics(0.25, 0.75)
    assert (r.apgr.value, r.cpt[0.5].value, r.cpt[0.8].value, r.exact) == (0.5, 0.5, 0.8, True)


def test_the_cascade_and_a_three_tier_router_on_the_hand_made_data(hand_made: Path) -> None:
    o = read_outcomes(hand_made)
    # cascade, t up: strong (c) calls / quality = 0 / 1/4 (t <= .3), 0 / 2/4 (t in .4-.6:
    # p2 stops at b), 1/4 / 3/4 (t = .8: p3 climbs to c), then 2/4, 3/4, 1 at 3/4.
    # Area above 1/4: 1/4 * (1/4 + 2/4) / 2 + 3/4 * 2/4 = 15/32, over the gap 1/2
    c = cascade_curve(o, resamples=0)
    assert c.metrics is not None
    assert c.metrics.apgr.value == pytest.approx(15 / 16)
    assert c.metrics.cpt[0.5].value == pytest.approx(0.0)  # p2 at b reaches it, no c call
    assert c.metrics.cpt[0.8].value == pytest.approx(0.15)
    assert [p.strong_share for p in c.points] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]
    # the gain rule on P (costs 1, 4, 10): p2 goes to b below 1.67, p3 to c below 0.78,
    # p2 to c below 0.33, p4 below 0.11, p1 below 0: the same curve as the cascade
    r = router_curve(o, P, "gain", resamples=0)
    assert r.metrics is not None
    assert r.metrics.apgr.value == pytest.approx(15 / 16)
    assert [(p.cost, p.quality, p.strong_share) for p in r.points][:3] == [
        (1.0, 0.25, 0.0),
        (1.75, 0.5, 0.0),
        (4.0, 0.75, 0.25),
    ]
    # any threshold where p2 is at b and p3 still at a: below 0.5 per 3/10, above 0.7 per 9/10
    assert 0.7 / 0.9 <= (r.points[1].threshold or 0) < 0.5 / 0.3


def test_ranking_by_gain_beats_the_chance_the_cheap_model_is_right() -> None:
    # half the prompts are hopeless for both models (P low for both), a quarter are
    # where the strong model makes the difference (weak unlikely, strong likely)
    rng = np.random.default_rng(7)
    n = 400
    hopeless = np.arange(n) % 2 == 0
    differs = np.arange(n) % 4 == 1
    p = np.where(hopeless[:, None], [0.1, 0.15], np.where(differs[:, None], [0.3, 0.9], [0.8, 0.9]))
    correct = rng.random((n, 2)) < p
    o = Outcomes(
        tuple(map(str, range(n))),
        ("weak", "strong"),
        correct,
        np.tile([1.0, 10.0], (n, 1)),
        np.full((n, 2), np.nan),
    )
    gain = router_curve(o, p, "gain", rule="gain", resamples=0).metrics
    cheap = router_curve(o, p, "confidence", rule="confidence", resamples=0).metrics
    assert gain is not None
    assert cheap is not None
    assert gain.apgr.value is not None
    assert cheap.apgr.value is not None
    assert gain.apgr.value > cheap.apgr.value + 0.2
    assert gain.cpt[0.8].value is not None
    assert cheap.cpt[0.8].value is not None
    assert gain.cpt[0.8].value < cheap.cpt[0.8].value


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_prompts() -> None:
    rng = np.random.default_rng(0)

    def metrics(n: int) -> GapMetrics:
        weak = rng.random(n) < 0.5
        strong = weak | (rng.random(n) < 0.6)
        score = (strong & ~weak) + rng.normal(0, 0.7, n)  # a noisy but useful router
        o = _two_tier(weak.tolist(), strong.tolist())
        m = router_curve(o, np.stack([-score, score], axis=1) / 10 + 0.5, "r", resamples=300)
        assert m.metrics is not None
        return m.metrics

    small, large = metrics(200), metrics(3000)
    for m in (small, large):
        assert m.resamples == 300
        assert m.apgr.low is not None
        assert m.apgr.high is not None
        assert m.apgr.value is not None
        assert m.apgr.low <= m.apgr.value <= m.apgr.high
        assert 0.5 < m.apgr.value < 1.0
    assert (large.apgr.high or 0) - (large.apgr.low or 0) < (small.apgr.high or 0) - (
        small.apgr.low or 0
    )


def test_a_curve_that_never_gets_there_has_no_cpt_and_no_gap_no_apgr() -> None:
    sweep = Sweep(
        np.array([1.0, 0.0]),
        np.array([[False, False], [True, False]]),
        np.array([[False, False], [True, False]]),
        np.ones((2, 2)),
    )
    weak, strong = np.array([False, False]), np.array([True, True])
    m = gap_metrics(sweep, weak, strong, resamples=0)
    # it ends at quality 1/2 with half the prompts on the strong model: CPT(50%) = 1/2,
    # CPT(80%) is never reached; area: 1/2 * 1/4 + 1/2 * 1/2 over a gap of 1
    assert m.cpt[0.5].value == pytest.approx(0.5)
    assert m.cpt[0.8].value is None
    assert m.apgr.value == pytest.approx(0.375)
    flat = gap_metrics(sweep, strong, strong, resamples=0)
    assert flat.apgr.value is None


def test_evaluate_on_a_held_out_split_scores_every_policy_there(hand_made: Path) -> None:
    o = read_outcomes(hand_made)
    train, test = split_holdout(o, 0.25, seed=3)
    assert len(test.prompts) == 1
    assert len(train.prompts) == 3
    assert set(train.prompts) | set(test.prompts) == set(o.prompts)
    assert split_holdout(o, 0.25, seed=3)[1].prompts == test.prompts  # the seed fixes it
    report = evaluate(o, holdout=0.5, seed=1, kind="knn", resamples=50)
    assert len(report.outcomes.prompts) == 2
    assert report.split.startswith("held-out 50%: 2 prompts, seed 1")
    assert "router (knn, held-out 50%)" in [c.name for c in report.curves]


def test_router_sweep_orders_points_by_rising_strong_calls(hand_made: Path) -> None:
    o = read_outcomes(hand_made)
    for rule in ("gain", "confidence"):
        sweep = router_sweep(o, P, rule=rule)
        shares = sweep.strong.mean(axis=1)
        assert np.all(np.diff(shares) >= 0)
        assert shares[0] == 0.0


def test_the_threshold_to_deploy_for_a_share_of_the_gap(hand_made: Path) -> None:
    report = evaluate(read_outcomes(hand_made), train=_fixed_train, folds=2, resamples=0)
    router = report.curve("router (custom, 2-fold)")
    # half the gap (quality 1/2): p2 at b, cost 1.75; 80% (0.65): p3 at c too, cost 4
    half, most = report.for_gap(router, 0.5), report.for_gap(router, 0.8)
    assert half is not None
    assert most is not None
    assert (half.cost, half.quality, half.strong_share) == (1.75, 0.5, 0.0)
    assert (most.cost, most.quality, most.strong_share) == (4.0, 0.75, 0.25)
    assert 0.7 / 0.9 > (most.threshold or 0) >= 0.2 / 0.6  # p3 to c, p2 not yet
    text = report.render()
    assert "router (custom, 2-fold) at 80%: threshold" in text
    data = report.to_dict()["policies"]
    (entry,) = (p for p in data if p["name"] == "router (custom, 2-fold)")
    assert entry["for_gap"]["80%"]["cost_usd"] == 4.0


class _Given:
    """A trained 'router' that answers P for the hand-made prompts, whatever it saw."""

    tiers = ("a", "b", "c")

    def predict(self, texts: object) -> np.ndarray:
        return np.array([P[int(str(t)[1]) - 1] for t in texts])  # type: ignore[attr-defined]


def _fixed_train(outcomes: Outcomes) -> Any:
    return _Given()
