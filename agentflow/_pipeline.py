"""The call pipeline as one plan: route → budget → cache → call (retry, failover) → score
→ account.

The plan is a generator that never performs a model call itself: it yields ``Call`` (send
this request to this endpoint), ``Sleep`` (back off), ``Score`` (run the step's scorer)
and ``Embed`` (run an embedding function for the semantic cache) and gets the outcome
sent back. ``_drivers`` runs it synchronously or under asyncio, so the logic of routing,
retries, failover, budgets, caching and escalation exists once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from opentelemetry import trace

import tracing
from agentflow._accounting import (
    end_attempt_span,
    normalise_usage,
    price,
    record_attempt,
    start_attempt_span,
)
from agentflow._budgeting import BudgetGate, Reservations
from agentflow._caching import CacheStage, Embed
from agentflow._completion import Attempt, Completion, Embedding
from agentflow._config import get_config, get_zoo
from agentflow._context import StepFrame, current_step, in_scorer
from agentflow._errors import (
    BudgetExceededError,
    CallError,
    ConfigError,
    ScorerError,
    UnknownTierError,
)
from agentflow._layout import arrange
from agentflow._litellm import classify, retry_after, status_code
from agentflow._policy import CacheControl, Escalate, RetryPolicy, cache_control
from agentflow._response import build_completion
from agentflow._routing import candidates
from agentflow._scoring import needs_logprobs
from agentflow._step import AUTO
from agentflow._zoo import Endpoint, ModelZoo
from budgets import Cost, Usage

T = TypeVar("T")

__all__ = [
    "Call",
    "Context",
    "Embed",
    "Outcome",
    "Score",
    "ScoreFailed",
    "Sleep",
    "Slot",
    "answer_at_tier",
    "chat_success",
    "embed_success",
    "embedding_context",
    "plan_completion",
    "record_failure",
    "run_embedding",
]


@dataclass(slots=True)
class Call:
    endpoint: Endpoint
    params: dict[str, Any]
    ctx: Context | None = None


@dataclass(slots=True)
class Sleep:
    seconds: float


@dataclass(slots=True)
class Score:
    escalate: Escalate
    completion: Completion
    messages: list[dict[str, Any]] = field(default_factory=list)  # the request, for judges


@dataclass(slots=True)
class ScoreFailed:
    """What the driver sends back when the scorer raised (``fatal``: it returned something
    that is not a score, a bug that is raised whatever the step says)."""

    error: BaseException
    fatal: bool = False


@dataclass(slots=True)
class Outcome:
    response: Any = None
    error: BaseException | None = None
    latency_s: float = 0.0


Instruction = Call | Sleep | Score | Embed


@dataclass
class Context:
    """What one ``af.complete`` call needs: the zoo, the step, the run and the request."""

    zoo: ModelZoo
    frame: StepFrame | None
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    tier: str
    escalate: Escalate | None
    retry: RetryPolicy
    prefix_cache: bool
    on_budget: str
    operation: str = "chat"
    attempts: list[Attempt] = field(default_factory=list)
    end_span: Callable[[float | None, BaseException | None], None] | None = None
    cache: CacheControl | None = None
    routed_by: str | None = None

    @classmethod
    def build(
        cls,
        messages: Any,
        params: dict[str, Any],
        tier: str | None = None,
        operation: str = "chat",
    ) -> Context:
        zoo = get_zoo()
        frame = current_step.get()
        policy = frame.policy if frame is not None else None
        scoring = in_scorer.get()  # calls a scorer makes: no escalation, cache or routing
        if messages is None:
            raise ConfigError("af.complete needs messages=[{'role': 'user', 'content': ...}]")
        cache_arg = params.pop("cache", None)
        if cache_arg is not None and operation != "chat":
            raise ConfigError(
                "cache= applies to af.complete without stream=True; streamed and embedding "
                "calls are never served from the response cache"
            )
        prefix_cache = policy.prefix_cache if policy else True
        if prefix_cache:
            msgs, params = arrange(messages, params)
        else:
            msgs = [{k: v for k, v in m.items() if k != "static"} for m in messages]
        chosen = tier or (policy.tier if policy else None) or zoo.default.name
        routed_by = None
        if chosen == AUTO:
            if scoring:
                chosen = zoo.default.name
            else:
                chosen, routed_by = _route(zoo, msgs, policy)
        zoo.check_tier(chosen)
        escalate = policy.escalate if policy and operation == "chat" and not scoring else None
        if escalate is not None and needs_logprobs(escalate.scorer):
            params.setdefault("logprobs", True)  # the scorer reads token logprobs
        step_cache = policy.cache if policy is not None and not scoring else None
        return cls(
            zoo=zoo,
            frame=frame,
            messages=msgs,
            params=params,
            tier=chosen,
            escalate=escalate,
            retry=get_config().retry,
            prefix_cache=prefix_cache,
            on_budget=policy.on_budget if policy else "raise",
            operation=operation,
            cache=cache_control(step_cache, cache_arg) if operation == "chat" else None,
            routed_by=routed_by,
        )

    def finish_span(self, confidence: float | None, error: BaseException | None = None) -> None:
        """End the last attempt's span, now that its confidence is known."""
        end, self.end_span = self.end_span, None
        if end is not None:
            end(confidence, error)

    @property
    def step_name(self) -> str | None:
        return self.frame.policy.name if self.frame is not None else None

    def ladder(self) -> list[str]:
        """The tiers to try in order: the step's, then stronger ones when escalating."""
        names = list(self.zoo.names)
        start = names.index(self.tier)
        if self.escalate is None:
            return [self.tier]
        stop = names.index(self.escalate.up_to) if self.escalate.up_to else len(names) - 1
        ladder = names[start : stop + 1]
        if self.escalate.max_attempts is not None:
            ladder = ladder[: self.escalate.max_attempts]
        return ladder


