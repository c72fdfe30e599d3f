"""A testing mode for users' tests and ours (as ``stamina.set_testing``).

    agentflow.testing.set_testing(True)          # for the whole session
    with agentflow.testing.set_testing(True):    # or for a block
        ...

In testing mode retries do not sleep, the response cache is neither read nor written,
and process-wide state is reset on entry and on exit (``reset_state``): the
configuration, open cache stores, token counters and their HTTP clients, once-per-endpoint
warnings, the in-flight counts, replica cooldowns and engine-load readings the router
reads. Tracer and meter providers are injected with ``tracing.use_providers``.
"""

from __future__ import annotations

from types import TracebackType

from agentflow import _config, _mode, _scoring, _warnings
from agentflow.cache._degrade import backend_warnings
from agentflow.pipeline import budget, cache, call, dedup, health, load, route

__all__ = ["TestingSwitch", "is_testing", "reset_state", "set_testing"]


def reset_state() -> None:
    """Forget agentflow's process-wide state, as a new process would start: the
    configuration (``af.configure``), open response-cache stores, token counters,
    pooled clients, once-per-endpoint warnings, in-flight counts and flights. Steps already
    decorated stay registered (they are checked against the next ``af.configure``)."""
    _config.reset()
    cache.reset_stores()
    budget.reset_counters()
    call.reset_clients()
    backend_warnings.reset()
    _scoring.reset_warnings()
    _warnings.reset_warned()
    route.inflight.reset()
    dedup.reset()
    health.replica_health.reset()
    load.engine_load.reset()


class TestingSwitch:
    """What ``set_testing`` returns: already applied; a context manager that puts the
    previous mode back on exit."""

    __test__ = False  # not a pytest test class

    def __init__(self, previous: _mode.TestingMode | None) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _mode.set_mode(self._previous)
        reset_state()


def set_testing(on: bool = True, *, backoff: bool = False, cache: bool = False) -> TestingSwitch:
    """Switch testing mode on (or off with ``on=False``) and reset process-wide state.

    ``backoff=True`` keeps the retry sleeps, ``cache=True`` keeps the response cache
    (both off by default in testing mode). Use it as a call or as a context manager.
    """
    mode = _mode.TestingMode(backoff=backoff, cache=cache) if on else None
    previous = _mode.set_mode(mode)
    reset_state()
    return TestingSwitch(previous)


def is_testing() -> bool:
    """Whether testing mode is on."""
    return _mode.get_mode() is not None
