"""``agentflow budgets holds``: list, and release, the holds left in a shared ledger.

A process killed mid-call leaves its reservations in a diskcache or Redis ledger. They
stop counting once their lease lapses (``lease_s``, 600 s by default); this command shows
them before that, and releases the ones an operator knows are dead::

    agentflow budgets holds --redis redis://127.0.0.1:6379/0
    agentflow budgets holds --disk ~/.cache/agentflow/ledger --key tenant:u1 \\
        --release-older-than 900
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    budgets = sub.add_parser("budgets", help="inspect shared budget ledgers")
    commands = budgets.add_subparsers(dest="budgets_command", metavar="COMMAND", required=True)
    holds = commands.add_parser(
        "holds",
        help="list (and release) open and lapsed holds",
        description="List the holds of a diskcache or Redis ledger: reservation id, "
        "amounts, age and lease left (negative once lapsed: it no longer counts). "
        "With --release-older-than, drop the holds at least that old.",
    )
    store = holds.add_mutually_exclusive_group(required=True)
    store.add_argument("--redis", metavar="URL", help="a RedisBackend's URL")
    store.add_argument("--disk", metavar="DIR", help="a DiskCacheBackend's directory")
    holds.add_argument("--prefix", default="budgets:", help="the RedisBackend's key prefix")
    holds.add_argument("--key", help="only this ledger key (default: every key with holds)")
    holds.add_argument(
        "--release-older-than",
        type=float,
        metavar="S",
        help="release the holds made at least S seconds ago (their process must be gone)",
    )
    holds.set_defaults(func=run)


def _seconds(value: float) -> str:
    return "n/a" if math.isinf(value) else f"{value:.1f}s"


def run(args: argparse.Namespace) -> int:
    from budgets import DiskCacheBackend, LedgerBackend, RedisBackend

    backend: LedgerBackend
    if args.redis is not None:
        backend = RedisBackend(args.redis, prefix=args.prefix)
    else:
        backend = DiskCacheBackend(args.disk)
    try:
        keys = [args.key] if args.key else backend.hold_keys()
        if args.release_older_than is not None:
            released = 0
            for key in keys:
                ids = backend.release_stale(key, args.release_older_than)
                released += len(ids)
                for reservation_id in ids:
                    print(f"released {key} {reservation_id}")
            print(f"released {released} hold(s) older than {args.release_older_than:g}s")
            return 0
        rows = [(key, hold) for key in keys for hold in backend.holds(key)]
        if not rows:
            print("no holds")
            return 0
        print(f"{'key':<24} {'reservation':<32} {'usd':>12} {'in':>8} {'out':>8} "
              f"{'calls':>5} {'age':>9} {'lease left':>10}")  # fmt: skip
        for key, hold in rows:
            usd, tokens_in, tokens_out, calls = hold.usd, *hold.amounts[1:]
            state = " lapsed" if hold.lapsed else ""
            print(
                f"{key:<24} {hold.id:<32} {usd:>12} {tokens_in:>8} {tokens_out:>8} "
                f"{calls:>5} {_seconds(hold.age_s):>9} {_seconds(hold.expires_in_s):>10}{state}"
            )
        return 0
    finally:
        backend.close()
