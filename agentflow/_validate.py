"""Checks of what a caller hands agentflow, made where it enters and before anything is paid.

``check_call`` runs first in ``build_request``: the messages and the litellm parameters of
one ``af.complete`` / ``af.embed`` call. The small ``check_*`` helpers are shared by the
policies, ``af.step``, ``af.run`` and ``af.configure``. Every failure is a ``ConfigError``
whose message says what was expected, what came, and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import tracing
from agentflow._errors import ConfigError, MessageContentError

__all__ = [
    "check_bool",
    "check_call",
    "check_content_config",
    "check_int",
    "check_name",
    "check_number",
    "describe",
]

ROLES: Final = ("system", "developer", "user", "assistant", "tool", "function")
_TOOL_CHOICES: Final = ("none", "auto", "required")
_ENCODINGS: Final = ("float", "base64")
_EXAMPLE: Final = "[{'role': 'user', 'content': 'Hello'}]"


def describe(value: Any) -> str:
    """``value`` as a message shows what came: its type and a short repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def check_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(
            f"{where} must be True or False, got {describe(value)}; pass a bool, not a "
            "str or a number"
        )
    return value


def check_number(
    where: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    hint: str = "",
) -> float:
    """A finite real (never a bool, a str or nan) within [low, high] (``low_open``: > low)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = _bounds(low, high, low_open)
        tail = f"; {hint}" if hint else "; pass a number in that range or leave it out"
        raise ConfigError(f"{where} must be a finite number{bounds}, got {describe(value)}{tail}")
    return float(value)


def _bounds(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""


def check_int(where: str, value: Any, *, low: int = 1, hint: str = "") -> int:
    """An int (never a bool, a float or a str) of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        tail = f"; {hint}" if hint else "; pass an int or leave it out"
        raise ConfigError(f"{where} must be an int >= {low}, got {describe(value)}{tail}")
    return value


