"""The process-wide testing switch (``agentflow.testing.set_testing``), read by the plan.

Kept in its own module at the bottom so the plan can read it without importing
``agentflow.testing``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TestingMode", "get_mode", "set_mode"]


@dataclass(frozen=True, slots=True)
class TestingMode:
    """What testing mode switches off: backoff sleeps between retries, and the
    response cache (neither read nor written)."""

    __test__ = False  # not a pytest test class

    backoff: bool = False
    cache: bool = False


_mode: TestingMode | None = None


def get_mode() -> TestingMode | None:
    """The testing mode in force, or None (production)."""
    return _mode


def set_mode(mode: TestingMode | None) -> TestingMode | None:
    """Switch testing mode on (a ``TestingMode``) or off (None); the previous one."""
    global _mode
    previous, _mode = _mode, mode
    return previous
