"""Start a real, throwaway redis-server on a free loopback port.

Reusable outside pytest (the ledger benchmark has its own copy so it runs as a plain
script). Nothing is persisted: ``--save ""`` and ``--appendonly no``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

__all__ = ["RedisServer", "RedisServerUnavailable"]


class RedisServerUnavailable(RuntimeError):
    """redis-server is not installed or did not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``with RedisServer() as server: server.url`` — a redis-server child process.

    The port is picked free just before the start; if another process grabs it first the
    server fails to bind and the start is retried on a new port.
    """

    def __init__(self, executable: str = "redis-server", *, start_timeout: float = 10.0) -> None:
        path = shutil.which(executable)
        if path is None:
            raise RedisServerUnavailable(
                f"{executable} is not on PATH; install it with "
                "`apt-get update && apt-get install -y redis-server`"
            )
        self.executable = path
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        errors: list[str] = []
        for _ in range(3):
            self.port = _free_port()
            # a file, not a pipe: nobody reads the log while the server runs
            self._log = tempfile.NamedTemporaryFile(prefix="redis-server-", suffix=".log")  # noqa: SIM115 - closed in stop()
            self.process = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            if self._wait_ready():
                return self
            errors.append(self._stop_and_read())
        raise RedisServerUnavailable("redis-server did not start:\n" + "\n".join(errors))

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _stop_and_read(self) -> str:
        if self.process is None:
            return ""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        out = b""
        if self._log is not None:
            self._log.seek(0)
            out = self._log.read()
            self._log.close()
            self._log = None
        return out.decode(errors="replace")[-2000:]

    def stop(self) -> None:
        self._stop_and_read()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
