"""Process-wide configuration: the zoo, the cache directory and the retry policy.

``af.configure(zoo=...)`` or ``af.configure(path="agentflow.toml")``. Environment:
``AGENTFLOW_CONFIG`` (a TOML file loaded on first use when ``configure`` was not called),
``AGENTFLOW_CACHE_DIR``, ``AGENTFLOW_DISTILL_PATH``, ``AGENTFLOW_ENGINE_METRICS``. An
explicit argument wins over the environment, which wins over the default.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agentflow._errors import ConfigError, NotConfiguredError
from agentflow._policy import RetryPolicy
from agentflow._tenants import (
    TenantBudget,
    check_tenant_budget,
    resolve,
    tenant_ledgers,
)
from agentflow._validate import check_content_config, describe
from agentflow._zoo import ModelZoo, read_toml
from budgets import Budget, BudgetAlert, Ledger, LedgerBackend, MemoryBackend

if TYPE_CHECKING:
    from agentflow._policy import StepPolicy

__all__ = ["Config", "configure", "get_config", "get_zoo", "register_step"]


def _default_cache_dir() -> Path:
    env = os.environ.get("AGENTFLOW_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "agentflow"


def _default_engine_metrics() -> bool:
    value = os.environ.get("AGENTFLOW_ENGINE_METRICS", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(
        f"AGENTFLOW_ENGINE_METRICS={value!r} is not a switch; set it to 1 or 0 (or unset it)"
    )


def _default_distill_path() -> Path | None:
    env = os.environ.get("AGENTFLOW_DISTILL_PATH")
    return Path(env).expanduser() if env else None


@dataclass(frozen=True)
class Config:
    zoo: ModelZoo | None = None
    cache_dir: Path = field(default_factory=_default_cache_dir)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tenant_budget: TenantBudget | None = None
    on_budget_alert: Callable[[BudgetAlert], object] | None = None
    ledger_backend: LedgerBackend | None = None
    cache_backend: Any = None
    semantic_backend: Any = None
    embedder: Any = None
    router: Any = None
    # where escalations accepted above a step's first tier are appended (docs/economics.md)
    distill_path: Path | None = field(default_factory=_default_distill_path)
    # sample self-hosted engines' busy-time counters at run start and end
    # (agentflow.pipeline.engine_time, docs/economics.md)
    engine_metrics: bool = field(default_factory=_default_engine_metrics)

    def tenant_budgets(self, user_id: str | None) -> tuple[Budget, ...]:
        """The budgets that apply to ``user_id`` (none without a user id)."""
        return resolve(self.tenant_budget, user_id)

    def tenant_ledgers(self, user_id: str | None) -> list[Ledger]:
        """One ledger per tenant budget of ``user_id``, shared by all its runs (and, in a
        shared ``ledger_backend``, all its processes). The first is on key
        ``tenant:<user_id>``, the next ones on ``tenant:<user_id>:2``, ``:3``..."""
        budgets = self.tenant_budgets(user_id)
        if not budgets or user_id is None:
            return []
        global _shared_backend
        backend = self.ledger_backend
        if backend is None:
            with _lock:
                if _shared_backend is None:
                    _shared_backend = MemoryBackend()
                backend = _shared_backend
        return tenant_ledgers(budgets, user_id, backend)

    def tenant_ledger(self, user_id: str | None) -> Ledger | None:
        """The first of ``user_id``'s tenant ledgers (``tenant_ledgers`` gives them all)."""
        ledgers = self.tenant_ledgers(user_id)
        return ledgers[0] if ledgers else None


_lock = threading.Lock()
_shared_backend: LedgerBackend | None = None
_config: Config | None = None
# every decorated step, so configure() can check their tier names
_steps: weakref.WeakSet[StepPolicy] = weakref.WeakSet()


def register_step(policy: StepPolicy) -> None:
    """Remember a step; check its tiers now if a zoo is configured, else at configure."""
    _steps.add(policy)
    cfg = _config
    if cfg is not None and cfg.zoo is not None:
        policy.check(cfg.zoo)


def _path_like(where: str, value: Any, hint: str) -> Path:
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise ConfigError(
            f"{where} must be a path (str or pathlib.Path), got {describe(value)}; {hint}"
        )
    return Path(value).expanduser()


