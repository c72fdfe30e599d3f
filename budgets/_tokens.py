"""TokenCounter: how many tokens a prompt will cost, before it is sent.

The budget stage reserves the worst case *before* a call, so it needs the prompt's size
without asking the provider. Methods, best first (``TokenCounter.method`` says which one
a counter uses):

``tiktoken:<encoding>``
    the model's own BPE, loaded offline (see ``budgets._encodings``). Exact for OpenAI
    models; for any other model (``exact`` is False) cl100k_base stands in.
``remote:/tokenize``
    the serving engine's own tokenizer (llama-server, vLLM, SGLang; the HTTP side is
    ``budgets._remote_tokens``); see ``TokenCounter.for_endpoint``.
``approx:chars/4``
    a quarter of the characters, rounded up, when no encoding file exists at all.

Chat overhead follows OpenAI's cookbook ("How to count tokens with tiktoken"): 3 tokens
per message, 1 more per ``name``, 3 to prime the reply. Tool schemas are rendered the way
OpenAI's models see them (a TypeScript-like ``namespace functions``) and counted, plus 9
tokens of wrapper; that is an approximation (OpenAI does not publish the format) that
lands within a few tokens for flat schemas. Anything unusual is counted as its JSON, so
the estimate errs high, which is the safe side for a budget.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from budgets._counting import (
    IMAGE_TOKENS,
    REPLY_PRIMER,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    TOOL_CALL_OVERHEAD,
    TOOLS_OVERHEAD,
    Messages,
    Tools,
)
from budgets._encodings import load_encoding
from budgets._remote_tokens import EndpointTokenizer, EndpointUnavailable

__all__ = ["Messages", "TokenCounter", "Tools", "encoding_for_model", "render_tools"]

log = logging.getLogger("budgets")

# First match wins; a name matches a prefix when it equals it or continues with - . : @
_ENCODING_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "o200k_base",
        ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "o1", "o3", "o4"),
    ),
    (
        "cl100k_base",
        ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002"),
    ),
    ("p50k_base", ("text-davinci-002", "text-davinci-003", "code-davinci", "code-cushman")),
)
FALLBACK_ENCODING = "cl100k_base"


def encoding_for_model(model: str) -> tuple[str, bool]:
    """The encoding for ``model`` and whether it is the model's own.

    Provider prefixes (``openai/``, ``azure/``) and ``ft:`` are ignored. Unknown models,
    self-hosted ones included (``openai/smollm2-135m``), get cl100k_base as a stand-in:
    modern BPE vocabularies of 30-150k tokens split English text within roughly 10-20%
    of each other; use ``TokenCounter.for_endpoint`` for the engine's exact count.
    """
    name = model.rsplit("/", 1)[-1].lower().removeprefix("ft:")
    for encoding, prefixes in _ENCODING_PREFIXES:
        for prefix in prefixes:
            if name == prefix or (name.startswith(prefix) and name[len(prefix)] in "-.:@"):
                return encoding, True
    return FALLBACK_ENCODING, False


class TokenCounter:
    """Counts tokens of text and chat messages for one model.

    Build one with ``TokenCounter.for_model(model)`` (cached: the same object comes back
    for the same name) or ``TokenCounter.for_endpoint(api_base, model)``. ``method`` says
    how it counts; ``exact`` is False when the count is an approximation.
    """

    method: str = "approx:chars/4"
    exact: bool = False

    def __init__(self, model: str) -> None:
        self.model = model

    def __repr__(self) -> str:
        return f"<TokenCounter {self.model!r} method={self.method!r} exact={self.exact}>"

    @classmethod
    def for_model(cls, model: str) -> TokenCounter:
        """The offline counter for ``model`` (tiktoken, else chars/4)."""
        return _for_model(model)

    @classmethod
    def for_endpoint(
        cls, api_base: str, model: str, *, timeout: float = 2.0, retry_after_s: float = 30.0
    ) -> TokenCounter:
        """A counter that asks a self-hosted engine's ``/tokenize`` (llama-server, vLLM,
        SGLang). When the engine does not answer it counts with ``for_model(model)`` and
        asks again after ``retry_after_s``. Does no I/O until the first count."""
        return RemoteTokenCounter(api_base, model, timeout=timeout, retry_after_s=retry_after_s)

    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone (no special tokens, no chat overhead)."""
        return math.ceil(len(text) / 4)

    def count_messages(self, messages: Messages, tools: Tools | None = None) -> int:
        """Prompt tokens of a chat request: every message's fields, the per-message and
        per-name overhead, the reply primer, and the tool schemas when given."""
        total = REPLY_PRIMER
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                total += self._value_tokens(key, value)
                if key == "name":
                    total += TOKENS_PER_NAME
        if tools:
            total += self.count_tools(tools)
        return total

    def count_tools(self, tools: Tools) -> int:
        """Tokens the tool schemas add to the prompt (rendered as ``render_tools`` does)."""
        return self.count_text(render_tools(tools)) + TOOLS_OVERHEAD

    def close(self) -> None:
        """Release network resources (a ``for_endpoint`` counter's HTTP connections)."""

    async def acount_text(self, text: str) -> int:
        """``count_text`` for asyncio (a remote counter does not block the loop)."""
        return self.count_text(text)

    async def acount_messages(self, messages: Messages, tools: Tools | None = None) -> int:
        return self.count_messages(messages, tools)

    def _value_tokens(self, key: str, value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, str):
            return self.count_text(value)
        if key == "content" and isinstance(value, list):
            return sum(self._part_tokens(part) for part in value)
        if key == "tool_calls" and isinstance(value, list):
            return sum(self._tool_call_tokens(call) for call in value)
        return self.count_text(json.dumps(value, ensure_ascii=False))

    def _part_tokens(self, part: Any) -> int:
        if isinstance(part, Mapping):
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                return self.count_text(part["text"])
            if part.get("type") == "image_url":
                return IMAGE_TOKENS
        if isinstance(part, str):
            return self.count_text(part)
        return self.count_text(json.dumps(part, ensure_ascii=False))

    def _tool_call_tokens(self, call: Any) -> int:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            return self.count_text(json.dumps(call, ensure_ascii=False))
        name = str(function.get("name") or "")
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        return self.count_text(name) + self.count_text(arguments) + TOOL_CALL_OVERHEAD


