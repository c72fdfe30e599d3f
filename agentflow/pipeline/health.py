"""Replica health: a replica that fails is rested, not hammered.

Passive, on every call: a failure that says the replica itself is in trouble (the
connection refused or reset, a timeout, an HTTP 5xx, an endpoint that does not serve the
model) puts it in a **cooldown**: calls go to the other replicas (and fallback tiers)
without trying it, and the call that saw the failure fails over at once instead of
retrying there. When the cooldown is over, exactly one call of the process is let
through as a **half-open probe**; its success makes the replica **recover**, its failure
starts a cooldown twice as long (``cooldown`` doubling up to ``max_cooldown``). A dead
replica therefore costs at most one failed attempt per cooldown window, whatever the
number of calls. A replica in cooldown is still tried as a last resort, after every
other candidate: a call never fails without trying every replica it has.

Active, optional: ``HealthProbes`` polls each replica's ``GET /health`` in a daemon
thread, so a dead replica is found before a call pays for it and a recovered one comes
back before its cooldown ends.

Cooldowns, probes and recoveries are span events (``agentflow.replica.cooldown``,
``.probe``, ``.recovered``) on the attempt's span (a short ``replica health`` span for
the background prober) and counts on the ``agentflow.replica.health`` counter.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import tracing
from agentflow._errors import ConfigError
from agentflow.pipeline.call import classify
from agentflow.pipeline.effects import status_code
from agentflow.pipeline.load import root_url
from agentflow.pipeline.poller import Poller
from tracing import attributes as A
from tracing._metrics import record_replica_event

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from agentflow._zoo import Endpoint, ModelZoo

__all__ = [
    "HealthProbes",
    "ReplicaHealth",
    "ReplicaState",
    "counts_against",
    "replica_health",
]

Status = Literal["healthy", "cooling", "half-open", "probing"]

_NOT_HEALTH = frozenset({408, 409, 425, 429})  # the request or the load, not the replica


def counts_against(err: BaseException) -> bool:
    """Whether ``err`` says the replica is unwell (rather than the request being wrong
    or the replica being busy): a refused or dropped connection, a timeout, a 5xx, or
    a 401/403/404 (this replica cannot serve the call at all)."""
    if classify(err) not in ("retry", "failover"):
        return False  # fatal and context errors: the replica answered, and is alive
    code = status_code(err)
    return code is None or code not in _NOT_HEALTH


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One replica's health as the router sees it now."""

    status: Status
    failures: int  # consecutive failures (0 when healthy)
    cooldown_left_s: float  # 0 unless cooling


@dataclass(slots=True)
class _Entry:
    failures: int
    until: float  # time.monotonic() the cooldown ends at
    cooldown_s: float
    down_since: float
    probe_until: float = 0.0  # a half-open probe is in flight until then (a lease)
    probing: bool = False  # the next result reported is the probe's


