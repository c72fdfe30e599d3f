"""``PgVectorStore``: the semantic cache shared by many machines on PostgreSQL + pgvector.

One table holds every partition's entries; the partition is a key column, and every
statement names it in its ``WHERE`` clause, so a lookup reads one partition's rows and
nothing else (never a filter applied after the search)::

    {table}             partition bytea   sha256 of the partition key
                        seq bigint        insertion order (identity)
                        embedding vector(dim), value jsonb, expires_at timestamptz
                        PRIMARY KEY (partition, seq)
    {table}_partitions  partition bytea PRIMARY KEY, rows bigint

Search is exact (a scan of the partition through its primary key, ordered by cosine
distance) until the partition holds ``hnsw_min_rows`` entries; past that, an HNSW index
(``vector_cosine_ops``, built once, ``CREATE INDEX CONCURRENTLY``) answers instead, with
the partition condition in the same query. TTL: ``expires_at`` is set from the server's
clock, expired rows are never returned and are deleted in batches by ``purge_expired``
(run by inserts at most once a minute per process). Eviction: past ``max_entries`` an
insert deletes its partition's oldest rows in the same transaction; the row counter is
locked by the insert, so concurrent writers on many machines keep it exact.

Values are JSON (``jsonb``), never pickle. A PostgreSQL failure raises
``CacheBackendError``; ``SemanticCache`` turns it into a miss and a warning.
Needs ``pip install 'agentflow[pgvector]'`` (psycopg 3 and psycopg-pool).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentflow._errors import CacheBackendError, ConfigError
from agentflow.cache._semantic_shared import EmbeddingDimensionError, Found
from agentflow.cache._stores import check_ttl, encode

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["PgVectorStore"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")
_PURGE_EVERY_S = 60.0
_PURGE_BATCH = 5000
_RECHECK_INDEX_S = 300.0


def _literal(vector: NDArray[np.float32]) -> str:
    return "[" + ",".join(f"{float(x):.9g}" for x in vector) + "]"


def _parse(text: str) -> NDArray[np.float32]:
    import numpy as np

    return np.array(json.loads(text), dtype=np.float32)


def _describe(dsn: str) -> str:
    """``postgresql://host:port/db`` of a DSN, without user or password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        return "postgresql (unparsable DSN)"
    return f"postgresql://{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class PgVectorStore:
    """The semantic cache's shared tier on PostgreSQL with pgvector.

    ``PgVectorStore("postgresql://user@host:5432/db")``; give it to ``SemanticCache``,
    which keeps an in-process near tier in front of it::

        cache = SemanticCache(store=PgVectorStore(dsn))

    ``table`` names the table (and its ``_partitions`` twin), made on first use with the
    ``vector`` extension; the vectors' length is fixed by the first entry (another length
    raises ``EmbeddingDimensionError``). ``max_entries`` caps each partition (oldest
    evicted; None: no cap). ``hnsw_min_rows``: a partition this large is searched through
    the HNSW index (built when a partition first reaches it); smaller ones are scanned
    exactly, which is never wrong (``benchmarks/bench_pgvector.py``, 384 dims, a busy
    2-core machine: exact p50 2 ms at 100 rows, 14 ms at 1,000, 148 ms at 10,000; HNSW
    4-10 ms throughout, so the index pays from about 300-1,000 rows).
    ``timeout`` (seconds) bounds connecting, waiting for a pooled connection and each
    statement, so a slow database is a miss, not a stalled call. ``pool_size``:
    connections per process (and per event loop for the async methods).
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "agentflow_semantic",
        max_entries: int | None = 10_000,
        hnsw_min_rows: int = 1_000,
        ef_search: int = 100,
        timeout: float = 2.0,
        pool_size: int = 4,
    ) -> None:
        try:
            import psycopg  # noqa: F401  # fail here, not on the first lookup
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"PgVectorStore needs {exc.name}: pip install 'agentflow[pgvector]'"
            ) from exc
        if not isinstance(dsn, str) or not dsn:
            raise ConfigError(f"PgVectorStore needs a PostgreSQL DSN string; got {dsn!r}")
        if not isinstance(table, str) or not _NAME.fullmatch(table):
            raise ConfigError(
                f"PgVectorStore(table={table!r}): use lower-case letters, digits and _ "
                "(at most 41 characters, not starting with a digit)"
            )
        for name, value in (("hnsw_min_rows", hnsw_min_rows), ("pool_size", pool_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PgVectorStore({name}=...) must be an int >= 1; got {value!r}")
        if max_entries is not None and (not isinstance(max_entries, int) or max_entries < 1):
            raise ConfigError(f"max_entries must be an int >= 1 or None; got {max_entries!r}")
        if not isinstance(ef_search, int) or not 1 <= ef_search <= 1000:
            raise ConfigError(f"ef_search must be an int in [1, 1000]; got {ef_search!r}")
        if not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"timeout must be a number of seconds > 0; got {timeout!r}")
        self._dsn = dsn
        self.table = table
        self.max_entries = max_entries
        self.hnsw_min_rows = hnsw_min_rows
        self.ef_search = ef_search
        self.timeout = float(timeout)
        self.pool_size = pool_size
        self.backend = _describe(dsn)
        self._lock = threading.Lock()
        self._pool: Any = None
        self._apools: dict[asyncio.AbstractEventLoop, Any] = {}
        self._dim: int | None = None  # None: the table is not known to exist yet
        self._indexed = False
        self._indexing: threading.Thread | None = None
        self._recheck = 0.0  # when to ask again whether the index exists
        self._counts: dict[bytes, tuple[int, float]] = {}  # partition -> (rows, when)
        self._next_purge = 0.0

    def __repr__(self) -> str:
        return f"PgVectorStore({self.backend!r}, table={self.table!r})"

    # -- connections ---------------------------------------------------------------------

    def _kwargs(self) -> dict[str, Any]:
        ms = int(self.timeout * 1000)
        return {
            "connect_timeout": max(int(self.timeout + 0.999), 1),
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
            "autocommit": True,
        }

    def _sync_pool(self) -> Any:
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._pool = ConnectionPool(
                    self._dsn,
                    min_size=0,
                    max_size=self.pool_size,
                    timeout=self.timeout,
                    kwargs=self._kwargs(),
                    open=True,
                    name=f"agentflow-{self.table}",
                )
            return self._pool

    async def _async_pool(self) -> Any:
        loop = asyncio.get_running_loop()
        pool = self._apools.get(loop)
        if pool is None:
            from psycopg_pool import AsyncConnectionPool

            pool = AsyncConnectionPool(
                self._dsn,
                min_size=0,
                max_size=self.pool_size,
                timeout=self.timeout,
                kwargs=self._kwargs(),
                open=False,
            )
            await pool.open()
            for old in [other for other in self._apools if other.is_closed()]:
                del self._apools[old]  # pools of finished loops: their sockets are gone
            self._apools[loop] = pool
        return pool

    def _error(self, what: str, exc: BaseException) -> CacheBackendError:
        cause = str(exc).strip() or type(exc).__name__
        return CacheBackendError(
            f"cache backend {self.backend} failed to {what}: {type(exc).__name__}: {cause}. "
            "Check that PostgreSQL is up and reachable from here and that the pgvector "
            "extension is installed (CREATE EXTENSION vector needs a role allowed to run it)."
        )

    def _errors(self) -> tuple[type[BaseException], ...]:
        import psycopg
        import psycopg_pool

        return (psycopg.Error, psycopg_pool.PoolTimeout, OSError)

    # -- SQL -------------------------------------------------------------------------------

    def _schema(self, dim: int) -> list[str]:
        t = self.table
        return [
            "CREATE EXTENSION IF NOT EXISTS vector",
            f"CREATE TABLE IF NOT EXISTS {t} (partition bytea NOT NULL, "
            "seq bigint GENERATED ALWAYS AS IDENTITY, "
            f"embedding vector({dim}) NOT NULL, value jsonb NOT NULL, expires_at timestamptz, "
            "PRIMARY KEY (partition, seq))",
            f"CREATE INDEX IF NOT EXISTS {t}_expiry ON {t} (expires_at) "
            "WHERE expires_at IS NOT NULL",
            f"CREATE TABLE IF NOT EXISTS {t}_partitions (partition bytea PRIMARY KEY, "
            "rows bigint NOT NULL DEFAULT 0)",
        ]

    def _dim_sql(self) -> str:
        return (
            "SELECT a.atttypmod, EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = "
            f"'{self.table}_hnsw') FROM pg_attribute a WHERE a.attrelid = "
            f"to_regclass('{self.table}') AND a.attname = 'embedding'"
        )

    def _search_sql(self, exact: bool) -> str:
        """The nearest live row of one partition. Exact: through the primary key, sorted
        by distance (``+ 0``: the HNSW index cannot order it). Indexed: the HNSW index
        orders, the partition condition filters inside the scan (written as an
        expression, so the planner does not fall back to the primary key and a sort)."""
        distance = "(embedding <=> %(q)s::vector)"
        order = f"{distance} + 0" if exact else distance
        where = "partition = %(p)s" if exact else "(partition || ''::bytea) = %(p)s"
        return (
            f"SELECT value::text, 1 - {distance}, embedding::text, "
            "extract(epoch FROM expires_at - now()), "
            f"(SELECT rows FROM {self.table}_partitions WHERE partition = %(p)s) "
            f"FROM {self.table} WHERE {where} "
            "AND (expires_at IS NULL OR expires_at > now()) "
            f"ORDER BY {order} LIMIT 1"
        )

    @staticmethod
    def _key(partition: str) -> bytes:
        if not isinstance(partition, str):
            raise TypeError(f"partitions are str keys; got a {type(partition).__name__}")
        return hashlib.sha256(partition.encode("utf-8")).digest()

    def _check_dim(self, partition: str, got: int) -> None:
        if self._dim is not None and self._dim != got:
            raise EmbeddingDimensionError(partition, self._dim, got)

    def _use_index(self, key: bytes) -> bool:
        if not self._indexed:
            return False
        rows, _ = self._counts.get(key, (0, 0.0))
        return rows >= self.hnsw_min_rows

    def _found(self, row: Any, key: bytes) -> Found | None:
        if row is None:
            return None
        value_text, similarity, vector_text, ttl_left, rows = row
        if rows is not None:
            self._counts[key] = (int(rows), time.monotonic())
        value = json.loads(value_text)
        if not isinstance(value, dict):
            return None
        similarity = max(-1.0, min(1.0, float(similarity)))
        left = None if ttl_left is None else float(ttl_left)
        return Found(value, similarity, _parse(vector_text), left)

    def _insert_plan(
        self, key: bytes, vector: NDArray[np.float32], text: str, ttl: float | None
    ) -> list[tuple[str, dict[str, Any]]]:
        t = self.table
        params = {"p": key, "q": _literal(vector), "v": text, "ttl": ttl, "max": self.max_entries}
        plan = [
            (
                f"INSERT INTO {t}_partitions AS c (partition, rows) VALUES (%(p)s, 1) "
                "ON CONFLICT (partition) DO UPDATE SET rows = c.rows + 1",
                params,
            ),
            (
                f"INSERT INTO {t} (partition, embedding, value, expires_at) VALUES (%(p)s, "
                "%(q)s::vector, %(v)s::jsonb, now() + %(ttl)s * interval '1 second')",
                params,
            ),
        ]
        if self.max_entries is not None:
            plan.append(
                (
                    f"WITH gone AS (DELETE FROM {t} WHERE partition = %(p)s AND seq IN ("
                    f"SELECT seq FROM {t} WHERE partition = %(p)s ORDER BY seq LIMIT GREATEST(("
                    f"SELECT rows FROM {t}_partitions WHERE partition = %(p)s) - %(max)s, 0)) "
                    f"RETURNING 1) UPDATE {t}_partitions SET rows = rows - (SELECT count(*) "
                    "FROM gone) WHERE partition = %(p)s",
                    params,
                )
            )
        plan.append((f"SELECT rows FROM {t}_partitions WHERE partition = %(p)s", params))
        return plan

    def _purge_sql(self) -> str:
        t = self.table
        return (
            f"WITH gone AS (DELETE FROM {t} WHERE ctid IN (SELECT ctid FROM {t} WHERE "
            f"expires_at <= now() LIMIT {_PURGE_BATCH}) RETURNING partition), "
            "counts AS (SELECT partition, count(*) AS n FROM gone GROUP BY partition), "
            f"upd AS (UPDATE {t}_partitions c SET rows = c.rows - counts.n FROM counts "
            "WHERE c.partition = counts.partition) SELECT coalesce(sum(n), 0) FROM counts"
        )

    def _index_sql(self) -> str:
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.table}_hnsw ON {self.table} "
            "USING hnsw (embedding vector_cosine_ops)"
        )

    def _build_index(self) -> None:
        """Build the HNSW index once, in a background thread on its own connection (no
        statement timeout: on a large table it takes a while; CONCURRENTLY, so writers
        never wait for it). Searches use it once it is there."""
        with self._lock:
            if self._indexed or self._indexing is not None:
                return
            self._indexing = threading.Thread(
                target=self._index_now, name=f"agentflow-{self.table}-hnsw", daemon=True
            )
            self._indexing.start()

    def _index_now(self) -> None:
        import psycopg

        from agentflow.cache._stores import logger

        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(self._index_sql())
            self._indexed = True
            logger.info("built the HNSW index %s_hnsw on %s", self.table, self.backend)
        except (psycopg.Error, OSError) as exc:
            logger.warning("could not build the HNSW index on %s: %s", self.backend, exc)
        finally:
            with self._lock:
                self._indexing = None

    def wait_for_index(self, timeout: float = 60.0) -> bool:
        """Wait for an index build under way; whether the index is there."""
        thread = self._indexing
        if thread is not None:
            thread.join(timeout)
        return self._indexed

    # -- sync ------------------------------------------------------------------------------

    def _ensure(self, conn: Any, dim: int | None) -> bool:
        """Learn the table's dimension, making the table when ``dim`` is given. False when
        the table does not exist yet (a lookup then misses without creating it). Asks
        again every few minutes until the HNSW index exists (another machine may build
        it)."""
        if self._dim is not None and (self._indexed or time.monotonic() < self._recheck):
            return True
        self._recheck = time.monotonic() + _RECHECK_INDEX_S
        row = conn.execute(self._dim_sql()).fetchone()
        if row is None:
            if dim is None:
                return False
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                for statement in self._schema(dim):
                    conn.execute(statement)
            row = conn.execute(self._dim_sql()).fetchone()
        self._dim, self._indexed = int(row[0]), bool(row[1])
        return True

    def search(
        self, partition: str, vector: NDArray[np.float32], threshold: float = -1.0
    ) -> Found | None:
        """The nearest live entry of ``partition`` when its similarity is >= threshold."""
        key = self._key(partition)
        try:
            with self._sync_pool().connection() as conn:
                if not self._ensure(conn, None):
                    return None
                self._check_dim(partition, len(vector))
                exact = not self._use_index(key)
                with conn.transaction():
                    if not exact:
                        conn.execute(f"SET LOCAL hnsw.ef_search = {self.ef_search}")
                    row = conn.execute(
                        self._search_sql(exact), {"p": key, "q": _literal(vector)}
                    ).fetchone()
        except self._errors() as exc:
            raise self._error("read", exc) from exc
        found = self._found(row, key)
        return found if found is not None and found.similarity >= threshold else None

    def insert(
        self,
        partition: str,
        vector: NDArray[np.float32],
        value: Mapping[str, Any],
        ttl: float | None = None,
    ) -> None:
        """Add an entry to ``partition``, evicting its oldest past ``max_entries``."""
        key, text, ttl = self._key(partition), encode(value), check_ttl(ttl)
        try:
            with self._sync_pool().connection() as conn:
                self._ensure(conn, len(vector))
                self._check_dim(partition, len(vector))
                with conn.transaction():
                    for sql, params in self._insert_plan(key, vector, text, ttl):
                        cur = conn.execute(sql, params)
                    rows = int(cur.fetchone()[0])
                self._counts[key] = (rows, time.monotonic())
                if rows >= self.hnsw_min_rows:
                    self._build_index()
                if time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + _PURGE_EVERY_S
                    conn.execute(self._purge_sql())
        except self._errors() as exc:
            raise self._error("write", exc) from exc

    def purge_expired(self) -> int:
        """Delete expired entries (up to 5,000 a call); the number deleted."""
        try:
            with self._sync_pool().connection() as conn:
                if not self._ensure(conn, None):
                    return 0
                return int(conn.execute(self._purge_sql()).fetchone()[0])
        except self._errors() as exc:
            raise self._error("purge", exc) from exc

    def count(self, partition: str | None = None) -> int:
        """Rows held (expired ones included until purged), in one partition or all."""
        try:
            with self._sync_pool().connection() as conn:
                if not self._ensure(conn, None):
                    return 0
                if partition is None:
                    row = conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
                else:
                    row = conn.execute(
                        f"SELECT count(*) FROM {self.table} WHERE partition = %s",
                        (self._key(partition),),
                    ).fetchone()
                return int(row[0])
        except self._errors() as exc:
            raise self._error("count", exc) from exc

    def clear(self, partition: str | None = None) -> None:
        """Delete one partition's entries, or with None every entry of this table."""
        try:
            with self._sync_pool().connection() as conn:
                if not self._ensure(conn, None):
                    return
                with conn.transaction():
                    for sql, params in self._clear_plan(partition):
                        conn.execute(sql, params)
        except self._errors() as exc:
            raise self._error("clear", exc) from exc
        self._counts.clear()

    def _clear_plan(self, partition: str | None) -> list[tuple[str, tuple[Any, ...]]]:
        t = self.table
        if partition is None:
            return [(f"DELETE FROM {t}", ()), (f"DELETE FROM {t}_partitions", ())]
        key = self._key(partition)
        return [
            (f"DELETE FROM {t} WHERE partition = %s", (key,)),
            (f"DELETE FROM {t}_partitions WHERE partition = %s", (key,)),
        ]

    def close(self) -> None:
        """Close the sync pool (async pools close with ``aclose``)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- async -----------------------------------------------------------------------------

    async def _aensure(self, conn: Any, dim: int | None) -> bool:
        if self._dim is not None and (self._indexed or time.monotonic() < self._recheck):
            return True
        self._recheck = time.monotonic() + _RECHECK_INDEX_S
        row = await (await conn.execute(self._dim_sql())).fetchone()
        if row is None:
            if dim is None:
                return False
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                for statement in self._schema(dim):
                    await conn.execute(statement)
            row = await (await conn.execute(self._dim_sql())).fetchone()
        self._dim, self._indexed = int(row[0]), bool(row[1])
        return True

    async def asearch(
        self, partition: str, vector: NDArray[np.float32], threshold: float = -1.0
    ) -> Found | None:
        """``search`` on psycopg's async connections: the event loop never blocks."""
        key = self._key(partition)
        try:
            pool = await self._async_pool()
            async with pool.connection() as conn:
                if not await self._aensure(conn, None):
                    return None
                self._check_dim(partition, len(vector))
                exact = not self._use_index(key)
                async with conn.transaction():
                    if not exact:
                        await conn.execute(f"SET LOCAL hnsw.ef_search = {self.ef_search}")
                    cur = await conn.execute(
                        self._search_sql(exact), {"p": key, "q": _literal(vector)}
                    )
                    row = await cur.fetchone()
        except self._errors() as exc:
            raise self._error("read", exc) from exc
        found = self._found(row, key)
        return found if found is not None and found.similarity >= threshold else None

    async def ainsert(
        self,
        partition: str,
        vector: NDArray[np.float32],
        value: Mapping[str, Any],
        ttl: float | None = None,
    ) -> None:
        key, text, ttl = self._key(partition), encode(value), check_ttl(ttl)
        try:
            pool = await self._async_pool()
            async with pool.connection() as conn:
                await self._aensure(conn, len(vector))
                self._check_dim(partition, len(vector))
                async with conn.transaction():
                    for sql, params in self._insert_plan(key, vector, text, ttl):
                        cur = await conn.execute(sql, params)
                    rows = int((await cur.fetchone())[0])
                self._counts[key] = (rows, time.monotonic())
                if rows >= self.hnsw_min_rows:
                    self._build_index()
        except self._errors() as exc:
            raise self._error("write", exc) from exc

    async def aclear(self, partition: str | None = None) -> None:
        try:
            pool = await self._async_pool()
            async with pool.connection() as conn:
                if not await self._aensure(conn, None):
                    return
                async with conn.transaction():
                    for sql, params in self._clear_plan(partition):
                        await conn.execute(sql, params)
        except self._errors() as exc:
            raise self._error("clear", exc) from exc
        self._counts.clear()

    async def aclose(self) -> None:
        """Close this event loop's async pool and the sync pool."""
        pool = self._apools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()
        await asyncio.to_thread(self.close)
