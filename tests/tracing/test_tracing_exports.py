"""The public surface is exactly ``__all__``, sorted, and every name resolves."""

from __future__ import annotations

from types import ModuleType

import pytest

import tracing
import tracing.phoenix


@pytest.mark.parametrize("module", [tracing, tracing.phoenix])
def test_all_is_sorted_and_resolves(module: ModuleType) -> None:
    names = list(module.__all__)
    # ruff's (isort's) order: CONSTANTS, then Classes, then functions and modules.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    for name in names:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("module", [tracing, tracing.phoenix])
def test_no_public_name_is_missing_from_all(module: ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    } - {"annotations", "TYPE_CHECKING", "Any"}
    assert public <= set(module.__all__)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tracing.nope
