"""``agentflow calibrate``: measure a live endpoint's sustained throughput and price it.

It talks to an OpenAI-compatible ``/chat/completions`` endpoint with httpx directly (no
litellm: its client adds overhead that would be measured too) and measures

* **prefill**: ``requests`` long prompts, each starting with a random nonce so the
  engine's prefix cache cannot help, with ``max_tokens=1``;
* **decode**: ``requests`` short prompts with ``max_tokens=N``;

both ``concurrency`` requests at a time, aggregated as total tokens (as the engine's
``usage`` reports them) / wall-clock time of the batch. A warm-up request comes first
and is not counted. llama-server's per-request ``timings`` are kept as a cross-check.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx

from agentflow._errors import CallError, ConfigError
from budgets import GpuHourPricing

__all__ = ["Calibration", "Sample", "add_parser", "calibrate", "run"]

Phase = Literal["warmup", "prefill", "decode"]
Progress = Callable[[int, int, str], None]
"""``progress(done, total, phase)``, called after each request (warm-up included)."""

_WORDS = [
    "the",
    "river",
    "city",
    "light",
    "house",
    "music",
    "paper",
    "story",
    "garden",
    "winter",
    "market",
    "table",
    "window",
    "morning",
    "doctor",
    "animal",
    "forest",
    "school",
    "summer",
    "letter",
    "island",
    "mountain",
    "engine",
    "silver",
    "family",
    "country",
    "number",
    "picture",
    "question",
    "answer",
    "history",
    "teacher",
    "machine",
    "evening",
    "road",
    "water",
    "stone",
    "bread",
    "field",
    "cloud",
    "friend",
    "money",
    "energy",
    "travel",
    "report",
    "station",
]
_DECODE_PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."


@dataclass(frozen=True)
class Sample:
    """One measured request."""

    phase: Phase
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    engine_prompt_per_s: float | None = None
    """llama-server's ``timings.prompt_per_second`` for this request, if reported."""
    engine_predicted_per_s: float | None = None
    """llama-server's ``timings.predicted_per_second`` for this request, if reported."""


@dataclass(frozen=True)
class Calibration:
    """The measured sustained throughput of one endpoint at one concurrency."""

    api_base: str
    model: str
    concurrency: int
    usd_per_gpu_hour: Decimal
    gpus: int
    prompt_tokens_per_s: Decimal
    """Prompt tokens prefilled per second, all concurrent requests together."""
    output_tokens_per_s: Decimal
    """Output tokens generated per second, all concurrent requests together."""
    prefill_seconds: float
    decode_seconds: float
    samples: tuple[Sample, ...] = field(repr=False)

    def _engine_mean(self, phase: Phase, attr: str) -> float | None:
        values = [
            v for s in self.samples if s.phase == phase and (v := getattr(s, attr)) is not None
        ]
        return sum(values) / len(values) if values else None

    @property
    def engine_prompt_per_s(self) -> float | None:
        """Mean of the engine's per-request prefill rate (one request, not aggregated)."""
        return self._engine_mean("prefill", "engine_prompt_per_s")

    @property
    def engine_output_per_s(self) -> float | None:
        """Mean of the engine's per-request decode rate (one request, not aggregated)."""
        return self._engine_mean("decode", "engine_predicted_per_s")

    def pricing(self) -> GpuHourPricing:
        return GpuHourPricing(
            usd_per_gpu_hour=self.usd_per_gpu_hour,
            gpus=self.gpus,
            prompt_tokens_per_s=self.prompt_tokens_per_s,
            output_tokens_per_s=self.output_tokens_per_s,
        )

    def pricing_code(self) -> str:
        """The ``GpuHourPricing(...)`` line to paste into a zoo definition."""
        return (
            f'GpuHourPricing(usd_per_gpu_hour="{self.usd_per_gpu_hour}", gpus={self.gpus}, '
            f'prompt_tokens_per_s="{self.prompt_tokens_per_s}", '
            f'output_tokens_per_s="{self.output_tokens_per_s}")'
        )


def _round(value: float) -> Decimal:
    """Three significant figures, written without an exponent (1234.5 -> 1230)."""
    return Decimal(format(Decimal(f"{value:.3g}"), "f"))


