"""APGR / CPT of agentflow's learned routers on RouteLLM's public outcome files.

    python benchmarks/bench_routing_apgr.py --evals PATH/TO/routellm/evals \
        [--seeds 0 1 2 3 4] [--max-length 256] [--cache DIR] [--embedder local|hashing]

``--evals`` is RouteLLM's ``routellm/evals`` folder (``gsm8k/gsm8k_responses.csv``,
``mmlu/responses/mmlu_*.csv`` and their ``contaminated_prompts.jsonl``; in the RouteLLM
repository, not in its PyPI package). For each benchmark and seed it holds out 20% of the
prompts, trains kNN (k by leave-one-out calibration) and logistic routers on the rest
with ``af.LocalEmbedder`` vectors, and prints APGR, CPT(50%) and CPT(80%) on the held-out
prompts with 95% bootstrap intervals, for the gain rule and for the chance-the-cheap-
model-is-right rule, next to the RouteLLM paper's best. Embeddings are computed once per
prompt and kept in ``--cache`` (``.npy``, no pickle), so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agentflow.routing import HashingEmbedder, read_routellm_csv
from agentflow.routing._harness import router_curve, split_holdout
from agentflow.routing._learned import KnnRouter, LogisticRouter

PAPER_BEST = {"gsm8k": 0.622, "mmlu": 0.603}  # RouteLLM (Ong et al., 2024), best router
FILES = {
    "gsm8k": ("gsm8k/gsm8k_responses.csv", "gsm8k/contaminated_prompts.jsonl"),
    "mmlu": ("mmlu/responses/mmlu_*.csv", "mmlu/contaminated_prompts.jsonl"),
}


class CachedEmbedder:
    """Embeds each distinct prompt once; keeps the vectors in ``cache`` as .npy."""

    def __init__(self, inner: object, cache: Path, tag: str) -> None:
        self.inner, self.cache, self.tag = inner, cache, tag
        self.vectors: dict[str, np.ndarray] = {}

    def _files(self, name: str) -> tuple[Path, Path]:
        return self.cache / f"{name}-{self.tag}.npy", self.cache / f"{name}-{self.tag}.json"

    def load(self, name: str) -> None:
        vec_file, text_file = self._files(name)
        if vec_file.exists() and text_file.exists():
            texts = json.loads(text_file.read_text())
            vectors = np.load(vec_file, allow_pickle=False)
            self.vectors.update(zip(texts, vectors, strict=True))

    def save(self, name: str, texts: Sequence[str]) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        vec_file, text_file = self._files(name)
        np.save(vec_file, np.stack([self.vectors[t] for t in texts]), allow_pickle=False)
        text_file.write_text(json.dumps(list(texts)))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.vectors})
        for start in range(0, len(missing), 128):
            batch = missing[start : start + 128]
            self.vectors.update(zip(batch, np.asarray(self.inner(batch)), strict=True))  # type: ignore[operator]
        return np.stack([self.vectors[t] for t in texts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evals", required=True, type=Path)
    parser.add_argument("--benchmarks", nargs="+", default=["gsm8k", "mmlu"], choices=FILES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--embedder", choices=("local", "hashing"), default="local")
    parser.add_argument("--max-length", type=int, default=256, help="LocalEmbedder tokens")
    parser.add_argument("--cache", type=Path, default=Path(".routing-embeddings"))
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    if args.embedder == "local":
        from agentflow.embedders import LocalEmbedder

        inner: object = LocalEmbedder(max_length=args.max_length)
        tag = f"{LocalEmbedder().name}-{args.max_length}"
    else:
        inner, tag = HashingEmbedder(), "hashing"
    embedder = CachedEmbedder(inner, args.cache, hashlib.sha1(tag.encode()).hexdigest()[:10])
    print(f"embedder: {tag}")
    for name in args.benchmarks:
        csvs, contaminated = FILES[name]
        outcomes = read_routellm_csv(args.evals / csvs, contaminated=args.evals / contaminated)
        q = outcomes.correct.mean(axis=0)
        print(
            f"\n{name}: {len(outcomes.prompts)} prompts after decontamination; "
            f"{outcomes.tiers[0]} {q[0]:.1%}, {outcomes.tiers[1]} {q[1]:.1%}; "
            f"RouteLLM paper's best APGR {PAPER_BEST[name]}"
        )
        embedder.load(name)
        started = time.perf_counter()
        embedder(outcomes.prompts)
        embedder.save(name, outcomes.prompts)
        print(f"  embedded in {time.perf_counter() - started:.0f} s")
        seen: dict[tuple[str, str], list[float]] = {}
        for seed in args.seeds:
            train, test = split_holdout(outcomes, 0.2, seed)
            routers = {
                "knn": KnnRouter.train(train, embedder=embedder),
                "logistic": LogisticRouter.train(train, embedder=embedder),
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
