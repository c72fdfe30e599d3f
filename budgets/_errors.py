"""Errors of the budgets package.

    BudgetError                 root; catch it to catch everything below
    ├── BudgetExceeded          a budget refused a call (agentflow raises a subclass)
    ├── LedgerCorrupted         a backend holds a value budgets did not write (a pickle,
    │                           a malformed counter): nothing of it was decoded
    └── ReservationError        a reservation was settled or released twice, or given
                                to a ledger that did not make it

Invalid limits, prices or windows raise pydantic's ``ValidationError`` (a ``ValueError``)
when the ``Budget`` or pricing is built.
"""

from __future__ import annotations

__all__ = ["BudgetError", "BudgetExceeded", "LedgerCorrupted", "ReservationError"]


class BudgetError(Exception):
    """Root of the budgets package's errors."""


class BudgetExceeded(BudgetError):
    """A budget refused a call.

    ``budget`` names the budget that said no (e.g. ``"run 'research'"``), ``limit`` the
    limit (``"max_usd"``, ``"max_output_tokens"``, ...), ``asked`` what the call needed
    and ``remaining`` what the budget had left. For a windowed budget (a daily budget, a
    per-minute rate limit) ``retry_after_s`` is how long until its window starts again
    from zero (what an HTTP 429's ``Retry-After`` would say); ``None`` for a budget with
    no window, which never refills.
    """

    def __init__(
        self,
        budget: str,
        limit: str,
        asked: object,
        remaining: object,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        self.budget = budget
        self.limit = limit
        self.asked = asked
        self.remaining = remaining
        self.retry_after_s = retry_after_s
        if retry_after_s is None:
            advice = "Raise the limit, lower max_tokens, or pick a cheaper tier."
        else:
            advice = (
                f"Its window starts again in {_seconds(retry_after_s)}: wait until then, "
                "raise the limit, lower max_tokens, or pick a cheaper tier."
            )
        super().__init__(
            f"{budget} refused the call: {limit} asked {asked}, {remaining} left. {advice}"
        )


def _seconds(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``12 min 5 s``, ``3 h 20 min``: a wait a person can read."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f} s"
    whole = int(seconds + 0.999)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


class ReservationError(BudgetError, RuntimeError):
    """A reservation was closed twice, or handed to a ledger that did not make it.

    Each ``Reservation`` from ``Ledger.reserve`` must be closed exactly once, by the same
    ledger: ``settle`` after the call, or ``release`` when it failed.
    """


class LedgerCorrupted(BudgetError, ValueError):
    """A ledger backend holds a value that budgets never writes: a pickled or file row in
    the diskcache database, a malformed counter or reservation in Redis.

    Nothing of it was decoded (no pickle is ever loaded, no code runs). The message names
    the file or key and says what to do: delete it to start that ledger from zero, or
    restore it from a backup.
    """