class _TiktokenCounter(TokenCounter):
    def __init__(self, model: str, encoding: Any, exact: bool) -> None:
        super().__init__(model)
        self._encoding = encoding
        self.method = f"tiktoken:{encoding.name}"
        self.exact = exact

    def count_text(self, text: str) -> int:
        # encode_ordinary: "<|endoftext|>" in user text is text, never a special token
        return len(self._encoding.encode_ordinary(text))


class RemoteTokenCounter(TokenCounter):
    """``TokenCounter.for_endpoint``: the engine's tokenizer (``EndpointTokenizer``) while
    it answers; ``for_model(model)`` for ``retry_after_s`` after it did not."""

    exact = True

    def __init__(
        self, api_base: str, model: str, *, timeout: float = 2.0, retry_after_s: float = 30.0
    ) -> None:
        super().__init__(model)
        self._endpoint = EndpointTokenizer(api_base, model, timeout=timeout)
        self.api_base = self._endpoint.api_base
        self._retry_after_s = retry_after_s
        self._fallback = TokenCounter.for_model(model)
        self._down_until = 0.0
        self._counts: OrderedDict[str, int] = OrderedDict()  # exact counts, by prompt
        self._counts_lock = threading.Lock()

    @property
    def method(self) -> str:  # type: ignore[override]  # a class attribute elsewhere
        return "remote:/tokenize" if self._up() else self._fallback.method

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

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
                return self._endpoint.count_text(text)
            except EndpointUnavailable as exc:
                self._down(exc)
        return self._fallback.count_text(text)

    def count_messages(self, messages: Messages, tools: Tools | None = None) -> int:
        key = _content_key(messages, tools)
        known = self._known(key)
        if known is not None:
            return known
        if self._up():
            try:
                n = self._endpoint.count_messages(messages, tools)
            except EndpointUnavailable as exc:
                self._down(exc)
            else:
                self._remember(key, n)
                return n
        return self._fallback.count_messages(messages, tools)

    def _known(self, key: str | None) -> int | None:
        """An exact count the engine gave for this very prompt before (a retry, another
        replica, a climb back to the same model, a repeated request): no round trip."""
        if key is None:
            return None
        with self._counts_lock:
            n = self._counts.get(key)
            if n is not None:
                self._counts.move_to_end(key)
            return n

    def _remember(self, key: str | None, n: int) -> None:
        if key is None:
            return
        with self._counts_lock:
            self._counts[key] = n
            if len(self._counts) > _COUNT_CACHE_SIZE:
                self._counts.popitem(last=False)

    async def acount_text(self, text: str) -> int:
        return await asyncio.to_thread(self.count_text, text)

    async def acount_messages(self, messages: Messages, tools: Tools | None = None) -> int:
        known = self._known(_content_key(messages, tools))
        if known is not None:  # no thread hop for a count already known
            return known
        return await asyncio.to_thread(self.count_messages, messages, tools)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._endpoint.close()


_COUNT_CACHE_SIZE = 4096


def _content_key(messages: Messages, tools: Tools | None) -> str | None:
    """A digest of a prompt's exact content, or None when it has no JSON form."""
    try:
        text = json.dumps([messages, tools], sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=512)
def _for_model(model: str) -> TokenCounter:
    name, exact = encoding_for_model(model)
    encoding = load_encoding(name)
    if encoding is None and name != FALLBACK_ENCODING:
        encoding, exact = load_encoding(FALLBACK_ENCODING), False
    if encoding is None:
        return TokenCounter(model)
    return _TiktokenCounter(model, encoding, exact)


def _ts_type(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(value, ensure_ascii=False) for value in schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(_ts_type(option) for option in schema[union])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_ts_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        return f"{_ts_type(schema.get('items') or {})}[]"
    if kind == "object" and schema.get("properties"):
        fields = ", ".join(f"{k}: {_ts_type(v)}" for k, v in schema["properties"].items())
        return "{ " + fields + " }"
    return {"integer": "number", "null": "null"}.get(str(kind), str(kind or "any"))


def render_tools(tools: Tools) -> str:
    """Tool schemas as the TypeScript-like block OpenAI injects into the system prompt.

    Accepts ``{"type": "function", "function": {...}}`` entries or bare function schemas.
    """
    lines = ["# Tools", "", "## functions", "", "namespace functions {", ""]
    for tool in tools:
        function = tool.get("function", tool)
        if function.get("description"):
            lines.append(f"// {function['description']}")
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") or {}
        if not properties:
            lines.append(f"type {function.get('name', '')} = () => any;")
        else:
            required = set(parameters.get("required") or ())
            lines.append(f"type {function.get('name', '')} = (_: {{")
            for name, schema in properties.items():
                if schema.get("description"):
                    lines.append(f"// {schema['description']}")
                optional = "" if name in required else "?"
                lines.append(f"{name}{optional}: {_ts_type(schema)},")
            lines.append("}) => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)
