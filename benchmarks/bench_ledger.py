"""Ledger throughput: reserve + settle pairs per second, per backend.

    python benchmarks/bench_ledger.py [--seconds 1] [--repeat 3] [--threads 8]

For each backend (memory, diskcache in a temp dir, Redis on a redis-server this script
starts on a free loopback port and stops) it runs reserve+settle pairs against one
ledger key for a fixed time, first from one thread, then from N threads contending for
the same key, and prints one table with the ratios. Each cell is the median of
``--repeat`` runs, so a neighbour's burst of CPU use does not decide a figure. Not a timed
test: figures depend on the machine (the docs say which one).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

from budgets import Budget, DiskCacheBackend, Ledger, LedgerBackend, MemoryBackend, RedisBackend

BUDGET = Budget(max_usd=1_000_000, max_output_tokens=10**15)  # never refuses here
ASK, ACTUAL = Decimal("0.0004"), Decimal("0.00031")


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port (None when not installed)."""
    executable = shutil.which("redis-server")
    if executable is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def run(ledger: Ledger, threads: int, seconds: float) -> float:
    """reserve+settle pairs per second, all threads together."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(index: int) -> None:
        start.wait()
        done = 0
        while not stop.is_set():
            res = ledger.reserve(usd=ASK, input_tokens=300, output_tokens=256)
            ledger.settle(res, usd=ACTUAL, input_tokens=300, output_tokens=180)
            done += 1
        counts[index] = done

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    assert ledger.spent().calls == sum(counts)  # every pair landed
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="reserve+settle pairs per second per backend")
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per cell (median)")
    parser.add_argument("--threads", type=int, default=8, help="contending threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory, redis_server() as redis_url:
        backends: dict[str, Callable[[], LedgerBackend] | None] = {
            "memory": MemoryBackend,
            "diskcache": lambda: DiskCacheBackend(directory),
            "redis": (lambda: RedisBackend(redis_url)) if redis_url else None,
        }
        rows: list[tuple[str, float, float]] = []
        for name, make in backends.items():
            if make is None:
                print(f"{name}: skipped (redis-server is not installed)")
                continue
            backend = make()
            single = statistics.median(
                run(Ledger(BUDGET, backend=backend), 1, args.seconds) for _ in range(args.repeat)
            )
            contended = statistics.median(
                run(Ledger(BUDGET, backend=backend), args.threads, args.seconds)
                for _ in range(args.repeat)
            )
            backend.close()
            rows.append((name, single, contended))

    python = f"{platform.python_implementation()} {platform.python_version()}"
    per_cell = f"median of {args.repeat} × {args.seconds:g} s"
    print(f"\nreserve+settle pairs per second ({python}, {per_cell})\n")
    base = rows[0][1]
    print(f"| backend | 1 thread | {args.threads} threads, one key | 1 thread vs memory |")
    print("| --- | ---: | ---: | ---: |")
    for name, single, contended in rows:
        print(f"| {name} | {single:,.0f} | {contended:,.0f} | {single / base:.3f}× |")


if __name__ == "__main__":
    main()
