"""Stage 6, score: how confident is an answer?

The pipeline's score stage asks a scorer for a score (or an awaitable of it), normalises
it with ``finish_score`` and compares it with ``Escalate.min_confidence``. A scorer is

* ``"logprob"`` / ``"logprob_min"``: the answer's token probabilities (mean / least),
* a plain function of the ``Completion`` (sync or async) returning a float in [0, 1] or
  a bool, or
* a ``Scorer`` object from ``agentflow.scorers`` (schema, judge, agreement and the
  combinations ``all_of`` / ``any_of`` / ``weighted``).

``None`` means "cannot tell" and is treated as unconfident, so the request climbs.
The scorer objects themselves live here (the base class, logprobs and plain functions,
which the strings and functions map to) and in ``agentflow.scorers``.

An async scorer called from sync code (a sync step, ``Scorer.__call__``) runs on one
long-lived event loop in a daemon thread (``run_async``), not on a new loop per call:
clients bound to an event loop (litellm's, httpx's) are then made once and reused,
instead of one set of sockets left open per scored call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import math
import os
import threading
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from agentflow._errors import ConfigError

if TYPE_CHECKING:
    from agentflow._completion import Completion

__all__ = [
    "LOGPROB_SCORERS",
    "FunctionScorer",
    "LogprobScorer",
    "Messages",
    "MissingLogprobsWarning",
    "ScoreValue",
    "Scorer",
    "as_scorer",
    "check_scorer",
    "finish_score",
    "needs_logprobs",
    "reset_warnings",
    "run_async",
    "scorer_tiers",
]

Messages = Sequence[Mapping[str, Any]]
ScoreValue = float | bool | None
LOGPROB_SCORERS = ("logprob", "logprob_min")

_VALID = (
    "'logprob', 'logprob_min', a function taking the Completion and returning a float in "
    "[0, 1] or a bool, or a scorer from agentflow.scorers: logprob(), logprob_min(), "
    "verifier(fn), schema(Model), judge(tier=...), agreement(n=...), all_of(...), "
    "any_of(...), weighted({scorer: weight})"
)


class MissingLogprobsWarning(UserWarning):
    """An endpoint answered without token logprobs although a logprob scorer needs them.

    Emitted once per endpoint. Its answers score None (unconfident), so they climb.
    """


class Scorer:
    """A confidence scorer: ``score(completion, messages)`` gives a float in [0, 1], a
    bool, or None when it cannot tell.

    Subclass it and override ``score`` (and ``ascore`` when the scorer makes model calls:
    use ``agentflow.acomplete`` there and ``agentflow.complete`` in ``score``).
    ``messages`` is the request that produced the answer (None when unknown).
    """

    @property
    def needs_logprobs(self) -> bool:
        """True when the scorer reads token logprobs: the pipeline then asks for them."""
        return False

    def tiers(self) -> tuple[str, ...]:
        """The zoo tiers this scorer calls itself (a judge's tier), for validation."""
        return ()

    def score(self, completion: Completion, messages: Messages | None) -> ScoreValue:
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    async def ascore(self, completion: Completion, messages: Messages | None) -> ScoreValue:
        return self.score(completion, messages)

    def start(
        self, completion: Completion, *, use_async: bool, messages: Messages | None = None
    ) -> Any:
        """The score, or an awaitable of it (``ascore`` when ``use_async``)."""
        if use_async:
            return self.ascore(completion, messages)
        return self.score(completion, messages)

    def __call__(self, completion: Completion, messages: Messages | None = None) -> float | None:
        """Score one completion synchronously (outside a running event loop)."""
        value = self.start(completion, use_async=False, messages=messages)
        if inspect.isawaitable(value):
            value = run_async(value)
        return finish_score(value)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


class _ScorerLoop:
    """An event loop running for good in a daemon thread (remade after a fork)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="agentflow-scorer-loop", daemon=True
        )
        self.thread.start()


_loop: _ScorerLoop | None = None
_loop_lock = threading.Lock()


def _scorer_loop() -> _ScorerLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.pid != os.getpid() or not _loop.thread.is_alive():
            _loop = _ScorerLoop()
        return _loop


def run_async(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` from sync code and return its result.

    It runs on the scorer loop, in a copy of the caller's context (so the run, the step
    and ``in_scorer`` follow it); the caller's thread waits. Interrupted while waiting
    (``KeyboardInterrupt``), the task is cancelled. Called from the scorer loop itself
    (sync code inside an async scorer), it runs on a fresh loop in another thread
    rather than deadlock.
    """
    runner = _scorer_loop()
    if threading.current_thread() is runner.thread:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            context = contextvars.copy_context()
            return pool.submit(context.run, asyncio.run, _awaited(awaitable)).result()
    context = contextvars.copy_context()
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()
    tasks: list[asyncio.Task[Any]] = []

    def start() -> None:
        coroutine: Coroutine[Any, Any, Any] = _awaited(awaitable)
        task = runner.loop.create_task(coroutine, context=context)
        tasks.append(task)
        task.add_done_callback(settle)

    def settle(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            done.cancel()
        elif (error := task.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(task.result())

    runner.loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if not done.done():  # interrupted while waiting: stop the scorer too
            runner.loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
        raise


_warned_endpoints: set[str] = set()
_warned_lock = threading.Lock()


def reset_warnings() -> None:
    """Warn again about endpoints already warned about (testing)."""
    with _warned_lock:
        _warned_endpoints.clear()


def _warn_missing_logprobs(completion: Completion, name: str) -> None:
    endpoint = completion.endpoint
    with _warned_lock:
        if endpoint in _warned_endpoints:
            return
        _warned_endpoints.add(endpoint)
    warnings.warn(
        f"{endpoint} returned no token logprobs, so the {name!r} scorer cannot tell how "
        "confident its answers are: they score None (unconfident) and climb to the next "
        "tier. Use an engine that returns logprobs (llama-server and vLLM do when asked), "
        "or another scorer (agentflow.scorers.verifier, schema, judge, agreement).",
        MissingLogprobsWarning,
        stacklevel=2,
    )


class LogprobScorer(Scorer):
    """``how="mean"``: exp(mean token logprob), the geometric mean of the token
    probabilities; ``how="min"``: the probability of the least likely token."""

    def __init__(self, how: Literal["mean", "min"] = "mean") -> None:
        if how not in ("mean", "min"):
            raise ConfigError(f"LogprobScorer(how={how!r}): use 'mean' or 'min'")
        self.how = how

    @property
    def needs_logprobs(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return "logprob" if self.how == "mean" else "logprob_min"

    def score(self, completion: Completion, messages: Messages | None) -> float | None:
        lps = completion.logprobs
        if not lps:
            if completion.text and not completion.cache_hit:
                _warn_missing_logprobs(completion, self.name)
            return None
        if self.how == "min":
            return math.exp(min(lps))
        return math.exp(sum(lps) / len(lps))

    def __repr__(self) -> str:
        return f"{self.name}()"


class FunctionScorer(Scorer):
    """A plain function of the ``Completion`` (sync or async) as a scorer."""

    def __init__(self, fn: Callable[[Completion], Any]) -> None:
        _check_function(fn)
        self.fn = fn

    def score(self, completion: Completion, messages: Messages | None) -> ScoreValue:
        return self.start(completion, use_async=False)  # type: ignore[no-any-return]

    def start(
        self, completion: Completion, *, use_async: bool, messages: Messages | None = None
    ) -> Any:
        # an async function gives a coroutine either way: the driver awaits or runs it
        return self.fn(completion)

    def __repr__(self) -> str:
        return f"verifier({getattr(self.fn, '__qualname__', self.fn)!r})"


def _check_function(fn: Any) -> None:
    if not callable(fn):
        raise ConfigError(f"a scorer must be one of {_VALID}; got {type(fn).__name__} {fn!r}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: trust them
    try:
        signature.bind(object())
    except TypeError:
        raise ConfigError(
            f"scorer function {getattr(fn, '__qualname__', fn)!r}{signature} cannot be "
            "called with the Completion as its one argument; write it as "
            "def score(completion: af.Completion) -> float | bool"
        ) from None


_BY_NAME: dict[str, Scorer] = {
    "logprob": LogprobScorer("mean"),
    "logprob_min": LogprobScorer("min"),
}


def check_scorer(scorer: Any) -> None:
    """Raise ConfigError, naming the valid options, unless ``scorer`` is a scorer."""
    if isinstance(scorer, Scorer):
        return  # scorer objects validate themselves when built
    if isinstance(scorer, str):
        if scorer not in _BY_NAME:
            raise ConfigError(f"unknown scorer {scorer!r}; use {_VALID}")
        return
    _check_function(scorer)


def as_scorer(scorer: Any) -> Scorer:
    """The ``Scorer`` object for a string, a function or a scorer object."""
    if isinstance(scorer, Scorer):
        return scorer
    check_scorer(scorer)
    if isinstance(scorer, str):
        return _BY_NAME[scorer]
    return FunctionScorer(scorer)


def needs_logprobs(scorer: Any) -> bool:
    """True when ``scorer`` (or any part of a combination) reads token logprobs."""
    if isinstance(scorer, Scorer):
        return scorer.needs_logprobs
    return isinstance(scorer, str) and scorer in _BY_NAME


def scorer_tiers(scorer: Any) -> tuple[str, ...]:
    """The zoo tiers a scorer calls itself (a judge's), to check against the zoo."""
    return scorer.tiers() if isinstance(scorer, Scorer) else ()


def finish_score(value: Any) -> float | None:
    """A scorer's result as a confidence: bool → 1.0 / 0.0, a number in [0, 1] as a
    float, None stays None (unknown: unconfident). Anything else is a ConfigError."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(
            f"a scorer must return a bool or a float in [0, 1] (or None when it cannot "
            f"tell), got {value!r}"
        )
    return float(value)
