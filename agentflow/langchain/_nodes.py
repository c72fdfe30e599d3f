"""LangGraph nodes as steps, without decorating them.

A ``ChatAgentflow`` call made while no agentflow step is active, from a LangGraph node
(LangChain's run metadata has ``langgraph_node``), runs inside a step frame named after
the node, built by ``agentflow._step``'s own machinery: a step span (kind by the step
kind), ``run.steps[node]`` totals and a report row, as ``@af.step`` gives a decorated
node. Each model call is one step frame (one span); a node budget is shared by the calls
of one node invocation (LangGraph's task, ``langgraph_checkpoint_ns``), as a decorated
step's budget is shared by the calls of one invocation.

Node policies come from ``ChatAgentflow(nodes={...})``, else from the process-wide
``node_policies({...})``, else the default (``kind="generic"``, the zoo's defaults).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

from agentflow._context import StepFrame, current_step
from agentflow._errors import ConfigError
from agentflow._policy import StepPolicy
from agentflow._step import _activate, _deactivate, _enter, _finish, _make_policy, drive
from agentflow._validate import describe
from budgets import Ledger

__all__ = ["NodeCall", "build_node_policies", "node_call", "node_policies"]

T = TypeVar("T")

# what a node policy may set: af.step's options but the name (the node's name is it)
_OPTIONS: dict[str, Any] = {
    "kind": "generic",
    "tier": None,
    "budget": None,
    "cache": None,
    "escalate": None,
    "prefix_cache": True,
    "on_budget": "raise",
    "router": None,
}
_EXAMPLE = "e.g. {'agent': {'tier': 'heavy', 'budget': Budget(max_usd=0.01)}}"
_LEDGERS_KEPT = 1024  # node invocations whose budget ledger is remembered

_lock = threading.Lock()
_process: dict[str, StepPolicy] = {}  # node name -> StepPolicy, from node_policies()
_defaults: dict[str, StepPolicy] = {}  # node name -> the default StepPolicy, built once
_ledgers: OrderedDict[tuple[int, str], Ledger] = OrderedDict()


def _node_step() -> None:
    """Stands for the function a node policy decorates (its name is the node's)."""


def _policy(node: Any, options: Any, where: str) -> StepPolicy:
    """A node's ``StepPolicy``, checked as ``@af.step`` checks its options."""
    if not isinstance(node, str) or not node:
        raise ConfigError(
            f"{where}: node names must be non-empty str, got {describe(node)}; {_EXAMPLE}"
        )
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"{where}: node {node!r} needs a dict of step options, got {describe(options)}; "
            f"{_EXAMPLE}"
        )
    unknown = sorted(str(k) for k in options if k not in _OPTIONS)
    if unknown:
        hint = " (the node's name is the step's name)" if "name" in unknown else ""
        raise ConfigError(
            f"{where}: node {node!r} has unknown option(s) {unknown}{hint}; expected some of "
            f"{', '.join(_OPTIONS)}, as @af.step takes them"
        )
    try:
        return _make_policy(_node_step, name=node, **{**_OPTIONS, **options})
    except ConfigError as err:
        raise ConfigError(f"{where}: node {node!r}: {err}") from err


def build_node_policies(nodes: Any, where: str) -> dict[str, StepPolicy]:
    """``{node name: StepPolicy}`` from ``{node name: {option: value}}``."""
    if nodes is None:
        return {}
    if not isinstance(nodes, Mapping):
        raise ConfigError(
            f"{where} must be a dict {{node name: {{option: value}}}}, got {describe(nodes)}; "
            f"{_EXAMPLE}"
        )
    return {node: _policy(node, options, where) for node, options in nodes.items()}


def node_policies(nodes: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Set the step policy of LangGraph nodes by name, process-wide, without touching the
    graph: ``node_policies({"agent": {"tier": "heavy", "budget": Budget(max_usd=0.01)}})``.

    The options are ``@af.step``'s (``kind``, ``tier``, ``budget``, ``cache``,
    ``escalate``, ``prefix_cache``, ``on_budget``, ``router``); they are checked now, a bad
    one raises ``af.ConfigError`` naming the node. Each call replaces the previous mapping
    (``node_policies(None)`` clears it). ``ChatAgentflow(nodes=...)`` wins over it, and a
    node decorated with ``@af.step`` keeps its own policy.
    """
    policies = build_node_policies(nodes, "node_policies")
    with _lock:
        _process.clear()
        _process.update(policies)


def _default(node: str) -> StepPolicy:
    with _lock:
        policy = _defaults.get(node)
    if policy is None:
        policy = _policy(node, {}, "LangGraph node")
        with _lock:
            policy = _defaults.setdefault(node, policy)
    return policy


class NodeCall:
    """One model call from a LangGraph node: the node's policy and its invocation."""

    __slots__ = ("invocation", "policy")

    def __init__(self, policy: StepPolicy, invocation: str | None) -> None:
        self.policy = policy
        self.invocation = invocation

    def enter(self) -> StepFrame:
        """Open the step frame as ``@af.step`` does; it is left inactive."""
        frame, token, otel_token = _enter(self.policy)
        _deactivate((token, otel_token))
        if frame.ledger is not None and self.invocation is not None:
            # the calls of one node invocation share the node's budget
            key = (id(frame.run), self.invocation)
            with _lock:
                ledger = _ledgers.get(key)
                if ledger is None:
                    _ledgers[key] = frame.ledger
                    while len(_ledgers) > _LEDGERS_KEPT:
                        _ledgers.popitem(last=False)
                else:
                    _ledgers.move_to_end(key)
                    frame.ledger = ledger
        return frame

    def call(self, fn: Callable[[], T]) -> T:
        frame = self.enter()
        tokens = _activate(frame)
        try:
            result = fn()
        except BaseException as exc:
            _deactivate(tokens)
            _finish(frame, exc)
            raise
        _deactivate(tokens)
        _finish(frame, None)
        return result

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        frame = self.enter()
        tokens = _activate(frame)
        try:
            result = await fn()
        except BaseException as exc:
            _deactivate(tokens)
            _finish(frame, exc)
            raise
        _deactivate(tokens)
        _finish(frame, None)
        return result

    def stream(self, gen: Generator[T, None, None]) -> Generator[T, None, None]:
        """Run ``gen`` (not started yet) with the step active only while its code runs."""
        yield from drive(self.enter(), gen)

    async def astream(self, agen: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
        frame = self.enter()
        error: BaseException | None = None
        try:
            while True:
                tokens = _activate(frame)
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _deactivate(tokens)
                try:
                    yield item
                except GeneratorExit:
                    tokens = _activate(frame)
                    try:
                        await agen.aclose()
                    finally:
                        _deactivate(tokens)
                    raise
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            _finish(frame, error)


def node_call(metadata: Mapping[str, Any] | None, own: Mapping[str, StepPolicy]) -> NodeCall | None:
    """The node step a call runs in: None inside an agentflow step or outside LangGraph."""
    if current_step.get() is not None or not metadata:
        return None
    node = metadata.get("langgraph_node")
    if not isinstance(node, str) or not node:
        return None
    policy = own.get(node)
    if policy is None:
        with _lock:
            policy = _process.get(node)
    if policy is None:
        policy = _default(node)
    invocation = metadata.get("langgraph_checkpoint_ns") or metadata.get("checkpoint_ns")
    return NodeCall(policy, invocation if isinstance(invocation, str) and invocation else None)
