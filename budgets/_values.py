"""Usage and Cost: the two values every call produces.

Both are frozen and add up with ``+``, so totals over a step, a run or a report are plain
sums. Costs are exact ``Decimal`` values; floats appear only on spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["ZERO", "Cost", "Usage"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one call (or a sum of calls) used.

    ``prompt_tokens`` is every input token: it includes ``cached_prompt_tokens`` (read
    from a provider's prompt cache) and ``cache_write_tokens`` (written to it, what
    Anthropic reports as ``cache_creation_input_tokens``), as the OpenAI, OpenInference
    and OTel GenAI conventions count them. ``uncached_prompt_tokens`` is the rest.
    """

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_write_tokens: int = 0

    def __post_init__(self) -> None:
        counts = (
            self.prompt_tokens,
            self.cached_prompt_tokens,
            self.completion_tokens,
            self.cache_write_tokens,
        )
        if min(counts) < 0:
            raise ValueError(f"token counts cannot be negative: {self!r}")
        if self.cached_prompt_tokens + self.cache_write_tokens > self.prompt_tokens:
            raise ValueError(
                f"cached_prompt_tokens ({self.cached_prompt_tokens}) + cache_write_tokens "
                f"({self.cache_write_tokens}) cannot exceed prompt_tokens "
                f"({self.prompt_tokens}): prompt_tokens counts every input token, cache "
                "reads and writes included; add them to prompt_tokens"
            )

    @property
    def uncached_prompt_tokens(self) -> int:
        """Prompt tokens neither read from nor written to a prompt cache."""
        return self.prompt_tokens - self.cached_prompt_tokens - self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.cached_prompt_tokens + other.cached_prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def __radd__(self, other: object) -> Usage:
        # lets sum(usages) start from 0
        if other == 0:
            return self
        return NotImplemented


@dataclass(frozen=True, slots=True)
class Cost:
    """What a call (or a sum of calls) cost, in US dollars, as exact decimals.

    ``input_usd`` is the uncached prompt tokens, ``cached_input_usd`` the cached ones
    (cache reads), ``cache_write_usd`` the ones written to a prompt cache;
    ``prompt_usd`` is all three.
    """

    input_usd: Decimal = ZERO
    cached_input_usd: Decimal = ZERO
    output_usd: Decimal = ZERO
    cache_write_usd: Decimal = ZERO

    @property
    def prompt_usd(self) -> Decimal:
        """What the prompt cost: uncached, cache-read and cache-write tokens."""
        return self.input_usd + self.cached_input_usd + self.cache_write_usd

    @property
    def total_usd(self) -> Decimal:
        return self.prompt_usd + self.output_usd

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            self.input_usd + other.input_usd,
            self.cached_input_usd + other.cached_input_usd,
            self.output_usd + other.output_usd,
            self.cache_write_usd + other.cache_write_usd,
        )

    def __radd__(self, other: object) -> Cost:
        if other == 0:
            return self
        return NotImplemented
