"""The ``agentflow`` command.

agentflow serve-local --replicas 2      start local llama-server replicas
agentflow serve-local --install-only    build/install llama-server and the models
agentflow report spans.jsonl [--since T] [--until T] [--json] [--html OUT.html]
agentflow route train --data outcomes.jsonl --out router.json
agentflow route eval --data outcomes.jsonl --plot curve.png
agentflow budgets holds --redis URL | --disk DIR [--key K] [--release-older-than S]
agentflow version
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _version(_: argparse.Namespace) -> int:
    from agentflow._version import VERSION

    print(f"agentflow {VERSION}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentflow", description="Cheap agentic workflows with visible costs."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from agentflow.cli._cache import add_parser as add_cache
    from agentflow.cli._calibrate import add_parser as add_calibrate
    from agentflow.cli._holds import add_parser as add_holds
    from agentflow.cli._report import add_parser as add_report
    from agentflow.cli._route import add_parser as add_route
    from agentflow.cli._serve_local import add_parser as add_serve_local

    add_serve_local(sub)
    add_calibrate(sub)
    add_report(sub)
    add_route(sub)
    add_holds(sub)
    add_cache(sub)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result = func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
