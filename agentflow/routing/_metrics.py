"""The field's routing metrics, with bootstrap confidence intervals.

As the RouteLLM paper (Ong et al., 2024) and its ``routellm/evals/evaluate.py`` define
them, on a curve of operating points (x = the share of prompts that call the strong
model, y = the share answered correctly), between the weak model's quality ``q_w``
(always the cheapest tier) and the strong model's ``q_s`` (always the strongest):

* **APGR**, the average performance gap recovered: the area between the curve and
  ``q_w`` over x from 0 to 1, divided by ``q_s - q_w``. A random router scores 0.5 (its
  expected curve is the straight line from ``(0, q_w)`` to ``(1, q_s)``).
* **CPT(p)**, the call-performance threshold: the least share of strong calls at which
  the curve reaches ``q_w + p (q_s - q_w)`` (p = 50%, 80%). A random router needs p.

The curve is piecewise linear between measured points (for a router that ranks prompts,
the expected curve when tied prompts are split at random), starts at ``(0, q_w)`` and
stays flat past the last measured point. CPT is the first crossing along the curve
(RouteLLM interpolates with ``np.interp``, which assumes a rising curve; on one they
agree). Confidence
intervals come from a percentile bootstrap over prompts: each resample recomputes
``q_w``, ``q_s`` and the whole curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CPT_LEVELS",
    "Estimate",
    "GapMetrics",
    "Sweep",
    "gap_metrics",
    "random_metrics",
]

CPT_LEVELS = (0.5, 0.8)
_EPS = 1e-12


@dataclass(frozen=True)
class Estimate:
    """A figure and its bootstrap confidence interval; None: not reached (a CPT the
    curve never reaches), or undefined (no gap between the weak and strong models)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}

    def render(self, percent: bool = False) -> str:
        if self.value is None:
            return "not reached"

        def fmt(v: float | None) -> str:
            if v is None:
                return "-"
            return f"{v:.1%}" if percent else f"{v:.3f}"

        if self.low is None and self.high is None:
            return fmt(self.value)
        return f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}]"


@dataclass(frozen=True)
class GapMetrics:
    """APGR and CPT of one policy (``cpt`` maps each level, e.g. 0.5, to the share of
    strong calls it needs)."""

    apgr: Estimate
    cpt: Mapping[float, Estimate]
    weak_quality: float
    strong_quality: float
    resamples: int = 0
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "apgr": self.apgr.to_dict(),
            **{f"cpt{round(p * 100)}": e.to_dict() for p, e in self.cpt.items()},
            "weak_quality": self.weak_quality,
            "strong_quality": self.strong_quality,
            "bootstrap_resamples": self.resamples,
            "exact": self.exact,
        }


@dataclass(frozen=True)
class Sweep:
    """A policy at each of its operating points (rows) on each prompt (columns): whether
    the strongest tier was called, whether the answer kept was right, what was paid.

    Rows are ordered by threshold so that the share of strong calls never falls."""

    thresholds: np.ndarray  # (points,)
    strong: np.ndarray  # (points, prompts) bool
    correct: np.ndarray  # (points, prompts) bool
    cost: np.ndarray  # (points, prompts) float, USD

    def __post_init__(self) -> None:
        shape = self.strong.shape
        if self.correct.shape != shape or self.cost.shape != shape or len(shape) != 2:
            raise ValueError("Sweep: strong, correct and cost must share a (points, prompts) shape")
        if self.thresholds.shape != (shape[0],):
            raise ValueError("Sweep: one threshold per point")


def random_metrics(
    weak_quality: float, strong_quality: float, levels: Sequence[float] = CPT_LEVELS
) -> GapMetrics:
    """The random router's expected figures, exactly: APGR 0.5 and CPT(p) = p (its
    expected curve is the straight line from the weak model to the strong one)."""
    gap = strong_quality - weak_quality > _EPS
    return GapMetrics(
        Estimate(0.5 if gap else None, None, None),
        {p: Estimate(p if gap else None) for p in levels},
        weak_quality,
        strong_quality,
        0,
        True,
    )


