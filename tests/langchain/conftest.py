"""The process-wide node policies of ``agentflow.langchain`` start and end empty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentflow.langchain import node_policies


@pytest.fixture(autouse=True)
def _no_node_policies() -> Iterator[None]:
    node_policies(None)
    yield
    node_policies(None)
