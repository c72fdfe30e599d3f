"""Stage 3, cache: serve a repeated request from the exact or semantic response cache.

A hit reaches no endpoint and costs nothing: it is an LLM span with cost 0 and the cost
it saved (``agentflow.cost.saved_usd``), an ``Attempt`` with ``cache_hit=True``, and a
``Completion`` rebuilt from JSON (a stream replays it as chunks). Answers are stored
only when they are safe to replay: no errors (they never get here), no tool calls unless
the step allows them, no sampled calls (temperature > 0) unless the step opts in, no
answer the scorer found unconfident, and of a stream only one that ended normally (never
a partial or failed one).

The stores live in ``agentflow.cache``; this module decides what to look up and store.
Reading and writing a store on disk or Redis is an ``Io`` effect, and embedding the
request an ``Embed`` effect, so the async driver never blocks its loop on them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from agentflow._completion import Completion
from agentflow._config import Config, get_config
from agentflow._errors import ConfigError
from agentflow._policy import CacheControl, CachePolicy
from agentflow._response import parse_format
from agentflow.pipeline.effects import Effect, Embed, Io
from agentflow.pipeline.request import Request
from budgets import Cost, Usage

if TYPE_CHECKING:
    from agentflow.cache import ExactCache, SemanticCache

__all__ = ["CacheHit", "CacheStage", "cache_text", "reset_stores", "scope_of"]

log = logging.getLogger("agentflow.cache")

# the fields a stored answer must have, with their JSON types
_ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "text": str,
    "message": dict,
    "tier": str,
    "model": str,
    "endpoint": str,
    "cost_usd": str,
}


@dataclass(slots=True)
class CacheHit:
    """A stored answer that may be served: the account stage records it."""

    completion: Completion
    kind: str  # "exact" or "semantic"
    similarity: float | None
    saved_usd: Decimal


def scope_of(policy: CachePolicy, run: Any) -> str:
    """The tenant partition a step's answers live in (never shared across partitions)."""
    scope = policy.scope
    if callable(scope):
        name = scope(run)
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"the cache scope function returned {name!r}; it must return a non-empty "
                "partition name (str)"
            )
        return f"scope:{name}"
    if scope == "global":
        return "global"
    # an id is quoted, so no id (not "", not "-") can share the anonymous partition
    if scope == "session":
        session = run.session_id if run is not None else None
        return "session:anonymous" if session is None else f"session:{json.dumps(session)}"
    user = run.user_id if run is not None else None
    return "user:anonymous" if user is None else f"user:{json.dumps(user)}"


def cache_text(policy: CachePolicy, messages: Sequence[Mapping[str, Any]]) -> str | None:
    """What the semantic cache embeds: the step's ``text(messages)`` or the last user
    message (its text parts when the content is a list)."""
    if policy.text is not None:
        text = policy.text([dict(m) for m in messages])
        if not isinstance(text, str):
            raise ConfigError(f"CachePolicy.text must return a str, got {type(text).__name__}")
        return text
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
                return "\n".join(str(p) for p in parts if p)
            return None
    return None


# --- the stores, one per configuration ---------------------------------------------
# entries per semantic partition (oldest evicted): p99 lookup stays under ~5 ms at
# 384-768 dimensions on a 2-core machine (benchmarks/bench_semantic_cache.py)
SEMANTIC_MAX_ENTRIES = 10_000
_lock = threading.Lock()
_stores: dict[int, tuple[Config, ExactCache, SemanticCache | None]] = {}


def _known_stores(cfg: Config, semantic: bool) -> tuple[ExactCache, SemanticCache | None] | None:
    """The stores already open for ``cfg``, or None (opening them may do I/O)."""
    known = _stores.get(id(cfg))
    if known is not None and known[0] is cfg and (known[2] is not None or not semantic):
        return known[1], known[2]
    return None