def _prompt(words: int, phase: Phase) -> str:
    # The nonce comes first so no two requests share a prefix the engine could reuse.
    nonce = secrets.token_hex(8)
    if phase == "decode":
        return f"[{nonce}] {_DECODE_PROMPT}"
    rng = secrets.SystemRandom()
    filler = " ".join(rng.choice(_WORDS) for _ in range(max(words, 1)))
    return f"[{nonce}] Summarise this text in one word: {filler}"


class _Endpoint:
    def __init__(self, api_base: str, model: str, timeout: float) -> None:
        self.api_base = api_base.rstrip("/")
        self.url = f"{self.api_base}/chat/completions"
        self.model = model
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self.client.close()

    def request(self, phase: Phase, words: int, max_tokens: int) -> Sample:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": _prompt(words, phase)}],
            "max_tokens": max_tokens,
            "temperature": 0.8,
            "stream": False,
        }
        started = time.perf_counter()
        try:
            response = self.client.post(self.url, json=body)
        except httpx.TransportError as exc:
            raise CallError(
                f"calibrate: cannot reach {self.url} ({type(exc).__name__}: {exc}). Check that "
                "the server is running and that --endpoint is its OpenAI-compatible base URL "
                "(ending in /v1); `agentflow serve-local` starts a local one."
            ) from exc
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise CallError(
                f"calibrate: POST {self.url} returned HTTP {response.status_code}: "
                f"{response.text[:300]!r}. Check --endpoint and that --model "
                f"{self.model!r} is a model this endpoint serves."
            )
        try:
            data: dict[str, Any] = response.json()
            usage = data["usage"]
            prompt_tokens = int(usage["prompt_tokens"])
            completion_tokens = int(usage["completion_tokens"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CallError(
                f"calibrate: {self.url} answered without a usable `usage` "
                f"(prompt_tokens, completion_tokens): {response.text[:300]!r}. "
                "Calibration needs an engine that reports token usage."
            ) from exc
        timings = data.get("timings") if isinstance(data.get("timings"), dict) else None

        def timing(key: str) -> float | None:
            value = timings.get(key) if timings else None
            return float(value) if isinstance(value, int | float) and value > 0 else None

        return Sample(
            phase=phase,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=seconds,
            engine_prompt_per_s=timing("prompt_per_second"),
            engine_predicted_per_s=timing("predicted_per_second"),
        )


def calibrate(
    api_base: str,
    model: str,
    *,
    concurrency: int = 2,
    requests: int = 8,
    prompt_tokens: int = 512,
    max_tokens: int = 64,
    usd_per_gpu_hour: Decimal | str | float,
    gpus: int = 1,
    progress: Progress | None = None,
    timeout: float = 300.0,
) -> Calibration:
    """Measure ``api_base``'s sustained prefill and decode throughput for ``model``.

    Raises ``ConfigError`` for bad arguments and ``CallError`` when the endpoint cannot
    be reached or answers with an error.
    """
    for name, value in (
        ("concurrency", concurrency),
        ("requests", requests),
        ("prompt_tokens", prompt_tokens),
        ("max_tokens", max_tokens),
        ("gpus", gpus),
    ):
        if value < 1:
            raise ConfigError(f"calibrate: {name} must be at least 1, got {value}")
    try:
        usd = Decimal(str(usd_per_gpu_hour))
    except InvalidOperation as exc:
        raise ConfigError(
            f"calibrate: usd_per_gpu_hour must be a number, got {usd_per_gpu_hour!r}"
        ) from exc
    if not usd.is_finite() or usd < 0:
        raise ConfigError(f"calibrate: usd_per_gpu_hour must be 0 or more, got {usd}")

    total = 1 + 2 * requests
    done = 0
    lock = threading.Lock()

    def tick(phase: str) -> None:
        nonlocal done
        with lock:
            done += 1
            if progress is not None:
                progress(done, total, phase)

    endpoint = _Endpoint(api_base, model, timeout)
    try:
        if progress is not None:
            progress(0, total, "warmup")
        # Warm-up (not counted); it also tells how many tokens a filler word costs.
        warm = endpoint.request("warmup", prompt_tokens, 1)
        tick("warmup")
        words = max(1, round(prompt_tokens * prompt_tokens / max(warm.prompt_tokens, 1)))

        def batch(phase: Phase, n_words: int, n_max: int) -> tuple[list[Sample], float]:
            def one(_: int) -> Sample:
                sample = endpoint.request(phase, n_words, n_max)
                tick(phase)
                return sample

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                samples = list(pool.map(one, range(requests)))
            return samples, time.perf_counter() - started

        prefill, prefill_s = batch("prefill", words, 1)
        decode, decode_s = batch("decode", 0, max_tokens)
    finally:
        endpoint.close()

    prompt_total = sum(s.prompt_tokens for s in prefill)
    output_total = sum(s.completion_tokens for s in decode)
    if prompt_total <= 0 or output_total <= 0:
        raise CallError(
            f"calibrate: {endpoint.url} reported {prompt_total} prompt and {output_total} "
            "output tokens; cannot compute a throughput from zero tokens."
        )
    return Calibration(
        api_base=endpoint.api_base,
        model=model,
        concurrency=concurrency,
        usd_per_gpu_hour=usd,
        gpus=gpus,
        prompt_tokens_per_s=_round(prompt_total / prefill_s),
        output_tokens_per_s=_round(output_total / decode_s),
        prefill_seconds=prefill_s,
        decode_seconds=decode_s,
        samples=(warm, *prefill, *decode),
    )


# --- command line -------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``calibrate`` subcommand; it sets ``func=run`` on the namespace."""
    parser = subparsers.add_parser(
        "calibrate",
        help="measure a live endpoint's throughput and print the GpuHourPricing to use",
        description=(
            "Measure the sustained prefill and decode throughput of a live OpenAI-compatible "
            "endpoint at a chosen concurrency and print the GpuHourPricing to use."
        ),
    )
    parser.add_argument(
        "--endpoint", required=True, help="OpenAI-compatible base URL, e.g. http://host:8081/v1"
    )
    parser.add_argument("--model", required=True, help="model name the endpoint serves")
    parser.add_argument(
        "--usd-per-gpu-hour", required=True, type=Decimal, help="price of one GPU-hour in USD"
    )
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the endpoint holds (1)")
    parser.add_argument("--concurrency", type=int, default=2, help="requests at a time (2)")
    parser.add_argument("--requests", type=int, default=8, help="requests per phase (8)")
    parser.add_argument(
        "--prompt-tokens", type=int, default=512, help="prompt length for prefill (512)"
    )
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per decode (64)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, s (300)")
    parser.set_defaults(func=run)


def _bar(done: int, total: int, phase: str) -> None:
    width = 30
    filled = width * done // total
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {phase:<8}{end}")
    sys.stderr.flush()


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} tokens/s"


def run(args: argparse.Namespace) -> int:
    print(
        f"calibrating {args.endpoint} (model {args.model}): {args.requests} prefill + "
        f"{args.requests} decode requests, concurrency {args.concurrency}",
        file=sys.stderr,
    )
    try:
        cal = calibrate(
            args.endpoint,
            args.model,
            concurrency=args.concurrency,
            requests=args.requests,
            prompt_tokens=args.prompt_tokens,
            max_tokens=args.max_tokens,
            usd_per_gpu_hour=args.usd_per_gpu_hour,
            gpus=args.gpus,
            progress=_bar,
            timeout=args.timeout,
        )
        per_token = cal.pricing().per_token()
    except (CallError, ConfigError) as exc:
        sys.stderr.write("\n")
        print(f"agentflow calibrate: error: {exc}", file=sys.stderr)
        return 1
    prefill = [s for s in cal.samples if s.phase == "prefill"]
    decode = [s for s in cal.samples if s.phase == "decode"]
    print(
        f"prefill: {cal.prompt_tokens_per_s} prompt tokens/s "
        f"({sum(s.prompt_tokens for s in prefill)} tokens in {cal.prefill_seconds:.2f} s; "
        f"engine, per request: {_rate(cal.engine_prompt_per_s)})"
    )
    print(
        f"decode:  {cal.output_tokens_per_s} output tokens/s "
        f"({sum(s.completion_tokens for s in decode)} tokens in {cal.decode_seconds:.2f} s; "
        f"engine, per request: {_rate(cal.engine_output_per_s)})"
    )
    print(
        f"at ${cal.usd_per_gpu_hour}/GPU-hour x {cal.gpus} GPU: "
        f"input ${per_token.input_per_mtok:.4f}/Mtok, "
        f"output ${per_token.output_per_mtok:.4f}/Mtok"
    )
    print(cal.pricing_code())
    return 0
