"""``agentflow route train`` and ``agentflow route eval``: learned routers and the
offline cost/quality harness, from the command line.

    agentflow route train --data outcomes.jsonl --out router.json [--kind knn|logistic|mf]
    agentflow route eval --data outcomes.jsonl [--router router.json] [--plot curve.png]
    agentflow route eval --csv 'mmlu/responses/*.csv' \
        --contaminated mmlu/contaminated_prompts.jsonl \
        [--price MODEL=IN/OUT ...] [--cost MODEL=USD ...] [--holdout 0.2] [--json] \
        [--embedding-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from agentflow._errors import AgentflowError

__all__ = ["add_parser", "run_eval", "run_train"]

KINDS = ("knn", "logistic", "mf")  # agentflow.routing._train.ROUTER_KINDS, without importing it


def _cost(value: str) -> tuple[str, float]:
    model, sep, price = value.rpartition("=")
    try:
        usd = float(price)
    except ValueError:
        usd = math.nan
    if not sep or not model or not math.isfinite(usd) or usd < 0:
        raise argparse.ArgumentTypeError(
            f"--cost takes MODEL=USD_PER_CALL (e.g. gpt-4o-mini=0.0004), got {value!r}; "
            "for a price per million tokens use --price MODEL=IN/OUT"
        )
    return model, usd


def _price(value: str) -> tuple[str, tuple[float, float]]:
    model, sep, prices = value.rpartition("=")
    parts = prices.split("/")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if (
        not sep
        or not model
        or len(numbers) not in (1, 2)
        or not all(math.isfinite(n) and n >= 0 for n in numbers)
    ):
        raise argparse.ArgumentTypeError(
            "--price takes MODEL=USD_PER_MILLION_TOKENS, or MODEL=INPUT/OUTPUT per million "
            f"tokens (e.g. gpt-4o=2.5/10), got {value!r}"
        )
    return model, (numbers[0], numbers[-1])


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = math.nan
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(
            f"--holdout takes the share of prompts to hold out, in (0, 1) (e.g. 0.2), got {value!r}"
        )
    return share


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return n


def _sources(parser: argparse.ArgumentParser) -> None:
    """--data or --csv (repeatable, globs), and how a CSV is filtered and priced."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="OUTCOMES.jsonl", help="agentflow outcomes JSONL")
    source.add_argument(
        "--csv",
        action="append",
        metavar="ROUTELLM.csv",
        help="a RouteLLM per-query outcome CSV, prompt,<model>,<model>...; repeat it or "
        "give a quoted glob ('responses/mmlu_*.csv') to read several as one set",
    )
    parser.add_argument(
        "--contaminated",
        action="append",
        metavar="PROMPTS.jsonl",
        help="prompts to leave out of the CSVs (RouteLLM's contaminated_prompts.jsonl)",
    )
    parser.add_argument(
        "--cost",
        type=_cost,
        action="append",
        default=[],
        metavar="MODEL=USD",
        help="USD per call of a CSV model column (repeat)",
    )
    parser.add_argument(
        "--price",
        type=_price,
        action="append",
        default=[],
        metavar="MODEL=IN[/OUT]",
        help="USD per million input[/output] tokens of a CSV model column, applied to each "
        "prompt's tokens and its answer's (repeat; RouteLLM's pair has built-in prices)",
    )
    parser.add_argument(
        "--output-tokens",
        type=_count,
        metavar="N",
        help="output tokens per call to price when a CSV has no <model>_response column",
    )
    parser.add_argument(
        "--tiers",
        type=_tiers,
        metavar="A,B,C",
        help="only these tiers (or CSV models), in this order (cheapest first)",
    )
    parser.add_argument(
        "--embedder",
        choices=("local", "hashing"),
        default="local",
        help="prompt features: af.LocalEmbedder (all-MiniLM-L6-v2, the default) or hashed "
        "character n-grams (no model)",
    )
    parser.add_argument(
        "--embedding-cache",
        metavar="DIR",
        help="keep the prompts' vectors in DIR (one .npz per embedder) and reuse them on "
        "the next run, instead of embedding every prompt again",
    )


def _tiers(value: str) -> list[str]:
    tiers = [t.strip() for t in value.split(",") if t.strip()]
    if not tiers:
        raise argparse.ArgumentTypeError(f"--tiers takes a comma-separated list, got {value!r}")
    return tiers


