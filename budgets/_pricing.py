"""Pricing: per token for APIs, per GPU-hour for self-hosted endpoints.

Every pricing has ``.cost(usage) -> Cost`` and ``.per_token() -> TokenPricing``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from budgets._values import ZERO, Cost, Usage

__all__ = ["GpuHourPricing", "Pricing", "TokenPricing"]

_MILLION = Decimal(1_000_000)
_SECONDS_PER_HOUR = Decimal(3600)


def _price(value: Decimal, info: ValidationInfo) -> Decimal:
    if value < 0:
        raise ValueError(f"{info.field_name} must be >= 0 USD, got {value}; use 0 for a free model")
    return value


def _throughput(value: Decimal, info: ValidationInfo) -> Decimal:
    if value <= 0:
        raise ValueError(
            f"{info.field_name} must be > 0 tokens per second, got {value}; give the "
            "endpoint's measured sustained throughput (`agentflow calibrate --endpoint URL` "
            "measures it)"
        )
    return value


class TokenPricing(BaseModel):
    """USD per million input, cached input, cache-write and output tokens.

    ``cached_input_per_mtok`` prices prompt tokens read from the provider's prompt cache,
    ``cache_write_per_mtok`` those written to it. ``None`` means the input price for
    either: cached tokens are never free by accident, and writes cost at least what the
    provider's plain input costs unless you say otherwise.

    Anthropic, for example, charges 1.25x the input price for a 5-minute cache write
    (2x for a 1-hour one) and 0.1x for a cache read; Claude Sonnet 4 at $3 input, $15
    output per million tokens is::

        TokenPricing(input_per_mtok=3, output_per_mtok=15,
                     cached_input_per_mtok="0.30", cache_write_per_mtok="3.75")

    Those ratios are the provider's, not built in: check its price list.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:  # prices may be given as int, float or str; they are stored as Decimal

        def __init__(
            self,
            *,
            input_per_mtok: Decimal | float | str,
            output_per_mtok: Decimal | float | str,
            cached_input_per_mtok: Decimal | float | str | None = None,
            cache_write_per_mtok: Decimal | float | str | None = None,
            kind: Literal["token"] = "token",
        ) -> None: ...

    kind: Literal["token"] = "token"
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None

    @field_validator(
        "input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok"
    )
    @classmethod
    def _non_negative(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        return None if value is None else _price(value, info)

    @property
    def effective_cached_input_per_mtok(self) -> Decimal:
        if self.cached_input_per_mtok is None:
            return self.input_per_mtok
        return self.cached_input_per_mtok

    @property
    def effective_cache_write_per_mtok(self) -> Decimal:
        """The price of a cache-write token: ``cache_write_per_mtok``, else the input one."""
        if self.cache_write_per_mtok is None:
            return self.input_per_mtok
        return self.cache_write_per_mtok

    def cost(self, usage: Usage) -> Cost:
        return Cost(
            input_usd=self.input_per_mtok * usage.uncached_prompt_tokens / _MILLION,
            cached_input_usd=self.effective_cached_input_per_mtok
            * usage.cached_prompt_tokens
            / _MILLION,
            output_usd=self.output_per_mtok * usage.completion_tokens / _MILLION,
            cache_write_usd=self.effective_cache_write_per_mtok
            * usage.cache_write_tokens
            / _MILLION,
        )

    def per_token(self) -> TokenPricing:
        return self


class GpuHourPricing(BaseModel):
    """A self-hosted endpoint billed by the GPU-hour.

    The effective price of a token is the GPU time it takes at the endpoint's measured
    sustained throughput: one output token costs ``usd_per_gpu_hour * gpus / 3600 /
    output_tokens_per_s``. Cached prompt tokens skip prefill, so they cost no prefill
    time (``cached_prompt_tokens_per_s=None``); give a throughput for them if your engine
    still spends measurable time on them. Tokens written to a prompt cache are prefilled
    like any uncached prompt token and cost the same.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            usd_per_gpu_hour: Decimal | float | str,
            prompt_tokens_per_s: Decimal | float | str,
            output_tokens_per_s: Decimal | float | str,
            gpus: int = 1,
            cached_prompt_tokens_per_s: Decimal | float | str | None = None,
            kind: Literal["gpu_hour"] = "gpu_hour",
        ) -> None: ...

    kind: Literal["gpu_hour"] = "gpu_hour"
    usd_per_gpu_hour: Decimal
    gpus: int = 1
    prompt_tokens_per_s: Decimal
    output_tokens_per_s: Decimal
    cached_prompt_tokens_per_s: Decimal | None = None

    @field_validator("usd_per_gpu_hour")
    @classmethod
    def _non_negative(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        return _price(value, info)

    @field_validator("gpus")
    @classmethod
    def _some_gpus(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"gpus must be at least 1, got {value}: the GPUs the endpoint holds")
        return value

    @field_validator("prompt_tokens_per_s", "output_tokens_per_s", "cached_prompt_tokens_per_s")
    @classmethod
    def _positive(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        return None if value is None else _throughput(value, info)

    @model_validator(mode="after")
    def _cached_not_slower(self) -> GpuHourPricing:
        cached = self.cached_prompt_tokens_per_s
        if cached is not None and cached < self.prompt_tokens_per_s:
            raise ValueError(
                "cached_prompt_tokens_per_s is lower than prompt_tokens_per_s: cached tokens "
                "skip prefill, so they cannot be slower; leave it unset to price them at 0"
            )
        return self

    @property
    def usd_per_second(self) -> Decimal:
        return self.usd_per_gpu_hour * self.gpus / _SECONDS_PER_HOUR

    def _usd(self, tokens: Decimal | int, tokens_per_s: Decimal) -> Decimal:
        # One division, last: GPU-hour cost x tokens / tokens per hour. Dividing first
        # (by 3600, then by the throughput) would round twice and turn one exact GPU-hour
        # into $2.4999...
        return self.usd_per_gpu_hour * self.gpus * tokens / (tokens_per_s * _SECONDS_PER_HOUR)

    def per_token(self) -> TokenPricing:
        cached = self.cached_prompt_tokens_per_s
        return TokenPricing(
            input_per_mtok=self._usd(_MILLION, self.prompt_tokens_per_s),
            output_per_mtok=self._usd(_MILLION, self.output_tokens_per_s),
            cached_input_per_mtok=ZERO if cached is None else self._usd(_MILLION, cached),
        )  # cache writes: the input price (a write is a prefill)

    def cost(self, usage: Usage) -> Cost:
        cached = self.cached_prompt_tokens_per_s
        return Cost(
            input_usd=self._usd(usage.uncached_prompt_tokens, self.prompt_tokens_per_s),
            cached_input_usd=(
                ZERO if cached is None else self._usd(usage.cached_prompt_tokens, cached)
            ),
            output_usd=self._usd(usage.completion_tokens, self.output_tokens_per_s),
            cache_write_usd=self._usd(usage.cache_write_tokens, self.prompt_tokens_per_s),
        )


Pricing = Annotated[TokenPricing | GpuHourPricing, Field(discriminator="kind")]
"""Either pricing; pydantic picks by ``kind`` when loading from TOML or JSON."""
