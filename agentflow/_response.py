"""Turn an engine's chat response into a ``Completion`` (text, message, logprobs, parsed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from agentflow._completion import Completion
from agentflow._errors import ResponseValidationError
from agentflow._zoo import Endpoint
from budgets import Cost, Usage

__all__ = ["build_completion", "message_dict", "parse_format", "token_logprobs"]


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def message_dict(message: Any) -> dict[str, Any]:
    """The assistant message as a plain OpenAI-format dict; tool calls unchanged."""
    if message is None:
        return {"role": "assistant", "content": None}
    if hasattr(message, "model_dump"):
        data: dict[str, Any] = message.model_dump(exclude_none=True)
    elif isinstance(message, Mapping):
        data = {k: v for k, v in message.items() if v is not None}
    else:
        data = dict(vars(message))
    data.pop("provider_specific_fields", None)  # litellm's, not the engine's
    data.setdefault("role", "assistant")
    data.setdefault("content", None)
    return data


def token_logprobs(choice: Any) -> list[float] | None:
    lp = _get(choice, "logprobs")
    content = _get(lp, "content") if lp is not None else None
    if not content:
        return None
    values = [_get(t, "logprob") for t in content]
    return [float(v) for v in values if v is not None]


def parse_format(response_format: Any, text: str) -> Any:
    """Validate ``text`` against a pydantic ``response_format``; None for other formats."""
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        try:
            return response_format.model_validate_json(text)
        except ValidationError as err:
            raise ResponseValidationError(
                f"the reply does not validate against {response_format.__name__}: "
                f"{err.error_count()} error(s), first: {err.errors()[0]['msg']}. Escalate to a "
                "stronger tier, lower the temperature, or describe the schema in the prompt.",
                text,
            ) from None
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_object":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ResponseValidationError(f"the reply is not JSON: {err}", text) from None
    return None


def build_completion(
    response: Any, endpoint: Endpoint, tier: str, params: Mapping[str, Any], latency_s: float
) -> Completion:
    choices = _get(response, "choices") or []
    if not choices:
        raise ResponseValidationError(f"{endpoint.id} returned no choices", str(response)[:500])
    choice = choices[0]
    message = message_dict(_get(choice, "message"))
    text = message.get("content") or ""
    completion = Completion(
        text=text,
        message=message,
        tier=tier,
        model=endpoint.span_model,
        endpoint=endpoint.id,
        usage=Usage(),
        cost=Cost(),
        finish_reason=_get(choice, "finish_reason"),
        logprobs=token_logprobs(choice),
        raw=response,
        latency_s=latency_s,
    )
    if "response_format" in params and not message.get("tool_calls"):
        completion.parsed = parse_format(params["response_format"], text)
    return completion
