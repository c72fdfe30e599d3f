"""``@af.step`` and its presets: a model tier, a budget and caching for one agent step.

The wrapper is chosen once, at decoration time, by the kind of function (coroutine,
generator, async generator, plain); each keeps ``__name__``, ``__wrapped__``, the
signature and coroutine-ness, so LangGraph still injects ``config`` into a node.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import Token
from typing import Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace

import tracing
from agentflow._config import register_step
from agentflow._context import StepFrame, current_run, current_step, totals_attributes
from agentflow._errors import BudgetExceededError, ConfigError
from agentflow._policy import (
    AUTO,
    CachePolicy,
    Escalate,
    StepKind,
    StepPolicy,
    check_kind,
    check_on_budget,
    coerce_cache,
)
from agentflow._validate import check_bool, check_name, describe
from budgets import Budget, Ledger

__all__ = ["AUTO", "StepPolicy", "drive", "plan", "retrieve", "step", "tool", "verify"]

P = ParamSpec("P")
R = TypeVar("R")


def _enter(policy: StepPolicy) -> tuple[StepFrame, Token[StepFrame | None], object]:
    parent = current_step.get()
    run = parent.run if parent is not None else current_run.get()
    span = tracing.tracer().start_span(policy.name, attributes=policy.attributes)
    ledger = (
        Ledger(policy.budget, name=f"step {policy.name!r} budget", error=BudgetExceededError)
        if policy.budget
        else None
    )
    frame = StepFrame(policy, parent, run, span, ledger)
    if run is not None:
        run._step_entered(policy.name, policy.kind)
    return frame, current_step.set(frame), otel_context.attach(trace.set_span_in_context(span))


def _activate(frame: StepFrame) -> tuple[Token[StepFrame | None], object]:
    return current_step.set(frame), otel_context.attach(trace.set_span_in_context(frame.span))


def _deactivate(tokens: tuple[Token[StepFrame | None], object]) -> None:
    current_step.reset(tokens[0])
    otel_context.detach(tokens[1])  # type: ignore[arg-type]  # the token attach() gave


def _finish(frame: StepFrame, exc: BaseException | None) -> None:
    span = frame.span
    if frame.called:
        span.set_attributes(totals_attributes(frame.totals))
    if exc is not None:
        tracing.record_error(span, exc)
    span.end()


def drive(frame: StepFrame, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Run a generator (not started yet) with ``frame``'s step active only while the
    generator's own code runs; sent values and thrown exceptions pass through; the step's
    span ends with the generator (with its error, if any)."""
    error: BaseException | None = None
    try:
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            tokens = _activate(frame)
            try:
                item = gen.throw(to_throw) if to_throw is not None else gen.send(to_send)
            except StopIteration as stop:
                return stop.value
            finally:
                _deactivate(tokens)
            to_send, to_throw = None, None
            try:
                to_send = yield item
            except GeneratorExit:
                tokens = _activate(frame)
                try:
                    gen.close()
                finally:
                    _deactivate(tokens)
                raise
            except BaseException as exc:  # thrown in by the consumer: pass it on
                to_throw = exc
    except GeneratorExit:
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        _finish(frame, error)


def _wrap(func: Callable[P, R], policy: StepPolicy) -> Callable[P, R]:
    if inspect.isasyncgenfunction(func):
        return cast(Callable[P, R], _wrap_async_gen(func, policy))
    if inspect.isgeneratorfunction(func):
        return cast(Callable[P, R], _wrap_gen(func, policy))
    if inspect.iscoroutinefunction(func):
        return cast(Callable[P, R], _wrap_async(func, policy))

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        frame, token, otel_token = _enter(policy)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _deactivate((token, otel_token))
            _finish(frame, exc)
            raise
        _deactivate((token, otel_token))
        _finish(frame, None)
        return result

    return wrapper


def _wrap_async(func: Callable[P, Any], policy: StepPolicy) -> Callable[P, Any]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        frame, token, otel_token = _enter(policy)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            _deactivate((token, otel_token))
            _finish(frame, exc)
            raise
        _deactivate((token, otel_token))
        _finish(frame, None)
        return result

    return wrapper


def _wrap_gen(func: Callable[P, Generator[Any, Any, Any]], policy: StepPolicy) -> Callable[P, Any]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Generator[Any, Any, Any]:
        frame, token, otel_token = _enter(policy)
        try:
            gen = func(*args, **kwargs)
        except BaseException as exc:
            _deactivate((token, otel_token))
            _finish(frame, exc)
            raise
        _deactivate((token, otel_token))
        return (yield from drive(frame, gen))

    return wrapper


def _wrap_async_gen(
    func: Callable[P, AsyncGenerator[Any, Any]], policy: StepPolicy
) -> Callable[P, Any]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Any, Any]:
        frame, token, otel_token = _enter(policy)
        try:
            agen = func(*args, **kwargs)
        finally:
            _deactivate((token, otel_token))
        error: BaseException | None = None
        try:
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                tokens = _activate(frame)
                try:
                    if to_throw is not None:
                        item = await agen.athrow(to_throw)
                    else:
                        item = await agen.asend(to_send)
                except StopAsyncIteration:
                    return
                finally:
                    _deactivate(tokens)
                to_send, to_throw = None, None
                try:
                    to_send = yield item
                except GeneratorExit:
                    tokens = _activate(frame)
                    try:
                        await agen.aclose()
                    finally:
                        _deactivate(tokens)
                    raise
                except BaseException as exc:
                    to_throw = exc
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            _finish(frame, error)

    return wrapper


