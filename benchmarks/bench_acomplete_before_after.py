"""af.acomplete (an async step in a run) vs AsyncOpenAI at concurrency 50, the loopback
server in its own process, 5 interleaved rounds of 200 calls.

Runs against whichever agentflow is first on the path, so two checkouts compare:

    PYTHONPATH=/path/to/old/checkout python benchmarks/bench_acomplete_before_after.py
    PYTHONPATH=. python benchmarks/bench_acomplete_before_after.py
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from _tracing import install_drop_provider

provider = install_drop_provider()

import openai  # noqa: E402

import agentflow as af  # noqa: E402  # after the provider, as an application would

SERVER = """
import sys
from agentflow.testing import LoopbackServer, Reply
with LoopbackServer(name="bench") as srv:
    srv.default = Reply("Paris", prompt_tokens=12, completion_tokens=2, latency=0)
    print(srv.base_url, flush=True)
    sys.stdin.read()
"""
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
CONCURRENCY = 50


@af.step(kind="tool", name="answer")
async def answer() -> str:
    return (await af.acomplete(messages=MESSAGES, tier="s")).text


async def rate(fn: Callable[[], Awaitable[object]], calls: int, in_run: bool = False) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with sem:
            await fn()

    t = time.perf_counter()
    if in_run:
        with af.run("bench"):
            await asyncio.gather(*(one() for _ in range(calls)))
    else:
        await asyncio.gather(*(one() for _ in range(calls)))
    return calls / (time.perf_counter() - t)


async def measure(base: str) -> tuple[float, float]:
    client = openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0)

    async def sdk() -> object:
        return await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]

    await rate(answer, 100, True)  # warm up: imports, pools
    await rate(sdk, 100)
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(5):  # interleaved, the order alternating
        if i % 2:
            ours.append(await rate(answer, 200, True))
            theirs.append(await rate(sdk, 200))
        else:
            theirs.append(await rate(sdk, 200))
            ours.append(await rate(answer, 200, True))
    await client.close()
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    print("agentflow from", af.__file__)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    base = proc.stdout.readline().strip()
    endpoint = af.Endpoint(model="openai/m", api_base=base, api_key="k", timeout=60)
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("s", endpoints=[endpoint])]))
    try:
        ours, theirs = asyncio.run(measure(base))
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    print(
        f"af.acomplete {ours:.1f} calls/s, AsyncOpenAI {theirs:.1f} calls/s, "
        f"ratio {ours / theirs:.2f}"
    )
    provider.shutdown()


if __name__ == "__main__":
    main()
