"""TokenCounter.for_endpoint against loopback HTTP servers speaking the engines' protocols.

The servers answer like llama-server and vLLM do (their documented request and reply
shapes; a "token" here is a whitespace-separated word so the counts are checkable by
hand). The whole client path — httpx, URLs, bodies, fallbacks — is real.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from budgets import TokenCounter


class Engine:
    """A loopback engine: ``kind`` is "llama-server", "old-llama-server" (no
    /apply-template), "vllm" or "broken" (HTTP 500)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.requests: list[tuple[str, dict[str, Any]]] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                engine.requests.append((self.path, body))
                status, reply = engine.answer(self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.kind == "broken":
            return 500, {"error": "boom"}
        if self.kind in ("llama-server", "old-llama-server"):
            if path == "/tokenize":
                # llama-server reads "content" only; without it the list is empty
                words = body.get("content", "").split()
                bos = [1] if body.get("add_special") else []
                return 200, {"tokens": bos + list(range(100, 100 + len(words)))}
            if path == "/apply-template" and self.kind == "llama-server":
                turns = [f"<|im_start|>{m['role']} {m['content']}" for m in body["messages"]]
                return 200, {"prompt": " ".join([*turns, "<|im_start|>assistant"])}
        if self.kind == "vllm" and path == "/tokenize":
            if "messages" in body:
                words = sum(len(m["content"].split()) + 2 for m in body["messages"]) + 1
                return 200, {"count": words, "tokens": [0] * words, "max_model_len": 4096}
            words = len(body["prompt"].split())
            return 200, {"count": words, "tokens": [0] * words, "max_model_len": 4096}
        return 404, {"error": "not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    running = Engine(request.param)
    yield running
    running.close()


@pytest.fixture
def counters() -> Iterator[list[TokenCounter]]:
    """Counters to close after the test (they keep HTTP connections open)."""
    made: list[TokenCounter] = []
    yield made
    for counter in made:
        counter.close()


def remote(made: list[TokenCounter], api_base: str, model: str, **kwargs: Any) -> TokenCounter:
    counter = TokenCounter.for_endpoint(api_base, model, **kwargs)
    made.append(counter)
    return counter


MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "count these four words"},
]
# another prompt of the same size: a prompt counted before is not asked again
OTHER_MESSAGES = [
    {"role": "system", "content": "be short"},
    {"role": "user", "content": "count those four words"},
]


@pytest.mark.parametrize("engine", ["llama-server"], indirect=True)
def test_llama_server_counts_text_and_templated_chats(
    engine: Engine, counters: list[TokenCounter]
) -> None:
    counter = remote(counters, engine.api_base, "smollm2-135m")
    assert counter.count_text("the quick brown fox") == 4
    assert counter.method == "remote:/tokenize"
    path, body = engine.requests[0]
    assert path == "/tokenize"  # at the server root, not under /v1
    assert body["content"] == "the quick brown fox"
    assert body["add_special"] is False

    # template: "<|im_start|>system be brief <|im_start|>user count these four words
    # <|im_start|>assistant" = 9 words, + BOS because a chat prompt gets one
    assert counter.count_messages(MESSAGES) == 10
    assert [p for p, _ in engine.requests[1:]] == ["/apply-template", "/tokenize"]
    assert engine.requests[2][1]["add_special"] is True


@pytest.mark.parametrize("engine", ["vllm"], indirect=True)
async def test_vllm_counts_chats_with_its_own_template(
    engine: Engine, counters: list[TokenCounter]
) -> None:
    counter = remote(counters, engine.api_base, "smollm2-135m")
    assert await counter.acount_text("one two three") == 3
    assert counter.count_messages(MESSAGES) == (2 + 2) + (4 + 2) + 1
    assert [p for p, _ in engine.requests[1:]] == ["/apply-template", "/tokenize"]
    assert engine.requests[2][1]["model"] == "smollm2-135m"
    # the engine's way is remembered: no more probing of /apply-template
    assert await counter.acount_messages(OTHER_MESSAGES) == 11
    assert [p for p, _ in engine.requests[3:]] == ["/tokenize"]
    # and a prompt counted before is not asked again
    assert await counter.acount_messages(MESSAGES) == 11
    assert counter.count_messages(OTHER_MESSAGES) == 11
    assert len(engine.requests) == 4


@pytest.mark.parametrize("engine", ["old-llama-server"], indirect=True)
def test_without_a_chat_template_endpoint_the_fields_are_counted_remotely(
    engine: Engine, counters: list[TokenCounter]
) -> None:
    counter = remote(counters, engine.api_base, "smollm2-135m")
    # 3 primer + 3 per message + the 8 words of "system", "be brief", "user", "count these
    # four words" tokenized by the engine in one request
    assert counter.count_messages(MESSAGES) == 3 + 2 * 3 + 8
    paths = [p for p, _ in engine.requests]
    # /tokenize answered {"tokens": []} to the messages body: not taken for a count
    assert paths == ["/apply-template", "/tokenize", "/tokenize"]
    assert counter.count_messages(OTHER_MESSAGES) == 17
    assert [p for p, _ in engine.requests[3:]] == ["/tokenize"]  # straight to the fields


@pytest.mark.parametrize("engine", ["broken"], indirect=True)
def test_a_failing_endpoint_falls_back_to_tiktoken_and_retries_later(
    engine: Engine, counters: list[TokenCounter]
) -> None:
    offline = TokenCounter.for_model("smollm2-135m")
    counter = remote(counters, engine.api_base, "smollm2-135m", retry_after_s=3600)
    text = "the engine is down, so tiktoken counts"
    assert counter.count_text(text) == offline.count_text(text)
    assert counter.method == "tiktoken:cl100k_base"
    asked = len(engine.requests)
    assert asked == 2  # /tokenize at the root, then under /v1
    assert counter.count_messages(MESSAGES) == offline.count_messages(MESSAGES)
    assert len(engine.requests) == asked  # not asked again until retry_after_s passes

    eager = remote(counters, engine.api_base, "smollm2-135m", retry_after_s=0)
    eager.count_text(text)
    eager.count_text(text)
    assert len(engine.requests) == asked + 4


def test_an_unreachable_endpoint_falls_back(counters: list[TokenCounter]) -> None:
    counter = remote(counters, "http://127.0.0.1:9/v1", "gpt-4o", timeout=0.5)
    assert counter.count_text("hello world") == 2
    assert counter.method == "tiktoken:o200k_base"
