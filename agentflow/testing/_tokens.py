"""The loopback server's toy tokenizer, prompt rendering and embeddings.

Everything here is deterministic and dependency-free. The token unit is "four
characters": ``count_tokens(text) == len(tokenize(text)) == ceil(len(text) / 4)``.
A reply's tokens, on the other hand, are its words (``split_words``), so that
scripted logprobs line up with what a test author reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
VOCAB_SIZE = 32_000

_WORD = re.compile(r"\s*\S+")


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def count_tokens(text: str) -> int:
    """Tokens in ``text``: one per started block of four characters."""
    return -(-len(text) // CHARS_PER_TOKEN)


def tokenize(text: str) -> list[int]:
    """Token ids of ``text`` (what ``POST /tokenize`` returns), ``count_tokens`` of them."""
    return [
        int.from_bytes(_digest(text[i : i + CHARS_PER_TOKEN])[:4], "little") % VOCAB_SIZE
        for i in range(0, len(text), CHARS_PER_TOKEN)
    ]


def split_words(text: str) -> list[str]:
    """A reply's tokens: its words, each with the whitespace before it (as OpenAI's do)."""
    return _WORD.findall(text)


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, a list of parts, or None."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return json.dumps(content, sort_keys=True)


def _message_text(message: Mapping[str, Any]) -> str:
    text = content_text(message.get("content"))
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"], sort_keys=True)
    return text


def prompt_tokens_of_chat(messages: Sequence[Mapping[str, Any]], tools: Any = None) -> int:
    """Prompt tokens of a chat request: content tokens + 4 per message (+ tool schemas)."""
    total = sum(count_tokens(_message_text(m)) + TOKENS_PER_MESSAGE for m in messages)
    if tools:
        total += count_tokens(json.dumps(tools, sort_keys=True))
    return max(1, total)


def render_chat(messages: Sequence[Mapping[str, Any]], tools: Any = None) -> str:
    """The prompt an engine would see: ``"role: content\\n"`` per message, tools first."""
    head = f"tools: {json.dumps(tools, sort_keys=True)}\n" if tools else ""
    return head + "".join(f"{m.get('role', 'user')}: {_message_text(m)}\n" for m in messages)


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (binary search on slices)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def plausible_logprob(token: str, position: int) -> float:
    """A deterministic logprob in [-0.6, -0.005]: a fairly confident model."""
    h = int.from_bytes(_digest(f"{position}:{token}")[:4], "little")
    return -round(0.005 + (h % 1000) / 1000 * 0.595, 4)


def top_alternatives(token: str, logprob: float, k: int) -> list[dict[str, Any]]:
    """``k`` top logprobs including the chosen token, consistent as probabilities.

    The alternatives share the probability mass the chosen token leaves, halving
    each time, so the list sums to at most 1; it is sorted most likely first.
    """
    if k <= 0:
        return []
    rest = max(1.0 - math.exp(logprob), 1e-9)
    entries = [(token, logprob)]
    stem = token.strip() or "_"
    for i in range(1, k):
        entries.append(
            (
                f"{token[: len(token) - len(token.lstrip())]}{stem}~{i}",
                math.log(rest) - i * math.log(2),
            )
        )
    entries.sort(key=lambda e: e[1], reverse=True)
    return [
        {"token": t, "logprob": round(lp, 4), "bytes": list(t.encode("utf-8"))}
        for t, lp in entries[:k]
    ]


def _features(text: str) -> Iterable[str]:
    lowered = text.lower()
    yield from (f"w:{w}" for w in re.findall(r"\w+", lowered))
    padded = f"  {lowered} "
    yield from (f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2))


def embed(text: str, dim: int) -> list[float]:
    """A unit vector for ``text``: hashed words and character trigrams.

    Equal strings give equal vectors; strings that share words and spelling give
    a high cosine similarity, unrelated strings a low one (good enough to test a
    semantic cache, meaningless otherwise).
    """
    vec = [0.0] * dim
    for feature in _features(text):
        h = int.from_bytes(_digest(feature)[:8], "little")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        vec[int.from_bytes(_digest(text)[:4], "little") % dim] = 1.0
        return vec
    return [v / norm for v in vec]


def float32_base64(vec: Sequence[float]) -> str:
    """``encoding_format="base64"``: little-endian float32, base64 (what openai sends)."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
