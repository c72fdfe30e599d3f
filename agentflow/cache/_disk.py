"""``DiskStore``: cache entries in a diskcache (SQLite) directory, as JSON text."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from agentflow._errors import CacheBackendError
from agentflow.cache._stores import check_ttl, decode, encode, logger

__all__ = ["DiskStore"]


class DiskStore:
    """Entries shared by the processes of one machine, in ``directory`` (diskcache).

    Values are JSON text in SQLite through ``JsonDisk``: nothing is pickled, and a row that
    is not JSON text this store wrote (pickle mode, a side file, bad JSON, not an object)
    is deleted with a warning and never served. TTLs are diskcache's ``expire``.
    ``size_limit`` (bytes) caps the directory, evicting the least recently stored entries.

    The directory is opened on first use, not here: a cache directory that cannot be
    opened (permissions, a full disk, a corrupt database) raises ``CacheBackendError`` on
    that use, which the caches turn into a miss, so it never fails a call. SQLite waits up
    to ``timeout`` seconds for another writer's lock, then gives up (also a backend error).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        size_limit: int = 2**30,
        timeout: float = 5.0,
    ) -> None:
        self.directory = os.fspath(directory)
        self.backend = f"diskcache {self.directory}"
        self._size_limit = size_limit
        self._timeout = timeout
        self._cache: Any = None
        self._open_lock = threading.Lock()
        self._errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)

    def _error(self, what: str, exc: BaseException) -> CacheBackendError:
        cause = str(exc) or type(exc).__name__
        return CacheBackendError(
            f"cache backend {self.backend} failed to {what}: {type(exc).__name__}: {cause}. "
            "Check that the directory is writable and its disk not full, or point the "
            "cache elsewhere (AGENTFLOW_CACHE_DIR)."
        )

    def _open(self) -> Any:
        if self._cache is not None:
            return self._cache
        with self._open_lock:
            if self._cache is None:
                import diskcache

                from agentflow.cache._jsondisk import JsonDisk

                self._errors = (sqlite3.Error, OSError, diskcache.Timeout)
                try:
                    self._cache = diskcache.Cache(
                        self.directory,
                        disk=JsonDisk,
                        timeout=self._timeout,
                        size_limit=self._size_limit,
                        eviction_policy="least-recently-stored",  # reads never write
                    )
                except self._errors as exc:
                    raise self._error("open", exc) from exc
        return self._cache

    def _drop(self, key: str, why: str) -> None:
        logger.warning("dropping corrupt cache entry %r from %s: %s", key, self.backend, why)
        self.delete(key)

    def get(self, key: str) -> dict[str, Any] | None:
        from agentflow.cache._jsondisk import UnsafeEntry

        cache = self._open()
        try:
            text = cache.get(key)
        except UnsafeEntry as exc:
            self._drop(key, str(exc))
            return None
        except self._errors as exc:
            raise self._error("read", exc) from exc
        if text is None:
            return None
        value = decode(text)
        if value is None:
            self._drop(key, "not a JSON object")
        return value

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        return [self.get(key) for key in keys]

    def set(self, key: str, value: Mapping[str, Any], ttl: float | None = None) -> None:
        text = encode(value)
        expire = check_ttl(ttl)
        cache = self._open()
        try:
            cache.set(key, text, expire=expire)
        except self._errors as exc:
            raise self._error("write", exc) from exc

    def delete(self, key: str) -> None:
        cache = self._open()
        try:
            cache.delete(key)
        except self._errors as exc:
            raise self._error("delete", exc) from exc

    def clear(self) -> None:
        """Delete every entry in the directory (give each store its own directory)."""
        cache = self._open()
        try:
            cache.clear()
        except self._errors as exc:
            raise self._error("clear", exc) from exc

    @contextmanager
    def transact(self) -> Iterator[None]:
        """An SQLite write transaction: the operations inside are atomic across threads and
        processes on this directory (and rolled back if the block raises)."""
        cache = self._open()
        try:
            with cache.transact():
                yield
        except self._errors as exc:
            raise self._error("run a transaction", exc) from exc

    def close(self) -> None:
        with self._open_lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None