def _route(zoo: ModelZoo, messages: list[dict[str, Any]], policy: Any) -> tuple[str, str]:
    """``tier="auto"``: ask the step's router (else the configured one) for a tier."""
    router = (policy.router if policy is not None else None) or get_config().router
    where = f"step {policy.name!r}" if policy is not None else "af.complete"
    if router is None:
        raise ConfigError(
            f"{where} uses tier='auto' but no router is set: pass router= to the step or "
            "af.configure(router=...) (e.g. agentflow.routing.RuleRouter)"
        )
    kind = policy.kind if policy is not None else "generic"
    choice = router.choose(messages, kind=kind, tiers=tuple(zoo.names))
    name = type(router).__name__
    if choice not in zoo.names:
        raise UnknownTierError(str(choice), zoo.names, where=f"{where}: router {name}")
    return choice, name


def plan_completion(ctx: Context) -> Generator[Instruction, Any, Completion]:
    """Serve from the cache, else answer and store; the answer climbs while the scorer is
    not satisfied."""
    cache = CacheStage.open(ctx)
    if cache is not None:
        hit = yield from cache.lookup()
        if hit is not None:
            return hit
    completion = yield from _climb(ctx)
    if cache is not None:
        cache.save(completion)
    return completion


def _climb(ctx: Context) -> Generator[Instruction, Any, Completion]:
    """Answer at the step's tier; climb while the scorer is not satisfied."""
    ladder = ctx.ladder()
    best: Completion | None = None
    gate = BudgetGate(ctx)
    for level, tier_name in enumerate(ladder):
        if level > 0 and not gate.can_afford_tier(tier_name):
            break  # escalation never spends past the budget: keep the best answer so far
        completion = yield from _answer_within_budget(ctx, gate, tier_name, level)
        if ctx.escalate is None:
            return _finish(ctx, completion, None)
        confidence = yield from _score(ctx, ctx.escalate, completion)
        completion.confidence = confidence
        _mark_confidence(ctx, confidence)
        if best is None or (confidence or 0.0) > (best.confidence or 0.0):
            best = completion
        if confidence is not None and confidence >= ctx.escalate.min_confidence:
            return _finish(ctx, completion, True)
    assert best is not None  # the first tier always answers or raises
    if ctx.escalate is not None and ctx.escalate.on_unconfident == "raise":
        raise CallError(
            f"no tier up to {ladder[-1]!r} answered with confidence >= "
            f"{ctx.escalate.min_confidence} (best {best.confidence}); lower min_confidence "
            "or allow a stronger tier",
            ctx.attempts,
        )
    return _finish(ctx, best, False)


