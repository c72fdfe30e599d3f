"""Prompt and completion text on spans: whether, how much, and never a secret.

``ContentConfig`` follows openinference's ``TraceConfig``: a frozen dataclass where an
explicit argument wins, then the environment, then the default.

=============================  =====================================  =======
setting                        environment variable                   default
=============================  =====================================  =======
``capture_content``            ``AGENTFLOW_CAPTURE_CONTENT``          true
``hide_inputs``                ``OPENINFERENCE_HIDE_INPUTS``          false
``hide_outputs``               ``OPENINFERENCE_HIDE_OUTPUTS``         false
``max_chars``                  ``AGENTFLOW_MAX_CONTENT_CHARS``        8192
=============================  =====================================  =======
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.util.types import AttributeValue

from tracing._conventions import (
    REDACTED_VALUE,
    MessageAttributes,
    MessageContentAttributes,
    OpenInferenceMimeTypeValues,
    SpanAttributes,
    ToolCallAttributes,
)
from tracing._errors import ContentConfigError
from tracing._redact import redact, redact_mapping

__all__ = [
    "DEFAULT_MAX_CHARS",
    "ContentConfig",
    "content_attributes",
    "content_config",
    "set_content_config",
    "truncate",
]

DEFAULT_MAX_CHARS: Final = 8192

_ENV_CAPTURE: Final = "AGENTFLOW_CAPTURE_CONTENT"
_ENV_HIDE_INPUTS: Final = "OPENINFERENCE_HIDE_INPUTS"
_ENV_HIDE_OUTPUTS: Final = "OPENINFERENCE_HIDE_OUTPUTS"
_ENV_MAX_CHARS: Final = "AGENTFLOW_MAX_CONTENT_CHARS"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _env_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ContentConfigError(
        f"{name}={raw!r} is not a boolean: expected one of "
        f"{', '.join(sorted(_TRUE | _FALSE))}; set it to 'true' or 'false', or unset it."
    )


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ContentConfigError(
            f"{name}={raw!r} is not a positive integer: set it to e.g. 8192, or unset it."
        )
    return value


@dataclass(frozen=True)
class ContentConfig:
    """What message text goes on spans.

    ``capture_content=False`` keeps all prompt and completion text off spans;
    ``hide_inputs`` / ``hide_outputs`` hide one side (``input.value`` / ``output.value``
    become ``"__REDACTED__"`` as in openinference). Text longer than ``max_chars`` is cut
    and marked. ``ContentConfig()`` is the defaults; ``ContentConfig.from_env()`` reads the
    environment for whatever is not passed explicitly.
    """

    capture_content: bool = True
    hide_inputs: bool = False
    hide_outputs: bool = False
    max_chars: int = DEFAULT_MAX_CHARS

    def __post_init__(self) -> None:
        for field in ("capture_content", "hide_inputs", "hide_outputs"):
            value = getattr(self, field)
            if not isinstance(value, bool):
                raise ContentConfigError(
                    f"{field} must be True or False, got {type(value).__name__} {value!r}; "
                    "pass a bool, or None to read the environment."
                )
        if (
            isinstance(self.max_chars, bool)
            or not isinstance(self.max_chars, int)
            or self.max_chars < 1
        ):
            raise ContentConfigError(
                f"max_chars must be an int of at least 1, got {self.max_chars!r}; pass how "
                "many characters of each text go on a span, e.g. 8192."
            )

    @classmethod
    def from_env(
        cls,
        *,
        capture_content: bool | None = None,
        hide_inputs: bool | None = None,
        hide_outputs: bool | None = None,
        max_chars: int | None = None,
    ) -> ContentConfig:
        """Explicit arguments first, then the environment variables, then the defaults."""
        defaults = cls()

        def pick(explicit: Any, env: Any, default: Any) -> Any:
            if explicit is not None:
                return explicit
            return default if env is None else env

        return cls(
            capture_content=pick(capture_content, _env_bool(_ENV_CAPTURE), True),
            hide_inputs=pick(hide_inputs, _env_bool(_ENV_HIDE_INPUTS), defaults.hide_inputs),
            hide_outputs=pick(hide_outputs, _env_bool(_ENV_HIDE_OUTPUTS), defaults.hide_outputs),
            max_chars=pick(max_chars, _env_int(_ENV_MAX_CHARS), defaults.max_chars),
        )

    @property
    def inputs_visible(self) -> bool:
        return self.capture_content and not self.hide_inputs

    @property
    def outputs_visible(self) -> bool:
        return self.capture_content and not self.hide_outputs


# The process-wide config lives here, beside its value type, so that ``_setup`` (which
# stores it) depends on this module and never the other way round.
_content_lock = threading.Lock()
_content: ContentConfig | None = None


def content_config() -> ContentConfig:
    """The ``ContentConfig`` spans follow now: the one ``setup()`` stored, or else
    ``ContentConfig.from_env()``."""
    global _content
    with _content_lock:
        if _content is None:
            _content = ContentConfig.from_env()
        return _content


def set_content_config(config: ContentConfig) -> None:
    """Replace the process-wide ``ContentConfig`` (``setup()`` calls this)."""
    global _content
    with _content_lock:
        _content = config


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters plus a marker saying how much was cut."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}…[truncated {len(text) - max_chars} chars]"


def _clean(text: str, config: ContentConfig) -> str:
    # Redact before cutting, so a key split by the cut cannot slip through half-matched.
    return truncate(redact(text), config.max_chars)


def _as_mapping(obj: Any) -> Mapping[str, Any]:
    """Messages arrive as dicts, pydantic models (litellm) or plain objects."""
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dumped
    fields = ("role", "content", "name", "tool_calls", "tool_call_id", "function", "id", "type")
    return {f: getattr(obj, f) for f in fields if getattr(obj, f, None) is not None}


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _message_attributes(
    prefix: str, message: Mapping[str, Any], config: ContentConfig
) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    role = message.get("role")
    if role:
        attrs[f"{prefix}.{MessageAttributes.MESSAGE_ROLE}"] = str(role)
    if name := message.get("name"):
        attrs[f"{prefix}.{MessageAttributes.MESSAGE_NAME}"] = redact(str(name))
    if tool_call_id := message.get("tool_call_id"):
        attrs[f"{prefix}.{MessageAttributes.MESSAGE_TOOL_CALL_ID}"] = str(tool_call_id)
    content = message.get("content")
    if isinstance(content, str):
        attrs[f"{prefix}.{MessageAttributes.MESSAGE_CONTENT}"] = _clean(content, config)
    elif isinstance(content, Sequence):
        for j, raw_part in enumerate(content):
            part = _as_mapping(raw_part)
            base = f"{prefix}.{MessageAttributes.MESSAGE_CONTENTS}.{j}"
            kind = str(part.get("type", "text"))
            type_key = f"{base}.{MessageContentAttributes.MESSAGE_CONTENT_TYPE}"
            if kind == "text":
                attrs[type_key] = "text"
                text_key = f"{base}.{MessageContentAttributes.MESSAGE_CONTENT_TEXT}"
                attrs[text_key] = _clean(str(part.get("text", "")), config)
            elif kind == "image_url":
                # Only the type: an image URL may be a multi-megabyte data: URL.
                attrs[type_key] = "image"
            else:
                attrs[type_key] = kind
    for k, raw_call in enumerate(message.get("tool_calls") or ()):
        call = _as_mapping(raw_call)
        base = f"{prefix}.{MessageAttributes.MESSAGE_TOOL_CALLS}.{k}"
        if call_id := call.get("id"):
            attrs[f"{base}.{ToolCallAttributes.TOOL_CALL_ID}"] = str(call_id)
        function = _as_mapping(call.get("function") or {})
        if fname := function.get("name"):
            attrs[f"{base}.{ToolCallAttributes.TOOL_CALL_FUNCTION_NAME}"] = str(fname)
        arguments = function.get("arguments")
        if arguments is not None:
            text = arguments if isinstance(arguments, str) else _json(arguments)
            key = f"{base}.{ToolCallAttributes.TOOL_CALL_FUNCTION_ARGUMENTS_JSON}"
            attrs[key] = _clean(text, config)
    return attrs


def content_attributes(
    input_messages: Sequence[Any] = (),
    output_text: str | None = None,
    output_message: Any | None = None,
    config: ContentConfig | None = None,
) -> dict[str, AttributeValue]:
    """The prompt and completion of one call as OpenInference attributes.

    ``input.value`` (the messages as JSON) and ``llm.input_messages.{i}.message.*``;
    ``output.value`` and ``llm.output_messages.0.message.*`` (tool calls included).
    Follows ``config`` (default: ``tracing.content_config()``): hidden sides are replaced
    by ``"__REDACTED__"``, every string is redacted of secrets and cut at ``max_chars``.
    """
    if config is None:
        config = content_config()
    attrs: dict[str, AttributeValue] = {}
    messages = [_as_mapping(m) for m in input_messages]
    if messages:
        if config.inputs_visible:
            attrs[SpanAttributes.INPUT_VALUE] = _clean(_json(redact_mapping(messages)), config)
            attrs[SpanAttributes.INPUT_MIME_TYPE] = OpenInferenceMimeTypeValues.JSON.value
            for i, message in enumerate(messages):
                prefix = f"{SpanAttributes.LLM_INPUT_MESSAGES}.{i}"
                attrs.update(_message_attributes(prefix, message, config))
        else:
            attrs[SpanAttributes.INPUT_VALUE] = REDACTED_VALUE
    out_message = _as_mapping(output_message) if output_message is not None else None
    if output_text is not None or out_message is not None:
        if config.outputs_visible:
            if output_text is not None:
                attrs[SpanAttributes.OUTPUT_VALUE] = _clean(output_text, config)
                attrs[SpanAttributes.OUTPUT_MIME_TYPE] = OpenInferenceMimeTypeValues.TEXT.value
            elif out_message is not None:
                value = _json(redact_mapping(dict(out_message)))
                attrs[SpanAttributes.OUTPUT_VALUE] = _clean(value, config)
                attrs[SpanAttributes.OUTPUT_MIME_TYPE] = OpenInferenceMimeTypeValues.JSON.value
            message = dict(out_message) if out_message is not None else {}
            message.setdefault("role", "assistant")
            if message.get("content") is None and output_text is not None:
                message["content"] = output_text
            prefix = f"{SpanAttributes.LLM_OUTPUT_MESSAGES}.0"
            attrs.update(_message_attributes(prefix, message, config))
        else:
            attrs[SpanAttributes.OUTPUT_VALUE] = REDACTED_VALUE
    return attrs
