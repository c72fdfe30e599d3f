"""Engine-reported load: what llama-server, vLLM and SGLang say about their own queues.

The router's in-flight counts (``route.inflight``) see only this process. The engines
know their whole load, from every process and machine, and publish it as Prometheus
text at ``GET /metrics``:

- llama-server: ``llamacpp:requests_processing`` running, ``llamacpp:requests_deferred``
  waiting, ``llamacpp:kv_cache_usage_ratio`` KV-cache usage (older builds only);
- vLLM: ``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
  ``vllm:kv_cache_usage_perc`` (``vllm:gpu_cache_usage_perc`` before V1);
- SGLang: ``sglang:num_running_reqs``, ``sglang:num_queue_reqs``, ``sglang:token_usage``.

llama-server needs ``--metrics`` (``agentflow serve-local`` passes it); its ``GET /slots``
gives the number of slots, i.e. how many requests it runs at once. vLLM serves
``/metrics`` by default, SGLang with ``--enable-metrics``.

``EngineLoadMonitor`` reads them off the call path: a daemon thread polls every watched
replica each ``interval`` seconds, and the router reads the last reading (a dict
lookup, never I/O, so nothing blocks the event loop). A reading older than ``ttl`` is
ignored, as is a replica without metrics: the router then falls back on its in-flight
counts alone.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentflow._errors import ConfigError
from agentflow.pipeline.poller import Poller

if TYPE_CHECKING:
    from agentflow._zoo import Endpoint, ModelZoo

__all__ = [
    "KV_CACHE_FULL",
    "EngineLoad",
    "EngineLoadMonitor",
    "engine_load",
    "parse_prometheus",
    "read_engine_load",
    "root_url",
]

KV_CACHE_FULL = 0.95
"""KV-cache usage from which an engine counts as saturated: new requests would wait
for blocks (vLLM, SGLang) or evict the cached prefixes other requests need."""

# engine → (running, waiting, KV-cache usage names, in order of preference)
_NAMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "llama.cpp": (
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
        ("llamacpp:kv_cache_usage_ratio",),
    ),
    "vllm": (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    ),
    "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs", ("sglang:token_usage",)),
}
_PREFIXES = {"llamacpp:": "llama.cpp", "vllm:": "vllm", "sglang:": "sglang"}
_NO_METRICS_RETRY_S = 30.0  # a replica without /metrics is asked again this rarely


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One reading of a replica's own load."""

    engine: str  # "llama.cpp", "vllm" or "sglang"
    running: float  # requests being computed now
    waiting: float  # requests queued behind them
    kv_cache_usage: float | None = None  # 0–1, when the engine reports it
    slots: int | None = None  # requests it runs at once (llama-server's slots), if known

    @property
    def load(self) -> float:
        """Requests on the replica, running or waiting."""
        return self.running + self.waiting

    @property
    def saturated(self) -> bool:
        """Whether a new request would wait a whole batch: the KV cache is (nearly) full,
        or the queue is as deep as the engine's slots (llama-server), or a queue has formed
        at all (vLLM and SGLang, which queue only once their batch or KV cache is full).

        A request waiting behind one short batch costs less than recomputing its prefix
        on another replica; behind a full one it does not."""
        if self.kv_cache_usage is not None and self.kv_cache_usage >= KV_CACHE_FULL:
            return True
        return self.waiting >= (self.slots or 1)


