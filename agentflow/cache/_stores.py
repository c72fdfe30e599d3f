"""The one interface every cache store implements, its JSON codec, and the memory store.

A store maps string keys to JSON objects (``dict``), with an optional time to live. Values
go in and out as JSON text, never pickle: whoever can write to a cache directory or a
Redis server must not be able to run code in the processes that read it. A stored value
that does not decode to a JSON object is corrupt: the store deletes it, logs a warning on
the ``agentflow.cache`` logger, and answers a miss.

A store raises ``CacheBackendError`` (backend and cause in the message) when its backend
fails; ``ExactCache`` and ``SemanticCache`` turn that into a miss and a warning.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CacheStore",
    "MemoryStore",
    "backend_name",
    "check_ttl",
    "decode",
    "encode",
    "get_many",
    "logger",
    "transaction",
]

logger = logging.getLogger("agentflow.cache")


@runtime_checkable
class CacheStore(Protocol):
    """Key → JSON object, with expiry. Implementations: ``MemoryStore``, ``DiskStore``,
    ``RedisStore``.

    ``get`` returns None for a missing, expired or corrupt entry; ``set`` takes ``ttl`` in
    seconds (None: until evicted or cleared); ``clear`` drops every entry of this store.
    Backend failures raise ``CacheBackendError``; a value with no JSON form raises
    ``TypeError`` (a bug in the caller, not an outage). Stores may also have a ``backend``
    label (used in warnings), ``get_many(keys)`` and ``transact()``; see ``MemoryStore``.
    """

    def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, value: Mapping[str, Any], ttl: float | None = None) -> None: ...

    def delete(self, key: str) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


def backend_name(store: object) -> str:
    """The label warnings and errors use for ``store`` (its ``backend`` attribute)."""
    name = getattr(store, "backend", None)
    return name if isinstance(name, str) else type(store).__name__


def get_many(store: CacheStore, keys: Sequence[str]) -> list[dict[str, Any] | None]:
    """``store.get_many(keys)`` when the store has it (one round trip), else one get each."""
    batch: Callable[[Sequence[str]], list[dict[str, Any] | None]] | None
    batch = getattr(store, "get_many", None)
    return batch(keys) if batch is not None else [store.get(key) for key in keys]


def transaction(store: CacheStore) -> AbstractContextManager[object]:
    """``store.transact()`` when the store has one (atomic read-modify-write across the
    store's users), else a no-op: the caller's update may then race another writer."""
    transact: Callable[[], AbstractContextManager[object]] | None
    transact = getattr(store, "transact", None)
    return transact() if transact is not None else nullcontext()


def encode(value: Mapping[str, Any]) -> str:
    """``value`` as compact JSON text; TypeError/ValueError when it has no JSON form."""
    if not isinstance(value, Mapping):
        raise TypeError(f"cache values are JSON objects (dicts); got a {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise TypeError(
            f"cache value has no JSON form: {exc}. Store JSON-native data only (dicts, lists, "
            "str, numbers, bools, None), e.g. response.model_dump(mode='json')."
        ) from exc
    except ValueError as exc:  # NaN / infinity, or a circular reference
        raise ValueError(f"cache value has no JSON form: {exc}") from exc


def decode(text: str | bytes) -> dict[str, Any] | None:
    """The JSON object in ``text``, or None when it is not one (a corrupt entry)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def check_ttl(ttl: float | None) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValueError(f"ttl must be a number of seconds > 0, or None for no expiry; got {ttl!r}")
    return float(ttl)


class MemoryStore:
    """Entries in a dict of one process, behind one lock: for tests and single-process use.

    Values are kept as JSON text, so a caller mutating what ``get`` returned never changes
    the cache, and a value that could not be persisted fails here too. ``clock`` (seconds,
    monotonic by default) decides expiry; inject a fake one to test TTLs without sleeping.
    ``max_entries`` bounds the store, dropping the least recently stored entry first.
    """

    backend = "memory"
    _SWEEP_EVERY_S = 60.0

    def __init__(
        self,
        *,
        max_entries: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None; got {max_entries!r}")
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.RLock()
        self._data: dict[str, tuple[str, float | None]] = {}  # key -> (json, expires at)
        self._next_sweep = 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            text, expires_at = entry
            if expires_at is not None and expires_at <= self._clock():
                del self._data[key]
                return None
        return decode(text)  # we wrote it, so it is an object

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        return [self.get(key) for key in keys]

    def set(self, key: str, value: Mapping[str, Any], ttl: float | None = None) -> None:
        text = encode(value)
        ttl = check_ttl(ttl)
        with self._lock:
            now = self._clock()
            if now >= self._next_sweep:
                self._next_sweep = now + self._SWEEP_EVERY_S
                for old in [k for k, (_, e) in self._data.items() if e is not None and e <= now]:
                    del self._data[old]
            self._data.pop(key, None)  # re-inserting moves it to the newest end
            self._data[key] = (text, None if ttl is None else now + ttl)
            if self._max_entries is not None:
                while len(self._data) > self._max_entries:
                    del self._data[next(iter(self._data))]

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    @contextmanager
    def transact(self) -> Iterator[None]:
        """Hold the store's lock across several operations (an atomic read-modify-write)."""
        with self._lock:
            yield

    def close(self) -> None:
        """Nothing to release; the entries stay readable."""
