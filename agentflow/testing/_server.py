"""``LoopbackServer``: a scriptable OpenAI-compatible HTTP server on 127.0.0.1.

Standard library only (``http.server`` in a daemon thread), so importing it is cheap.
Each connection gets a daemon thread; HTTP/1.1 keep-alive works (every plain
response has a Content-Length, streams use chunked transfer encoding).

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``,
``POST /v1/embeddings`` (each consumes one script entry), ``GET /v1/models``,
``GET /health`` (status ``health_status``), ``GET /metrics`` (the text in ``metrics``,
404 while None), ``POST /tokenize``. The ``/v1`` prefix is optional, as with
llama-server.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from agentflow.testing._handler import LoopbackHTTPServer
from agentflow.testing._responses import Prompt
from agentflow.testing._script import Fault, RecordedRequest, Reply, ScriptEntry
from agentflow.testing._tokens import CHARS_PER_TOKEN, common_prefix_len

__all__ = ["LoopbackServer"]

_PREFIX_HISTORY = 1024  # prompts the simulated prefix cache remembers


class LoopbackServer:
    """A scriptable OpenAI-compatible server on 127.0.0.1, for tests.

    Use it as a context manager (or ``start()`` / ``stop()``). Script answers and
    faults with ``script(...)``; every request is recorded in ``requests``.
    ``prefix_cache=True`` simulates an engine's prefix cache: ``cached_tokens``
    is the longest prompt prefix shared with an earlier request to this server.
    """

    def __init__(
        self,
        *,
        name: str = "loopback",
        host: str = "127.0.0.1",
        port: int = 0,
        prefix_cache: bool = False,
        embedding_dim: int = 64,
        models: Iterable[str] = ("loopback",),
    ) -> None:
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim={embedding_dim}: give a positive dimension.")
        self.name = name
        self.host = host
        self.prefix_cache = prefix_cache
        self.embedding_dim = embedding_dim
        self.models = list(models)
        self._port = port
        self._lock = threading.Lock()
        self._queue: deque[ScriptEntry] = deque()
        self._model_queues: dict[str, deque[ScriptEntry]] = {}
        self._default: ScriptEntry | None = None
        self._requests: list[RecordedRequest] = []
        self._prompts: deque[str] = deque(maxlen=_PREFIX_HISTORY)
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.metrics: str | None = None
        """What ``GET /metrics`` serves (Prometheus text, e.g. an engine's); None: 404."""
        self.health_status = 200
        """The status ``GET /health`` answers with (503: an engine still loading)."""

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> LoopbackServer:
        """Bind (a free port the first time, the same port on a restart) and serve."""
        if self._httpd is not None:
            return self
        httpd = LoopbackHTTPServer((self.host, self._port), self)
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and every open connection (the replica is down)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()  # wakes hanging and slow replies
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.root_url if self._port else "not started"
        return f"<LoopbackServer {self.name!r} {where}>"

    # -- addresses --------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(
                "the loopback server has no port yet: call start() or use it in a with block."
            )
        return self._port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: litellm's ``api_base``, openai's ``base_url``."""
        return f"{self.root_url}/v1"

    # -- scripting --------------------------------------------------------------

    def script(self, *entries: ScriptEntry, model: str | None = None) -> None:
        """Queue replies and faults, consumed one per model call, first in first out.

        With ``model``, the entries answer only requests whose body ``model`` is
        exactly that (litellm strips its ``openai/`` prefix); such requests use
        their own queue first, then the shared one, then ``default``.
        """
        for entry in entries:
            if not isinstance(entry, Reply | Fault):
                raise TypeError(
                    f"script() takes Reply(...) and Fault.*(...) entries, not {entry!r}"
                )
        with self._lock:
            queue = self._queue if model is None else self._model_queues.setdefault(model, deque())
            queue.extend(entries)

    @property
    def default(self) -> ScriptEntry | None:
        """The answer when no script entry is left; None echoes the last user message."""
        return self._default

    @default.setter
    def default(self, entry: ScriptEntry | None) -> None:
        if entry is not None and not isinstance(entry, Reply | Fault):
            raise TypeError(f"default must be a Reply, a Fault or None, not {entry!r}")
        self._default = entry

    @property
    def pending(self) -> int:
        """Script entries not consumed yet (all queues)."""
        with self._lock:
            return len(self._queue) + sum(len(q) for q in self._model_queues.values())

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget scripts, the default, recorded requests and the prefix cache."""
        with self._lock:
            self._queue.clear()
            self._model_queues.clear()
            self._requests.clear()
            self._prompts.clear()
            self._default = None

    # -- used by the handler ----------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_entry(self, model: object) -> ScriptEntry:
        with self._lock:
            queue = self._model_queues.get(model) if isinstance(model, str) else None
            if queue:
                return queue.popleft()
            if self._queue:
                return self._queue.popleft()
            return self._default or Reply()

    def _prefix_cached(self, prompt: Prompt) -> int | None:
        """Simulated engine prefix cache hit, in tokens (None when not simulated)."""
        if not self.prefix_cache:
            return None
        with self._lock:
            best = max((common_prefix_len(prompt.rendered, p) for p in self._prompts), default=0)
            self._prompts.append(prompt.rendered)
        # an engine always computes at least the last prompt token itself
        return max(0, min(best // CHARS_PER_TOKEN, prompt.tokens - 1))

    def _models_body(self) -> dict[str, Any]:
        with self._lock:
            names = list(dict.fromkeys([*self.models, *self._model_queues]))
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "agentflow-loopback"}
                for n in names
            ],
        }
