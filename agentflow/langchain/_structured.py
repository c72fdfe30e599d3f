"""``ChatAgentflow.with_structured_output``: a schema answered as JSON or as a forced tool.

``method="json_schema"`` (the default) sends the schema as ``response_format``: a
pydantic model goes through ``af.complete`` as is, so the pipeline validates the reply
(``Completion.parsed``, and a ``"schema"`` scorer can escalate on it). ``"json_mode"``
asks for any JSON object. ``"function_calling"`` binds the schema as the one tool the
model must call.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from agentflow._errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel, LanguageModelInput

__all__ = ["Method", "structured"]

Method = Literal["json_schema", "json_mode", "function_calling"]


def _is_model(schema: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def _json_schema_format(schema: Mapping[str, Any] | type, strict: bool | None) -> dict[str, Any]:
    """OpenAI's ``{"type": "json_schema", ...}`` for a JSON schema, TypedDict or tool dict."""
    function = convert_to_openai_tool(schema)["function"]
    spec: dict[str, Any] = {"name": function["name"], "schema": function.get("parameters", {})}
    if function.get("description"):
        spec["description"] = function["description"]
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def _parsed_model(schema: type[BaseModel]) -> Runnable[BaseMessage, Any]:
    """The pipeline's validated object; parsed from the text when it is not there
    (a message assembled from a stream)."""

    def parse(message: BaseMessage) -> Any:
        parsed = message.additional_kwargs.get("parsed")
        if isinstance(parsed, schema):
            return parsed
        return schema.model_validate_json(message.text)

    return RunnableLambda(parse)


def structured(
    model: BaseChatModel,
    schema: dict[str, Any] | type,
    *,
    method: Method,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[LanguageModelInput, Any]:
    """The bound model piped into the parser that fits ``method`` and ``schema``."""
    trace_format = {"kwargs": {"method": method}, "schema": schema}
    bound: Runnable[LanguageModelInput, AIMessage]
    parser: Runnable[BaseMessage, Any]
    if method == "function_calling":
        name = convert_to_openai_tool(schema)["function"]["name"]
        bound = model.bind_tools(
            [schema], tool_choice=name, strict=strict, ls_structured_output_format=trace_format
        )
        if _is_model(schema):
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
        else:
            parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
    elif method in ("json_schema", "json_mode"):
        response_format: Any = {"type": "json_object"}
        if method == "json_schema":
            response_format = schema if _is_model(schema) else _json_schema_format(schema, strict)
        bound = model.bind(
            response_format=response_format, ls_structured_output_format=trace_format
        )
        parser = _parsed_model(schema) if _is_model(schema) else JsonOutputParser()
    else:
        raise ConfigError(
            f"with_structured_output(method={method!r}): use 'json_schema' (the default), "
            "'json_mode' or 'function_calling'"
        )
    if not include_raw:
        return bound | parser
    with_parsed = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    without = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | with_parsed.with_fallbacks(
        [without], exception_key="parsing_error"
    )
