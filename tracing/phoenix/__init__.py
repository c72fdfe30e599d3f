"""Arize Phoenix helpers: prices, a local server for tests and demos, and read-back.

- ``register_pricing(base_url, prices)``: register per-token prices for model names
  Phoenix does not know (self-hosted endpoints) so its cost equals agentflow's.
- ``PhoenixServer``: start ``phoenix serve`` on 127.0.0.1 in a temporary working dir.
- ``ensure_phoenix()``: install Phoenix into its own virtualenv; the ``phoenix`` path.
- ``get_spans``, ``trace_cost``, ``project_cost``: read spans and costs back.

Talks to Phoenix over HTTP only; never imports Phoenix itself.
"""

from __future__ import annotations

from tracing._errors import PhoenixError
from tracing.phoenix._install import agentflow_home, ensure_phoenix, phoenix_venv
from tracing.phoenix._pricing import MODEL_REFRESH_S, PriceLike, name_pattern, register_pricing
from tracing.phoenix._query import CostSummary, get_spans, project_cost, trace_cost
from tracing.phoenix._server import PhoenixServer

__all__ = [
    "MODEL_REFRESH_S",
    "CostSummary",
    "PhoenixError",
    "PhoenixServer",
    "PriceLike",
    "agentflow_home",
    "ensure_phoenix",
    "get_spans",
    "name_pattern",
    "phoenix_venv",
    "project_cost",
    "register_pricing",
    "trace_cost",
]
