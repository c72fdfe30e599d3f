"""Stage 3, cache: serve a repeated request from the exact or semantic response cache.

A hit reaches no endpoint and costs nothing: it is an LLM span with cost 0 and the cost
it saved (``agentflow.cost.saved_usd``), an ``Attempt`` with ``cache_hit=True``, and a
``Completion`` rebuilt from JSON. Answers are stored only when they are safe to replay:
no errors (they never get here), no tool calls unless the step allows them, no sampled
calls (temperature > 0) unless the step opts in, no answer the scorer found unconfident.

The stores live in ``agentflow.cache``; this module decides what to look up and store.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

import tracing
from agentflow._completion import Attempt, Completion
from agentflow._config import Config, get_config
from agentflow._context import current_run
from agentflow._errors import ConfigError
from agentflow._policy import CacheControl, CachePolicy
from agentflow._response import parse_format
from budgets import Cost, Usage
from tracing import attributes as A

if TYPE_CHECKING:
    from agentflow._pipeline import Context, Instruction
    from agentflow._run import Run
    from agentflow.cache import ExactCache, SemanticCache

__all__ = ["CacheStage", "Embed", "cache_text", "scope_of"]

log = logging.getLogger("agentflow.cache")
_tracer = trace.get_tracer("agentflow")

# the fields a stored answer must have, with their JSON types
_ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "text": str,
    "message": dict,
    "tier": str,
    "model": str,
    "endpoint": str,
    "cost_usd": str,
}


class Embed:
    """An instruction: embed ``texts`` with a function (sync or async) the driver runs."""

    __slots__ = ("embedder", "texts")

    def __init__(self, embedder: Callable[[list[str]], Any], texts: list[str]) -> None:
        self.embedder = embedder
        self.texts = texts


def scope_of(policy: CachePolicy, run: Run | None) -> str:
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
    if scope == "session":
        return f"session:{run.session_id if run and run.session_id else '-'}"
    return f"user:{run.user_id if run and run.user_id else '-'}"


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
        if semantic:
            directory = None if backend == "memory" else cfg.cache_dir / "semantic"
            sem = SemanticCache(directory, max_entries=SEMANTIC_MAX_ENTRIES)
        _stores.clear()  # a new configuration replaces the old one's stores
        _stores[id(cfg)] = (cfg, exact, sem)
        return exact, sem


def _embedder_name(embedder: Any) -> str:
    if embedder is None or isinstance(embedder, str):
        return embedder or ""
    return f"{getattr(embedder, '__module__', '')}.{getattr(embedder, '__qualname__', '')}"


def reset_stores() -> None:
    """Forget the open stores (tests, after changing the cache directory)."""
    with _lock:
        _stores.clear()


# --- the stage ------------------------------------------------------------------------
class CacheStage:
    """The cache stage of one call: look up before the call, store after it."""

    def __init__(self, ctx: Context, control: CacheControl, policy: CachePolicy) -> None:
        from agentflow.cache import partition_key, request_key

        self.ctx = ctx
        self.control = control
        self.policy = policy
        self.scope = scope_of(policy, ctx.frame.run if ctx.frame else current_run.get())
        tier = ctx.zoo.tier(ctx.tier)
        models = sorted({e.model for e in tier.endpoints})
        key_args: dict[str, Any] = {
            # the tier's models, not only its name: a tier pointed at another model
            # never serves the old model's answers
            "tier": f"{ctx.tier}:{'|'.join(models)}",
            "messages": ctx.messages,
            "params": ctx.params,
            "step": ctx.step_name,
            "scope": self.scope,
        }
        self.key = request_key(**key_args)  # CacheKeyError names a part it cannot serialise
        self.semantic = policy.kind == "semantic"
        self.embedder = policy.embedder or get_config().embedder if self.semantic else None
        self.partition = (
            partition_key(**key_args, embedder=_embedder_name(self.embedder))
            if self.semantic
            else ""
        )
        self.text = cache_text(policy, ctx.messages) if self.semantic else None
        self.vector: list[float] | None = None
        self.exact, self.sem = _open_stores(get_config(), self.semantic)

    @classmethod
    def open(cls, ctx: Context) -> CacheStage | None:
        """The stage for this call, or None when the call is not cacheable."""
        control = ctx.cache
        policy = control.policy if control is not None else None
        if control is None or policy is None or ctx.operation != "chat":
            return None
        if not control.read and not control.write:
            return None
        temperature = ctx.params.get("temperature")
        if not policy.allow_sampled and isinstance(temperature, int | float) and temperature > 0:
            return None  # a sampled answer is one draw, not the answer: never replayed
        if (ctx.params.get("n") or 1) > 1:
            return None
        return cls(ctx, control, policy)

    # lookup --------------------------------------------------------------------------
    def lookup(self) -> Generator[Instruction, Any, Completion | None]:
        if not self.control.read:
            if self.semantic and self.control.write:
                yield from self._embed()
            return None
        t0 = time.perf_counter()
        entry = self.exact.lookup(self.key)
        if entry is not None:
            hit = self._hit(entry, "exact", None, time.perf_counter() - t0)
            if hit is not None:
                return hit
        if not self.semantic or self.sem is None:
            return None
        vector = yield from self._embed()
        if vector is None:
            return None
        t0 = time.perf_counter()
        found = self.sem.lookup(self.partition, vector, self.policy.threshold)
        if found is None:
            return None
        value, similarity = found
        return self._hit(value, "semantic", similarity, time.perf_counter() - t0)

    def _embed(self) -> Generator[Instruction, Any, list[float] | None]:
        if self.text is None or not self.text.strip():
            return None
        embedder = self.embedder
        if embedder is None:
            raise ConfigError(
                f"step {self.ctx.step_name!r} uses the semantic cache but has no embedder: "
                "give CachePolicy(kind='semantic', embedder=...) a zoo tier with an "
                "embeddings endpoint or a function texts -> vectors, or set "
                "af.configure(embedder=...)"
            )
        if isinstance(embedder, str):
            from agentflow._errors import CallError
            from agentflow._pipeline import embedding_context, run_embedding

            ectx = embedding_context([self.text], embedder, {})
            try:
                vectors: Any = (yield from run_embedding(ectx)).vectors
            except CallError as err:
                vectors = err
        else:
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
        except (TypeError, ValueError, IndexError) as err:
            raise ConfigError(
                f"the embedder returned {type(vectors).__name__}, not one vector per text: {err}"
            ) from None
        self.vector = vector
        return vector

    def _hit(
        self, entry: Mapping[str, Any], kind: str, similarity: float | None, latency: float
    ) -> Completion | None:
        ctx = self.ctx
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
        if "response_format" in ctx.params:
            try:
                parsed = parse_format(ctx.params["response_format"], text)
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
        attempt = Attempt(
            number=len(ctx.attempts) + 1,
            tier=completion.tier,
            endpoint=f"cache:{kind}",
            model=completion.model,
            usage=Usage(),
            cost=Cost(),
            latency_s=latency,
            ok=True,
            step=ctx.step_name,
            confidence=completion.confidence,
            cache_hit=True,
            saved_usd=saved,
        )
        attrs = tracing.cache_hit_attributes(
            kind=kind,
            saved_usd=saved,
            model=completion.model,
            similarity=similarity,
            endpoint=attempt.endpoint,  # "cache:exact": no replica served it
        )
        attrs[A.AGENTFLOW_TIER] = completion.tier
        attrs[A.AGENTFLOW_ATTEMPT] = attempt.number
        attrs.update(
            tracing.content_attributes(
                ctx.messages, text, completion.message, tracing.content_config()
            )
        )
        span = _tracer.start_span(f"chat {completion.model}", attributes=attrs)
        span.end()
        from agentflow._accounting import record_attempt

        ctx.attempts.append(attempt)
        record_attempt(attempt, ctx.frame)
        tracing.record_cache_hit(kind, saved)
        completion.attempts = list(ctx.attempts)
        return completion

    # store ---------------------------------------------------------------------------
    def save(self, completion: Completion) -> None:
        if not self.control.write or completion.cache_hit:
            return
        if completion.tool_calls and not self.policy.allow_tool_calls:
            return
        if completion.confident is False:
            return  # an answer no tier was confident in is not worth replaying
        if completion.finish_reason == "length":
            asked = self.ctx.params.get("max_tokens") or self.ctx.params.get(
                "max_completion_tokens"
            )
            if not isinstance(asked, int) or completion.usage.completion_tokens < asked:
                return  # cut short by a budget's cap, not the caller's: not the answer
        entry = {
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
        }
        ttl = self.control.ttl or self.policy.ttl
        self.exact.save(self.key, entry, ttl)
        if self.semantic and self.sem is not None and self.vector is not None:
            self.sem.add(self.partition, self.vector, entry, ttl)
