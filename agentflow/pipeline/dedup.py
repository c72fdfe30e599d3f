"""In-flight de-duplication, beside the cache stage: identical concurrent requests that
the response cache would answer wait for the one already in flight.

The first request with a given cache key (which holds the tenant scope, the tier's
models, the messages and parameters) becomes the *leader* and is answered as usual;
requests with the same key that arrive while it is in flight are *followers*: they wait
for the leader to land, then read its answer from the cache as a cache hit (cost 0, with
what it saved). A follower waits at most its retry policy's ``max_time``; if the leader
fails, is cancelled, or its answer was not stored (an unscored answer, a tool call the
policy does not store), followers call the engine themselves. Sync threads and any
number of event loops can wait on one flight; waiting never blocks an event loop.

Flights are per process: replicas of a service de-duplicate their own traffic.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["Flight", "depart", "in_flight", "land", "reset"]


class Flight:
    """One leader's request in flight; followers wait for it to land."""

    __slots__ = ("_event", "_lock", "_waiters", "followers")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.followers = 0

    def landed(self) -> None:
        with self._lock:
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, timeout: float) -> bool:
        """Block until the leader lands (True) or ``timeout`` passes (False)."""
        return self._event.wait(timeout)

    async def await_landing(self, seconds: float) -> bool:
        """``wait`` under asyncio: the loop keeps running while the follower waits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return True
            self._waiters.append((loop, future))
        try:
            async with asyncio.timeout(seconds):
                await future
        except TimeoutError:
            return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_flights: dict[str, Flight] = {}
_lock = threading.Lock()


def depart(key: str) -> tuple[Flight, bool]:
    """The flight for ``key`` and whether this request leads it (True: no request with
    this key is in flight, so this one is sent; False: wait for the leader)."""
    with _lock:
        flight = _flights.get(key)
        if flight is not None:
            flight.followers += 1
            return flight, False
        flight = _flights[key] = Flight()
        return flight, True


def land(key: str, flight: Flight) -> None:
    """The leader is done (answered, failed or cancelled): release its followers."""
    with _lock:
        if _flights.get(key) is flight:
            del _flights[key]
    flight.landed()


def in_flight() -> int:
    """How many distinct requests are being led now (for tests and metrics)."""
    with _lock:
        return len(_flights)


def reset() -> None:
    """Forget every flight, releasing their followers (testing)."""
    with _lock:
        flights = list(_flights.values())
        _flights.clear()
    for flight in flights:
        flight.landed()
