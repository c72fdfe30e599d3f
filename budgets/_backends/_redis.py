"""Redis backend: ledgers shared by many machines.

Each ledger key owns two hashes, ``budgets:{key}`` (counters ``s:*`` spent and ``f:*``
in flight, and ``next``: when a hold's lease next ends, in ms) and ``budgets:{key}:res``
(the holds, ``id -> "usd in out calls created_ms expires_ms lapsed"``). The braces are a
Redis Cluster hash tag, so both land in the same slot and one script may touch both.
Check-and-reserve, settle, release, totals and the hold listing are each a single Lua
script, which Redis runs atomically: no other client's command interleaves. Every script
first lapses the holds whose lease ended (by the Redis server's clock, so machines with
skewed clocks agree) and refuses to touch a counter or hold it did not write.

Replies are checked on the Python side too: anything but the integers and strings the
scripts return raises ``LedgerCorrupted``. Nothing is ever unpickled or evaluated.
"""

from __future__ import annotations

import asyncio
import math
import re
import weakref
from typing import Any

from budgets._backends._base import (
    DEFAULT_LEASE_S,
    Amounts,
    Hold,
    LedgerBackend,
    Limits,
    Refusal,
    Totals,
    check_lease,
)
from budgets._backends._redis_scripts import FIELDS, SCRIPTS
from budgets._errors import LedgerCorrupted

__all__ = ["RedisBackend"]

_COUNT = re.compile(r"\d+")
_HELD = re.compile(r"\d+( \d+){3}( \d+ \d+ [01])?")


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


