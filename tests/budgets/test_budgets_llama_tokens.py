"""The engine's own tokenizer against a real llama-server: exact prompt counts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from measure_token_error import PROMPTS  # a script in benchmarks/

from budgets import TokenCounter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_base() -> Iterator[str]:
    from agentflow.local import serve_local  # the test's server; budgets never imports it

    with serve_local("smollm2", replicas=1, threads=1, parallel=1) as servers:
        yield servers[0].base_url


@pytest.mark.parametrize("label", ["short question", "multi-turn", "japanese", "csv numbers"])
def test_for_endpoint_predicts_prompt_tokens_exactly(api_base: str, label: str) -> None:
    messages = PROMPTS[label]
    counter = TokenCounter.for_endpoint(api_base, "openai/smollm2-135m")
    predicted = counter.count_messages(messages)
    assert counter.method == "remote:/tokenize"
    hello = counter.count_text("hello world")  # /tokenize directly: no template, no BOS
    counter.close()

    reply = httpx.post(
        f"{api_base}/chat/completions",
        json={"messages": messages, "max_tokens": 1, "temperature": 0},
        timeout=120,
    )
    reply.raise_for_status()
    assert predicted == reply.json()["usage"]["prompt_tokens"]
    assert hello == 2
