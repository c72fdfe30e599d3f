"""Counting with the serving engine's own tokenizer.

A self-hosted model (SmolLM2, Gemma, Llama...) does not use an OpenAI vocabulary, so
tiktoken can only approximate it. The engines expose their tokenizer over HTTP:

- llama-server: ``POST {root}/tokenize {"content": text}`` -> ``{"tokens": [...]}``, and
  ``POST {root}/apply-template {"messages": [...]}`` -> ``{"prompt": text}`` (the chat
  template the server will apply), so a chat prompt is counted exactly;
- vLLM: ``POST {root}/tokenize {"model", "prompt"}`` or ``{"model", "messages"}`` ->
  ``{"count": n, "tokens": [...]}``;
- SGLang: ``/tokenize`` with ``{"prompt"}`` or ``{"model", "prompt"}`` -> ``{"count"}``.

``root`` is ``api_base`` without its trailing ``/v1``; ``{api_base}/tokenize`` is tried
too. One request body carries every engine's field names (each ignores the others'). When
the engine cannot template a chat, the messages' fields are counted remotely in one
request and OpenAI's per-message overhead is added (an approximation). When the endpoint
does not answer, the offline counter for the model counts instead, and the endpoint is
asked again after ``retry_after_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from budgets._tokens import (
    REPLY_PRIMER,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    Messages,
    TokenCounter,
    Tools,
)

__all__ = ["RemoteTokenCounter"]

log = logging.getLogger("budgets")


class _Unavailable(Exception):
    """The endpoint did not give a usable answer."""


class RemoteTokenCounter(TokenCounter):
    exact = True

    def __init__(
        self, api_base: str, model: str, *, timeout: float = 2.0, retry_after_s: float = 30.0
    ) -> None:
        super().__init__(model)
        base = api_base.rstrip("/")
        root = base.removesuffix("/v1")
        self.api_base = base
        self._urls = list(dict.fromkeys([f"{root}/tokenize", f"{base}/tokenize"]))
        self._template_url = f"{root}/apply-template"
        self._timeout = timeout
        self._retry_after_s = retry_after_s
        self._fallback = TokenCounter.for_model(model)
        self._down_until = 0.0
        self._chat_mode: str | None = None  # "template", "messages" or "fields" once known
        self._lock = threading.Lock()
        self._client: Any = None

    @property
    def method(self) -> str:  # type: ignore[override]  # a class attribute elsewhere
        return "remote:/tokenize" if self._up() else self._fallback.method

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self._http().post(url, json=body)
        except httpx.HTTPError as exc:
            raise _Unavailable(f"{url}: {exc!r}") from exc
        if response.status_code != 200:
            raise _Unavailable(f"{url}: HTTP {response.status_code}")
        try:
            payload = response.json()
        except json.JSONDecodeError as exc:
            raise _Unavailable(f"{url}: not JSON") from exc
        if not isinstance(payload, dict):
            raise _Unavailable(f"{url}: unexpected reply {payload!r:.80}")
        return payload

    @staticmethod
    def _count(payload: Mapping[str, Any]) -> int:
        if isinstance(payload.get("count"), int):
            return int(payload["count"])
        if isinstance(payload.get("tokens"), list):
            return len(payload["tokens"])
        raise _Unavailable(f"no 'count' or 'tokens' in {payload!r:.80}")

    def _tokenize(self, text: str, *, special: bool) -> int:
        body = {
            "content": text,  # llama-server
            "prompt": text,  # vLLM, SGLang
            "model": self.model,
            "add_special": special,  # llama-server: BOS as the chat prompt gets it
            "add_special_tokens": special,  # vLLM
        }
        errors = []
        for url in self._urls:
            try:
                return self._count(self._post(url, body))
            except _Unavailable as exc:
                errors.append(str(exc))
        raise _Unavailable("; ".join(errors))

    def _down(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + self._retry_after_s
        log.warning(
            "token counting: %s did not answer (%s); counting with %s for %.0f s",
            self.api_base,
            exc,
            self._fallback.method,
            self._retry_after_s,
        )

    def count_text(self, text: str) -> int:
        if self._up():
            try:
                return self._tokenize(text, special=False)
            except _Unavailable as exc:
                self._down(exc)
        return self._fallback.count_text(text)

    def count_messages(self, messages: Messages, tools: Tools | None = None) -> int:
        if self._up():
            try:
                return self._remote_messages(messages, tools)
            except _Unavailable as exc:
                self._down(exc)
        return self._fallback.count_messages(messages, tools)

    def _remote_messages(self, messages: Messages, tools: Tools | None) -> int:
        body: dict[str, Any] = {"messages": list(messages)}
        if tools:
            body["tools"] = list(tools)
        if self._chat_mode in (None, "template"):
            try:
                prompt = self._post(self._template_url, body).get("prompt")
                if isinstance(prompt, str):
                    self._chat_mode = "template"
                    return self._tokenize(prompt, special=True)
            except _Unavailable:
                if self._chat_mode == "template":
                    raise
        if self._chat_mode in (None, "messages"):
            try:
                body |= {"model": self.model, "add_generation_prompt": True}
                count = self._post(self._urls[0], body).get("count")
                # llama-server answers {"tokens": []} to a body without "content": only a
                # real count (vLLM's) means the engine templated the messages
                if not isinstance(count, int):
                    raise _Unavailable("no chat tokenization")
                self._chat_mode = "messages"
                return count
            except _Unavailable:
                if self._chat_mode == "messages":
                    raise
        self._chat_mode = "fields"
        return self._fields_estimate(messages, tools)

    def _fields_estimate(self, messages: Messages, tools: Tools | None) -> int:
        # One request for all the text; per-message overhead from OpenAI's cookbook.
        texts: list[str] = []
        total = REPLY_PRIMER
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                if value is not None:
                    texts.append(value if isinstance(value, str) else json.dumps(value))
                if key == "name":
                    total += TOKENS_PER_NAME
        if tools:
            texts.append(json.dumps(list(tools)))
        return total + self._tokenize("\n".join(texts), special=False)

    async def acount_text(self, text: str) -> int:
        return await asyncio.to_thread(self.count_text, text)

    async def acount_messages(self, messages: Messages, tools: Tools | None = None) -> int:
        return await asyncio.to_thread(self.count_messages, messages, tools)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
