"""``ChatAgentflow``: a LangChain chat model whose every call goes through agentflow.

It converts LangChain messages to OpenAI dicts and calls ``af.complete`` /
``af.acomplete`` (``stream=True`` when LangChain streams), so tiers, budgets, caching,
escalation, retries and cost spans apply as to any other call; inside a decorated step
the step's policy does. Called from an undecorated LangGraph node, the call is a step
named after the node (see ``agentflow.langchain._nodes``).
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from agentflow._api import acomplete, complete
from agentflow._policy import StepPolicy
from agentflow.langchain._messages import ai_message, delta_chunk, final_chunk, to_openai
from agentflow.langchain._nodes import NodeCall, build_node_policies, node_call
from agentflow.langchain._structured import Method, structured
from agentflow.langchain._tools import format_tool_choice, format_tools

__all__ = ["ChatAgentflow"]

# what LangChain passes down that is not a model parameter
_LANGCHAIN_ONLY = ("stream", "ls_structured_output_format", "structured_output_format")


class ChatAgentflow(BaseChatModel):
    """A LangChain chat model over agentflow's pipeline.

    ``tier`` picks the zoo tier (``"auto"``: the router's choice; None: the enclosing
    step's tier, else the zoo's default). The sampling fields and ``model_kwargs`` are
    litellm arguments; ``.bind(tier=..., cache=...)`` or call keywords override them for
    one call. Every ``AIMessage`` carries ``usage_metadata`` and ``response_metadata``
    (tier, endpoint, model_name, cost_usd, cache_hit, confidence, attempts,
    finish_reason).

    Called from a LangGraph node that is not a decorated step, each call is a step named
    after the node (span, ``run.steps`` totals, report row). ``nodes`` sets those steps'
    policies by node name, with ``@af.step``'s options:
    ``nodes={"agent": {"tier": "heavy", "budget": Budget(max_usd=0.01)}}``; it wins over
    ``agentflow.langchain.node_policies``. A node's tier wins over ``tier`` (a tier given
    to one call, with ``.bind`` or a keyword, wins over both).
    """

    model_config = ConfigDict(populate_by_name=True)

    tier: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other litellm arguments sent with every call (``logprobs``, ``timeout``, ...)."""
    streaming: bool = False
    """Stream under ``invoke`` too (LangChain also streams whenever a caller listens)."""
    nodes: Any = None
    """Step options of LangGraph nodes by name: ``{"agent": {"tier": "heavy", ...}}``."""

    _node_steps: dict[str, StepPolicy] = PrivateAttr(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        # checked before pydantic runs, so a bad option raises af.ConfigError as it is
        node_steps = build_node_policies(kwargs.get("nodes"), "ChatAgentflow nodes")
        super().__init__(**kwargs)
        self._node_steps = node_steps

    @property
    def _llm_type(self) -> str:
        return "agentflow"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"tier": self.tier, **self._defaults()}

    def _defaults(self) -> dict[str, Any]:
        fields = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": self.stop,
        }
        return {**{k: v for k, v in fields.items() if v is not None}, **self.model_kwargs}

    def _call_args(
        self, stop: list[str] | None, kwargs: Mapping[str, Any], node: NodeCall | None = None
    ) -> tuple[str | None, dict[str, Any]]:
        """The tier and the litellm arguments of one call."""
        params = {**self._defaults(), **kwargs}
        for name in _LANGCHAIN_ONLY:
            params.pop(name, None)
        if stop is not None:
            params["stop"] = stop
        if "tier" in params:  # this call's own tier
            tier = params.pop("tier")
        elif node is not None and node.policy.tier is not None:
            tier = None  # the node step's tier answers
        else:
            tier = self.tier
        return tier, params

    def _node(
        self, run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None
    ) -> NodeCall | None:
        """The LangGraph node step this call runs in, if it is not in a decorated step."""
        if run_manager is not None:
            metadata: Mapping[str, Any] | None = run_manager.metadata
        else:  # LangChain streams without passing the run manager: read the config's
            metadata = (var_child_runnable_config.get() or {}).get("metadata")
        return node_call(metadata, self._node_steps)

    # --- the four entry points LangChain calls --------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        node = self._node(run_manager)
        tier, params = self._call_args(stop, kwargs, node)
        if node is None:
            completion = complete(to_openai(messages), tier=tier, **params)
        else:
            completion = node.call(lambda: complete(to_openai(messages), tier=tier, **params))
        return ChatResult(generations=[ChatGeneration(message=ai_message(completion))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        node = self._node(run_manager)
        tier, params = self._call_args(stop, kwargs, node)
        if node is None:
            completion = await acomplete(to_openai(messages), tier=tier, **params)
        else:
            completion = await node.acall(
                lambda: acomplete(to_openai(messages), tier=tier, **params)
            )
        return ChatResult(generations=[ChatGeneration(message=ai_message(completion))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # LangChain reports each chunk to the callbacks itself (on_llm_new_token)
        node = self._node(run_manager)
        tier, params = self._call_args(stop, kwargs, node)
        chunks = self._chunks(messages, tier, params)
        yield from chunks if node is None else node.stream(chunks)

    def _chunks(
        self, messages: list[BaseMessage], tier: str | None, params: dict[str, Any]
    ) -> Generator[ChatGenerationChunk, None, None]:
        stream = complete(to_openai(messages), tier=tier, stream=True, **params)
        with stream:  # a consumer that stops early still settles what was received
            for raw in stream:
                chunk = delta_chunk(raw)
                if chunk is not None:
                    yield chunk
        yield final_chunk(stream.completion)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        node = self._node(run_manager)
        tier, params = self._call_args(stop, kwargs, node)
        chunks = self._achunks(messages, tier, params)
        source = chunks if node is None else node.astream(chunks)
        try:
            async for chunk in source:
                yield chunk
        finally:  # a consumer that stops early: settle now, not when the loop collects it
            await source.aclose()

    async def _achunks(
        self, messages: list[BaseMessage], tier: str | None, params: dict[str, Any]
    ) -> AsyncGenerator[ChatGenerationChunk, None]:
        stream = await acomplete(to_openai(messages), tier=tier, stream=True, **params)
        async with stream:
            async for raw in stream:
                chunk = delta_chunk(raw)
                if chunk is not None:
                    yield chunk
        yield final_chunk(stream.completion)

    # --- tools and structured output ------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Send ``tools`` (OpenAI format) with every call; ``tool_choice``: "auto",
        "none", "required" ("any" and True too), or a tool's name to force that tool."""
        formatted = format_tools(tools, strict=strict)
        choice = format_tool_choice(tool_choice, formatted)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Method = "json_schema",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answers shaped by ``schema`` (a pydantic model, TypedDict or JSON schema).

        ``method="json_schema"`` sends it as ``response_format`` (a pydantic model is
        validated by the pipeline); ``"function_calling"`` forces it as a tool;
        ``include_raw=True`` gives ``{"raw", "parsed", "parsing_error"}``.
        """
        if kwargs:
            raise TypeError(f"with_structured_output got unexpected arguments {sorted(kwargs)}")
        return structured(self, schema, method=method, include_raw=include_raw, strict=strict)