class ReplicaHealth:
    """Cooldowns of the replicas of this process, thread-safe; ``replica_health`` is
    the one the router and the plan use.

    ``cooldown``: seconds a replica rests after its first failure; each failure after a
    cooldown doubles it, up to ``max_cooldown``. ``probe_lease``: how long a half-open
    probe may stay unanswered (a cancelled call) before another call may probe.
    ``enabled = False`` turns cooldowns off: every replica is tried, and retried, on
    every call (what agentflow did before; benchmarks compare the two).
    """

    enabled: bool = True

    def __init__(
        self, *, cooldown: float = 1.0, max_cooldown: float = 60.0, probe_lease: float = 30.0
    ) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        # told of every new cooldown (endpoint, wall-clock end, failures) and recovery
        # (endpoint, 0.0, 0): how ``health_sync`` shares them with other processes
        self.listeners: list[Callable[[str, float, int], None]] = []
        self.cooldown, self.max_cooldown, self.probe_lease = cooldown, max_cooldown, probe_lease
        self._defaults = (cooldown, max_cooldown, probe_lease)
        self.configure(cooldown=cooldown, max_cooldown=max_cooldown, probe_lease=probe_lease)

    def configure(
        self,
        *,
        cooldown: float | None = None,
        max_cooldown: float | None = None,
        probe_lease: float | None = None,
    ) -> None:
        """Change the cooldown schedule (seconds); what is left out stays as it is."""
        new_cooldown = self.cooldown if cooldown is None else cooldown
        new_max = self.max_cooldown if max_cooldown is None else max_cooldown
        new_lease = self.probe_lease if probe_lease is None else probe_lease
        for name, value in (
            ("cooldown", new_cooldown),
            ("max_cooldown", new_max),
            ("probe_lease", new_lease),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"replica health {name} must be a positive number of seconds, got "
                    f"{value!r}; pass e.g. cooldown=1.0, max_cooldown=60.0, probe_lease=30.0"
                )
        if new_max < new_cooldown:
            raise ConfigError(
                f"replica health needs cooldown <= max_cooldown, got {new_cooldown} > "
                f"{new_max}; raise max_cooldown or lower cooldown"
            )
        self.cooldown, self.max_cooldown, self.probe_lease = new_cooldown, new_max, new_lease

    # -- what the router and the plan ask ------------------------------------------------
    def available(self, endpoint_id: str) -> bool:
        """Whether a call may go to the replica now: healthy, or its cooldown over and
        no probe in flight. Reads only; ``admit`` claims the probe."""
        entry = self._entries.get(endpoint_id)
        if entry is None or not self.enabled:
            return True
        now = time.monotonic()
        return now >= entry.until and now >= entry.probe_until

    def admit(self, endpoint_id: str) -> bool:
        """Whether this attempt may go to the replica. A replica whose cooldown is over
        is admitted once, as the half-open probe (its result carries a ``probe`` event);
        while that probe is in flight, or during a cooldown, the answer is no."""
        if endpoint_id not in self._entries or not self.enabled:  # the hot path
            return True
        with self._lock:
            entry = self._entries.get(endpoint_id)
            if entry is None:
                return True
            now = time.monotonic()
            if now < entry.until or now < entry.probe_until:
                return False
            entry.probe_until = now + self.probe_lease
            entry.probing = True
        record_replica_event("probe", endpoint_id, attributes={A.AGENTFLOW_REPLICA_SOURCE: "call"})
        return True

    def state(self, endpoint_id: str) -> ReplicaState:
        entry = self._entries.get(endpoint_id)
        if entry is None:
            return ReplicaState("healthy", 0, 0.0)
        now = time.monotonic()
        if now < entry.until:
            return ReplicaState("cooling", entry.failures, entry.until - now)
        status: Status = "probing" if now < entry.probe_until else "half-open"
        return ReplicaState(status, entry.failures, 0.0)

    # -- what the plan reports -----------------------------------------------------------
    def failed(
        self,
        endpoint_id: str,
        err: BaseException,
        span: Span | None = None,
        *,
        source: str = "call",
    ) -> bool:
        """An attempt at the replica failed with ``err``. True when the replica is (now)
        cooling: the caller should fail over rather than retry it. An error that does not
        count against the replica (``counts_against``) proves it alive (``succeeded``)."""
        if not self.enabled:
            return False
        if not counts_against(err):
            self.succeeded(endpoint_id, span, source=source)
            return False
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(endpoint_id)
            if entry is not None and now < entry.until:
                return True  # already cooling (a call sent before the cooldown began)
            if entry is None:
                entry = self._entries[endpoint_id] = _Entry(0, 0.0, 0.0, now)
            probe, entry.probing = entry.probing, False
            entry.failures += 1
            entry.cooldown_s = min(self.cooldown * 2 ** (entry.failures - 1), self.max_cooldown)
            entry.until = now + entry.cooldown_s
            entry.probe_until = 0.0
            failures, cooldown_s = entry.failures, entry.cooldown_s
        if probe:
            self._probe_event(endpoint_id, span, ok=False)
        self._tell(endpoint_id, time.time() + cooldown_s, failures)
        self._event(
            "cooldown",
            endpoint_id,
            span,
            {
                A.AGENTFLOW_REPLICA_FAILURES: failures,
                A.AGENTFLOW_REPLICA_COOLDOWN_S: cooldown_s,
                A.ERROR_TYPE: type(err).__name__,
                A.AGENTFLOW_REPLICA_SOURCE: source,
            },
        )
        return True

    def succeeded(
        self, endpoint_id: str, span: Span | None = None, *, source: str = "call"
    ) -> None:
        """The replica answered: it is healthy (a ``recovered`` event if it was not)."""
        if endpoint_id not in self._entries:  # the hot path
            return
        with self._lock:
            entry = self._entries.pop(endpoint_id, None)
        if entry is not None:
            if source != "shared":
                self._tell(endpoint_id, 0.0, 0)
            if entry.probing:
                self._probe_event(endpoint_id, span, ok=True)
            down_s = round(time.monotonic() - entry.down_since, 3)
            self._event(
                "recovered",
                endpoint_id,
                span,
                {
                    A.AGENTFLOW_REPLICA_FAILURES: entry.failures,
                    A.AGENTFLOW_REPLICA_DOWN_S: down_s,
                    A.AGENTFLOW_REPLICA_SOURCE: source,
                },
            )

    def adopt(self, endpoint_id: str, until: float, failures: int) -> None:
        """Take a cooldown another process reported: ``until`` is its wall-clock end
        (``time.time()``). A later end than the local one wins; a ``cooldown`` event
        with source ``shared`` is counted."""
        left = until - time.time()
        if left <= 0 or not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(endpoint_id)
            if entry is not None and entry.until >= now + left:
                return
            if entry is None:
                entry = self._entries[endpoint_id] = _Entry(0, 0.0, 0.0, now)
            entry.failures = max(entry.failures, failures)
            entry.until, entry.cooldown_s, entry.probe_until = now + left, left, 0.0
        self._event(
            "cooldown",
            endpoint_id,
            None,
            {A.AGENTFLOW_REPLICA_FAILURES: failures, A.AGENTFLOW_REPLICA_SOURCE: "shared"},
        )

    def _tell(self, endpoint_id: str, until: float, failures: int) -> None:
        for listener in self.listeners:
            listener(endpoint_id, until, failures)

    def reset(self) -> None:
        """Forget every cooldown and go back to the default schedule (testing)."""
        with self._lock:
            self._entries.clear()
        self.cooldown, self.max_cooldown, self.probe_lease = self._defaults
        self.enabled = True
        self.listeners.clear()

    @staticmethod
    def _probe_event(endpoint_id: str, span: Span | None, *, ok: bool) -> None:
        """The attempt was the half-open probe (counted on the metric when admitted)."""
        if span is not None and span.is_recording():
            span.add_event(
                "agentflow.replica.probe",
                {A.AGENTFLOW_ENDPOINT: endpoint_id, A.AGENTFLOW_REPLICA_PROBE_OK: ok},
            )

    @staticmethod
    def _event(
        event: str, endpoint_id: str, span: Span | None, attributes: dict[str, float | str | int]
    ) -> None:
        attrs = {A.AGENTFLOW_ENDPOINT: endpoint_id, **attributes}
        if span is not None and span.is_recording():
            span.add_event(f"agentflow.replica.{event}", attrs)
        source = attrs.get(A.AGENTFLOW_REPLICA_SOURCE, "call")
        record_replica_event(event, endpoint_id, attributes={A.AGENTFLOW_REPLICA_SOURCE: source})