def _score(
    ctx: Context, escalate: Escalate, completion: Completion
) -> Generator[Instruction, Any, float | None]:
    """Run the scorer; a scorer that raises makes the answer unconfident (the error is
    recorded on the attempt's span) unless the step says ``on_scorer_error="raise"``."""
    try:
        result = yield Score(escalate, completion, ctx.messages)
    except BaseException:
        ctx.finish_span(None, None)
        raise
    if isinstance(result, ScoreFailed):
        err = result.error
        ctx.finish_span(None, err)
        if result.fatal:
            raise err
        if escalate.on_scorer_error == "raise":
            raise ScorerError(
                f"the scorer of step {ctx.step_name!r} raised {type(err).__name__}: {err}; "
                "fix the scorer, or use on_scorer_error='unconfident' to treat it as a "
                "low-confidence answer"
            ) from err
        ctx.attempts[-1] = replace(
            ctx.attempts[-1], error=tracing.redact(f"scorer {type(err).__name__}: {err}")
        )
        return None
    ctx.finish_span(result, None)
    return result  # type: ignore[no-any-return]  # finish_score gave float | None


def _answer_within_budget(
    ctx: Context, gate: BudgetGate, tier_name: str, level: int
) -> Generator[Instruction, Any, Completion]:
    """Answer at ``tier_name``; when a budget refuses, apply the step's ``on_budget``:
    ``raise`` (default), ``downgrade`` (the strongest cheaper tier that fits) or ``trim``
    (drop the oldest non-system messages until the prompt fits)."""
    tiers = [tier_name]
    if ctx.on_budget == "downgrade" and level == 0:
        names = list(ctx.zoo.names)
        tiers += reversed(names[: names.index(tier_name)])
    refusal: BudgetExceededError | None = None
    for name in tiers:
        while True:
            try:
                return (yield from answer_at_tier(ctx, gate, name, level, chat_success))
            except BudgetExceededError as err:
                refusal = err
                if ctx.on_budget == "trim" and gate.trim():
                    continue
                break
    assert refusal is not None
    raise refusal


def _mark_confidence(ctx: Context, confidence: float | None) -> None:
    ctx.attempts[-1] = replace(ctx.attempts[-1], confidence=confidence)


def _finish(ctx: Context, completion: Completion, confident: bool | None) -> Completion:
    completion.attempts = list(ctx.attempts)
    completion.confident = confident
    return completion


def _backoff(policy: RetryPolicy, retries: int, err: BaseException) -> float:
    asked = retry_after(err)
    if asked is not None:
        return min(asked, policy.max_retry_after)
    ceiling = min(policy.max_backoff, policy.initial_backoff * (2**retries))
    return random.uniform(0, ceiling)  # jitter, not cryptography


@dataclass(slots=True)
class Slot:
    """One attempt in flight: where it went, what it reserved, its span and outcome."""

    ctx: Context
    gate: BudgetGate
    tier: str
    endpoint: Endpoint
    params: dict[str, Any]
    reservations: Reservations
    span: trace.Span
    number: int
    level: int
    outcome: Outcome

    def attempt(self, usage: Usage, cost: Cost, reported: bool, **changes: Any) -> Attempt:
        changes.setdefault("ok", True)
        return Attempt(
            number=self.number,
            tier=self.tier,
            endpoint=self.endpoint.id,
            model=self.endpoint.span_model,
            usage=usage,
            cost=cost,
            latency_s=self.outcome.latency_s,
            step=self.ctx.step_name,
            escalation_level=self.level,
            cached_tokens_reported=reported,
            **changes,
        )

    def record(self, attempt: Attempt) -> None:
        self.ctx.attempts.append(attempt)
        record_attempt(attempt, self.ctx.frame)

    def settle(self, usage: Usage) -> Cost:
        """Price what the engine used and settle the reservations with it."""
        cost = price(self.endpoint, usage)
        self.gate.settle(self.reservations, usage, cost)
        return cost


def chat_success(slot: Slot) -> Completion:
    """A chat answer came back: settle, account, and build the Completion."""
    response = slot.outcome.response
    usage, reported = normalise_usage(getattr(response, "usage", None))
    cost = slot.settle(usage)
    attempt = slot.attempt(usage, cost, reported)
    try:
        completion = build_completion(
            response, slot.endpoint, slot.tier, slot.ctx.params, slot.outcome.latency_s
        )
    except BaseException as err:
        # the engine answered and was paid; the answer is unusable
        attempt = replace(attempt, ok=False, error=f"{type(err).__name__}: {err}")
        slot.record(attempt)
        end_attempt_span(slot.span, attempt, slot.endpoint, params=slot.params, error=err)
        raise
    slot.record(attempt)

    def end_span(confidence: float | None = None, error: BaseException | None = None) -> None:
        end_attempt_span(
            slot.span,
            replace(attempt, confidence=confidence),
            slot.endpoint,
            params=slot.params,
            messages=slot.ctx.messages,
            output_message=completion.message,
            output_text=completion.text,
            finish_reason=completion.finish_reason,
            error=error,
        )

    if slot.ctx.escalate is None:
        end_span()
    else:  # the span ends once the scorer has said how confident the answer is
        slot.ctx.end_span = end_span
    completion.usage, completion.cost = usage, cost
    return completion


