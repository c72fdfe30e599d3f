"""Replica health shared across processes and machines, through Redis.

    from agentflow.pipeline.health_sync import HealthSync
    HealthSync("redis://127.0.0.1:6379/0").start()

Every cooldown this process starts, and every recovery it sees, is written to Redis (one
JSON value per replica, under ``prefix``). A daemon thread writes them and reads the
other processes' every ``interval`` seconds, so a replica one process found dead rests
in all of them within ``interval``, and comes back in all of them once one probe
succeeds. Nothing touches Redis on the call path: the plan only appends to a queue.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
import warnings
from types import TracebackType
from typing import Any, NamedTuple

from agentflow._errors import ConfigError
from agentflow.pipeline.health import ReplicaHealth, replica_health
from agentflow.pipeline.poller import Poller

__all__ = ["HealthSync"]


class HealthSync(Poller):
    """Share ``health``'s cooldowns and recoveries (default: the process-wide
    ``replica_health``) with every process that syncs to the same Redis and prefix.

    Give a URL (``"redis://host:6379/0"``) or a ready ``redis.Redis`` client.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "agentflow:health:",
        interval: float = 0.5,
        health: ReplicaHealth | None = None,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigError(
                "HealthSync needs exactly one of url='redis://host:port/db' or "
                "client=redis.Redis(...)"
            )
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ConfigError(
                f"HealthSync interval must be a positive number of seconds, got {interval!r}; "
                "pass e.g. interval=0.5"
            )
        if url is not None:
            import redis

            client = redis.Redis.from_url(url)
        super().__init__(interval)
        self.client = client
        self.prefix = prefix
        self.health = health or replica_health
        self._id = uuid.uuid4().hex  # this process's records are not read back
        self._outbox: queue.SimpleQueue[tuple[str, float, int]] = queue.SimpleQueue()
        self._seen: dict[str, float] = {}  # replica → time of the last record applied
        self._warned = False
        self.health.listeners.append(self._changed)

    def _changed(self, endpoint_id: str, until: float, failures: int) -> None:
        self._outbox.put((endpoint_id, until, failures))  # never I/O on the call path

    def sync(self) -> None:
        """Write this process's news, then read the others' (blocking: the thread's
        work, or a test's)."""
        now = time.time()
        while True:
            try:
                endpoint_id, until, failures = self._outbox.get_nowait()
            except queue.Empty:
                break
            news = {"until": until, "failures": failures, "at": now, "by": self._id}
            ttl = int(max(until - now, 0.0)) + 600  # a recovery is kept 10 min
            self.client.set(self.prefix + endpoint_id, json.dumps(news), ex=ttl)
        for key in self.client.scan_iter(match=f"{self.prefix}*", count=200):
            name = key.decode() if isinstance(key, bytes) else str(key)
            record = _record(self.client.get(key))
            if record is None or record.by == self._id:
                continue
            endpoint_id = name[len(self.prefix) :]
            if record.at <= self._seen.get(endpoint_id, 0.0):
                continue
            self._seen[endpoint_id] = record.at
            if record.until > time.time():
                self.health.adopt(endpoint_id, record.until, record.failures)
            elif record.until == 0.0:
                self.health.succeeded(endpoint_id, source="shared")

    thread_name = "agentflow-health-sync"

    def join_timeout(self) -> float:
        return self.interval + 5

    def close(self) -> None:
        """Stop, and stop listening to ``health``."""
        self.stop()
        if self._changed in self.health.listeners:
            self.health.listeners.remove(self._changed)

    def tick(self) -> None:
        try:
            self.sync()
        except Exception as err:  # Redis down: keep the local view, say so once
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"replica health is not shared: Redis failed ({type(err).__name__}: "
                    f"{err}); each process keeps its own cooldowns until it is back",
                    RuntimeWarning,
                    stacklevel=1,
                )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Record(NamedTuple):
    until: float  # wall-clock end of the cooldown; 0.0: recovered
    failures: int
    at: float  # when it was written
    by: str  # the writing process


def _record(raw: Any) -> _Record | None:
    """A record this module wrote, type-checked; None for anything else."""
    try:
        value = json.loads(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    until, failures, at, by = (value.get(k) for k in ("until", "failures", "at", "by"))
    if not (
        isinstance(until, int | float)
        and isinstance(at, int | float)
        and isinstance(failures, int)
        and isinstance(by, str)
    ):
        return None
    return _Record(float(until), failures, float(at), by)
