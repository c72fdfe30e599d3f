"""Tools and ``tool_choice`` in OpenAI's format, as ``bind_tools`` sends them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from agentflow._errors import ConfigError

__all__ = ["ToolLike", "format_tool_choice", "format_tools", "tool_name"]

ToolLike = Mapping[str, Any] | type[BaseModel] | Callable[..., Any] | BaseTool

_KEYWORDS = frozenset({"auto", "none", "required"})


def format_tools(tools: Sequence[ToolLike], *, strict: bool | None = None) -> list[dict[str, Any]]:
    """``{"type": "function", "function": {...}}`` for each tool, pydantic model,
    function or OpenAI tool dict."""
    return [convert_to_openai_tool(t, strict=strict) for t in tools]


def tool_name(tool: Mapping[str, Any]) -> str:
    name = tool["function"]["name"]
    return str(name)


def format_tool_choice(choice: Any, tools: Sequence[Mapping[str, Any]]) -> Any:
    """OpenAI's ``tool_choice`` from LangChain's: "auto", "none", "required" (also
    "any" or True), a tool's name (that tool, forced), or an OpenAI dict as is."""
    if choice is None or isinstance(choice, Mapping):
        return choice
    if choice is True or choice == "any":
        return "required"
    if choice is False:
        return "none"
    if isinstance(choice, str):
        if choice in _KEYWORDS:
            return choice
        names = [tool_name(t) for t in tools]
        if choice not in names:
            raise ConfigError(
                f"tool_choice={choice!r} names no bound tool (bound: {names}); pass one of "
                'them, or "auto", "none", "required"'
            )
        return {"type": "function", "function": {"name": choice}}
    raise ConfigError(
        f"tool_choice={choice!r}: give a tool's name, 'auto', 'none', 'required', or an "
        "OpenAI tool_choice dict"
    )
