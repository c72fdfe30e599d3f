"""Ledger backends: one interface (``LedgerBackend``), three stores.

``MemoryBackend`` (one process), ``DiskCacheBackend`` (processes on one machine) and
``RedisBackend`` (many machines). diskcache and redis are imported when a backend is
built, not when ``budgets`` is imported.
"""

from budgets._backends._base import Hold, LedgerBackend, Refusal, Totals
from budgets._backends._diskcache import DiskCacheBackend
from budgets._backends._memory import MemoryBackend
from budgets._backends._redis import RedisBackend

__all__ = [
    "DiskCacheBackend",
    "Hold",
    "LedgerBackend",
    "MemoryBackend",
    "RedisBackend",
    "Refusal",
    "Totals",
]
