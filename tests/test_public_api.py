"""The three import surfaces: sorted ``__all__`` whose names all resolve, one error root,
cheap imports and the one-way dependency arrows of the design."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import agentflow
import agentflow.testing
import budgets
import tracing

ROOT = Path(__file__).resolve().parent.parent
MODULES = [agentflow, budgets, tracing, agentflow.testing]


def _isort_key(name: str) -> tuple[int, list[object]]:
    """The order ruff's RUF022 keeps (isort style): SCREAMING_SNAKE_CASE, then CamelCase,
    then everything else; natural order within each group."""
    if name.isupper() or (name.upper() == name and any(c.isalpha() for c in name)):
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural: list[object] = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return group, natural


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_unique_and_resolves(module: types.ModuleType) -> None:
    names = list(module.__all__)
    assert names, module.__name__
    assert len(names) == len(set(names)), "duplicates in __all__"
    assert names == sorted(names, key=_isort_key), f"{module.__name__}.__all__ is not sorted"
    for name in names:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_public_object_of_the_package_is_in_all(module: types.ModuleType) -> None:
    package = module.__name__.split(".")[0]
    missing = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and str(getattr(value, "__module__", "")).split(".")[0] == package
        and name not in module.__all__
    ]
    assert missing == []


def test_names_the_design_relies_on() -> None:
    for name in (
        "ModelZoo",
        "Tier",
        "Endpoint",
        "configure",
        "step",
        "plan",
        "retrieve",
        "tool",
        "verify",
        "run",
        "complete",
        "acomplete",
        "embed",
        "aembed",
        "Completion",
        "Escalate",
        "AgentflowError",
        "CallError",
        "BudgetExceededError",
    ):
        assert name in agentflow.__all__, name
    for name in (
        "Budget",
        "BudgetExceeded",
        "TokenPricing",
        "GpuHourPricing",
        "TokenCounter",
        "Usage",
        "Cost",
    ):
        assert name in budgets.__all__, name
    assert "setup" in tracing.__all__


def test_version_is_lazy_and_unknown_names_fail() -> None:
    assert isinstance(agentflow.__version__, str)
    assert agentflow.__version__
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = agentflow.no_such_name  # type: ignore[attr-defined]


def test_every_exported_error_has_one_root() -> None:
    errors = [
        getattr(agentflow, n)
        for n in agentflow.__all__
        if isinstance(getattr(agentflow, n), type) and issubclass(getattr(agentflow, n), Exception)
    ]
    assert len(errors) >= 8
    for err in errors:
        assert issubclass(err, agentflow.AgentflowError), err
    assert issubclass(agentflow.BudgetExceededError, budgets.BudgetExceeded)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_import_agentflow_does_not_import_litellm() -> None:
    result = _python(
        "import agentflow, sys\n"
        "heavy = [m for m in ('litellm', 'openai', 'langgraph') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert 'opentelemetry.sdk' not in sys.modules, 'import configured the OTel SDK'\n"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("budgets", ("agentflow", "tracing", "litellm")),
        ("tracing", ("agentflow", "budgets", "litellm")),
    ],
)
def test_dependency_arrows_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    result = _python(
        f"import {package}, sys\n"
        f"bad = [m for m in {forbidden!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    assert result.returncode == 0, result.stderr


def test_packages_ship_py_typed() -> None:
    for module in (agentflow, budgets, tracing):
        assert module.__file__ is not None
        assert (Path(module.__file__).parent / "py.typed").is_file(), module.__name__
