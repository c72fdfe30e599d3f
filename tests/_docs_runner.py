"""Run the python blocks of many documentation pages, each page in a process of its own.

``python tests/_docs_runner.py SPEC``: SPEC is a JSON file written by ``tests/test_docs.py``::

    {"mode": "fork" | "inline", "jobs": 2, "preload": ["litellm", ...],
     "pages": [{"page": "docs/x.md", "dir": "/tmp/.../3", "timeout": 120,
                "blocks": [{"line": 12, "code": "..."}]}]}

A page runs exactly as if it had an interpreter of its own: its blocks run in order in one
fresh ``__main__`` module, with its ``dir``/``cwd`` as working directory and
``dir``/``agentflow-cache`` as ``AGENTFLOW_CACHE_DIR``, its stdout and stderr (file
descriptors 1 and 2) going to ``dir``/``stdout.txt`` and ``dir``/``stderr.txt``, and it
ends like an interpreter does (non-daemon threads joined, ``atexit`` handlers run). What it
leaves behind (a configured zoo, a global OpenTelemetry provider, an environment variable,
a server it did not stop) is gone with its process, so no page can depend on another.

``mode: "fork"``: this process imports the slow modules once (``preload``: litellm alone
takes seconds) and forks one child per page, up to ``jobs`` at a time. Where forking is
not safe (no ``os.fork``, macOS, or a preloaded module started a thread: a fork copies
its locks but not the thread) it starts a fresh interpreter per page instead, without
preloading. ``mode: "inline"``: this process runs its single page itself.

Each page ends with ``dir``/``result.json``: ``{"status": "ok"}``,
``{"status": "failed", "where": "docs/x.md:12", "exit": 1}`` (the block starting at that
line raised; its traceback is in stderr.txt), ``{"status": "timeout", "exit": ...}`` (the
page ran longer than ``timeout`` seconds; stderr.txt ends with every thread's stack) or
``{"status": "died", "exit": ...}`` (the process ended without finishing the page).

Only the standard library at import: the page decides what it imports.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any

FAILED_MARKER = "DOCS-TEST-FAILED"
# faulthandler.dump_traceback_later(exit=True) writes this before it exits
TIMEOUT_MARKER = "Timeout ("
# how long past its timeout a page's process may take to dump its stacks and exit
KILL_GRACE_S = 10.0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def _redirect(fd: int, path: Path) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _interpreter_exit() -> None:
    """What the interpreter does at exit: join non-daemon threads, run ``atexit``."""
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()


def run_page(page: dict[str, Any]) -> int:
    """Run one page in this process (which it then owns); its exit code, 0 if it passed.
    Never returns normally in a forked child: see ``_child``."""
    where_dir = Path(page["dir"])
    cwd = where_dir / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    _redirect(1, where_dir / "stdout.txt")
    _redirect(2, where_dir / "stderr.txt")
    os.chdir(cwd)
    os.environ["AGENTFLOW_CACHE_DIR"] = str(where_dir / "agentflow-cache")
    # a page that hangs: every thread's stack goes to stderr, then the process exits
    faulthandler.dump_traceback_later(page["timeout"], exit=True, file=sys.stderr)

    started = time.monotonic()
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    namespace = main.__dict__
    result: dict[str, Any] = {"status": "ok"}
    for block in page["blocks"]:
        # padded to its line, compiled with the Markdown path: tracebacks name both
        source = "\n" * (block["line"] - 1) + block["code"]
        try:
            exec(compile(source, page["page"], "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            where = f"{page['page']}:{block['line']}"
            print(f"{FAILED_MARKER} {where}", file=sys.stderr)
            result = {"status": "failed", "where": where, "exit": 1}
            break
    _interpreter_exit()
    faulthandler.cancel_dump_traceback_later()
    result["seconds"] = round(time.monotonic() - started, 3)
    sys.stdout.flush()
    sys.stderr.flush()
    _write_json(where_dir / "result.json", result)
    return 0 if result["status"] == "ok" else 1


def _child(page: dict[str, Any]) -> None:
    code = 70  # EX_SOFTWARE: the runner itself broke
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = run_page(page)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _ended(page: dict[str, Any], exit_code: int, *, killed: bool = False) -> None:
    """The child of ``page`` is gone: if it wrote no result, say why."""
    where_dir = Path(page["dir"])
    if (where_dir / "result.json").exists():
        return
    stderr = where_dir / "stderr.txt"
    text = stderr.read_text(encoding="utf-8", errors="replace") if stderr.exists() else ""
    timed_out = killed or TIMEOUT_MARKER in text
    status = "timeout" if timed_out else "died"
    _write_json(where_dir / "result.json", {"status": status, "exit": exit_code})


def preload(modules: list[str]) -> None:
    """Import what every page would import anyway, once, before the forks."""
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def run_forked(pages: list[dict[str, Any]], jobs: int) -> None:
    waiting = list(pages)
    running: dict[int, tuple[dict[str, Any], float]] = {}
    while waiting or running:
        while waiting and len(running) < max(1, jobs):
            page = waiting.pop(0)
            Path(page["dir"]).mkdir(parents=True, exist_ok=True)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(page)  # never returns
            running[pid] = (page, time.monotonic() + page["timeout"] + KILL_GRACE_S)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            page, _ = running.pop(pid)
            _ended(page, os.waitstatus_to_exitcode(status))
            continue
        now = time.monotonic()
        for pid, (page, deadline) in list(running.items()):
            if now > deadline:  # faulthandler could not end it: the kernel will
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                running.pop(pid)
                _ended(page, os.waitstatus_to_exitcode(status), killed=True)
        time.sleep(0.02)


def run_spawned(pages: list[dict[str, Any]]) -> None:
    """One fresh interpreter per page, one after the other (where forking is not safe)."""
    for page in pages:
        where_dir = Path(page["dir"])
        where_dir.mkdir(parents=True, exist_ok=True)
        spec = where_dir / "page-spec.json"
        _write_json(spec, {"mode": "inline", "pages": [page]})
        try:
            proc = subprocess.run(
                [sys.executable, __file__, str(spec)],
                stdin=subprocess.DEVNULL,
                timeout=page["timeout"] + KILL_GRACE_S,
                check=False,
            )
            _ended(page, proc.returncode)
        except subprocess.TimeoutExpired:
            _ended(page, -signal.SIGKILL, killed=True)


def _can_fork() -> bool:
    # macOS: system frameworks break in a child forked without exec
    return hasattr(os, "fork") and sys.platform != "darwin"


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    pages: list[dict[str, Any]] = spec["pages"]
    if spec.get("mode") == "inline":
        (page,) = pages
        return run_page(page)
    if _can_fork():
        preload(spec.get("preload", []))
        if threading.active_count() == 1:
            run_forked(pages, int(spec.get("jobs", 1)))
            return 0
        names = [t.name for t in threading.enumerate()]
        print(f"docs runner: threads {names} after preload: not forking", file=sys.stderr)
    run_spawned(pages)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
