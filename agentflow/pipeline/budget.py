"""Stage 2, budget: cap ``max_tokens`` to what the budgets can pay, reserve, settle.

Every budget that applies — each enclosing step's, the run's and the tenant's — reserves
the worst-case cost of an attempt before it is sent (prompt tokens counted, output capped
at ``max_tokens``) and settles the actual cost after it; a failed attempt is refunded.
Concurrent calls therefore can never spend past a budget.

The hold counts the prompt locally, but the engine's count is what gets paid. Each
endpoint learns how much larger the engine counts prompts than we do (``CountRatio``,
from every settled call's reported ``prompt_tokens``) and later holds are scaled by it.
Until the first reply of an endpoint has taught it, calls under a dollar or input-token
budget go to it one at a time (the *probe*; the others wait, holding nothing), so
however many run concurrently, at most that one call can spend past its hold: a budget
is overspent by at most one call's worth (docs: reliability).

Counting through an engine's ``/tokenize`` and ledgers on disk or Redis are I/O: each is
an ``Io`` effect the driver performs (in a worker thread or through the async twin under
asyncio), so the stage itself never blocks an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Generator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agentflow._alerts import announce
from agentflow._errors import BudgetExceededError, ConfigError
from agentflow.pipeline.effects import Effect, Io
from agentflow.pipeline.request import Request, Reservations
from budgets import (
    BudgetAlert,
    BudgetExceeded,
    Cost,
    Ledger,
    MemoryBackend,
    Remaining,
    TokenCounter,
    TokenPricing,
    Usage,
    areserve_all,
    reserve_all,
)

if TYPE_CHECKING:
    from agentflow._zoo import Endpoint

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "PROMPT_MARGIN",
    "BudgetGate",
    "CountRatio",
    "count_ratio_for",
    "counter_for",
    "ledgers_for",
    "reset_counters",
]

# a call with no max_tokens under a money budget reserves at most this many output tokens,
# so one call cannot lock the whole budget while it runs
DEFAULT_MAX_TOKENS = 2048
# our offline count may differ from the engine's tokenizer; reserve this much more
PROMPT_MARGIN = 1.15

_counters: dict[tuple[str | None, str], TokenCounter] = {}
log = logging.getLogger("agentflow.budget")


class CountRatio:
    """How much larger one endpoint's engine counts prompts than our local counter.

    ``ratio`` is the largest ``reported / counted`` seen (never below 1: a smaller
    engine count only leaves the margin unused), None until a reply taught it. While it
    is None, one call at a time may be the *probe*; the others ``wait()`` for it.
    Thread-safe; shared by every event loop and thread of the process.
    """

    def __init__(self) -> None:
        self.ratio: float | None = None
        self._probing = False
        self._changed = threading.Condition()
        # calls waiting under asyncio, on whichever loop: woken thread-safely
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def claim(self, may_probe: bool = True) -> bool | None:
        """True: this call is the probe; False: go (the ratio is known, or no probe is
        out and this call may not be one); None: wait for the probe."""
        with self._changed:
            if self.ratio is not None:
                return False
            if self._probing:
                return None
            self._probing = may_probe
            return may_probe

    def learn(self, reported: int, counted: int) -> None:
        """A reply's ``prompt_tokens`` for a prompt we counted as ``counted``."""
        if reported <= 0 or counted <= 0:
            return
        with self._changed:
            self.ratio = max(self.ratio or 1.0, reported / counted)
            self._wake()

    def end_probe(self) -> None:
        """The probe settled or failed: let the waiting calls look again."""
        with self._changed:
            self._probing = False
            self._wake()

    def _wake(self) -> None:
        self._changed.notify_all()
        for loop, event in self._waiters:
            # a closed loop raises: nobody waits there any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        self._waiters.clear()

    def _busy(self) -> bool:
        return self.ratio is None and self._probing

    def wait(self, deadline: float) -> None:
        """Block until the probe is over (or ``deadline``, ``time.monotonic()``)."""
        with self._changed:
            self._changed.wait_for(
                lambda: not self._busy() or time.monotonic() >= deadline,
                timeout=max(0.0, deadline - time.monotonic()),
            )

    async def await_probe(self, deadline: float) -> None:
        """``wait()`` without blocking the event loop (the probe may run on another
        loop or thread)."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._changed:
            if not self._busy():
                return
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            pass
        finally:
            with self._changed:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)


_ratios: dict[tuple[str | None, str], CountRatio] = {}
_ratios_lock = threading.Lock()


def count_ratio_for(endpoint: Endpoint) -> CountRatio:
    """The endpoint's learned prompt-count ratio (one per ``api_base`` and model)."""
    key = (endpoint.api_base, endpoint.model)
    with _ratios_lock:
        ratio = _ratios.get(key)
        if ratio is None:
            ratio = _ratios[key] = CountRatio()
        return ratio


