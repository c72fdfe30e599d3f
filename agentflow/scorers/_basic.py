"""Scorers that read the answer alone: token logprobs, a verifier function, a schema."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from agentflow._errors import ConfigError
from agentflow._scoring import FunctionScorer, LogprobScorer, Messages, Scorer

if TYPE_CHECKING:
    from agentflow._completion import Completion

__all__ = ["SchemaScorer", "logprob", "logprob_min", "schema", "verifier"]


def logprob() -> LogprobScorer:
    """The geometric mean of the answer's token probabilities, exp(mean logprob).

    The pipeline asks the engine for logprobs. An endpoint that returns none gives None
    (unconfident: the request climbs) and a one-time ``MissingLogprobsWarning``.
    """
    return LogprobScorer("mean")


def logprob_min() -> LogprobScorer:
    """The probability of the answer's least likely token: one shaky token is enough to
    make the answer unconfident."""
    return LogprobScorer("min")


def verifier(fn: Callable[[Completion], Any]) -> FunctionScorer:
    """A function (sync or async) of the ``Completion`` returning a float in [0, 1] or a
    bool: a unit test of the answer, a regex, a tool that checks it."""
    return FunctionScorer(fn)


class SchemaScorer(Scorer):
    """1.0 when the answer parses as ``model`` (a pydantic model class), else 0.0."""

    def __init__(self, model: type[BaseModel]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(
                f"schema() takes a pydantic model class (class Answer(BaseModel): ...), "
                f"got {model!r}"
            )
        self.model = model

    def score(self, completion: Completion, messages: Messages | None) -> float:
        parsed = completion.parsed
        if isinstance(parsed, self.model):
            return 1.0
        try:
            if isinstance(parsed, Mapping):  # response_format={"type": "json_object"}
                self.model.model_validate(parsed)
            else:
                self.model.model_validate_json(completion.text)
        except (ValidationError, json.JSONDecodeError, ValueError):
            return 0.0
        return 1.0

    def __repr__(self) -> str:
        return f"schema({self.model.__name__})"


def schema(model: type[BaseModel]) -> SchemaScorer:
    """1.0 when the answer parses as the pydantic ``model`` (``completion.parsed`` is used
    when the request's ``response_format`` already parsed it), else 0.0."""
    return SchemaScorer(model)
