"""The in-memory rows of one semantic cache partition, and the search over them.

numpy is imported inside the functions: ``import agentflow.cache`` must not pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

__all__ = ["Row", "Rows", "unit"]

Row = tuple[int, "NDArray[np.float32]", str, float]
"""(seq, unit vector, value as JSON text, expires at: unix time or inf)."""


def unit(vector: ArrayLike) -> NDArray[np.float32]:
    """``vector`` scaled to length 1, as float32; ValueError when it has no direction."""
    import numpy as np

    array = np.asarray(vector, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"an embedding is a non-empty 1-D vector; got shape {array.shape}")
    norm = float(np.linalg.norm(array))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("an embedding must be finite and non-zero to have a direction")
    return (array / norm).astype(np.float32)


def _dot(matrix: NDArray[np.float32], query: NDArray[np.float32]) -> NDArray[np.float32]:
    """``matrix @ query`` on one thread.

    ``@`` goes to BLAS, whose gemv spreads over every core; a matrix-vector product is
    bound by memory bandwidth, not arithmetic, so the threads buy nothing and, on a busy
    machine, cost a scheduler quantum whenever one of them waits for a core (measured on
    2 loaded cores: 10k x 384 took 4.5 ms at p50 through threaded BLAS, 0.5 ms with
    ``np.vecdot``, numpy's own single-threaded loop). numpy < 2 has no ``vecdot``.
    """
    import numpy as np

    vecdot = getattr(np, "vecdot", None)
    if vecdot is None:
        return matrix @ query
    result: NDArray[np.float32] = vecdot(matrix, query)
    return result


class Rows:
    """Unit vectors with their seqs, expiries and values, in insertion (seq) order.

    Rows ``[head:size]`` of the arrays are live; the arrays grow by doubling. Dropping the
    oldest rows only moves ``head``, and expired rows are masked out of the search; the
    arrays are compacted when a quarter of them is dead. So neither an eviction per add
    nor an expiry per lookup costs a copy of the matrix. Not thread-safe: the partition's
    lock guards it.
    """

    def __init__(self, dim: int = 0) -> None:
        import numpy as np

        self.dim = dim
        self.head = 0
        self.size = 0
        self.vectors: NDArray[np.float32] = np.empty((0, dim), dtype=np.float32)
        self.seqs: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self.expires: NDArray[np.float64] = np.empty(0, dtype=np.float64)
        self.values: list[str] = []  # JSON text, decoded on a hit
        self.next_expiry = math.inf  # the earliest expiry among the live rows

    @property
    def live(self) -> int:
        return self.size - self.head

    def append(self, rows: Sequence[Row]) -> None:
        """Add ``rows`` (ascending seqs, all above the current ones) at the end."""
        import numpy as np

        if not rows:
            return
        if self.size + len(rows) > self.vectors.shape[0]:  # grow, leaving dead rows behind
            live = slice(self.head, self.size)
            capacity = max(self.live + len(rows), 2 * self.vectors.shape[0], 64)
            vectors = np.empty((capacity, self.dim), dtype=np.float32)
            seqs = np.empty(capacity, dtype=np.int64)
            expires = np.empty(capacity, dtype=np.float64)
            vectors[: self.live] = self.vectors[live]
            seqs[: self.live] = self.seqs[live]
            expires[: self.live] = self.expires[live]
            self.vectors, self.seqs, self.expires = vectors, seqs, expires
            self.values = self.values[live]
            self.head, self.size = 0, self.live
        end = self.size + len(rows)
        self.vectors[self.size : end] = np.stack([row[1] for row in rows])
        self.seqs[self.size : end] = [row[0] for row in rows]
        self.expires[self.size : end] = [row[3] for row in rows]
        self.values.extend(row[2] for row in rows)
        self.size = end
        self.next_expiry = min(self.next_expiry, min(row[3] for row in rows))

    def drop_below(self, seq: int) -> None:
        """Forget the rows older than ``seq`` (evicted): they are the first live rows."""
        import numpy as np

        self.head += int(np.searchsorted(self.seqs[self.head : self.size], seq))
        if self.head * 4 >= self.size:
            self._compact(None)

    def nearest(self, query: NDArray[np.float32], now: float) -> tuple[str, float] | None:
        """(value JSON, cosine similarity) of the live row nearest ``query``, or None."""
        import numpy as np

        dead = None
        if now >= self.next_expiry:
            dead = self.expires[self.head : self.size] <= now
            if int(dead.sum()) * 4 >= self.live:
                self._compact(dead)
                dead = None
        if self.live == 0:
            return None
        similarities = _dot(self.vectors[self.head : self.size], query)
        if dead is not None:
            similarities[dead] = -np.inf
        best = int(np.argmax(similarities))
        similarity = float(similarities[best])
        if similarity == -math.inf:
            return None  # every row has expired
        return self.values[self.head + best], min(max(similarity, -1.0), 1.0)

    def _compact(self, dead: NDArray[np.bool_] | None) -> None:
        """Move the live rows, minus the ``dead`` ones (a mask over ``[head:size]``), to the
        front of the arrays."""
        import numpy as np

        if dead is None:
            rows = np.arange(self.head, self.size)
        else:
            rows = np.flatnonzero(~dead) + self.head
        kept = len(rows)
        self.vectors[:kept] = self.vectors[rows]
        self.seqs[:kept] = self.seqs[rows]
        self.expires[:kept] = self.expires[rows]
        self.values = [self.values[i] for i in rows.tolist()]
        self.head, self.size = 0, kept
        self.next_expiry = float(self.expires[:kept].min()) if kept else math.inf
