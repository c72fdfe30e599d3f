"""agentflow's cache storage: request keys, stores, and the exact and semantic caches.

The call pipeline's cache stage builds on these: ``request_key`` → ``ExactCache`` first,
then ``partition_key`` → embed the text → ``SemanticCache``. Every store keeps JSON, never
pickle, and a failing backend is a miss with a warning, never a failed call.

``SemanticCache(store=PgVectorStore(dsn))`` shares the semantic cache across machines on
PostgreSQL + pgvector, with this process's memory as a near tier in front.

numpy (semantic search), diskcache, redis and psycopg are imported on first use, not here.
"""

from agentflow.cache._degrade import CacheStats
from agentflow.cache._disk import DiskStore
from agentflow.cache._exact import ExactCache
from agentflow.cache._keys import partition_key, request_key
from agentflow.cache._pgvector import PgVectorStore
from agentflow.cache._redis import RedisStore
from agentflow.cache._semantic import EmbeddingDimensionError, SemanticCache
from agentflow.cache._semantic_guard import hit_conflict
from agentflow.cache._semantic_shared import Found, SharedVectorStore
from agentflow.cache._stores import CacheStore, MemoryStore
from agentflow.cache._threshold import (
    LabelledPair,
    ThresholdCurve,
    ThresholdRow,
    read_pairs,
    threshold_curve,
)

__all__ = [
    "CacheStats",
    "CacheStore",
    "DiskStore",
    "EmbeddingDimensionError",
    "ExactCache",
    "Found",
    "LabelledPair",
    "MemoryStore",
    "PgVectorStore",
    "RedisStore",
    "SemanticCache",
    "SharedVectorStore",
    "ThresholdCurve",
    "ThresholdRow",
    "hit_conflict",
    "partition_key",
    "read_pairs",
    "request_key",
    "threshold_curve",
]
