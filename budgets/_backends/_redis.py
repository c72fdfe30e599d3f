"""Redis backend: ledgers shared by many machines.

Each ledger key owns two hashes, ``budgets:{key}`` (counters ``s:*`` spent and ``f:*``
in flight) and ``budgets:{key}:res`` (open reservations, ``id -> "usd in out calls"``).
The braces are a Redis Cluster hash tag, so both land in the same slot and one script may
touch both. Check-and-reserve, settle and release are each a single Lua script, which
Redis runs atomically: no other client's command interleaves.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from budgets._backends._base import Amounts, LedgerBackend, Limits, Refusal, Totals

__all__ = ["RedisBackend"]

_FIELDS = ("s:usd", "s:in", "s:out", "s:calls", "f:usd", "f:in", "f:out", "f:calls")

# KEYS[1] counters, KEYS[2] reservations. ARGV[1] id, ARGV[2..5] asked, ARGV[6..9] limits
# ('' = unlimited), ARGV[10] ttl in ms ('' = none). Returns {0, 0} or {limit index, used}.
# Numbers are integers below 2**53, so Lua's doubles hold them exactly; HINCRBY gets the
# original strings and counts in 64-bit integers.
_RESERVE = """
local names = {'usd', 'in', 'out', 'calls'}
local c = redis.call('HMGET', KEYS[1], 's:usd', 's:in', 's:out', 's:calls',
                     'f:usd', 'f:in', 'f:out', 'f:calls')
for i = 1, 4 do
  if ARGV[5 + i] ~= '' then
    local used = (tonumber(c[i]) or 0) + (tonumber(c[4 + i]) or 0)
    if used + tonumber(ARGV[1 + i]) > tonumber(ARGV[5 + i]) then
      return {i, used}
    end
  end
end
local held = ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5]
if redis.call('HSETNX', KEYS[2], ARGV[1], held) == 0 then
  return redis.error_reply('ERR reservation id already in use')
end
for i = 1, 4 do
  if ARGV[1 + i] ~= '0' then redis.call('HINCRBY', KEYS[1], 'f:' .. names[i], ARGV[1 + i]) end
end
if ARGV[10] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
  redis.call('PEXPIRE', KEYS[2], ARGV[10])
end
return {0, 0}
"""

# ARGV[1] id, ARGV[2] 'settle' or 'release', ARGV[3..5] actual usd, in, out.
# Returns 1, or 0 when the reservation is not open (settled, released or unknown).
_CLOSE = """
local names = {'usd', 'in', 'out', 'calls'}
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local r = {}
for v in string.gmatch(held, '%S+') do r[#r + 1] = v end
for i = 1, 4 do
  if r[i] ~= '0' then redis.call('HINCRBY', KEYS[1], 'f:' .. names[i], '-' .. r[i]) end
end
if ARGV[2] == 'settle' then
  local spent = {ARGV[3], ARGV[4], ARGV[5], r[4]}
  for i = 1, 4 do
    if spent[i] ~= '0' then redis.call('HINCRBY', KEYS[1], 's:' .. names[i], spent[i]) end
  end
end
return 1
"""


class RedisBackend(LedgerBackend):
    """Counters in Redis, for ledgers shared across processes and machines.

    Give a URL (``"redis://127.0.0.1:6379/0"``) or a ready ``redis.Redis`` client. With a
    URL, the async twins use ``redis.asyncio`` with one client per event loop (an asyncio
    connection belongs to the loop that opened it); with only a sync client they run the
    sync call in a worker thread. ``prefix`` namespaces the keys; ``max_connections``
    caps each URL-made pool (callers beyond it wait for a free connection).
    """

    max_limit = 2**53 - 1  # Lua compares in doubles: above this, limits lose exactness

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "budgets:",
        max_connections: int = 64,
    ) -> None:
        import redis

        if (url is None) == (client is None):
            raise ValueError(
                "RedisBackend needs exactly one of url='redis://host:port/db' or "
                "client=redis.Redis(...)"
            )
        self._url = url
        self._prefix = prefix
        self._max_connections = max_connections
        self._client: Any = client
        if url is not None:
            # a blocking pool: past max_connections callers wait for a connection instead
            # of failing with "Too many connections" (200 threads are a normal burst)
            pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections)
            self._client = redis.Redis(connection_pool=pool)
        self._reserve = self._client.register_script(_RESERVE)
        self._close_script = self._client.register_script(_CLOSE)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _keys(self, key: str) -> list[str]:
        counters = f"{self._prefix}{{{key}}}"
        return [counters, counters + ":res"]

    @staticmethod
    def _reserve_args(
        reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> list[str]:
        ttl = "" if ttl_s is None else str(max(int(ttl_s * 1000), 1))
        return [
            reservation_id,
            *map(str, ask),
            *("" if limit is None else str(limit) for limit in limits),
            ttl,
        ]

    @staticmethod
    def _refusal(reply: list[Any]) -> Refusal | None:
        index = int(reply[0])
        return None if index == 0 else Refusal(index - 1, int(reply[1]))

    @staticmethod
    def _totals(values: list[Any]) -> Totals:
        ints = [0 if v is None else int(v) for v in values]
        return Totals((ints[0], ints[1], ints[2], ints[3]), (ints[4], ints[5], ints[6], ints[7]))

    def reserve(
        self, key: str, reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> Refusal | None:
        args = self._reserve_args(reservation_id, ask, limits, ttl_s)
        return self._refusal(self._reserve(keys=self._keys(key), args=args))

    def settle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        args = [reservation_id, "settle", *map(str, actual)]
        return bool(self._close_script(keys=self._keys(key), args=args))

    def release(self, key: str, reservation_id: str) -> bool:
        args = [reservation_id, "release", "0", "0", "0"]
        return bool(self._close_script(keys=self._keys(key), args=args))

    def totals(self, key: str) -> Totals:
        return self._totals(self._client.hmget(self._keys(key)[0], _FIELDS))

    # -- asyncio ---------------------------------------------------------------------

    def _aclient(self) -> tuple[Any, Any, Any] | None:
        """This loop's (client, reserve script, close script); None without a URL."""
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
            entry = (client, client.register_script(_RESERVE), client.register_script(_CLOSE))
            self._aclients[loop] = entry
        return entry

    async def areserve(
        self, key: str, reservation_id: str, ask: Amounts, limits: Limits, ttl_s: float | None
    ) -> Refusal | None:
        entry = self._aclient()
        if entry is None:
            return await super().areserve(key, reservation_id, ask, limits, ttl_s)
        args = self._reserve_args(reservation_id, ask, limits, ttl_s)
        return self._refusal(await entry[1](keys=self._keys(key), args=args))

    async def asettle(self, key: str, reservation_id: str, actual: tuple[int, int, int]) -> bool:
        entry = self._aclient()
        if entry is None:
            return await super().asettle(key, reservation_id, actual)
        args = [reservation_id, "settle", *map(str, actual)]
        return bool(await entry[2](keys=self._keys(key), args=args))

    async def arelease(self, key: str, reservation_id: str) -> bool:
        entry = self._aclient()
        if entry is None:
            return await super().arelease(key, reservation_id)
        args = [reservation_id, "release", "0", "0", "0"]
        return bool(await entry[2](keys=self._keys(key), args=args))

    async def atotals(self, key: str) -> Totals:
        entry = self._aclient()
        if entry is None:
            return await super().atotals(key)
        return self._totals(await entry[0].hmget(self._keys(key)[0], _FIELDS))

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
