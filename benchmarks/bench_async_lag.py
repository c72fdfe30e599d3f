"""Event-loop lag while budgeted, cached ``af.acomplete`` calls run (goal: < 20 ms).

A ticker task sleeps 1 ms in a loop and records how late each wake-up is, while 20
``af.acomplete`` calls run concurrently in one ``af.run`` with a run budget
(``Budget(max_usd=...)``), from a step with ``cache="exact"`` (diskcache in a temporary
``cache_dir``). The endpoint is a loopback server behind a small proxy that answers
``/tokenize`` after 200 ms, as a busy engine might: the run budget counts each prompt
with the engine's ``/tokenize``, so a count made on the event loop's thread stalls every
task for 200 ms. Model calls are answered at once.

Rounds, in this order, each with fresh prompts (a new salt) unless it is a warm round:

- ``idle``: the ticker alone (the noise floor);
- ``litellm.acompletion (reference)``: 20 plain litellm calls, no agentflow: the lag the
  calls' own CPU work causes;
- ``budget + cache, cold``: every call misses the cache and is made;
- ``budget + cache, warm``: the same 20 prompts again, every call a cache hit;
- ``budget only``: an uncached step, so every call counts and is made;
- ``cache only, cold`` / ``warm``: no budget, so no ``/tokenize``;
- ``tenant ledger on diskcache, cold`` / ``warm`` (optional, ``--disk-ledger``): the run
  budget plus a tenant budget (``af.configure(tenant_budget=..., ledger_backend=
  DiskCacheBackend(...))``, ``af.run(..., user_id=...)``), so every reserve and settle is
  also an SQLite transaction.

Printed per round: the ticker's worst and p99 lag, its number of wake-ups, the wall time
of the 20 calls, cache hits and ``/tokenize`` requests.

    python benchmarks/bench_async_lag.py [--calls 20] [--tokenize-delay 0.2] [--repeat 2]
                                         [--disk-ledger]
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported

import argparse
import asyncio
import http.client
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _tracing import install_drop_provider

provider = install_drop_provider()

import litellm  # noqa: E402

import agentflow as af  # noqa: E402  # after the provider, as an application would
from agentflow.testing import LoopbackServer, Reply  # noqa: E402
from budgets import Budget, DiskCacheBackend, TokenPricing  # noqa: E402

MODEL = "openai/m"
KEY = "sk-bench"
TICK = 0.001
GOAL_MS = 20.0
RUN_BUDGET = Budget(max_usd=1_000)  # never binds: the counting and reserving is measured

# the module settings agentflow gives litellm when it imports it (same module object)
litellm.telemetry = False
litellm.suppress_debug_info = True
litellm.drop_params = False


# -- the slow-/tokenize proxy --------------------------------------------------------


class SlowTokenizeProxy:
    """Forwards every request to ``upstream`` (host, port); ``/tokenize`` after ``delay``."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                self.upstream = http.client.HTTPConnection(*upstream, timeout=30)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    self.upstream.close()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.path.rstrip("/").endswith("/tokenize"):
                    proxy.tokenize_requests += 1
                    time.sleep(delay)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                reply = self.upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.tokenize_requests = 0
        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> SlowTokenizeProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- the ticker ----------------------------------------------------------------------


async def ticker(stop: asyncio.Event, lags: list[float]) -> None:
    clock = time.perf_counter
    while not stop.is_set():
        t = clock()
        await asyncio.sleep(TICK)
        lags.append(clock() - t - TICK)


@dataclass
class Figures:
    label: str
    worst_ms: float
    p99_ms: float
    ticks: int
    wall_s: float
    hits: int
    tokenize: int

    def line(self) -> str:
        flag = "ok" if self.worst_ms < GOAL_MS else "OVER"
        return (
            f"{self.label:<38} {self.worst_ms:9.1f} {self.p99_ms:8.1f} {self.ticks:6d}"
            f" {self.wall_s:7.2f} {self.hits:5d} {self.tokenize:9d}  {flag}"
        )


HEADER = (
    f"{'round':<38} {'worst ms':>9} {'p99 ms':>8} {'ticks':>6} {'wall s':>7} {'hits':>5}"
    f" {'/tokenize':>9}  goal worst < {GOAL_MS:.0f} ms"
)


async def measure(
    label: str,
    proxy: SlowTokenizeProxy,
    calls: Callable[..., Awaitable[list[Any]]],
    *args: Any,
) -> Figures:
    lags: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(ticker(stop, lags))
    await asyncio.sleep(0.05)  # the ticker is running before the calls start
    tokenize_before = proxy.tokenize_requests
    t = time.perf_counter()
    results = await calls(*args)
    wall = time.perf_counter() - t
    await asyncio.sleep(0.01)
    stop.set()
    await task
    ms = sorted(lag * 1e3 for lag in lags)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) >= 2 else ms[-1]
    hits = sum(bool(getattr(r, "cache_hit", False)) for r in results)
    return Figures(
        label, ms[-1], p99, len(ms), wall, hits, proxy.tokenize_requests - tokenize_before
    )