def _kinds(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    kinds = list(KINDS) if kinds == ["all"] else kinds
    if not kinds or any(k not in KINDS for k in kinds):
        raise argparse.ArgumentTypeError(
            f"--kind takes {', '.join(KINDS)} (comma-separated) or all, got {value!r}"
        )
    return list(dict.fromkeys(kinds))


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
        help="train a router on outcomes (JSONL or RouteLLM CSVs) and save it as JSON",
        description=(
            "Train a router on outcomes JSONL (one row per prompt and tier: prompt, tier, "
            "correct, cost, optional tokens and confidence) or RouteLLM CSVs, and write it "
            "as JSON; load it with agentflow.routing.load_router."
        ),
    )
    _sources(train)
    train.add_argument("--out", required=True, metavar="ROUTER.json")
    train.add_argument(
        "--kind",
        choices=KINDS,
        default="knn",
        help="knn, logistic regression or mf (matrix factorisation); default knn",
    )
    train.add_argument(
        "--k", type=_positive, help="neighbours (knn; default: chosen by calibration)"
    )
    train.add_argument(
        "--rule",
        choices=("gain", "confidence"),
        default="gain",
        help="gain: the tier with the best expected correctness for its price (default); "
        "confidence: the cheapest tier with P(correct) >= threshold",
    )
    train.add_argument(
        "--threshold",
        type=_threshold,
        help="gain rule: the gain in P(correct) worth one call of the strongest tier "
        "(default 0.1); confidence rule: the P(correct) a tier needs (default 0.5)",
    )
    train.set_defaults(func=run_train)

    ev = sub.add_parser(
        "eval",
        help="cost/quality curves of tiers, escalation, a router and the oracle",
        description=(
            "Compare always-one-tier, the escalation cascade, a cross-validated, held-out "
            "or given router, a random router and the oracle on labelled outcomes "
            "(agentflow JSONL with --data, RouteLLM CSVs with --csv), with the field's "
            "metrics: APGR, CPT(50%), CPT(80%), strong-model call share, bootstrap "
            "95% intervals."
        ),
    )
    _sources(ev)
    ev.add_argument("--router", metavar="ROUTER.json", help="evaluate this router as given")
    ev.add_argument(
        "--kind",
        type=_kinds,
        default=["knn"],
        metavar="KIND[,KIND]",
        help="the router(s) to train and draw, one curve each: knn (default), logistic, mf "
        "(matrix factorisation), comma-separated, or all",
    )
    ev.add_argument("--folds", type=_positive, default=5, help="cross-validation folds")
    ev.add_argument(
        "--holdout",
        type=_share,
        metavar="SHARE",
        help="train on the other prompts and score every policy on this share (e.g. 0.2)",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the folds or split (default 0)")
    ev.add_argument(
        "--rule",
        choices=("gain", "confidence", "both"),
        default="gain",
        help="decision rule of the trained router's curve (both: one curve each)",
    )
    ev.add_argument(
        "--resamples",
        type=_count,
        default=1000,
        help="bootstrap resamples for the intervals (default 1000; 0: none)",
    )
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument("--plot", metavar="CURVE.png", help="draw the curves (needs matplotlib)")
    ev.set_defaults(func=run_eval)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _embedder(args: argparse.Namespace) -> Any:
    embedder: Any
    if args.embedder == "local":
        from agentflow.embedders import LocalEmbedder

        embedder = LocalEmbedder()
    else:
        from agentflow.routing import HashingEmbedder

        embedder = HashingEmbedder()
    if args.embedding_cache:
        from agentflow.routing import CachedEmbedder

        embedder = CachedEmbedder(embedder, args.embedding_cache)
    return embedder


def _outcomes(args: argparse.Namespace, tiers: Any = None) -> Any:
    from agentflow.routing import read_outcomes, read_routellm_csv
    from budgets import TokenPricing

    if getattr(args, "csv", None):
        prices = {
            m: TokenPricing(input_per_mtok=str(i), output_per_mtok=str(o))
            for m, (i, o) in args.price
        }
        outcomes = read_routellm_csv(
            args.csv,
            dict(args.cost),
            prices=prices,
            models=args.tiers or tiers,
            contaminated=args.contaminated,
            output_tokens=args.output_tokens,
        )
    else:
        if args.contaminated or args.price or args.cost or args.output_tokens is not None:
            raise AgentflowError(
                "--contaminated, --price, --cost and --output-tokens apply to --csv; "
                "agentflow's JSONL has its cost per row (filter its rows instead)"
            )
        outcomes = read_outcomes(args.data)
    return outcomes.ordered(args.tiers) if args.tiers else outcomes


def run_train(args: argparse.Namespace) -> int:
    """``agentflow route train``; returns the exit code."""
    try:
        from agentflow.routing import train_router

        outcomes = _outcomes(args)
        options = {"k": args.k} if args.kind == "knn" else {}
        router = train_router(
            outcomes,
            args.kind,
            threshold=args.threshold,
            rule=args.rule,
            embedder=_embedder(args),
            **options,
        )
        router.save(args.out)
    except (AgentflowError, OSError) as err:
        print(f"agentflow route train: {err}", file=sys.stderr)
        return 1
    k = f"k={getattr(router, 'k', '')}, " if args.kind == "knn" else ""
    print(
        f"trained a {args.kind} router on {len(outcomes.prompts)} prompts × "
        f"{len(outcomes.tiers)} tiers ({', '.join(outcomes.tiers)}); {k}rule {router.rule}, "
        f"threshold {router.threshold:g}; wrote {args.out}"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``agentflow route eval``; returns the exit code."""
    try:
        from agentflow.routing import evaluate, load_router, plot_report
        from agentflow.routing._learned import LearnedRouter, Rule

        router = None
        if args.router:
            loaded = load_router(args.router)
            if not isinstance(loaded, LearnedRouter):
                raise AgentflowError(
                    f"{args.router} is a rule router; the harness evaluates learned "
                    "routers (knn, logistic, mf), which have a threshold to sweep"
                )
            router = loaded
        outcomes = _outcomes(args, router.tiers if router is not None else None)
        embedder = None if router is not None else _embedder(args)
        rules: tuple[Rule, ...] = ("gain", "confidence") if args.rule == "both" else (args.rule,)
        report = evaluate(
            outcomes,
            router=router,
            kind=args.kind,
            folds=args.folds,
            seed=args.seed,
            embedder=embedder,
            holdout=args.holdout,
            rules=rules,
            resamples=args.resamples,
        )
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print(report.render(), end="")
        if args.plot:
            plot_report(report, args.plot)
            print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    except (AgentflowError, OSError) as err:
        print(f"agentflow route eval: {err}", file=sys.stderr)
        return 1
    return 0
