"""A daemon thread that does one thing every few seconds, off every call's path: the
base of the health prober (``health.HealthProbes``), the health sync through Redis
(``health_sync.HealthSync``) and the engine-load monitor (``load.EngineLoadMonitor``).
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Self

__all__ = ["Poller"]

_log = logging.getLogger("agentflow")


class Poller:
    """Calls ``tick()`` every ``interval`` seconds in a daemon thread, from ``start()``
    until ``stop()`` (or as a context manager). ``wake()`` runs the next tick now."""

    thread_name = "agentflow-poller"

    def __init__(self, interval: float) -> None:
        self.interval = float(interval)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """One round of the work (subclasses); an exception ends nothing but the round."""
        raise NotImplementedError

    def join_timeout(self) -> float:
        """How long ``stop()`` waits for a round in progress to finish."""
        return self.interval + 1

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start the thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout=self.join_timeout())

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug or an odd reply ends this round, never the thread
                _log.warning(
                    "%s: a round failed; the next one runs as usual",
                    self.thread_name,
                    exc_info=True,
                )
            self._wake.wait(self.interval)
            self._wake.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
