"""A real PostgreSQL with pgvector for a test, from the ``pgserver`` wheel's binaries.

``PostgresServer().start()`` makes a data directory in a temp dir, runs ``initdb`` and
starts ``postgres`` listening on 127.0.0.1 at a free port (no Unix socket outside the
temp dir); ``dsn`` connects to it; ``stop()`` stops it and removes the directory. As root
(CI), PostgreSQL refuses to run, so the server runs as the ``pgserver`` system user, made
if missing, as the wheel itself does. A missing wheel or a server that does not start is
a test FAILURE, never a skip: the shared semantic cache must be proven on real
PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PostgresServer", "start_postgres"]

_USER = "pgserver"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    def __init__(self) -> None:
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        try:
            from pgserver._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            pytest.fail(f"the pgserver wheel is not installed ({exc}): pip install -e '.[dev]'")
        bin_path = Path(POSTGRES_BIN_PATH)
        vector = bin_path.parent / "lib" / "postgresql" / "vector.so"
        if not vector.is_file():
            pytest.fail(f"pgserver's PostgreSQL has no pgvector ({vector} is missing)")
        self.root = Path(tempfile.mkdtemp(prefix="agentflow-pg-"))
        data = self.root / "data"
        run_as: dict[str, Any] = {}
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(_USER)
            assert entry is not None
            ensure_prefix_permissions(bin_path)
            ensure_folder_permissions(bin_path, 0o055)
            ensure_folder_permissions(bin_path.parent / "lib", 0o044)
            ensure_prefix_permissions(self.root)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
        subprocess.run(
            [str(bin_path / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--encoding=utf8", "--no-sync"],
            check=True, capture_output=True, timeout=120, **run_as,
        )  # fmt: skip
        for _ in range(5):  # a port taken between probe and bind: try another
            self.port = _free_port()
            log = (self.root / "postgres.log").open("ab")
            self.process = subprocess.Popen(
                [str(bin_path / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                 "-p", str(self.port), "-k", str(self.root), "-c", "fsync=off",
                 "-c", "max_connections=100", "-c", "shared_buffers=64MB"],
                stdout=log, stderr=subprocess.STDOUT, **run_as,
            )  # fmt: skip
            if self._wait_ready(bin_path):
                return self
            self.process.kill()
            self.process.wait()
        log_text = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"PostgreSQL did not start; its log ends with:\n{log_text}")

    def _wait_ready(self, bin_path: Path) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            ready = subprocess.run(
                [str(bin_path / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # smart shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def start_postgres() -> PostgresServer:
    """A new PostgreSQL with pgvector on a free loopback port; the caller stops it."""
    return PostgresServer().start()