def parse_prometheus(text: str) -> dict[str, list[float]]:
    """``{metric name: [value of each labelled sample]}`` from Prometheus text format.

    Comments, ``# HELP`` / ``# TYPE`` lines and unparsable lines are skipped; a sample's
    optional timestamp is ignored.
    """
    samples: dict[str, list[float]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        if brace != -1:
            name = line[:brace]
            close = line.rfind("}")
            if close < brace:
                continue
            rest = line[close + 1 :].split()
        else:
            name, _, tail = line.partition(" ")
            rest = tail.split()
        if not rest:
            continue
        try:
            value = float(rest[0])
        except ValueError:
            continue
        samples.setdefault(name.strip(), []).append(value)
    return samples


def _engine_of(samples: Mapping[str, list[float]]) -> str | None:
    for name in samples:
        for prefix, engine in _PREFIXES.items():
            if name.startswith(prefix):
                return engine
    return None


def read_engine_load(metrics: str, slots: Any = None) -> EngineLoad | None:
    """The load in an engine's ``/metrics`` text (None if it is not llama-server, vLLM
    or SGLang). ``slots``: llama-server's ``GET /slots`` body (a list of slots), for the
    slot count. Counts are summed over label sets (vLLM's data-parallel engines); the
    KV-cache usage is the fullest one's."""
    samples = parse_prometheus(metrics)
    engine = _engine_of(samples)
    if engine is None:
        return None
    running_name, waiting_name, kv_names = _NAMES[engine]
    kv: float | None = None
    for name in kv_names:
        if samples.get(name):
            kv = max(samples[name])
            break
    n_slots: int | None = None
    if isinstance(slots, list) and slots:
        n_slots = len(slots)
    elif engine == "sglang" and samples.get("sglang:max_running_requests"):
        n_slots = int(max(samples["sglang:max_running_requests"]))
    return EngineLoad(
        engine=engine,
        running=sum(samples.get(running_name, [0.0])),
        waiting=sum(samples.get(waiting_name, [0.0])),
        kv_cache_usage=kv,
        slots=n_slots,
    )


def root_url(endpoint: Endpoint) -> str | None:
    """The engine's root URL (``api_base`` without ``/v1``), where ``/health`` and
    ``/metrics`` live; None for an endpoint without ``api_base`` (a hosted API)."""
    base = endpoint.api_base
    return base.removesuffix("/").removesuffix("/v1") if base else None


def _window_of(body: Any) -> int | None:
    """The context window in a ``/props`` or ``/v1/models`` body."""
    if not isinstance(body, dict):
        return None
    settings = body.get("default_generation_settings")
    if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
        return int(settings["n_ctx"])  # per slot: what one request can use
    models = body.get("data")
    if isinstance(models, list) and models and isinstance(models[0], dict):
        value = models[0].get("max_model_len")
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(slots=True)
class _Target:
    url: str
    reading: EngineLoad | None = None
    read_at: float = 0.0
    next_poll: float = 0.0
    slots: Any = None  # llama-server's /slots, asked once
    window: int | None = None  # the context window the engine declares (per request)
    window_asked: bool = False


class EngineLoadMonitor(Poller):
    """Reads the engines' ``/metrics`` in a daemon thread; ``engine_load`` is the one
    the router reads.

    ``interval``: seconds between two polls of a replica; ``ttl``: how old a reading may
    be and still count (default 4 × interval); ``timeout``: per HTTP request. Nothing is
    polled until ``start()``; the router then watches every replica of a tier it routes
    across (``watch``), or ``start(zoo)`` watches the zoo's replicas at once.
    """

    def __init__(
        self, *, interval: float = 0.5, ttl: float | None = None, timeout: float = 0.5
    ) -> None:
        super().__init__(interval)
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        self.ttl = self.timeout = 0.0
        self.configure(interval=interval, ttl=ttl, timeout=timeout)

    def configure(
        self,
        *,
        interval: float | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """Change the poll interval, the reading's time to live and the HTTP timeout."""
        interval = self.interval if interval is None else interval
        ttl = 4 * interval if ttl is None else ttl
        timeout = self.timeout if timeout is None else timeout
        for name, value in (("interval", interval), ("ttl", ttl), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"engine load {name} must be a positive number of seconds, got {value!r}; "
                    "pass e.g. interval=0.5, timeout=0.5"
                )
        self.interval, self.ttl, self.timeout = float(interval), float(ttl), float(timeout)

    # -- the router's side: no I/O ---------------------------------------------------------
    def watch(self, endpoints: Iterable[Endpoint]) -> None:
        """Poll these replicas too (those with an ``api_base``); cheap when already watched."""
        for endpoint in endpoints:
            if endpoint.id in self._targets:
                continue
            url = root_url(endpoint)
            if url is None:
                continue
            with self._lock:
                self._targets.setdefault(endpoint.id, _Target(url))
            self._wake.set()  # read it now rather than at the next interval

    def context_window(self, endpoint_id: str) -> int | None:
        """The context window (tokens per request) the replica's engine declares:
        llama-server's ``/props`` (a slot's ``n_ctx``), vLLM's ``/v1/models``
        (``max_model_len``); None until read, or when the engine does not say."""
        target = self._targets.get(endpoint_id)
        return None if target is None else target.window

    def get(self, endpoint_id: str) -> EngineLoad | None:
        """The replica's last reading, if younger than ``ttl``."""
        target = self._targets.get(endpoint_id)
        if target is None or target.reading is None:
            return None
        if time.monotonic() - target.read_at > self.ttl:
            return None
        return target.reading

    # -- the poller's side -----------------------------------------------------------------
    def poll(self) -> None:
        """Read every watched replica that is due, now (blocking: the poller's thread,
        or a test)."""
        now = time.monotonic()
        with self._lock:
            due = [t for t in self._targets.values() if t.next_poll <= now]
        for target in due:
            reading, answered = self._read(target)
            # a replica that answers without engine metrics is asked again rarely; one
            # that does not answer (down, restarting) at the usual pace
            rarely = reading is None and answered
            wait = max(self.interval, _NO_METRICS_RETRY_S) if rarely else self.interval
            target.next_poll = time.monotonic() + wait
            target.reading, target.read_at = reading, time.monotonic()

    def _get(self, url: str) -> tuple[bytes | None, bool]:
        """The body of a 200, and whether the server answered at all."""
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body, True
        except urllib.error.HTTPError as err:
            err.close()
            return None, True
        except (OSError, ValueError):
            return None, False

    def _read_window(self, target: _Target) -> None:
        """Ask once for the context window: llama-server's ``/props``, else the OpenAI
        ``/v1/models`` (vLLM adds ``max_model_len``)."""
        for path in ("/props", "/v1/models"):
            raw, answered = self._get(f"{target.url}{path}")
            if not answered:
                return  # down: ask again at the next poll
            target.window_asked = True
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                continue
            window = _window_of(body)
            if window is not None:
                target.window = window
                return

    def _read(self, target: _Target) -> tuple[EngineLoad | None, bool]:
        if not target.window_asked:
            self._read_window(target)
        body, answered = self._get(f"{target.url}/metrics")
        if body is None:
            return None, answered
        text = body.decode("utf-8", "replace")
        if target.slots is None and "llamacpp:" in text:
            raw, _ = self._get(f"{target.url}/slots")  # 501 with --no-slots: count unknown
            try:
                target.slots = json.loads(raw) if raw else []
            except ValueError:
                target.slots = []
        return read_engine_load(text, target.slots), True

    def start(
        self, zoo: ModelZoo | None = None, *, interval: float | None = None
    ) -> EngineLoadMonitor:
        """Start polling (idempotent); with ``zoo``, watch its replicas right away."""
        if interval is not None:
            self.configure(interval=interval)
        if zoo is not None:
            self.watch(e for t in zoo.tiers if len(t.endpoints) > 1 for e in t.endpoints)
        return super().start()

    thread_name = "agentflow-engine-load"

    def join_timeout(self) -> float:
        return 5 * self.timeout + 1

    def tick(self) -> None:
        self.poll()

    def reset(self) -> None:
        """Stop and forget every replica and reading (testing)."""
        self.stop()
        with self._lock:
            self._targets.clear()


engine_load = EngineLoadMonitor()
"""The process-wide engine load the router reads (off until ``engine_load.start()``)."""
