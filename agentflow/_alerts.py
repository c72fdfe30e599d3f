"""Budget alerts, told three ways: a span event, a metric and the user's callback.

The ledger decides *whether* a threshold fires (``budgets.Ledger.alerts_due``: once per
ledger key, window, limit and threshold, claimed atomically in the backend). This module
says it: an ``agentflow.budget.alert`` event on the current span, one count on the
``agentflow.budget.alerts`` counter, and ``af.configure(on_budget_alert=...)``'s callback.
A callback that raises is logged and never breaks the call that crossed the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry import trace

from agentflow._config import get_config
from budgets import BudgetAlert
from tracing._metrics import record_budget_alert

__all__ = ["ALERT_EVENT", "announce", "scope_of"]

log = logging.getLogger("agentflow.budget")

ALERT_EVENT = "agentflow.budget.alert"
"""The span event's name."""

_SCOPES = ("tenant", "run", "step")


def scope_of(alert: BudgetAlert) -> str:
    """``tenant``, ``run`` or ``step`` (from the ledger's name), else ``other``."""
    first = alert.budget.split(" ", 1)[0]
    return first if first in _SCOPES else "other"


def announce(alerts: Sequence[BudgetAlert]) -> None:
    """Tell of each alert: span event, metric, callback (in that order)."""
    if not alerts:
        return
    span = trace.get_current_span()
    callback = get_config().on_budget_alert
    for alert in alerts:
        spent = float(alert.spent)
        maximum = float(alert.maximum)
        span.add_event(
            ALERT_EVENT,
            {
                "agentflow.budget.name": alert.budget,
                "agentflow.budget.key": alert.key,
                "agentflow.budget.scope": scope_of(alert),
                "agentflow.budget.limit": alert.limit,
                "agentflow.budget.threshold": alert.threshold,
                "agentflow.budget.spent": spent,
                "agentflow.budget.maximum": maximum,
            },
        )
        record_budget_alert(scope_of(alert), alert.limit, alert.threshold)
        if callback is None:
            log.info("%s", alert)
            continue
        try:
            callback(alert)
        except Exception:
            log.exception("on_budget_alert raised on %s; the call goes on", alert)
