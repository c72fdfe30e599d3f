"""Stage 1, route: the tier (a router's choice for ``tier="auto"``), then the tier's
replicas in the order to try them, then its fallbacks.

With ``prefix_cache`` on, the stable prefix of the prompt (leading system messages,
static-marked messages and tool schemas) picks the replica by rendezvous hashing: the
same prefix lands on the same replica, whose KV cache then holds it; when that replica
fails the next in the rendezvous order takes over, and other prefixes spread across all
replicas. A load guard keeps one hot prefix from drowning its replica: when the
preferred replica has far more requests in flight than the others, the request goes to
the next replica in rendezvous order that is not overloaded (see ``overloaded``). With
``prefix_cache`` off, replicas take turns (round-robin).

Bounded-load consistent hashing: a replica is also passed over while it is in cooldown
(``health``) or, when ``load.engine_load`` is polling, while its engine reports itself
saturated or its engine-reported queue trips the same guard. The prefix then spills to
the next replica in *its* rendezvous order (which caches it in turn) and comes back to
its own as soon as that drains.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agentflow._errors import ConfigError, UnknownTierError
from agentflow._zoo import Endpoint, ModelZoo, Tier
from agentflow.pipeline.health import replica_health
from agentflow.pipeline.load import engine_load
from budgets import Ledger, Remaining

__all__ = [
    "LOAD_GUARD_FACTOR",
    "LOAD_GUARD_MIN",
    "InFlight",
    "RouteContext",
    "candidates",
    "choose_tier",
    "inflight",
    "overloaded",
    "rendezvous",
]

LOAD_GUARD_MIN = 4
"""In-flight requests a replica always takes for its prefixes before any spill.

A serving engine batches concurrent requests (llama-server's slots, vLLM's continuous
batching): a few more in flight slow each one a little, while a request sent elsewhere
pays the whole prefill of its prefix again. Below 4 the cache hit is worth more than
the queue, so the prefix stays pinned.
"""

LOAD_GUARD_FACTOR = 2.0
"""How many times the mean load of the other replicas a replica may carry (plus one)
before it counts as overloaded.

A prefix cache hit saves most of the prefill of a long prompt, not its decode: pinning
is worth up to about twice the queue of the others. Past that, waiting costs more than
recomputing the prefix elsewhere, and the spilled replica then caches the prefix too,
so later spills get cheaper. The mean is taken over the *other* replicas: with two
replicas, a mean that counted the hot one itself (L ≥ 2·L/2 + 1) would never trip.
"""

_round_robin = itertools.count()


class InFlight:
    """Requests in flight per endpoint id, process-wide and thread-safe.

    The drivers call ``begin`` before every HTTP call and ``end`` after it (in a
    ``finally``). The count is this process's view: several processes each guard the
    load they put on a replica.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def begin(self, endpoint_id: str) -> None:
        with self._lock:
            self._counts[endpoint_id] = self._counts.get(endpoint_id, 0) + 1

    def end(self, endpoint_id: str) -> None:
        with self._lock:
            n = self._counts.get(endpoint_id, 0) - 1
            if n > 0:
                self._counts[endpoint_id] = n
            else:  # never below zero, and idle endpoints leave no entry behind
                self._counts.pop(endpoint_id, None)

    def reset(self) -> None:
        """Forget every count (testing)."""
        with self._lock:
            self._counts.clear()

    def count(self, endpoint_id: str) -> int:
        return self._counts.get(endpoint_id, 0)

    def counts(self, endpoint_ids: Sequence[str]) -> list[int]:
        """The counts of several endpoints, read together."""
        with self._lock:
            return [self._counts.get(e, 0) for e in endpoint_ids]


inflight = InFlight()
"""The process-wide in-flight counter the router's load guard reads."""


