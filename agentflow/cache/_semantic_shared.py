"""The interface of a semantic cache's shared tier (``PgVectorStore`` implements it).

A shared store searches in the database, not in this process: ``SemanticCache`` given one
as ``store=`` keeps its own rows in memory as a near tier in front of it. A lookup asks the
near tier first and the shared store on a near miss, copying a shared hit into the near
tier for at most ``near_ttl`` seconds; an add writes the shared store, then the near tier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentflow._errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["EmbeddingDimensionError", "Found", "SharedVectorStore", "is_shared", "near_ttl"]


class EmbeddingDimensionError(ConfigError):
    """A vector's length differs from the vectors its partition already holds."""

    def __init__(self, partition: str, expected: int, got: int) -> None:
        self.partition = partition
        self.expected = expected
        self.got = got
        super().__init__(
            f"semantic cache partition {partition!r} holds {expected}-dim vectors, got a "
            f"{got}-dim one: the embedding model changed. Pass the embedding model's name "
            "to partition_key(embedder=...) so each model gets its own partitions, or clear "
            "the semantic cache."
        )


@dataclass(frozen=True, slots=True)
class Found:
    """The nearest live entry of a partition in a shared store: its value, cosine
    similarity to the query, vector and seconds left to live (None: no expiry)."""

    value: dict[str, Any]
    similarity: float
    vector: NDArray[np.float32]
    ttl_left: float | None


@runtime_checkable
class SharedVectorStore(Protocol):
    """Entries searched by similarity where they are stored, hard-partitioned: every
    method reads or writes one partition only (None in ``clear``: all). Failures raise
    ``CacheBackendError``."""

    backend: str

    def search(
        self, partition: str, vector: NDArray[np.float32], threshold: float = -1.0
    ) -> Found | None: ...

    def insert(
        self,
        partition: str,
        vector: NDArray[np.float32],
        value: Mapping[str, Any],
        ttl: float | None = None,
    ) -> None: ...

    def clear(self, partition: str | None = None) -> None: ...

    def close(self) -> None: ...

    async def asearch(
        self, partition: str, vector: NDArray[np.float32], threshold: float = -1.0
    ) -> Found | None: ...

    async def ainsert(
        self,
        partition: str,
        vector: NDArray[np.float32],
        value: Mapping[str, Any],
        ttl: float | None = None,
    ) -> None: ...

    async def aclear(self, partition: str | None = None) -> None: ...


def is_shared(store: object) -> bool:
    """Whether ``store`` is a shared vector store rather than a key-value ``CacheStore``."""
    return callable(getattr(store, "search", None)) and callable(getattr(store, "insert", None))


def near_ttl(ttl: float | None, cap: float) -> float:
    """How long the near tier keeps a copy: the entry's TTL, at most ``cap`` seconds (so
    an entry cleared or evicted on the shared store leaves every near tier in time)."""
    return cap if ttl is None else max(min(ttl, cap), 1e-3)
