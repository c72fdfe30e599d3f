"""RouteLLM's per-query outcome CSVs through ``read_routellm_csv`` and ``agentflow route
train / eval``: several files, globs, renamed model columns, a contamination list, prices
per call or per million tokens (labelled as such), and ``--json``."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from agentflow.cli import main
from agentflow.routing import (
    KnnRouter,
    OutcomesError,
    load_router,
    read_contamination,
    read_routellm_csv,
)
from budgets import TokenCounter, TokenPricing

OLD = "mixtral-8x7b-instruct-v0.1"  # the column's name when the docs were written
NEW = "mistralai/Mixtral-8x7B-Instruct-v0.1"  # its name in today's files
GPT = "gpt-4-1106-preview"


def _rows(domain: str, n: int = 12) -> list[tuple[str, bool, bool, str, str]]:
    """(prompt, weak right, strong right, weak answer, strong answer): sums only the
    strong model gets right, facts both get right, riddles neither does."""
    rows = []
    for i in range(n):
        if i % 3 == 0:
            rows.append(
                (f"[{domain}] Compute {i} * 17 + {i + 3}.\nAnswer:", False, True, "12", "42")
            )
        elif i % 3 == 1:
            rows.append((f"[{domain}] Name the capital of place {i}.", True, True, "A", "A"))
        else:
            rows.append((f"[{domain}] An unsolvable riddle, number {i}?", False, False, "?", "?"))
    return rows


def _write(path: Path, weak: str, rows: list[tuple[str, bool, bool, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", weak, GPT, f"{weak}_response", f"{GPT}_response"])
        for prompt, ok_w, ok_s, a_w, a_s in rows:
            w.writerow([prompt, ok_w, ok_s, a_w, a_s])
    return path


@pytest.fixture
def mmlu(tmp_path: Path) -> Path:
    """Three 'domains' in RouteLLM's layout: two with today's Mixtral column, one with
    the old name, and a contamination list."""
    folder = tmp_path / "responses"
    folder.mkdir()
    _write(folder / "mmlu_algebra.csv", NEW, _rows("algebra"))
    _write(folder / "mmlu_anatomy.csv", NEW, _rows("anatomy"))
    _write(folder / "mmlu_old.csv", OLD, _rows("old"))
    contaminated = [{"eval_prompt": _rows("anatomy")[0][0], "train_prompt": "x", "eval_idx": 0}]
    (tmp_path / "contaminated_prompts.jsonl").write_text(
        "\n".join(json.dumps(r) for r in contaminated) + "\n"
    )
    return tmp_path


def test_several_files_by_glob_or_by_name_read_as_one_set(mmlu: Path) -> None:
    by_glob = read_routellm_csv(mmlu / "responses" / "mmlu_*.csv")
    by_name = read_routellm_csv(sorted((mmlu / "responses").glob("*.csv")))
    assert len(by_glob.prompts) == len(by_name.prompts) == 36
    assert by_glob.prompts == by_name.prompts
    assert by_glob.tiers == (NEW, GPT)  # the first file's spelling, cheapest first
    assert by_glob.correct[:, 1].sum() == 24
    assert "read 3 files, 36 prompts" in by_glob.notes
    # the same file given twice counts once
    twice = read_routellm_csv([mmlu / "responses" / "mmlu_algebra.csv"] * 2)
    assert len(twice.prompts) == 12


def test_gzip_compressed_csvs_read_like_plain_ones(mmlu: Path, tmp_path: Path) -> None:
    plain = mmlu / "responses" / "mmlu_algebra.csv"
    packed = tmp_path / "mmlu_algebra.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_routellm_csv(plain), read_routellm_csv(packed)
    assert (a.prompts, a.tiers, a.correct.tolist()) == (b.prompts, b.tiers, b.correct.tolist())
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(plain.read_bytes())[:40])
    with pytest.raises(OutcomesError, match=r"cannot read .*broken\.csv\.gz"):
        read_routellm_csv(broken)


def test_renamed_model_columns_are_found_under_either_name(mmlu: Path) -> None:
    # the tiers are named as asked, whatever the file calls them
    old_only = read_routellm_csv(mmlu / "responses" / "mmlu_old.csv", models=[NEW, GPT])
    assert old_only.tiers == (NEW, GPT)
    assert old_only.correct[:, 1].sum() == 8
    new_only = read_routellm_csv(mmlu / "responses" / "mmlu_algebra.csv", models=[OLD, GPT])
    assert new_only.tiers == (OLD, GPT)
    # without models, the first file's spelling names them
    assert read_routellm_csv(mmlu / "responses" / "mmlu_old.csv").tiers == (OLD, GPT)
    with pytest.raises(OutcomesError, match="no column for model 'llama-3'"):
        read_routellm_csv(mmlu / "responses" / "mmlu_old.csv", models=["llama-3", GPT])


def test_files_of_different_model_pairs_are_refused(mmlu: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("prompt,llama-3,gpt-4o\nq,True,False\n")
    with pytest.raises(OutcomesError, match=f"other.csv: no column for model '{NEW}'"):
        read_routellm_csv([mmlu / "responses" / "mmlu_algebra.csv", other])
    with pytest.raises(OutcomesError, match="matches no file"):
        read_routellm_csv(tmp_path / "nothing_*.csv")


def test_the_contamination_list_leaves_prompts_out(mmlu: Path, tmp_path: Path) -> None:
    listed = mmlu / "contaminated_prompts.jsonl"
    assert read_contamination(listed) == {_rows("anatomy")[0][0]}
    o = read_routellm_csv(mmlu / "responses" / "*.csv", contaminated=listed)
    assert len(o.prompts) == 35
    assert _rows("anatomy")[0][0] not in o.prompts
    assert "contamination list: left out 1 of 36 prompts" in o.notes
    plain = tmp_path / "list.json"
    plain.write_text(json.dumps([_rows("old")[1][0], _rows("old")[2][0]]))
    assert len(read_routellm_csv(mmlu / "responses" / "*.csv", contaminated=plain).prompts) == 34
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"train_prompt": "only"}\n')
    with pytest.raises(OutcomesError, match=":1: expected a JSON object with 'eval_prompt'"):
        read_contamination(bad)


def test_prices_per_million_tokens_count_prompt_and_answer_tokens(mmlu: Path) -> None:
    path = mmlu / "responses" / "mmlu_algebra.csv"
    o = read_routellm_csv(
        path,
        prices={
            NEW: TokenPricing(input_per_mtok=1, output_per_mtok=3),
            GPT: TokenPricing(input_per_mtok=10, output_per_mtok=30),
        },
    )
    count = TokenCounter.for_model(GPT).count_text
    prompt, *_, weak_answer, strong_answer = _rows("algebra")[0]
    assert o.prompts[0] == prompt
    assert o.cost[0, 0] == pytest.approx((count(prompt) * 1 + count(weak_answer) * 3) / 1e6)
    assert o.cost[0, 1] == pytest.approx((count(prompt) * 10 + count(strong_answer) * 30) / 1e6)
    assert any("$1/$3 per million input/output tokens" in n for n in o.notes)
    per_call = read_routellm_csv(path, {NEW: 0.001, GPT: 0.02})
    assert per_call.cost[:, 1].tolist() == [0.02] * 12
    assert f"{GPT}: $0.02 per call" in per_call.notes
    # RouteLLM's pair is priced out of the box, per million tokens, and says so
    built_in = read_routellm_csv(path)
    assert any("(built-in)" in n and "per million" in n for n in built_in.notes)
    assert built_in.cost[0, 1] == pytest.approx((count(prompt) + count(strong_answer)) * 24.7 / 1e6)


def test_without_answers_output_tokens_are_given_or_left_out(tmp_path: Path) -> None:
    path = tmp_path / "mmlu_x.csv"  # RouteLLM's MMLU files have no answer columns
    path.write_text(f"prompt,{NEW},{GPT}\nWhat is 2 + 2?,True,True\n")
    tokens = TokenCounter.for_model(GPT).count_text("What is 2 + 2?")
    bare = read_routellm_csv(path)
    assert bare.cost[0, 1] == pytest.approx(tokens * 24.7 / 1e6)
    assert any("prompt only" in n and "--output-tokens" in n for n in bare.notes)
    padded = read_routellm_csv(path, output_tokens=5)
    assert padded.cost[0, 1] == pytest.approx((tokens + 5) * 24.7 / 1e6)


def test_route_eval_json_has_the_fields_metrics(
    mmlu: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "route",
        "eval",
        "--csv",
        str(mmlu / "responses" / "mmlu_a*.csv"),
        "--csv",
        str(mmlu / "responses" / "mmlu_old.csv"),
        "--contaminated",
        str(mmlu / "contaminated_prompts.jsonl"),
        "--embedder",
        "hashing",
        "--folds",
        "3",
        "--resamples",
        "100",
        "--rule",
        "both",
        "--json",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "source",
        "prompts",
        "tiers",
        "weak",
        "strong",
        "split",
        "cost_unit",
        "random",
        "policies",
        "notes",
    }
    assert (report["prompts"], report["weak"], report["strong"]) == (35, NEW, GPT)
    assert report["cost_unit"] == "USD per prompt"
    assert report["random"]["apgr"] == {"value": 0.5, "low": None, "high": None}
    assert report["random"]["cpt80"]["value"] == 0.8
    names = [p["name"] for p in report["policies"]]
    assert names == [
        f"always {NEW}",
        f"always {GPT}",
        "router (knn, 3-fold)",
        "router (knn, 3-fold, by P(cheap right))",
        "oracle",
    ]
    router = report["policies"][2]
    metrics = router["metrics"]
    assert {"apgr", "cpt50", "cpt80", "weak_quality", "strong_quality"} <= set(metrics)
    assert metrics["bootstrap_resamples"] == 100
    apgr = metrics["apgr"]
    assert apgr["low"] <= apgr["value"] <= apgr["high"]
    assert metrics["strong_quality"] == pytest.approx(23 / 35)
    point = router["points"][0]
    assert set(point) == {"cost_usd", "quality", "strong_share", "threshold"}
    assert router["points"][0]["strong_share"] == 0.0
    assert router["points"][-1]["strong_share"] == 1.0
    assert router["at_quality_of"][GPT]["cost_reduction"] is not None
    assert any("contamination list: left out 1" in n for n in report["notes"])


def test_route_eval_text_labels_prices_and_shows_the_metrics(
    mmlu: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["route", "eval", "--csv", str(mmlu / "responses" / "*.csv"), "--embedder", "hashing"]
    priced = [*common, "--price", f"{NEW}=0.24/0.24", "--price", f"{GPT}=10/30"]
    assert main([*priced, "--holdout", "0.5", "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "(held-out 50%: 18 prompts, seed 0; router trained on the other 18)" in out
    assert f"{GPT}: $10/$30 per million input/output tokens, on the tokens of each" in out
    assert "at USD/prompt" in out
    assert "$ per prompt" not in out
    assert re.search(r"^random router \(expected\) +0\.500 +50\.0% +80\.0%$", out, re.M)
    assert "APGR" in out
    assert "CPT(50%)" in out
    assert "CPT(80%)" in out
    assert main([*common, "--cost", f"{NEW}=0.001", "--cost", f"{GPT}=0.03"]) == 0
    assert f"{GPT}: $0.03 per call" in capsys.readouterr().out
    assert main(["route", "eval", "--data", str(mmlu / "x.jsonl"), "--price", "a=1"]) == 1
    assert "apply to --csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--price", f"{GPT}=ten"])
    assert "--price takes MODEL=USD_PER_MILLION_TOKENS" in capsys.readouterr().err


def test_route_train_reads_the_csvs_with_the_real_embedder(
    mmlu: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "router.json"
    args = ["route", "train", "--csv", str(mmlu / "responses" / "*.csv"), "--out", str(out)]
    assert main([*args, "--contaminated", str(mmlu / "contaminated_prompts.jsonl")]) == 0
    said = capsys.readouterr().out
    assert f"trained a knn router on 35 prompts × 2 tiers ({NEW}, {GPT})" in said
    assert "rule gain, threshold 0.1" in said
    router = load_router(out)
    assert isinstance(router, KnnRouter)
    assert router.rule == "gain"
    assert router.costs is not None
    assert router.costs[0] < router.costs[1]
    data = json.loads(out.read_text())
    assert data["embedder"]["kind"] == "local"  # af.LocalEmbedder, saved with the router
    # the sums go to the strong model, the facts and the riddles stay on the weak one
    assert router.pick(["[new] Compute 4 * 17 + 7.\nAnswer:"]) == [GPT]
    assert router.pick(["[new] Name the capital of place 40."]) == [NEW]
    args = ["route", "eval", "--csv", str(mmlu / "responses" / "mmlu_old.csv")]
    assert main([*args, "--router", str(out), "--resamples", "20"]) == 0
    assert "router (knn, as given)" in capsys.readouterr().out
