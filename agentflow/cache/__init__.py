"""agentflow's cache storage: request keys, stores, and the exact and semantic caches.

The call pipeline's cache stage builds on these: ``request_key`` → ``ExactCache`` first,
then ``partition_key`` → embed the text → ``SemanticCache``. Every store keeps JSON, never
pickle, and a failing backend is a miss with a warning, never a failed call.

numpy (semantic search), diskcache and redis are imported on first use, not here.
"""

from agentflow.cache._degrade import CacheStats
from agentflow.cache._disk import DiskStore
from agentflow.cache._exact import ExactCache
from agentflow.cache._keys import partition_key, request_key
from agentflow.cache._redis import RedisStore
from agentflow.cache._semantic import EmbeddingDimensionError, SemanticCache
from agentflow.cache._stores import CacheStore, MemoryStore

__all__ = [
    "CacheStats",
    "CacheStore",
    "DiskStore",
    "EmbeddingDimensionError",
    "ExactCache",
    "MemoryStore",
    "RedisStore",
    "SemanticCache",
    "partition_key",
    "request_key",
]
