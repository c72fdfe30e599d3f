"""``SemanticCache``: answers found by embedding similarity, hard-partitioned.

Each partition (a ``partition_key``: tier, step, tenant scope and the rest of the request)
holds (unit vector, value, expiry) entries. A lookup is one matrix-vector product over the
partition's vectors in memory (numpy, float32): cosine similarity, since every vector is
normalised when it goes in. A partition never reads another's entries.

Persistence, on any ``CacheStore`` (a ``DiskStore`` for a directory), as JSON only::

    sem-v1:<sha256(partition)>:meta   {"dim": 384, "lo": 0, "next": 3, "epoch": "..."}
    sem-v1:<sha256(partition)>:<seq>  {"vector": base64 float32 LE, "value": {...},
                                       "expires_at": unix time | null}

Entries are numbered ``lo <= seq < next`` in insertion order. An add allocates ``next``
inside the store's transaction (atomic across processes on a ``DiskStore``) and, past
``max_entries``, deletes the oldest by moving ``lo``. Every lookup reads the meta entry
(one small get) and loads only what is new, so adds from other processes and instances on
the same store show up at once; the matrix is built lazily, on a partition's first use.
The store expires entries by TTL on its side; in memory, an expired row is filtered out
of the search and dropped.

Shared across machines: ``SemanticCache(store=PgVectorStore(dsn))`` searches PostgreSQL
(pgvector) on a miss in this process's memory, which is kept as a near tier in front of it
(see ``_semantic_shared``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentflow._errors import CacheBackendError
from agentflow.cache._degrade import CacheStats, Counters, backend_warnings
from agentflow.cache._disk import DiskStore
from agentflow.cache._rows import Rows, unit
from agentflow.cache._semantic_shared import (
    EmbeddingDimensionError,
    SharedVectorStore,
    is_shared,
    near_ttl,
)
from agentflow.cache._stores import (
    CacheStore,
    MemoryStore,
    backend_name,
    check_ttl,
    encode,
    get_many,
    logger,
    transaction,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

__all__ = ["EmbeddingDimensionError", "SemanticCache"]

_FORMAT = "sem-v1"
_MISS = object()  # the near tier missed; the shared tier is asked next


class _Partition:
    """One partition: its key prefix in the store, what of the store is loaded, its rows.
    Every field is guarded by ``lock``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.reset()

    def reset(self, dim: int = 0) -> None:
        self.epoch: str | None = None
        self.dim = dim
        self.lo = 0  # entries below lo are evicted
        self.next = 0  # the first seq not loaded yet
        self.rows = Rows(dim)


