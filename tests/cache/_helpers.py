"""Helpers shared by the cache tests (imported as ``tests.cache._helpers``)."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when told: ``clock.advance(10)``."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