def _open_stores(cfg: Config, semantic: bool) -> tuple[ExactCache, SemanticCache | None]:
    from agentflow.cache import DiskStore, ExactCache, MemoryStore, RedisStore, SemanticCache

    with _lock:
        known = _stores.get(id(cfg))
        if known is not None and known[0] is cfg and (known[2] is not None or not semantic):
            return known[1], known[2]
        backend = cfg.cache_backend if cfg.cache_backend is not None else "disk"
        exact = known[1] if known is not None and known[0] is cfg else None
        if exact is None:
            if backend == "disk":
                store: Any = DiskStore(cfg.cache_dir / "responses")
            elif backend == "memory":
                store = MemoryStore()
            elif isinstance(backend, str) and backend.startswith(("redis://", "rediss://")):
                store = RedisStore(url=backend)
            elif callable(getattr(backend, "get", None)) and callable(
                getattr(backend, "set", None)
            ):
                store = backend
            else:
                raise ConfigError(
                    f"cache_backend={backend!r} is not a cache backend; use 'disk', 'memory', "
                    "a redis:// URL or an agentflow.cache store"
                )
            exact = ExactCache(store)
        sem: SemanticCache | None = None
        if semantic and cfg.semantic_backend is not None:  # shared: PostgreSQL + pgvector
            sem = SemanticCache(store=cfg.semantic_backend, max_entries=SEMANTIC_MAX_ENTRIES)
        elif semantic:
            directory = None if backend == "memory" else cfg.cache_dir / "semantic"
            sem = SemanticCache(directory, max_entries=SEMANTIC_MAX_ENTRIES)
        _stores.clear()  # a new configuration replaces the old one's stores
        _stores[id(cfg)] = (cfg, exact, sem)
        return exact, sem


def _embedder_name(embedder: Any) -> str:
    if embedder is None or isinstance(embedder, str):
        return embedder or ""
    return f"{getattr(embedder, '__module__', '')}.{getattr(embedder, '__qualname__', '')}"


_default: Any = None
_default_factory: Callable[[], Any] | None = None


def set_default_embedder(factory: Callable[[], Any] | None) -> None:
    """What makes the semantic cache's default embedder (``agentflow`` sets it: the
    stage cannot import ``agentflow.embedders``, which records spans through it)."""
    global _default, _default_factory
    _default, _default_factory = None, factory


def default_embedder() -> Any:
    """The semantic cache's embedder when neither the step nor ``af.configure`` names
    one: ``af.LocalEmbedder()`` (all-MiniLM-L6-v2 on ONNX Runtime, offline), one per
    process, when the ``embed`` extra is installed; else None."""
    global _default
    if _default is None and _default_factory is not None:
        _default = _default_factory()
    return _default


def reset_stores() -> None:
    """Forget the open stores (tests, after changing the cache directory)."""
    with _lock:
        _stores.clear()


