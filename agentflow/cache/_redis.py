"""``RedisStore``: cache entries shared by many machines, as JSON strings in Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentflow._errors import CacheBackendError
from agentflow.cache._stores import check_ttl, decode, encode, logger

__all__ = ["RedisStore"]

_MGET_BATCH = 500


def _describe(client: Any) -> str:
    """``redis://host:port/db`` of a client, without the password a URL may carry."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"redis unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    host = kwargs.get("host", "?")
    return f"redis redis://{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Entries in Redis under ``prefix``: ``SET key json PX ttl_ms``, read with ``GET``.

    Give a URL (``"redis://127.0.0.1:6379/0"``) or a ready ``redis.Redis`` client. A client
    made from the URL waits at most ``timeout`` seconds to connect or for a reply and
    retries once (a pooled connection may be stale after a Redis restart): a cache must not
    stall a call for long when Redis is slow or gone. Every Redis or socket failure raises
    ``CacheBackendError``; ``ExactCache`` turns it into a miss. Values are JSON text, never
    pickle; one that does not decode to a JSON object is deleted and logged. ``clear``
    deletes this prefix's keys only (SCAN + UNLINK), never the whole database.

    Needs the ``redis`` package: ``pip install 'agentflow[redis]'``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "agentflow:cache:",
        timeout: float = 0.5,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ImportError(
                "RedisStore needs the redis package: pip install 'agentflow[redis]' "
                "(or use DiskStore / MemoryStore)"
            ) from exc
        if (url is None) == (client is None):
            raise ValueError(
                "RedisStore needs exactly one of url='redis://host:port/db' or "
                "client=redis.Redis(...)"
            )
        self._owns_client = client is None
        if url is not None:
            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1),
            )
        self._client = client
        self._prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.backend = _describe(client)

    def _error(self, what: str, exc: BaseException) -> CacheBackendError:
        cause = str(exc) or type(exc).__name__
        return CacheBackendError(
            f"cache backend {self.backend} failed to {what}: {type(exc).__name__}: {cause}. "
            "Check that the Redis server is up and reachable from here."
        )

    def _decode(self, key: str, raw: Any) -> dict[str, Any] | None:
        if raw is None:
            return None
        value = decode(raw)
        if value is None:
            logger.warning("dropping corrupt cache entry %r from %s", key, self.backend)
            self.delete(key)
        return value

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self._client.get(self._prefix + key)
        except self._errors as exc:
            raise self._error("read", exc) from exc
        return self._decode(key, raw)

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """One ``MGET`` per 500 keys."""
        out: list[dict[str, Any] | None] = []
        for start in range(0, len(keys), _MGET_BATCH):
            batch = keys[start : start + _MGET_BATCH]
            try:
                raws = self._client.mget([self._prefix + key for key in batch])
            except self._errors as exc:
                raise self._error("read", exc) from exc
            out.extend(self._decode(key, raw) for key, raw in zip(batch, raws, strict=True))
        return out

    def set(self, key: str, value: Mapping[str, Any], ttl: float | None = None) -> None:
        text = encode(value)
        ttl = check_ttl(ttl)
        px = None if ttl is None else max(int(ttl * 1000), 1)
        try:
            self._client.set(self._prefix + key, text, px=px)
        except self._errors as exc:
            raise self._error("write", exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete(self._prefix + key)
        except self._errors as exc:
            raise self._error("delete", exc) from exc

    def clear(self) -> None:
        """Delete every key under this store's prefix."""
        try:
            batch: list[Any] = []
            for key in self._client.scan_iter(match=_glob_escape(self._prefix) + "*", count=1000):
                batch.append(key)
                if len(batch) >= _MGET_BATCH:
                    self._client.unlink(*batch)
                    batch.clear()
            if batch:
                self._client.unlink(*batch)
        except self._errors as exc:
            raise self._error("clear", exc) from exc

    def close(self) -> None:
        """Close the client this store made from a URL (a client you passed stays open)."""
        if self._owns_client:
            self._client.close()
            self._client.connection_pool.disconnect()
