"""Hit rate and wrong-hit rate of the semantic cache per threshold, with and without the
hit guard, on a public paraphrase benchmark (MRPC) with the real embedder.

    python benchmarks/bench_semantic_threshold.py --mrpc msr_paraphrase_test.txt
        [--thresholds 0.70:1.00:0.01] [--json out.json]

``--mrpc``: the Microsoft Research Paraphrase Corpus test split (1,725 pairs: 1,147
paraphrases, 578 not), the tab-separated file ``msr_paraphrase_test.txt`` its download
and many public repositories carry (columns Quality, #1 ID, #2 ID, #1 String, #2 String).
It is not shipped with agentflow.

Each pair is one cache entry (sentence 1) and one lookup (sentence 2): at threshold t a
paraphrase whose cosine similarity is >= t is a hit, a non-paraphrase >= t is a wrong
hit. With the guard (``agentflow.cache.hit_conflict``, its default checks: numbers and
negation) a hit also needs the two texts to agree on those. Printed: the curve, per
setting the threshold with the highest hit rate at no more than 1% wrong hits, and the
same for each guard check alone and for all of them (thresholds in steps of half
``--thresholds``' step).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from agentflow.cache import hit_conflict
from agentflow.cache._semantic_guard import DEFAULT_GUARD, GUARD_CHECKS
from agentflow.embedders import LocalEmbedder


def read_mrpc(path: Path) -> list[tuple[str, str, bool]]:
    pairs = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            pairs.append((row["#1 String"], row["#2 String"], row["Quality"].strip() == "1"))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mrpc", type=Path, required=True)
    parser.add_argument("--thresholds", default="0.70:1.00:0.01")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    pairs = read_mrpc(args.mrpc)
    labels = np.array([p[2] for p in pairs])
    embedder = LocalEmbedder(trace=False)
    t0 = time.perf_counter()
    a = embedder([p[0] for p in pairs])
    b = embedder([p[1] for p in pairs])
    elapsed = time.perf_counter() - t0
    sims = (a * b).sum(axis=1)
    reasons = [hit_conflict(p[1], p[0], DEFAULT_GUARD) for p in pairs]
    passed = np.array([r is None for r in reasons])
    lo, hi, step = (float(x) for x in args.thresholds.split(":"))
    thresholds = np.round(np.arange(lo, hi + 1e-9, step), 4)
    pos, neg = labels.sum(), (~labels).sum()
    print(
        f"# MRPC test: {len(pairs)} pairs ({pos} paraphrases, {neg} not); "
        f"{embedder.name}; embedded {2 * len(pairs)} sentences in {elapsed:.1f} s\n"
    )
    print("| threshold | hit rate | wrong-hit rate | hit rate, guarded | wrong-hit rate, guarded |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for t in thresholds:
        hit = sims >= t
        row = {
            "threshold": float(t),
            "hit_rate": float((hit & labels).sum() / pos),
            "wrong_hit_rate": float((hit & ~labels).sum() / neg),
            "hit_rate_guarded": float((hit & passed & labels).sum() / pos),
            "wrong_hit_rate_guarded": float((hit & passed & ~labels).sum() / neg),
        }
        rows.append(row)
        print(
            f"| {t:.2f} | {row['hit_rate']:.3f} | {row['wrong_hit_rate']:.3f} | "
            f"{row['hit_rate_guarded']:.3f} | {row['wrong_hit_rate_guarded']:.3f} |"
        )
    print()
    best = {}
    for name, hit_key, wrong_key in (
        ("no guard", "hit_rate", "wrong_hit_rate"),
        ("guard", "hit_rate_guarded", "wrong_hit_rate_guarded"),
    ):
        ok = [r for r in rows if r[wrong_key] <= 0.01]
        if not ok:
            print(f"- {name}: no threshold keeps wrong hits at or under 1%")
            continue
        choice = max(ok, key=lambda r: (r[hit_key], -r["threshold"]))
        best[name] = choice
        print(
            f"- {name}: threshold {choice['threshold']:.2f} gives {choice[hit_key]:.1%} hits on "
            f"paraphrases and {choice[wrong_key]:.1%} wrong hits"
        )
    print("\n| guard checks | paraphrases rejected | non-paraphrases rejected | best threshold "
          "| hit rate | wrong-hit rate |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    variants = [(), *((c,) for c in GUARD_CHECKS), DEFAULT_GUARD, GUARD_CHECKS]
    for checks in variants:
        clean = np.array([hit_conflict(p[1], p[0], checks) is None for p in pairs])
        found = None
        for t in np.round(np.arange(lo, hi + 1e-9, step / 2), 4):
            hit = sims >= t
            h, w = (hit & clean & labels).sum() / pos, (hit & clean & ~labels).sum() / neg
            if w <= 0.01 and (found is None or h > found[1]):
                found = (t, h, w)
        cells = "| - | - | - |" if found is None else (
            f"| {found[0]:.3f} | {found[1]:.1%} | {found[2]:.2%} |"
        )  # fmt: skip
        print(
            f"| {', '.join(checks) or 'none'} | {int((~clean & labels).sum())} | "
            f"{int((~clean & ~labels).sum())} {cells}"
        )
    counts = Counter(r for r in reasons if r is not None)
    print(
        "\nguard rejections (all pairs): "
        + ", ".join(f"{k} {v}" for k, v in counts.most_common())
        + f"; of paraphrases {int((~passed & labels).sum())}, "
        f"of non-paraphrases {int((~passed & ~labels).sum())}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"curve": rows, "best": best}, indent=1))


if __name__ == "__main__":
    main()
