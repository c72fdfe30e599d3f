"""``agentflow calibrate`` against a real llama-server (SmolLM2-135M on CPU)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from decimal import Decimal

import pytest

from agentflow._errors import CallError
from agentflow.cli._calibrate import add_parser, calibrate
from agentflow.local import LlamaServer

pytestmark = pytest.mark.integration

SMALL = {"requests": 4, "prompt_tokens": 256, "max_tokens": 16, "concurrency": 2}


def _cli_has_calibrate() -> bool:
    from agentflow.cli import build_parser

    try:
        build_parser().parse_args(["calibrate", "--help"])
    except SystemExit as exc:
        return exc.code == 0
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_calibrate_measures_a_real_endpoint(llama_servers: list[LlamaServer]) -> None:
    server = llama_servers[0]
    seen: list[tuple[int, int, str]] = []
    cal = calibrate(
        server.base_url,
        server.alias,
        usd_per_gpu_hour=Decimal("2.50"),
        progress=lambda done, total, phase: seen.append((done, total, phase)),
        **SMALL,
    )

    assert cal.prompt_tokens_per_s > 0
    assert cal.output_tokens_per_s > 0
    assert cal.prompt_tokens_per_s > cal.output_tokens_per_s
    # Warm-up + 4 prefill + 4 decode, and the progress bar saw every one of them.
    assert [s.phase for s in cal.samples] == ["warmup"] + ["prefill"] * 4 + ["decode"] * 4
    assert seen[-1] == (9, 9, "decode")
    assert [d for d, _, _ in seen] == list(range(10))
    prefill = [s for s in cal.samples if s.phase == "prefill"]
    decode = [s for s in cal.samples if s.phase == "decode"]
    # The filler is sized from the warm-up so the prompts land near the asked length.
    assert all(200 <= s.prompt_tokens <= 320 for s in prefill), [s.prompt_tokens for s in prefill]
    assert all(s.completion_tokens == 1 for s in prefill)
    assert all(0 < s.completion_tokens <= 16 for s in decode)
    # llama-server reports its own timings; they are kept as a cross-check.
    assert cal.engine_prompt_per_s is not None
    assert cal.engine_prompt_per_s > 0
    assert cal.engine_output_per_s is not None
    assert cal.engine_output_per_s > 0

    pricing = cal.pricing()
    assert pricing.usd_per_gpu_hour == Decimal("2.50")
    assert pricing.gpus == 1
    assert pricing.prompt_tokens_per_s == cal.prompt_tokens_per_s
    assert pricing.output_tokens_per_s == cal.output_tokens_per_s
    per_token = pricing.per_token()
    million, hour = Decimal(1_000_000), Decimal(3600)
    # The seed formula, as one exact division (dividing by 3600 first would round twice).
    assert per_token.output_per_mtok == Decimal("2.50") * million / (hour * cal.output_tokens_per_s)
    assert per_token.input_per_mtok == Decimal("2.50") * million / (hour * cal.prompt_tokens_per_s)
    # ... which is usd_per_gpu_hour / 3600 / output_tokens_per_s * 1e6 to 25 digits.
    stepwise = Decimal("2.50") / hour / cal.output_tokens_per_s * million
    assert abs(per_token.output_per_mtok - stepwise) <= stepwise * Decimal("1e-25")


def test_cli_prints_the_pricing_line(llama_servers: list[LlamaServer]) -> None:
    server = llama_servers[0]
    argv = [
        "calibrate",
        "--endpoint",
        server.base_url,
        "--model",
        server.alias,
        "--usd-per-gpu-hour",
        "2.50",
        "--requests",
        "2",
        "--prompt-tokens",
        "128",
        "--max-tokens",
        "8",
    ]
    if _cli_has_calibrate():
        done = subprocess.run(
            [sys.executable, "-m", "agentflow.cli", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    else:  # the subcommand is not registered yet: drive add_parser directly
        parser = argparse.ArgumentParser(prog="agentflow")
        add_parser(parser.add_subparsers())
        args = parser.parse_args(argv)
        code, out, err = _run_captured(args)
    assert code == 0, err
    assert 'GpuHourPricing(usd_per_gpu_hour="2.50", gpus=1, prompt_tokens_per_s="' in out
    assert "/Mtok" in out
    assert "5/5 decode" in err  # the progress bar reached the end


def _run_captured(args: argparse.Namespace) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = args.func(args)
    return code, out.getvalue(), err.getvalue()


def test_dead_endpoint_exits_1_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(CallError, match="cannot reach"):
        calibrate(url, "m", usd_per_gpu_hour=1, requests=1)

    parser = argparse.ArgumentParser(prog="agentflow")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["calibrate", "--endpoint", url, "--model", "m", "--usd-per-gpu-hour", "1"]
    )
    code, out, err = _run_captured(args)
    assert code == 1
    assert out == ""
    assert f"{url}/chat/completions" in err
    assert "agentflow serve-local" in err
