"""Labelled outcomes: how each tier did on each prompt, read from agentflow's JSONL.

agentflow's JSONL has one row per (prompt, tier)::

    {"prompt": "What is 7 + 5?", "tier": "small", "correct": true, "cost": 1.2e-06,
     "tokens": 41, "confidence": 0.83}

``tokens`` and ``confidence`` are optional; ``id`` (optional) tells apart rows whose
prompts are equal. RouteLLM's evaluation CSVs are read by ``_routellm.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentflow._errors import AgentflowError

__all__ = ["Outcomes", "OutcomesError", "read_outcomes"]


class OutcomesError(AgentflowError, ValueError):
    """A file of outcomes cannot be read; the message names the line and the problem."""


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per-prompt, per-tier results: ``correct``, ``cost`` and ``confidence`` are
    ``(len(prompts), len(tiers))`` arrays; tiers are cheapest first; a confidence that is
    not known is NaN; ``cost`` is USD per call. ``notes`` say how the data was read
    (files, prompts left out, how calls were priced)."""

    prompts: tuple[str, ...]
    tiers: tuple[str, ...]
    correct: np.ndarray
    cost: np.ndarray
    confidence: np.ndarray
    source: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        shape = (len(self.prompts), len(self.tiers))
        for name in ("correct", "cost", "confidence"):
            if getattr(self, name).shape != shape:
                raise OutcomesError(f"Outcomes.{name} must have shape {shape}")
        if not self.prompts or not self.tiers:
            raise OutcomesError("outcomes need at least one prompt and one tier")

    @property
    def has_confidence(self) -> bool:
        return bool(np.isfinite(self.confidence).any())

    def take(self, rows: Sequence[int] | np.ndarray) -> Outcomes:
        """The outcomes of the prompts at ``rows``."""
        idx = np.asarray(rows, dtype=int)
        return Outcomes(
            tuple(self.prompts[i] for i in idx),
            self.tiers,
            self.correct[idx],
            self.cost[idx],
            self.confidence[idx],
            self.source,
            self.notes,
        )

    def ordered(self, tiers: Sequence[str]) -> Outcomes:
        """Only the tiers named, in the order given (cheapest first)."""
        unknown = [t for t in tiers if t not in self.tiers]
        if unknown or not tiers or len(set(tiers)) != len(tiers):
            raise OutcomesError(
                f"tiers {list(tiers)} must name distinct tiers of the data, cheapest first: "
                f"{', '.join(self.tiers)}"
            )
        cols = [self.tiers.index(t) for t in tiers]
        return Outcomes(
            self.prompts,
            tuple(tiers),
            self.correct[:, cols],
            self.cost[:, cols],
            self.confidence[:, cols],
            self.source,
            self.notes,
        )


def _by_mean_cost(
    prompts: list[str],
    tiers: list[str],
    cells: dict[tuple[int, int], tuple[bool, float, float]],
    source: str,
) -> Outcomes:
    n, t = len(prompts), len(tiers)
    correct = np.zeros((n, t), dtype=bool)
    cost = np.zeros((n, t))
    confidence = np.full((n, t), np.nan)
    for (i, j), (ok, usd, conf) in cells.items():
        correct[i, j], cost[i, j], confidence[i, j] = ok, usd, conf
    order = sorted(range(t), key=lambda j: (float(cost[:, j].mean()), j))
    return Outcomes(
        tuple(prompts),
        tuple(tiers[j] for j in order),
        correct[:, order],
        cost[:, order],
        confidence[:, order],
        source,
    )


def _bool(value: Any, where: str, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise OutcomesError(f"{where}: {field!r} must be true or false, got {value!r}")


def _number(value: Any, where: str, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OutcomesError(f"{where}: {field!r} must be a number, got {value!r}")
    if not low <= value <= high:
        raise OutcomesError(f"{where}: {field!r} must be in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def read_outcomes(path: str | Path) -> Outcomes:
    """Read agentflow's outcomes JSONL; OutcomesError names the line of any bad row.

    Every prompt needs one row per tier (the harness compares tiers on the same prompts).
    Tiers are ordered by mean cost, cheapest first.
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise OutcomesError(f"cannot read {path}: {err}") from err
    keys: dict[str, int] = {}
    prompts: list[str] = []
    tiers: list[str] = []
    cells: dict[tuple[int, int], tuple[bool, float, float]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise OutcomesError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise OutcomesError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
        missing = [f for f in ("prompt", "tier", "correct", "cost") if f not in row]
        if missing:
            raise OutcomesError(
                f"{where}: missing {', '.join(map(repr, missing))}; each row needs prompt, "
                "tier, correct and cost (tokens, confidence and id are optional)"
            )
        prompt, tier = row["prompt"], row["tier"]
        if not isinstance(prompt, str) or not prompt:
            raise OutcomesError(f"{where}: 'prompt' must be a non-empty string")
        if not isinstance(tier, str) or not tier:
            raise OutcomesError(f"{where}: 'tier' must be a non-empty string")
        ok = _bool(row["correct"], where, "correct")
        usd = _number(row["cost"], where, "cost", 0.0, math.inf)
        conf = row.get("confidence")
        confidence = math.nan if conf is None else _number(conf, where, "confidence", 0.0, 1.0)
        tokens = row.get("tokens")
        if tokens is not None and (
            isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0
        ):
            raise OutcomesError(f"{where}: 'tokens' must be a whole number >= 0, got {tokens!r}")
        key = str(row["id"]) if row.get("id") is not None else prompt
        if key not in keys:
            keys[key] = len(prompts)
            prompts.append(prompt)
        if tier not in tiers:
            tiers.append(tier)
        cell = (keys[key], tiers.index(tier))
        if cell in cells:
            raise OutcomesError(f"{where}: a second row for tier {tier!r} of prompt {key[:60]!r}")
        cells[cell] = (ok, usd, confidence)
    if not cells:
        raise OutcomesError(f"{path} holds no rows")
    for key, i in keys.items():
        absent = [t for j, t in enumerate(tiers) if (i, j) not in cells]
        if absent:
            raise OutcomesError(
                f"{path}: prompt {key[:60]!r} has no row for tier(s) {', '.join(absent)}; "
                "every prompt needs one row per tier"
            )
    return _by_mean_cost(prompts, tiers, cells, str(path))
