"""A burst of calls against a GPU-hour fleet, then the economics report over it.

    python examples/economics_burst.py                 # 300 calls, files in a temp dir
    python examples/economics_burst.py --calls 1000 --out /tmp/burst

Two loopback replicas of a ``specialist`` tier stand for a self-hosted engine priced by
the GPU-hour. Their throughput is an assumption, stated in ``GPU`` below; measure your
own with ``agentflow calibrate``. A ``heavy`` tier stands for an API priced per token.
The burst runs with 16 calls in flight, and each ``triage`` ticket has one of 16 system
prompts, so the prefix cache and both replicas see work. The spans go to
``OUT/spans.jsonl``. Then ``agentflow report`` runs over the minute that holds the
burst. It prints the tables, including utilisation and idle cost per replica, and
writes ``OUT/report.html`` and ``OUT/report.json``. No model and no network are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no price-map fetch

import agentflow as af
import tracing
from agentflow.cli import main as agentflow
from agentflow.testing import LoopbackServer, Reply
from budgets import GpuHourPricing, TokenPricing

# assumed: a $1.10/h GPU whose engine sustains 2000 prompt and 500 output tokens/s
GPU = GpuHourPricing(
    usd_per_gpu_hour=1.10, gpus=1, prompt_tokens_per_s=2000, output_tokens_per_s=500
)
API = TokenPricing(input_per_mtok=2.50, cached_input_per_mtok=1.25, output_per_mtok=10.0)


async def burst(calls: int) -> None:
    gate = asyncio.Semaphore(16)

    @af.step(name="triage", tier="specialist")
    async def triage(i: int) -> str:
        system = {"role": "system", "content": f"Route tickets for queue {i % 16}. " * 8}
        async with gate:
            answer = await af.acomplete(messages=[system, {"role": "user", "content": f"#{i}"}])
        return answer.text

    @af.step(name="escalate", tier="heavy", cache="exact")
    async def escalate(i: int) -> str:
        async with gate:
            answer = await af.acomplete(messages=[{"role": "user", "content": f"Case {i % 20}"}])
        return answer.text

    async with af.run("burst"):
        await asyncio.gather(
            *(triage(i) for i in range(calls)), *(escalate(i) for i in range(calls // 10))
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="specialist calls (default 300)")
    parser.add_argument("--out", type=Path, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="agentflow-burst-"))
    out.mkdir(parents=True, exist_ok=True)
    spans = out / "spans.jsonl"
    providers = tracing.setup(project="economics-burst", jsonl_path=spans)
    with contextlib.ExitStack() as stack:
        replicas = [stack.enter_context(LoopbackServer(name=f"gpu-{i}")) for i in range(2)]
        api = stack.enter_context(LoopbackServer(name="api"))
        for server in replicas:
            server.default = Reply("route to billing", prompt_tokens=300, cached_tokens=240)
        api.default = Reply("a longer answer", prompt_tokens=800, completion_tokens=120)
        af.configure(
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "specialist",
                        endpoints=[
                            af.Endpoint(model="openai/small", api_base=s.base_url, pricing=GPU)
                            for s in replicas
                        ],
                    ),
                    af.Tier(
                        "heavy",
                        endpoints=[
                            af.Endpoint(model="openai/big", api_base=api.base_url, pricing=API)
                        ],
                    ),
                ]
            ),
            cache_dir=out / "cache",
        )
        since = time.time()
        asyncio.run(burst(args.calls))
    providers.force_flush()
    window = ["--since", f"{since:.3f}", "--until", f"{since + 60:.3f}"]
    agentflow(["report", str(spans), *window, "--html", str(out / "report.html")])
    with (
        (out / "report.json").open("w", encoding="utf-8") as sink,
        contextlib.redirect_stdout(sink),
    ):
        agentflow(["report", str(spans), *window, "--json"])
    print(f"spans: {spans}\npage:  {out / 'report.html'}\njson:  {out / 'report.json'}")


if __name__ == "__main__":
    main()
