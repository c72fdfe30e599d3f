"""The HTTP side of the loopback server: routing, responses on the wire, faults.

``LoopbackHandler`` answers one connection (keep-alive: many requests) in its own daemon
thread. It reads the script from its ``Owner``: ``LoopbackServer`` (``_server.py``, which
imports this module, never the other way round).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, Protocol, cast
from urllib.parse import urlsplit

from agentflow.testing._responses import (
    Answer,
    Kind,
    Prompt,
    build_answer,
    embeddings_body,
    error_body,
    read_prompt,
    response_body,
    stream_events,
)
from agentflow.testing._script import Fault, RecordedRequest, Reply, ScriptEntry
from agentflow.testing._tokens import tokenize

_MODEL_CALLS: dict[str, Kind] = {
    "/chat/completions": "chat",
    "/completions": "completion",
    "/embeddings": "embeddings",
}
_MALFORMED = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"mess'


class Owner(Protocol):
    """What the handler reads from the server it answers for (``LoopbackServer``)."""

    @property
    def name(self) -> str: ...

    @property
    def embedding_dim(self) -> int: ...

    def _record(self, request: RecordedRequest) -> None:
        """Keep ``request`` in the server's ``requests``."""

    def _next_entry(self, model: object) -> ScriptEntry:
        """The script entry answering the next call to ``model``."""

    def _prefix_cached(self, prompt: Prompt) -> int | None:
        """Tokens of ``prompt`` found in the simulated prefix cache (None: no cache)."""

    def _models_body(self) -> dict[str, Any]:
        """The body of ``GET /v1/models``."""

    @property
    def metrics(self) -> str | None:
        """The body of ``GET /metrics`` (Prometheus text); None answers 404."""

    @property
    def health_status(self) -> int:
        """The status ``GET /health`` answers with."""


