"""Going on without the cache: backend failures become misses, counted and warned about.

A cache that is down must never fail a call, and must not flood the logs either: each
backend (``DiskStore`` directory, Redis server, ...) warns at most once per 30 s, through
``warnings.warn(..., RuntimeWarning)`` and the ``agentflow.cache`` logger; repeats in
between go to the logger at DEBUG. The limit is per process and shared by every cache
object, so a hundred steps on one dead Redis still warn once.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from agentflow._errors import CacheBackendError
from agentflow.cache._stores import logger

__all__ = ["WARN_EVERY_S", "BackendWarnings", "CacheStats", "Counters", "backend_warnings"]

WARN_EVERY_S = 30.0


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a cache's counters: ``hits + misses`` lookups (a lookup that failed
    on the backend is a miss, and also an error), ``errors`` backend failures of lookups
    and saves alike."""

    hits: int = 0
    misses: int = 0
    errors: int = 0


class Counters:
    """Thread-safe hit/miss/error counters behind ``.stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits = self._misses = self._errors = 0

    def hit(self) -> None:
        with self._lock:
            self._hits += 1

    def miss(self, *, error: bool = False) -> None:
        with self._lock:
            self._misses += 1
            self._errors += error

    def error(self) -> None:
        with self._lock:
            self._errors += 1

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._errors)


class BackendWarnings:
    """Warns about a failing backend at most once per ``every`` seconds per backend."""

    def __init__(self, every: float = WARN_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def report(self, backend: str, exc: CacheBackendError) -> None:
        now = self.clock()
        with self._lock:
            last = self._last.get(backend)
            due = last is None or now - last >= self.every
            if due:
                self._last[backend] = now
        message = f"{exc} The call goes on without the cache."
        if not due:
            logger.debug("%s", message)
            return
        logger.warning("%s (repeats muted for %g s)", message, self.every)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def reset(self) -> None:
        """Forget past warnings (tests use it so each one sees its first warning)."""
        with self._lock:
            self._last.clear()


backend_warnings = BackendWarnings()