# --- the stage ------------------------------------------------------------------------
class CacheStage:
    """The cache stage of one call: look up before the call, store after it."""

    def __init__(self, request: Request, control: CacheControl, policy: CachePolicy) -> None:
        from agentflow.cache import partition_key, request_key

        self.request = request
        self.control = control
        self.policy = policy
        self.scope = scope_of(policy, request.run)
        tier = request.zoo.tier(request.tier)
        models = sorted({e.model for e in tier.endpoints})
        key_args: dict[str, Any] = {
            # the tier's models, not only its name: a tier pointed at another model
            # never serves the old model's answers
            "tier": f"{request.tier}:{'|'.join(models)}",
            "messages": request.messages,
            "params": request.params,
            "step": request.step_name,
            "scope": self.scope,
        }
        self.key = request_key(**key_args)  # CacheKeyError names a part it cannot serialise
        self.semantic = policy.kind == "semantic"
        self.embedder = (
            (policy.embedder or get_config().embedder or default_embedder())
            if self.semantic
            else None
        )
        self.partition = (
            partition_key(**key_args, embedder=_embedder_name(self.embedder))
            if self.semantic
            else ""
        )
        self.text = cache_text(policy, request.messages) if self.semantic else None
        self.refused: str | None = None  # the guard check that refused a semantic hit
        self.vector: list[float] | None = None
        self.config = get_config()
        self.stores = _known_stores(self.config, self.semantic)  # None: open them first

    @classmethod
    def open(cls, request: Request) -> CacheStage | None:
        """The stage for this call, or None when the call is not cacheable."""
        control = request.cache
        policy = control.policy if control is not None else None
        if control is None or policy is None or request.operation == "embeddings":
            return None
        if not control.read and not control.write:
            return None
        temperature = request.params.get("temperature")
        if not policy.allow_sampled and isinstance(temperature, int | float) and temperature > 0:
            return None  # a sampled answer is one draw, not the answer: never replayed
        if (request.params.get("n") or 1) > 1:
            return None
        return cls(request, control, policy)

    @property
    def exact(self) -> ExactCache:
        assert self.stores is not None, "open() the stores first"
        return self.stores[0]

    @property
    def sem(self) -> SemanticCache | None:
        assert self.stores is not None, "open() the stores first"
        return self.stores[1]

    @property
    def blocking(self) -> bool:
        """Whether the exact store does I/O (disk, Redis): in memory it runs inline."""
        from agentflow.cache import MemoryStore

        return not isinstance(self.exact.store, MemoryStore)

    def _opened(self) -> Generator[Effect, Any, None]:
        """Open the stores (a cache directory, a Redis connection) off the event loop,
        once per configuration."""
        if self.stores is None:
            cfg, semantic = self.config, self.semantic
            self.stores = yield Io(lambda: _open_stores(cfg, semantic))

    # lookup --------------------------------------------------------------------------
    def lookup(self) -> Generator[Effect, Any, CacheHit | None]:
        yield from self._opened()
        if not self.control.read:
            if self.semantic and self.control.write:
                yield from self._embed()
            return None
        hit = yield from self.lookup_exact()
        if hit is not None:
            return hit
        if not self.semantic or self.sem is None:
            return None
        vector = yield from self._embed()
        if vector is None:
            return None
        t0 = time.perf_counter()
        sem, partition, threshold = self.sem, self.partition, self.policy.threshold
        found = yield Io(
            lambda: sem.lookup(partition, vector, threshold),
            lambda: sem.alookup(partition, vector, threshold),
        )
        if found is None:
            return None
        value, similarity = found
        if self._guarded(value):
            return None
        return self._hit(value, "semantic", similarity, time.perf_counter() - t0)

    def _guarded(self, entry: Mapping[str, Any]) -> bool:
        """Whether the guard turns this semantic hit into a miss: the cached question
        differs from this one in its numbers, negation, ... (``CachePolicy.guard``)."""
        guard = self.policy.guard
        cached = entry.get("question")
        if guard is None or not isinstance(cached, str) or self.text is None:
            return False
        from agentflow.cache import hit_conflict

        checks = guard if isinstance(guard, str) else list(guard)
        conflict = hit_conflict(self.text, cached, checks)
        if conflict is None:
            return False
        log.info("semantic hit refused by the %s guard (%r vs %r)", conflict, self.text, cached)
        self.refused = conflict
        return True

    def lookup_exact(self) -> Generator[Effect, Any, CacheHit | None]:
        """The exact lookup alone: a follower reading the answer its leader stored."""
        yield from self._opened()
        t0 = time.perf_counter()
        exact, key = self.exact, self.key
        entry = yield Io(
            lambda: exact.lookup(key), lambda: exact.alookup(key), blocking=self.blocking
        )
        if entry is None:
            return None
        return self._hit(entry, "exact", None, time.perf_counter() - t0)

    @property
    def shares_flights(self) -> bool:
        """Whether identical concurrent calls may wait for one in flight: the leader's
        answer is stored and the followers may read it."""
        return self.control.read and self.control.write

    def _embed(self) -> Generator[Effect, Any, list[float] | None]:
        if self.text is None or not self.text.strip():
            return None
        embedder = self.embedder
        if embedder is None:
            raise ConfigError(
                f"step {self.request.step_name!r} uses the semantic cache but has no "
                "embedder: give CachePolicy(kind='semantic', embedder=...) a zoo tier with "
                "an embeddings endpoint or a function texts -> vectors, set "
                "af.configure(embedder=...), or pip install 'agentflow[embed]' for the "
                "default af.LocalEmbedder()"
            )
        vectors = yield Embed(embedder, [self.text])
        if isinstance(vectors, Exception):
            # like a cache backend that is down: answer without the semantic cache
            log.warning("semantic cache skipped: the embedder failed: %s", vectors)
            warnings.warn(
                f"agentflow: semantic cache skipped, the embedder failed: {vectors}",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        try:
            vector = [float(x) for x in next(iter(vectors))]
        except (TypeError, ValueError, IndexError, StopIteration) as err:
            raise ConfigError(
                f"the embedder returned {type(vectors).__name__}, not one vector per text: {err}"
            ) from None
        self.vector = vector
        return vector

    def _hit(
        self, entry: Mapping[str, Any], kind: str, similarity: float | None, latency: float
    ) -> CacheHit | None:
        params = self.request.params
        bad = [k for k, t in _ENTRY_FIELDS.items() if not isinstance(entry.get(k), t)]
        try:
            saved = Decimal(str(entry.get("cost_usd")))
        except InvalidOperation:
            bad.append("cost_usd")
        if bad:  # a stored answer we cannot trust is never served
            log.warning("dropping a %s cache entry with bad fields %s", kind, bad)
            return None
        text = str(entry["text"])
        parsed = None
        if "response_format" in params:
            try:
                parsed = parse_format(params["response_format"], text)
            except Exception:
                log.warning("dropping a %s cache entry that no longer parses", kind)
                return None
        confidence = entry.get("confidence")
        completion = Completion(
            text=text,
            message=dict(entry["message"]),
            tier=str(entry["tier"]),
            model=str(entry["model"]),
            endpoint=str(entry["endpoint"]),
            usage=Usage(),
            cost=Cost(),
            cache_hit=True,
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            confident=entry.get("confident") if isinstance(entry.get("confident"), bool) else None,
            finish_reason=entry.get("finish_reason"),
            logprobs=entry.get("logprobs") if isinstance(entry.get("logprobs"), list) else None,
            parsed=parsed,
            latency_s=latency,
            cache_similarity=similarity,
        )
        return CacheHit(completion, kind, similarity, saved)

    # store ---------------------------------------------------------------------------
    def save(self, completion: Completion) -> Generator[Effect, Any, None]:
        entry = self._entry(completion)
        if entry is None:
            return
        yield from self._opened()
        ttl = self.control.ttl or self.policy.ttl
        exact, key = self.exact, self.key
        yield Io(
            lambda: exact.save(key, entry, ttl),
            lambda: exact.asave(key, entry, ttl),
            blocking=self.blocking,
        )
        if self.semantic and self.sem is not None and self.vector is not None:
            sem, partition, vector = self.sem, self.partition, self.vector
            yield Io(
                lambda: sem.add(partition, vector, entry, ttl),
                lambda: sem.aadd(partition, vector, entry, ttl),
            )

    def store_now(self, completion: Completion) -> None:
        """``save``, performed here and now: a stream that ended normally is stored by
        the stream object, outside any driver."""
        plan = self.save(completion)
        value: Any = None
        while True:
            try:
                effect = plan.send(value)
            except StopIteration:
                return
            assert isinstance(effect, Io), "storing an answer performs I/O only"
            value = effect.run()

    async def astore(self, completion: Completion) -> None:
        """``store_now`` under asyncio: async twins or a worker thread, never the loop."""
        plan = self.save(completion)
        value: Any = None
        while True:
            try:
                effect = plan.send(value)
            except StopIteration:
                return
            assert isinstance(effect, Io), "storing an answer performs I/O only"
            if effect.arun is not None:
                value = await effect.arun()
            elif effect.blocking:
                value = await asyncio.to_thread(effect.run)
            else:
                value = effect.run()

    def _entry(self, completion: Completion) -> dict[str, Any] | None:
        """What to store for ``completion``, or None when it must not be replayed."""
        if not self.control.write or completion.cache_hit:
            return None
        if completion.tool_calls and not self.policy.allow_tool_calls:
            return None
        if completion.confident is False:
            return None  # an answer no tier was confident in is not worth replaying
        if completion.finish_reason == "length":
            params = self.request.params
            asked = params.get("max_tokens") or params.get("max_completion_tokens")
            if not isinstance(asked, int) or completion.usage.completion_tokens < asked:
                return None  # cut short by a budget's cap, not the caller's: not the answer
        return {
            "text": completion.text,
            "message": completion.message,
            "tier": completion.tier,
            "model": completion.model,
            "endpoint": completion.endpoint,
            "finish_reason": completion.finish_reason,
            "logprobs": completion.logprobs,
            "confidence": completion.confidence,
            "confident": completion.confident,
            # what replaying the call would cost again: every attempt it took
            "cost_usd": str(completion.total_cost.total_usd),
            "created": time.time(),
            # the semantic guard compares it with a later, similar question
            "question": self.text if self.semantic else None,
        }
