"""Prompt and completion text on spans: hiding, truncation and redaction."""

from __future__ import annotations

import json

import pytest
from openinference.semconv.trace import MessageAttributes as M
from openinference.semconv.trace import SpanAttributes as OI
from openinference.semconv.trace import ToolCallAttributes as TC

import tracing
from tracing import ContentConfig

KEY = "sk-test-1234567890abcdef"

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
]
TOOL_REPLY = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'},
        }
    ],
}


def _in(i: int, attr: str) -> str:
    return f"{OI.LLM_INPUT_MESSAGES}.{i}.{attr}"


def _out(attr: str) -> str:
    return f"{OI.LLM_OUTPUT_MESSAGES}.0.{attr}"


def test_messages_and_output_are_captured() -> None:
    attrs = tracing.content_attributes(MESSAGES, "4", None, ContentConfig())
    assert json.loads(str(attrs[OI.INPUT_VALUE])) == MESSAGES
    assert attrs[OI.INPUT_MIME_TYPE] == "application/json"
    assert attrs[_in(0, M.MESSAGE_ROLE)] == "system"
    assert attrs[_in(1, M.MESSAGE_CONTENT)] == "What is 2+2?"
    assert attrs[OI.OUTPUT_VALUE] == "4"
    assert attrs[_out(M.MESSAGE_ROLE)] == "assistant"
    assert attrs[_out(M.MESSAGE_CONTENT)] == "4"


def test_tool_calls_in_output_message() -> None:
    attrs = tracing.content_attributes(MESSAGES, None, TOOL_REPLY, ContentConfig())
    base = f"{OI.LLM_OUTPUT_MESSAGES}.0.{M.MESSAGE_TOOL_CALLS}.0"
    assert attrs[f"{base}.{TC.TOOL_CALL_ID}"] == "call_1"
    assert attrs[f"{base}.{TC.TOOL_CALL_FUNCTION_NAME}"] == "add"
    assert json.loads(str(attrs[f"{base}.{TC.TOOL_CALL_FUNCTION_ARGUMENTS_JSON}"])) == {
        "a": 2,
        "b": 2,
    }
    assert json.loads(str(attrs[OI.OUTPUT_VALUE]))["tool_calls"][0]["id"] == "call_1"


def test_content_parts_keep_text_and_drop_image_data() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
    attrs = tracing.content_attributes([message], None, None, ContentConfig())
    prefix = _in(0, M.MESSAGE_CONTENTS)
    assert attrs[f"{prefix}.0.message_content.type"] == "text"
    assert attrs[f"{prefix}.0.message_content.text"] == "describe"
    assert attrs[f"{prefix}.1.message_content.type"] == "image"
    assert not [v for k, v in attrs.items() if k != OI.INPUT_VALUE and "base64" in str(v)]


@pytest.mark.parametrize(
    ("config", "inputs_shown", "outputs_shown"),
    [
        (ContentConfig(capture_content=False), False, False),
        (ContentConfig(hide_inputs=True), False, True),
        (ContentConfig(hide_outputs=True), True, False),
    ],
)
def test_hiding(config: ContentConfig, inputs_shown: bool, outputs_shown: bool) -> None:
    attrs = tracing.content_attributes(MESSAGES, "4", None, config)
    text = json.dumps(attrs)
    assert ("What is 2+2?" in text) is inputs_shown
    assert (attrs[OI.OUTPUT_VALUE] == "4") is outputs_shown
    if not inputs_shown:
        assert attrs[OI.INPUT_VALUE] == "__REDACTED__"
        assert not [k for k in attrs if k.startswith(OI.LLM_INPUT_MESSAGES)]
    if not outputs_shown:
        assert attrs[OI.OUTPUT_VALUE] == "__REDACTED__"
        assert not [k for k in attrs if k.startswith(OI.LLM_OUTPUT_MESSAGES)]


def test_env_hides_and_explicit_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENINFERENCE_HIDE_INPUTS", "true")
    monkeypatch.setenv("OPENINFERENCE_HIDE_OUTPUTS", "TRUE")
    monkeypatch.setenv("AGENTFLOW_MAX_CONTENT_CHARS", "100")
    from_env = ContentConfig.from_env()
    assert from_env == ContentConfig(hide_inputs=True, hide_outputs=True, max_chars=100)
    assert ContentConfig.from_env(hide_inputs=False).hide_inputs is False
    assert ContentConfig().hide_inputs is False  # the plain constructor is the defaults
    monkeypatch.setenv("AGENTFLOW_CAPTURE_CONTENT", "0")
    assert ContentConfig.from_env().capture_content is False
    assert ContentConfig.from_env(capture_content=True).capture_content is True


def test_bad_env_value_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENINFERENCE_HIDE_INPUTS", "maybe")
    with pytest.raises(ValueError, match=r"OPENINFERENCE_HIDE_INPUTS='maybe'.*true"):
        ContentConfig.from_env()


def test_default_config_is_the_process_one() -> None:
    tracing.set_content_config(ContentConfig(hide_outputs=True))
    attrs = tracing.content_attributes(MESSAGES, "4")
    assert attrs[OI.OUTPUT_VALUE] == "__REDACTED__"
    assert tracing.content_config().hide_outputs is True


def test_truncation_marks_what_was_cut() -> None:
    long = "x" * 1000
    attrs = tracing.content_attributes(
        [{"role": "user", "content": long}], long, None, ContentConfig(max_chars=100)
    )
    content = str(attrs[_in(0, M.MESSAGE_CONTENT)])
    assert content.startswith("x" * 100)
    assert content.endswith("…[truncated 900 chars]")
    assert len(str(attrs[OI.INPUT_VALUE])) < 200
    assert str(attrs[OI.OUTPUT_VALUE]).endswith("…[truncated 900 chars]")
    assert tracing.truncate("short", 100) == "short"


def test_secrets_never_reach_content_attributes() -> None:
    messages = [
        {"role": "user", "content": f"my key is {KEY}, header Authorization: Bearer xyz"},
        {"role": "tool", "tool_call_id": "c1", "content": f'{{"api_key": "{KEY}"}}'},
    ]
    attrs = tracing.content_attributes(
        messages, f"use {KEY}", None, ContentConfig(max_chars=10_000)
    )
    text = json.dumps(attrs)
    assert KEY not in text
    assert "Bearer xyz" not in text
    assert "[REDACTED]" in str(attrs[_in(0, M.MESSAGE_CONTENT)])


def test_truncation_cannot_leave_half_a_key() -> None:
    text = "a" * 94 + " " + KEY
    attrs = tracing.content_attributes(
        [{"role": "user", "content": text}], None, None, ContentConfig(max_chars=100)
    )
    assert "sk-te" not in json.dumps(attrs)
