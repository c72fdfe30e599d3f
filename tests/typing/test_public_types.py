"""The public types, as a user's type checker sees them (``mypy tests/typing``).

Every ``assert_type`` is checked statically by mypy; at run time ``assert_type`` returns
its argument, so pytest runs the parts that need no server as plain tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from decimal import Decimal
from typing import Any, assert_type

import agentflow as af
import tracing
from budgets import (
    Budget,
    BudgetExceeded,
    Cost,
    GpuHourPricing,
    Ledger,
    TokenCounter,
    TokenPricing,
    Usage,
)

# -- decorators keep the function's type -------------------------------------------------


@af.step
def bare(x: int, *, label: str = "") -> str:
    return f"{label}{x}"


# module-level steps name no tier: configure() checks every live step against its zoo,
# and other tests configure zoos of their own
@af.step(kind="tool", budget=Budget(max_output_tokens=64))
def configured(x: int) -> list[str]:
    return [str(x)]


@af.plan
def planned(question: str) -> str:
    return question


@af.retrieve(cache="exact", prefix_cache=False)
def retrieved(query: str) -> Iterator[str]:
    yield query


@af.tool(name="search")
async def searched(query: str) -> dict[str, int]:
    return {query: 1}


@af.verify(escalate=af.Escalate(min_confidence=0.8, scorer="logprob_min"))
async def verified(answer: str) -> AsyncIterator[bool]:
    yield bool(answer)


def test_decorated_functions_keep_their_types() -> None:
    assert_type(bare(1, label="n"), str)
    assert_type(configured(2), list[str])
    assert_type(planned("q"), str)
    assert_type(retrieved("q"), Iterator[str])
    coro = assert_type(searched("q"), Coroutine[Any, Any, dict[str, int]])
    coro.close()  # never awaited: only its type matters here
    assert_type(verified("a"), AsyncIterator[bool])
    as_callable: Callable[[int], list[str]] = configured
    assert as_callable(3) == ["3"]
    assert bare(1, label="n") == "n1"

    @af.plan(tier="small", name="with-a-tier")
    def tiered(x: float) -> float:
        return x

    assert_type(tiered(1.5), float)
    assert tiered(1.5) == 1.5


async def _async_uses() -> None:
    assert_type(await searched("q"), dict[str, int])
    async for ok in verified("a"):
        assert_type(ok, bool)


# -- model calls -----------------------------------------------------------------------------


def _sync_calls() -> None:
    c = af.complete(messages=[{"role": "user", "content": "hi"}], temperature=0.0)
    assert_type(c, af.Completion)
    assert_type(c.text, str)
    assert_type(c.message, dict[str, Any])
    assert_type(c.tier, str)
    assert_type(c.usage, Usage)
    assert_type(c.cost, Cost)
    assert_type(c.cost.total_usd, Decimal)
    assert_type(c.attempts, list[af.Attempt])
    assert_type(c.attempts[0].ok, bool)
    assert_type(c.confidence, float | None)
    assert_type(c.tool_calls, list[dict[str, Any]])
    assert_type(c.total_cost, Cost)

    stream = af.complete(messages=[{"role": "user", "content": "hi"}], stream=True)
    assert_type(stream, af.CompletionStream)
    for _chunk in stream:
        pass
    assert_type(stream.completion, af.Completion | None)

    e = af.embed(["a", "b"], tier="small")
    assert_type(e, af.Embedding)
    assert_type(e.vectors, list[list[float]])
    assert_type(e.cost, Cost)


async def _async_calls() -> None:
    c = await af.acomplete(messages=[{"role": "user", "content": "hi"}])
    assert_type(c, af.Completion)
    stream = await af.acomplete(messages=[{"role": "user", "content": "hi"}], stream=True)
    assert_type(stream, af.AsyncCompletionStream)
    async for _chunk in stream:
        pass
    e = await af.aembed("a")
    assert_type(e, af.Embedding)


# -- runs ------------------------------------------------------------------------------------


def test_run_types() -> None:
    with af.run("typed", budget=Budget(max_calls=3), user_id="u", metadata={"k": 1}) as run:
        assert_type(run, af.Run)
    assert_type(run.cost, Cost)
    assert_type(run.usage, Usage)
    assert_type(run.steps, dict[str, af.StepSummary])
    assert_type(run.report(), str)
    assert_type(run.ledger, Ledger | None)
    assert run.cost == Cost()


async def _async_run() -> None:
    async with af.run("typed") as run:
        assert_type(run, af.Run)


# -- configuration -------------------------------------------------------------------------


def test_zoo_and_config_types() -> None:
    zoo = af.ModelZoo(
        tiers=[
            af.Tier(
                "small",
                endpoints=[
                    af.Endpoint(
                        model="openai/smollm2-135m",
                        api_base="http://127.0.0.1:8081/v1",
                        api_key="sk-none-needed",
                        pricing=GpuHourPricing(
                            usd_per_gpu_hour=Decimal("1.10"),
                            gpus=1,
                            prompt_tokens_per_s=Decimal(9000),
                            output_tokens_per_s=Decimal(350),
                        ),
                    )
                ],
            ),
            af.Tier("big", endpoints=[af.Endpoint(model="gpt-4o")], fallback="small"),
        ]
    )
    assert_type(zoo.names, tuple[str, ...])
    assert_type(zoo.tier("small"), af.Tier)
    assert_type(zoo.token_prices(), dict[str, TokenPricing])
    cfg = af.configure(zoo=zoo, retry=af.RetryPolicy(initial_backoff=0.01, max_backoff=0.05))
    assert_type(cfg, af.Config)
    assert_type(af.get_config().zoo, af.ModelZoo | None)
    assert_type(af.STEP_KINDS, tuple[str, ...])
    assert zoo.names == ("small", "big")
    from agentflow import _config

    _config.reset()


# -- budgets, as DESIGN.md writes them ------------------------------------------------------


def test_budgets_types_as_documented() -> None:
    # the literals DESIGN.md uses: floats for money, as every example does
    budget = Budget(max_usd=0.02, max_output_tokens=256)
    heavy = TokenPricing(input_per_mtok=2.50, cached_input_per_mtok=1.25, output_per_mtok=10.0)
    gpu = GpuHourPricing(
        usd_per_gpu_hour=1.10, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
    )
    assert_type(budget.max_usd, Decimal | None)
    assert_type(heavy.cost(Usage(10, 0, 2)), Cost)
    assert_type(gpu.per_token(), TokenPricing)
    assert_type(Usage(1, 0, 1) + Usage(2, 1, 0), Usage)
    assert_type(Cost() + Cost(), Cost)
    assert_type(TokenCounter.for_model("gpt-4o").count_text("hi"), int)
    assert budget.max_usd == Decimal("0.02")


def test_error_types() -> None:
    err: BudgetExceeded = af.BudgetExceededError("run 'x' budget", "max_usd", 1, 0)
    assert isinstance(err, af.AgentflowError)
    assert_type(af.CallError("failed").attempts, list[object])
    assert_type(tracing.redact("sk-abcdefghijkl"), str)
