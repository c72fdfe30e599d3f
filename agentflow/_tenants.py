"""Tenant budgets: what ``af.configure(tenant_budget=...)`` takes and the ledgers it makes.

One budget, several (a daily dollar budget beside requests- and tokens-per-minute
limits), a mapping ``{user_id: budget(s)}`` (``"*"``: every other user id) or a function
``user_id -> budget(s) | None``. Each budget of a tenant is its own ledger on its own key
(``tenant:<user_id>``, then ``tenant:<user_id>:2``, ...), all reserved before a call and
settled after it by the budget stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeAlias

from agentflow._errors import BudgetExceededError, ConfigError
from agentflow._validate import describe
from budgets import Budget, Ledger, LedgerBackend

__all__ = [
    "DEFAULT_TENANT",
    "TenantBudget",
    "TenantBudgets",
    "check_tenant_budget",
    "resolve",
    "tenant_ledgers",
]

TenantBudgets: TypeAlias = Budget | Sequence[Budget]
"""One budget, or several (e.g. a daily dollar budget and a per-minute call limit)."""
TenantBudget: TypeAlias = (
    TenantBudgets | Mapping[str, TenantBudgets | None] | Callable[[str], TenantBudgets | None]
)
"""What ``af.configure(tenant_budget=...)`` takes: the same budgets for every tenant, a
mapping ``{user_id: budgets}`` (``"*"``: everyone else) or a function of the user id."""

DEFAULT_TENANT = "*"
"""The key of a ``tenant_budget`` mapping that applies to user ids it does not name."""

_HINT = (
    "give a budgets.Budget (e.g. Budget(max_usd=5, window=timedelta(days=1))), a list of "
    "them (e.g. a daily budget and Budget(max_calls=60, window=timedelta(minutes=1))), a "
    "mapping {user_id: budget(s)} with '*' for everyone else, or a function "
    "user_id -> budget(s) or None"
)


def _budgets_ok(value: Any) -> bool:
    """A Budget, or a non-empty list/tuple of Budgets."""
    if isinstance(value, Budget):
        return True
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) > 0
        and all(isinstance(item, Budget) for item in value)
    )


def check_tenant_budget(value: Any) -> TenantBudget:
    """``value`` if it is a shape ``tenant_budget`` takes, else ``ConfigError``."""
    if _budgets_ok(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, Mapping):
        for user_id, budgets in value.items():
            if not isinstance(user_id, str):
                raise ConfigError(
                    f"tenant_budget's keys are user ids (str), got {describe(user_id)}; " + _HINT
                )
            if budgets is not None and not _budgets_ok(budgets):
                hint = _HINT
                if user_id in Budget.model_fields:
                    hint = f"did you mean tenant_budget=Budget({user_id}=...)? Else " + hint
                raise ConfigError(
                    f"tenant_budget[{user_id!r}] must be a budgets.Budget, a list of them "
                    f"or None, got {describe(budgets)}; {hint}"
                )
        return value
    if callable(value) and not isinstance(value, type):
        return value  # type: ignore[no-any-return]
    raise ConfigError(f"tenant_budget must be a budgets.Budget, got {describe(value)}; " + _HINT)


def resolve(tenant_budget: TenantBudget | None, user_id: str | None) -> tuple[Budget, ...]:
    """The budgets that apply to ``user_id`` (none without a user id)."""
    if tenant_budget is None or user_id is None:
        return ()
    chosen: Any = tenant_budget
    if isinstance(chosen, Mapping):
        chosen = chosen.get(user_id, chosen.get(DEFAULT_TENANT))
    elif callable(chosen):
        chosen = chosen(user_id)
        if chosen is not None and not _budgets_ok(chosen):
            raise ConfigError(
                f"the tenant_budget function returned {describe(chosen)} for user id "
                f"{user_id!r}; return a budgets.Budget, a list of them, or None for no "
                "tenant budget"
            )
    if chosen is None:
        return ()
    return (chosen,) if isinstance(chosen, Budget) else tuple(chosen)


def _per(window: timedelta) -> str:
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if window == timedelta(seconds=length):
            return f"per {unit}"
    return f"per {window.total_seconds():g} s"


def tenant_ledgers(budgets: Sequence[Budget], user_id: str, backend: LedgerBackend) -> list[Ledger]:
    """One ledger per budget: ``tenant:<user_id>`` for the first (named ``tenant 'u1'
    budget`` when it is alone), ``tenant:<user_id>:2``, ``:3``... for the next ones
    (named ``tenant 'u1' budget #2 (per minute)``)."""
    ledgers: list[Ledger] = []
    for number, budget in enumerate(budgets, start=1):
        name, key = f"tenant {user_id!r} budget", f"tenant:{user_id}"
        if len(budgets) > 1:
            name += f" #{number}" + (f" ({_per(budget.window)})" if budget.window else "")
            key += "" if number == 1 else f":{number}"
        ledgers.append(
            Ledger(budget, name=name, backend=backend, key=key, error=BudgetExceededError)
        )
    return ledgers