def counter_for(endpoint: Endpoint) -> TokenCounter:
    """The endpoint's own tokenizer when it serves ``/tokenize`` (self-hosted engines:
    exact), else tiktoken offline. Offline tiktoken under-counts SmolLM2 prompts by about
    a third (docs: budgets), which is why self-hosted endpoints are asked."""
    remote = endpoint.api_base if endpoint.counting == "engine" else None
    key = (remote, endpoint.model)
    counter = _counters.get(key)
    if counter is None:
        if remote:
            counter = TokenCounter.for_endpoint(remote, endpoint.model)
        else:  # an API model, or counting="local": offline, scaled by the learned ratio
            counter = TokenCounter.for_model(endpoint.model)
        _counters[key] = counter
    return counter


def reset_counters() -> None:
    """Forget the token counters (and close their HTTP clients) and the learned
    prompt-count ratios."""
    for counter in list(_counters.values()):
        counter.close()
    _counters.clear()
    with _ratios_lock:
        _ratios.clear()


def worst_cost(pricing: TokenPricing, prompt: int, completion: int) -> Decimal:
    """The most a call of ``prompt`` and ``completion`` tokens can cost: where writing a
    prompt to the provider's cache costs more than reading it fresh (Anthropic's 1.25x),
    every prompt token may be a cache write, and the hold must cover that."""
    writes = prompt if pricing.effective_cache_write_per_mtok > pricing.input_per_mtok else 0
    return pricing.cost(Usage(prompt, 0, completion, writes)).total_usd


def ledgers_for(request: Request) -> list[Ledger]:
    """Every ledger a call must fit in: each enclosing step's, the run's, the tenant's."""
    ledgers: list[Ledger] = []
    if request.frame is not None:
        ledgers.extend(f.ledger for f in request.frame.chain() if f.ledger is not None)
    run = request.run
    if run is not None:
        if run.ledger is not None:
            ledgers.append(run.ledger)
        ledgers.extend(run.tenant_ledgers)  # a daily budget, rate limits...
    return ledgers


def _in_memory(ledgers: list[Ledger]) -> bool:
    return all(type(lg.backend) is MemoryBackend for lg in ledgers)  # a subclass may do I/O


