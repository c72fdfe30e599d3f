"""Every ```python block in the docs and the README runs.

Each page's blocks run in order, in one namespace, in a process of its own whose working
directory is a temporary directory, so a page can build on its earlier blocks but never
on another page or on this test process. A block that raises fails the test with the
page and the block's first line; tracebacks point at the Markdown file's own lines.

The pages run in one runner (``tests/_docs_runner.py``, started once per session by the
``docs_results`` fixture): it imports litellm and the other slow modules once and forks a
child per page, so each page still starts from an untouched interpreter (no zoo, no
global OpenTelemetry provider, the test environment) without paying seconds of imports.

Blocks fenced as ``text``, ``bash``, ``toml`` (anything but ``python``/``py``) are not
run. A block that needs something no test machine has at hand (a real llama-server,
Phoenix) can opt out with ``<!-- docs-test: skip -->`` on the line before its fence.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import _docs_runner

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_MARKER = "<!-- docs-test: skip -->"
RUN_LANGUAGES = frozenset({"python", "py", "python3"})
PAGE_TIMEOUT_S = 120
RUNNER = Path(_docs_runner.__file__)
# pages run this many at a time (each in its own forked process)
DOCS_JOBS = min(2, os.cpu_count() or 1)
# imported once by the runner before it forks, instead of once per page; litellm alone
# takes seconds. Not litellm when TIKTOKEN_CACHE_DIR is set: agentflow must see it first.
PRELOAD = (
    *(() if "TIKTOKEN_CACHE_DIR" in os.environ else ("litellm",)),
    "openai",
    "httpx",
    "pydantic",
    "opentelemetry.sdk.trace",
    "budgets",
    "tracing",
    "agentflow",
    "agentflow.testing",
)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its first code line (1-based) and code."""

    language: str
    line: int
    code: str
    skipped: bool


def _language(info: str) -> str:
    """``python title="x.py"`` → ``python``; ``{.python .copy}`` → ``python``."""
    info = info.strip()
    if info.startswith("{"):
        match = re.search(r"\.([\w+-]+)", info)
        return match.group(1).lower() if match else ""
    return info.split(maxsplit=1)[0].lower() if info else ""


def parse_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order (indented fences included)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = _language(match["info"])
        previous = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
        start = i + 1
        j = start
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            j += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip()
            for line in lines[start:j]
        ]
        blocks.append(
            Block(
                language=language,
                line=start + 1,
                code=textwrap.dedent("\n".join(body)) + "\n",
                skipped=previous == SKIP_MARKER,
            )
        )
        i = j + 1
    return blocks


def runnable_blocks(path: Path) -> list[Block]:
    return [
        b
        for b in parse_blocks(path.read_text(encoding="utf-8"))
        if b.language in RUN_LANGUAGES and not b.skipped
    ]


