"""The public surface of ``budgets`` and the dependency rules it keeps."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import budgets

PUBLIC = {
    "LIMIT_NAMES",
    "Budget",
    "BudgetAlert",
    "BudgetError",
    "BudgetExceeded",
    "Cost",
    "DiskCacheBackend",
    "GpuHourPricing",
    "Hold",
    "Ledger",
    "LedgerBackend",
    "LedgerCorrupted",
    "MemoryBackend",
    "Pricing",
    "RedisBackend",
    "Remaining",
    "Reservation",
    "ReservationError",
    "Spend",
    "TokenCounter",
    "TokenPricing",
    "Usage",
    "areserve_all",
    "reserve_all",
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(budgets.__all__) == PUBLIC
    assert len(budgets.__all__) == len(PUBLIC)
    exported = {name for name in vars(budgets) if not name.startswith("_")}
    assert exported == PUBLIC


def test_import_is_light() -> None:
    code = (
        "import json, sys, budgets; print(json.dumps(sorted(m for m in "
        "('tiktoken', 'diskcache', 'redis', 'httpx', 'litellm', 'agentflow', 'tracing') "
        "if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_budgets_never_imports_agentflow_tracing_or_litellm() -> None:
    forbidden = {"agentflow", "tracing", "litellm"}
    root = Path(budgets.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert offenders == []


def test_agentflow_can_raise_its_own_subclass() -> None:
    class AppBudgetExceeded(budgets.BudgetExceeded):
        pass

    ledger = budgets.Ledger(budgets.Budget(max_calls=1), name="run 'r'", error=AppBudgetExceeded)
    ledger.reserve()
    with pytest.raises(AppBudgetExceeded) as refused:
        ledger.reserve()
    exc = refused.value
    assert (exc.budget, exc.limit, exc.asked, exc.remaining) == ("run 'r'", "max_calls", 1, 0)
    assert "Raise the limit" in str(exc)
