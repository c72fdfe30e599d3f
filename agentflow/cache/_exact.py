"""``ExactCache``: answers keyed by the canonical request, on any ``CacheStore``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from agentflow._errors import CacheBackendError
from agentflow.cache._degrade import CacheStats, Counters, backend_warnings
from agentflow.cache._stores import CacheStore, MemoryStore, backend_name, check_ttl

__all__ = ["ExactCache"]


class ExactCache:
    """Look up and save answers by ``request_key``; a failing backend is a miss.

    ``lookup`` and ``save`` never raise ``CacheBackendError``: the failure is counted in
    ``stats.errors``, warned about (once per backend per 30 s, as a ``RuntimeWarning`` and
    on the ``agentflow.cache`` logger) and the call goes on as if the cache were empty.
    A value that has no JSON form still raises ``TypeError``: that is a bug to fix, not an
    outage to ride out. ``alookup`` / ``asave`` run the store in a worker thread.
    """

    def __init__(self, store: CacheStore) -> None:
        self._store = store
        self._backend = backend_name(store)
        self._counters = Counters()

    @property
    def store(self) -> CacheStore:
        return self._store

    @property
    def stats(self) -> CacheStats:
        return self._counters.snapshot()

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The value saved under ``key``, or None (missing, expired, corrupt, backend down)."""
        try:
            value = self._store.get(key)
        except CacheBackendError as exc:
            self._counters.miss(error=True)
            backend_warnings.report(self._backend, exc)
            return None
        if value is None:
            self._counters.miss()
        else:
            self._counters.hit()
        return value

    def save(self, key: str, value: Mapping[str, Any], ttl: float | None = None) -> None:
        """Save ``value`` (a JSON object) under ``key`` for ``ttl`` seconds (None: no expiry)."""
        check_ttl(ttl)
        try:
            self._store.set(key, value, ttl)
        except CacheBackendError as exc:
            self._counters.error()
            backend_warnings.report(self._backend, exc)

    async def alookup(self, key: str) -> dict[str, Any] | None:
        if isinstance(self._store, MemoryStore):  # no I/O: a thread hop would only cost
            return self.lookup(key)
        return await asyncio.to_thread(self.lookup, key)

    async def asave(self, key: str, value: Mapping[str, Any], ttl: float | None = None) -> None:
        if isinstance(self._store, MemoryStore):
            self.save(key, value, ttl)
            return
        await asyncio.to_thread(self.save, key, value, ttl)

    def close(self) -> None:
        """Close the store (its connections or files)."""
        self._store.close()
