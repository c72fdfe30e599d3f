"""Stage 2, budget: cap ``max_tokens`` to what the budgets can pay, reserve, settle.

Every budget that applies — each enclosing step's and the run's — reserves the
worst-case cost of an attempt before it is sent (prompt tokens counted offline, output
capped at ``max_tokens``) and settles the actual cost after it; a failed attempt is
refunded. Concurrent calls therefore can never spend past a budget.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agentflow._errors import BudgetExceededError
from budgets import BudgetExceeded, Cost, Ledger, Reservation, TokenCounter, Usage, reserve_all

if TYPE_CHECKING:
    from agentflow._pipeline import Context
    from agentflow._zoo import Endpoint

__all__ = ["DEFAULT_MAX_TOKENS", "PROMPT_MARGIN", "BudgetGate", "counter_for", "ledgers_for"]

# a call with no max_tokens under a money budget reserves at most this many output tokens,
# so one call cannot lock the whole budget while it runs
DEFAULT_MAX_TOKENS = 2048
# our offline count may differ from the engine's tokenizer; reserve this much more
PROMPT_MARGIN = 1.15

Reservations = list[tuple[Ledger, Reservation]]

_counters: dict[tuple[str | None, str], TokenCounter] = {}


def counter_for(endpoint: Endpoint) -> TokenCounter:
    """The endpoint's own tokenizer when it serves ``/tokenize`` (self-hosted engines:
    exact), else tiktoken offline. Offline tiktoken under-counts SmolLM2 prompts by about
    a third (docs: budgets), which is why self-hosted endpoints are asked."""
    key = (endpoint.api_base, endpoint.model)
    counter = _counters.get(key)
    if counter is None:
        if endpoint.api_base:
            counter = TokenCounter.for_endpoint(endpoint.api_base, endpoint.model)
        else:
            counter = TokenCounter.for_model(endpoint.model)
        _counters[key] = counter
    return counter


def ledgers_for(ctx: Context) -> list[Ledger]:
    ledgers: list[Ledger] = []
    if ctx.frame is not None:
        ledgers.extend(f.ledger for f in ctx.frame.chain() if f.ledger is not None)
        run = ctx.frame.run
    else:
        from agentflow._context import current_run

        run = current_run.get()
    if run is not None:
        ledgers.extend(lg for lg in (run.ledger, run.tenant_ledger) if lg is not None)
    return ledgers


class BudgetGate:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ledgers = ledgers_for(ctx)
        self._prompt: dict[str, int] = {}

    def prompt_tokens(self, endpoint: Endpoint) -> int:
        n = self._prompt.get(endpoint.model)
        if n is None:
            counter = counter_for(endpoint)
            raw = counter.count_messages(self.ctx.messages, self.ctx.params.get("tools"))
            n = self._prompt[endpoint.model] = math.ceil(raw * PROMPT_MARGIN)
        return n

    def _cap(self, endpoint: Endpoint, prompt: int) -> tuple[int | None, Ledger | None, str]:
        """The largest max_tokens every budget can pay for, and the budget that binds."""
        rems = [(ledger, ledger.remaining()) for ledger in self.ledgers]
        asked = self.ctx.params.get("max_tokens") or self.ctx.params.get("max_completion_tokens")
        money = any(rem.usd is not None for _, rem in rems)
        cap: int | None = int(asked) if asked else (DEFAULT_MAX_TOKENS if money else None)
        binding: Ledger | None = None
        limit = "max_output_tokens"
        pricing = endpoint.token_pricing()
        for ledger, rem in rems:
            if rem.input_tokens is not None and prompt > rem.input_tokens:
                raise BudgetExceededError(ledger.name, "max_input_tokens", prompt, rem.input_tokens)
            if rem.calls is not None and rem.calls < 1:
                raise BudgetExceededError(ledger.name, "max_calls", 1, rem.calls)
            if rem.output_tokens is not None and (cap is None or rem.output_tokens < cap):
                cap, binding, limit = rem.output_tokens, ledger, "max_output_tokens"
            if rem.usd is not None and pricing is not None:
                prompt_cost = pricing.cost(Usage(prompt, 0, 0)).total_usd
                if prompt_cost > rem.usd:
                    raise BudgetExceededError(
                        ledger.name,
                        "max_usd",
                        f"${prompt_cost:.6f} for a {prompt}-token prompt",
                        f"${rem.usd:.6f}",
                    )
                per_token = pricing.output_per_mtok / Decimal(1_000_000)
                if per_token > 0:
                    afford = int((rem.usd - prompt_cost) / per_token)
                    if cap is None or afford < cap:
                        cap, binding, limit = afford, ledger, "max_usd"
        return cap, binding, limit

    def reserve(self, endpoint: Endpoint, tier: str) -> tuple[dict[str, Any], Reservations]:
        params = dict(self.ctx.params)
        if not self.ledgers:
            return params, []
        prompt = self.prompt_tokens(endpoint)
        if self.ctx.operation == "embeddings":
            cap: int | None = 0  # an embedding has no output tokens to cap
            binding, limit = None, ""
        else:
            cap, binding, limit = self._cap(endpoint, prompt)
        if cap is not None and self.ctx.operation != "embeddings":
            if cap < 1:
                assert binding is not None
                rem = binding.remaining()
                left = rem.usd if limit == "max_usd" else rem.output_tokens
                raise BudgetExceededError(
                    binding.name,
                    limit,
                    f"at least 1 output token after a {prompt}-token prompt on tier {tier!r}",
                    left,
                )
            key = "max_completion_tokens" if "max_completion_tokens" in params else "max_tokens"
            params[key] = cap
        pricing = endpoint.token_pricing()
        usd = pricing.cost(Usage(prompt, 0, cap or 0)).total_usd if pricing else Decimal(0)
        try:
            reservations = reserve_all(
                self.ledgers, usd=usd, input_tokens=prompt, output_tokens=cap or 0, calls=1
            )
        except BudgetExceeded as err:
            raise BudgetExceededError(err.budget, err.limit, err.asked, err.remaining) from None
        return params, list(zip(self.ledgers, reservations, strict=True))

    def trim(self) -> bool:
        """Drop the oldest conversation turn (never a system message, never the last
        message; static documents only once no other turn is left); False if none left."""
        from agentflow._layout import stable_messages

        msgs = self.ctx.messages
        stable = {id(m) for m in stable_messages(msgs)}
        droppable = [
            i for i, m in enumerate(msgs[:-1]) if m.get("role") not in ("system", "developer")
        ]
        for i in sorted(droppable, key=lambda i: (id(msgs[i]) in stable, i)):
            del msgs[i]
            self._prompt.clear()
            return True
        return False

    def settle(self, reservations: Reservations, usage: Usage, cost: Cost) -> None:
        for ledger, res in reservations:
            ledger.settle(
                res,
                usd=cost.total_usd,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
            )

    def release(self, reservations: Reservations) -> None:
        for ledger, res in reservations:
            ledger.release(res)

    def can_afford_tier(self, tier_name: str) -> bool:
        """Whether the next escalation tier's first endpoint fits in every budget."""
        if not self.ledgers:
            return True
        endpoint = self.ctx.zoo.tier(tier_name).endpoints[0]
        try:
            cap, _, _ = self._cap(endpoint, self.prompt_tokens(endpoint))
        except BudgetExceeded:
            return False
        return cap is None or cap >= 1
