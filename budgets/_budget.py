"""Budget: the limits a step, a run or a tenant may spend.

A ``Budget`` is a plain, frozen description; the ``Ledger`` enforces it. Limits are
validated when the budget is built (at decoration or configure time), so a zero, a
negative number or a typo fails early with a message that says what to write instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = ["LIMIT_NAMES", "Budget"]

LIMIT_NAMES = ("max_usd", "max_input_tokens", "max_output_tokens", "max_calls")
"""The limits in the order the ledger checks them (the first one that refuses is named)."""


class Budget(BaseModel):
    """Limits on what may be spent; ``None`` means unlimited.

    ``max_usd`` accepts an int, float, str or ``Decimal`` and is stored as a ``Decimal``
    (a float goes through its shortest repr, so ``0.1`` is ``Decimal("0.1")``).
    ``max_input_tokens`` counts prompt tokens, cached ones included; ``max_output_tokens``
    counts completion tokens; ``max_calls`` counts calls that reached the engine.

    ``window`` turns the budget into a rolling allowance, e.g. a daily budget per tenant:
    ``Budget(max_usd=5, window=timedelta(days=1))``. Windows are aligned on the Unix epoch
    (a daily window resets at 00:00 UTC), and each window starts from zero.

    ``alerts`` are soft thresholds, fractions of every set limit (e.g. ``(0.5, 0.8,
    1.0)``): each fires once per window when the settled spend reaches it
    (``Ledger.alerts_due``; agentflow makes it a span event, a metric and a callback).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:  # what callers may pass; the fields below say what is stored

        def __init__(
            self,
            *,
            max_usd: Decimal | float | str | None = None,
            max_input_tokens: int | None = None,
            max_output_tokens: int | None = None,
            max_calls: int | None = None,
            window: timedelta | None = None,
            alerts: Sequence[float] = (),
        ) -> None: ...

    max_usd: Decimal | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_calls: int | None = None
    window: timedelta | None = None
    alerts: tuple[float, ...] = ()

    @field_validator("max_usd", "max_input_tokens", "max_output_tokens", "max_calls", mode="before")
    @classmethod
    def _not_bool(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool):  # pydantic would take True as 1
            raise ValueError(
                f"{info.field_name} must be a number, got {value!r}; give the limit, or "
                "leave it unset (None) for no limit"
            )
        return value

    @field_validator("max_usd", mode="before")
    @classmethod
    def _usd_from_float(cls, value: Any) -> Any:
        # Decimal(0.1) would carry the float's binary error; go through repr instead.
        if isinstance(value, float):
            return Decimal(repr(value))
        return value

    @field_validator("max_usd", "max_input_tokens", "max_output_tokens", "max_calls")
    @classmethod
    def _positive(cls, value: Decimal | int | None, info: Any) -> Decimal | int | None:
        if value is None:
            return None
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{info.field_name} must be a finite number, got {value}")
        if value <= 0:
            raise ValueError(
                f"{info.field_name} must be greater than 0, got {value}. "
                f"Leave {info.field_name} unset (None) for no limit; a budget that allows "
                "nothing would refuse every call."
            )
        return value

    @field_validator("window")
    @classmethod
    def _positive_window(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError(
                f"window must be a positive duration, got {value}. Use e.g. "
                "timedelta(days=1) for a daily budget, or leave it unset for a budget that "
                "never resets."
            )
        return value

    @field_validator("alerts", mode="before")
    @classmethod
    def _alert_list(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (value,)  # alerts=0.8
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueError(
                f"alerts must be fractions of the limits, e.g. (0.5, 0.8, 1.0); got {value!r}"
            )
        fractions = tuple(value)
        if any(isinstance(fraction, bool) for fraction in fractions):
            raise ValueError(f"alerts are fractions such as 0.8, got {fractions!r}")
        return fractions

    @field_validator("alerts")
    @classmethod
    def _alert_fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        for fraction in value:
            if not (0 < fraction <= 1):
                raise ValueError(
                    f"each alert is a fraction of the limits in (0, 1], got {fraction!r}; "
                    "e.g. alerts=(0.5, 0.8, 1.0) for 50 %, 80 % and 100 %"
                )
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _alerts_need_a_limit(self) -> Budget:
        if self.alerts and self.unlimited:
            raise ValueError(
                f"alerts={self.alerts} are fractions of the limits, but this budget sets "
                "none; give a limit too, e.g. Budget(max_usd=5, alerts=(0.5, 0.8, 1.0))"
            )
        return self

    @property
    def limits(self) -> tuple[Decimal | int | None, ...]:
        """The limits in ``LIMIT_NAMES`` order."""
        return (self.max_usd, self.max_input_tokens, self.max_output_tokens, self.max_calls)

    @property
    def unlimited(self) -> bool:
        """True when no limit is set (the ledger then only keeps the totals)."""
        return all(limit is None for limit in self.limits)