def _curves(
    x: np.ndarray, q: np.ndarray, qw: np.ndarray, qs: np.ndarray, levels: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """APGR (B,) and CPT (levels, B) of B curves: x and q are (B, points), x rising."""
    b = x.shape[0]
    # never calling the strong model gives the weak model's quality; past the last
    # measured point the curve stays flat
    xs = np.concatenate([np.zeros((b, 1)), x, np.ones((b, 1))], axis=1)
    ys = np.concatenate([qw[:, None], q, q[:, -1:]], axis=1)
    gap = qs - qw
    ok = gap > _EPS
    dx = np.diff(xs, axis=1)
    area = (dx * (ys[:, 1:] + ys[:, :-1]) / 2).sum(axis=1) - qw
    apgr = np.where(ok, area / np.where(ok, gap, 1.0), np.nan)
    cpts = np.full((len(levels), b), np.nan)
    for n, p in enumerate(levels):
        target = qw + p * gap
        reached = ys >= target[:, None] - _EPS
        first = reached.argmax(axis=1)
        rows = np.arange(b)
        prev = np.maximum(first - 1, 0)
        x0, x1 = xs[rows, prev], xs[rows, first]
        y0, y1 = ys[rows, prev], ys[rows, first]
        rise = np.where(y1 - y0 > _EPS, y1 - y0, 1.0)
        at = np.where(first == 0, x1, x0 + (target - y0) * (x1 - x0) / rise)
        at = np.where(reached.any(axis=1), np.clip(at, 0.0, 1.0), np.inf)
        cpts[n] = np.where(ok, at, np.nan)
    return apgr, cpts


def _estimate(full: float, samples: np.ndarray, level: float) -> Estimate:
    if not math.isfinite(full):
        return Estimate(None)
    if samples.size == 0:
        return Estimate(full)
    tail = (1.0 - level) / 2
    lo, hi = (
        float(v)
        for v in np.quantile(
            np.nan_to_num(samples, nan=np.inf), [tail, 1 - tail], method="inverted_cdf"
        )
    )
    return Estimate(full, lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None)


def gap_metrics(
    sweep: Sweep,
    weak_correct: np.ndarray,
    strong_correct: np.ndarray,
    *,
    levels: Sequence[float] = CPT_LEVELS,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> GapMetrics:
    """APGR and CPT(``levels``) of ``sweep``, with ``level`` percentile bootstrap
    intervals over ``resamples`` resamples of the prompts (0: no interval)."""
    n = sweep.strong.shape[1]
    strong = sweep.strong.T.astype(np.float32)  # (prompts, points)
    correct = sweep.correct.T.astype(np.float32)
    base = np.stack([weak_correct, strong_correct], axis=1).astype(np.float32)

    def figures(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = weights.sum(axis=1, keepdims=True)
        x = (weights @ strong) / total
        q = (weights @ correct) / total
        ends = (weights @ base) / total
        order = np.argsort(x, axis=1, kind="stable")  # rising share of strong calls
        x, q = np.take_along_axis(x, order, axis=1), np.take_along_axis(q, order, axis=1)
        return _curves(x, q, ends[:, 0], ends[:, 1], levels)

    apgr, cpt = figures(np.ones((1, n), dtype=np.float32))
    boot_apgr: list[np.ndarray] = []
    boot_cpt: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        chunk = min(100, resamples - done)
        weights = np.stack(
            [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(chunk)]
        ).astype(np.float32)
        a, c = figures(weights)
        boot_apgr.append(a)
        boot_cpt.append(c)
        done += chunk
    all_apgr = np.concatenate(boot_apgr) if boot_apgr else np.empty(0)
    all_cpt = np.concatenate(boot_cpt, axis=1) if boot_cpt else np.empty((len(levels), 0))
    ends = np.stack([weak_correct, strong_correct], axis=1).mean(axis=0)
    return GapMetrics(
        _estimate(float(apgr[0]), all_apgr, level),
        {p: _estimate(float(cpt[i, 0]), all_cpt[i], level) for i, p in enumerate(levels)},
        float(ends[0]),
        float(ends[1]),
        resamples,
    )