class _Dropped(Exception):
    """The handler dropped the connection on purpose; nothing more is sent."""


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 100+ clients connecting at once must not overflow
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: Owner) -> None:
        self.owner = owner
        self.stopping = threading.Event()  # set by stop(): wakes sleeps, refuses connections
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, LoopbackHandler)

    def drop_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.open_connections)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # client went away: not our bug
            return
        super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60.0  # an idle keep-alive connection is closed after this
    _chunked = True

    @property
    def srv(self) -> LoopbackHTTPServer:
        return cast(LoopbackHTTPServer, self.server)

    @property
    def owner(self) -> Owner:
        return self.srv.owner

    def setup(self) -> None:
        super().setup()
        with self.srv.connections_lock:
            self.srv.open_connections.add(self.connection)
        if self.srv.stopping.is_set():  # accepted while stop() was closing the others
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.srv.connections_lock:
                self.srv.open_connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.send_header("x-loopback-server", self.owner.name)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- plumbing ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] = {}
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] = {}) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json", headers)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, error_body(status, message))

    def _drop(self, *, reset: bool = False) -> NoReturn:
        """Close the connection unanswered; with ``reset`` the peer gets an RST."""
        self.close_connection = True
        if reset:
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
            self.rfile.close()  # the socket really closes when its last file does
        raise _Dropped

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.srv.stopping.wait(seconds):
            self._drop()  # the server is stopping: wake up and go

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            path = urlsplit(self.path).path.rstrip("/") or "/"
            headers = {k.lower(): v for k, v in self.headers.items()}
            peer = (str(self.client_address[0]), int(self.client_address[1]))
            self.owner._record(
                RecordedRequest(self.command, path, headers, body, time.time(), peer, raw)
            )
            self._route(self.command, path, raw, body)
        except _Dropped:
            pass
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a bug here must reach the test as a 500, not a hang
            self.close_connection = True
            self._error(500, f"loopback server error: {type(exc).__name__}: {exc}")

    def _route(self, method: str, path: str, raw: bytes, body: Any) -> None:
        short = path.removeprefix("/v1")
        if method == "GET" and path == "/health":
            status = self.owner.health_status
            ok = status == 200
            self._send_json(status, {"status": "ok"} if ok else error_body(status, "unhealthy"))
        elif method == "GET" and path == "/metrics" and self.owner.metrics is not None:
            self._send_bytes(200, self.owner.metrics.encode(), "text/plain; version=0.0.4")
        elif method == "GET" and short == "/models":
            self._send_json(200, self.owner._models_body())
        elif method == "POST" and path == "/tokenize":
            content = body.get("content") if isinstance(body, dict) else None
            if not isinstance(content, str):
                self._error(400, 'POST /tokenize takes {"content": "<text>"}.')
            else:
                self._send_json(200, {"tokens": tokenize(content)})
        elif method == "POST" and short in _MODEL_CALLS:
            if not isinstance(body, dict):
                self._error(400, f"POST {path} needs a JSON object body; got {raw[:80]!r}.")
            elif _MODEL_CALLS[short] == "chat" and not isinstance(body.get("messages"), list):
                self._error(400, "chat completions need 'messages': a list of messages.")
            else:
                self._model_call(_MODEL_CALLS[short], body)
        else:
            self._error(404, f"no route for {method} {path} on the loopback server.")

    # -- model calls ------------------------------------------------------------

    def _model_call(self, kind: Kind, body: dict[str, Any]) -> None:
        entry = self.owner._next_entry(body.get("model"))
        stream = kind != "embeddings" and body.get("stream") is True
        if isinstance(entry, Fault):
            self._fault(entry, kind, body, stream)
            return
        self._sleep(entry.latency)
        if kind == "embeddings":
            self._send_json(200, embeddings_body(entry, body, self.owner.embedding_dim))
            return
        prompt = read_prompt(kind, body)
        answer = build_answer(entry, kind, body, prompt, self.owner._prefix_cached(prompt))
        if stream:
            self._stream(answer, body, entry.chunk_delay)
        elif entry.chunk_delay:
            self._drip(json.dumps(response_body(answer)).encode(), entry.chunk_delay)
        else:
            self._send_json(200, response_body(answer))

    def _drip(self, data: bytes, delay: float) -> None:
        """A plain reply sent 16 bytes at a time, ``delay`` seconds apart: every read
        arrives within the client's read timeout, the whole takes far longer."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for i in range(0, len(data), 16):
            self.wfile.write(data[i : i + 16])
            self.wfile.flush()
            self._sleep(delay)

    def _stream(
        self, answer: Answer, body: Mapping[str, Any], delay: float, cut: int | None = None
    ) -> None:
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        self._start_stream()
        sent = 0
        for tag, payload in stream_events(answer, include_usage):
            if cut is not None and (tag == "tail" or (tag == "content" and sent >= cut)):
                self._drop()  # an incomplete chunked body: the client sees an error
            if sent or tag != "head":
                self._sleep(delay)
            self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")
            sent += tag == "content"
        if cut is not None:
            self._drop()
        self._end_stream()

    def _start_stream(self) -> None:
        # HTTP/1.1: chunked, so the connection is kept and a cut stream is visibly
        # incomplete; an HTTP/1.0 client gets the stream up to the connection's close.
        self._chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _end_stream(self) -> None:
        self._chunk(b"data: [DONE]\n\n")
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def _fault(self, fault: Fault, kind: Kind, body: Mapping[str, Any], stream: bool) -> None:
        if fault.kind == "status":
            headers = {}
            if fault.retry_after is not None:
                seconds = fault.retry_after
                headers["Retry-After"] = str(int(seconds) if seconds == int(seconds) else seconds)
            if isinstance(fault.body, Mapping):
                payload: Any = fault.body
            else:
                message = fault.body or (
                    f"scripted HTTP {fault.status_code} from loopback server {self.owner.name!r}"
                )
                payload = error_body(fault.status_code, message)
            self._send_json(fault.status_code, payload, headers)
        elif fault.kind == "hang":
            self._sleep(fault.seconds)
            self._drop()
        elif fault.kind == "reset":
            self._drop(reset=True)
        elif fault.kind == "malformed_json":
            if stream:
                self._start_stream()
                self._chunk(b"data: " + _MALFORMED + b"\n\n")
                self._end_stream()
            else:
                self._send_bytes(200, _MALFORMED, "application/json")
        elif kind == "embeddings":  # stream_cut: half a body, then drop
            self._cut_body(json.dumps(embeddings_body(Reply(), body, self.owner.embedding_dim)))
        elif stream:
            self._stream(self._echo_answer(kind, body), body, 0.0, cut=fault.after_chunks)
        else:
            self._cut_body(json.dumps(response_body(self._echo_answer(kind, body))))

    def _echo_answer(self, kind: Kind, body: Mapping[str, Any]) -> Answer:
        return build_answer(Reply(), kind, body, read_prompt(kind, body), None)

    def _cut_body(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self._drop()
