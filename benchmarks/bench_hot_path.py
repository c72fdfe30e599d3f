"""The hot path of a model call: agentflow vs. the clients it is built on, side by side.

All against one loopback server that answers at once with a tiny fixed reply
(``Reply("Paris", latency=0)``), tracing on (an SDK TracerProvider with a batch processor
and an exporter that drops spans: building, attributing and queueing spans is measured,
exporting is not), in one process, in interleaved rounds (the order alternates), medians:

(a) ``af.complete`` in a decorated step in ``af.run`` on the fast path (agentflow's own
    HTTP client for an OpenAI-compatible endpoint, the default) vs the raw ``openai``
    SDK's ``chat.completions.create``: per call, p50 and mean (goal <= 1.3x); beside it
    (a') the same call through litellm (``Endpoint(transport="litellm")``) and
    ``litellm.completion`` itself;
(b) a decorated step with no model call vs a bare ``tracer.start_as_current_span`` around
    the same function, same provider: per call, p50 and mean (goal <= 1.2x);
(c) ``af.acomplete`` (an async decorated step in ``af.run``) at concurrency 50
    (``asyncio.gather`` over a semaphore) vs ``AsyncOpenAI`` at concurrency 50: calls per
    second (goal >= 0.8x, and >= 2x the litellm path (c'));
(d) for reference: a raw httpx POST (sync, per call);
(e) (a) with a run budget ``Budget(max_usd=...)`` (goal <= 1.4x the raw SDK): the
    endpoint is priced and has an ``api_base``, so the prompt is counted for the
    reservation by the engine's ``/tokenize``, once per distinct prompt (this benchmark
    repeats one prompt: see the requests per call printed below); (e') the same through
    litellm; (f) the same with ``Endpoint(counting="local")``: no ``/tokenize`` at all,
    whatever the prompt.

(a) and (e) hold one ``af.run`` open around each round of ``--calls`` calls, as an agent
holds one run around many calls; small rounds interleave finely, so a machine whose load
changes during the run skews every variant alike.

``--profile N`` then runs (a) N times under cProfile and prints agentflow's, tracing's and
budgets' functions by cumulative time, in ms per call (cProfile inflates every figure;
compare them with each other, not with the table).

    python benchmarks/bench_hot_path.py [--calls 10] [--rounds 20] [--async-calls 100]
                                        [--profile 300 [--profile-dump hot.prof]]
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from _tracing import install_drop_provider
from opentelemetry import trace

provider = install_drop_provider()

import httpx  # noqa: E402
import litellm  # noqa: E402
import openai  # noqa: E402

import agentflow as af  # noqa: E402  # after the provider, as an application would
from agentflow.testing import LoopbackServer, Reply  # noqa: E402
from budgets import Budget, TokenPricing  # noqa: E402

# the module settings agentflow gives litellm when it imports it (same module object)
litellm.telemetry = False
litellm.suppress_debug_info = True
litellm.drop_params = False

MODEL = "openai/m"
KEY = "sk-bench"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
CONCURRENCY = 50
RUN_BUDGET = Budget(max_usd=1_000)  # never binds: the reservation work is measured

tracer = trace.get_tracer("bench")

Sync = Callable[[], object]
Async = Callable[[], Awaitable[object]]


# -- measuring ---------------------------------------------------------------------


def timed_calls(fn: Sync, calls: int) -> list[float]:
    """Seconds per call, each call timed on its own."""
    out = []
    clock = time.perf_counter
    for _ in range(calls):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


async def rate(fn: Async, calls: int, concurrency: int) -> float:
    """Calls per second for ``calls`` calls, at most ``concurrency`` in flight."""
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await fn()

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return calls / (time.perf_counter() - t)


class Rows:
    """Per-call samples per variant, over interleaved rounds."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.means: dict[str, list[float]] = {}

    def add(self, name: str, values: list[float]) -> None:
        self.samples.setdefault(name, []).extend(values)
        self.means.setdefault(name, []).append(statistics.fmean(values))

    def p50(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def p99(self, name: str) -> float:
        return statistics.quantiles(self.samples[name], n=100)[98]

    def mean(self, name: str) -> float:
        """The median over rounds of each round's mean (robust to one noisy round)."""
        return statistics.median(self.means[name])


# -- the variants ------------------------------------------------------------------


def work(x: int) -> int:
    return x + 1


def bare_span(x: int) -> int:
    with tracer.start_as_current_span("work"):
        return work(x)


step_work = af.step(kind="tool", name="work")(work)


@af.step(kind="tool", name="answer")
def answer(tier: str = "specialist") -> str:
    return af.complete(messages=MESSAGES, tier=tier).text


@af.step(kind="tool", name="answer")
async def aanswer(tier: str = "specialist") -> str:
    return (await af.acomplete(messages=MESSAGES, tier=tier)).text


VIA_LITELLM = "specialist-litellm"
LOCAL_COUNT = "specialist-local-count"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10, help="model calls per round")
    parser.add_argument("--step-calls", type=int, default=1000, help="(b) calls per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--async-calls", type=int, default=100, help="(c) calls per round")
    parser.add_argument("--async-rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="cProfile N calls of (a)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--profile-dump", help="also save the cProfile stats to this file")
    parser.add_argument(
        "--in-process-server",
        action="store_true",
        help="serve from a thread of this process (default: a separate process, so the "
        "server's threads do not compete with the clients for this process's GIL)",
    )
    args = parser.parse_args()

    with LoopbackServer(name="bench") as srv, serving(srv, args.in_process_server) as base:
        srv.default = Reply("Paris", prompt_tokens=12, completion_tokens=2, latency=0)
        configure(base)
        same = {
            "model": MODEL,
            "api_base": base,
            "api_key": KEY,
            "timeout": 60.0,
            "messages": MESSAGES,
            "num_retries": 0,
            "max_retries": 0,
            "caching": False,
        }
        oa = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
        hx = httpx.Client(timeout=60)
        url = f"{base}/chat/completions"
        body = {"model": "m", "messages": MESSAGES}

        def direct() -> str:
            return str(litellm.completion(**same).choices[0].message.content)

        def raw_openai() -> str:
            reply = oa.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            return str(reply.choices[0].message.content)

        def raw_httpx() -> str:
            return str(hx.post(url, json=body).json()["choices"][0]["message"]["content"])

        assert answer() == answer(VIA_LITELLM) == direct() == raw_openai() == raw_httpx() == "Paris"

        print("measuring (a) (d) (e): sync model calls ...", flush=True)
        rows = Rows()
        sync_rows(rows, direct, raw_openai, raw_httpx, args)
        configure(srv.base_url)  # the in-process server records what each call sends
        before = srv.requests
        with af.run("bench-count", budget=RUN_BUDGET):
            for _ in range(10):
                answer()
        added = srv.requests[len(before) :]
        tokenize_per_call = sum(r.path.endswith("/tokenize") for r in added) / 10
        configure(base)

        print("measuring (b): step without a model call ...", flush=True)
        step_rows = Rows()
        step_rounds(step_rows, args)

        print(f"measuring (c): async at concurrency {CONCURRENCY} ...", flush=True)
        rates = asyncio.run(async_rates(base, same, args))

        report(rows, step_rows, rates, tokenize_per_call)

        if args.profile:
            profile(args.profile, args.top, args.profile_dump)
        hx.close()
        oa.close()
    provider.shutdown()


def configure(base: str) -> None:
    """Tiers on the server at ``base``: the fast path, the same through litellm, and the
    fast path counting prompts locally."""
    pricing = TokenPricing(input_per_mtok=1, output_per_mtok=2)
    endpoint = af.Endpoint(model=MODEL, api_base=base, api_key=KEY, pricing=pricing, timeout=60)
    slow = endpoint.model_copy(update={"transport": "litellm", "name": "via-litellm"})
    local = endpoint.model_copy(update={"counting": "local", "name": "local-count"})
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier("specialist", endpoints=[endpoint]),
                af.Tier(VIA_LITELLM, endpoints=[slow]),
                af.Tier(LOCAL_COUNT, endpoints=[local]),
            ]
        )
    )