def _make_policy(
    func: Callable[..., Any],
    *,
    kind: str,
    name: str | None,
    tier: str | None,
    budget: Budget | None,
    cache: str | CachePolicy | None,
    escalate: Escalate | None,
    prefix_cache: bool,
    on_budget: str,
    router: Any = None,
) -> StepPolicy:
    check_name("step name", name, hint="leave it out to use the function's __name__")
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(
            f"budget must be a budgets.Budget, got {describe(budget)}; "
            "e.g. budget=Budget(max_output_tokens=256)"
        )
    if escalate is not None and not isinstance(escalate, Escalate):
        raise ConfigError(
            f"escalate must be an af.Escalate, got {describe(escalate)}; "
            "e.g. escalate=af.Escalate(min_confidence=0.8)"
        )
    if tier is not None and (not isinstance(tier, str) or not tier):
        raise ConfigError(
            f"tier must be a tier name or 'auto', got {tier!r}; "
            "use a name of the zoo or leave it out for the zoo's default"
        )
    check_bool("prefix_cache", prefix_cache)
    if router is not None:
        if not callable(getattr(router, "choose", None)):
            raise ConfigError(
                "router must have choose(messages, *, kind, tiers) -> tier name, got "
                f"{describe(router)}; see agentflow.routing.RuleRouter"
            )
        if tier not in (None, AUTO):
            raise ConfigError(f"router= picks the tier, so use tier='auto' (got tier={tier!r})")
        tier = AUTO
    policy = StepPolicy(
        name=name or getattr(func, "__name__", None) or repr(func),
        kind=check_kind(kind),
        tier=tier,
        budget=budget,
        cache=coerce_cache(cache),
        escalate=escalate,
        prefix_cache=bool(prefix_cache),
        on_budget=check_on_budget(on_budget),
        router=router,
    )
    register_step(policy)
    return policy


@overload
def step(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def step(
    func: None = None,
    /,
    *,
    kind: str = "generic",
    name: str | None = None,
    tier: str | None = None,
    budget: Budget | None = None,
    cache: str | CachePolicy | None = None,
    escalate: Escalate | None = None,
    prefix_cache: bool = True,
    on_budget: str = "raise",
    router: Any = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def step(
    func: Callable[P, R] | None = None,
    /,
    *,
    kind: str = "generic",
    name: str | None = None,
    tier: str | None = None,
    budget: Budget | None = None,
    cache: str | CachePolicy | None = None,
    escalate: Escalate | None = None,
    prefix_cache: bool = True,
    on_budget: str = "raise",
    router: Any = None,
) -> Any:  # the overloads above give the precise types
    """Decorate an agent step: ``@af.step(kind="tool", tier="specialist", budget=...)``.

    ``af.complete`` inside the step follows this policy. A tier the zoo does not have
    fails here if the zoo is configured, else when ``af.configure`` runs.

    ``tier="auto"`` lets a router pick the tier per request (``router=`` here, else
    ``af.configure(router=...)``); ``cache="exact"``/``"semantic"`` or an
    ``af.CachePolicy`` reuses answers; ``escalate=af.Escalate(...)`` climbs the zoo when
    an answer is not confident; ``prefix_cache`` (on by default) lays prompts out
    stable-part-first and pins each prefix to one replica.
    """

    def decorate(f: Callable[P, R]) -> Callable[P, R]:
        if not callable(f):
            raise ConfigError(
                f"a step decorates a function, got {describe(f)}; pass options by keyword, "
                "e.g. @af.step(kind='planning', tier='workhorse')"
            )
        policy = _make_policy(
            f,
            kind=kind,
            name=name,
            tier=tier,
            budget=budget,
            cache=cache,
            escalate=escalate,
            prefix_cache=prefix_cache,
            on_budget=on_budget,
            router=router,
        )
        wrapped = _wrap(f, policy)
        wrapped.__agentflow_step__ = policy  # type: ignore[attr-defined]  # for introspection
        return wrapped

    if func is not None:
        return decorate(func)
    return decorate


class _Preset:
    """``@af.plan``, ``@af.retrieve``, ``@af.tool``, ``@af.verify``: ``step`` with a kind."""

    def __init__(self, kind: StepKind, doc: str) -> None:
        self.kind = kind
        self.__doc__ = doc

    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...
    @overload
    def __call__(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        tier: str | None = None,
        budget: Budget | None = None,
        cache: str | CachePolicy | None = None,
        escalate: Escalate | None = None,
        prefix_cache: bool = True,
        on_budget: str = "raise",
        router: Any = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
    def __call__(self, func: Callable[P, R] | None = None, /, **options: Any) -> Any:
        if "kind" in options:
            raise ConfigError(
                f"this decorator sets kind={self.kind!r}; use @af.step(kind=...) instead"
            )
        decorator: Callable[[Callable[P, R]], Callable[P, R]] = step(kind=self.kind, **options)
        return decorator if func is None else decorator(func)

    def __repr__(self) -> str:
        return f"<agentflow step decorator kind={self.kind!r}>"


plan = _Preset("planning", "A planning step (span kind CHAIN). Options as ``af.step``.")
retrieve = _Preset("retrieval", "A retrieval step (span kind RETRIEVER). Options as ``af.step``.")
tool = _Preset("tool", "A tool-use step (span kind TOOL). Options as ``af.step``.")
verify = _Preset("verification", "A verification step (EVALUATOR). Options as ``af.step``.")
