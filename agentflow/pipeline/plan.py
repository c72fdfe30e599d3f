"""The pipeline's order: route → budget → cache → layout → call → score → account.

A plan is a generator that never performs I/O itself: it yields effects
(``agentflow.pipeline.effects``) and gets their results sent back; ``drivers`` runs it
synchronously or under asyncio. The stages never import each other or this module:
this module is the one place that says which stage runs when, so the logic of routing,
retries, failover, budgets, caching and escalation exists once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any, TypeVar

from opentelemetry import trace

import tracing
from agentflow._completion import Completion, Embedding
from agentflow._config import get_config, get_zoo
from agentflow._context import current_run, current_step, in_scorer
from agentflow._errors import (
    BudgetExceededError,
    CallError,
    ConfigError,
    ContextWindowError,
    ScorerError,
)
from agentflow._litellm import litellm
from agentflow._mode import get_mode
from agentflow._policy import AUTO, Escalate, cache_control
from agentflow._validate import check_call
from agentflow.pipeline import account, dedup, distill, layout, route
from agentflow.pipeline import call as call_stage
from agentflow.pipeline.budget import PROMPT_MARGIN, BudgetGate
from agentflow.pipeline.cache import CacheHit, CacheStage
from agentflow.pipeline.call import Backoff, classify, request_kwargs
from agentflow.pipeline.effects import Call, Effect, Io, Outcome, Score, ScoreFailed, Sleep
from agentflow.pipeline.health import replica_health
from agentflow.pipeline.load import engine_load
from agentflow.pipeline.request import Request, Slot
from agentflow.pipeline.score import needs_logprobs
from agentflow.pipeline.stream import StreamStart

__all__ = [
    "answer_at_tier",
    "build_embedding_request",
    "build_request",
    "plan_completion",
    "plan_embedding",
    "plan_stream",
]

T = TypeVar("T")
Plan = Generator[Effect, Any, T]


# --- the request ------------------------------------------------------------------------
async def abuild_request(
    messages: Any,
    params: dict[str, Any],
    tier: str | None = None,
    operation: str = "chat",
) -> Request:
    """``build_request`` for ``af.acomplete``: a call whose tier a router picks is built
    in a worker thread (a learned router embeds the prompt, and its ``RouteContext``
    reads the ledgers: neither may block the event loop); any other is built inline."""
    frame = current_step.get()
    policy = frame.policy if frame is not None else None
    chosen = tier or (policy.tier if policy else None)
    if chosen == AUTO and not in_scorer.get():
        return await asyncio.to_thread(build_request, messages, params, tier, operation)
    return build_request(messages, params, tier, operation)


def build_request(
    messages: Any,
    params: dict[str, Any],
    tier: str | None = None,
    operation: str = "chat",
) -> Request:
    """The request value of one call: the step's policy applied, the prompt laid out
    (stage 4) and the tier chosen (stage 1)."""
    check_call(messages, params, tier, operation)
    zoo = get_zoo()
    frame = current_step.get()
    policy = frame.policy if frame is not None else None
    run = frame.run if frame is not None else current_run.get()
    scoring = in_scorer.get()  # calls a scorer makes: no escalation, cache or routing
    if messages is None:
        raise ConfigError("af.complete needs messages=[{'role': 'user', 'content': ...}]")
    for key in ("max_tokens", "max_completion_tokens"):
        value = params.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(
                f"{key} must be a positive int (the most output tokens to pay for), got "
                f"{value!r}; leave it out to let the budget choose"
            )
    cache_arg = params.pop("cache", None)
    if cache_arg is not None and operation != "chat":
        raise ConfigError(
            "cache= applies to af.complete without stream=True; a stream follows its "
            "step's cache policy, and embeddings are never served from the response cache"
        )
    prefix_cache = policy.prefix_cache if policy else True
    if prefix_cache:
        msgs, params = layout.arrange(messages, params)
    else:
        msgs = [{k: v for k, v in m.items() if k != "static"} for m in messages]
    chosen = tier or (policy.tier if policy else None) or zoo.default.name
    routed_by = None
    if chosen == AUTO:
        if scoring:
            chosen = zoo.default.name
        else:
            router = (policy.router if policy is not None else None) or get_config().router
            chosen, routed_by = route.choose_tier(
                router,
                msgs,
                kind=policy.kind if policy is not None else "generic",
                zoo=zoo,
                where=f"step {policy.name!r}" if policy is not None else "af.complete",
                context=route.RouteContext(zoo, _ledgers_of(frame, run)),
            )
    zoo.check_tier(chosen)
    escalate = policy.escalate if policy and operation == "chat" and not scoring else None
    if operation == "chat_stream" and policy and policy.escalate and not scoring:
        # a stream is scored only when buffered; "direct" streams the step's tier unscored
        escalate = policy.escalate if policy.escalate.stream == "buffer" else None
    if escalate is not None and needs_logprobs(escalate.scorer):
        params.setdefault("logprobs", True)  # the scorer reads token logprobs
    step_cache = policy.cache if policy is not None and not scoring else None
    return Request(
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
        cache=cache_control(step_cache, cache_arg) if operation != "embeddings" else None,
        routed_by=routed_by,
        run=run,
    )


def _ledgers_of(frame: Any, run: Any) -> tuple[Any, ...]:
    """The ledgers a call in ``frame`` of ``run`` would pay into (for a router)."""
    ledgers: list[Any] = []
    if frame is not None:
        ledgers.extend(f.ledger for f in frame.chain() if f.ledger is not None)
    if run is not None:
        if run.ledger is not None:
            ledgers.append(run.ledger)
        ledgers.extend(run.tenant_ledgers)
    return tuple(ledgers)


def build_embedding_request(texts: list[str], tier: str | None, params: dict[str, Any]) -> Request:
    params["input"] = texts
    # token counting and prefix routing read messages; embeddings have only inputs
    messages = [{"role": "user", "content": t} for t in texts]
    return build_request(messages, params, tier, operation="embeddings")


# --- chat: cache, then the climb ---------------------------------------------------------
def plan_completion(request: Request) -> Plan[Completion]:
    """Serve from the cache, else answer and store; the answer climbs while the scorer
    is not satisfied."""
    mode = get_mode()
    cache = CacheStage.open(request) if mode is None or mode.cache else None
    flight: dedup.Flight | None = None
    if cache is not None:
        hit = yield from cache.lookup()
        if hit is None and cache.shares_flights:
            flight, leads = dedup.depart(cache.key)
            if not leads:  # the same request is in flight: wait for its answer
                hit = yield from _follow(request, cache, flight)
                flight = None
        if hit is not None:
            return account.record_cache_hit(
                request, hit.completion, hit.kind, hit.similarity, hit.saved_usd
            )
    try:
        completion = yield from _climb(request)
        if cache is not None:
            yield from cache.save(completion)
    finally:
        if flight is not None and cache is not None:  # answered, failed or cancelled
            dedup.land(cache.key, flight)
    return completion


def _follow(request: Request, cache: CacheStage, flight: dedup.Flight) -> Plan[CacheHit | None]:
    """Wait (at most the retry policy's max_time) for the leader, then read its stored
    answer; None when there is none (the caller then asks the engine itself)."""
    timeout = request.retry.max_time
    landed = yield Io(lambda: flight.wait(timeout), lambda: flight.await_landing(timeout))
    if not landed:
        return None
    return (yield from cache.lookup_exact())


def _climb(request: Request) -> Plan[Completion]:
    """Answer at the step's tier; climb while the scorer is not satisfied."""
    ladder = request.ladder()
    best: Completion | None = None
    answers: list[Completion] = []  # the scored answers, for the distillation data
    gate = BudgetGate(request)
    names = list(request.zoo.names)
    floor = -1  # a tier the prompt outgrew: the ladder goes on above it
    affordable: dict[str, bool] = {}  # the next tier, checked before the last span ended
    for level, tier_name in enumerate(ladder):
        if names.index(tier_name) <= floor:
            continue
        if level > 0:
            if tier_name in affordable:
                can = affordable.pop(tier_name)
            else:
                can = yield from gate.can_afford_tier(tier_name)
            if not can:
                break  # escalation never spends past the budget: keep the best answer so far
        completion, tier_name = yield from _answer_with_room(request, gate, tier_name, level)
        floor = names.index(tier_name)
        if request.escalate is None:
            return _finish(request, completion, None)
        confidence, scorer_error = yield from _score(request, request.escalate, completion)
        if confidence is None or confidence < request.escalate.min_confidence:
            # rejected: does the climb go on? (the span says where the request settled)
            above = [t for t in ladder[level + 1 :] if names.index(t) > floor]
            if above:
                affordable[above[0]] = yield from gate.can_afford_tier(above[0])
            request.climb_ends = not above or not affordable[above[0]]
        request.finish_span(confidence, scorer_error)
        completion.confidence = confidence
        request.attempts[-1] = replace(request.attempts[-1], confidence=confidence)
        if best is None or (confidence or 0.0) > (best.confidence or 0.0):
            best = completion
        answers.append(completion)
        if confidence is not None and confidence >= request.escalate.min_confidence:
            yield from distill.record(request, answers)  # rejected below, accepted here
            return _finish(request, completion, True)
    assert best is not None  # the first tier always answers or raises
    if request.escalate is not None and request.escalate.on_unconfident == "raise":
        raise CallError(
            f"no tier up to {ladder[-1]!r} answered with confidence >= "
            f"{request.escalate.min_confidence} (best {best.confidence}); lower "
            "min_confidence or allow a stronger tier",
            request.attempts,
        )
    return _finish(request, best, False)


def _answer_with_room(
    request: Request, gate: BudgetGate, tier_name: str, level: int
) -> Plan[tuple[Completion, str]]:
    """Answer at ``tier_name``; a prompt too long for its context window (and its
    fallbacks') moves up to the next tier in the zoo's order the budget can pay for.
    The answer and the tier that gave it."""
    names = list(request.zoo.names)
    while True:
        try:
            completion = yield from _answer_within_budget(
                request, gate, tier_name, level, _chat_success
            )
            return completion, tier_name
        except ContextWindowError:
            tried = _fallback_chain(request.zoo, tier_name)
            above = [n for n in names[names.index(tier_name) + 1 :] if n not in tried]
            if not above or not (yield from gate.can_afford_tier(above[0])):
                raise
            tier_name = above[0]


def _fallback_chain(zoo: Any, tier_name: str) -> set[str]:
    """``tier_name`` and the fallback tiers its calls already tried."""
    seen: set[str] = set()
    name: str | None = tier_name
    while name is not None and name not in seen:
        seen.add(name)
        name = zoo.tier(name).fallback
    return seen


def _score(
    request: Request, escalate: Escalate, completion: Completion
) -> Plan[tuple[float | None, BaseException | None]]:
    """Run the scorer: ``(confidence, the scorer's error)``. A scorer that raises makes
    the answer unconfident (the error goes on the attempt's span, which the caller
    ends) unless the step says ``on_scorer_error="raise"``."""
    try:
        result = yield Score(escalate.scorer, completion, request.messages)
    except BaseException:
        request.finish_span(None, None)
        raise
    if isinstance(result, ScoreFailed):
        err = result.error
        if result.fatal:
            request.finish_span(None, err)
            raise err
        if escalate.on_scorer_error == "raise":
            request.finish_span(None, err)
            raise ScorerError(
                f"the scorer of step {request.step_name!r} raised {type(err).__name__}: "
                f"{err}; fix the scorer, or use on_scorer_error='unconfident' to treat it "
                "as a low-confidence answer"
            ) from err
        request.attempts[-1] = replace(
            request.attempts[-1], error=tracing.redact(f"scorer {type(err).__name__}: {err}")
        )
        return None, err
    return result, None  # the score stage gave float | None


def _answer_within_budget(
    request: Request,
    gate: BudgetGate,
    tier_name: str,
    level: int,
    on_success: Callable[[Slot, BudgetGate], Plan[T]],
) -> Plan[T]:
    """Answer at ``tier_name``; when a budget refuses, apply the step's ``on_budget``:
    ``raise`` (default), ``downgrade`` (the strongest cheaper tier that fits) or ``trim``
    (drop the oldest non-system messages until the prompt fits)."""
    tiers = [tier_name]
    if request.on_budget == "downgrade" and level == 0:
        names = list(request.zoo.names)
        tiers += reversed(names[: names.index(tier_name)])
    refusal: BudgetExceededError | None = None
    for name in tiers:
        while True:
            try:
                return (yield from answer_at_tier(request, gate, name, level, on_success))
            except BudgetExceededError as err:
                refusal = err
                if request.on_budget == "trim" and layout.trim_oldest(request.messages):
                    gate.forget_counts()
                    continue
                break
    assert refusal is not None
    raise refusal


def _finish(request: Request, completion: Completion, confident: bool | None) -> Completion:
    completion.attempts = list(request.attempts)
    completion.confident = confident
    return completion


# --- one tier: replicas, retries, failover ----------------------------------------------
def _chat_success(slot: Slot, gate: BudgetGate) -> Plan[Completion]:
    response = slot.outcome.response
    usage, reported = account.normalise_usage(getattr(response, "usage", None))
    estimated = usage.prompt_tokens == 0 and usage.completion_tokens == 0
    if estimated:  # no usage from the engine: count it, never price it at $0
        usage = yield from gate.estimate(slot.endpoint, _reply_text(response))
    cost = account.price(slot.endpoint, usage)
    yield from gate.settle(slot.reservations, usage, cost)
    return account.chat_success(
        slot, usage, cost, reported, estimated=estimated, capped_at=_capped_at(slot)
    )


def _reply_text(response: Any) -> str:
    """The reply's text and tool-call arguments, as the engine would have counted them."""
    try:
        message = response.choices[0].message
    except (AttributeError, IndexError, TypeError):
        return ""
    parts = [getattr(message, "content", None) or ""]
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        parts += [getattr(fn, "name", None) or "", getattr(fn, "arguments", None) or ""]
    return "".join(str(p) for p in parts)


def _capped_at(slot: Slot) -> int | None:
    """The max_tokens a budget lowered this attempt to, if it did."""
    for key in ("max_tokens", "max_completion_tokens"):
        sent = slot.params.get(key)
        if sent is not None:
            asked = slot.request.params.get(key)
            return int(sent) if asked is None or int(sent) < int(asked) else None
    return None


def _embed_success(slot: Slot, gate: BudgetGate) -> Plan[Embedding]:
    usage, _ = account.normalise_usage(getattr(slot.outcome.response, "usage", None))
    cost = account.price(slot.endpoint, usage)
    yield from gate.settle(slot.reservations, usage, cost)
    return account.embed_success(slot, usage, cost)


def _stream_started(slot: Slot, gate: BudgetGate) -> Plan[Slot]:
    return slot  # the stream settles when it ends (``agentflow.pipeline.stream``)
    yield  # a generator, like the other endings


def answer_at_tier(
    request: Request,
    gate: BudgetGate,
    tier_name: str,
    level: int,
    on_success: Callable[[Slot, BudgetGate], Plan[T]],
) -> Plan[T]:
    """Try the tier's replicas, then its fallbacks, retrying transient errors."""
    started = time.monotonic()
    errors: list[str] = []
    last_error: BaseException | None = None
    key = (
        layout.prefix_key(request.messages, request.params.get("tools"))
        if request.prefix_cache
        else None
    )
    deadline = started + request.retry.max_time
    order = list(route.candidates(request.zoo, tier_name, key))
    first_pass = len(order)  # replicas in cooldown come again after it, as a last resort
    too_small: str | None = None  # a tier whose context window the prompt overflowed
    overflowed: str | None = None  # a tier with a replica whose window it cannot fit
    for position, (tier, endpoint) in enumerate(order):
        if tier.name == too_small:
            continue  # its other replicas serve the same model: straight to the fallback
        why = yield from _overflow(request, gate, endpoint)
        if why is not None:  # it cannot fit that replica's context window: never sent
            errors.append(why)
            overflowed = overflowed or tier.name
            continue
        if position < first_pass and not replica_health.admit(endpoint.id):
            order.append((tier, endpoint))  # resting: tried only if nothing else answers
            continue
        backoff: Backoff | None = None  # built on the first failure: the hot path has none
        while True:
            number = len(request.attempts) + 1
            if not call_stage.ready(endpoint):  # litellm's import: before the span, off-loop
                yield Io(litellm, blocking=True)
            params, reservations = yield from gate.reserve(endpoint, tier.name)
            span = account.start_attempt_span(
                endpoint, tier.name, number, level, request.operation, routed_by=request.routed_by
            )
            call = Call(endpoint, _kwargs(request, endpoint, params), request.operation, deadline)
            outcome = Outcome()
            slot = Slot(
                request, tier.name, endpoint, params, reservations, span, number, level, outcome
            )
            with trace.use_span(span, end_on_exit=False):
                try:
                    slot.outcome = outcome = yield call
                except BaseException as exc:  # cancelled or interrupted mid-call
                    yield from _abandon(slot, gate, exc)
                    raise
            if outcome.error is None:
                replica_health.succeeded(endpoint.id, span)
                return (yield from on_success(slot, gate))
            err = outcome.error
            yield from gate.release(reservations)
            resting = replica_health.failed(endpoint.id, err, span)
            account.record_failure(slot, err)
            last_error = err
            errors.append(tracing.redact(f"{endpoint.id}: {type(err).__name__}: {err}"))
            kind = classify(err)
            if kind == "fatal":
                raise CallError(
                    tracing.redact(
                        f"{endpoint.id} rejected the request ({type(err).__name__}: {err}); "
                        "fix the request — retrying it elsewhere would fail the same way"
                    ),
                    request.attempts,
                ) from err
            if kind == "context":
                too_small = tier.name
                break
            if resting and position + 1 < len(order):
                break  # the replica is in cooldown: another candidate answers now
            if backoff is None:
                backoff = Backoff(request.retry, started)
            wait = backoff.next_wait(err) if kind == "retry" else None
            if wait is None:
                break  # fail over to the next replica, then to the fallback tier
            if wait > request.retry.max_backoff and position + 1 < len(order):
                break  # a replica asking for a long wait: another one answers now
            mode = get_mode()
            if mode is None or mode.backoff:  # testing mode retries without sleeping
                yield Sleep(wait)
    small = too_small or overflowed
    if small is not None and errors:
        raise ContextWindowError(
            f"the prompt does not fit the context window of tier {small!r}, and no "
            f"fallback tier answered ({errors[-1]}); shorten the prompt or max_tokens, or "
            "give the tier a fallback= tier with a larger context window",
            request.attempts,
        ) from last_error
    raise CallError(
        f"every endpoint of tier {tier_name!r} (and its fallbacks) failed after "
        f"{len(errors)} attempts: " + "; ".join(errors[-4:]),
        request.attempts,
    ) from last_error


def _overflow(request: Request, gate: BudgetGate, endpoint: Any) -> Plan[str | None]:
    """Why the prompt plus ``max_tokens`` cannot fit ``endpoint``'s context window (its
    ``context_window``, else what its engine declared), or None: it fits, or no window
    is known."""
    window = endpoint.context_window or engine_load.context_window(endpoint.id)
    if window is None or request.operation == "embeddings":
        return None
    prompt = math.ceil((yield from gate.prompt_tokens(endpoint)) / PROMPT_MARGIN)
    output = request.params.get("max_tokens") or request.params.get("max_completion_tokens")
    if prompt + (output or 1) <= window:
        return None
    return (
        f"{endpoint.id}: a {prompt}-token prompt plus max_tokens={output} does not fit its "
        f"{window}-token context window"
    )


def _abandon(slot: Slot, gate: BudgetGate, exc: BaseException) -> Plan[None]:
    """A call that never came back (task cancelled, KeyboardInterrupt, the plan closed):
    its span ends with the error and its holds are released, in every ledger."""
    account.record_failure(slot, exc)
    if isinstance(exc, GeneratorExit):
        gate.release_now(slot.reservations)  # a closing generator cannot yield
    else:
        yield from gate.release(slot.reservations)


def _kwargs(request: Request, endpoint: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The attempt's litellm arguments: the prompt as laid out, with the cache markers
    the endpoint's provider needs (stage 4), shaped for the call (stage 5)."""
    if request.operation == "embeddings":
        return request_kwargs(endpoint, params, request.operation, texts=params.get("input"))
    messages = request.messages
    if request.prefix_cache:
        messages, params = layout.mark_for_provider(
            endpoint.provider, endpoint.model, messages, params
        )
    return request_kwargs(endpoint, params, request.operation, messages=messages)


# --- the other operations -------------------------------------------------------------
def plan_embedding(request: Request) -> Plan[Embedding]:
    return (
        yield from answer_at_tier(request, BudgetGate(request), request.tier, 0, _embed_success)
    )


def plan_stream(request: Request) -> Plan[StreamStart]:
    """Start a stream. Served from the response cache (replayed as chunks); or, under
    ``Escalate(stream="buffer")``, answered and scored like a plain call and replayed
    once accepted; or the engine's chunk iterator at the request's tier (``on_budget``
    applies), settled, and stored in the cache, when it ends."""
    started = time.perf_counter()
    if request.escalate is not None:  # buffered: the climb runs unstreamed
        request.operation = "chat"
        completion = yield from plan_completion(request)
        completion.ttft_s = time.perf_counter() - started  # chunks start once accepted
        return StreamStart(replay=completion)
    mode = get_mode()
    cache = CacheStage.open(request) if mode is None or mode.cache else None
    if cache is not None:
        hit = yield from cache.lookup()
        if hit is not None:
            ttft = time.perf_counter() - started
            completion = account.record_cache_hit(
                request, hit.completion, hit.kind, hit.similarity, hit.saved_usd, ttft_s=ttft
            )
            completion.ttft_s = ttft
            return StreamStart(replay=completion)
        frame = request.frame
        if frame is not None and frame.policy.escalate is not None:
            cache = None  # an unscored answer of an escalating step is never replayed
    gate = BudgetGate(request)
    slot = yield from _answer_within_budget(request, gate, request.tier, 0, _stream_started)
    return StreamStart(slot=slot, gate=gate, cache=cache)