replica_health = ReplicaHealth()
"""The process-wide replica health the router and the plan read and report to."""


class HealthProbes(Poller):
    """Poll ``GET /health`` of every replica with an ``api_base`` every ``interval``
    seconds, in a daemon thread, and report to ``replica_health``: a replica that does
    not answer 200 within ``timeout`` starts a cooldown, a cooling one that answers
    recovers at once. llama-server, vLLM and SGLang all serve ``/health``.

        with HealthProbes(zoo, interval=2.0):
            ...  # calls made here skip replicas the probes found dead
    """

    def __init__(
        self,
        zoo: ModelZoo | Iterable[Endpoint],
        *,
        interval: float = 5.0,
        timeout: float = 2.0,
        health: ReplicaHealth | None = None,
    ) -> None:
        for name, value in (("interval", interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"HealthProbes {name} must be a positive number of seconds, got "
                    f"{value!r}; pass e.g. interval=5.0, timeout=2.0"
                )
        super().__init__(interval)
        endpoints = zoo.endpoints() if hasattr(zoo, "endpoints") else list(zoo)
        self.targets = {e.id: url for e in endpoints if (url := root_url(e)) is not None}
        self.timeout = timeout
        self.health = health or replica_health

    def probe_all(self) -> dict[str, bool]:
        """Probe every replica once, now (blocking); ``{endpoint id: answered 200}``."""
        results: dict[str, bool] = {}
        for endpoint_id, url in self.targets.items():
            ok, err = self._probe(url)
            results[endpoint_id] = ok
            was = self.health.state(endpoint_id).status
            if (was == "healthy") if ok else (was == "cooling"):
                continue  # nothing new: no span, no event
            with tracing.tracer().start_as_current_span("replica health") as span:
                span.set_attribute(A.AGENTFLOW_ENDPOINT, endpoint_id)
                if err is None:
                    self.health.succeeded(endpoint_id, span, source="health_probe")
                else:
                    self.health.failed(endpoint_id, err, span, source="health_probe")
        return results

    def _probe(self, url: str) -> tuple[bool, BaseException | None]:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=self.timeout) as response:
                if response.status == 200:
                    return True, None
                return False, ConnectionError(f"GET {url}/health answered {response.status}")
        except urllib.error.HTTPError as err:
            err.close()
            # a 503 while a model loads is "not ready": count it as a 5xx
            return False, ConnectionError(f"GET {url}/health answered {err.code}")
        except (OSError, ValueError) as err:
            return False, ConnectionError(f"GET {url}/health failed: {err}")

    thread_name = "agentflow-health-probes"

    def tick(self) -> None:
        self.probe_all()

    def join_timeout(self) -> float:
        return self.timeout + 1
