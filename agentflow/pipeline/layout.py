"""Stage 4, prefix layout: stable parts first, byte-identical across calls.

An engine's prefix cache (vLLM, SGLang, llama.cpp, OpenAI) reuses the KV state of the
longest prompt prefix it has seen; Anthropic caches up to explicit ``cache_control``
breakpoints. Both pay off only when what repeats comes first and is the same bytes
every time. ``arrange`` lays a prompt out that way:

1. the leading system / developer messages, as they are;
2. the messages marked static (``static(message)`` or ``"static": True`` written by
   hand: a retrieved document, few-shot examples), in their order;
3. the rest of the conversation, in its original order: never reordered.

The marker key never reaches the engine. Tool schemas are put in canonical form (JSON
keys sorted at every level) so two equal schemas are the same bytes whatever order their
dicts were built in; the *list* of tools keeps the developer's order, which is theirs to
choose (put the tools that never change first).

``mark_for_provider`` adds Anthropic's ``cache_control`` breakpoints (Anthropic API, and
Claude on Bedrock and Vertex AI, as litellm names them) when the stable prefix is long
enough to be cached; every other provider caches prefixes by itself and gets the request
unchanged. litellm passes ``cache_control`` on a content part through to Anthropic and
Vertex AI, and turns it into a ``cachePoint`` block for Bedrock; on a tool (OpenAI
format), it becomes the Anthropic tool's ``cache_control`` or a Bedrock tool
``cachePoint``.

Everything here is pure (no I/O) and cheap: it runs on every call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agentflow._errors import ConfigError

__all__ = [
    "ANTHROPIC_HAIKU_MIN_CACHE_TOKENS",
    "ANTHROPIC_MIN_CACHE_TOKENS",
    "CHARS_PER_TOKEN",
    "MAX_CACHE_BREAKPOINTS",
    "STATIC_KEY",
    "Arranged",
    "arrange",
    "canonical_tools",
    "mark_for_provider",
    "needs_cache_markers",
    "prefix_key",
    "stable_messages",
    "static",
    "trim_oldest",
]

STATIC_KEY = "static"
"""The message key that marks static content; stripped before the request is sent."""

ANTHROPIC_MIN_CACHE_TOKENS = 1024
"""Anthropic's minimum cacheable prompt (Sonnet, Opus): a shorter prefix is not cached."""

ANTHROPIC_HAIKU_MIN_CACHE_TOKENS = 2048
"""The minimum for Haiku models. Newer models with a higher minimum are harmless:
Anthropic ignores a breakpoint on a prefix below its minimum, without an error."""

MAX_CACHE_BREAKPOINTS = 4
"""Anthropic rejects a request with more ``cache_control`` blocks than this."""

CHARS_PER_TOKEN = 4
"""The estimate of prefix tokens when the caller does not count them."""

_SYSTEM_ROLES = frozenset({"system", "developer"})
_EPHEMERAL = {"type": "ephemeral"}


class Arranged(list[dict[str, Any]]):
    """The messages ``arrange`` laid out: a plain list that also knows its stable prefix.

    Once the static markers are stripped, the messages alone no longer say which ones are
    stable; ``stable_messages`` (routing's prefix key, ``mark_for_provider``) reads it
    from here. The stable messages are held by identity, so deleting a message in place
    (trimming to a budget) keeps the rest right; ``copy``, ``deepcopy`` and pickle keep
    it too. Copied into a new plain list, the prompt falls back to "the leading system
    messages are stable".
    """

    def __init__(self, messages: list[dict[str, Any]], stable: Sequence[dict[str, Any]]) -> None:
        super().__init__(messages)
        self._stable = tuple(stable)  # kept alive, so their ids stay theirs
        self.stable_ids = frozenset(map(id, self._stable))

    def __reduce__(self) -> tuple[Any, ...]:
        # the stable messages lead the list: a copy knows them by position
        return (_rebuild, (list(self), len(stable_messages(self))))


def _rebuild(messages: list[dict[str, Any]], stable: int) -> Arranged:
    return Arranged(messages, messages[:stable])


