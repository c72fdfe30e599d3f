"""The two ported LangGraph tutorials in examples/, run as a user runs them: each starts
its own SmolLM2 replicas with tool calls (``serve_local(..., tools=True)``) and makes
real tool calls on them; the run report has a row per graph node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """Run ``examples/NAME`` with ``--json``; its stdout and the JSON it wrote."""
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return done.stdout, data


def report_rows(stdout: str) -> dict[str, list[str]]:
    """The step rows of the printed run reports: first column -> the row's cells."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in stdout.splitlines():
        cells = line.split()
        if cells[:2] == ["step", "kind"]:
            in_table = True
            continue
        if in_table and len(cells) >= 10 and cells[-1].endswith("s"):
            rows.setdefault(cells[0], cells)
        else:
            in_table = False
    return rows


def test_quickstart_react_agent_makes_a_real_tool_round_trip(tmp_path: Path) -> None:
    stdout, data = run_example("langgraph_quickstart.py", tmp_path)
    first, again = data["runs"]

    # the model asked for the tool, the tool ran, the model answered in text
    call, answer = first["calls"]
    (tool_call,) = call["tool_calls"]
    assert tool_call["name"] == "get_weather"
    city = tool_call["args"]["city"]
    assert isinstance(city, str)
    assert city
    assert first["tools"] == [{"name": "get_weather", "content": f"It's always sunny in {city}!"}]
    assert answer["tool_calls"] == []
    assert answer["text"].strip()
    assert not call["cache_hit"]
    assert not answer["cache_hit"]

    # the agent node is a step with its own row, tier and cost; rows add up to the totals
    assert set(first["steps"]) == {"agent"}
    agent = first["steps"]["agent"]
    assert agent["calls"] == 2
    assert agent["tiers"] == ["local"]
    assert agent["cost_usd"] > 0
    assert agent["cost_usd"] == pytest.approx(first["total"]["cost_usd"])

    # asked again: the agent node's exact cache answers both calls, at no cost
    assert [c["cache_hit"] for c in again["calls"]] == [True, True]
    assert again["calls"][0]["tool_calls"] == call["tool_calls"]
    assert again["steps"]["agent"]["cache_hits"] == 2
    assert again["total"]["cost_usd"] == 0

    assert "agent" in report_rows(stdout)
    assert "get_weather() -> " in stdout
    assert "totals: 2 model calls, 2 cache hits" in stdout


def test_plan_and_execute_runs_its_nodes_with_tool_calls(tmp_path: Path) -> None:
    stdout, data = run_example("langgraph_plan_execute.py", tmp_path, "--max-calls", "7")

    nodes = [u["node"] for u in data["updates"]]
    assert nodes[:3] == ["planner", "agent", "replan"]
    assert data["searches"], "the executor made no tool call"
    assert all(s["query"] for s in data["searches"])

    steps = data["steps"]
    assert {"planner", "agent", "replan"} <= set(steps)
    assert steps["planner"]["calls"] == 1
    # each executed task: a required tool call, then the answer with its result
    assert steps["agent"]["calls"] == 2 * len(data["searches"])
    for step in steps.values():
        assert step["tiers"] == ["local"]
        assert step["cost_usd"] > 0
    assert sum(s["calls"] for s in steps.values()) == data["total"]["calls"] <= 7
    assert sum(s["cost_usd"] for s in steps.values()) == pytest.approx(data["total"]["cost_usd"])

    rows = report_rows(stdout)
    assert {"planner", "agent", "replan"} <= set(rows)
    assert rows["planner"][2] == "local"
