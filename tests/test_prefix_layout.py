"""Prompt layout (pure functions): stable part first, markers stripped, canonical tools,
and Anthropic cache_control breakpoints only where they pay."""

from __future__ import annotations

import copy
import json
import pickle
import random
from typing import Any

import pytest

from agentflow._errors import ConfigError
from agentflow.pipeline.layout import (
    ANTHROPIC_HAIKU_MIN_CACHE_TOKENS,
    ANTHROPIC_MIN_CACHE_TOKENS,
    MAX_CACHE_BREAKPOINTS,
    arrange,
    mark_for_provider,
    needs_cache_markers,
    prefix_key,
    stable_messages,
    static,
)

SYSTEM = {"role": "system", "content": "You answer questions about invoices."}
DOC = {"role": "user", "content": "Invoice policy: " + "net 30 days. " * 10}
SHOTS = [
    {"role": "user", "content": "Example question?"},
    {"role": "assistant", "content": "Example answer."},
]
CHAT = [
    {"role": "user", "content": "What is net 30?"},
    {"role": "assistant", "content": "Payment within 30 days."},
    {"role": "user", "content": "And net 60?"},
]

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
LOOKUP: dict[str, Any] = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every dict's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _long(n_tokens: int) -> str:
    return "x" * (4 * n_tokens)


# -- arrange ---------------------------------------------------------------------------


def test_static_marks_a_copy() -> None:
    marked = static(DOC)
    assert marked == {**DOC, "static": True}
    assert "static" not in DOC


@pytest.mark.parametrize("bad", [{"content": "no role"}, "text", None])
def test_static_needs_a_chat_message(bad: Any) -> None:
    with pytest.raises(ConfigError, match="chat message"):
        static(bad)


