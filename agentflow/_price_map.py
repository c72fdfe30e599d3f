"""API prices from litellm's price map, read without importing litellm.

litellm ships its model price map as a JSON file inside the package
(``model_prices_and_context_window_backup.json``): USD per token for input, output,
cache reads (``cache_read_input_token_cost``) and cache writes
(``cache_creation_input_token_cost``). ``litellm_pricing(model)`` turns one entry into a
``TokenPricing``; ``Endpoint(pricing="litellm")`` does it for the endpoint's model. The
file is found with ``importlib.util.find_spec`` and parsed once, so ``import litellm``
(seconds) never runs for it. The prices are those of the installed litellm version
(pinned in ``requirements/constraints.txt``), not fetched from anywhere.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentflow._errors import ConfigError
from budgets import TokenPricing

__all__ = ["litellm_pricing", "price_map_path"]

_FILE = "model_prices_and_context_window_backup.json"
_MILLION = Decimal(1_000_000)
_FIELDS = {  # TokenPricing field <- litellm's per-token field
    "input_per_mtok": "input_cost_per_token",
    "output_per_mtok": "output_cost_per_token",
    "cached_input_per_mtok": "cache_read_input_token_cost",
    "cache_write_per_mtok": "cache_creation_input_token_cost",
}


def price_map_path() -> Path:
    """Where the installed litellm keeps its price map (``ConfigError`` without litellm)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "pricing='litellm' reads litellm's price map, but litellm is not installed; "
            "install agentflow's dependencies (pip install agentflow) or give "
            "pricing=TokenPricing(input_per_mtok=..., output_per_mtok=...)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _FILE
    if not path.is_file():
        raise ConfigError(
            f"the installed litellm has no price map at {str(path)!r}; give "
            "pricing=TokenPricing(input_per_mtok=..., output_per_mtok=...)"
        )
    return path


@functools.cache
def _price_map() -> dict[str, Any]:
    data = json.loads(price_map_path().read_text(encoding="utf-8"))
    data.pop("sample_spec", None)  # litellm's documentation entry, not a model
    return dict(data)


def _entry(model: str) -> dict[str, Any] | None:
    """The map's entry for ``model``: its exact key, else the name after the provider
    prefix when that entry is the same provider's (``anthropic/claude-haiku-4-5``)."""
    prices = _price_map()
    if isinstance(prices.get(model), dict):
        return dict(prices[model])
    provider, slash, name = model.partition("/")
    found = prices.get(name) if slash else None
    if isinstance(found, dict) and found.get("litellm_provider") in (provider, None):
        return dict(found)
    return None


def _per_mtok(per_token: Any) -> Decimal:
    # str() of the float keeps litellm's decimal digits (1.25e-06, not 1.2499999...e-06)
    price = (Decimal(str(per_token)) * _MILLION).normalize()
    # normalize() writes 10 as 1E+1: keep whole dollars whole
    return price.quantize(Decimal(1)) if price == price.to_integral_value() else price


def litellm_pricing(model: str) -> TokenPricing:
    """``model``'s token prices from litellm's price map: input, output, and where the
    provider has them, cache reads and cache writes. ``ConfigError`` naming the closest
    models when the map has no such model or no token prices for it."""
    entry = _entry(model)
    if entry is None:
        names = list(_price_map())
        name = model.partition("/")[2] or model
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.75)
        close += [c for c in difflib.get_close_matches(model, names, n=3) if c not in close]
        hint = f" (closest: {', '.join(map(repr, close[:3]))})" if close else ""
        raise ConfigError(
            f"litellm's price map has no model {model!r}{hint}. Give the model string "
            "litellm prices (e.g. 'anthropic/claude-haiku-4-5'); for your own or a "
            "self-hosted model give pricing=TokenPricing(input_per_mtok=..., "
            "output_per_mtok=...) or GpuHourPricing(...)"
        )
    missing = [
        litellm_field
        for field, litellm_field in _FIELDS.items()
        if field in ("input_per_mtok", "output_per_mtok") and entry.get(litellm_field) is None
    ]
    if missing:
        raise ConfigError(
            f"litellm's price map has no {' or '.join(missing)} for {model!r} (it is not "
            "priced per token there); give pricing=TokenPricing(...) or GpuHourPricing(...)"
        )
    prices = {
        field: _per_mtok(entry[litellm_field])
        for field, litellm_field in _FIELDS.items()
        if entry.get(litellm_field) is not None
    }
    return TokenPricing.model_validate(prices)
