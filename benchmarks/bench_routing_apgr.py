"""APGR / CPT of agentflow's learned routers on RouteLLM's public outcome files.

    python benchmarks/bench_routing_apgr.py [--evals PATH/TO/routellm/evals] \
        [--seeds 0 1 2 3 4] [--cache DIR] [--embedder local|hashing]

``--evals`` is a copy of RouteLLM's ``routellm/evals`` folder (``gsm8k/gsm8k_responses.csv``,
``mmlu/responses/mmlu_*.csv`` and their ``contaminated_prompts.jsonl``); by default the
copy vendored in ``tests/data/routellm`` (gzip-compressed, see its README). For each
benchmark and seed it holds out 20% of the prompts, trains kNN (k by leave-one-out
calibration), logistic and matrix-factorisation routers on the rest with
``af.LocalEmbedder`` vectors, and prints APGR, CPT(50%) and CPT(80%) on the held-out
prompts with 95% bootstrap intervals, for the gain rule and for the chance-the-cheap-
model-is-right rule, next to the RouteLLM paper's best. Vectors come from
``CachedEmbedder`` in ``--cache`` (default: the cache vendored with the data, so a run
takes seconds; another directory is filled on the first run, minutes for MMLU).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agentflow.routing import (
    CachedEmbedder,
    HashingEmbedder,
    KnnRouter,
    LogisticRouter,
    MfRouter,
    read_routellm_csv,
)
from agentflow.routing._harness import router_curve, split_holdout

VENDORED = Path(__file__).parent.parent / "tests" / "data" / "routellm"
PAPER_BEST = {"gsm8k": 0.622, "mmlu": 0.603}  # RouteLLM (Ong et al., 2024), best router
FILES = {
    "gsm8k": ("gsm8k/gsm8k_responses.csv*", "gsm8k/contaminated_prompts.jsonl"),
    "mmlu": ("mmlu/responses/mmlu_*.csv*", "mmlu/contaminated_prompts.jsonl"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--evals", type=Path, default=VENDORED)
    parser.add_argument("--benchmarks", nargs="+", default=["gsm8k", "mmlu"], choices=FILES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--embedder", choices=("local", "hashing"), default="local")
    parser.add_argument("--cache", type=Path, default=VENDORED / "embeddings")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    if args.embedder == "local":
        from agentflow.embedders import LocalEmbedder

        inner: object = LocalEmbedder()
    else:
        inner = HashingEmbedder()
    embedder = CachedEmbedder(inner, args.cache)  # type: ignore[arg-type]
    print(f"embedder: {inner!r}, cache {embedder.path}")
    for name in args.benchmarks:
        csvs, contaminated = FILES[name]
        outcomes = read_routellm_csv(args.evals / csvs, contaminated=args.evals / contaminated)
        q = outcomes.correct.mean(axis=0)
        print(
            f"\n{name}: {len(outcomes.prompts)} prompts after decontamination; "
            f"{outcomes.tiers[0]} {q[0]:.1%}, {outcomes.tiers[1]} {q[1]:.1%}; "
            f"RouteLLM paper's best APGR {PAPER_BEST[name]}"
        )
        started = time.perf_counter()
        embedder(outcomes.prompts)
        print(f"  embedded in {time.perf_counter() - started:.0f} s")
        seen: dict[tuple[str, str], list[float]] = {}
        for seed in args.seeds:
            train, test = split_holdout(outcomes, 0.2, seed)
            routers = {
                "knn": KnnRouter.train(train, embedder=embedder),
                "logistic": LogisticRouter.train(train, embedder=embedder),
                "mf": MfRouter.train(train, embedder=embedder, seed=seed),
            }
            for kind, router in routers.items():
                p = router.predict(test.prompts)
                for rule in ("gain", "confidence"):
                    m = router_curve(
                        test, p, kind, rule=rule, resamples=args.resamples, seed=seed
                    ).metrics
                    assert m is not None
                    seen.setdefault((kind, rule), []).append(m.apgr.value or float("nan"))
                    k = f" k={router.k}" if isinstance(router, KnnRouter) else ""
                    print(
                        f"  seed {seed} held-out {len(test.prompts)}  {kind + k:<12} "
                        f"{rule:<10}  APGR {m.apgr.render():<22} "
                        f"CPT(50%) {m.cpt[0.5].render(True):<22} "
                        f"CPT(80%) {m.cpt[0.8].render(True)}",
                        flush=True,
                    )
        for (kind, rule), values in seen.items():
            print(
                f"  mean over seeds {args.seeds}: {kind:<8} {rule:<10} APGR "
                f"{np.mean(values):.3f} (min {min(values):.3f}, max {max(values):.3f}); "
                f"paper's best {PAPER_BEST[name]}"
            )


if __name__ == "__main__":
    main()
