"""Distillation data: the requests where a cheap tier's answer was rejected and a
stronger tier's accepted, one JSON line each, to fine-tune or distil the cheap tier.

Opt-in: ``af.configure(distill_path="distill.jsonl")`` (or ``AGENTFLOW_DISTILL_PATH``).
The plan calls ``record`` when an escalating step accepts an answer above its first
tier; the line is appended as an ``Io`` effect (a worker thread under asyncio). A line
that cannot be written warns once (``DistillWarning``) and never fails the call: the
answer was paid for and is returned. The format is documented in docs/economics.md
("Distillation data").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final

from opentelemetry import trace

import tracing
from agentflow._completion import Completion
from agentflow._config import get_config
from agentflow._errors import AgentflowError
from agentflow._warnings import warn_once
from agentflow.pipeline.effects import Effect, Io
from agentflow.pipeline.request import Request

__all__ = ["FORMAT_VERSION", "DistillWarning", "escalation_tax", "record", "write_line"]

FORMAT_VERSION: Final = 1
# the request parameters that shape the answer, kept beside the prompt
_PARAMS: Final = (
    "tools",
    "tool_choice",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
)
_lock = threading.Lock()


class DistillWarning(AgentflowError, UserWarning):
    """A distillation line could not be written (disk full, directory gone, ...): the
    call still returns its answer. Emitted once per file."""


def escalation_tax(answers: Sequence[Completion]) -> Decimal:
    """What the rejected answers (all but the last) cost on top of the accepted one."""
    return sum((a.cost.total_usd for a in answers[:-1]), Decimal(0))


def record(request: Request, answers: Sequence[Completion]) -> Generator[Effect, Any, None]:
    """Append one line for a request whose last answer was accepted after the others
    were rejected; nothing unless a ``distill_path`` is configured."""
    path = get_config().distill_path
    if path is None or len(answers) < 2 or request.escalate is None:
        return
    line = json.dumps(_entry(request, answers), ensure_ascii=False, default=str)
    yield Io(partial(write_line, path, line))


def write_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` (one write, under a lock); warn once if it fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock, path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    except OSError as exc:
        warn_once(
            DistillWarning,
            str(path),
            f"cannot append distillation data to {str(path)!r} ({exc}); the answers are "
            "returned but not recorded: fix the path given to "
            "af.configure(distill_path=...) or AGENTFLOW_DISTILL_PATH",
        )


def _entry(request: Request, answers: Sequence[Completion]) -> dict[str, Any]:
    escalate = request.escalate
    assert escalate is not None
    frame = request.frame
    context = trace.get_current_span().get_span_context()
    run = request.run
    entry: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "step": frame.policy.name if frame is not None else None,
        "kind": frame.policy.kind if frame is not None else None,
        "run": getattr(run, "name", None),
        "trace_id": f"{context.trace_id:032x}" if context.is_valid else None,
        "min_confidence": escalate.min_confidence,
        "scorer": _scorer_name(escalate.scorer),
        "prompt": request.messages,
        "params": {k: request.params[k] for k in _PARAMS if k in request.params},
        "rejected": [_answer(a) for a in answers[:-1]],
        "accepted": _answer(answers[-1]),
        "escalation_tax_usd": float(escalation_tax(answers)),
    }
    clean: dict[str, Any] = _jsonable(entry)
    return clean


def _answer(completion: Completion) -> dict[str, Any]:
    usage = completion.usage
    return {
        "tier": completion.tier,
        "model": completion.model,
        "endpoint": completion.endpoint,
        "text": completion.text,
        "message": dict(completion.message),
        "confidence": completion.confidence,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "cached_prompt_tokens": usage.cached_prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        },
        "usd": float(completion.cost.total_usd),
    }


def _scorer_name(scorer: Any) -> str:
    if isinstance(scorer, str):
        return scorer
    return str(getattr(scorer, "__name__", None) or type(scorer).__name__)


def _jsonable(value: Any) -> Any:
    """Plain JSON values, every string redacted (``tracing.redact``: registered secrets
    and credential-looking text); a pydantic ``response_format`` becomes its schema."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    schema = getattr(value, "model_json_schema", None)
    if isinstance(value, type) and callable(schema):
        return _jsonable(schema())
    if isinstance(value, str):
        return tracing.redact(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    return tracing.redact(str(value))
