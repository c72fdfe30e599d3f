"""Fixtures that start real components for the integration tests.

They never skip: if llama-server or the model cannot be installed, the fixture fails
with the LocalServerError that says why (CI installs them first with
``agentflow serve-local --install-only``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentflow.local import LlamaServer, serve_local


@pytest.fixture(scope="session")
def llama_servers() -> Iterator[list[LlamaServer]]:
    """Two SmolLM2-135M replicas (1 thread, 2 slots, 4096-token context each)."""
    with serve_local("smollm2", replicas=2, threads=1, parallel=2, ctx_size=4096) as servers:
        yield servers
