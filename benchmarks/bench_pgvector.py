"""``PgVectorStore`` lookups: exact partition scan against the HNSW index, by partition size.

    python benchmarks/bench_pgvector.py [--sizes 1000,5000,20000,50000] [--dim 384]
        [--queries 200] [--other 5000]

Starts a PostgreSQL with pgvector from the ``pgserver`` wheel on a free loopback port (as
the tests do), fills one partition to each size in turn (COPY; random unit vectors) next
to ``--other`` rows of other tenants, and at each size times ``--queries`` lookups of
vectors near stored ones both ways, through ``PgVectorStore.search``: the exact scan of
the partition (primary key, sorted by distance) and the HNSW index (``ef_search`` 100, the
partition condition inside the scan). Recall@1 is the share of indexed lookups that find
the exact scan's nearest entry. The HNSW index exists from the start, so the load pays
for it as inserts would. Not a timed test: the figures depend on the machine, printed
with its load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentflow.cache import PgVectorStore
from agentflow.cache._pgvector import _literal
from tests._postgres import start_postgres


def _fill(dsn: str, store: PgVectorStore, partition: str, vectors: np.ndarray) -> None:
    key = store._key(partition)
    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy(
            f"COPY {store.table} (partition, embedding, value) FROM STDIN"
        ) as copy:
            for v in vectors:
                copy.write_row((key, _literal(v), "{}"))
        conn.execute(
            f"INSERT INTO {store.table}_partitions (partition, rows) VALUES (%s, %s) "
            "ON CONFLICT (partition) DO UPDATE SET rows = "
            f"{store.table}_partitions.rows + excluded.rows",
            (key, len(vectors)),
        )
        conn.execute(f"ANALYZE {store.table}")


def _unit(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return out


def _time(store: PgVectorStore, queries: np.ndarray, indexed: bool) -> tuple[list[float], list]:
    key = store._key("big")
    store._counts[key] = (10**9 if indexed else 0, 0.0)
    times, found = [], []
    for q in queries:
        store._counts[key] = (10**9 if indexed else 0, 0.0)
        t0 = time.perf_counter()
        hit = store.search("big", q)
        times.append((time.perf_counter() - t0) * 1000)
        found.append(None if hit is None else hit.value.get("i"))
    return times, found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000,20000,50000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--other", type=int, default=5000)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_postgres()
    try:
        store = PgVectorStore(server.dsn, table="bench", hnsw_min_rows=10**9, timeout=30)
        store.insert("seed", _unit(rng.normal(size=(1, args.dim)))[0], {"seed": True})
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(store._index_sql())
        store._indexed = True
        _fill(server.dsn, store, "others", _unit(rng.normal(size=(args.other, args.dim))))
        print(
            f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, dim {args.dim}, "
            f"{args.other} rows of other tenants, {args.queries} lookups per cell\n"
        )
        print("| partition rows | exact p50 ms | exact p99 ms | hnsw p50 ms | hnsw p99 ms "
              "| hnsw recall@1 |")  # fmt: skip
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        held = np.zeros((0, args.dim), dtype=np.float32)
        key = store._key("big")
        for size in sizes:
            new = _unit(rng.normal(size=(size - len(held), args.dim)))
            start = len(held)
            with psycopg.connect(server.dsn) as conn:
                with conn.cursor().copy(
                    f"COPY {store.table} (partition, embedding, value) FROM STDIN"
                ) as copy:
                    for i, v in enumerate(new):
                        copy.write_row((key, _literal(v), f'{{"i": {start + i}}}'))
                conn.execute(f"ANALYZE {store.table}")
            held = np.concatenate([held, new])
            picks = rng.integers(0, len(held), size=args.queries)
            queries = _unit(held[picks] + rng.normal(scale=0.02, size=(args.queries, args.dim)))
            exact_t, exact_f = _time(store, queries, indexed=False)
            hnsw_t, hnsw_f = _time(store, queries, indexed=True)
            recall = sum(a == b for a, b in zip(exact_f, hnsw_f, strict=True)) / len(queries)

            def p(ts: list[float], q: float) -> float:
                return sorted(ts)[min(int(q * len(ts)), len(ts) - 1)]

            print(
                f"| {size:,} | {statistics.median(exact_t):.2f} | {p(exact_t, 0.99):.2f} | "
                f"{statistics.median(hnsw_t):.2f} | {p(hnsw_t, 0.99):.2f} | {recall:.3f} |"
            )
        store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