def rendezvous(key: str, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """Endpoints ordered by highest-random-weight for ``key``."""

    def weight(e: Endpoint) -> bytes:
        return hashlib.blake2b(f"{key}|{e.id}".encode(), digest_size=8).digest()

    return sorted(endpoints, key=weight, reverse=True)


def overloaded(loads: Sequence[float], i: int) -> bool:
    """Whether replica ``i`` carries too much of the tier's in-flight load:
    at least ``max(LOAD_GUARD_MIN, LOAD_GUARD_FACTOR × mean of the others + 1)``."""
    others = len(loads) - 1
    mean = (sum(loads) - loads[i]) / others if others else 0.0
    return loads[i] >= max(LOAD_GUARD_MIN, LOAD_GUARD_FACTOR * mean + 1)


def _full(order: Sequence[Endpoint]) -> list[bool]:
    """Which replicas a pinned prefix should pass over now: in cooldown, saturated by
    their engine's own account, or past the load guard on in-flight requests (this
    process's count, or the engine's running + waiting when it reports more)."""
    ids = [e.id for e in order]
    loads: list[float] = list(inflight.counts(ids))
    saturated = [False] * len(ids)
    if engine_load.running:
        engine_load.watch(order)
        for i, endpoint_id in enumerate(ids):
            reading = engine_load.get(endpoint_id)
            if reading is not None:
                loads[i] = max(loads[i], reading.load)
                saturated[i] = reading.saturated
    return [
        saturated[i] or overloaded(loads, i) or not replica_health.available(ids[i])
        for i in range(len(ids))
    ]


def _ordered(tier: Tier, key: str | None) -> list[Endpoint]:
    eps = list(tier.endpoints)
    if len(eps) == 1:
        return eps
    if key is None:
        start = next(_round_robin) % len(eps)
        return eps[start:] + eps[:start]
    order = rendezvous(key, eps)
    full = _full(order)
    if not full[0]:
        return order
    for i in range(1, len(order)):
        if not full[i]:
            # spill to the first replica that is not overloaded; the preferred one stays
            # next, then the rest of the rendezvous order, for failover
            return [order[i], *order[:i], *order[i + 1 :]]
    return order  # every replica is busy: stay where the cache is


@dataclass(frozen=True)
class RouteContext:
    """What a router may weigh besides the prompt, passed as ``context=`` to a router
    whose ``choose`` takes it: the budgets that will pay for the call and the load of
    each tier's replicas. Reading the budgets asks their ledgers (I/O for disk or
    Redis), so it happens only when the router asks."""

    zoo: ModelZoo
    ledgers: tuple[Ledger, ...] = ()

    def remaining(self) -> list[Remaining]:
        """What each budget of the call still allows: the enclosing steps', the run's
        and the tenant's (``budgets.Remaining``; None where a budget sets no limit)."""
        return [ledger.remaining() for ledger in self.ledgers]

    def remaining_usd(self) -> Decimal | None:
        """The smallest dollar amount any of the call's budgets still allows, or None."""
        left = [r.usd for r in self.remaining() if r.usd is not None]
        return min(left) if left else None

    def load(self, tier: str) -> dict[str, float]:
        """Requests on each replica of ``tier`` now: this process's in flight, or the
        engine's own running + waiting when ``engine_load`` polls it and it reports more."""
        endpoints = self.zoo.tier(tier).endpoints
        ids = [e.id for e in endpoints]
        loads: dict[str, float] = dict(zip(ids, map(float, inflight.counts(ids)), strict=True))
        if engine_load.running:
            for endpoint_id in ids:
                reading = engine_load.get(endpoint_id)
                if reading is not None:
                    loads[endpoint_id] = max(loads[endpoint_id], reading.load)
        return loads


_takes_context: dict[type, bool] = {}


def _accepts_context(router: Any) -> bool:
    kind = type(router)
    known = _takes_context.get(kind)
    if known is None:
        try:
            params = list(inspect.signature(router.choose).parameters.values())
        except (TypeError, ValueError):
            params = []
        known = any(p.name == "context" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        _takes_context[kind] = known
    return known


def choose_tier(
    router: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    kind: str,
    zoo: ModelZoo,
    where: str,
    context: RouteContext | None = None,
) -> tuple[str, str]:
    """``tier="auto"``: ask ``router`` for a tier; ``(tier, router name)``. A router whose
    ``choose`` takes ``context`` gets the call's ``RouteContext`` too."""
    if router is None:
        raise ConfigError(
            f"{where} uses tier='auto' but no router is set: pass router= to the step or "
            "af.configure(router=...) (e.g. agentflow.routing.RuleRouter)"
        )
    tiers = tuple(zoo.names)
    if _accepts_context(router):
        ctx = context if context is not None else RouteContext(zoo)
        choice = router.choose(messages, kind=kind, tiers=tiers, context=ctx)
    else:
        choice = router.choose(messages, kind=kind, tiers=tiers)
    name = type(router).__name__
    if choice not in zoo.names:
        raise UnknownTierError(str(choice), zoo.names, where=f"{where}: router {name}")
    return choice, name


def candidates(zoo: ModelZoo, tier_name: str, key: str | None) -> Iterator[tuple[Tier, Endpoint]]:
    """Every (tier, endpoint) to try, in order: replicas, then the fallback chain.
    ``key``: the prompt's prefix hash (pins it to a replica), None for round-robin."""
    seen: set[str] = set()
    name: str | None = tier_name
    while name is not None and name not in seen:
        seen.add(name)
        tier = zoo.tier(name)
        for endpoint in _ordered(tier, key):
            yield tier, endpoint
        name = tier.fallback
