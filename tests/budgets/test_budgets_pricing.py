"""Pricing arithmetic checked against hand-computed figures, and bad configuration.

Seed formula: cost per 1M output tokens = GPU cost per hour × hours / tokens generated.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from budgets import Budget, Cost, GpuHourPricing, Pricing, TokenPricing, Usage

D = Decimal
H100 = GpuHourPricing(
    usd_per_gpu_hour=2.50, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=1500
)


def close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) < D("1e-20")


def test_h100_output_price_per_million_tokens() -> None:
    # 1,500 tok/s for an hour = 5,400,000 tokens for $2.50 → 2.50 / 5.4 = $0.462962.../Mtok
    per_token = H100.per_token()
    assert close(per_token.output_per_mtok, D("2.50") * 1 / D(5_400_000) * 1_000_000)
    assert per_token.output_per_mtok.quantize(D("1e-12")) == D("0.462962962963")
    # prefill: 9,000 tok/s → 32,400,000 tokens per hour → $0.0771604938.../Mtok
    assert per_token.input_per_mtok.quantize(D("1e-12")) == D("0.077160493827")
    assert per_token.cached_input_per_mtok == 0  # cached tokens skip prefill


def test_one_gpu_hour_of_output_costs_exactly_the_hourly_rate() -> None:
    cost = H100.cost(Usage(completion_tokens=1500 * 3600))
    assert cost.total_usd == D("2.50")  # exact, not 2.4999...


def test_a_mixed_call_by_hand() -> None:
    usage = Usage(prompt_tokens=10_000, cached_prompt_tokens=4_000, completion_tokens=500)
    cost = H100.cost(usage)
    # 6,000 uncached prompt tokens take 6000/9000 s = 2/3 s; 500 output tokens 1/3 s;
    # one GPU-second costs 2.50/3600 → total 1 s of GPU = $0.000694444...
    assert close(cost.input_usd, D("2.50") / 3600 * 2 / 3)
    assert cost.cached_input_usd == 0
    assert close(cost.output_usd, D("2.50") / 3600 / 3)
    assert close(cost.total_usd, D("2.50") / 3600)


def test_gpus_and_cached_throughput_scale_the_price() -> None:
    two = GpuHourPricing(
        usd_per_gpu_hour=2.50,
        gpus=2,
        prompt_tokens_per_s=9000,
        output_tokens_per_s=1500,
        cached_prompt_tokens_per_s=90_000,
    )
    assert close(two.per_token().output_per_mtok, 2 * H100.per_token().output_per_mtok)
    # 90,000 cached tok/s on $5/h → $5 / 324M tokens → $0.0154320987.../Mtok
    cached = two.per_token().effective_cached_input_per_mtok
    assert cached.quantize(D("1e-12")) == D("0.015432098765")
    cost = two.cost(Usage(prompt_tokens=90_000, cached_prompt_tokens=90_000))
    assert close(cost.cached_input_usd, D(5) / 3600)  # one second of two GPUs


def test_design_smollm_endpoint() -> None:
    smol = GpuHourPricing(
        usd_per_gpu_hour=1.10, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
    )
    # 350 tok/s x 3600 = 1,260,000 tokens/h for $1.10 → $0.873015873.../Mtok
    assert smol.per_token().output_per_mtok.quantize(D("1e-9")) == D("0.873015873")


def test_token_pricing_by_hand() -> None:
    gpt4o = TokenPricing(input_per_mtok=2.50, cached_input_per_mtok=1.25, output_per_mtok=10)
    cost = gpt4o.cost(Usage(prompt_tokens=1000, cached_prompt_tokens=200, completion_tokens=100))
    assert cost == Cost(D("0.002"), D("0.00025"), D("0.001"))
    assert cost.total_usd == D("0.00325")


def test_cached_tokens_are_never_free_by_accident() -> None:
    no_cache_price = TokenPricing(input_per_mtok=3, output_per_mtok=15)
    cost = no_cache_price.cost(Usage(prompt_tokens=1_000_000, cached_prompt_tokens=1_000_000))
    assert cost.cached_input_usd == D(3)


def test_pricing_loads_from_config_by_kind() -> None:
    adapter: TypeAdapter[TokenPricing | GpuHourPricing] = TypeAdapter(Pricing)
    loaded = adapter.validate_python(
        {
            "kind": "gpu_hour",
            "usd_per_gpu_hour": "2.50",
            "prompt_tokens_per_s": 9000,
            "output_tokens_per_s": 1500,
        }
    )
    assert loaded == H100


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TokenPricing(input_per_mtok=-1, output_per_mtok=1), "input_per_mtok must be >= 0"),
        (
            lambda: TokenPricing(input_per_mtok=1, output_per_mtok=1, cached_input_per_mtok=-0.5),
            "cached_input_per_mtok must be >= 0",
        ),
        (lambda: TokenPricing(input_per_mtok=1), "output_per_mtok\n  Field required"),  # type: ignore[call-arg]
        (lambda: TokenPricing(input_per_mtok="NaN", output_per_mtok=1), "finite number"),
        (
            lambda: GpuHourPricing(
                usd_per_gpu_hour=-2, prompt_tokens_per_s=1, output_tokens_per_s=1
            ),
            "usd_per_gpu_hour must be >= 0",
        ),
        (
            lambda: GpuHourPricing(
                usd_per_gpu_hour=2, prompt_tokens_per_s=0, output_tokens_per_s=1
            ),
            "prompt_tokens_per_s must be > 0 tokens per second.*agentflow calibrate",
        ),
        (
            lambda: GpuHourPricing(
                usd_per_gpu_hour=2, prompt_tokens_per_s=1, output_tokens_per_s=-3
            ),
            "output_tokens_per_s must be > 0",
        ),
        (
            lambda: GpuHourPricing(
                usd_per_gpu_hour=2, gpus=0, prompt_tokens_per_s=1, output_tokens_per_s=1
            ),
            "gpus must be at least 1",
        ),
        (
            lambda: GpuHourPricing(
                usd_per_gpu_hour=2,
                prompt_tokens_per_s=1000,
                output_tokens_per_s=1,
                cached_prompt_tokens_per_s=10,
            ),
            "cannot be slower",
        ),
    ],
)
def test_bad_prices_fail_with_what_to_do(build: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_usd": 0}, "max_usd must be greater than 0.*Leave max_usd unset"),
        ({"max_usd": -0.01}, "max_usd must be greater than 0"),
        ({"max_input_tokens": 0}, "max_input_tokens must be greater than 0"),
        ({"max_output_tokens": -1}, "max_output_tokens must be greater than 0"),
        ({"max_calls": 0}, "max_calls must be greater than 0"),
        ({"max_usd": "inf"}, "finite number"),
        ({"window": timedelta(0)}, "window must be a positive duration.*timedelta\\(days=1\\)"),
        ({"window": timedelta(hours=-1)}, "window must be a positive duration"),
        ({"max_tokens": 10}, "max_tokens\n  Extra inputs are not permitted"),  # a typo
    ],
)
def test_bad_budgets_fail_with_what_to_do(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)  # type: ignore[arg-type]


def test_budget_values() -> None:
    budget = Budget(max_usd=0.1, max_calls=3, window="P1D")  # type: ignore[arg-type]
    assert budget.max_usd == D("0.1")  # through repr, not the float's binary expansion
    assert budget.window == timedelta(days=1)  # ISO 8601, as a TOML config would give it
    assert budget.limits == (D("0.1"), None, None, 3)
    assert not budget.unlimited
    assert Budget().unlimited
    with pytest.raises(ValidationError):
        budget.max_calls = 4  # frozen