def _count(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    return value if type(value) is int else -1  # bool is not a count


def _meta(raw: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The meta entry if well formed, else None (a malformed one is logged; the next add
    replaces it, starting the partition afresh)."""
    if raw is None:
        return None
    dim, lo, nxt = _count(raw, "dim"), _count(raw, "lo"), _count(raw, "next")
    if isinstance(raw.get("epoch"), str) and dim > 0 and 0 <= lo <= nxt:
        return raw
    logger.warning("ignoring a corrupt semantic cache partition entry %r: %r", key, raw)
    return None


class SemanticCache:
    """A similarity cache over embeddings, partitioned so tenants never share answers.

    ``SemanticCache()`` keeps entries in this process only; ``SemanticCache(directory)``
    persists them under ``directory`` (a ``DiskStore``: JSON in SQLite, no pickle) so they
    outlive the process and are shared by processes on the machine;
    ``SemanticCache(store=...)`` uses any ``CacheStore``, or a shared vector store
    (``PgVectorStore``): entries are then searched in the database, shared by every
    machine, with this cache's memory as a near tier in front (a shared hit is copied
    there for at most ``near_ttl`` seconds). ``max_entries`` caps each partition, evicting
    its oldest entries. ``clock`` (unix seconds) decides expiry in
    memory; inject one in tests.

    Thread-safe, with one lock per partition (numpy releases the GIL in the product, so
    lookups in different partitions run in parallel). A backend failure is a miss (lookup)
    or a no-op (add), counted in ``stats.errors`` and warned about once per backend per
    30 s, like ``ExactCache``. Memory: 4 x dim bytes per entry (1.5 KB at 384 dims).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        store: CacheStore | SharedVectorStore | None = None,
        max_entries: int | None = None,
        clock: Callable[[], float] = time.time,
        near_ttl: float = 60.0,
    ) -> None:
        if directory is not None and store is not None:
            raise ValueError("SemanticCache takes a directory or a store=, not both")
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None; got {max_entries!r}")
        self._shared: SharedVectorStore | None = None
        if store is not None and is_shared(store):
            self._shared = store  # type: ignore[assignment]  # is_shared checked it
            store = MemoryStore()  # the near tier
        if store is None:
            store = MemoryStore() if directory is None else DiskStore(directory)
        if not isinstance(near_ttl, int | float) or not near_ttl > 0:
            raise ValueError(f"near_ttl must be a number of seconds > 0; got {near_ttl!r}")
        self._near_ttl = float(near_ttl)
        self._store: CacheStore = store  # type: ignore[assignment]
        self._backend = backend_name(self._shared or store)
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._partitions: dict[str, _Partition] = {}
        self._counters = Counters()

    @property
    def store(self) -> CacheStore:
        """Where this process keeps its entries (the near tier when ``shared`` is set)."""
        return self._store

    @property
    def shared(self) -> SharedVectorStore | None:
        """The shared vector store behind the near tier, if any."""
        return self._shared

    @property
    def stats(self) -> CacheStats:
        return self._counters.snapshot()

    # -- public ------------------------------------------------------------------------

    def lookup(
        self, partition: str, vector: ArrayLike, threshold: float
    ) -> tuple[dict[str, Any], float] | None:
        """The value of the most similar live entry of ``partition`` and its cosine
        similarity, when that similarity is >= ``threshold``; else None.

        Raises ``EmbeddingDimensionError`` when ``vector``'s length differs from the
        partition's, ValueError for a zero, non-finite or non-1-D vector or a threshold
        outside [-1, 1]. Similarities are float32 products, clipped to [-1, 1].
        """
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1]; got {threshold!r}")
        query = unit(vector)
        found = self._near(partition, query, threshold)
        if found is not _MISS or self._shared is None:
            return None if found is _MISS else found  # type: ignore[return-value]
        try:
            far = self._shared.search(partition, query, threshold)
        except CacheBackendError as exc:
            self._counters.miss(error=True)
            backend_warnings.report(self._backend, exc)
            return None
        return self._far_hit(partition, far)

    def _near(self, partition: str, query: NDArray[np.float32], threshold: float) -> object:
        """The near tier's answer: a hit (counted), None (a failed backend, counted), or
        ``_MISS`` (not counted yet: the shared tier may still answer)."""
        state = self._partition(partition)
        with state.lock:
            try:
                self._sync(state)
            except CacheBackendError as exc:
                self._counters.miss(error=True)
                backend_warnings.report(self._backend, exc)
                return None
            if state.dim and query.shape[0] != state.dim:
                raise EmbeddingDimensionError(partition, state.dim, query.shape[0])
            found = state.rows.nearest(query, self._clock())
        if found is None or found[1] < threshold:
            if self._shared is None:
                self._counters.miss()
            return _MISS
        self._counters.hit()
        return json.loads(found[0]), found[1]

    def _far_hit(self, partition: str, far: Any) -> tuple[dict[str, Any], float] | None:
        """Count a shared-tier answer; copy a hit into the near tier."""
        if far is None:
            self._counters.miss()
            return None
        self._add_near(partition, far.vector, far.value, near_ttl(far.ttl_left, self._near_ttl))
        self._counters.hit()
        return far.value, far.similarity

    def add(
        self,
        partition: str,
        vector: ArrayLike,
        value: Mapping[str, Any],
        ttl: float | None = None,
    ) -> None:
        """Store ``value`` (a JSON object) under ``vector`` in ``partition`` for ``ttl``
        seconds (None: until evicted). Raises ``EmbeddingDimensionError`` when the partition
        holds vectors of another length; a backend failure is a warned no-op."""
        query = unit(vector)
        ttl = check_ttl(ttl)
        encode(value)  # fails before anything is written
        if self._shared is not None:
            try:
                self._shared.insert(partition, query, value, ttl)
            except CacheBackendError as exc:
                self._counters.error()
                backend_warnings.report(self._backend, exc)
            ttl = near_ttl(ttl, self._near_ttl)
        self._add_near(partition, query, value, ttl)

    def _add_near(
        self,
        partition: str,
        query: NDArray[np.float32],
        value: Mapping[str, Any],
        ttl: float | None,
    ) -> None:
        """``add`` to this process's store only."""
        text = encode(value)
        expires_at = None if ttl is None else self._clock() + ttl
        entry = {
            "vector": base64.b64encode(query.astype("<f4").tobytes()).decode("ascii"),
            "value": value,
            "expires_at": expires_at,
        }
        state = self._partition(partition)
        with state.lock:
            try:
                with transaction(self._store):
                    meta = _meta(self._store.get(state.prefix + "meta"), state.prefix + "meta")
                    if meta is None:
                        meta = {"dim": len(query), "lo": 0, "next": 0, "epoch": uuid.uuid4().hex}
                    elif meta["dim"] != len(query):
                        raise EmbeddingDimensionError(partition, meta["dim"], len(query))
                    seq = meta["next"]
                    self._store.set(state.prefix + str(seq), entry, ttl)
                    meta["next"] = seq + 1
                    if self._max_entries is not None and seq + 1 - meta["lo"] > self._max_entries:
                        lo = seq + 1 - self._max_entries
                        for old in range(meta["lo"], lo):
                            self._store.delete(state.prefix + str(old))
                        meta["lo"] = lo
                    self._store.set(state.prefix + "meta", meta, None)
                known = {seq: (query, text, math.inf if expires_at is None else expires_at)}
                self._apply(state, meta, known)
            except CacheBackendError as exc:
                self._counters.error()
                backend_warnings.report(self._backend, exc)

    async def alookup(
        self, partition: str, vector: ArrayLike, threshold: float
    ) -> tuple[dict[str, Any], float] | None:
        """``lookup`` in a worker thread (the product and the store may block); with a
        shared store, the near tier in a thread and the shared one on async I/O."""
        if self._shared is None:
            return await asyncio.to_thread(self.lookup, partition, vector, threshold)
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1]; got {threshold!r}")
        query = unit(vector)
        found = await asyncio.to_thread(self._near, partition, query, threshold)
        if found is not _MISS:
            return found  # type: ignore[return-value]
        try:
            far = await self._shared.asearch(partition, query, threshold)
        except CacheBackendError as exc:
            self._counters.miss(error=True)
            backend_warnings.report(self._backend, exc)
            return None
        return self._far_hit(partition, far)

    async def aadd(
        self,
        partition: str,
        vector: ArrayLike,
        value: Mapping[str, Any],
        ttl: float | None = None,
    ) -> None:
        if self._shared is None:
            await asyncio.to_thread(self.add, partition, vector, value, ttl)
            return
        query = unit(vector)
        ttl = check_ttl(ttl)
        encode(value)
        try:
            await self._shared.ainsert(partition, query, value, ttl)
        except CacheBackendError as exc:
            self._counters.error()
            backend_warnings.report(self._backend, exc)
        await asyncio.to_thread(
            self._add_near, partition, query, value, near_ttl(ttl, self._near_ttl)
        )

    def __len__(self) -> int:
        """Entries held in memory across the partitions loaded so far (expired included
        until a lookup drops them)."""
        with self._lock:
            states = list(self._partitions.values())
        return sum(state.rows.live for state in states)

    def clear(self, partition: str | None = None) -> None:
        """Forget one partition (a tenant's entries, say) or, with None, the whole store.

        Raises ``CacheBackendError`` when the store fails: forgetting must not fail quietly.
        With a shared store, forgets there too (other machines' near tiers keep their
        copies for at most ``near_ttl`` seconds).
        """
        if self._shared is not None:
            self._shared.clear(partition)
        if partition is None:
            with self._lock:
                states = list(self._partitions.values())
            self._store.clear()
            for state in states:
                with state.lock:
                    state.reset()
            return
        state = self._partition(partition)
        with state.lock, transaction(self._store):
            meta = _meta(self._store.get(state.prefix + "meta"), state.prefix + "meta")
            if meta is not None:
                for seq in range(meta["lo"], meta["next"]):
                    self._store.delete(state.prefix + str(seq))
            self._store.delete(state.prefix + "meta")
            state.reset()

    def close(self) -> None:
        self._store.close()
        if self._shared is not None:
            self._shared.close()

    # -- internals ---------------------------------------------------------------------

    def _partition(self, partition: str) -> _Partition:
        if not isinstance(partition, str):
            raise TypeError(f"partitions are str keys; got a {type(partition).__name__}")
        with self._lock:
            state = self._partitions.get(partition)
            if state is None:
                digest = hashlib.sha256(partition.encode("utf-8")).hexdigest()
                state = self._partitions[partition] = _Partition(f"{_FORMAT}:{digest}:")
            return state

    def _sync(self, state: _Partition) -> None:
        """Bring ``state`` up to date with the store: new entries in, evicted ones out."""
        meta = _meta(self._store.get(state.prefix + "meta"), state.prefix + "meta")
        if meta is None:
            state.reset()  # never written, cleared, or corrupt: empty either way
            return
        self._apply(state, meta, {})

    def _apply(
        self,
        state: _Partition,
        meta: dict[str, Any],
        known: Mapping[int, tuple[NDArray[np.float32], str, float]],
    ) -> None:
        """Make ``state`` match ``meta``, loading missing entries (``known`` ones in hand)."""
        if meta["epoch"] != state.epoch or meta["dim"] != state.dim:
            state.reset(meta["dim"])  # (re)created since we loaded it: start over
            state.epoch = meta["epoch"]
            state.lo = state.next = meta["lo"]
        if meta["lo"] > state.lo:  # an add evicted the oldest
            state.lo = meta["lo"]
            state.rows.drop_below(state.lo)
        start = max(state.next, meta["lo"])
        seqs = [seq for seq in range(start, meta["next"]) if seq not in known]
        loaded = dict(known)
        if seqs:
            keys = [state.prefix + str(seq) for seq in seqs]
            for seq, key, raw in zip(seqs, keys, get_many(self._store, keys), strict=True):
                row = self._row(state, key, raw)
                if row is not None:
                    loaded[seq] = row
        state.next = max(state.next, meta["next"])
        state.rows.append([(seq, *row) for seq, row in sorted(loaded.items()) if seq >= start])

    def _row(
        self, state: _Partition, key: str, raw: dict[str, Any] | None
    ) -> tuple[NDArray[np.float32], str, float] | None:
        import numpy as np

        if raw is None:
            return None  # expired, evicted, or lost to a concurrent writer
        try:
            vector = np.frombuffer(base64.b64decode(raw["vector"], validate=True), dtype="<f4")
            expires_at = raw["expires_at"]
            value = raw["value"]
            if vector.shape != (state.dim,) or not np.isfinite(vector).all():
                raise ValueError(f"a vector of {vector.shape} where {state.dim} dims belong")
            if not isinstance(value, dict):
                raise ValueError("the value is not a JSON object")
            expiry = math.inf if expires_at is None else float(expires_at)
        except (KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
            logger.warning(
                "dropping corrupt semantic cache entry %r from %s: %s", key, self._backend, exc
            )
            self._store.delete(key)
            return None
        return vector.astype(np.float32), encode(value), expiry