def _distill_file(value: Any) -> Path:
    path = _path_like("distill_path", value, "e.g. distill_path='~/.cache/agentflow/distill.jsonl'")
    if path.is_dir():
        raise ConfigError(
            f"distill_path {str(path)!r} is a directory; give a file to append JSON lines "
            "to, e.g. distill_path='distill.jsonl'"
        )
    return path


def _check_cache_backend(backend: Any) -> None:
    if isinstance(backend, str):
        if backend in ("disk", "memory") or backend.startswith(("redis://", "rediss://")):
            return
    elif callable(getattr(backend, "get", None)) and callable(getattr(backend, "set", None)):
        return
    raise ConfigError(
        f"cache_backend={backend!r} is not a cache backend; use 'disk', 'memory', "
        "a redis:// URL or an agentflow.cache store"
    )


def _load_toml(path: str | Path) -> tuple[ModelZoo, dict[str, Any]]:
    p = _path_like("configure path", path, "point it at an agentflow.toml file")
    if p.is_dir():
        raise ConfigError(
            f"config file {str(p)!r} is a directory; point path= at an agentflow.toml file"
        )
    if not p.exists():
        raise ConfigError(
            f"config file {str(p)!r} does not exist; fix path= (relative paths start at "
            f"{os.getcwd()!r}) or pass zoo=af.ModelZoo(...)"
        )
    try:
        section = read_toml(p)
    except ConfigError as err:
        raise ConfigError(f"{err}; fix the file and call af.configure again") from None
    return ModelZoo.from_dict(section), section


