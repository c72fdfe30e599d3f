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
request and OpenAI's per-message overhead is added (an approximation).

``EndpointTokenizer`` only talks to the engine: every count either succeeds or raises
``EndpointUnavailable``. ``RemoteTokenCounter`` (``budgets._tokens``, built by
``TokenCounter.for_endpoint``) uses it and, when the endpoint does not answer, counts with
the offline counter for the model and asks the endpoint again after ``retry_after_s``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from budgets._counting import REPLY_PRIMER, TOKENS_PER_MESSAGE, TOKENS_PER_NAME, Messages, Tools

__all__ = ["EndpointTokenizer", "EndpointUnavailable"]


class EndpointUnavailable(Exception):
    """The endpoint did not give a usable answer."""


class EndpointTokenizer:
    """The tokenizer of the engine serving ``api_base``, over HTTP (thread-safe).

    Does no I/O until the first count; ``count_text`` and ``count_messages`` raise
    ``EndpointUnavailable`` when the engine does not answer usably.
    """

    def __init__(self, api_base: str, model: str, *, timeout: float = 2.0) -> None:
        base = api_base.rstrip("/")
        root = base.removesuffix("/v1")
        self.api_base = base
        self.model = model
        self._urls = list(dict.fromkeys([f"{root}/tokenize", f"{base}/tokenize"]))
        self._template_url = f"{root}/apply-template"
        self._timeout = timeout
        self._chat_mode: str | None = None  # "template", "messages" or "fields" once known
        self._lock = threading.Lock()
        self._client: Any = None

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
            raise EndpointUnavailable(f"{url}: {exc!r}") from exc
        if response.status_code != 200:
            raise EndpointUnavailable(f"{url}: HTTP {response.status_code}")
        try:
            payload = response.json()
        except json.JSONDecodeError as exc:
            raise EndpointUnavailable(f"{url}: not JSON") from exc
        if not isinstance(payload, dict):
            raise EndpointUnavailable(f"{url}: unexpected reply {payload!r:.80}")
        return payload

    @staticmethod
    def _count(payload: Mapping[str, Any]) -> int:
        if isinstance(payload.get("count"), int):
            return int(payload["count"])
        if isinstance(payload.get("tokens"), list):
            return len(payload["tokens"])
        raise EndpointUnavailable(f"no 'count' or 'tokens' in {payload!r:.80}")

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
            except EndpointUnavailable as exc:
                errors.append(str(exc))
        raise EndpointUnavailable("; ".join(errors))

    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone, as the engine tokenizes it (no special tokens)."""
        return self._tokenize(text, special=False)

    def count_messages(self, messages: Messages, tools: Tools | None = None) -> int:
        """Prompt tokens of a chat request: templated by the engine when it can, else
        its fields counted by the engine plus OpenAI's per-message overhead."""
        body: dict[str, Any] = {"messages": list(messages)}
        if tools:
            body["tools"] = list(tools)
        if self._chat_mode in (None, "template"):
            try:
                prompt = self._post(self._template_url, body).get("prompt")
                if isinstance(prompt, str):
                    self._chat_mode = "template"
                    return self._tokenize(prompt, special=True)
            except EndpointUnavailable:
                if self._chat_mode == "template":
                    raise
        if self._chat_mode in (None, "messages"):
            try:
                body |= {"model": self.model, "add_generation_prompt": True}
                count = self._post(self._urls[0], body).get("count")
                # llama-server answers {"tokens": []} to a body without "content": only a
                # real count (vLLM's) means the engine templated the messages
                if not isinstance(count, int):
                    raise EndpointUnavailable("no chat tokenization")
                self._chat_mode = "messages"
                return count
            except EndpointUnavailable:
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

    def close(self) -> None:
        """Close the HTTP connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
