"""Import time of ``agentflow`` as a ratio to ``import litellm`` (goal: <= 0.10).

Each import runs in a fresh interpreter; the two are interleaved, repeated, and the
medians compared, so both see the same machine load.

    python benchmarks/bench_import.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SNIPPET = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def time_import(module: str) -> float:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for module in ("agentflow", "litellm"):  # warm the OS file cache once
        time_import(module)
    ours, theirs = [], []
    for _ in range(args.repeat):
        ours.append(time_import("agentflow"))
        theirs.append(time_import("litellm"))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"import agentflow  median {a * 1000:8.1f} ms  (min {min(ours) * 1000:.1f})")
    print(f"import litellm    median {b * 1000:8.1f} ms  (min {min(theirs) * 1000:.1f})")
    print(f"ratio agentflow / litellm: {a / b:.3f}  (goal <= 0.10)")


if __name__ == "__main__":
    main()