def configure(
    *,
    zoo: ModelZoo | None = None,
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    retry: RetryPolicy | None = None,
    tenant_budget: TenantBudget | None = None,
    on_budget_alert: Callable[[BudgetAlert], object] | None = None,
    ledger_backend: LedgerBackend | None = None,
    cache_backend: Any = None,
    semantic_backend: Any = None,
    embedder: Any = None,
    router: Any = None,
    distill_path: str | Path | Literal[False] | None = None,
    engine_metrics: bool | None = None,
) -> Config:
    """Set the model zoo (and optionally the cache directory and retry policy).

    ``tenant_budget`` (e.g. ``Budget(max_usd=5, window=timedelta(days=1))``) applies to
    every run with that ``user_id``, across runs, in ``ledger_backend`` (in memory by
    default; a ``budgets.RedisBackend`` shares it across machines). It may also be a list
    of budgets, all enforced (e.g. a daily dollar budget plus ``Budget(max_calls=60,
    window=timedelta(minutes=1))`` as a requests-per-minute limit), a mapping
    ``{user_id: budget(s)}`` (``"*"``: every other user id) or a function
    ``user_id -> budget(s) | None``, called when a run with that user id starts.
    ``on_budget_alert(alert)`` is called once per ``Budget(alerts=...)`` threshold reached
    (``budgets.BudgetAlert``), beside a span event and a metric.

    ``cache_backend``: where the exact response cache lives: ``"disk"`` (the default,
    diskcache under ``cache_dir``), ``"memory"``, a ``redis://`` URL (shared across
    machines) or an ``agentflow.cache`` store. ``semantic_backend``: where the semantic
    cache lives, when not beside the exact one: a shared vector store such as
    ``agentflow.cache.PgVectorStore(dsn)`` (PostgreSQL + pgvector, shared across
    machines, with this process's cache as a near tier). ``embedder``: the semantic cache's default
    embedder (a zoo tier name or a function ``list[str] -> list[vector]``). ``router``:
    what picks the tier of steps with ``tier="auto"`` (an ``agentflow.routing`` router).
    ``distill_path``: a JSONL file that gets one line per request an escalating step
    accepted above its first tier (prompt, rejected and accepted answers, scores, costs:
    data to distil the cheap tier); ``False`` stops recording.
    ``engine_metrics=True``: at each run's start and end, read the busy-time counters of
    every GPU-hour replica with an ``api_base`` (one ``GET /metrics``, off the call
    path) into ``agentflow.engine.sample`` spans, for ``agentflow report``'s engine
    busy time (``AGENTFLOW_ENGINE_METRICS=1`` does the same).

    Every step decorated so far is checked against the zoo: a step naming a tier the zoo
    does not have fails here, with the valid names in the message.
    """
    global _config
    if zoo is not None and path is not None:
        raise ConfigError("give configure() either zoo= or path=, not both")
    check_content_config(
        store=False
    )  # a bad AGENTFLOW_CAPTURE_CONTENT fails here, not after a call
    base = _config or Config()
    updates: dict[str, Any] = {}
    if path is not None:
        zoo, section = _load_toml(path)
        if cache_dir is None and "cache_dir" in section:
            cache_dir = section["cache_dir"]
        if distill_path is None and "distill_path" in section:
            distill_path = section["distill_path"]
    if zoo is not None:
        if not isinstance(zoo, ModelZoo):
            raise ConfigError(
                f"zoo must be an af.ModelZoo, got {describe(zoo)}; build one with "
                "af.ModelZoo(tiers=[af.Tier(...)]) or pass path= to a TOML file"
            )
        updates["zoo"] = zoo
    if cache_dir is not None:
        updates["cache_dir"] = _path_like(
            "cache_dir", cache_dir, "e.g. cache_dir='~/.cache/agentflow'"
        )
    if distill_path is False:
        updates["distill_path"] = None
    elif distill_path is not None:
        updates["distill_path"] = _distill_file(distill_path)
    if engine_metrics is not None:
        if not isinstance(engine_metrics, bool):
            raise ConfigError(
                f"engine_metrics must be True or False, got {describe(engine_metrics)}; "
                "e.g. af.configure(engine_metrics=True)"
            )
        updates["engine_metrics"] = engine_metrics
    if retry is not None:
        if not isinstance(retry, RetryPolicy):
            raise ConfigError(
                f"retry must be an af.RetryPolicy, got {describe(retry)}; "
                "e.g. retry=af.RetryPolicy(max_attempts=3)"
            )
        updates["retry"] = retry
    if tenant_budget is not None:
        updates["tenant_budget"] = check_tenant_budget(tenant_budget)
    if on_budget_alert is not None:
        if not callable(on_budget_alert):
            raise ConfigError(
                f"on_budget_alert must be a function alert -> None, got "
                f"{describe(on_budget_alert)}; e.g. on_budget_alert=lambda alert: print(alert)"
            )
        updates["on_budget_alert"] = on_budget_alert
    if ledger_backend is not None:
        if not isinstance(ledger_backend, LedgerBackend):
            raise ConfigError(
                f"ledger_backend must be a budgets.LedgerBackend, got "
                f"{describe(ledger_backend)}; e.g. budgets.MemoryBackend() or "
                "budgets.RedisBackend(url)"
            )
        updates["ledger_backend"] = ledger_backend
    if cache_backend is not None:
        _check_cache_backend(cache_backend)
        updates["cache_backend"] = cache_backend
    if semantic_backend is not None:
        from agentflow.cache._semantic_shared import is_shared

        if not is_shared(semantic_backend):
            raise ConfigError(
                "semantic_backend must be a shared vector store with search() and insert(), "
                f"got {describe(semantic_backend)}; e.g. "
                "agentflow.cache.PgVectorStore('postgresql://...')"
            )
        updates["semantic_backend"] = semantic_backend
    if embedder is not None:
        if not (callable(embedder) or (isinstance(embedder, str) and embedder)):
            raise ConfigError(
                "embedder must be a zoo tier name or a function texts -> vectors, got "
                f"{describe(embedder)}; pass one of those or leave it out"
            )
        updates["embedder"] = embedder
    if router is not None:
        if not callable(getattr(router, "choose", None)):
            raise ConfigError(
                "router must have choose(messages, *, kind, tiers) -> tier name, got "
                f"{describe(router)}; see agentflow.routing.RuleRouter"
            )
        updates["router"] = router
    new = replace(base, **updates)
    if new.zoo is not None:
        for policy in list(_steps):
            policy.check(new.zoo)
        if isinstance(new.embedder, str):
            new.zoo.check_tier(new.embedder)
    with _lock:
        _config = new
    if new.zoo is not None and not all(e.fast_path for e in new.zoo.endpoints()):
        from agentflow._litellm import warm_up

        warm_up()  # litellm's ~3 s import, off the first call's path
    return new


def get_config() -> Config:
    cfg = _config
    if cfg is None:
        env = os.environ.get("AGENTFLOW_CONFIG")
        if env:
            return configure(path=env)
        return Config()
    return cfg


def get_zoo() -> ModelZoo:
    zoo = get_config().zoo
    if zoo is None:
        raise NotConfiguredError()
    return zoo


def reset() -> None:
    """Forget the configuration and the in-memory tenant ledgers (tests)."""
    global _config, _shared_backend
    with _lock:
        _config = None
        _shared_backend = None
