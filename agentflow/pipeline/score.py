"""Stage 6, score: how confident is an answer?

The plan yields a ``Score`` effect; the driver runs the step's scorer with
``evaluate`` (sync) or ``aevaluate`` (asyncio) and sends back the confidence, or a
``ScoreFailed`` when the scorer raised. Calls a scorer makes (a judge, extra samples)
skip the step's escalation, cache and auto-routing (``in_scorer``), so scoring never
recurses; they are still paid and traced. The scorer objects live in
``agentflow._scoring`` and ``agentflow.scorers``.
"""

from __future__ import annotations

import inspect
from typing import Any

from agentflow._context import in_scorer
from agentflow._scoring import as_scorer, finish_score, needs_logprobs, run_async
from agentflow.pipeline.effects import Score, ScoreFailed

__all__ = ["aevaluate", "evaluate", "needs_logprobs"]


def evaluate(effect: Score) -> float | ScoreFailed | None:
    """Run the scorer synchronously (an async scorer on the scorer loop, which lives
    as long as the process: a new event loop per call would leave its clients open)."""
    token = in_scorer.set(True)
    try:
        value = as_scorer(effect.scorer).start(
            effect.completion, use_async=False, messages=effect.messages
        )
        if inspect.isawaitable(value):
            value = run_async(value)
    except Exception as err:
        return ScoreFailed(err)
    finally:
        in_scorer.reset(token)
    return _finish(value)


async def aevaluate(effect: Score) -> float | ScoreFailed | None:
    """Run the scorer under asyncio (scorers that call models use ``acomplete``)."""
    token = in_scorer.set(True)
    try:
        value = as_scorer(effect.scorer).start(
            effect.completion, use_async=True, messages=effect.messages
        )
        if inspect.isawaitable(value):
            value = await value
    except Exception as err:
        return ScoreFailed(err)
    finally:
        in_scorer.reset(token)
    return _finish(value)


def _finish(value: Any) -> float | ScoreFailed | None:
    try:
        return finish_score(value)
    except Exception as err:  # the scorer broke its contract: a bug, never "unconfident"
        return ScoreFailed(err, fatal=True)
