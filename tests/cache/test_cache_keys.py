"""request_key and partition_key: what makes two requests the same, and what cannot be keyed."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from pydantic import BaseModel

from agentflow._errors import AgentflowError, CacheKeyError
from agentflow.cache import partition_key, request_key

SYSTEM: dict[str, Any] = {"role": "system", "content": "You answer in one word."}
USER: dict[str, Any] = {"role": "user", "content": "What is the capital of France?"}
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a city up.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def key(
    messages: list[Any] | None = None,
    tier: str = "workhorse",
    step: str | None = "plan",
    scope: str = "user:u1",
    **params: Any,
) -> str:
    return request_key(
        tier=tier,
        messages=[SYSTEM, USER] if messages is None else messages,
        params=params,
        step=step,
        scope=scope,
    )


def part(
    messages: list[Any] | None = None,
    tier: str = "workhorse",
    step: str | None = "plan",
    scope: str = "user:u1",
    embedder: str = "",
    **params: Any,
) -> str:
    return partition_key(
        tier=tier,
        messages=[SYSTEM, USER] if messages is None else messages,
        params=params,
        step=step,
        scope=scope,
        embedder=embedder,
    )


class Answer(BaseModel):
    city: str


class Other(BaseModel):
    city: str
    country: str


def test_key_is_versioned_sha256_hex_and_deterministic() -> None:
    assert re.fullmatch(r"req-v1:[0-9a-f]{64}", key())
    assert key() == key()
    assert re.fullmatch(r"part-v1:[0-9a-f]{64}", part())


@pytest.mark.parametrize(
    ("changed", "params"),
    [
        ("tools", {"tools": [TOOL]}),
        ("tool_choice", {"tools": [TOOL], "tool_choice": "required"}),
        ("response_format", {"response_format": {"type": "json_object"}}),
        ("response_format class", {"response_format": Answer}),
        ("temperature", {"temperature": 0.7}),
        ("top_p", {"top_p": 0.5}),
        ("max_tokens", {"max_tokens": 16}),
        ("max_completion_tokens", {"max_completion_tokens": 16}),
        ("stop", {"stop": ["\n"]}),
        ("seed", {"seed": 7}),
        ("n", {"n": 2}),
        ("presence_penalty", {"presence_penalty": 0.5}),
        ("frequency_penalty", {"frequency_penalty": 0.5}),
        ("logit_bias", {"logit_bias": {"50256": -100}}),
        ("logprobs", {"logprobs": True}),
        ("top_logprobs", {"top_logprobs": 3}),
        ("unknown params stay in", {"extra_body": {"top_k": 20}}),
    ],
)
def test_every_answer_changing_param_changes_the_key(changed: str, params: dict[str, Any]) -> None:
    assert key(**params) != key(), changed


def test_tools_tool_choice_and_their_content_all_count() -> None:
    other_tool = {**TOOL, "function": {**TOOL["function"], "name": "find"}}
    assert key(tools=[TOOL]) != key(tools=[other_tool])
    assert key(tools=[TOOL], tool_choice="auto") != key(tools=[TOOL], tool_choice="none")
    assert key(temperature=0.2) != key(temperature=0.3)
    assert key(seed=1) != key(seed=2)
    assert key(response_format=Answer) != key(response_format=Other)


@pytest.mark.parametrize(
    ("field", "a", "b"),
    [("tier", "workhorse", "heavy"), ("step", "plan", "verify"), ("scope", "user:u1", "user:u2")],
)
def test_tier_step_and_scope_change_the_key(field: str, a: str, b: str) -> None:
    first: dict[str, Any] = {field: a}
    second: dict[str, Any] = {field: b}
    assert key(**first) != key(**second)
    assert part(**first) != part(**second)
    assert key(step=None) != key(step="plan")


def test_messages_change_the_key() -> None:
    assert key([SYSTEM, {**USER, "content": "And of Spain?"}]) != key()
    assert key([USER]) != key()
    assert key([{**USER, "name": "alice"}, SYSTEM]) != key([SYSTEM, {**USER, "name": "alice"}])


def test_dict_key_order_does_not_matter_at_any_depth() -> None:
    shuffled_tool = {
        "function": {
            "parameters": {
                "required": ["city"],
                "properties": {"country": {"type": "string"}, "city": {"type": "string"}},
                "type": "object",
            },
            "description": "Look a city up.",
            "name": "lookup",
        },
        "type": "function",
    }
    shuffled = [
        {"content": SYSTEM["content"], "role": "system"},
        {"content": USER["content"], "role": "user"},
    ]
    assert key(shuffled, tools=[shuffled_tool], temperature=0) == key(tools=[TOOL], temperature=0)
    assert key(seed=1, temperature=0) == key(temperature=0, seed=1)


@pytest.mark.parametrize(
    "transport",
    [
        {"timeout": 30},
        {"api_key": "sk-secret"},
        {"api_base": "http://127.0.0.1:8081/v1"},
        {"metadata": {"trace": "x"}},
        {"stream_options": {"include_usage": True}},
        {"extra_headers": {"X-Id": "1"}},
        {"user": "u1"},
        {"stream": True},
        {"model": "openai/smollm2-135m"},
        {"num_retries": 3},
        {"aws_secret_access_key": "x"},
        {"prompt_cache_key": "abc"},
    ],
)
def test_transport_params_do_not_change_the_key(transport: dict[str, Any]) -> None:
    assert key(temperature=0, **transport) == key(temperature=0)


def test_transport_params_are_not_even_serialised() -> None:
    assert key(timeout=object(), api_key=object()) == key()  # an httpx.Timeout, a callable...


def test_normalisations_that_do_not_change_the_wire_form() -> None:
    assert key(temperature=0) == key(temperature=0.0)
    assert key(temperature=None) == key()  # None is "not set"
    assert key(stop=("a", "b")) == key(stop=["a", "b"])
    assert key(logit_bias={50256: -100}) == key(logit_bias={"50256": -100})
    assert key([SYSTEM, {**USER, "name": None}]) == key()


def test_pydantic_message_is_its_json_dump() -> None:
    class Message(BaseModel):
        role: str
        content: str
        name: str | None = None

    assert key([SYSTEM, Message(**USER)]) == key()


def test_pydantic_class_response_format_keys_on_name_and_schema() -> None:
    def make(field_type: type) -> type[BaseModel]:
        class Answer(BaseModel):
            city: field_type  # type: ignore[valid-type]

        return Answer

    assert key(response_format=make(str)) == key(response_format=make(str))
    assert key(response_format=make(str)) != key(response_format=make(int))  # schema changed
    assert key(response_format=Answer) != key(response_format=make(str))  # another class


@pytest.mark.parametrize(
    ("where", "expected_part"),
    [
        (
            {"messages": [SYSTEM, USER, {"role": "user", "content": object()}]},
            "messages[2].content",
        ),
        ({"messages": [SYSTEM, {"role": "user", "content": {"a", "b"}}]}, "messages[1].content"),
        ({"params": {"temperature": math.nan}}, "temperature"),
        ({"params": {"top_p": math.inf}}, "top_p"),
        (
            {
                "params": {
                    "tools": [{**TOOL, "function": {**TOOL["function"], "parameters": object()}}]
                }
            },
            "tools[0].function.parameters",
        ),
        (
            {"params": {"tools": [{"function": {"parameters": {"x-y": {"default": b"raw"}}}}]}},
            "tools[0].function.parameters['x-y'].default",
        ),
        ({"params": {"logit_bias": {(1, 2): 3}}}, "logit_bias key (1, 2)"),
    ],
)
def test_unserialisable_parts_raise_naming_the_part(
    where: dict[str, Any], expected_part: str
) -> None:
    with pytest.raises(CacheKeyError) as info:
        request_key(
            tier="t",
            messages=where.get("messages", [USER]),
            params=where.get("params", {}),
            step=None,
            scope="s",
        )
    assert info.value.part == expected_part
    assert expected_part in str(info.value)
    assert "cache=None" in str(info.value)  # the message says what to do
    assert isinstance(info.value, AgentflowError)


def test_a_cycle_raises_instead_of_recursing_forever() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CacheKeyError, match="nested"):
        key(tools=loop)


def test_partition_ignores_only_the_last_user_text() -> None:
    history = [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ask_a = [*history, {"role": "user", "content": "Capital of France?"}]
    ask_b = [*history, {"role": "user", "content": "What's France's capital city?"}]
    assert part(ask_a) == part(ask_b)
    assert key(ask_a) != key(ask_b)
    # everything else still splits partitions
    other_history = [SYSTEM, {"role": "user", "content": "Hey"}, history[2], ask_a[-1]]
    assert part(other_history) != part(ask_a)
    other_system = [{"role": "system", "content": "Answer at length."}, *ask_a[1:]]
    assert part(other_system) != part(ask_a)
    assert part(ask_a, tools=[TOOL]) != part(ask_a)
    assert part(ask_a, response_format=Answer) != part(ask_a)
    assert part(ask_a, temperature=0.5) != part(ask_a)
    assert part(ask_a, embedder="bge-small") != part(ask_a, embedder="e5-large")
    assert part(ask_a, seed=3, timeout=5) == part(ask_b, seed=3)


def test_partition_keeps_the_position_and_what_follows_the_text() -> None:
    asked = [SYSTEM, USER]
    prefilled = [SYSTEM, USER, {"role": "assistant", "content": "Paris"}]
    assert part(asked) != part(prefilled)
    tool_turn = [SYSTEM, USER, {"role": "tool", "tool_call_id": "1", "content": "FR: Paris"}]
    other_result = [SYSTEM, USER, {"role": "tool", "tool_call_id": "1", "content": "FR: Lyon"}]
    assert part(tool_turn) != part(other_result)


def test_partition_keeps_images_but_not_the_text_of_list_content() -> None:
    def ask(text: str, url: str) -> list[Any]:
        content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
        return [SYSTEM, {"role": "user", "content": content}]

    assert part(ask("What is this?", "data:a")) == part(ask("What's that?", "data:a"))
    assert part(ask("What is this?", "data:a")) != part(ask("What is this?", "data:b"))


def test_partition_raises_like_request_key() -> None:
    with pytest.raises(CacheKeyError) as info:
        part([SYSTEM, {"role": "user", "content": object()}])
    assert info.value.part == "messages[1].content"