# -- the steps -----------------------------------------------------------------------


@af.step(kind="tool", name="cached_answer", cache="exact")
async def cached_answer(question: str) -> af.Completion:
    return await af.acomplete(messages=[{"role": "user", "content": question}])


@af.step(kind="tool", name="answer")
async def answer(question: str) -> af.Completion:
    return await af.acomplete(messages=[{"role": "user", "content": question}])


def questions(salt: str, n: int) -> list[str]:
    return [f"Question {salt}-{i}: what is the capital of country number {i}?" for i in range(n)]


async def rounds(args: argparse.Namespace, proxy: SlowTokenizeProxy, ledger_dir: Path) -> None:
    n = args.calls
    salt_counter = iter(range(1_000_000))

    def fresh(n: int) -> list[str]:  # prompts no earlier round asked
        return questions(f"{time.time_ns()}-{next(salt_counter)}", n)

    async def gather(
        step: Callable[[str], Awaitable[af.Completion]],
        qs: list[str],
        budget: Budget | None,
        user_id: str | None = None,
    ) -> list[af.Completion]:
        with af.run("lag", budget=budget, user_id=user_id):
            return list(await asyncio.gather(*(step(q) for q in qs)))

    async def idle() -> list[Any]:
        await asyncio.sleep(1.0)
        return []

    async def plain_litellm(qs: list[str]) -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    litellm.acompletion(
                        model=MODEL,
                        api_base=proxy.base_url,
                        api_key=KEY,
                        messages=[{"role": "user", "content": q}],
                        num_retries=0,
                        max_retries=0,
                        caching=False,
                    )
                    for q in qs
                )
            )
        )

    # warm up outside the measured rounds: litellm import, clients, the token counter's
    # discovery of what the endpoint's /tokenize accepts
    await gather(answer, fresh(2), RUN_BUDGET)
    await gather(cached_answer, fresh(2), None)
    await plain_litellm(fresh(2))

    disk_ledger = DiskCacheBackend(ledger_dir) if args.disk_ledger else None
    print(HEADER)
    all_rows: list[list[Figures]] = []
    for _ in range(args.repeat):
        rows = [
            await measure("idle (ticker alone)", proxy, idle),
            await measure("litellm.acompletion (reference)", proxy, plain_litellm, fresh(n)),
        ]
        qs = fresh(n)
        for label in ("budget + cache, cold", "budget + cache, warm"):
            rows.append(await measure(label, proxy, gather, cached_answer, qs, RUN_BUDGET))
        label = "budget only (uncached step)"
        rows.append(await measure(label, proxy, gather, answer, fresh(n), RUN_BUDGET))
        qs = fresh(n)
        for label in ("cache only, cold", "cache only, warm"):
            rows.append(await measure(label, proxy, gather, cached_answer, qs, None))
        if disk_ledger is not None:
            af.configure(tenant_budget=RUN_BUDGET, ledger_backend=disk_ledger)
            qs = fresh(n)
            for label in (
                "+ tenant ledger on diskcache, cold",
                "+ tenant ledger on diskcache, warm",
            ):
                args_ = (cached_answer, qs, RUN_BUDGET, "u1")
                rows.append(await measure(label, proxy, gather, *args_))
        for row in rows:
            print(row.line(), flush=True)
        print()
        all_rows.append(rows)
    if args.repeat > 1:
        print(f"worst lag, median over {args.repeat} repeats:")
        for i, first in enumerate(all_rows[0]):
            worst = statistics.median(rows[i].worst_ms for rows in all_rows)
            p99 = statistics.median(rows[i].p99_ms for rows in all_rows)
            print(f"{first.label:<38} {worst:9.1f} {p99:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls per round")
    parser.add_argument("--tokenize-delay", type=float, default=0.2, help="seconds")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--disk-ledger", action="store_true", help="add the diskcache rounds")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-lag-") as tmp,
        LoopbackServer(name="bench") as srv,
        SlowTokenizeProxy((srv.host, srv.port), args.tokenize_delay) as proxy,
    ):
        srv.default = Reply("Paris", prompt_tokens=20, completion_tokens=2, latency=0)
        pricing = TokenPricing(input_per_mtok=1, output_per_mtok=2)
        endpoint = af.Endpoint(model=MODEL, api_base=proxy.base_url, api_key=KEY, pricing=pricing)
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("specialist", endpoints=[endpoint])]),
            cache_dir=Path(tmp) / "cache",
        )
        print(
            f"{args.calls} concurrent af.acomplete calls per round; /tokenize answers after "
            f"{args.tokenize_delay * 1e3:.0f} ms; ticker sleeps {TICK * 1e3:.0f} ms"
        )
        asyncio.run(rounds(args, proxy, Path(tmp) / "ledger"))
    provider.shutdown()


if __name__ == "__main__":
    main()