@pytest.mark.parametrize(
    "message",
    [
        {"role": "tool", "tool_call_id": "1", "content": "42"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
    ],
)
def test_tool_messages_cannot_move(message: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="tool"):
        static(message)
    with pytest.raises(ConfigError, match="tool"):
        arrange([SYSTEM, {"role": "user", "content": "q"}, {**message, "static": True}], {})


def test_static_messages_move_right_after_the_system_prompt() -> None:
    messages = [SYSTEM, CHAT[0], static(SHOTS[0]), CHAT[1], static(SHOTS[1]), CHAT[2], static(DOC)]
    arranged, _ = arrange(messages, {})
    assert arranged == [SYSTEM, *SHOTS, DOC, *CHAT]


def test_the_conversation_keeps_its_order() -> None:
    rng = random.Random(7)
    for _ in range(50):
        chat = [{"role": "user", "content": f"turn {i}"} for i in range(8)]
        marked = rng.sample(range(8), 3)
        messages = [SYSTEM] + [static(m) if i in marked else m for i, m in enumerate(chat)]
        arranged, _ = arrange(messages, {})
        assert arranged[0] == SYSTEM
        assert arranged[1:4] == [chat[i] for i in sorted(marked)]
        assert arranged[4:] == [m for i, m in enumerate(chat) if i not in marked]


def test_markers_never_survive() -> None:
    messages = [
        {**SYSTEM, "static": True},
        {**CHAT[0], "static": False},
        static(DOC),
        CHAT[1],
    ]
    arranged, _ = arrange(messages, {})
    assert all("static" not in m for m in arranged)
    assert arranged == [SYSTEM, DOC, CHAT[0], CHAT[1]]
    # a False marker is stripped and moves nothing
    arranged, _ = arrange([SYSTEM, {**CHAT[0], "static": False}, CHAT[1]], {})
    assert arranged == [SYSTEM, CHAT[0], CHAT[1]]


def test_leading_system_messages_stay_first_and_later_ones_stay_put() -> None:
    dev = {"role": "developer", "content": "Be brief."}
    late = {"role": "system", "content": "The user is a premium customer."}
    arranged, _ = arrange([SYSTEM, dev, CHAT[0], late, static(DOC)], {})
    assert arranged == [SYSTEM, dev, DOC, CHAT[0], late]


def test_nothing_to_move_gives_a_fresh_copy_and_the_same_params() -> None:
    messages = [SYSTEM, *CHAT]
    params = {"max_tokens": 5}
    arranged, out = arrange(messages, params)
    assert arranged == messages
    assert arranged is not messages
    assert all(a is not m for a, m in zip(arranged, messages, strict=True))
    assert out is params
    arranged.pop()  # the caller may trim its copy: the developer's list is untouched
    assert len(messages) == 4


def test_inputs_are_not_mutated() -> None:
    messages = [SYSTEM, CHAT[0], static(DOC)]
    before = json.dumps(messages)
    params = {"tools": [WEATHER]}
    arrange(messages, params)
    assert json.dumps(messages) == before
    assert params == {"tools": [WEATHER]}


def test_tools_are_canonical_whatever_the_dict_order() -> None:
    rng = random.Random(3)
    blobs = set()
    for _ in range(20):
        tools = _shuffled([WEATHER, LOOKUP], rng)
        _, params = arrange([SYSTEM], {"tools": tools, "max_tokens": 3})
        assert params["tools"] == [WEATHER, LOOKUP]
        assert params["max_tokens"] == 3
        blobs.add(json.dumps(params["tools"]))  # bytes as the HTTP client would send them
    assert len(blobs) == 1


def test_the_list_of_tools_keeps_the_developers_order() -> None:
    _, params = arrange([SYSTEM], {"tools": [LOOKUP, WEATHER]})
    assert [t["function"]["name"] for t in params["tools"]] == ["lookup", "weather"]


def test_stable_part_and_prefix_key_are_the_same_before_and_after_arrange() -> None:
    messages = [SYSTEM, CHAT[0], static(DOC), CHAT[1]]
    arranged, _ = arrange(messages, {})
    assert [dict(m) for m in stable_messages(arranged)] == [SYSTEM, DOC]
    assert [{k: v for k, v in m.items() if k != "static"} for m in stable_messages(messages)] == [
        SYSTEM,
        DOC,
    ]
    assert prefix_key(arranged) == prefix_key(messages)
    # the static document is part of the prefix: another document is another prefix
    other = [SYSTEM, CHAT[0], static({**DOC, "content": "another document"}), CHAT[1]]
    assert prefix_key(other) != prefix_key(messages)
    # the dynamic part is not
    assert prefix_key([SYSTEM, CHAT[2], static(DOC)]) == prefix_key(messages)


def test_without_a_system_prompt_the_static_part_leads() -> None:
    late = {"role": "system", "content": "Answer in French."}
    messages = [CHAT[0], static(DOC), late, CHAT[2]]
    arranged, _ = arrange(messages, {})
    assert arranged == [DOC, CHAT[0], late, CHAT[2]]
    assert [dict(m) for m in stable_messages(arranged)] == [DOC]
    assert prefix_key(arranged) == prefix_key(messages)


def test_trimming_in_place_keeps_the_stable_part_right() -> None:
    arranged, _ = arrange([SYSTEM, static(SHOTS[0]), static(SHOTS[1]), *CHAT], {})
    del arranged[1]  # a budget trim drops the oldest non-system message
    assert [dict(m) for m in stable_messages(arranged)] == [SYSTEM, SHOTS[1]]


def test_copies_keep_the_stable_part() -> None:
    arranged, _ = arrange([SYSTEM, CHAT[0], static(DOC), CHAT[1]], {})
    for copied in (
        copy.copy(arranged),
        copy.deepcopy(arranged),
        pickle.loads(pickle.dumps(arranged)),
    ):
        assert copied == arranged
        assert [dict(m) for m in stable_messages(copied)] == [SYSTEM, DOC]
        assert prefix_key(copied) == prefix_key(arranged)
    # a plain list has no memory of the markers: the system prompt alone is stable
    assert [dict(m) for m in stable_messages(list(arranged))] == [SYSTEM]


# -- mark_for_provider -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("anthropic", "anthropic/claude-sonnet-4-5", True),
        ("bedrock", "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", True),
        ("bedrock", "bedrock/us.anthropic.claude-3-7-sonnet", True),
        ("bedrock", "bedrock/amazon.nova-pro-v1:0", False),
        ("vertex_ai", "vertex_ai/claude-3-5-sonnet@20240620", True),
        ("vertex_ai", "vertex_ai/gemini-2.0-flash", False),
        ("openai", "openai/gpt-4o", False),
        ("openai", "openai/smollm2-135m", False),
        ("hosted_vllm", "hosted_vllm/llama", False),
    ],
)
def test_which_providers_need_markers(provider: str, model: str, expected: bool) -> None:
    assert needs_cache_markers(provider, model) is expected


def _long_prompt(tokens: int = ANTHROPIC_MIN_CACHE_TOKENS + 100) -> list[dict[str, Any]]:
    arranged, _ = arrange([{"role": "system", "content": _long(tokens)}, *CHAT, static(DOC)], {})
    return arranged


def _markers(messages: list[dict[str, Any]], params: dict[str, Any]) -> int:
    blob = json.dumps([messages, params.get("tools")])
    return blob.count('"cache_control"')


def test_anthropic_gets_a_breakpoint_on_the_last_stable_message_and_tool() -> None:
    arranged = _long_prompt()
    params = {"tools": [LOOKUP, WEATHER], "max_tokens": 8}
    messages, out = mark_for_provider("anthropic", "anthropic/claude-sonnet-4-5", arranged, params)
    # the last stable message is the static document, now second
    assert messages[1]["content"] == [
        {"type": "text", "text": DOC["content"], "cache_control": {"type": "ephemeral"}}
    ]
    assert messages[0] == arranged[0]  # the system prompt is before the breakpoint
    assert messages[2:] == CHAT  # dynamic messages never carry one
    assert out["tools"][-1] == {**WEATHER, "cache_control": {"type": "ephemeral"}}
    assert out["tools"][0] == LOOKUP
    assert out["max_tokens"] == 8
    # nothing given was changed
    assert isinstance(arranged[1]["content"], str)
    assert "cache_control" not in params["tools"][-1]


