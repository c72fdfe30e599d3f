"""Teach Phoenix the price of models it does not know (self-hosted ones above all).

Phoenix ignores ``llm.cost.*`` on spans: it prices every LLM span itself when the span
arrives, from ``llm.model_name`` (matched against each model's ``namePattern`` regex) and
``llm.token_count.*``. Its GraphQL ``createModel`` / ``updateModel`` mutations take
prices as ``costPerMillionTokens`` per token type: ``input``, ``cache_read`` and
``cache_write`` (kind PROMPT) and ``output`` (kind COMPLETION). Cached prompt tokens are
charged at ``cache_read``, cache-write tokens at ``cache_write``, the rest of the prompt
at ``input``, exactly as ``budgets`` does (Phoenix charges a prompt token type that has
no price of its own at ``input``).

Phoenix reloads its model table every 5 seconds and never re-prices stored spans, so
pricing must be registered before the spans arrive: ``register_pricing`` waits out that
reload after a change unless ``wait=False``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, SupportsFloat, runtime_checkable

from tracing._errors import PhoenixError
from tracing.phoenix._http import graphql

__all__ = ["MODEL_REFRESH_S", "PriceLike", "name_pattern", "register_pricing"]

# Phoenix's GenerativeModelStore refreshes every 5 s; a little margin on top.
MODEL_REFRESH_S: Final = 6.0
_MILLION: Final = 1_000_000


@runtime_checkable
class PriceLike(Protocol):
    """USD per million tokens; ``cached_input_per_mtok`` and ``cache_write_per_mtok`` may
    also be present (None or absent = the input price). ``budgets.TokenPricing`` is one."""

    @property
    def input_per_mtok(self) -> SupportsFloat: ...

    @property
    def output_per_mtok(self) -> SupportsFloat: ...


@dataclass(frozen=True)
class _Price:
    input: float
    output: float
    cache_read: float | None
    cache_write: float | None = None

    def costs(self) -> list[tuple[str, str, float]]:
        """(token type, kind, USD per million tokens) as Phoenix stores them."""
        rows = [("input", "PROMPT", self.input), ("output", "COMPLETION", self.output)]
        if self.cache_read is not None:
            rows.append(("cache_read", "PROMPT", self.cache_read))
        if self.cache_write is not None:
            rows.append(("cache_write", "PROMPT", self.cache_write))
        return rows


def _price(name: str, value: object) -> _Price:
    if not isinstance(value, PriceLike | Mapping) and callable(getattr(value, "per_token", None)):
        value = value.per_token()  # type: ignore[attr-defined]  # e.g. budgets.GpuHourPricing

    def field(key: str, required: bool) -> float | None:
        raw = value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)
        if raw is None:
            if required:
                raise TypeError(
                    f"price for {name!r} has no {key}: pass an object with input_per_mtok, "
                    "output_per_mtok and optionally cached_input_per_mtok (USD per million "
                    "tokens), e.g. budgets.TokenPricing."
                )
            return None
        number = float(raw)
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"price for {name!r}: {key}={raw!r} must be a finite number >= 0.")
        return number

    input_price = field("input_per_mtok", True)
    output_price = field("output_per_mtok", True)
    assert input_price is not None
    assert output_price is not None
    return _Price(
        input_price,
        output_price,
        field("cached_input_per_mtok", False),
        field("cache_write_per_mtok", False),
    )


def name_pattern(model_name: str) -> str:
    """The Phoenix ``namePattern`` matching exactly ``model_name``: ``^escaped$``."""
    return f"^{re.escape(model_name)}$"


_SCHEMA_QUERY: Final = """
query { input: __type(name: "TokenPriceInput") { inputFields { name } } }
"""

_MODELS_QUERY: Final = """
query ($after: String) {
  generativeModels(first: 500, after: $after) {
    edges { node { id name namePattern provider kind
                   tokenPrices { tokenType kind costPerMillionTokens } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

_CREATE: Final = """
mutation ($input: CreateModelMutationInput!) { createModel(input: $input) { model { id } } }
"""

_UPDATE: Final = """
mutation ($input: UpdateModelMutationInput!) { updateModel(input: $input) { model { id } } }
"""


def _check_schema(base_url: str, api_key: str | None, timeout: float) -> None:
    data = graphql(base_url, _SCHEMA_QUERY, api_key=api_key, timeout=timeout)
    fields = {f["name"] for f in ((data.get("input") or {}).get("inputFields") or ())}
    if not {"tokenType", "costPerMillionTokens", "kind"} <= fields:
        raise PhoenixError(
            "this Phoenix's GraphQL API has no TokenPriceInput(tokenType, "
            f"costPerMillionTokens, kind) (it has {sorted(fields) or 'none'}); upgrade "
            "arize-phoenix (tracing.phoenix.ensure_phoenix installs a current one)."
        )


def _custom_models(base_url: str, api_key: str | None, timeout: float) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        data = graphql(base_url, _MODELS_QUERY, {"after": after}, api_key=api_key, timeout=timeout)
        connection = data["generativeModels"]
        models.extend(
            edge["node"] for edge in connection["edges"] if edge["node"]["kind"] == "CUSTOM"
        )
        page = connection["pageInfo"]
        if not page["hasNextPage"]:
            return models
        after = page["endCursor"]


def _same_prices(existing: dict[str, Any], wanted: _Price) -> bool:
    have = {
        (p["tokenType"], p["kind"]): float(p["costPerMillionTokens"])
        for p in existing.get("tokenPrices") or ()
    }
    want = {(t, k): v for t, k, v in wanted.costs()}
    if have.keys() != want.keys():
        return False
    return all(math.isclose(have[k], want[k], rel_tol=1e-12, abs_tol=1e-15) for k in want)


def register_pricing(
    base_url: str,
    prices: Mapping[str, PriceLike | Mapping[str, Any]],
    *,
    timeout: float = 10.0,
    provider: str | None = None,
    api_key: str | None = None,
    wait: bool = True,
) -> list[str]:
    """Register ``{model name as on spans (llm.model_name): price}`` with Phoenix.

    Each model gets a custom Phoenix model named after it whose ``namePattern`` is
    ``^<regex-escaped name>$`` and whose prices are ``input``, ``output`` and, when the
    price has ``cached_input_per_mtok``, ``cache_read``, when it has
    ``cache_write_per_mtok``, ``cache_write`` (USD per million tokens).
    Idempotent: a model already registered with the same pattern and prices is left
    alone, one with other prices is updated. ``provider=None`` registers
    provider-agnostic models (they match spans from any ``llm.provider``).

    Returns the names created or updated (empty when nothing changed). When something
    changed and ``wait`` is true, waits ``MODEL_REFRESH_S`` for Phoenix to load the new
    prices, so spans sent after this returns are priced with them.
    """
    wanted = {name: _price(name, value) for name, value in prices.items()}
    if not wanted:
        return []
    base_url = base_url.rstrip("/")
    _check_schema(base_url, api_key, timeout)
    existing = _custom_models(base_url, api_key, timeout)
    changed: list[str] = []
    for name, price in wanted.items():
        pattern = name_pattern(name)
        model_input: dict[str, Any] = {
            "name": name,
            "provider": provider,
            "namePattern": pattern,
            "costs": [
                {"tokenType": t, "kind": k, "costPerMillionTokens": v} for t, k, v in price.costs()
            ],
        }
        match = next((m for m in existing if m["name"] == name), None) or next(
            (
                m
                for m in existing
                if m["namePattern"] == pattern and (m["provider"] or None) == provider
            ),
            None,
        )
        if match is None:
            graphql(base_url, _CREATE, {"input": model_input}, api_key=api_key, timeout=timeout)
        elif (
            match["name"] == name
            and match["namePattern"] == pattern
            and (match["provider"] or None) == provider
            and _same_prices(match, price)
        ):
            continue
        else:
            model_input["id"] = match["id"]
            graphql(base_url, _UPDATE, {"input": model_input}, api_key=api_key, timeout=timeout)
        changed.append(name)
    if changed and wait:
        time.sleep(MODEL_REFRESH_S)
    return changed
