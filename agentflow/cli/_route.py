"""``agentflow route train`` and ``agentflow route eval``: learned routers and the
offline cost/quality harness, from the command line.

    agentflow route train --data outcomes.jsonl --out router.json [--kind knn|logistic]
    agentflow route eval --data outcomes.jsonl [--router router.json] [--plot curve.png]
    agentflow route eval --csv routellm.csv [--cost MODEL=USD ...] [--plot curve.png]
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from agentflow._errors import AgentflowError

__all__ = ["add_parser", "run_eval", "run_train"]


def _cost(value: str) -> tuple[str, float]:
    model, sep, price = value.rpartition("=")
    try:
        usd = float(price)
    except ValueError:
        usd = math.nan
    if not sep or not model or not math.isfinite(usd) or usd < 0:
        raise argparse.ArgumentTypeError(
            f"--cost takes MODEL=USD_PER_CALL (e.g. gpt-4o-mini=0.15), got {value!r}"
        )
    return model, usd


def _tiers(value: str) -> list[str]:
    tiers = [t.strip() for t in value.split(",") if t.strip()]
    if not tiers:
        raise argparse.ArgumentTypeError(f"--tiers takes a comma-separated list, got {value!r}")
    return tiers


def _threshold(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        t = math.nan
    if not math.isfinite(t) or t < 0:
        raise argparse.ArgumentTypeError(f"--threshold takes a number >= 0, got {value!r}")
    return t


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return n


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``route`` with its ``train`` and ``eval`` subcommands."""
    route = subparsers.add_parser(
        "route",
        help="train a router on labelled outcomes, or compare routing policies offline",
        description="Learned routers for tier='auto' steps and the offline cost/quality harness.",
    )
    sub = route.add_subparsers(dest="route_command", metavar="SUBCOMMAND")
    route.set_defaults(func=lambda _: _usage(route))

    train = sub.add_parser(
        "train",
        help="train a router on outcomes JSONL and save it as JSON",
        description=(
            "Train a router on outcomes JSONL (one row per prompt and tier: prompt, tier, "
            "correct, cost, optional tokens and confidence) and write it as JSON; load it "
            "with agentflow.routing.load_router."
        ),
    )
    train.add_argument("--data", required=True, metavar="OUTCOMES.jsonl")
    train.add_argument("--out", required=True, metavar="ROUTER.json")
    train.add_argument("--kind", choices=("knn", "logistic"), default="knn")
    train.add_argument("--k", type=_positive, default=7, help="neighbours (knn, default 7)")
    train.add_argument(
        "--threshold",
        type=_threshold,
        default=0.5,
        help="the cheapest tier with P(correct) >= this answers (default 0.5)",
    )
    train.add_argument(
        "--tiers",
        type=_tiers,
        metavar="A,B,C",
        help="only these tiers, in this order (cheapest first)",
    )
    train.set_defaults(func=run_train)

    ev = sub.add_parser(
        "eval",
        help="cost/quality curves of tiers, escalation, a router and the oracle",
        description=(
            "Compare always-one-tier, the escalation cascade, a cross-validated (or given) "
            "router and the oracle on labelled outcomes: agentflow JSONL (--data) or a "
            "RouteLLM evaluation CSV (--csv)."
        ),
    )
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="OUTCOMES.jsonl", help="agentflow outcomes JSONL")
    source.add_argument("--csv", metavar="ROUTELLM.csv", help="prompt,<model>,<model>... CSV")
    ev.add_argument(
        "--cost",
        type=_cost,
        action="append",
        default=[],
        metavar="MODEL=USD",
        help="cost per call of a CSV model column (repeat; defaults exist for RouteLLM's pair)",
    )
    ev.add_argument("--router", metavar="ROUTER.json", help="evaluate this router as given")
    ev.add_argument("--kind", choices=("knn", "logistic"), default="knn")
    ev.add_argument("--folds", type=_positive, default=5, help="cross-validation folds")
    ev.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    ev.add_argument(
        "--tiers",
        type=_tiers,
        metavar="A,B,C",
        help="only these tiers, in this order (cheapest first)",
    )
    ev.add_argument("--plot", metavar="CURVE.png", help="draw the curves (needs matplotlib)")
    ev.set_defaults(func=run_eval)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _outcomes(args: argparse.Namespace) -> Any:
    from agentflow.routing import read_outcomes, read_routellm_csv

    if getattr(args, "csv", None):
        outcomes = read_routellm_csv(args.csv, dict(args.cost), models=args.tiers)
    else:
        outcomes = read_outcomes(args.data)
    return outcomes.ordered(args.tiers) if args.tiers else outcomes


def run_train(args: argparse.Namespace) -> int:
    """``agentflow route train``; returns the exit code."""
    try:
        from agentflow.routing import train_router

        outcomes = _outcomes(args)
        options = {"k": args.k} if args.kind == "knn" else {}
        router = train_router(outcomes, args.kind, threshold=args.threshold, **options)
        router.save(args.out)
    except (AgentflowError, OSError) as err:
        print(f"agentflow route train: {err}", file=sys.stderr)
        return 1
    print(
        f"trained a {args.kind} router on {len(outcomes.prompts)} prompts × "
        f"{len(outcomes.tiers)} tiers ({', '.join(outcomes.tiers)}), threshold "
        f"{args.threshold:g}; wrote {args.out}"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``agentflow route eval``; returns the exit code."""
    try:
        from agentflow.routing import evaluate, load_router, plot_report
        from agentflow.routing._learned import LearnedRouter

        outcomes = _outcomes(args)
        router = None
        if args.router:
            loaded = load_router(args.router)
            if not isinstance(loaded, LearnedRouter):
                raise AgentflowError(
                    f"{args.router} is a rule router; the harness evaluates learned "
                    "routers (knn, logistic), which have a threshold to sweep"
                )
            router = loaded
        report = evaluate(outcomes, router=router, kind=args.kind, folds=args.folds, seed=args.seed)
        print(report.render(), end="")
        if args.plot:
            plot_report(report, args.plot)
            print(f"wrote {args.plot}")
    except (AgentflowError, OSError) as err:
        print(f"agentflow route eval: {err}", file=sys.stderr)
        return 1
    return 0