def answer_at_tier(
    ctx: Context,
    gate: BudgetGate,
    tier_name: str,
    level: int,
    on_success: Callable[[Slot], T],
) -> Generator[Instruction, Any, T]:
    """Try the tier's replicas, then its fallbacks, retrying transient errors."""
    deadline = time.monotonic() + ctx.retry.max_time
    errors: list[str] = []
    last_error: BaseException | None = None
    for tier, endpoint in candidates(
        ctx.zoo, tier_name, ctx.messages, ctx.params, ctx.prefix_cache
    ):
        retries = 0
        while True:
            number = len(ctx.attempts) + 1
            params, reservations = gate.reserve(endpoint, tier.name)
            span = start_attempt_span(
                endpoint, tier.name, number, level, ctx.operation, routed_by=ctx.routed_by
            )
            with trace.use_span(span, end_on_exit=False):
                outcome: Outcome = yield Call(endpoint, params, ctx)
            slot = Slot(
                ctx, gate, tier.name, endpoint, params, reservations, span, number, level, outcome
            )
            if outcome.error is None:
                return on_success(slot)
            err = outcome.error
            gate.release(reservations)
            record_failure(slot, err)
            last_error = err
            errors.append(tracing.redact(f"{endpoint.id}: {type(err).__name__}: {err}"))
            kind = classify(err)
            if kind == "fatal":
                raise CallError(
                    tracing.redact(
                        f"{endpoint.id} rejected the request ({type(err).__name__}: {err}); "
                        "fix the request — retrying it elsewhere would fail the same way"
                    ),
                    ctx.attempts,
                ) from err
            retries += 1
            wait = _backoff(ctx.retry, retries - 1, err)
            if (
                kind == "retry"
                and retries < ctx.retry.max_attempts
                and time.monotonic() + wait < deadline
            ):
                yield Sleep(wait)
                continue
            break  # fail over to the next replica, then to the fallback tier
    raise CallError(
        f"every endpoint of tier {tier_name!r} (and its fallbacks) failed after "
        f"{len(errors)} attempts: " + "; ".join(errors[-4:]),
        ctx.attempts,
    ) from last_error


def record_failure(slot: Slot, err: BaseException, usage: Usage | None = None) -> None:
    """Account a failed attempt (refunded unless ``usage`` says tokens were spent)."""
    usage = usage or Usage()
    cost = price(slot.endpoint, usage)
    attempt = slot.attempt(
        usage,
        cost,
        False,
        ok=False,
        error=tracing.redact(f"{type(err).__name__}: {err}"),
        status_code=status_code(err),
    )
    slot.record(attempt)
    end_attempt_span(
        slot.span,
        attempt,
        slot.endpoint,
        params=slot.params,
        messages=slot.ctx.messages,
        error=err,
        operation=slot.ctx.operation,
    )


def embed_success(slot: Slot) -> Embedding:
    """An embeddings answer came back: settle, account, and build the Embedding."""
    response = slot.outcome.response
    usage, _ = normalise_usage(getattr(response, "usage", None))
    cost = slot.settle(usage)
    attempt = slot.attempt(usage, cost, False)
    slot.record(attempt)
    end_attempt_span(slot.span, attempt, slot.endpoint, params=slot.params, operation="embeddings")
    data = getattr(response, "data", None) or []
    vectors = [list(d["embedding"] if isinstance(d, dict) else d.embedding) for d in data]
    return Embedding(
        vectors=vectors,
        tier=slot.tier,
        model=slot.endpoint.span_model,
        endpoint=slot.endpoint.id,
        usage=usage,
        cost=cost,
        attempts=list(slot.ctx.attempts),
        raw=response,
    )


def embedding_context(texts: list[str], tier: str | None, params: dict[str, Any]) -> Context:
    params["input"] = texts
    # token counting and prefix routing read messages; embeddings have only inputs
    messages = [{"role": "user", "content": t} for t in texts]
    return Context.build(messages, params, tier, operation="embeddings")


def run_embedding(ctx: Context) -> Generator[Instruction, Any, Embedding]:
    return (yield from answer_at_tier(ctx, BudgetGate(ctx), ctx.tier, 0, embed_success))
