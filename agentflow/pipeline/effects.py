"""What the plan asks its driver to do, and what the driver sends back.

The plan never performs I/O itself: it yields one of these effects and gets the result
sent back (or the exception thrown in). ``drivers`` performs them synchronously
(``af.complete``) or under asyncio (``af.acomplete``) from one table, so no stage is
written twice and nothing blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentflow._completion import Completion
    from agentflow._zoo import Endpoint

__all__ = [
    "Call",
    "Effect",
    "Embed",
    "Io",
    "Outcome",
    "Score",
    "ScoreFailed",
    "Sleep",
    "status_code",
]


@dataclass(slots=True)
class Call:
    """Send ``kwargs`` (litellm's arguments, fully shaped) to ``endpoint``; the driver
    sends back an ``Outcome`` (the error in it, never raised)."""

    endpoint: Endpoint
    kwargs: dict[str, Any]
    operation: str = "chat"  # "chat", "chat_stream" or "embeddings"
    deadline: float | None = None  # time.monotonic() by which the call must be over


@dataclass(slots=True)
class Sleep:
    """Back off for ``seconds`` (``asyncio.sleep`` under the async driver)."""

    seconds: float


@dataclass(slots=True)
class Score:
    """Run ``scorer`` on ``completion``: the driver sends back a confidence (float or
    None) or a ``ScoreFailed``."""

    scorer: Any
    completion: Completion
    messages: list[dict[str, Any]] = field(default_factory=list)  # the request, for judges


@dataclass(slots=True)
class ScoreFailed:
    """The scorer raised (``fatal``: it returned something that is not a score, a bug
    that is raised whatever the step says)."""

    error: BaseException
    fatal: bool = False


@dataclass(slots=True)
class Embed:
    """Embed ``texts`` with ``embedder``: a zoo tier name (a paid, traced embedding call)
    or a function ``texts -> vectors`` (sync or async). The driver sends back the vectors
    or the exception the embedder raised (the cache stage then goes on without)."""

    embedder: Any
    texts: list[str]


@dataclass(slots=True)
class Io:
    """A piece of blocking I/O (a ledger on disk or Redis, a ``/tokenize`` request, a
    cache store): ``run()`` under the sync driver; under asyncio ``arun()`` when given,
    else ``run()`` in a worker thread, or inline when ``blocking`` is False (in-memory
    work that a thread hop would only slow down). What it returns is sent back; what it
    raises is thrown into the plan."""

    run: Callable[[], Any]
    arun: Callable[[], Awaitable[Any]] | None = None
    blocking: bool = True


@dataclass(slots=True)
class Outcome:
    """What a ``Call`` gave: the response or the error, and how long it took."""

    response: Any = None
    error: BaseException | None = None
    latency_s: float = 0.0


Effect = Call | Sleep | Score | Embed | Io


_NO_RESPONSE = frozenset(
    {"APIConnectionError", "ConnectError", "ConnectionError", "RemoteProtocolError"}
)


def status_code(err: BaseException) -> int | None:
    """The HTTP status of a failed call, when a server answered with one (a connection
    that failed has none, whatever status the client library made up for it)."""
    cause: BaseException | None = err
    for _ in range(8):  # litellm wraps a refused connection as InternalServerError 500
        if cause is None:
            break
        if type(cause).__name__ in _NO_RESPONSE or isinstance(cause, ConnectionError):
            return None
        cause = cause.__cause__ or cause.__context__
    code = getattr(err, "status_code", None)
    return code if isinstance(code, int) else None