class RedisBackend(LedgerBackend):
    """Counters in Redis, for ledgers shared across processes and machines.

    Give a URL (``"redis://127.0.0.1:6379/0"``) or a ready ``redis.Redis`` client. With a
    URL, the async twins use ``redis.asyncio`` with one client per event loop (an asyncio
    connection belongs to the loop that opened it); with only a sync client they run the
    sync call in a worker thread. ``prefix`` namespaces the keys; ``max_connections``
    caps each URL-made pool (callers beyond it wait for a free connection); ``lease_s``
    is the default lease of a hold (see ``LedgerBackend``).
    """

    max_limit = 2**53 - 1  # Lua compares in doubles: above this, limits lose exactness

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "budgets:",
        max_connections: int = 64,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        import redis

        if (url is None) == (client is None):
            raise ValueError(
                "RedisBackend needs exactly one of url='redis://host:port/db' or "
                "client=redis.Redis(...)"
            )
        self.lease_s = check_lease(lease_s)
        self._url = url
        self._prefix = prefix
        self._max_connections = max_connections
        self._client: Any = client
        if url is not None:
            # a blocking pool: past max_connections callers wait for a connection instead
            # of failing with "Too many connections" (200 threads are a normal burst)
            pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections)
            self._client = redis.Redis(connection_pool=pool)
        self._scripts = [self._client.register_script(s) for s in SCRIPTS]
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Any, list[Any]]
        ] = weakref.WeakKeyDictionary()

    def _keys(self, key: str) -> list[str]:
        counters = f"{self._prefix}{{{key}}}"
        return [counters, counters + ":res"]

    # -- what goes in, what comes back ----------------------------------------------------

    def _corrupted(self, key: str, why: object) -> LedgerCorrupted:
        counters, holds = self._keys(key)
        return LedgerCorrupted(
            f"Redis keys {counters!r} / {holds!r} hold a value budgets did not write "
            f"({why}); nothing of it was decoded. Delete both keys (DEL) to start that "
            "ledger from zero, or restore them from a backup."
        )

    def _count(self, key: str, value: object, what: str) -> int:
        if type(value) is int and value >= 0:
            return value
        text = _text(value)
        if text is None or not _COUNT.fullmatch(text):
            raise self._corrupted(key, f"{what} is {value!r}, not an integer >= 0")
        return int(text)

    def _run(self, index: int, key: str, args: list[str]) -> Any:
        import redis

        try:
            return self._scripts[index](keys=self._keys(key), args=args)
        except redis.ResponseError as exc:
            raise self._translate(key, exc) from None

    async def _arun(self, index: int, key: str, args: list[str]) -> Any:
        import redis

        entry = self._aclient()
        assert entry is not None
        try:
            return await entry[1][index](keys=self._keys(key), args=args)
        except redis.ResponseError as exc:
            raise self._translate(key, exc) from None

    def _translate(self, key: str, exc: Exception) -> Exception:
        text = str(exc)
        if "budgets:" in text or "WRONGTYPE" in text or "not an integer" in text:
            return self._corrupted(key, text)
        return exc

    def _reserve_args(
        self,
        reservation_id: str,
        ask: Amounts,
        limits: Limits,
        ttl_s: float | None,
        lease_s: float | None,
    ) -> list[str]:
        ttl = "" if ttl_s is None else str(max(int(ttl_s * 1000), 1))
        lease = self.lease_s if lease_s is None else check_lease(lease_s)
        return [
            reservation_id,
            *map(str, ask),
            *("" if limit is None else str(limit) for limit in limits),
            ttl,
            str(max(int(lease * 1000), 1)),
        ]

    def _refusal(self, key: str, reply: Any) -> Refusal | None:
        if not (isinstance(reply, list) and len(reply) == 2):
            raise self._corrupted(key, f"reserve replied {reply!r}")
        index = self._count(key, reply[0], "the refused limit")
        if index > 4:
            raise self._corrupted(key, f"reserve replied {reply!r}")
        return None if index == 0 else Refusal(index - 1, self._count(key, reply[1], "used"))

    def _closed(self, key: str, reply: Any) -> bool:
        if reply not in (0, 1):
            raise self._corrupted(key, f"settle/release replied {reply!r}")
        return bool(reply)

    def _totals(self, key: str, values: Any) -> Totals:
        if not (isinstance(values, list) and len(values) == len(FIELDS)):
            raise self._corrupted(key, f"the counters read {values!r}")
        ints = [
            0 if v is None else self._count(key, v, name)
            for v, name in zip(values, FIELDS, strict=True)
        ]
        return Totals((ints[0], ints[1], ints[2], ints[3]), (ints[4], ints[5], ints[6], ints[7]))

    def _holds(self, key: str, reply: Any) -> list[Hold]:
        if not (isinstance(reply, list) and len(reply) % 2 == 1):
            raise self._corrupted(key, f"the hold listing replied {reply!r}")
        now = self._count(key, reply[0], "the server time")
        made: list[tuple[int, Hold]] = []
        for raw_id, raw_held in zip(reply[1::2], reply[2::2], strict=True):
            reservation_id, held = _text(raw_id), _text(raw_held)
            if reservation_id is None or held is None or not _HELD.fullmatch(held):
                raise self._corrupted(key, f"hold {raw_id!r} is {raw_held!r}")
            r = [int(v) for v in held.split()] + ([0, 0, 0] if held.count(" ") == 3 else [])
            amounts: Amounts = (r[0], r[1], r[2], r[3])
            if r[5] == 0:
                hold = Hold(reservation_id, amounts, math.inf, math.inf)
            else:
                hold = Hold(reservation_id, amounts, (now - r[4]) / 1000, (r[5] - now) / 1000)
            made.append((r[4], hold))
        return [hold for _, hold in sorted(made, key=lambda item: item[0])]

    def _ids(self, key: str, reply: Any) -> list[str]:
        ids = [_text(v) for v in reply] if isinstance(reply, list) else [None]
        if any(i is None for i in ids):
            raise self._corrupted(key, f"release_stale replied {reply!r}")
        return [i for i in ids if i is not None]

    # -- sync ---------------------------------------------------------------------------

    def reserve(
        self,
        key: str,
        reservation_id: str,
        ask: Amounts,
        limits: Limits,
        ttl_s: float | None,
        lease_s: float | None = None,
    ) -> Refusal | None:
        args = self._reserve_args(reservation_id, ask, limits, ttl_s, lease_s)
        return self._refusal(key, self._run(0, key, args))

    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        args = [reservation_id, "settle", *map(str, actual)]
        return self._closed(key, self._run(1, key, args))

    def release(self, key: str, reservation_id: str) -> bool:
        args = [reservation_id, "release", "0", "0", "0"]
        return self._closed(key, self._run(1, key, args))

    def totals(self, key: str) -> Totals:
        return self._totals(key, self._run(2, key, []))

    def holds(self, key: str) -> list[Hold]:
        return self._holds(key, self._run(3, key, []))

    def release_stale(self, key: str, older_than_s: float) -> list[str]:
        older_than = str(max(math.ceil(older_than_s * 1000), 0))
        return self._ids(key, self._run(4, key, [older_than]))

    def hold_keys(self) -> list[str]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix) + "{*}:res"
        start, end = len(self._prefix) + 1, -len("}:res")
        keys: set[str] = set()
        for name in self._client.scan_iter(match=pattern, count=500):
            text = _text(name)
            if text is not None:
                keys.add(text[start:end])
        return sorted(keys)

    def _claim_args(self, key: str, name: str, ttl_s: float | None) -> tuple[str, dict[str, Any]]:
        # the ledger key's hash tag: a claim lives in the same cluster slot as its counters
        opts: dict[str, Any] = {"nx": True}
        if ttl_s is not None:
            opts["px"] = max(1, math.ceil(ttl_s * 1000))
        return f"{self._prefix}{{{key}}}:claim:{name}", opts

    def claim(self, key: str, name: str, ttl_s: float | None) -> bool:
        """``SET NX``: one caller of all those sharing the server wins."""
        claim_key, opts = self._claim_args(key, name, ttl_s)
        return bool(self._client.set(claim_key, "1", **opts))

    # -- asyncio ---------------------------------------------------------------------

    def _aclient(self) -> tuple[Any, list[Any]] | None:
        """This loop's (client, scripts); None without a URL."""
        if self._url is None:
            return None
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            import redis.asyncio

            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self._url, max_connections=self._max_connections
            )
            client = redis.asyncio.Redis(connection_pool=pool)
            entry = (client, [client.register_script(s) for s in SCRIPTS])
            self._aclients[loop] = entry
        return entry

    async def areserve(
        self,
        key: str,
        reservation_id: str,
        ask: Amounts,
        limits: Limits,
        ttl_s: float | None,
        lease_s: float | None = None,
    ) -> Refusal | None:
        if self._aclient() is None:
            return await super().areserve(key, reservation_id, ask, limits, ttl_s, lease_s)
        args = self._reserve_args(reservation_id, ask, limits, ttl_s, lease_s)
        return self._refusal(key, await self._arun(0, key, args))

    async def asettle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        if self._aclient() is None:
            return await super().asettle(key, reservation_id, actual)
        args = [reservation_id, "settle", *map(str, actual)]
        return self._closed(key, await self._arun(1, key, args))

    async def arelease(self, key: str, reservation_id: str) -> bool:
        if self._aclient() is None:
            return await super().arelease(key, reservation_id)
        args = [reservation_id, "release", "0", "0", "0"]
        return self._closed(key, await self._arun(1, key, args))

    async def atotals(self, key: str) -> Totals:
        if self._aclient() is None:
            return await super().atotals(key)
        return self._totals(key, await self._arun(2, key, []))

    async def aclaim(self, key: str, name: str, ttl_s: float | None) -> bool:
        entry = self._aclient()
        if entry is None:
            return await super().aclaim(key, name, ttl_s)
        claim_key, opts = self._claim_args(key, name, ttl_s)
        return bool(await entry[0].set(claim_key, "1", **opts))

    async def aclose(self) -> None:
        """Close this event loop's async client (call before the loop ends)."""
        entry = self._aclients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()
            await entry[0].connection_pool.disconnect()  # our pool: the client leaves it open

    def close(self) -> None:
        """Close the sync client (only the one this backend made from a URL)."""
        if self._url is not None:
            self._client.close()
            self._client.connection_pool.disconnect()
