"""Every ```python block in the docs and the README runs.

Each page's blocks run in order, in one namespace, in a fresh interpreter whose working
directory is a temporary directory, so a page can build on its earlier blocks but never
on another page or on this test process. A block that raises fails the test with the
page and the block's first line; tracebacks point at the Markdown file's own lines.

Blocks fenced as ``text``, ``bash``, ``toml`` (anything but ``python``/``py``) are not
run. A block that needs something no test machine has at hand (a real llama-server,
Phoenix) can opt out with ``<!-- docs-test: skip -->`` on the line before its fence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_MARKER = "<!-- docs-test: skip -->"
RUN_LANGUAGES = frozenset({"python", "py", "python3"})
PAGE_TIMEOUT_S = 120

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


# Runs in the child interpreter: every block of one page, in order, in one namespace.
# Each block is compiled with its Markdown path and padded to its line number, so a
# traceback names the page and the line in it.
_RUNNER = r"""
import json, sys, traceback
spec = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
for block in spec["blocks"]:
    source = "\n" * (block["line"] - 1) + block["code"]
    try:
        exec(compile(source, spec["page"], "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"DOCS-TEST-FAILED {spec['page']}:{block['line']}", file=sys.stderr)
        sys.exit(1)
"""


@dataclass(frozen=True)
class PageResult:
    ok: bool
    message: str


def run_page(path: Path, tmp: Path, timeout: float = PAGE_TIMEOUT_S) -> PageResult:
    """Run a page's python blocks in a subprocess; say which block failed and why."""
    blocks = runnable_blocks(path)
    try:
        shown = str(path.relative_to(ROOT))
    except ValueError:
        shown = str(path)
    work = tmp / "cwd"
    work.mkdir(parents=True, exist_ok=True)
    spec = tmp / "blocks.json"
    spec.write_text(
        json.dumps({"page": shown, "blocks": [{"line": b.line, "code": b.code} for b in blocks]}),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # the string "True": "1" does not work
        AGENTFLOW_CACHE_DIR=str(tmp / "agentflow-cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        PYTHONDONTWRITEBYTECODE="1",
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(spec)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        out = (err.stderr or b"")[-4000:]
        tail = out.decode(errors="replace") if isinstance(out, bytes) else out
        return PageResult(False, f"{shown}: its code did not finish in {timeout:.0f} s\n{tail}")
    if proc.returncode != 0:
        failed = re.search(r"DOCS-TEST-FAILED (\S+)", proc.stderr)
        where = failed.group(1) if failed else shown
        return PageResult(
            False,
            f"the block at {where} failed (exit {proc.returncode})\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout[-2000:]}",
        )
    return PageResult(True, proc.stdout)


_PAGES = [p for p in pages() if runnable_blocks(p)]


@pytest.mark.parametrize("page", _PAGES, ids=[str(p.relative_to(ROOT)) for p in _PAGES])
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    result = run_page(page, tmp_path)
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