def static(message: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a chat message, marked as static content reused across calls.

    A retrieved document, few-shot examples, a long instruction: ``arrange`` moves static
    messages right after the leading system messages, so they join the cached prefix.
    """
    if not isinstance(message, Mapping) or "role" not in message:
        raise ConfigError(
            f"af.static() takes a chat message like {{'role': 'user', 'content': ...}}, "
            f"got {message!r}"
        )
    _check_movable(message)
    return {**message, STATIC_KEY: True}


def _check_movable(message: Mapping[str, Any]) -> None:
    if message.get("role") == "tool" or message.get("tool_calls"):
        raise ConfigError(
            "a tool call or tool result cannot be marked static: it must stay next to its "
            "partner in the conversation. Put the reusable content in a system or user "
            "message and mark that one."
        )


def canonical_tools(tools: Any) -> Any:
    """Tool schemas as canonical JSON values: equal schemas give identical bytes.

    Keys are sorted at every level; the order of the list is kept. Values that are not
    JSON (a pydantic model, a callable) are returned as given: layout never breaks a call.
    """
    try:
        return json.loads(json.dumps(tools, sort_keys=True))
    except (TypeError, ValueError):
        return tools


def arrange(
    messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Lay a prompt out stable part first; returns new (messages, params).

    Leading system / developer messages, then static-marked messages in their order, then
    the rest in its original order; marker keys removed; ``params["tools"]`` canonical.
    The message list is always a new list of new dicts (the caller may trim it in place);
    ``params`` is the very object given when it has no tools. When messages moved, the
    list is an ``Arranged`` that remembers its stable prefix.
    """
    msgs = [dict(m) for m in messages]
    if any(STATIC_KEY in m for m in msgs):
        msgs = _layout(msgs)
    tools = params.get("tools")
    if not tools:
        return msgs, params if isinstance(params, dict) else dict(params)
    return msgs, {**params, "tools": canonical_tools(tools)}


def _layout(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lead = 0
    while lead < len(msgs) and msgs[lead].get("role") in _SYSTEM_ROLES:
        lead += 1
    marked: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for i, m in enumerate(msgs):
        flag = m.pop(STATIC_KEY, None)
        if i < lead:
            continue
        if flag:
            _check_movable(m)
            marked.append(m)
        else:
            rest.append(m)
    head = msgs[:lead]
    if not marked:
        return msgs  # a marker said False: stripped, nothing moves
    return Arranged([*head, *marked, *rest], stable=[*head, *marked])


def stable_messages(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages of the stable prefix, in the order ``arrange`` puts them.

    The leading system / developer messages, then the static ones: read from an
    ``Arranged`` list, or from the markers of messages not arranged yet (both give the
    same answer for the same prompt).
    """
    ids = getattr(messages, "stable_ids", None)
    if ids is not None:  # arranged: the stable messages lead the list
        stable: list[Mapping[str, Any]] = []
        for m in messages:
            if id(m) not in ids:
                break
            stable.append(m)
        return stable
    lead = 0
    while lead < len(messages) and messages[lead].get("role") in _SYSTEM_ROLES:
        lead += 1
    return [*messages[:lead], *(m for m in messages[lead:] if m.get(STATIC_KEY))]


def needs_cache_markers(provider: str, model: str) -> bool:
    """Whether the provider caches only up to explicit ``cache_control`` breakpoints."""
    name = model.lower()
    if provider == "anthropic":
        return True
    if provider == "bedrock":
        return "anthropic" in name or "claude" in name
    if provider in ("vertex_ai", "vertex_ai_beta"):
        return "claude" in name
    return False


def _min_cache_tokens(model: str) -> int:
    if "haiku" in model.lower():
        return ANTHROPIC_HAIKU_MIN_CACHE_TOKENS
    return ANTHROPIC_MIN_CACHE_TOKENS


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text") or "") for p in content if isinstance(p, Mapping))
    return 0


def _has_marker(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("cache_control") is not None


def _breakpoints(messages: Sequence[Mapping[str, Any]], tools: Any) -> int:
    count = 0
    for m in messages:
        count += _has_marker(m)
        content = m.get("content")
        if isinstance(content, list):
            count += sum(_has_marker(p) for p in content)
    if isinstance(tools, list):
        count += sum(_has_marker(t) for t in tools)
    return count


def _carries_marker(message: Mapping[str, Any]) -> bool:
    content = message.get("content")
    return _has_marker(message) or (
        isinstance(content, list) and bool(content) and _has_marker(content[-1])
    )


def _with_marker(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of ``message`` with a breakpoint on its last content part (None if it has
    no text to put one on)."""
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            return None  # Anthropic rejects empty text blocks
        parts: list[Any] = [{"type": "text", "text": content, "cache_control": dict(_EPHEMERAL)}]
    elif isinstance(content, list) and content and isinstance(content[-1], Mapping):
        parts = [*content[:-1], {**content[-1], "cache_control": dict(_EPHEMERAL)}]
    else:
        return None
    return {**message, "content": parts}


def mark_for_provider(
    provider: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    prefix_tokens: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Add ``cache_control`` breakpoints for providers that need them; others unchanged.

    ``messages`` are laid out by ``arrange`` (pass its output). For Anthropic (and Claude
    on Bedrock / Vertex AI) a breakpoint goes on the last stable message (string content
    becomes a one-part list) and on the last tool, when the stable prefix is at least
    the model's minimum cacheable size (``prefix_tokens``, else estimated at
    ``CHARS_PER_TOKEN`` characters a token). Breakpoints the developer already placed
    count against Anthropic's limit of ``MAX_CACHE_BREAKPOINTS``; none is added past it.
    Other providers cache prefixes by themselves: their inputs come back as they are.
    Messages still carrying static markers are arranged first (a marker never reaches
    the engine).
    """
    if any(STATIC_KEY in m for m in messages):
        messages, params = arrange(messages, params)
    if not needs_cache_markers(provider, model):
        return _as_list(messages), _as_dict(params)
    stable = stable_messages(messages)
    tools = params.get("tools")
    tool_list = tools if isinstance(tools, list) and tools else None
    if prefix_tokens is None:
        chars = sum(_text_chars(m.get("content")) for m in stable)
        if tool_list is not None:
            chars += len(json.dumps(tool_list, default=str))
        prefix_tokens = chars // CHARS_PER_TOKEN
    if prefix_tokens < _min_cache_tokens(model):
        return _as_list(messages), _as_dict(params)
    room = MAX_CACHE_BREAKPOINTS - _breakpoints(messages, tools)
    out = list(messages)
    # The message breakpoint first: it caches tools, system and static parts at once
    # (Anthropic's prefix runs tools → system → messages); the tool one lets the tools
    # stay cached when the system prompt changes.
    stable_ids = {id(m) for m in stable}
    last = max((i for i, m in enumerate(out) if id(m) in stable_ids), default=-1)
    for i in range(last, -1, -1):
        if id(out[i]) not in stable_ids:
            continue
        if room <= 0 or _carries_marker(out[i]):
            break  # no room left, or the developer already put a breakpoint here
        marked = _with_marker(out[i])
        if marked is not None:  # None: no text to mark (e.g. empty): try the one before
            out[i] = marked
            room -= 1
            break
    new_params = dict(params)
    if tool_list is not None and room > 0 and not _has_marker(tool_list[-1]):
        new_params["tools"] = [
            *tool_list[:-1],
            {**tool_list[-1], "cache_control": dict(_EPHEMERAL)},
        ]
    return _as_list(out), new_params


def _as_list(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A plain list of dicts (what goes to litellm), without copying what already is."""
    return [m if isinstance(m, dict) else dict(m) for m in messages]


def _as_dict(params: Mapping[str, Any]) -> dict[str, Any]:
    return params if isinstance(params, dict) else dict(params)


def prefix_key(messages: Sequence[Mapping[str, Any]], tools: Any = None) -> str:
    """A hash of the prompt's stable prefix: leading system messages, static-marked
    messages and tool schemas (the same before and after ``arrange``); the route stage
    pins it to a replica."""
    stable: list[Any] = [[m.get("role"), m.get("content")] for m in stable_messages(messages)]
    if not stable and messages:
        # no system prompt: the first message's opening stands in for the prefix
        stable.append(str(messages[0].get("content"))[:256])
    if tools:
        stable.append(tools)
    blob = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def trim_oldest(messages: list[dict[str, Any]]) -> bool:
    """Drop the oldest conversation turn in place (never a system message, never the
    last message; static documents only once no other turn is left); False if none
    is left to drop. What ``on_budget="trim"`` does until the prompt fits."""
    stable = {id(m) for m in stable_messages(messages)}
    droppable = [i for i, m in enumerate(messages[:-1]) if m.get("role") not in _SYSTEM_ROLES]
    for i in sorted(droppable, key=lambda i: (id(messages[i]) in stable, i)):
        del messages[i]
        return True
    return False
