"""Choosing a semantic cache's threshold from labelled pairs, not by guessing.

A labelled pair is a new question, a question already in the cache, and whether an
answer to the second answers the first (``same``). At threshold ``t`` a pair whose
cosine similarity is >= t is a hit: a *hit* when ``same``, a *wrong hit* when not. With
the hit guard (``hit_conflict``) a hit also needs the two texts to agree on numbers,
negation, ... ``threshold_curve`` measures both rates at every threshold;
``ThresholdCurve.choose(max_wrong)`` picks the threshold with the most hits at no more
than that share of wrong hits. ``agentflow cache threshold PAIRS`` does it from a file.

numpy is imported on first use, not here.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow._errors import ConfigError
from agentflow.cache._semantic_guard import DEFAULT_GUARD, GUARD_CHECKS, hit_conflict

__all__ = ["LabelledPair", "ThresholdCurve", "ThresholdRow", "read_pairs", "threshold_curve"]

_TRUE = {"1", "true", "yes", "same", "y", "t"}
_FALSE = {"0", "false", "no", "different", "n", "f"}
_COLUMNS = "question, cached, same"


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """A new question, a cached one, and whether the cached answer answers it."""

    question: str
    cached: str
    same: bool


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    """At ``threshold``: the share of ``same`` pairs served (``hit_rate``) and the share of
    the others served by mistake (``wrong_hit_rate``), guarded or not."""

    threshold: float
    hit_rate: float
    wrong_hit_rate: float


@dataclass(frozen=True, slots=True)
class ThresholdCurve:
    """Hit and wrong-hit rates per threshold on a set of labelled pairs."""

    rows: tuple[ThresholdRow, ...]
    pairs: int
    same: int
    guard: tuple[str, ...]
    embedder: str

    def choose(self, max_wrong: float = 0.01) -> ThresholdRow | None:
        """The threshold with the highest hit rate whose wrong-hit rate is at most
        ``max_wrong`` (the lowest such threshold on a tie); None when none is."""
        if not 0 <= max_wrong <= 1:
            raise ConfigError(f"max_wrong is a share of pairs, 0 to 1; got {max_wrong!r}")
        ok = [r for r in self.rows if r.wrong_hit_rate <= max_wrong]
        return max(ok, key=lambda r: (r.hit_rate, -r.threshold)) if ok else None

    def to_dict(self, max_wrong: float = 0.01) -> dict[str, Any]:
        chosen = self.choose(max_wrong)
        return {
            "pairs": self.pairs,
            "same": self.same,
            "different": self.pairs - self.same,
            "guard": list(self.guard),
            "embedder": self.embedder,
            "max_wrong_hit_rate": max_wrong,
            "chosen": None if chosen is None else _row_dict(chosen),
            "curve": [_row_dict(r) for r in self.rows],
        }


def _row_dict(row: ThresholdRow) -> dict[str, float]:
    return {
        "threshold": row.threshold,
        "hit_rate": row.hit_rate,
        "wrong_hit_rate": row.wrong_hit_rate,
    }


def _guard_checks(guard: Sequence[str] | str | None) -> tuple[str, ...]:
    if guard is None or guard == "none":
        return ()
    if guard == "default":
        return DEFAULT_GUARD
    if guard == "all":
        return GUARD_CHECKS
    checks = (guard,) if isinstance(guard, str) else tuple(guard)
    unknown = [c for c in checks if c not in GUARD_CHECKS]
    if unknown:
        raise ConfigError(
            f"unknown guard check(s) {unknown}; use 'default', 'all', 'none' or names from "
            f"{list(GUARD_CHECKS)}"
        )
    return checks


def threshold_curve(
    pairs: Sequence[LabelledPair],
    embedder: Callable[[list[str]], Any],
    *,
    guard: Sequence[str] | str | None = "default",
    thresholds: Iterable[float] | None = None,
) -> ThresholdCurve:
    """Hit and wrong-hit rates of ``pairs`` at each of ``thresholds`` (0.70 to 1.00 in
    steps of 0.005 when not given), embedded with ``embedder`` (the one the step's
    semantic cache uses, e.g. ``af.LocalEmbedder()``), with the hit guard's ``guard``
    checks (``"default"``, ``"all"``, ``"none"`` or names)."""
    import numpy as np

    checks = _guard_checks(guard)
    if not pairs:
        raise ConfigError("threshold_curve needs labelled pairs; got none")
    same = np.array([p.same for p in pairs])
    if same.all() or not same.any():
        raise ConfigError(
            f"the pairs must hold both kinds: {int(same.sum())} of {len(pairs)} are 'same'. "
            "A wrong-hit rate needs pairs that must not hit, and a hit rate pairs that must"
        )
    a = _unit(np.asarray(embedder([p.cached for p in pairs]), dtype=np.float64))
    b = _unit(np.asarray(embedder([p.question for p in pairs]), dtype=np.float64))
    similarity = (a * b).sum(axis=1)
    clean = np.array([hit_conflict(p.question, p.cached, checks) is None for p in pairs])
    steps = (
        np.round(np.arange(0.70, 1.0 + 1e-9, 0.005), 4)
        if thresholds is None
        else np.array(sorted(set(thresholds)), dtype=np.float64)
    )
    n_same, n_other = int(same.sum()), int((~same).sum())
    rows = []
    for t in steps:
        hit = (similarity >= t) & clean
        rows.append(
            ThresholdRow(
                threshold=float(t),
                hit_rate=float((hit & same).sum() / n_same),
                wrong_hit_rate=float((hit & ~same).sum() / n_other),
            )
        )
    name = getattr(embedder, "name", None) or type(embedder).__name__
    return ThresholdCurve(tuple(rows), len(pairs), n_same, checks, str(name))


def _unit(vectors: Any) -> Any:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


def _label(value: Any, where: str) -> bool:
    text = str(value).strip().lower()
    if isinstance(value, bool):
        return value
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where}: 'same' must be 1/0, true/false or yes/no; got {value!r}")


def read_pairs(path: str | Path) -> list[LabelledPair]:
    """Labelled pairs from a file: JSON lines (``{"question", "cached", "same"}``), or a
    CSV/TSV with a header naming those columns (``.tsv``: tab-separated)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise ConfigError(f"cannot read the pairs file {str(p)!r}: {err}") from None
    if p.suffix in (".jsonl", ".ndjson"):
        rows: list[dict[str, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{p}:{number} is not JSON ({err})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{p}:{number} must be an object with {_COLUMNS}")
            rows.append(row)
    else:
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if p.suffix == ".tsv" else ",")
        rows = list(reader)
    pairs = []
    for number, row in enumerate(rows, start=1):
        missing = [c for c in ("question", "cached", "same") if row.get(c) in (None, "")]
        if missing:
            raise ConfigError(
                f"{p}: row {number} has no {', '.join(missing)}; each row needs {_COLUMNS} "
                f"(got columns {sorted(row)})"
            )
        where = f"{p}: row {number}"
        pairs.append(
            LabelledPair(str(row["question"]), str(row["cached"]), _label(row["same"], where))
        )
    return pairs
