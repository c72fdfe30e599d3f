"""``threshold_curve`` and ``agentflow cache threshold``: a semantic cache's threshold
chosen from labelled pairs with the real embedder (``af.LocalEmbedder``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agentflow as af
from agentflow.cache import LabelledPair, read_pairs, threshold_curve
from agentflow.cli import main

# questions a support step sees, beside a cached one: same answer or not
PAIRS = [
    ("How do I reset my password?", "How can I reset my password?", True),
    ("How do I change my password?", "How can I reset my password?", True),
    ("What are your opening hours?", "When are you open?", True),
    ("When does the store open?", "What time do you open?", True),
    ("How do I cancel my subscription?", "How can I cancel my subscription?", True),
    ("Can I get a refund?", "How do I get my money back?", True),
    ("Where is my order?", "How can I track my order?", True),
    ("Do you ship to Canada?", "Can you deliver to Canada?", True),
    ("How do I delete my account?", "How can I remove my account?", True),
    ("Is there a student discount?", "Do students get a discount?", True),
    ("How long does shipping take?", "How many days is delivery?", True),
    ("What payment methods do you accept?", "Which ways can I pay?", True),
    ("Do you ship to Canada?", "Do you ship to Mexico?", False),
    ("Can I return an item after 30 days?", "Can I return an item after 60 days?", False),
    ("Can I pay with PayPal?", "Can I not pay with PayPal?", False),
    ("How do I reset my password?", "How do I reset my router?", False),
    ("What are your opening hours?", "What are your shipping costs?", False),
    ("How do I cancel my subscription?", "How do I upgrade my subscription?", False),
    ("Is there a student discount?", "Is there a senior discount?", False),
    ("Where is my order?", "Where is your head office?", False),
    ("How do I delete my account?", "How do I create an account?", False),
    ("Can I get a refund?", "Can I get an invoice?", False),
    ("How long does shipping take?", "How much does shipping cost?", False),
    ("Do you sell gift cards?", "Do you accept gift cards?", False),
]


@pytest.fixture(scope="module")
def embedder() -> af.LocalEmbedder:
    return af.LocalEmbedder(trace=False)


def _pairs() -> list[LabelledPair]:
    return [LabelledPair(q, c, same) for q, c, same in PAIRS]


def test_the_chosen_threshold_has_the_most_hits_within_the_wrong_hit_rate(
    embedder: af.LocalEmbedder,
) -> None:
    curve = threshold_curve(_pairs(), embedder)
    assert (curve.pairs, curve.same, curve.guard) == (24, 12, ("numbers", "negation"))
    # a higher threshold never hits more, right or wrong
    for lower, higher in zip(curve.rows, curve.rows[1:], strict=False):
        assert higher.hit_rate <= lower.hit_rate
        assert higher.wrong_hit_rate <= lower.wrong_hit_rate
    assert curve.rows[0].wrong_hit_rate > 0  # 0.70 lets some near misses through
    for max_wrong in (0.0, 1 / 12, 0.25):
        chosen = curve.choose(max_wrong)
        assert chosen is not None
        assert chosen.wrong_hit_rate <= max_wrong
        assert chosen.hit_rate == max(
            r.hit_rate for r in curve.rows if r.wrong_hit_rate <= max_wrong
        )
    assert curve.choose(0.0).hit_rate > 0  # type: ignore[union-attr]


def test_the_guard_takes_out_the_number_and_negation_near_misses(
    embedder: af.LocalEmbedder,
) -> None:
    near_misses = [
        LabelledPair(
            "Can I return an item after 30 days?", "Can I return an item after 60 days?", False
        ),
        LabelledPair("Can I pay with PayPal?", "Can I not pay with PayPal?", False),
        LabelledPair("How do I reset my password?", "How can I reset my password?", True),
    ]
    unguarded = threshold_curve(near_misses, embedder, guard="none", thresholds=[0.8])
    guarded = threshold_curve(near_misses, embedder, guard="default", thresholds=[0.8])
    assert unguarded.rows[0].wrong_hit_rate == 1.0  # the embedding alone serves both
    assert guarded.rows[0].wrong_hit_rate == 0.0
    assert guarded.rows[0].hit_rate == 1.0


def test_the_cli_reads_a_file_and_prints_the_curve_and_the_choice(
    embedder: af.LocalEmbedder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"question": q, "cached": c, "same": s}) + "\n" for q, c, s in PAIRS)
    )
    assert read_pairs(path) == _pairs()
    assert main(["cache", "threshold", str(path), "--json", "--max-wrong", "0.1"]) == 0
    got = json.loads(capsys.readouterr().out)
    expected = threshold_curve(_pairs(), embedder).to_dict(0.1)
    assert got["chosen"] == pytest.approx(expected["chosen"])
    assert len(got["curve"]) == len(expected["curve"]) == 61  # 0.700 to 1.000 by 0.005
    assert got["embedder"] == expected["embedder"]

    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(
        "question,cached,same\n"
        + "".join(f'"{q}","{c}",{"yes" if s else "no"}\n' for q, c, s in PAIRS)
    )
    assert main(["cache", "threshold", str(csv_path), "--max-wrong", "0.1"]) == 0
    out = capsys.readouterr().out
    assert f"threshold={got['chosen']['threshold']:g})" in out
    assert "24 pairs (12 same, 12 different)" in out


def test_bad_pairs_are_refused_saying_what_each_row_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.csv"
    missing.write_text("question,answer\nHi?,Hello\n")
    assert main(["cache", "threshold", str(missing), "--embedder", "hashing"]) == 2
    err = capsys.readouterr().err
    assert "row 1 has no cached, same" in err
    assert "question, cached, same" in err

    one_kind = tmp_path / "same.jsonl"
    one_kind.write_text(json.dumps({"question": "a?", "cached": "b?", "same": 1}) + "\n")
    assert main(["cache", "threshold", str(one_kind), "--embedder", "hashing"]) == 2
    assert "must hold both kinds" in capsys.readouterr().err

    label = tmp_path / "label.jsonl"
    label.write_text(json.dumps({"question": "a?", "cached": "b?", "same": "maybe"}) + "\n")
    with pytest.raises(af.ConfigError, match="'same' must be 1/0"):
        read_pairs(label)
    with pytest.raises(af.ConfigError, match="unknown guard check"):
        threshold_curve(_pairs(), lambda texts: [[1.0]] * len(texts), guard=["colour"])
    assert main(["cache", "threshold", str(label), "--thresholds", "0.9"]) == 2
    assert "--thresholds takes LO:HI:STEP" in capsys.readouterr().err
