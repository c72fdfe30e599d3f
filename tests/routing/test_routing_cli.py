"""``agentflow route train`` / ``route eval`` through ``agentflow.cli.main``, the readers
of agentflow's JSONL (bad rows) and of RouteLLM's evaluation CSVs, and the shipped sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _hand_made import hand_made_rows, write_jsonl

from agentflow.cli import main
from agentflow.routing import (
    SAMPLE_OUTCOMES,
    KnnRouter,
    OutcomesError,
    evaluate,
    load_router,
    read_outcomes,
    read_routellm_csv,
)

# the shape of routellm/evals/mmlu/responses/*.csv and gsm8k_responses.csv: quoted
# multi-line prompts, True/False per model, optional <model>_response columns
ROUTELLM_CSV = """prompt,mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview,gpt-4-1106-preview_response
"Which of the following is a prime number?
A. 4
B. 7
Answer:",False,True,"B. 7"
"The capital of France is
A. Paris
B. Rome
Answer:",True,True,"A"
"Solve: 2 + 2 = ?",True,False,"5"
"""


def test_route_eval_prints_the_figures_and_draws_the_png(
    hand_made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "curve.png"
    assert (
        main(["route", "eval", "--data", str(hand_made), "--folds", "2", "--plot", str(png)]) == 0
    )
    out = capsys.readouterr().out
    assert "4 prompts × 3 tiers, cheapest first: a, b, c" in out
    *_, cascade = (line for line in out.splitlines() if line.startswith("cascade"))
    assert cascade.split()[-2:] == ["45%", "75%"]  # cost cut, share of the oracle's saving
    assert "router (knn, 2-fold)" in out
    assert f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_route_train_writes_a_router_that_eval_and_load_router_read(
    hand_made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "router.json"
    args = ["route", "train", "--data", str(hand_made), "--out", str(out), "--k", "2"]
    assert main([*args, "--threshold", "0.7"]) == 0
    assert "trained a knn router on 4 prompts × 3 tiers (a, b, c)" in capsys.readouterr().out
    router = load_router(out)
    assert isinstance(router, KnnRouter)
    assert (router.k, router.threshold) == (2, 0.7)
    assert main(["route", "eval", "--data", str(hand_made), "--router", str(out)]) == 0
    text = capsys.readouterr().out
    assert "router (knn, as given)" in text
    assert "not trained on these prompts" in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prompt": "q", "tier": "a", "cost": 1}', ":2: missing 'correct'"),
        (
            '{"prompt": "q", "tier": "a", "correct": "yes", "cost": 1}',
            ":2: 'correct' must be true or false",
        ),
        (
            '{"prompt": "q", "tier": "a", "correct": true, "cost": -1}',
            ":2: 'cost' must be in [0, inf]",
        ),
        (
            '{"prompt": "q", "tier": "a", "correct": true, "cost": 1, "confidence": 2}',
            "'confidence' must be in [0, 1]",
        ),
        (
            '{"prompt": "", "tier": "a", "correct": true, "cost": 1}',
            "'prompt' must be a non-empty string",
        ),
        ("[1, 2]", ":2: a row must be a JSON object"),
        ("{oops", ":2: not JSON"),
    ],
)
def test_bad_rows_are_named_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, expected: str
) -> None:
    good = json.dumps({"prompt": "p", "tier": "a", "correct": True, "cost": 1})
    path = write_jsonl(tmp_path / "bad.jsonl", [good, line])
    assert main(["route", "eval", "--data", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentflow route eval: ")
    assert f"{path}{expected}" in err or expected in err


def test_every_prompt_needs_every_tier(tmp_path: Path) -> None:
    rows = hand_made_rows()
    rows = [r for r in rows if not (r["prompt"] == "p3 hard" and r["tier"] == "b")]
    with pytest.raises(OutcomesError, match="'p3 hard' has no row for tier\\(s\\) b"):
        read_outcomes(write_jsonl(tmp_path / "o.jsonl", rows))
    with pytest.raises(OutcomesError, match="a second row for tier 'a'"):
        read_outcomes(write_jsonl(tmp_path / "d.jsonl", [*hand_made_rows(), hand_made_rows()[1]]))


def test_routellm_csv_is_read_with_default_or_given_costs(tmp_path: Path) -> None:
    path = tmp_path / "mmlu.csv"
    path.write_text(ROUTELLM_CSV)
    o = read_routellm_csv(path)
    assert o.tiers == ("mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview")  # cheapest first
    assert o.prompts[0].startswith("Which of the following is a prime number?\nA. 4")
    assert o.correct.tolist() == [[False, True], [True, True], [True, False]]
    # priced per million tokens (RouteLLM's pair is built in): the prompt's tokens, and
    # the answer's where the file has it (gpt-4's "B. 7" is 4 tokens)
    assert o.cost[0].tolist() == pytest.approx([21 * 0.24e-6, (21 + 4) * 24.7e-6])
    assert not o.has_confidence
    report = evaluate(o, folds=3)
    assert report.oracle.quality == 1.0
    assert any("no confidence" in n for n in report.notes)
    cheap = read_routellm_csv(path, {"gpt-4-1106-preview": 1e-9})  # USD per call
    assert cheap.tiers[0] == "gpt-4-1106-preview"


def test_routellm_csv_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unknown = tmp_path / "u.csv"
    unknown.write_text("prompt,weak,strong\nq1,True,False\nq2,False,True\n")
    with pytest.raises(OutcomesError, match="no price for model 'weak'"):
        read_routellm_csv(unknown)
    args = ["route", "eval", "--csv", str(unknown), "--cost", "weak=1", "--cost", "strong=30"]
    assert main([*args, "--folds", "2", "--embedder", "hashing"]) == 0
    assert "2 prompts × 2 tiers, cheapest first: weak, strong" in capsys.readouterr().out
    bad = tmp_path / "b.csv"
    bad.write_text('prompt,weak\n"multi\nline",True\nq2,maybe\n')
    with pytest.raises(OutcomesError, match=":4: column 'weak' is 'maybe'"):
        read_routellm_csv(bad, {"weak": 1})
    noprompt = tmp_path / "n.csv"
    noprompt.write_text("question,weak\nq,True\n")
    with pytest.raises(OutcomesError, match="no 'prompt' column"):
        read_routellm_csv(noprompt, {"weak": 1})
    with pytest.raises(SystemExit) as usage:  # argparse rejects the option itself
        main(["route", "eval", "--csv", str(bad), "--cost", "weak"])
    assert usage.value.code == 2
    assert "--cost takes MODEL=USD_PER_CALL" in capsys.readouterr().err


def test_route_without_a_subcommand_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route"]) == 2
    assert "train" in capsys.readouterr().out


def test_the_shipped_sample_is_real_and_readable() -> None:
    o = read_outcomes(SAMPLE_OUTCOMES)
    assert len(o.prompts) >= 60
    assert set(o.tiers) >= {"smollm2", "gemma3-270m"}
    assert o.has_confidence
    assert np.all(o.cost > 0)
    rows = [json.loads(line) for line in SAMPLE_OUTCOMES.read_text().splitlines()]
    assert {"answer", "expected", "tokens"} <= set(rows[0])