_SERVER = """
import sys
from agentflow.testing import LoopbackServer, Reply
with LoopbackServer(name="bench-process") as srv:
    srv.default = Reply("Paris", prompt_tokens=12, completion_tokens=2, latency=0)
    print(srv.base_url, flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe
"""


@contextlib.contextmanager
def serving(srv: LoopbackServer, in_process: bool) -> Iterator[str]:
    """The base URL the variants call: ``srv``'s, or a loopback server in its own process."""
    if in_process:
        yield srv.base_url
        return
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


A = "(a) af.step + af.complete in af.run"
A2 = "(a') (a) through litellm"
E = "(e) (a) with run Budget(max_usd)"
E2 = "(e') (e) through litellm"
F = "(f) (e) with counting='local'"
BASE = "openai chat.completions.create"
LITELLM = "litellm.completion"
C = "(c) af.acomplete (async step in af.run)"
C2 = "(c') (c) through litellm"
ABASE = "AsyncOpenAI chat.completions.create"


def sync_rows(rows: Rows, direct: Sync, raw_openai: Sync, raw_httpx: Sync, args: Any) -> None:
    """(a), (e), litellm and the raw clients, interleaved; (a) and (e) each in an af.run
    held open around the round's calls, as an agent holds one run around many calls."""

    def plain_round(calls: int, tier: str = "specialist") -> list[float]:
        with af.run("bench"):
            return timed_calls(lambda: answer(tier), calls)

    def budget_round(calls: int, tier: str = "specialist") -> list[float]:
        with af.run("bench-budget", budget=RUN_BUDGET):
            return timed_calls(lambda: answer(tier), calls)

    variants: dict[str, Callable[[int], list[float]]] = {
        A: plain_round,
        A2: lambda calls: plain_round(calls, VIA_LITELLM),
        E: budget_round,
        E2: lambda calls: budget_round(calls, VIA_LITELLM),
        F: lambda calls: budget_round(calls, LOCAL_COUNT),
        BASE: lambda calls: timed_calls(raw_openai, calls),
        LITELLM: lambda calls: timed_calls(direct, calls),
        "(d) httpx POST": lambda calls: timed_calls(raw_httpx, calls),
    }
    for fn in variants.values():
        fn(max(10, args.calls // 5))  # warm up: imports, pools, the token counter
    for n in range(args.rounds):
        order = list(variants) if n % 2 == 0 else list(reversed(variants))
        for name in order:
            rows.add(name, variants[name](args.calls))


def step_rounds(rows: Rows, args: Any) -> None:
    variants: dict[str, Sync] = {
        "plain function": lambda: work(1),
        "bare span": lambda: bare_span(1),
        "af.step": lambda: step_work(1),
    }
    for fn in variants.values():
        timed_calls(fn, 1000)
    for n in range(args.rounds):
        order = list(variants) if n % 2 == 0 else list(reversed(variants))
        for name in order:
            rows.add(name, timed_calls(variants[name], args.step_calls))
        with af.run("bench"):
            rows.add("af.step in af.run", timed_calls(variants["af.step"], args.step_calls))


async def async_rates(base_url: str, same: dict[str, Any], args: Any) -> dict[str, float]:
    aoa = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    ahx = httpx.AsyncClient(timeout=60)
    url = f"{base_url}/chat/completions"
    body = {"model": "m", "messages": MESSAGES}

    async def raw_httpx() -> object:
        return (await ahx.post(url, json=body)).json()

    async def direct() -> object:
        return await litellm.acompletion(**same)

    async def raw() -> object:
        return await aoa.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]

    async def ours() -> object:
        return await aanswer()

    async def ours_litellm() -> object:
        return await aanswer(VIA_LITELLM)

    variants: dict[str, Async] = {
        C: ours,
        C2: ours_litellm,
        ABASE: raw,
        "litellm.acompletion": direct,
        "(d) httpx.AsyncClient POST": raw_httpx,
    }

    async def one_round(name: str, calls: int) -> float:
        if name in (C, C2):  # one af.run around the round's calls, as in (a)
            with af.run("bench-async"):
                return await rate(variants[name], calls, CONCURRENCY)
        return await rate(variants[name], calls, CONCURRENCY)

    results: dict[str, list[float]] = {name: [] for name in variants}
    for name in variants:  # warm up: connection pools, clients per event loop
        await one_round(name, CONCURRENCY * 2)
    for n in range(args.async_rounds):
        order = list(variants) if n % 2 == 0 else list(reversed(variants))
        for name in order:
            results[name].append(await one_round(name, args.async_calls))
    await aoa.close()
    await ahx.aclose()
    return {name: statistics.median(v) for name, v in results.items()}


# -- reporting ---------------------------------------------------------------------


def report(rows: Rows, step_rows: Rows, rates: dict[str, float], tokenize_per_call: float) -> None:
    ms, us = 1e3, 1e6
    print()
    print("sync model call, per call: p50 and p99 of all calls, mean = median of round means")
    print(
        f"{'variant':<40} {'p50 ms':>8} {'mean ms':>8} {'p99 ms':>8} {'p50':>7} {'mean':>7}  goal"
    )
    for name in rows.samples:
        p50, mean = rows.p50(name), rows.mean(name)
        r50, rmean = p50 / rows.p50(BASE), mean / rows.mean(BASE)
        goal = {A: "<= 1.3x the SDK", E: "<= 1.4x the SDK", F: "<= 1.4x the SDK"}.get(name, "")
        print(
            f"{name:<40} {p50 * ms:8.3f} {mean * ms:8.3f} {rows.p99(name) * ms:8.3f}"
            f" {r50:6.2f}x {rmean:6.2f}x  {goal}"
        )
    print(
        f"added by agentflow, (a) - the SDK: {(rows.p50(A) - rows.p50(BASE)) * ms:.3f} ms p50,"
        f" {(rows.mean(A) - rows.mean(BASE)) * ms:.3f} ms mean"
    )
    print(f"saved by the fast path, (a') - (a): {(rows.p50(A2) - rows.p50(A)) * ms:.3f} ms p50")
    print(
        f"added by the run budget, (e) - (a): {(rows.p50(E) - rows.p50(A)) * ms:.3f} ms p50"
        f" ({tokenize_per_call:.1f} /tokenize requests per call)"
    )
    print()
    print("(b) step without a model call, per call")
    sb = "bare span"
    print(f"{'variant':<40} {'p50 us':>8} {'mean us':>8} {'p50':>7} {'mean':>7}  goal")
    for name in step_rows.samples:
        p50, mean = step_rows.p50(name), step_rows.mean(name)
        goal = "<= 1.2x bare span" if name.startswith("af.step") else ""
        print(
            f"{name:<40} {p50 * us:8.2f} {mean * us:8.2f}"
            f" {p50 / step_rows.p50(sb):6.2f}x {mean / step_rows.mean(sb):6.2f}x  {goal}"
        )
    print()
    print(f"async, concurrency {CONCURRENCY}: calls per second (median over rounds)")
    print(f"{'variant':<40} {'calls/s':>8} {'ratio':>7}  goal")
    for name, value in rates.items():
        goal = ">= 0.8x the SDK" if name == C else ""
        print(f"{name:<40} {value:8.1f} {value / rates[ABASE]:6.2f}x  {goal}")
    print(f"(c) / (c'): {rates[C] / rates[C2]:.2f}x  goal >= 2x")


def profile(calls: int, top: int, dump: str | None) -> None:
    """cProfile ``calls`` calls of (a); agentflow/tracing/budgets functions by cumtime."""
    for _ in range(20):
        answer()
    prof = cProfile.Profile()
    with af.run("bench-profile"):
        prof.enable()
        for _ in range(calls):
            answer()
        prof.disable()
    stats = pstats.Stats(prof)
    if dump:
        stats.dump_stats(dump)
    entries: list[tuple[float, float, int, str]] = []
    total = 0.0
    for (path, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total = max(total, cumtime)
        parts = path.replace("\\", "/").split("/")
        for pkg in ("agentflow", "tracing", "budgets"):
            if pkg in parts[:-1]:
                rel = "/".join(parts[len(parts) - 1 - parts[::-1].index(pkg) :])
                entries.append((cumtime, tottime, ncalls, f"{rel}:{line}:{func}"))
                break
    entries.sort(reverse=True)
    print()
    print(
        f"cProfile, {calls} calls of (a): {total / calls * 1e3:.3f} ms per call under the profiler"
    )
    print(f"{'cum ms/call':>11} {'own ms/call':>11} {'calls/call':>10}  function")
    for cum, own, n, where in entries[:top]:
        print(f"{cum / calls * 1e3:11.3f} {own / calls * 1e3:11.3f} {n / calls:10.1f}  {where}")


if __name__ == "__main__":
    main()