def pages() -> list[Path]:
    found = sorted(DOCS.rglob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        found.append(readme)
    return found


@dataclass(frozen=True)
class PageResult:
    ok: bool
    message: str


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _runner_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # the string "True": "1" does not work
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _page_result(path: Path, work: Path, timeout: float, runner_log: str) -> PageResult:
    """What the runner left in ``work`` for ``path``, as a pass or a failure message."""
    shown = _shown(path)
    stdout, stderr = _read(work / "stdout.txt"), _read(work / "stderr.txt")
    try:
        result = json.loads((work / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # the runner itself ended before this page did
        status = "timeout" if _docs_runner.TIMEOUT_MARKER in stderr else "died"
        result = {"status": status, "exit": None}
        stderr += runner_log
    status = result["status"]
    if status == "ok":
        return PageResult(True, stdout)
    if status == "timeout":
        return PageResult(
            False, f"{shown}: its code did not finish in {timeout:.0f} s\n{stderr[-4000:]}"
        )
    if status == "failed":
        where = result["where"]
        head = f"the block at {where} failed (exit {result['exit']})"
    else:
        head = f"{shown}: its process ended (exit {result['exit']}) before its code finished"
    return PageResult(
        False, f"{head}\n--- stderr ---\n{stderr[-6000:]}\n--- stdout ---\n{stdout[-2000:]}"
    )


def run_pages(
    pages: dict[Path, Path],
    timeout: float = PAGE_TIMEOUT_S,
    jobs: int = DOCS_JOBS,
    preload: tuple[str, ...] | None = None,
) -> dict[Path, PageResult]:
    """Run each page's python blocks in a process of its own (see ``_docs_runner``), with
    ``pages[page]/cwd`` as its working directory; say per page which block failed and why.

    One runner imports ``preload`` once (by default ``PRELOAD``, or nothing for a single
    page, which would import it just once anyway) and forks a child per page, ``jobs`` at
    a time; where forking is not safe, every page gets an interpreter of its own.
    """
    if preload is None:
        preload = PRELOAD if len(pages) > 1 else ()
    specs = [
        {
            "page": _shown(path),
            "dir": str(work),
            "timeout": timeout,
            "blocks": [{"line": b.line, "code": b.code} for b in runnable_blocks(path)],
        }
        for path, work in pages.items()
    ]
    for work in pages.values():
        work.mkdir(parents=True, exist_ok=True)
    runner_dir = Path(tempfile.mkdtemp(prefix="docs-runner-"))
    spec_file = runner_dir / "spec.json"
    spec_file.write_text(
        json.dumps({"mode": "fork", "jobs": jobs, "preload": list(preload), "pages": specs}),
        encoding="utf-8",
    )
    # a page that hangs is stopped by the runner; this only bounds a runner that hangs
    budget = len(specs) * (timeout + _docs_runner.KILL_GRACE_S) + 120
    try:
        proc = subprocess.run(
            [sys.executable, str(RUNNER), str(spec_file)],
            cwd=runner_dir,
            env=_runner_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=budget,
            check=False,
        )
        log = f"--- runner (exit {proc.returncode}) ---\n{proc.stderr[-4000:]}"
    except subprocess.TimeoutExpired as err:
        out = err.stderr or b""
        tail = out.decode(errors="replace") if isinstance(out, bytes) else out
        log = f"--- runner killed after {budget:.0f} s ---\n{tail[-4000:]}"
    finally:
        shutil.rmtree(runner_dir, ignore_errors=True)
    return {path: _page_result(path, work, timeout, log) for path, work in pages.items()}


def run_page(path: Path, tmp: Path, timeout: float = PAGE_TIMEOUT_S) -> PageResult:
    """Run one page's python blocks in a process of its own, in ``tmp/cwd``."""
    return run_pages({path: tmp}, timeout=timeout)[path]


_PAGES = [p for p in pages() if runnable_blocks(p)]


@pytest.fixture(scope="session")
def docs_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[Path, PageResult]:
    """Every page this session runs (not the deselected ones), in one runner."""
    selected = [
        item.callspec.params["page"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_page_code_runs"
        and hasattr(item, "callspec")
    ]
    base = tmp_path_factory.mktemp("docs")
    return run_pages({page: base / str(i) for i, page in enumerate(selected)})


@pytest.mark.parametrize("page", _PAGES, ids=[str(p.relative_to(ROOT)) for p in _PAGES])
def test_page_code_runs(page: Path, docs_results: dict[Path, PageResult]) -> None:
    result = docs_results[page]
    if not result.ok:
        pytest.fail(result.message, pytrace=False)


def test_docs_have_code_to_run() -> None:
    # a broken collector would otherwise pass by running nothing
    assert DOCS / "getting-started.md" in _PAGES
    assert len(_PAGES) >= 3


def _first_block(path: Path, language: str) -> str:
    blocks = [b for b in parse_blocks(path.read_text(encoding="utf-8")) if b.language == language]
    assert blocks, f"{path.name} has no {language} block"
    return blocks[0].code


def test_getting_started_shows_the_readme_commands() -> None:
    # the getting-started page repeats the README's quickstart: the two commands, verbatim
    readme = ROOT / "README.md"
    assert readme.exists(), "README.md is missing"
    assert _first_block(DOCS / "getting-started.md", "bash") == _first_block(readme, "bash")


# --- the collector and runner themselves ---------------------------------------------

_SAMPLE = """\
# A page

```python
x = 1
```

```bash
exit 1
```

<!-- docs-test: skip -->
```python
raise SystemExit("needs a real llama-server")
```

1. In a list:

    ```python
    y = x + 1
    ```

~~~~ { .python title="t" }
assert y == 2
~~~~

```text
not python
```
"""


def test_parse_blocks_finds_languages_lines_and_skips() -> None:
    blocks = parse_blocks(_SAMPLE)
    assert [(b.language, b.line, b.skipped) for b in blocks] == [
        ("python", 4, False),
        ("bash", 8, False),
        ("python", 13, True),
        ("python", 19, False),
        ("python", 23, False),
        ("text", 27, False),
    ]
    assert blocks[3].code == "y = x + 1\n"  # de-indented out of the list item


def test_blocks_share_a_namespace_and_skips_are_not_run(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(_SAMPLE)
    result = run_page(page, tmp_path / "run")
    assert result.ok, result.message


def test_a_broken_block_fails_with_its_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text("# Broken\n\n```python\nok = True\n```\n\n```python\n\n1 / 0\n```\n")
    result = run_page(page, tmp_path / "run")
    assert not result.ok
    assert f"{page}:8" in result.message  # the block's first line
    assert f'File "{page}", line 9' in result.message  # the failing line itself
    assert "ZeroDivisionError" in result.message


def test_a_block_runs_in_a_scratch_directory_with_the_test_environment(tmp_path: Path) -> None:
    page = tmp_path / "env.md"
    page.write_text(
        "```python\n"
        "import os, pathlib\n"
        "assert os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] == 'True'\n"
        f"assert pathlib.Path.cwd() == pathlib.Path({str(tmp_path / 'run' / 'cwd')!r})\n"
        f"assert os.environ['AGENTFLOW_CACHE_DIR'].startswith({str(tmp_path)!r})\n"
        "```\n"
    )
    result = run_page(page, tmp_path / "run")
    assert result.ok, result.message


def test_a_page_that_hangs_fails(tmp_path: Path) -> None:
    page = tmp_path / "slow.md"
    page.write_text("```python\nimport time\ntime.sleep(30)\n```\n")
    result = run_page(page, tmp_path / "run", timeout=1)
    assert not result.ok
    assert "did not finish" in result.message


_LEAKY_PAGE = """\
```python
import os
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import agentflow as af

leaked = af.configure(zoo=af.ModelZoo(tiers=[af.Tier("t", endpoints=[af.Endpoint(model="m")])]))
trace.set_tracer_provider(TracerProvider())
os.environ["DOCS_TEST_LEAK"] = "1"
Path("leak.txt").write_text("left behind")
```
"""

_CLEAN_PAGE = """\
```python
import os
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import agentflow as af

assert "leaked" not in globals()
assert af.get_config().zoo is None
assert not isinstance(trace.get_tracer_provider(), TracerProvider)
trace.set_tracer_provider(TracerProvider())  # can be set: nobody did in this process
assert isinstance(trace.get_tracer_provider(), TracerProvider)
assert "DOCS_TEST_LEAK" not in os.environ
assert not Path("leak.txt").exists()
```
"""


def test_pages_share_a_runner_but_nothing_else(tmp_path: Path) -> None:
    # one runner, several pages: what a page leaves behind never reaches the next one
    leaky, clean, dies = tmp_path / "leaky.md", tmp_path / "clean.md", tmp_path / "dies.md"
    leaky.write_text(_LEAKY_PAGE)
    clean.write_text(_CLEAN_PAGE)
    dies.write_text("```python\nimport os\nos._exit(3)\n```\n")
    pages = {page: tmp_path / "run" / page.stem for page in (leaky, dies, clean)}
    # one at a time, in this order: the clean page runs after the others ended
    results = run_pages(pages, jobs=1, preload=("agentflow", "opentelemetry.sdk.trace"))
    assert results[leaky].ok, results[leaky].message
    assert results[clean].ok, results[clean].message
    assert not results[dies].ok
    assert "ended (exit 3) before its code finished" in results[dies].message


def test_a_runner_that_cannot_fork_safely_gives_each_page_an_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a preloaded module that starts a thread makes forking unsafe: the runner spawns
    (tmp_path / "docs_test_threaded.py").write_text(
        "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sample, broken = tmp_path / "sample.md", tmp_path / "broken.md"
    sample.write_text(_SAMPLE)
    # not preloaded (an AssertionError would say so), then the page's own error
    broken.write_text(
        "```python\nimport sys\nassert 'docs_test_threaded' not in sys.modules\n1 / 0\n```\n"
    )
    results = run_pages(
        {sample: tmp_path / "run" / "sample", broken: tmp_path / "run" / "broken"},
        preload=("docs_test_threaded",),
    )
    assert results[sample].ok, results[sample].message
    assert not results[broken].ok
    assert f"the block at {broken}:2 failed" in results[broken].message
    assert "ZeroDivisionError" in results[broken].message
