"""Semantic cache cost per partition size: lookup latency (p50/p99) and insert cost.

    python benchmarks/bench_semantic_cache.py [--sizes 1000,5000,10000,20000,50000,100000]
        [--dims 384,768] [--queries 400] [--repeat 3] [--inserts 300] [--no-disk]

For each embedding size it grows one partition through ``SemanticCache.add`` to each size
in turn, in two caches side by side: in memory only (``SemanticCache()``) and persisted in
a temp directory (``SemanticCache(directory)``, the pipeline's default, whose lookups also
read the partition's meta entry to pick up other processes' adds). At each size it times
``--repeat`` rounds of ``--queries`` lookups of random vectors (a lookup scans the whole
partition, so hit or miss costs the same), then ``--inserts`` adds, then a cold start: a
new instance on the directory loading the partition on its first lookup. Percentiles are
nearest-rank over single calls (``perf_counter_ns``); the lookup columns show the median
round, so one burst of a neighbour's load does not decide a figure. Not a timed test:
figures depend on the machine, and the script prints which one and its load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agentflow.cache import SemanticCache

PARTITION = "bench"
VALUE = {  # the shape the pipeline stores: about 300 bytes of JSON
    "text": "Paris is the capital of France.",
    "message": {"role": "assistant", "content": "Paris is the capital of France."},
    "tier": "workhorse",
    "model": "openai/smollm2-135m",
    "endpoint": "http://127.0.0.1:8081/v1",
    "cost_usd": "0.000042",
}
TARGET_P99_MS = 5.0

COLUMNS = [  # (key, title, format)
    ("dim", "dim", "{:d}"),
    ("entries", "entries", "{:,d}"),
    ("mem_p50", "lookup p50 ms", "{:.3f}"),
    ("mem_p99", "lookup p99 ms", "{:.3f}"),
    ("disk_p50", "disk lookup p50", "{:.3f}"),
    ("disk_p99", "disk lookup p99", "{:.3f}"),
    ("mem_add_p50", "add p50 ms", "{:.3f}"),
    ("mem_add_p99", "add p99 ms", "{:.3f}"),
    ("disk_add_p50", "disk add p50", "{:.3f}"),
    ("disk_add_p99", "disk add p99", "{:.3f}"),
    ("cold_s", "disk cold load s", "{:.2f}"),
    ("mb", "matrix MB", "{:.0f}"),
]


def percentile_ms(samples_ns: list[int], q: float) -> float:
    ordered = sorted(samples_ns)
    rank = min(len(ordered), max(1, -(-len(ordered) * q // 100)))  # nearest rank, 1-based
    return ordered[int(rank) - 1] / 1e6


def timed(calls: int, call: Callable[[int], object]) -> list[int]:
    samples = []
    for i in range(calls):
        start = time.perf_counter_ns()
        call(i)
        samples.append(time.perf_counter_ns() - start)
    return samples


def lookups(cache: SemanticCache, queries: np.ndarray) -> Callable[[int], object]:
    return lambda i: cache.lookup(PARTITION, queries[i], 0.9)


def inserts(cache: SemanticCache, vectors: np.ndarray) -> Callable[[int], object]:
    return lambda i: cache.add(PARTITION, vectors[i], VALUE)


def format_row(row: dict[str, Any]) -> str:
    cells = []
    for key, title, fmt in COLUMNS:
        cells.append((fmt.format(row[key]) if key in row else "-").rjust(len(title)))
    return " | ".join(cells)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows: list[dict[str, Any]] = []
    print(" | ".join(title for _, title, _ in COLUMNS), flush=True)
    for dim in (int(d) for d in args.dims.split(",")):
        vectors = rng.standard_normal((sizes[-1] + args.inserts * len(sizes), dim), np.float32)
        queries = rng.standard_normal((args.queries, dim), np.float32)
        with tempfile.TemporaryDirectory(prefix="bench-semantic-") as directory:
            caches = {"mem": SemanticCache()}
            if not args.no_disk:
                caches["disk"] = SemanticCache(directory)
            for size in sizes:
                for cache in caches.values():  # vector i is the i-th entry in both caches
                    for i in range(len(cache), size):
                        cache.add(PARTITION, vectors[i], VALUE)
                row: dict[str, Any] = {"dim": dim, "entries": len(caches["mem"])}
                for cache in caches.values():
                    cache.lookup(PARTITION, queries[0], 0.9)  # warm up
                rounds: dict[str, list[list[int]]] = {name: [] for name in caches}
                for _ in range(args.repeat):  # interleaved, so a burst of load hits both
                    for name, cache in caches.items():
                        rounds[name].append(timed(args.queries, lookups(cache, queries)))
                for name, samples in rounds.items():
                    row[f"{name}_p50"] = statistics.median(percentile_ms(r, 50) for r in samples)
                    row[f"{name}_p99"] = statistics.median(percentile_ms(r, 99) for r in samples)
                start = len(caches["mem"])
                for name, cache in caches.items():
                    adds = timed(args.inserts, inserts(cache, vectors[start:]))
                    row[f"{name}_add_p50"] = percentile_ms(adds, 50)
                    row[f"{name}_add_p99"] = percentile_ms(adds, 99)
                if "disk" in caches:
                    t0 = time.perf_counter()
                    cold = SemanticCache(directory)
                    cold.lookup(PARTITION, queries[0], 0.9)
                    row["cold_s"] = time.perf_counter() - t0
                    cold.close()
                row["mb"] = row["entries"] * dim * 4 / 2**20
                rows.append(row)
                print(format_row(row), flush=True)
            for cache in caches.values():
                cache.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,5000,10000,20000,50000,100000", help="entries, comma-separated"
    )
    parser.add_argument("--dims", default="384,768", help="embedding sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=400, help="lookups timed per size")
    parser.add_argument("--inserts", type=int, default=300, help="adds timed per size")
    parser.add_argument(
        "--repeat", type=int, default=3, help="lookup rounds per size; the median round counts"
    )
    parser.add_argument("--no-disk", action="store_true", help="skip the persisted cache")
    args = parser.parse_args()
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, load average {os.getloadavg()[0]:.1f}; one partition, "
        f"float32 matrix; per size {args.repeat} rounds of {args.queries} lookups (the median "
        f"round's percentiles) and {args.inserts} adds\n"
    )
    rows = measure(args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    for dim in dict.fromkeys(row["dim"] for row in rows):
        for kind, label in (("mem", "in memory"), ("disk", "on disk")):
            measured = [row for row in rows if row["dim"] == dim and f"{kind}_p99" in row]
            if not measured:
                continue
            supported = None  # the largest size at which it and every smaller size pass
            for row in measured:
                if row[f"{kind}_p99"] >= TARGET_P99_MS:
                    break
                supported = row["entries"]
            verdict = f"up to {supported:,} entries" if supported else "at no size measured"
            print(f"dim {dim}, {label}: p99 lookup < {TARGET_P99_MS:g} ms {verdict}")


if __name__ == "__main__":
    main()
