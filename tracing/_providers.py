"""Where spans and metrics go: injected providers, else OpenTelemetry's global ones.

Code that emits telemetry asks ``tracer()`` / ``meter()`` for its tracer or meter, never
``trace.get_tracer`` at module level. By default they come from the global providers, so
a host application's providers (or ``setup()``'s) receive the spans. ``use_providers()``
swaps in other providers, for a test or for an application that keeps its providers
private (``setup(set_global=False)``); as a context manager it puts the previous ones
back on exit.

The choice is process-wide, not per thread or per task, like OpenTelemetry's own global
providers: telemetry emitted from worker threads (thread pools, ``run_in_executor``,
LangGraph's sync nodes) must reach the injected provider too, and a context variable does
not follow work into a pool thread. Tests inject one pair at a time; changes take a lock,
reads do not.

Hot path: ``tracer()`` is a global read and a dict lookup. Each selection of providers
caches its tracers and meters by name, and restoring a selection restores its cache.
"""

from __future__ import annotations

import threading
import warnings
from types import TracebackType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["SCOPE_NAME", "meter", "tracer", "use_providers"]

SCOPE_NAME: Final = "agentflow"


class _Selection:
    """One choice of providers (None = the global one) and the tracers and meters made
    from it, by instrumentation scope name."""

    __slots__ = ("meter_provider", "meters", "tracer_provider", "tracers")

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracers: dict[str, Tracer] = {}
        self.meters: dict[str, Meter] = {}

    def make_tracer(self, name: str) -> Tracer:
        with _lock:
            found = self.tracers.get(name)
            if found is None:
                if self.tracer_provider is None:
                    from opentelemetry import trace

                    # Before the application sets its provider this is a proxy tracer
                    # that starts delegating once it does: caching it is safe.
                    found = trace.get_tracer(name)
                else:
                    found = self.tracer_provider.get_tracer(name)
                self.tracers[name] = found
            return found

    def make_meter(self, name: str) -> Meter:
        with _lock:
            found = self.meters.get(name)
            if found is None:
                if self.meter_provider is None:
                    from opentelemetry import metrics

                    found = metrics.get_meter(name)  # a proxy meter until one is set
                else:
                    found = self.meter_provider.get_meter(name)
                self.meters[name] = found
            return found


_lock = threading.Lock()
_GLOBAL: Final = _Selection(None, None)
_selection = _GLOBAL


def tracer(name: str = SCOPE_NAME) -> Tracer:
    """The tracer for instrumentation scope ``name`` (default ``"agentflow"``): from the
    provider given to ``use_providers()``, else from OpenTelemetry's global provider.

    Call it where the span starts (``tracing.tracer().start_as_current_span(...)``), not
    once at import, so an injection made later takes effect.
    """
    selection = _selection
    found = selection.tracers.get(name)
    return found if found is not None else selection.make_tracer(name)


def meter(name: str = SCOPE_NAME) -> Meter:
    """The meter for instrumentation scope ``name`` (default ``"agentflow"``): from the
    provider given to ``use_providers()``, else from OpenTelemetry's global provider.

    The same object comes back until the providers change; instruments made from it
    stop reaching the injected provider once that injection ends (``tracing.Metrics()``
    re-creates its instruments by itself).
    """
    selection = _selection
    found = selection.meters.get(name)
    return found if found is not None else selection.make_meter(name)


class _Restore:
    """What ``use_providers()`` returns: exiting it as a context manager puts the
    previous providers back."""

    __slots__ = ("_done", "_installed", "_previous")

    def __init__(self, previous: _Selection, installed: _Selection) -> None:
        self._previous = previous
        self._installed = installed
        self._done = False

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _selection
        with _lock:
            if self._done:
                return
            self._done = True
            out_of_order = _selection is not self._installed
            _selection = self._previous
        if out_of_order:
            warnings.warn(
                "tracing.use_providers(): a later injection was still active when this one "
                "ended, and is now undone too. Nest the `with` blocks, and inject from one "
                "thread at a time (the choice is process-wide).",
                RuntimeWarning,
                stacklevel=2,
            )


def use_providers(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> _Restore:
    """Send tracing's and agentflow's spans and metrics to these providers.

    ``None`` means OpenTelemetry's global provider for that signal, so
    ``use_providers()`` with no argument goes back to the global ones. The switch happens
    at the call, for the whole process; used as a context manager, the providers in use
    before the call come back on exit::

        with tracing.use_providers(tracer_provider=tp, meter_provider=mp):
            ...  # spans go to tp, metrics to mp
        # back to what was there before
    """
    global _selection
    installed = (
        _GLOBAL
        if tracer_provider is None and meter_provider is None
        else _Selection(tracer_provider, meter_provider)
    )
    with _lock:
        previous = _selection
        _selection = installed
    return _Restore(previous, installed)
