"""LangChain messages to OpenAI-format dicts and back; agentflow's accounting on them.

Every ``AIMessage`` that ``ChatAgentflow`` returns carries ``usage_metadata`` (what all the
call's attempts used, retries and escalations included) and ``response_metadata`` (tier,
endpoint, model, cost, cache hit, confidence, attempt count, finish reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import InputTokenDetails, UsageMetadata
from langchain_core.messages.tool import ToolCallChunk, tool_call_chunk
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGenerationChunk

from agentflow._completion import Completion

__all__ = [
    "ai_message",
    "delta_chunk",
    "final_chunk",
    "response_metadata",
    "to_openai",
    "usage_metadata",
]


def to_openai(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """OpenAI chat messages: roles, tool calls on assistant turns, ``tool`` results."""
    converted = convert_to_openai_messages(list(messages))
    return [dict(m) for m in converted]


def usage_metadata(completion: Completion) -> UsageMetadata:
    """LangChain's usage of every attempt the call made (a cache hit used nothing).

    ``input_token_details.cache_read`` is there when the engine reported its cached
    prompt tokens; an engine that does not report them leaves it out (unknown, not 0).
    ``cache_creation`` is there when the provider wrote prompt tokens to its cache
    (Anthropic's ``cache_creation_input_tokens``).
    """
    usage = completion.total_usage
    metadata = UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )
    details = InputTokenDetails()
    if all(a.cached_tokens_reported for a in completion.attempts):
        details["cache_read"] = usage.cached_prompt_tokens
    if usage.cache_write_tokens:
        details["cache_creation"] = usage.cache_write_tokens
    if details:
        metadata["input_token_details"] = details
    return metadata


def response_metadata(completion: Completion) -> dict[str, Any]:
    """Where the answer came from and what the whole call cost (floats: for display)."""
    return {
        "tier": completion.tier,
        "endpoint": completion.endpoint,
        "model_name": completion.model,
        "cost_usd": float(completion.total_cost.total_usd),
        "cache_hit": completion.cache_hit,
        "confidence": completion.confidence,
        "attempts": len(completion.attempts),
        "finish_reason": completion.finish_reason,
    }


def ai_message(completion: Completion) -> AIMessage:
    """The completion as an ``AIMessage``: text, parsed tool calls, usage and metadata.

    A pydantic ``response_format`` answer keeps its validated object in
    ``additional_kwargs["parsed"]`` (as ``ChatOpenAI`` does).
    """
    tool_calls, invalid = [], []
    for raw_call in completion.tool_calls:
        try:
            parsed = parse_tool_call(raw_call, return_id=True)
        except Exception as err:  # malformed JSON arguments: keep it, as LangChain does
            invalid.append(make_invalid_tool_call(raw_call, str(err)))
        else:
            if parsed is not None:
                tool_calls.append(parsed)
    additional: dict[str, Any] = {}
    if completion.parsed is not None:
        additional["parsed"] = completion.parsed
    # no id from the response: a cached answer repeats it, and LangGraph's add_messages
    # would replace the earlier message with it; LangChain gives each call a run id
    return AIMessage(
        content=completion.text,
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        additional_kwargs=additional,
        usage_metadata=usage_metadata(completion),
        response_metadata=response_metadata(completion),
    )


def _tool_call_chunks(tool_calls: Any) -> list[ToolCallChunk]:
    chunks = []
    for position, call in enumerate(tool_calls or ()):
        fn = getattr(call, "function", None)
        index = getattr(call, "index", None)
        chunks.append(
            tool_call_chunk(
                name=getattr(fn, "name", None) or None,
                args=getattr(fn, "arguments", None) or None,
                id=getattr(call, "id", None) or None,
                index=index if isinstance(index, int) else position,
            )
        )
    return chunks


def delta_chunk(chunk: Any) -> ChatGenerationChunk | None:
    """One litellm stream chunk as a LangChain chunk; None when it carries nothing
    (the role-only head, the finish marker, the usage-only tail)."""
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return None
    delta = getattr(choices[0], "delta", None)
    text = getattr(delta, "content", None) or ""
    calls = _tool_call_chunks(getattr(delta, "tool_calls", None))
    if not text and not calls:
        return None
    return ChatGenerationChunk(
        message=AIMessageChunk(content=text, tool_call_chunks=calls), text=text
    )


def final_chunk(completion: Completion | None) -> ChatGenerationChunk:
    """The stream's last chunk: no text, the settled usage and metadata."""
    message = AIMessageChunk(content="", chunk_position="last")
    if completion is not None:
        message = AIMessageChunk(
            content="",
            chunk_position="last",
            usage_metadata=usage_metadata(completion),
            response_metadata=response_metadata(completion),
        )
    return ChatGenerationChunk(message=message, text="")
