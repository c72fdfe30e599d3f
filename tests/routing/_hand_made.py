"""A hand-made outcomes file whose curves are worked out by hand in test_routing_harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# three tiers at costs 1, 4 and 10 per prompt: (correct, confidence) at each
#                   a              b              c
HAND_MADE = {
    "p1 easy": ((True, 0.9), (True, 0.9), (True, 0.99)),
    "p2 medium": ((False, 0.3), (True, 0.8), (True, 0.99)),
    "p3 hard": ((False, 0.6), (False, 0.4), (True, 0.99)),
    "p4 impossible": ((False, 0.95), (False, 0.2), (False, 0.5)),
}
COSTS = {"a": 1.0, "b": 4.0, "c": 10.0}


def hand_made_rows() -> list[dict[str, Any]]:
    rows = []
    for prompt, (a, b, c) in HAND_MADE.items():
        for tier, (ok, conf) in (("c", c), ("a", a), ("b", b)):  # rows in any order
            rows.append(
                {
                    "prompt": prompt,
                    "tier": tier,
                    "correct": ok,
                    "cost": COSTS[tier],
                    "confidence": conf,
                }
            )
    return rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path