def test_a_content_list_gets_the_marker_on_its_last_part() -> None:
    system = {
        "role": "system",
        "content": [{"type": "text", "text": _long(800)}, {"type": "text", "text": _long(400)}],
    }
    messages, _ = mark_for_provider(
        "bedrock", "bedrock/anthropic.claude-3-5-sonnet", [system, CHAT[0]], {}
    )
    parts = messages[0]["content"]
    assert "cache_control" not in parts[0]
    assert parts[1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in system["content"][1]


def test_short_prefixes_get_no_marker() -> None:
    short = _long_prompt(ANTHROPIC_MIN_CACHE_TOKENS // 2)
    params = {"tools": [WEATHER]}
    messages, out = mark_for_provider("anthropic", "anthropic/claude-sonnet-4-5", short, params)
    assert _markers(messages, out) == 0
    # the caller's count wins over the estimate
    messages, out = mark_for_provider(
        "anthropic", "anthropic/claude-sonnet-4-5", short, params, prefix_tokens=5000
    )
    assert _markers(messages, out) == 2


def test_haiku_needs_a_longer_prefix() -> None:
    between = _long_prompt((ANTHROPIC_MIN_CACHE_TOKENS + ANTHROPIC_HAIKU_MIN_CACHE_TOKENS) // 2)
    sonnet, _ = mark_for_provider("anthropic", "anthropic/claude-sonnet-4-5", between, {})
    haiku, _ = mark_for_provider("anthropic", "anthropic/claude-3-5-haiku-latest", between, {})
    assert _markers(sonnet, {}) == 1
    assert _markers(haiku, {}) == 0
    longer = _long_prompt(ANTHROPIC_HAIKU_MIN_CACHE_TOKENS + 10)
    haiku, _ = mark_for_provider("vertex_ai", "vertex_ai/claude-3-5-haiku@2024", longer, {})
    assert _markers(haiku, {}) == 1


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "openai/gpt-4o"),
        ("openai", "openai/smollm2-135m"),
        ("hosted_vllm", "hosted_vllm/qwen"),
        ("bedrock", "bedrock/meta.llama3-70b"),
        ("vertex_ai", "vertex_ai/gemini-2.0-flash"),
    ],
)
def test_other_providers_get_the_request_unchanged(provider: str, model: str) -> None:
    arranged = _long_prompt(5000)
    params = {"tools": [WEATHER], "max_tokens": 3}
    messages, out = mark_for_provider(provider, model, arranged, params)
    assert messages == arranged
    assert out == params
    assert _markers(messages, out) == 0


def test_no_more_than_four_breakpoints() -> None:
    # the developer already placed three; only one more fits: on the last stable message
    mine = {"type": "text", "text": "history", "cache_control": {"type": "ephemeral"}}
    messages = [
        {"role": "system", "content": _long(2000)},
        {"role": "user", "content": [mine]},
        {"role": "assistant", "content": [mine]},
        {"role": "user", "content": [mine]},
    ]
    marked, out = mark_for_provider(
        "anthropic", "anthropic/claude-opus-4", messages, {"tools": [WEATHER]}
    )
    assert _markers(marked, out) == MAX_CACHE_BREAKPOINTS
    assert marked[0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in out["tools"][-1]
    # four already: none added
    messages.insert(1, {"role": "user", "content": [mine]})
    marked, out = mark_for_provider(
        "anthropic", "anthropic/claude-opus-4", messages, {"tools": [WEATHER]}
    )
    assert _markers(marked, out) == MAX_CACHE_BREAKPOINTS
    assert marked[0] == messages[0]


def test_an_existing_breakpoint_on_the_stable_message_is_not_doubled() -> None:
    system = {
        "role": "system",
        "content": [{"type": "text", "text": _long(3000), "cache_control": {"type": "ephemeral"}}],
    }
    marked, _ = mark_for_provider("anthropic", "anthropic/claude-sonnet-4-5", [system, CHAT[0]], {})
    assert _markers(marked, {}) == 1


def test_tools_alone_can_make_the_prefix_long_enough() -> None:
    big_tool = {**WEATHER, "function": {**WEATHER["function"], "description": _long(1500)}}
    marked, out = mark_for_provider(
        "anthropic", "anthropic/claude-sonnet-4-5", [CHAT[0]], {"tools": [big_tool]}
    )
    assert marked == [CHAT[0]]  # no stable message: the tools are the whole prefix
    assert out["tools"][0]["cache_control"] == {"type": "ephemeral"}


def test_markers_left_on_messages_never_reach_the_engine() -> None:
    messages = [SYSTEM, CHAT[0], static(DOC)]
    for provider, model in [("openai", "openai/x"), ("anthropic", "anthropic/claude-sonnet-4")]:
        marked, _ = mark_for_provider(provider, model, messages, {})
        assert all("static" not in m for m in marked)
        assert [m["role"] for m in marked] == ["system", "user", "user"]
        assert marked[1] == DOC or marked[1]["content"][0]["text"] == DOC["content"]
