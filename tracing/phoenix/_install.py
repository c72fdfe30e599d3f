"""Install Arize Phoenix into its own virtualenv.

Phoenix pins many heavy packages that conflict with an application's, so it never goes
into the application's environment: ``ensure_phoenix()`` keeps it in
``${AGENTFLOW_HOME:-~/.cache/agentflow}/phoenix-venv`` and returns its ``phoenix``
executable. ``PHOENIX_BIN`` names an existing executable instead. From a source checkout,
the versions come from ``requirements/phoenix.txt`` (written by ``make lock``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from tracing._errors import PhoenixError

__all__ = ["DEFAULT_SPEC", "agentflow_home", "ensure_phoenix", "phoenix_venv"]

DEFAULT_SPEC: Final = "arize-phoenix"
_MARKER: Final = ".agentflow-phoenix"  # holds the spec installed, written when it worked
# Phoenix's lock in a source checkout (absent from an installed wheel).
_CONSTRAINTS: Final = Path(__file__).resolve().parents[2] / "requirements" / "phoenix.txt"
_BIN: Final = "Scripts" if os.name == "nt" else "bin"
_EXE: Final = ".exe" if os.name == "nt" else ""


def agentflow_home() -> Path:
    """``$AGENTFLOW_HOME``, or ``~/.cache/agentflow``."""
    return Path(os.environ.get("AGENTFLOW_HOME") or Path.home() / ".cache" / "agentflow")


def phoenix_venv() -> Path:
    """Where ``ensure_phoenix()`` keeps Phoenix's virtualenv."""
    return agentflow_home() / "phoenix-venv"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (two test runs installing at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no cross-process lock
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def constraints_file() -> Path | None:
    """``requirements/phoenix.txt`` of the source checkout this runs from, if any."""
    return _CONSTRAINTS if _CONSTRAINTS.is_file() else None


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(args: list[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PhoenixError(
            f"{what} did not finish in {timeout:.0f} s ({' '.join(args)}). Check the "
            "network to the package index, or install Phoenix yourself and set PHOENIX_BIN."
        ) from None
    if done.returncode != 0:
        raise PhoenixError(
            f"{what} failed (exit {done.returncode}): {' '.join(args)}\n"
            f"{_tail(done.stdout + done.stderr)}\n"
            "Fix the error above, or install Phoenix yourself and set PHOENIX_BIN."
        )


def ensure_phoenix(*, spec: str | None = None, timeout: float = 1800.0) -> Path:
    """The path of a working ``phoenix`` executable, installing Phoenix if needed.

    ``PHOENIX_BIN`` wins when set. Otherwise Phoenix (``spec``, default
    ``$AGENTFLOW_PHOENIX_SPEC`` or ``arize-phoenix``) is pip-installed into its own
    virtualenv (``phoenix_venv()``), made with this interpreter's ``venv``. Idempotent and
    fast once installed: a marker written after a successful install short-circuits it.
    """
    if explicit := os.environ.get("PHOENIX_BIN"):
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PhoenixError(
                f"PHOENIX_BIN={explicit!r} is not an executable file; point it at a "
                "'phoenix' executable, or unset it to let agentflow install Phoenix."
            )
        return path
    spec = spec or os.environ.get("AGENTFLOW_PHOENIX_SPEC") or DEFAULT_SPEC
    venv = phoenix_venv()
    exe = venv / _BIN / f"phoenix{_EXE}"
    python = venv / _BIN / f"python{_EXE}"
    marker = venv / _MARKER
    constraints = constraints_file()
    # The marker names the lock too: a refreshed lock reinstalls into the same venv.
    installed = spec
    if constraints is not None:
        digest = hashlib.sha256(constraints.read_bytes()).hexdigest()[:16]
        installed = f"{spec} -c phoenix.txt@{digest}"

    def ready() -> bool:
        try:
            return exe.is_file() and marker.read_text().strip() == installed
        except OSError:
            return False

    if ready():
        return exe
    with _locked(agentflow_home() / "phoenix-venv.lock"):
        if ready():  # another process installed it while we waited for the lock
            return exe
        if not python.is_file():
            _run([sys.executable, "-m", "venv", str(venv)], "creating Phoenix's venv", 300)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if constraints is not None:
            pip.extend(["-c", str(constraints)])
        # The pip bundled with venv is old, and its resolver is minutes slower on Phoenix.
        _run([*pip, "--upgrade", "pip"], f"upgrading pip in {venv}", 300)
        _run(
            [*pip, spec],
            f"pip install {spec} into {venv}",
            timeout,
        )
        if not exe.is_file():
            raise PhoenixError(
                f"installing {spec} into {venv} left no {exe}. Delete {venv} and retry."
            )
        marker.write_text(installed + "\n")
    return exe
