"""Overhead of a decorated step with no model call, as a ratio to a bare OpenTelemetry
span around the same function (goal: <= 2x).

Both use the same SDK TracerProvider with a BatchSpanProcessor and an exporter that
drops spans, measured interleaved in one process.

    python benchmarks/bench_step_overhead.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from _tracing import install_drop_provider
from opentelemetry import trace

provider = install_drop_provider()

import agentflow as af  # noqa: E402  # after the provider, as an application would

tracer = trace.get_tracer("bench")


def work(x: int) -> int:
    return x + 1


def bare(x: int) -> int:
    with tracer.start_as_current_span("work"):
        return work(x)


step = af.step(kind="tool", name="work")(work)


def per_call(fn: Callable[[int], int], calls: int) -> float:
    t = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - t) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    per_call(bare, 2000)
    per_call(step, 2000)
    rows: dict[str, list[float]] = {
        "plain function": [],
        "bare span": [],
        "af.step": [],
        "af.step in af.run": [],
    }
    for _ in range(args.rounds):
        rows["plain function"].append(per_call(work, args.calls))
        rows["bare span"].append(per_call(bare, args.calls))
        rows["af.step"].append(per_call(step, args.calls))
        with af.run("bench"):
            rows["af.step in af.run"].append(per_call(step, args.calls))
    med = {k: statistics.median(v) for k, v in rows.items()}
    for name, value in med.items():
        print(f"{name:<20} {value * 1e6:8.2f} µs per call")
    print(
        f"ratio af.step / bare span:          {med['af.step'] / med['bare span']:.2f}x (goal <= 2x)"
    )
    print(f"ratio af.step in run / bare span:   {med['af.step in af.run'] / med['bare span']:.2f}x")
    provider.shutdown()


if __name__ == "__main__":
    main()