def check_name(where: str, value: Any, *, optional: bool = True, hint: str = "") -> str | None:
    """A non-empty str (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        tail = f"; {hint}" if hint else "; pass a str"
        none = " or None" if optional else ""
        raise ConfigError(f"{where} must be a non-empty str{none}, got {describe(value)}{tail}")
    return value


def check_content_config(*, store: bool = True) -> None:
    """Read the span-content settings now (``AGENTFLOW_CAPTURE_CONTENT`` and friends), so
    a bad value fails before a call is paid rather than when its span is written.

    ``store=False`` (``af.configure``) only validates the environment; the settings are
    still taken, as before, when the first call needs them."""
    try:
        if store:
            tracing.content_config()
        else:
            tracing.ContentConfig.from_env()
    except ValueError as err:  # tracing's ContentConfigError, also a ValueError
        raise ConfigError(f"{err} (agentflow reads it for the content of its spans)") from err


# --- one call ------------------------------------------------------------------------
def check_call(
    messages: Any, params: Mapping[str, Any], tier: Any = None, operation: str = "chat"
) -> None:
    """Raise ``ConfigError`` unless ``messages`` and ``params`` make a well-formed call."""
    if tier is not None:
        check_name("tier", tier, hint="use a tier name of the zoo, 'auto', or leave it out")
    if params.get("cache") is not None and operation != "chat":
        raise ConfigError(
            "cache= applies to af.complete without stream=True; streamed and embedding "
            "calls are never served from the response cache, so leave cache= out"
        )
    if operation == "embeddings":
        _check_embedding(params)
    else:
        check_messages(messages)
    _check_params(params)
    check_content_config()


def _check_embedding(params: Mapping[str, Any]) -> None:
    texts = params.get("input")
    if not isinstance(texts, list) or not texts:
        raise ConfigError(
            f"af.embed needs input= a str or a non-empty list of str, got {describe(texts)}; "
            "pass the text(s) to embed"
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(
                f"af.embed input[{i}] must be a str, got {describe(text)}; "
                "embed text only: turn other values into text first"
            )
    if (dims := params.get("dimensions")) is not None:
        check_int("dimensions", dims, hint="leave it out for the model's own size")
    fmt = params.get("encoding_format")
    if fmt is not None and fmt not in _ENCODINGS:
        raise ConfigError(
            f"encoding_format must be 'float' or 'base64', got {describe(fmt)}; use one of "
            "those or leave it out"
        )


def check_messages(messages: Any) -> None:
    if messages is None:
        raise ConfigError(f"af.complete needs messages=, e.g. messages={_EXAMPLE}; got None")
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise ConfigError(
            f"messages must be a list of chat messages, got {describe(messages)}; "
            f"wrap it, e.g. messages={_EXAMPLE}"
        )
    if not messages:
        raise ConfigError(f"messages is an empty list; give at least one message, e.g. {_EXAMPLE}")
    for i, message in enumerate(messages):
        _check_message(f"messages[{i}]", message)


def _as_mapping(message: Any) -> Mapping[str, Any] | None:
    if isinstance(message, Mapping):
        return message
    dump = getattr(message, "model_dump", None)  # a litellm Message handed back
    if callable(dump) and not isinstance(message, type):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dumped
    return None


def _check_message(where: str, raw: Any) -> None:
    message = _as_mapping(raw)
    if message is None:
        raise ConfigError(
            f"{where} must be a dict with 'role' and 'content', got {describe(raw)}; "
            "e.g. {'role': 'user', 'content': 'Hello'}"
        )
    if "role" not in message:
        raise ConfigError(
            f"{where} has no 'role'; add one of {', '.join(map(repr, ROLES))} "
            f"(got keys {sorted(map(str, message))})"
        )
    role = message["role"]
    if not isinstance(role, str) or role not in ROLES:
        raise ConfigError(
            f"{where}['role'] must be one of {', '.join(map(repr, ROLES))}, got "
            f"{describe(role)}; use one of those roles (lower case)"
        )
    content = message.get("content")
    calls = message.get("tool_calls")
    if content is None:
        if role != "assistant" or not (calls or message.get("function_call")):
            raise ConfigError(
                f"{where} ({role}) has no 'content'; give it a str (or a list of content "
                "parts); only an assistant message with tool_calls may leave it out"
            )
    elif isinstance(content, list):
        _check_parts(f"{where}['content']", content)
    elif not isinstance(content, str):
        raise MessageContentError(
            f"{where}['content']",
            f"{where}['content'] must be a str or a list of content parts, got "
            f"{describe(content)}; turn the value into text first",
        )
    if calls is not None:
        if role != "assistant" or not isinstance(calls, list):
            raise ConfigError(
                f"{where}['tool_calls'] must be a list on an assistant message, got "
                f"{describe(calls)} on a {role!r} message; pass the tool calls as the model "
                "returned them, on its assistant message"
            )
        for j, call in enumerate(calls):
            if _as_mapping(call) is None:
                raise ConfigError(
                    f"{where}['tool_calls'][{j}] must be a dict with 'id' and 'function', "
                    f"got {describe(call)}; pass the tool calls as the model returned them"
                )
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ConfigError(
                f"{where} is a tool result without a 'tool_call_id' (got {describe(call_id)}); "
                "set it to the id of the assistant's tool call it answers"
            )
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(
            f"{where}['name'] must be a str, got {describe(name)}; pass a str or leave it out"
        )


def _check_parts(where: str, parts: list[Any]) -> None:
    for j, raw in enumerate(parts):
        part = _as_mapping(raw)
        kind = part.get("type") if part is not None else None
        if not isinstance(kind, str) or not kind:
            raise MessageContentError(
                f"{where}[{j}]",
                f"{where}[{j}] must be a content part dict with a 'type', got {describe(raw)}; "
                "e.g. {'type': 'text', 'text': 'Hello'}",
            )
        if kind == "text" and part is not None and not isinstance(part.get("text"), str):
            raise MessageContentError(
                f"{where}[{j}]",
                f"{where}[{j}] is a text part whose 'text' is {describe(part.get('text'))}; "
                "give it a str",
            )


# --- the litellm parameters ----------------------------------------------------------
_RANGES: Final[dict[str, tuple[float, float]]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}


def _check_params(params: Mapping[str, Any]) -> None:
    for key in ("max_tokens", "max_completion_tokens"):
        value = params.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(
                f"{key} must be a positive int (the most output tokens to pay for), got "
                f"{value!r}; leave it out to let the budget choose"
            )
    for key, (low, high) in _RANGES.items():
        if (value := params.get(key)) is not None:
            check_number(key, value, low=low, high=high)
    if (n := params.get("n")) is not None:
        check_int("n", n, hint="it is the number of answers to pay for; leave it out for 1")
    if (timeout := params.get("timeout")) is not None:
        check_number("timeout", timeout, low=0, low_open=True, hint="pass seconds, e.g. 30")
    if (seed := params.get("seed")) is not None:
        check_int("seed", seed, low=-(2**63))
    if (logprobs := params.get("logprobs")) is not None:
        check_bool("logprobs", logprobs)
    if (top := params.get("top_logprobs")) is not None:
        check_int("top_logprobs", top, low=0)
    stop = params.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise ConfigError(
            f"stop must be a str or a list of str, got {describe(stop)}; e.g. stop=['\\n']"
        )
    _check_tools(params.get("tools"), params.get("tool_choice"))
    _check_response_format(params.get("response_format"))


def _check_tools(tools: Any, choice: Any) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise ConfigError(
                f"tools must be a list of tool dicts, got {describe(tools)}; e.g. "
                "[{'type': 'function', 'function': {'name': 'search', 'parameters': {...}}}]"
            )
        for i, tool in enumerate(tools):
            _check_tool(f"tools[{i}]", tool)
    if choice is None or (isinstance(choice, str) and choice in _TOOL_CHOICES):
        return
    if isinstance(choice, Mapping):
        return
    raise ConfigError(
        f"tool_choice must be 'none', 'auto', 'required' or a dict naming a function, got "
        f"{describe(choice)}; use one of those or leave it out"
    )


def _check_tool(where: str, tool: Any) -> None:
    if not isinstance(tool, Mapping):
        raise ConfigError(
            f"{where} must be a dict {{'type': 'function', 'function': {{...}}}}, got "
            f"{describe(tool)}; see the OpenAI tools format"
        )
    if tool.get("type", "function") != "function":
        return  # a provider's own tool type (web search...): litellm passes it on
    function = tool.get("function")
    if not isinstance(function, Mapping):
        raise ConfigError(
            f"{where}['function'] must be a dict with a 'name', got {describe(function)}; "
            "e.g. {'name': 'search', 'parameters': {'type': 'object'}}"
        )
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{where}['function']['name'] must be a non-empty str, got {describe(name)}; "
            "give the function the name the model should call"
        )
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ConfigError(
            f"{where}['function']['parameters'] must be a JSON schema dict, got "
            f"{describe(parameters)}; e.g. {{'type': 'object', 'properties': {{...}}}}"
        )


def _check_response_format(value: Any) -> None:
    if value is None or isinstance(value, Mapping):
        return
    if isinstance(value, type) and callable(getattr(value, "model_json_schema", None)):
        return  # a pydantic model class: Completion.parsed
    raise ConfigError(
        f"response_format must be a pydantic model class or a dict such as "
        f"{{'type': 'json_object'}}, got {describe(value)}; pass the class itself, not an "
        "instance, or leave it out for plain text"
    )
