"""Fixtures that start real components for the integration tests.

They never skip: if llama-server or the model cannot be installed, the fixture fails
with the LocalServerError that says why (CI installs them first with
``agentflow serve-local --install-only``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import agentflow as af
from agentflow._config import reset
from agentflow.local import LlamaServer, serve_local
from budgets import GpuHourPricing

# an assumed GPU price and throughput for the local replicas' cost
LLAMA_PRICING = GpuHourPricing(
    usd_per_gpu_hour=1.10, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
)


@pytest.fixture(scope="session")
def llama_servers() -> Iterator[list[LlamaServer]]:
    """Two SmolLM2-135M replicas (1 thread, 2 slots, 4096-token context each)."""
    with serve_local("smollm2", replicas=2, threads=1, parallel=2, ctx_size=4096) as servers:
        yield servers


@pytest.fixture
def replica_zoo(llama_servers: list[LlamaServer]) -> Iterator[af.ModelZoo]:
    """One tier, ``specialist``, whose endpoints are the session's llama-server replicas
    (priced with ``LLAMA_PRICING``), configured for the test."""
    model = "openai/" + llama_servers[0].alias
    endpoints = [
        af.Endpoint(model=model, api_base=s.base_url, pricing=LLAMA_PRICING, timeout=180)
        for s in llama_servers
    ]
    zoo = af.ModelZoo(tiers=[af.Tier("specialist", endpoints=endpoints)])
    af.configure(zoo=zoo)
    yield zoo
    reset()
