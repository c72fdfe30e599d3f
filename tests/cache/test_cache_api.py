"""The agentflow.cache surface: exactly its public names, and a cheap import."""

from __future__ import annotations

import subprocess
import sys

import agentflow.cache


def test_all_is_sorted_and_is_every_public_name() -> None:
    names = list(agentflow.cache.__all__)
    assert names == sorted(names)
    public = {n for n in vars(agentflow.cache) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if type(getattr(agentflow.cache, n)).__name__ == "module"}
    assert set(names) == public - modules


def test_importing_the_cache_imports_no_numpy_diskcache_redis_or_litellm() -> None:
    code = (
        "import sys, agentflow.cache; "
        "print([m for m in ('numpy', 'diskcache', 'redis', 'litellm') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
