"""Malformed input fails where it enters, with an agentflow error, before anything is paid.

One table of bad inputs across the public entry points (``af.complete`` / ``acomplete`` /
``embed``, ``af.step`` and its presets, the policies, ``af.run``, ``af.configure``, the zoo
models, ``budgets.Budget`` and the span-content environment). Each case names the error
it must raise (an ``af.AgentflowError`` subclass, ``tracing.TracingError`` for tracing used
alone, or pydantic's ``ValidationError`` where the public type is a pydantic model) and
a piece of its message. Every case runs with a two-tier zoo on a real loopback server,
which must not have received a single model request when the case is over.

A case that cannot pass yet is marked ``xfail(strict=True)`` with the reason (today: none),
so it flips to a failure the day it is fixed and the mark is forgotten.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest

import agentflow as af
import tracing
from agentflow.testing import LoopbackServer
from budgets import Budget
from tracing import _content

NAN = math.nan
INF = math.inf
OK = [{"role": "user", "content": "What is the capital of France?"}]
EP = {"model": "openai/small-model", "api_base": "http://127.0.0.1:9/v1"}

Action = Callable[[], object]


class Answer(pydantic.BaseModel):
    city: str


class _Chooser:
    def choose(self, messages: Any, *, kind: str, tiers: Any) -> str:
        return "small"


def _fn() -> None:
    return None


def _ep(**extra: Any) -> af.Endpoint:
    return af.Endpoint(**{**EP, **extra})


def _tier(name: str = "t", **extra: Any) -> af.Tier:
    return af.Tier(name, endpoints=[_ep()], **extra)


# --- how a case does its bad thing ------------------------------------------------------
def complete(messages: Any = OK, **params: Any) -> Action:
    return lambda: af.complete(messages, **params)


def acomplete(messages: Any = OK, **params: Any) -> Action:
    async def go() -> object:
        return await af.acomplete(messages, **params)

    return lambda: asyncio.run(go())


def stream(messages: Any = OK, **params: Any) -> Action:
    def go() -> object:
        return list(af.complete(messages, stream=True, **params))

    return go


def embed(texts: Any, **params: Any) -> Action:
    return lambda: af.embed(texts, **params)


def aembed(texts: Any, **params: Any) -> Action:
    return lambda: asyncio.run(af.aembed(texts, **params))


def step(**options: Any) -> Action:
    return lambda: af.step(**options)(_fn)


def preset(decorator: Any, *args: Any, **options: Any) -> Action:
    return lambda: decorator(*args, **options)


def run(*args: Any, **kwargs: Any) -> Action:
    def go() -> object:
        with af.run(*args, **kwargs):
            return af.complete(OK)

    return go


def configure(**kwargs: Any) -> Action:
    return lambda: af.configure(**kwargs)


def toml(text: str, name: str = "agentflow.toml") -> Action:
    def go() -> object:
        directory = Path(os.environ["AGENTFLOW_CACHE_DIR"])  # the test's own temp dir
        path = directory / name
        path.write_text(text)
        return af.configure(path=path)

    return go


def configure_dir() -> object:
    return af.configure(path=os.environ["AGENTFLOW_CACHE_DIR"])


def with_env(name: str, value: str, action: Action) -> Action:
    """``action`` with the environment variable set and tracing's content settings not
    yet read (as in a fresh process); both put back afterwards."""

    def go() -> object:
        before, stored = os.environ.get(name), _content._content
        os.environ[name] = value
        _content.set_content_config(None)  # type: ignore[arg-type]  # "not read yet"
        try:
            return action()
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
            _content.set_content_config(stored)  # type: ignore[arg-type]  # maybe None

    return go


def xfail(reason: str) -> Any:
    return pytest.mark.xfail(strict=True, reason=reason)


def case(id: str, action: Action, error: type[BaseException], text: str, *marks: Any) -> Any:
    return pytest.param(action, error, text, id=id, marks=marks)


ZOO_HINT = (
    "agentflow/_zoo.py: the right ConfigError, but pydantic's message ('Input should be a "
    "valid string') says nothing about what to do; _format_validation_error should add one"
)
CE = af.ConfigError
VE = pydantic.ValidationError
TE = tracing.TracingError
gen = (m for m in OK)
TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}

CASES: list[Any] = [
    # --- af.complete: messages --------------------------------------------------------
    case("complete-messages-none", complete(None), CE, "needs messages="),
    case("complete-messages-str", complete("hello"), CE, "must be a list of chat messages"),
    case("complete-messages-bytes", complete(b"hi"), CE, "must be a list of chat messages"),
    case("complete-messages-dict", complete(OK[0]), CE, "must be a list of chat messages"),
    case("complete-messages-int", complete(42), CE, "must be a list of chat messages"),
    case("complete-messages-set", complete({"a"}), CE, "must be a list of chat messages"),
    case("complete-messages-generator", complete(gen), CE, "must be a list of chat messages"),
    case("complete-messages-empty", complete([]), CE, "empty list"),
    case("complete-message-str", complete(["hello"]), CE, "messages[0] must be a dict"),
    case("complete-message-none", complete([None]), CE, "messages[0] must be a dict"),
    case("complete-message-int", complete([7]), CE, "messages[0] must be a dict"),
    case("complete-message-tuple", complete([("role", "user")]), CE, "must be a dict"),
    case("complete-message-list", complete([["user", "hi"]]), CE, "must be a dict"),
    case("complete-second-message-str", complete([*OK, "again"]), CE, "messages[1]"),
    case("complete-no-role", complete([{"content": "hi"}]), CE, "has no 'role'"),
    case("complete-role-typo", complete([{"rol": "user", "content": "hi"}]), CE, "no 'role'"),
    case(
        "complete-role-unknown",
        complete([{"role": "boss", "content": "hi"}]),
        CE,
        "['role'] must be one of",
    ),
    case(
        "complete-role-upper",
        complete([{"role": "USER", "content": "hi"}]),
        CE,
        "['role'] must be one of",
    ),
    case(
        "complete-role-int",
        complete([{"role": 1, "content": "hi"}]),
        CE,
        "['role'] must be one of",
    ),
    case(
        "complete-role-none",
        complete([{"role": None, "content": "hi"}]),
        CE,
        "['role'] must be one of",
    ),
    case(
        "complete-second-no-role",
        complete([*OK, {"content": "and Spain?"}]),
        CE,
        "messages[1] has no 'role'",
    ),
    case("complete-no-content", complete([{"role": "user"}]), CE, "has no 'content'"),
    case(
        "complete-content-none",
        complete([{"role": "user", "content": None}]),
        CE,
        "has no 'content'",
    ),
    case(
        "complete-content-int",
        complete([{"role": "user", "content": 42}]),
        CE,
        "must be a str or a list of content parts",
    ),
    case(
        "complete-content-dict",
        complete([{"role": "user", "content": {"text": "hi"}}]),
        CE,
        "must be a str or a list of content parts",
    ),
    case(
        "complete-content-bytes",
        complete([{"role": "user", "content": b"hi"}]),
        CE,
        "must be a str or a list of content parts",
    ),
    case(
        "complete-content-tuple",
        complete([{"role": "user", "content": ("hi",)}]),
        CE,
        "must be a str or a list of content parts",
    ),
    case(
        "complete-content-object-is-a-cache-key-error",
        complete([{"role": "user", "content": object()}]),
        af.CacheKeyError,
        "messages[0]['content'] must be a str",
    ),
    case(
        "complete-content-set-is-a-message-content-error",
        complete([{"role": "user", "content": {"a", "b"}}]),
        af.MessageContentError,
        "turn the value into text first",
    ),
    case(
        "complete-content-part-int",
        complete([{"role": "user", "content": [1]}]),
        CE,
        "content part dict with a 'type'",
    ),
    case(
        "complete-content-part-no-type",
        complete([{"role": "user", "content": [{"text": "hi"}]}]),
        CE,
        "content part dict with a 'type'",
    ),
    case(
        "complete-content-part-text-int",
        complete([{"role": "user", "content": [{"type": "text", "text": 5}]}]),
        CE,
        "text part whose 'text'",
    ),
    case(
        "complete-assistant-no-content",
        complete([*OK, {"role": "assistant", "content": None}]),
        CE,
        "has no 'content'",
    ),
    case(
        "complete-tool-no-call-id",
        complete([*OK, {"role": "tool", "content": "42"}]),
        CE,
        "without a 'tool_call_id'",
    ),
    case(
        "complete-tool-call-id-int",
        complete([*OK, {"role": "tool", "content": "42", "tool_call_id": 5}]),
        CE,
        "without a 'tool_call_id'",
    ),
    case(
        "complete-tool-call-id-empty",
        complete([*OK, {"role": "tool", "content": "42", "tool_call_id": ""}]),
        CE,
        "without a 'tool_call_id'",
    ),
    case(
        "complete-tool-calls-str",
        complete([*OK, {"role": "assistant", "content": "", "tool_calls": "search"}]),
        CE,
        "['tool_calls'] must be a list",
    ),
    case(
        "complete-tool-calls-on-user",
        complete([{"role": "user", "content": "x", "tool_calls": []}]),
        CE,
        "on a 'user' message",
    ),
    case(
        "complete-tool-calls-item-int",
        complete([*OK, {"role": "assistant", "content": "", "tool_calls": [5]}]),
        CE,
        "['tool_calls'][0] must be a dict",
    ),
    case(
        "complete-name-int",
        complete([{"role": "user", "content": "hi", "name": 5}]),
        CE,
        "['name'] must be a str",
    ),
    # --- af.complete: parameters -------------------------------------------------------
    case("complete-max-tokens-0", complete(max_tokens=0), CE, "max_tokens must be a positive int"),
    case("complete-max-tokens-neg", complete(max_tokens=-1), CE, "must be a positive int"),
    case("complete-max-tokens-float", complete(max_tokens=2.5), CE, "must be a positive int"),
    case("complete-max-tokens-str", complete(max_tokens="10"), CE, "must be a positive int"),
    case("complete-max-tokens-bool", complete(max_tokens=True), CE, "must be a positive int"),
    case("complete-max-tokens-nan", complete(max_tokens=NAN), CE, "must be a positive int"),
    case(
        "complete-max-completion-tokens-neg",
        complete(max_completion_tokens=-5),
        CE,
        "max_completion_tokens must be a positive int",
    ),
    case("complete-temperature-nan", complete(temperature=NAN), CE, "temperature must be a finite"),
    case("complete-temperature-inf", complete(temperature=INF), CE, "temperature must be a finite"),
    case("complete-temperature-neg", complete(temperature=-1), CE, "in [0, 2]"),
    case("complete-temperature-3", complete(temperature=3), CE, "in [0, 2]"),
    case("complete-temperature-str", complete(temperature="hot"), CE, "got str 'hot'"),
    case("complete-temperature-bool", complete(temperature=True), CE, "got bool True"),
    case("complete-top-p-1.5", complete(top_p=1.5), CE, "top_p must be a finite number in [0, 1]"),
    case("complete-top-p-nan", complete(top_p=NAN), CE, "top_p must be a finite"),
    case("complete-top-p-str", complete(top_p="all"), CE, "top_p must be a finite"),
    case("complete-presence-penalty-5", complete(presence_penalty=5), CE, "in [-2, 2]"),
    case("complete-frequency-penalty-nan", complete(frequency_penalty=NAN), CE, "finite"),
    case("complete-n-0", complete(n=0), CE, "n must be an int >= 1"),
    case("complete-n-neg", complete(n=-2), CE, "n must be an int >= 1"),
    case("complete-n-float", complete(n=2.5), CE, "n must be an int >= 1"),
    case("complete-n-str", complete(n="2"), CE, "n must be an int >= 1"),
    case("complete-n-bool", complete(n=True), CE, "n must be an int >= 1"),
    case("complete-timeout-0", complete(timeout=0), CE, "timeout must be a finite number > 0"),
    case("complete-timeout-neg", complete(timeout=-1), CE, "timeout must be a finite number > 0"),
    case("complete-timeout-nan", complete(timeout=NAN), CE, "timeout must be a finite number"),
    case("complete-timeout-str", complete(timeout="5"), CE, "timeout must be a finite number"),
    case("complete-seed-str", complete(seed="x"), CE, "seed must be an int"),
    case("complete-seed-float", complete(seed=1.5), CE, "seed must be an int"),
    case("complete-logprobs-str", complete(logprobs="yes"), CE, "logprobs must be True or False"),
    case("complete-top-logprobs-neg", complete(top_logprobs=-1), CE, "top_logprobs must be"),
    case("complete-top-logprobs-str", complete(top_logprobs="3"), CE, "top_logprobs must be"),
    case("complete-stop-int", complete(stop=5), CE, "stop must be a str or a list of str"),
    case("complete-stop-list-int", complete(stop=[1]), CE, "stop must be a str or a list"),
    case("complete-tier-unknown", complete(tier="nope"), af.UnknownTierError, "unknown tier"),
    case("complete-tier-int", complete(tier=5), CE, "tier must be a non-empty str"),
    case("complete-tier-empty", complete(tier=""), CE, "tier must be a non-empty str"),
    case("complete-tier-list", complete(tier=["small"]), CE, "tier must be a non-empty str"),
    case("complete-cache-typo", complete(cache="exactt"), CE, "is not a cache policy"),
    case("complete-cache-bypas", complete(cache="bypas"), CE, "is not a cache policy"),
    case("complete-cache-true", complete(cache=True), CE, "is not a cache policy"),
    case("complete-cache-int", complete(cache=1), CE, "is not a cache policy"),
    case("complete-cache-list", complete(cache=["exact"]), CE, "is not a cache policy"),
    case("complete-cache-option-typo", complete(cache={"tll": 5}), CE, "unknown cache option"),
    case(
        "complete-cache-no-cache-str",
        complete(cache={"no-cache": "yes"}),
        CE,
        "cache['no-cache'] must be True or False",
    ),
    case("complete-cache-ttl-nan", complete(cache={"ttl": NAN}), CE, "cache ttl must be a finite"),
    case("complete-cache-ttl-neg", complete(cache={"ttl": -1}), CE, "cache ttl must be a finite"),
    case("complete-cache-ttl-str", complete(cache={"ttl": "60"}), CE, "cache ttl must be"),
    case("complete-response-format-str", complete(response_format="json"), CE, "response_format"),
    case("complete-response-format-int", complete(response_format=5), CE, "response_format"),
    case(
        "complete-response-format-instance",
        complete(response_format=Answer(city="Paris")),
        CE,
        "response_format must be a pydantic model class",
    ),
    case("complete-response-format-list", complete(response_format=[]), CE, "response_format"),
    case("complete-tools-str", complete(tools="search"), CE, "tools must be a list"),
    case("complete-tools-dict", complete(tools=TOOL), CE, "tools must be a list"),
    case("complete-tools-item-int", complete(tools=[5]), CE, "tools[0] must be a dict"),
    case(
        "complete-tools-no-function",
        complete(tools=[{"type": "function"}]),
        CE,
        "tools[0]['function'] must be a dict",
    ),
    case(
        "complete-tools-no-name",
        complete(tools=[{"type": "function", "function": {"parameters": {}}}]),
        CE,
        "['name'] must be a non-empty str",
    ),
    case(
        "complete-tools-name-int",
        complete(tools=[{"type": "function", "function": {"name": 5}}]),
        CE,
        "['name'] must be a non-empty str",
    ),
    case(
        "complete-tools-parameters-str",
        complete(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        CE,
        "['parameters'] must be a JSON schema dict",
    ),
    case(
        "complete-tool-choice-str",
        complete(tools=[TOOL], tool_choice="maybe"),
        CE,
        "tool_choice must be",
    ),
    case("complete-tool-choice-int", complete(tools=[TOOL], tool_choice=5), CE, "tool_choice"),
    # --- af.complete(stream=True) and af.acomplete -------------------------------------
    case("stream-messages-none", stream(None), CE, "needs messages="),
    case("stream-no-role", stream([{"content": "hi"}]), CE, "has no 'role'"),
    case("stream-max-tokens-neg", stream(max_tokens=-1), CE, "must be a positive int"),
    case("stream-cache", stream(cache="exact"), CE, "cache= applies to af.complete without"),
    case("complete-stream-str", complete(stream="no"), CE, "stream must be True or False"),
    case("acomplete-messages-none", acomplete(None), CE, "needs messages="),
    case("acomplete-messages-str", acomplete("hello"), CE, "must be a list of chat messages"),
    case("acomplete-no-role", acomplete([{"content": "hi"}]), CE, "has no 'role'"),
    case("acomplete-max-tokens-neg", acomplete(max_tokens=-1), CE, "must be a positive int"),
    case("acomplete-temperature-nan", acomplete(temperature=NAN), CE, "temperature"),
    case("acomplete-tier-unknown", acomplete(tier="nope"), af.UnknownTierError, "unknown tier"),
    # --- af.embed / af.aembed ----------------------------------------------------------
    case("embed-empty", embed([]), CE, "non-empty list of str"),
    case("embed-ints", embed([1, 2]), CE, "input[0] must be a str"),
    case("embed-none-item", embed(["a", None]), CE, "input[1] must be a str"),
    case("embed-dimensions-0", embed("x", dimensions=0), CE, "dimensions must be an int >= 1"),
    case("embed-encoding-hex", embed("x", encoding_format="hex"), CE, "encoding_format"),
    case("embed-tier-unknown", embed("x", tier="nope"), af.UnknownTierError, "unknown tier"),
    case("embed-tier-int", embed("x", tier=3), CE, "tier must be a non-empty str"),
    case("embed-cache", embed("x", cache="exact"), CE, "cache= applies to af.complete"),
    case("aembed-ints", aembed([1]), CE, "input[0] must be a str"),
    case("embed-none", embed(None), CE, "non-empty list of str"),
    case("embed-int", embed(5), CE, "non-empty list of str"),
    case("embed-dict", embed({"text": "hi"}), CE, "non-empty list of str"),
    # --- af.step and its presets --------------------------------------------------------
    case("step-kind-unknown", step(kind="thinking"), af.UnknownStepKindError, "valid kinds"),
    case("step-kind-int", step(kind=5), af.UnknownStepKindError, "unknown step kind 5"),
    case("step-kind-none", step(kind=None), af.UnknownStepKindError, "unknown step kind"),
    case("step-kind-upper", step(kind="PLANNING"), af.UnknownStepKindError, "valid kinds"),
    case("step-tier-int", step(tier=5), CE, "tier must be a tier name"),
    case("step-tier-empty", step(tier=""), CE, "tier must be a tier name"),
    case("step-tier-unknown", step(tier="nope"), af.UnknownTierError, "unknown tier 'nope'"),
    case("step-budget-dict", step(budget={"max_usd": 1}), CE, "budget must be a budgets.Budget"),
    case("step-budget-int", step(budget=5), CE, "budget must be a budgets.Budget"),
    case("step-cache-typo", step(cache="exactt"), CE, "is not a cache policy"),
    case("step-cache-bypass", step(cache="bypass"), CE, "is not a cache policy"),
    case("step-cache-true", step(cache=True), CE, "is not a cache policy"),
    case("step-cache-int", step(cache=5), CE, "is not a cache policy"),
    case("step-cache-dict", step(cache={"ttl": 5}), CE, "is not a cache policy"),
    case("step-escalate-float", step(escalate=0.8), CE, "escalate must be an af.Escalate"),
    case("step-escalate-str", step(escalate="yes"), CE, "escalate must be an af.Escalate"),
    case("step-escalate-dict", step(escalate={"min_confidence": 0.8}), CE, "af.Escalate"),
    case(
        "step-escalate-up-to-unknown",
        step(escalate=af.Escalate(up_to="nope")),
        af.UnknownTierError,
        "unknown tier 'nope'",
    ),
    case("step-on-budget-unknown", step(on_budget="explode"), CE, "is not a budget policy"),
    case("step-on-budget-none", step(on_budget=None), CE, "is not a budget policy"),
    case("step-on-budget-list", step(on_budget=["raise"]), CE, "is not a budget policy"),
    case("step-prefix-cache-str", step(prefix_cache="no"), CE, "prefix_cache must be True"),
    case("step-prefix-cache-int", step(prefix_cache=1), CE, "prefix_cache must be True"),
    case("step-prefix-cache-none", step(prefix_cache=None), CE, "prefix_cache must be True"),
    case("step-router-no-choose", step(tier="auto", router=object()), CE, "router must have"),
    case("step-router-str", step(tier="auto", router="rules"), CE, "router must have"),
    case("step-router-with-tier", step(tier="small", router=_Chooser()), CE, "use tier='auto'"),
    case("step-name-int", step(name=5), CE, "step name must be a non-empty str"),
    case("step-name-empty", step(name=""), CE, "step name must be a non-empty str"),
    case("step-positional-kind", lambda: af.step("planning"), CE, "a step decorates a function"),
    case("step-positional-int", lambda: af.step(5), CE, "a step decorates a function"),
    case("plan-kind", preset(af.plan, kind="tool"), CE, "this decorator sets kind"),
    case("plan-positional-str", preset(af.plan, "make_plan"), CE, "a step decorates a function"),
    case("plan-tier-int", lambda: af.plan(tier=5)(_fn), CE, "tier must be a tier name"),
    case("verify-budget-int", lambda: af.verify(budget=5)(_fn), CE, "budgets.Budget"),
    case("retrieve-cache-typo", lambda: af.retrieve(cache="x")(_fn), CE, "not a cache policy"),
    case("tool-escalate-float", lambda: af.tool(escalate=0.5)(_fn), CE, "af.Escalate"),
    case("tool-on-budget", lambda: af.tool(on_budget="skip")(_fn), CE, "not a budget policy"),
    # --- af.Escalate --------------------------------------------------------------------
    case("escalate-min-confidence-nan", lambda: af.Escalate(min_confidence=NAN), CE, "[0, 1]"),
    case("escalate-min-confidence-2", lambda: af.Escalate(min_confidence=2), CE, "[0, 1]"),
    case("escalate-min-confidence-neg", lambda: af.Escalate(min_confidence=-1), CE, "[0, 1]"),
    case("escalate-min-confidence-str", lambda: af.Escalate(min_confidence="x"), CE, "'x'"),
    case("escalate-min-confidence-bool", lambda: af.Escalate(min_confidence=True), CE, "[0, 1]"),
    case("escalate-min-confidence-inf", lambda: af.Escalate(min_confidence=INF), CE, "[0, 1]"),
    case("escalate-scorer-unknown", lambda: af.Escalate(scorer="magic"), CE, "unknown scorer"),
    case("escalate-scorer-int", lambda: af.Escalate(scorer=5), CE, "a scorer must be one of"),
    case(
        "escalate-scorer-two-args",
        lambda: af.Escalate(scorer=lambda a, b: 0.0),
        CE,
        "cannot be called with the Completion",
    ),
    case("escalate-up-to-int", lambda: af.Escalate(up_to=5), CE, "up_to must be a non-empty str"),
    case("escalate-up-to-empty", lambda: af.Escalate(up_to=""), CE, "up_to must be a non-empty"),
    case("escalate-max-attempts-0", lambda: af.Escalate(max_attempts=0), CE, "int >= 1"),
    case("escalate-max-attempts-neg", lambda: af.Escalate(max_attempts=-1), CE, "int >= 1"),
    case("escalate-max-attempts-float", lambda: af.Escalate(max_attempts=2.5), CE, "int >= 1"),
    case("escalate-max-attempts-str", lambda: af.Escalate(max_attempts="3"), CE, "int >= 1"),
    case("escalate-max-attempts-nan", lambda: af.Escalate(max_attempts=NAN), CE, "int >= 1"),
    case(
        "escalate-on-unconfident",
        lambda: af.Escalate(on_unconfident="panic"),
        CE,
        "on_unconfident must be 'return' or 'raise', got str 'panic'",
    ),
    case(
        "escalate-on-scorer-error",
        lambda: af.Escalate(on_scorer_error="ignore"),
        CE,
        "on_scorer_error must be",
    ),
    # --- af.RetryPolicy -----------------------------------------------------------------
    case("retry-max-attempts-0", lambda: af.RetryPolicy(max_attempts=0), CE, "int >= 1"),
    case("retry-max-attempts-neg", lambda: af.RetryPolicy(max_attempts=-1), CE, "int >= 1"),
    case("retry-max-attempts-nan", lambda: af.RetryPolicy(max_attempts=NAN), CE, "int >= 1"),
    case("retry-max-attempts-float", lambda: af.RetryPolicy(max_attempts=2.5), CE, "int >= 1"),
    case("retry-max-attempts-str", lambda: af.RetryPolicy(max_attempts="3"), CE, "int >= 1"),
    case("retry-max-attempts-bool", lambda: af.RetryPolicy(max_attempts=True), CE, "int >= 1"),
    case("retry-initial-backoff-neg", lambda: af.RetryPolicy(initial_backoff=-1), CE, ">= 0"),
    case("retry-initial-backoff-nan", lambda: af.RetryPolicy(initial_backoff=NAN), CE, "finite"),
    case("retry-initial-backoff-inf", lambda: af.RetryPolicy(initial_backoff=INF), CE, "finite"),
    case("retry-initial-backoff-str", lambda: af.RetryPolicy(initial_backoff="1"), CE, "finite"),
    case("retry-max-backoff-nan", lambda: af.RetryPolicy(max_backoff=NAN), CE, "max_backoff"),
    case("retry-max-backoff-inf", lambda: af.RetryPolicy(max_backoff=INF), CE, "max_backoff"),
    case("retry-max-backoff-neg", lambda: af.RetryPolicy(max_backoff=-1), CE, "max_backoff"),
    case(
        "retry-max-backoff-below-initial",
        lambda: af.RetryPolicy(initial_backoff=2, max_backoff=1),
        CE,
        "initial_backoff <= max_backoff",
    ),
    case("retry-max-time-nan", lambda: af.RetryPolicy(max_time=NAN), CE, "max_time must be"),
    case("retry-max-time-inf", lambda: af.RetryPolicy(max_time=INF), CE, "max_time must be"),
    case("retry-max-time-0", lambda: af.RetryPolicy(max_time=0), CE, "max_time must be"),
    case("retry-max-time-neg", lambda: af.RetryPolicy(max_time=-1), CE, "max_time must be"),
    case("retry-max-time-str", lambda: af.RetryPolicy(max_time="60"), CE, "max_time must be"),
    case("retry-after-nan", lambda: af.RetryPolicy(max_retry_after=NAN), CE, "max_retry_after"),
    case("retry-after-neg", lambda: af.RetryPolicy(max_retry_after=-1), CE, "max_retry_after"),
    case("retry-after-str", lambda: af.RetryPolicy(max_retry_after="x"), CE, "max_retry_after"),
    # --- af.CachePolicy -----------------------------------------------------------------
    case("cache-ttl-nan", lambda: af.CachePolicy(ttl=NAN), CE, "cache ttl must be a finite"),
    case("cache-ttl-neg", lambda: af.CachePolicy(ttl=-1), CE, "cache ttl must be"),
    case("cache-ttl-0", lambda: af.CachePolicy(ttl=0), CE, "cache ttl must be"),
    case("cache-ttl-inf", lambda: af.CachePolicy(ttl=INF), CE, "use None to keep it"),
    case("cache-ttl-str", lambda: af.CachePolicy(ttl="1"), CE, "cache ttl must be"),
    case("cache-ttl-bool", lambda: af.CachePolicy(ttl=True), CE, "cache ttl must be"),
    case("cache-threshold-nan", lambda: af.CachePolicy(threshold=NAN), CE, "threshold"),
    case("cache-threshold-2", lambda: af.CachePolicy(threshold=2), CE, "in [0, 1]"),
    case("cache-threshold-neg", lambda: af.CachePolicy(threshold=-0.1), CE, "in [0, 1]"),
    case("cache-threshold-str", lambda: af.CachePolicy(threshold="0.9"), CE, "threshold"),
    case("cache-threshold-bool", lambda: af.CachePolicy(threshold=True), CE, "threshold"),
    case("cache-scope-unknown", lambda: af.CachePolicy(scope="tenant"), CE, "scope 'tenant'"),
    case("cache-scope-int", lambda: af.CachePolicy(scope=5), CE, "cache scope 5 is unknown"),
    case("cache-kind-unknown", lambda: af.CachePolicy(kind="fuzzy"), CE, "cache kind 'fuzzy'"),
    case("cache-kind-int", lambda: af.CachePolicy(kind=5), CE, "cache kind 5 is unknown"),
    case("cache-embedder-int", lambda: af.CachePolicy(embedder=5), CE, "embedder must be"),
    case("cache-embedder-empty", lambda: af.CachePolicy(embedder=""), CE, "embedder must be"),
    case("cache-text-str", lambda: af.CachePolicy(text="last"), CE, "text must be a function"),
    case("cache-allow-tools-str", lambda: af.CachePolicy(allow_tool_calls="y"), CE, "True or"),
    case("cache-allow-sampled-int", lambda: af.CachePolicy(allow_sampled=1), CE, "True or"),
    # --- af.run -------------------------------------------------------------------------
    case("run-name-int", run(5), CE, "run name must be a non-empty str"),
    case("run-name-empty", run(""), CE, "run name must be a non-empty str"),
    case("run-name-none", run(None), CE, "run name must be a non-empty str"),
    case("run-budget-dict", run("r", budget={"max_usd": 1}), CE, "run budget must be"),
    case("run-budget-int", run("r", budget=5), CE, "run budget must be a budgets.Budget"),
    case("run-user-id-int", run("r", user_id=5), CE, "run user_id must be a non-empty str"),
    case("run-user-id-empty", run("r", user_id=""), CE, "run user_id must be"),
    case("run-session-id-int", run("r", session_id=5), CE, "run session_id must be"),
    case("run-metadata-str", run("r", metadata="x"), CE, "run metadata must be a dict"),
    case("run-metadata-list", run("r", metadata=[1, 2]), CE, "run metadata must be a dict"),
    case("run-metadata-int-key", run("r", metadata={1: "a"}), CE, "metadata keys must be str"),
    case("run-tags-str", run("r", tags="nightly"), CE, "run tags must be a list of str"),
    case("run-tags-int-item", run("r", tags=[1]), CE, "run tags must be a list of str"),
    case("run-tags-int", run("r", tags=5), CE, "run tags must be a list of str"),
    # --- af.configure -------------------------------------------------------------------
    case("configure-zoo-dict", configure(zoo={}), CE, "zoo must be an af.ModelZoo"),
    case("configure-zoo-str", configure(zoo="zoo"), CE, "zoo must be an af.ModelZoo"),
    case(
        "configure-zoo-and-path",
        configure(zoo=af.ModelZoo(tiers=[_tier()]), path="x.toml"),
        CE,
        "either zoo= or path=",
    ),
    case("configure-path-missing", configure(path="/nonexistent/af.toml"), CE, "does not exist"),
    case("configure-path-int", configure(path=5), CE, "configure path must be a path"),
    case("configure-path-dir", configure_dir, CE, "is a directory"),
    case("configure-path-bad-toml", toml("tiers = [\n"), CE, "is not valid TOML"),
    case("configure-path-no-tiers", toml("cache_dir = '/tmp'\n"), CE, "the model zoo is empty"),
    case("configure-cache-dir-int", configure(cache_dir=5), CE, "cache_dir must be a path"),
    case("configure-cache-dir-empty", configure(cache_dir=""), CE, "cache_dir must be a path"),
    case("configure-retry-dict", configure(retry={"max_attempts": 3}), CE, "af.RetryPolicy"),
    case("configure-retry-int", configure(retry=3), CE, "retry must be an af.RetryPolicy"),
    case("configure-tenant-budget-dict", configure(tenant_budget={"max_usd": 5}), CE, "Budget"),
    case("configure-ledger-backend-str", configure(ledger_backend="redis"), CE, "LedgerBackend"),
    case("configure-cache-backend-typo", configure(cache_backend="dsk"), CE, "cache_backend"),
    case("configure-cache-backend-int", configure(cache_backend=5), CE, "not a cache backend"),
    case("configure-embedder-int", configure(embedder=5), CE, "embedder must be a zoo tier"),
    case("configure-embedder-empty", configure(embedder=""), CE, "embedder must be a zoo tier"),
    case("configure-embedder-unknown", configure(embedder="nope"), af.UnknownTierError, "nope"),
    case("configure-router-object", configure(router=object()), CE, "router must have choose"),
    case(
        "configure-toml-cache-dir-int",
        toml("cache_dir = 5\n[[tiers]]\nname = 't'\nendpoints = [{model = 'openai/m'}]\n"),
        CE,
        "cache_dir must be a path",
    ),
    # --- af.Endpoint / af.Tier / af.ModelZoo (ConfigError today) ------------------------
    case("endpoint-no-model", lambda: af.Endpoint(), CE, "an Endpoint needs a model"),
    case("endpoint-model-empty", lambda: af.Endpoint(model=""), CE, "an Endpoint needs a model"),
    case("endpoint-model-int", lambda: af.Endpoint(model=5), CE, "invalid Endpoint: model"),
    case("endpoint-timeout-neg", lambda: _ep(timeout=-1), CE, "invalid Endpoint: timeout"),
    case("endpoint-timeout-nan", lambda: _ep(timeout=NAN), CE, "invalid Endpoint: timeout"),
    case("endpoint-pricing-str", lambda: _ep(pricing="cheap"), CE, "invalid Endpoint: pricing"),
    case("endpoint-api-base-int", lambda: _ep(api_base=5), CE, "invalid Endpoint: api_base"),
    case("tier-no-endpoints", lambda: af.Tier("t", endpoints=[]), CE, "has no endpoints"),
    case("tier-name-int", lambda: af.Tier(5, endpoints=[_ep()]), CE, "invalid Tier: name"),
    case("tier-name-empty", lambda: af.Tier("", endpoints=[_ep()]), CE, "invalid Tier: name"),
    case("tier-fallback-int", lambda: _tier(fallback=5), CE, "invalid Tier: fallback"),
    case("tier-endpoint-dict-no-model", lambda: af.Tier("t", endpoints=[{}]), CE, "needs a model"),
    case("tier-endpoints-str", lambda: af.Tier("t", endpoints="abc"), CE, "endpoints"),
    case("tier-endpoint-int", lambda: af.Tier("t", endpoints=[5]), CE, "endpoints"),
    case("zoo-empty", lambda: af.ModelZoo(tiers=[]), CE, "the model zoo is empty"),
    case("zoo-duplicate", lambda: af.ModelZoo(tiers=[_tier(), _tier()]), CE, "duplicate tier"),
    case("zoo-auto-tier", lambda: af.ModelZoo(tiers=[_tier("auto")]), CE, "cannot be named"),
    case(
        "zoo-fallback-unknown",
        lambda: af.ModelZoo(tiers=[_tier(fallback="nope")]),
        af.UnknownTierError,
        "fallback of tier",
    ),
    case(
        "zoo-fallback-self",
        lambda: af.ModelZoo(tiers=[_tier(fallback="t")]),
        CE,
        "names itself as fallback",
    ),
    case(
        "zoo-default-unknown",
        lambda: af.ModelZoo(tiers=[_tier()], default_tier="nope"),
        af.UnknownTierError,
        "default_tier",
    ),
    case("zoo-tiers-str", lambda: af.ModelZoo(tiers="abc"), CE, "tiers"),
    case("zoo-tier-int", lambda: af.ModelZoo(tiers=[5]), CE, "tiers"),
    # --- budgets.Budget (pydantic: ValidationError) -------------------------------------
    case("budget-usd-neg", lambda: Budget(max_usd=-1), VE, "max_usd must be greater than 0"),
    case("budget-usd-0", lambda: Budget(max_usd=0), VE, "max_usd must be greater than 0"),
    case("budget-usd-nan", lambda: Budget(max_usd=NAN), VE, "finite number"),
    case("budget-usd-inf", lambda: Budget(max_usd=INF), VE, "finite number"),
    case("budget-usd-str", lambda: Budget(max_usd="abc"), VE, "max_usd"),
    case("budget-input-neg", lambda: Budget(max_input_tokens=-1), VE, "greater than 0"),
    case("budget-input-float", lambda: Budget(max_input_tokens=2.5), VE, "max_input_tokens"),
    case("budget-output-0", lambda: Budget(max_output_tokens=0), VE, "greater than 0"),
    case("budget-output-str", lambda: Budget(max_output_tokens="x"), VE, "max_output_tokens"),
    case("budget-calls-nan", lambda: Budget(max_calls=NAN), VE, "max_calls"),
    case("budget-window-0", lambda: Budget(window=timedelta(0)), VE, "window"),
    case("budget-window-neg", lambda: Budget(window=timedelta(seconds=-1)), VE, "window"),
    case("budget-unknown-field", lambda: Budget(max_dollars=1), VE, "max_dollars"),
    case("budget-calls-bool", lambda: Budget(max_calls=True), VE, "max_calls"),
    # --- the span-content environment, before any call is paid -------------------------
    case(
        "env-capture-maybe-configure",
        with_env("AGENTFLOW_CAPTURE_CONTENT", "maybe", configure(cache_dir="/tmp/af")),
        CE,
        "AGENTFLOW_CAPTURE_CONTENT='maybe' is not a boolean",
    ),
    case(
        "env-capture-maybe-complete",
        with_env("AGENTFLOW_CAPTURE_CONTENT", "maybe", complete()),
        CE,
        "AGENTFLOW_CAPTURE_CONTENT='maybe' is not a boolean",
    ),
    case(
        "env-capture-maybe-acomplete",
        with_env("AGENTFLOW_CAPTURE_CONTENT", "maybe", acomplete()),
        CE,
        "set it to 'true' or 'false'",
    ),
    case(
        "env-capture-maybe-stream",
        with_env("AGENTFLOW_CAPTURE_CONTENT", "maybe", stream()),
        CE,
        "AGENTFLOW_CAPTURE_CONTENT='maybe'",
    ),
    case(
        "env-capture-maybe-embed",
        with_env("AGENTFLOW_CAPTURE_CONTENT", "maybe", embed("x")),
        CE,
        "AGENTFLOW_CAPTURE_CONTENT='maybe'",
    ),
    case(
        "env-capture-maybe-tracing-setup",
        with_env(
            "AGENTFLOW_CAPTURE_CONTENT",
            "maybe",
            lambda: tracing.setup(project="bad-input", set_global=False),
        ),
        TE,
        "AGENTFLOW_CAPTURE_CONTENT='maybe'",
    ),
    case(
        "env-hide-inputs-configure",
        with_env("OPENINFERENCE_HIDE_INPUTS", "perhaps", configure(cache_dir="/tmp/af")),
        CE,
        "OPENINFERENCE_HIDE_INPUTS='perhaps'",
    ),
    case(
        "env-max-chars-str-complete",
        with_env("AGENTFLOW_MAX_CONTENT_CHARS", "lots", complete()),
        CE,
        "AGENTFLOW_MAX_CONTENT_CHARS='lots' is not a positive integer",
    ),
    case(
        "env-max-chars-0-complete",
        with_env("AGENTFLOW_MAX_CONTENT_CHARS", "0", complete()),
        CE,
        "AGENTFLOW_MAX_CONTENT_CHARS='0' is not a positive integer",
    ),
    case(
        "content-config-max-chars-0",
        lambda: tracing.ContentConfig(max_chars=0),
        TE,
        "max_chars must be an int of at least 1",
    ),
    case(
        "content-config-capture-str",
        lambda: tracing.ContentConfig(capture_content="yes"),
        TE,
        "capture_content must be True or False",
    ),
]


_WHAT_TO_DO = (
    *("use ", "one of", "set it", "give", "pass ", "fix", "add ", "leave", "point", "e.g."),
    *("rename", "write", "turn ", "see "),
)


def _model_requests(srv: LoopbackServer) -> list[str]:
    return [r.path for r in srv.requests if r.path.endswith(("/completions", "/embeddings"))]


@pytest.fixture
def _no_tracing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AGENTFLOW_CAPTURE_CONTENT",
        "OPENINFERENCE_HIDE_INPUTS",
        "OPENINFERENCE_HIDE_OUTPUTS",
        "AGENTFLOW_MAX_CONTENT_CHARS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("_no_tracing_env")
@pytest.mark.parametrize(("action", "error", "text"), CASES)
def test_bad_input_fails_early(
    srv: LoopbackServer,
    zoo: af.ModelZoo,
    action: Action,
    error: type[BaseException],
    text: str,
) -> None:
    with pytest.raises(error) as caught:
        action()
    message = str(caught.value)
    assert text in message, message
    if error is not pydantic.ValidationError:
        # agentflow's own errors through agentflow, tracing's own when used alone
        assert isinstance(caught.value, af.AgentflowError | tracing.TracingError)
        # ... and the message says what to do
        assert any(word in message.lower() for word in _WHAT_TO_DO), message
    assert _model_requests(srv) == [], "a malformed call reached the model server"
    assert af.get_config().zoo is zoo, "a failed configure() changed the configuration"


def test_table_is_large() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids), "case ids must be unique"


def test_good_input_still_goes_through(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    """The checks refuse what is malformed, not what is merely unusual."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Search for Paris."}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Paris is in France."},
    ]
    done = af.complete(
        messages,
        tools=[TOOL],
        tool_choice="auto",
        temperature=0,
        top_p=1,
        max_tokens=16,
        stop=["\n"],
        seed=1,
        cache={"no-store": True},
    )
    assert done.text
    assert len(_model_requests(srv)) == 1