class BudgetGate:
    """The budget stage of one call: what every attempt may spend, held and settled."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.ledgers = ledgers_for(request)
        self.blocking = not _in_memory(self.ledgers)  # disk or Redis: I/O
        self._counted: dict[str, int] = {}
        # each live hold (by the id of its reservations list): the endpoint's ratio, the
        # prompt as counted locally, and whether the call is that endpoint's probe
        self._held: dict[int, tuple[CountRatio, int, bool]] = {}
        self._paid_by_prompt = any(
            lg.budget.max_usd is not None or lg.budget.max_input_tokens is not None
            for lg in self.ledgers
        )

    # --- effects --------------------------------------------------------------------
    def _count(self, endpoint: Endpoint) -> Generator[Effect, Any, int]:
        """The prompt's tokens as our counter sees them (counted once per model)."""
        n = self._counted.get(endpoint.model)
        if n is None:
            counter = counter_for(endpoint)
            messages, tools = self.request.messages, self.request.params.get("tools")
            raw = yield Io(
                lambda: counter.count_messages(messages, tools),
                lambda: counter.acount_messages(messages, tools),
                blocking=not counter.method.startswith(("tiktoken", "approx")),
            )
            n = self._counted[endpoint.model] = int(raw)
        return n

    def prompt_tokens(self, endpoint: Endpoint) -> Generator[Effect, Any, int]:
        """The prompt's tokens as the engine will count them, at worst: our count times
        the endpoint's learned ratio, with a safety margin."""
        counted = yield from self._count(endpoint)
        ratio = count_ratio_for(endpoint).ratio or 1.0
        return math.ceil(counted * ratio * PROMPT_MARGIN)

    def _await_ratio(self, endpoint: Endpoint) -> Generator[Effect, Any, bool]:
        """Wait while another call is the endpoint's probe; True when this one is."""
        if not self._paid_by_prompt:
            return False
        state = count_ratio_for(endpoint)
        # a stream is never the probe: it settles only when read to its end, however
        # long the reader takes. Waiting is bounded by the call's own max_time.
        may_probe = self.request.operation != "chat_stream"
        deadline = time.monotonic() + self.request.retry.max_time
        while True:
            claimed = state.claim(may_probe)
            if claimed is not None:
                return claimed
            if time.monotonic() >= deadline:
                return False  # hold with the margin alone
            yield Io(lambda: state.wait(deadline), lambda: state.await_probe(deadline))

    def _remaining(self) -> Generator[Effect, Any, list[Remaining]]:
        if not self.blocking:
            return [ledger.remaining() for ledger in self.ledgers]
        ledgers = self.ledgers
        return (yield Io(lambda: [ledger.remaining() for ledger in ledgers]))  # type: ignore[no-any-return]

    def reserve(
        self, endpoint: Endpoint, tier: str
    ) -> Generator[Effect, Any, tuple[dict[str, Any], Reservations]]:
        """Cap ``max_tokens`` and hold the attempt's worst case in every ledger; the
        parameters to send and the holds. Raises ``BudgetExceededError`` on refusal."""
        params = dict(self.request.params)
        if not self.ledgers:
            return params, []
        probe = yield from self._await_ratio(endpoint)
        try:
            params, reservations = yield from self._reserve(endpoint, tier, params)
        except BaseException:
            if probe:
                count_ratio_for(endpoint).end_probe()
            raise
        counted = yield from self._count(endpoint)
        self._held[id(reservations)] = (count_ratio_for(endpoint), counted, probe)
        return params, reservations

    def _reserve(
        self, endpoint: Endpoint, tier: str, params: dict[str, Any]
    ) -> Generator[Effect, Any, tuple[dict[str, Any], Reservations]]:
        prompt = yield from self.prompt_tokens(endpoint)
        if self.request.operation == "embeddings":
            cap: int | None = 0  # an embedding has no output tokens to cap
        else:
            rems = yield from self._remaining()
            cap, binding, limit = self._cap(endpoint, prompt, rems)
            if cap is not None:
                if cap < 1:
                    assert binding is not None
                    rem = rems[self.ledgers.index(binding)]
                    left = rem.usd if limit == "max_usd" else rem.output_tokens
                    raise BudgetExceededError(
                        binding.name,
                        limit,
                        f"at least 1 output token after a {prompt}-token prompt on tier {tier!r}",
                        left,
                        retry_after_s=binding.window_resets_in(),
                    )
                key = "max_completion_tokens" if "max_completion_tokens" in params else "max_tokens"
                params[key] = cap
        pricing = endpoint.token_pricing()
        usd = worst_cost(pricing, prompt, cap or 0) if pricing else Decimal(0)
        ledgers = self.ledgers
        amounts: dict[str, Any] = {
            "usd": usd,
            "input_tokens": prompt,
            "output_tokens": cap or 0,
            "calls": 1,
        }
        try:
            held = yield Io(
                lambda: reserve_all(ledgers, **amounts),
                lambda: areserve_all(ledgers, **amounts),
                blocking=self.blocking,
            )
        except BudgetExceeded as err:
            raise BudgetExceededError(
                err.budget, err.limit, err.asked, err.remaining, retry_after_s=err.retry_after_s
            ) from None
        return params, list(zip(ledgers, held, strict=True))

    def settle(
        self, reservations: Reservations, usage: Usage, cost: Cost
    ) -> Generator[Effect, Any, None]:
        """Replace the holds by what the attempt used."""
        if reservations:
            yield Io(
                lambda: self.settle_now(reservations, usage, cost),
                lambda: self.asettle(reservations, usage, cost),
                blocking=self.blocking,
            )

    def release(self, reservations: Reservations) -> Generator[Effect, Any, None]:
        """Drop the holds of an attempt that failed: nothing of it counts."""
        if reservations:
            yield Io(
                lambda: self.release_now(reservations),
                lambda: self.arelease(reservations),
                blocking=self.blocking,
            )

    def can_afford_tier(self, tier_name: str) -> Generator[Effect, Any, bool]:
        """Whether the next escalation tier's first endpoint fits in every budget."""
        if not self.ledgers:
            return True
        endpoint = self.request.zoo.tier(tier_name).endpoints[0]
        prompt = yield from self.prompt_tokens(endpoint)
        rems = yield from self._remaining()
        try:
            cap, _, _ = self._cap(endpoint, prompt, rems)
        except BudgetExceeded:
            return False
        return cap is None or cap >= 1

    def estimate(self, endpoint: Endpoint, reply: str) -> Generator[Effect, Any, Usage]:
        """The usage of an answer whose engine sent none: the prompt and the reply
        counted with the endpoint's tokenizer (never priced at $0 by accident)."""
        counter = counter_for(endpoint)
        messages, tools = self.request.messages, self.request.params.get("tools")
        prompt, completion = yield Io(
            lambda: (counter.count_messages(messages, tools), counter.count_text(reply)),
            blocking=not counter.method.startswith(("tiktoken", "approx")),
        )
        return Usage(int(prompt), 0, int(completion))

    def forget_counts(self) -> None:
        """The prompt changed (trimmed): count it again."""
        self._counted.clear()

    def _learn(self, reservations: Reservations, usage: Usage | None) -> None:
        """Teach the endpoint's ratio what the engine counted; end a probe."""
        found = self._held.pop(id(reservations), None)
        if found is None:
            return
        state, counted, probe = found
        if usage is not None:
            state.learn(usage.prompt_tokens, counted)
        if probe:
            state.end_probe()

    # --- direct calls (streams settle outside any driver) ---------------------------
    def settle_now(self, reservations: Reservations, usage: Usage, cost: Cost) -> None:
        try:
            self._settle(reservations, usage, cost)
        finally:
            self._learn(reservations, usage)
        alerts: list[BudgetAlert] = []
        for ledger, _ in reservations:
            try:
                alerts.extend(ledger.alerts_due())
            except Exception:  # the call is paid and settled: an alert must not fail it
                log.exception("checking the alerts of %s failed", ledger.name)
        announce(alerts)

    @staticmethod
    def _settle(reservations: Reservations, usage: Usage, cost: Cost) -> None:
        for ledger, res in reservations:
            ledger.settle(
                res,
                usd=cost.total_usd,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
            )

    async def asettle(self, reservations: Reservations, usage: Usage, cost: Cost) -> None:
        try:
            for ledger, res in reservations:
                await ledger.asettle(
                    res,
                    usd=cost.total_usd,
                    input_tokens=usage.prompt_tokens,
                    output_tokens=usage.completion_tokens,
                )
        finally:
            self._learn(reservations, usage)
        alerts: list[BudgetAlert] = []
        for ledger, _ in reservations:
            try:
                alerts.extend(await ledger.aalerts_due())
            except Exception:  # the call is paid and settled: an alert must not fail it
                log.exception("checking the alerts of %s failed", ledger.name)
        announce(alerts)

    def release_now(self, reservations: Reservations) -> None:
        try:
            for ledger, res in reservations:
                ledger.release(res)
        finally:
            self._learn(reservations, None)

    async def arelease(self, reservations: Reservations) -> None:
        try:
            for ledger, res in reservations:
                await ledger.arelease(res)
        finally:
            self._learn(reservations, None)

    # --- arithmetic -----------------------------------------------------------------
    def _cap(
        self, endpoint: Endpoint, prompt: int, rems: list[Remaining]
    ) -> tuple[int | None, Ledger | None, str]:
        """The largest max_tokens every budget can pay for, and the budget that binds."""
        params = self.request.params
        asked = params.get("max_tokens")
        if asked is None:
            asked = params.get("max_completion_tokens")
        money = any(rem.usd is not None for rem in rems)
        cap: int | None = (
            int(asked) if asked is not None else (DEFAULT_MAX_TOKENS if money else None)
        )
        binding: Ledger | None = None
        limit = "max_output_tokens"
        pricing = endpoint.token_pricing()
        for ledger, rem in zip(self.ledgers, rems, strict=True):
            if rem.usd is not None and pricing is None:
                raise ConfigError(
                    f"{ledger.name} limits dollars (max_usd), but endpoint {endpoint.id} has "
                    "no pricing, so its calls could not be counted against it; give the "
                    "endpoint pricing=TokenPricing(...) or GpuHourPricing(...), or drop max_usd"
                )
            if rem.input_tokens is not None and prompt > rem.input_tokens:
                raise BudgetExceededError(
                    ledger.name,
                    "max_input_tokens",
                    prompt,
                    rem.input_tokens,
                    retry_after_s=ledger.retry_after("max_input_tokens", prompt),
                )
            if rem.calls is not None and rem.calls < 1:
                raise BudgetExceededError(
                    ledger.name,
                    "max_calls",
                    1,
                    rem.calls,
                    retry_after_s=ledger.retry_after("max_calls", 1),
                )
            if rem.output_tokens is not None and (cap is None or rem.output_tokens < cap):
                cap, binding, limit = rem.output_tokens, ledger, "max_output_tokens"
            if rem.usd is not None and pricing is not None:
                prompt_cost = worst_cost(pricing, prompt, 0)
                if prompt_cost > rem.usd:
                    raise BudgetExceededError(
                        ledger.name,
                        "max_usd",
                        f"${prompt_cost:.6f} for a {prompt}-token prompt",
                        f"${rem.usd:.6f}",
                        retry_after_s=ledger.retry_after("max_usd", prompt_cost),
                    )
                per_token = pricing.output_per_mtok / Decimal(1_000_000)
                if per_token > 0:
                    afford = int((rem.usd - prompt_cost) / per_token)
                    if cap is None or afford < cap:
                        cap, binding, limit = afford, ledger, "max_usd"
        return cap, binding, limit
