"""Start a throwaway local Phoenix (tests, docs, demos).

Example::

    with PhoenixServer() as phoenix:
        providers = tracing.setup(project="demo", otlp_endpoint=phoenix.otlp_endpoint)
        ...
        phoenix.wait_for_spans("demo", count=4)
        print(phoenix.project_cost("demo"))
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from tracing._errors import PhoenixError
from tracing.phoenix._install import ensure_phoenix
from tracing.phoenix._pricing import PriceLike, register_pricing
from tracing.phoenix._query import CostSummary, get_spans, project_cost, trace_cost

__all__ = ["PhoenixServer"]

_HOST: Final = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class PhoenixServer:
    """A ``phoenix serve`` process on 127.0.0.1 with its own temporary working dir.

    ``port=0`` picks a free port. Started by ``start()`` or ``with``; ready when
    ``GET /healthz`` says OK (about 15 s); ``stop()`` ends it and removes the working dir
    (unless ``working_dir`` was given).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        executable: str | os.PathLike[str] | None = None,
        working_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or _free_port()
        self._executable = executable
        self._own_dir = working_dir is None
        self.working_dir = Path(working_dir) if working_dir else None
        self.startup_timeout = startup_timeout
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def otlp_endpoint(self) -> str:
        """OTLP/HTTP traces endpoint, for ``tracing.setup(otlp_endpoint=...)``."""
        return f"{self.base_url}/v1/traces"

    @property
    def log_path(self) -> Path:
        assert self.working_dir is not None, "start() the server first"
        return self.working_dir / "phoenix.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _healthy(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.base_url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> PhoenixServer:
        if self._process is not None:
            return self
        executable = Path(self._executable) if self._executable else ensure_phoenix()
        if self.working_dir is None:
            self.working_dir = Path(tempfile.mkdtemp(prefix="phoenix-"))
        self.working_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": str(self.working_dir),
            "PHOENIX_HOST": _HOST,
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": "0",
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_LOG_MIGRATIONS": "false",
            **self._extra_env,
        }
        # Phoenix's own venv must not see this process's virtualenv or PYTHONPATH.
        for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(name, None)
        self._log = self.log_path.open("wb")
        started = time.monotonic()
        self._process = subprocess.Popen(
            [str(executable), "serve"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                tail = self.log_tail()
                self.stop()
                raise PhoenixError(
                    f"phoenix serve exited with code {code} before it was ready. Log tail:\n{tail}"
                )
            if self._healthy():
                self.startup_s = time.monotonic() - started
                return self
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise PhoenixError(
            f"phoenix serve was not healthy at {self.base_url}/healthz after "
            f"{self.startup_timeout:.0f} s. Log tail:\n{tail}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_dir and self.working_dir is not None:
            shutil.rmtree(self.working_dir, ignore_errors=True)
            self.working_dir = None

    def __enter__(self) -> PhoenixServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Conveniences bound to this server's URL.

    def register_pricing(self, prices: dict[str, PriceLike | Any], **kwargs: Any) -> list[str]:
        return register_pricing(self.base_url, prices, **kwargs)

    def spans(self, project: str) -> list[dict[str, Any]]:
        """All spans of ``project`` (every page of ``GET /v1/projects/{name}/spans``)."""
        return get_spans(self.base_url, project)

    def wait_for_spans(
        self, project: str, *, count: int, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll until ``project`` holds at least ``count`` spans; PhoenixError if not."""
        deadline = time.monotonic() + timeout
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            spans = self.spans(project)
            if len(spans) >= count:
                return spans
            time.sleep(0.25)
        raise PhoenixError(
            f"Phoenix project {project!r} holds {len(spans)} spans after {timeout:.0f} s, "
            f"expected {count}. Were the providers flushed? Log tail:\n{self.log_tail()}"
        )

    def trace_cost(self, trace_id: str | int) -> CostSummary | None:
        return trace_cost(self.base_url, trace_id)

    def project_cost(self, project: str) -> CostSummary | None:
        return project_cost(self.base_url, project)
