"""Stage 1, route: the tier's replicas in the order to try them, then its fallbacks.

With ``prefix_cache`` on, the stable prefix of the prompt (leading system messages and
tool schemas) picks the replica by rendezvous hashing: the same prefix lands on the same
replica, whose KV cache then holds it; when that replica fails the next in the
rendezvous order takes over, and other prefixes spread across all replicas.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from agentflow._zoo import Endpoint, ModelZoo, Tier

__all__ = ["candidates", "prefix_key", "rendezvous"]

_round_robin = itertools.count()


def prefix_key(messages: Sequence[Mapping[str, Any]], tools: Any = None) -> str:
    """A hash of the prompt's stable prefix: leading system messages and tool schemas."""
    stable: list[Any] = []
    for m in messages:
        if m.get("role") in ("system", "developer"):
            stable.append(m.get("content"))
        else:
            break
    if not stable and messages:
        # no system prompt: the first message's opening stands in for the prefix
        stable.append(str(messages[0].get("content"))[:256])
    if tools:
        stable.append(tools)
    blob = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def rendezvous(key: str, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """Endpoints ordered by highest-random-weight for ``key``."""

    def weight(e: Endpoint) -> bytes:
        return hashlib.blake2b(f"{key}|{e.id}".encode(), digest_size=8).digest()

    return sorted(endpoints, key=weight, reverse=True)


def _ordered(tier: Tier, key: str | None) -> list[Endpoint]:
    eps = list(tier.endpoints)
    if len(eps) == 1:
        return eps
    if key is not None:
        return rendezvous(key, eps)
    start = next(_round_robin) % len(eps)
    return eps[start:] + eps[:start]


def candidates(
    zoo: ModelZoo,
    tier_name: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    prefix_cache: bool,
) -> Iterator[tuple[Tier, Endpoint]]:
    """Every (tier, endpoint) to try, in order: replicas, then the fallback chain."""
    key = prefix_key(messages, params.get("tools")) if prefix_cache else None
    seen: set[str] = set()
    name: str | None = tier_name
    while name is not None and name not in seen:
        seen.add(name)
        tier = zoo.tier(name)
        for endpoint in _ordered(tier, key):
            yield tier, endpoint
        name = tier.fallback
