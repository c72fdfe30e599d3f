"""``agentflow cache threshold PAIRS``: a semantic cache's threshold from labelled pairs.

PAIRS holds questions your step sees, each beside a question already cached and whether
the cached answer answers it (``same``): JSON lines ``{"question", "cached", "same"}``
or a CSV/TSV with those columns. The command embeds them (``af.LocalEmbedder`` unless
``--embedder hashing``), prints the hit rate and wrong-hit rate at each threshold with
the hit guard's checks, and the threshold with the most hits at no more than
``--max-wrong`` wrong hits: the ``CachePolicy(kind="semantic", threshold=...)`` to use::

    agentflow cache threshold faq_pairs.jsonl --max-wrong 0.01
    agentflow cache threshold faq_pairs.csv --guard all --json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    cache = sub.add_parser("cache", help="semantic cache tools")
    commands = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    threshold = commands.add_parser(
        "threshold",
        help="choose a semantic cache threshold from labelled pairs",
        description="Hit and wrong-hit rates per threshold on labelled pairs (JSON lines or "
        "CSV/TSV with question, cached, same), and the threshold with the most hits at "
        "no more than --max-wrong wrong hits.",
    )
    threshold.add_argument("pairs", help="the labelled pairs file (.jsonl, .csv or .tsv)")
    threshold.add_argument(
        "--max-wrong",
        type=float,
        default=0.01,
        help="the share of wrong hits to accept (default 0.01: 1%%)",
    )
    threshold.add_argument(
        "--guard",
        default="default",
        help="hit guard checks: default (numbers, negation), all, none, or a comma list "
        "of numbers,negation,units,dates,entities",
    )
    threshold.add_argument(
        "--embedder",
        choices=("local", "hashing"),
        default="local",
        help="local: af.LocalEmbedder (the semantic cache's default); hashing: hashed "
        "character n-grams, no model",
    )
    threshold.add_argument(
        "--thresholds",
        default="0.70:1.00:0.005",
        metavar="LO:HI:STEP",
        help="the thresholds to try (default 0.70:1.00:0.005)",
    )
    threshold.add_argument("--json", action="store_true", help="print one JSON object")
    threshold.set_defaults(func=run)


def _thresholds(spec: str) -> list[float]:
    from agentflow._errors import ConfigError

    try:
        lo, hi, step = (float(x) for x in spec.split(":"))
    except ValueError:
        raise ConfigError(
            f"--thresholds takes LO:HI:STEP, e.g. 0.70:1.00:0.005; got {spec!r}"
        ) from None
    if not (step > 0 and lo <= hi):
        raise ConfigError(f"--thresholds needs LO <= HI and STEP > 0; got {spec!r}")
    count = round((hi - lo) / step) + 1
    return [round(lo + i * step, 6) for i in range(count)]


def run(args: argparse.Namespace) -> int:
    from agentflow._errors import AgentflowError

    try:
        return _run(args)
    except AgentflowError as err:
        print(f"agentflow cache threshold: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from agentflow.cache import read_pairs, threshold_curve

    thresholds = _thresholds(args.thresholds)  # bad input fails before the model loads
    pairs = read_pairs(args.pairs)
    embedder: Any
    if args.embedder == "local":
        from agentflow.embedders import LocalEmbedder

        embedder = LocalEmbedder(trace=False)
    else:
        from agentflow.routing import HashingEmbedder

        embedder = HashingEmbedder()
    guard = args.guard if args.guard in ("default", "all", "none") else args.guard.split(",")
    curve = threshold_curve(pairs, embedder, guard=guard, thresholds=thresholds)
    if args.json:
        print(json.dumps(curve.to_dict(args.max_wrong), indent=1))
        return 0
    print(
        f"{curve.pairs} pairs ({curve.same} same, {curve.pairs - curve.same} different); "
        f"embedder {curve.embedder}; guard: {', '.join(curve.guard) or 'none'}\n"
    )
    print(f"{'threshold':>9}  {'hit rate':>8}  {'wrong hits':>10}")
    for row in curve.rows:
        print(f"{row.threshold:>9.3f}  {row.hit_rate:>8.1%}  {row.wrong_hit_rate:>10.2%}")
    chosen = curve.choose(args.max_wrong)
    print()
    if chosen is None:
        print(
            f"no threshold keeps wrong hits at or under {args.max_wrong:.1%}: "
            "turn more guard checks on (--guard all), or do not cache this step semantically"
        )
        return 1
    print(
        f"threshold {chosen.threshold:.3f}: {chosen.hit_rate:.1%} of same questions hit, "
        f"{chosen.wrong_hit_rate:.2%} wrong hits (at most {args.max_wrong:.1%})\n"
        f'use af.CachePolicy(kind="semantic", threshold={chosen.threshold:g})'
    )
    return 0
