"""A dead replica, before and after replica health: failed attempts and added latency.

200 calls over a tier of three replicas: two live loopback servers
(``agentflow.testing.LoopbackServer``, answering at once) and one closed port
(connection refused). Each call has its own system prompt, so prefix affinity pins
about a third of them to the dead replica. Calls run ``--concurrency`` at a time under
asyncio, with agentflow's default retry policy (3 attempts per replica, 0.5 s initial
backoff, full jitter).

"before": ``replica_health.enabled = False``: every call pinned to the dead replica
tries it ``max_attempts`` times, sleeping between tries, then fails over (what agentflow
did before replica health). "after": the default, passive cooldowns (1 s, doubling up
to 60 s, a half-open probe after each). Both modes: same calls, same order, same
servers, in one process, after the same warm-up. "added s": the wall time of the calls
that met the dead replica, less the median wall time of calls that did not, summed.

    python benchmarks/bench_replica_health.py [--calls 200] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: before litellm

import agentflow as af
from agentflow.pipeline.health import replica_health
from agentflow.testing import LoopbackServer, reset_state


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"You are support agent {i} of the invoices team. " * 6},
        {"role": "user", "content": f"What is the status of invoice {i}?"},
    ]


async def _mode(
    name: str, zoo: af.ModelZoo, calls: int, concurrency: int
) -> dict[str, float | int | str]:
    reset_state()  # no cooldown, in-flight count or config carried over between modes
    live = af.ModelZoo(tiers=[af.Tier("pool", endpoints=zoo.tier("pool").endpoints[:2])])
    af.configure(zoo=live)
    for i in range(20):  # warm-up on the live replicas: connections, litellm's first call
        await af.acomplete(messages=_messages(-1 - i), max_tokens=8)
    af.configure(zoo=zoo)  # the default RetryPolicy
    replica_health.enabled = name == "after"
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[float, af.Completion]:
        async with gate:
            t0 = time.perf_counter()
            c = await af.acomplete(messages=_messages(i), max_tokens=8)
            return time.perf_counter() - t0, c

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(calls)))
    wall = time.perf_counter() - t0
    failed = [a for _, c in results for a in c.attempts if not a.ok]
    clean = [s for s, c in results if all(a.ok for a in c.attempts)]
    base = statistics.median(clean)
    hit = [s - base for s, c in results if any(not a.ok for a in c.attempts)]
    latencies = sorted(s for s, _ in results)
    return {
        "mode": name,
        "failed_attempts": len(failed),
        "calls_that_met_it": len(hit),
        "added_total_s": sum(hit),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "wall_s": wall,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    with LoopbackServer(name="a") as a, LoopbackServer(name="b") as b:
        eps = [af.Endpoint(model="openai/m", api_base=s.base_url, name=s.name) for s in (a, b)]
        dead = af.Endpoint(
            model="openai/m", api_base=f"http://127.0.0.1:{_closed_port()}/v1", name="dead"
        )
        zoo = af.ModelZoo(tiers=[af.Tier("pool", endpoints=[*eps, dead])])
        rows = [await _mode(m, zoo, args.calls, args.concurrency) for m in ("before", "after")]
    reset_state()
    print(
        f"{args.calls} calls, concurrency {args.concurrency}, 2 live replicas + 1 dead "
        "(connection refused), default RetryPolicy"
    )
    print(
        f"{'mode':<8} {'failed attempts':>16} {'calls that met it':>18} {'added s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'wall s':>7}"
    )
    for r in rows:
        print(
            f"{r['mode']:<8} {r['failed_attempts']:>16} {r['calls_that_met_it']:>18} "
            f"{r['added_total_s']:>8.2f} {r['p50_ms']:>7.0f} {r['p99_ms']:>7.0f} "
            f"{r['wall_s']:>7.2f}"
        )
    before, after = rows
    print(
        f"failed attempts: {before['failed_attempts']} -> {after['failed_attempts']} "
        f"({int(before['failed_attempts']) / max(1, int(after['failed_attempts'])):.0f}x fewer); "
        f"added latency: {float(before['added_total_s']):.1f} s -> "
        f"{float(after['added_total_s']):.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
