"""``agentflow report --html`` opened in a real headless browser (Debian ``chromium``):
the page is screenshotted and its charts' colours are on the picture, and the DOM the
browser built has every section, chart and drill-down the report promises. Without
chromium this fails: ``.ci/install-system`` installs it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from agentflow.cli import _report as _report_cli
from tests._workload import ANSWER_CALLS, CLASSIFY_CALLS, Workload, record

SECTIONS = (
    "totals",
    "timeline",
    "utilisation",
    "savings",
    "escalation",
    "latency",
    "cost-per-step",
    "endpoints",
    "tables",
    "runs",
)
WIDTH, HEIGHT = 1200, 3200
BLUE, ORANGE, GREEN = (0x4E, 0x79, 0xA7), (0xF2, 0x8E, 0x2B), (0x59, 0xA1, 0x4F)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: run .ci/install-system (Debian package chromium)")
    return found


def _browse(page: Path, tmp: Path, *what: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # tests may run as root in containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *what,
        page.as_uri(),
    ]
    env = {**os.environ, "HOME": str(tmp)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory, _session_exporter: InMemorySpanExporter
) -> tuple[Path, dict[str, Any], Workload]:
    """The recorded burst's page and its --json object, over the burst's window."""
    tmp = tmp_path_factory.mktemp("report-html")
    workload = record(tmp)
    page = tmp / "report.html"
    window = ["--since", f"{workload.since_s:.3f}", "--until", f"{workload.until_s:.3f}"]
    parser = argparse.ArgumentParser(prog="agentflow")
    _report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(workload.path), *window, "--html", str(page)])
    assert args.func(args) == 0
    args = parser.parse_args(["report", str(workload.path), *window, "--json"])
    out = tmp / "report.json"
    with out.open("w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        assert args.func(args) == 0
    return page, json.loads(out.read_text(encoding="utf-8")), workload


class _Dom(HTMLParser):
    """Counts, per section id, the SVG bars (``rect.bar``), calls (``rect.call``),
    ``<svg>`` charts and ``<details>`` drill-downs, and keeps the text."""

    def __init__(self) -> None:
        super().__init__()
        self.section = ""
        self.sections: list[str] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "section":
            self.section = attr.get("id") or ""
            self.sections.append(self.section)
        name = f"{tag}.{attr['class']}" if attr.get("class") else tag
        key = (self.section, name)
        self.counts[key] = self.counts.get(key, 0) + 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def count(self, section: str, name: str) -> int:
        return self.counts.get((section, name), 0)


def test_page_screenshot_shows_the_charts(
    report: tuple[Path, dict[str, Any], Workload], tmp_path: Path
) -> None:
    page, _, _ = report
    shot = tmp_path / "report.png"
    _browse(page, tmp_path, f"--screenshot={shot}")
    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        counted = image.convert("RGB").getcolors(WIDTH * HEIGHT)
    assert counted is not None
    colours: dict[Any, int] = {colour: n for n, colour in counted}
    # each chart colour covers real area: the browser drew the SVG bars
    for colour, least in ((BLUE, 2000), (ORANGE, 2000), (GREEN, 2000)):
        assert colours.get(colour, 0) >= least, (colour, colours.get(colour))
    white = colours.get((255, 255, 255), 0)
    assert white < WIDTH * HEIGHT * 0.95  # not a blank page


def test_page_has_every_section_chart_and_run(
    report: tuple[Path, dict[str, Any], Workload], tmp_path: Path
) -> None:
    page, data, workload = report
    dom = _Dom()
    dom.feed(_browse(page, tmp_path, "--dump-dom").stdout)
    assert tuple(dom.sections) == SECTIONS
    # cost and calls over time: one bar per bucket in each of the two charts
    assert dom.count("timeline", "rect.bar") == 2 * len(data["traffic"]["buckets"])
    # utilisation: one busy bar per GPU-hour endpoint
    gpu = [n for n, e in data["endpoints"].items() if e["pricing"] == "gpu_hour"]
    assert len(gpu) == 2
    assert dom.count("utilisation", "rect.bar") == len(gpu)
    text = " ".join(dom.text)
    for name in gpu:
        assert f"{data['endpoints'][name]['utilisation']:.1%} busy" in text
    assert dom.count("savings", "rect.bar") == 4  # prefix, response, semantic cache, routing
    assert dom.count("escalation", "table.escalation") == 1  # the escalation tax per step
    # latency: p50, p95 and p99 bars per step and per tier
    assert dom.count("latency", "rect.bar") == 3 * (len(data["steps"]) + len(data["tiers"]))
    assert dom.count("endpoints", "table.economics") == 1
    # the drill-down: one run in the window, opened, its calls drawn up to the cap
    assert dom.count("runs", "details.run") == 1
    calls = CLASSIFY_CALLS + ANSWER_CALLS + 3
    assert data["runs"]["burst"]["calls"] == calls == len(workload.completions)
    assert dom.count("runs", "rect.call") == min(calls, 200)
    assert f"{calls - 200} more calls not drawn" in text
