"""Draw a harness report's cost/quality curves to a PNG (matplotlib, Agg backend).

matplotlib is the optional extra ``agentflow[plot]``; it is imported only here, when a
plot is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentflow._errors import ConfigError
from agentflow.routing._report import Curve, HarnessReport

__all__ = ["plot_report"]

_STYLE = {"cascade": ("#4e79a7", "o"), "router": ("#f28e2b", "s")}
_TIER_COLOUR = "#59a14f"
_ORACLE_COLOUR = "#e15759"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'agentflow[plot]'") from None
    matplotlib.use("Agg", force=True)  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_report(report: HarnessReport, path: str | Path, *, title: str | None = None) -> Path:
    """Draw every curve twice: left, mean USD per prompt across and share correct up,
    the single tiers as labelled points, the oracle as a star and the strongest tier's
    quality as a dashed line (and the best single tier's as a dotted one, when it is
    more accurate); right, the share of prompts calling the strongest tier across (the
    x of APGR and CPT), with the random router's diagonal."""
    plt = _pyplot()
    fig, (ax, share_ax) = plt.subplots(
        1, 2, figsize=(12, 4.8), dpi=120, gridspec_kw={"width_ratios": [3, 2]}
    )
    try:
        _share_panel(share_ax, report)
        tiers = 0
        for curve in report.curves:
            xs = [p.cost for p in curve.points]
            ys = [p.quality for p in curve.points]
            if curve.kind in _STYLE:
                colour, marker = _colour(curve)
                ax.plot(
                    xs,
                    ys,
                    marker=marker,
                    markersize=3,
                    linewidth=1.3,
                    color=colour,
                    label=curve.name,
                )
            elif curve.kind == "tier":
                ax.scatter(xs, ys, color=_TIER_COLOUR, marker="D", s=36, zorder=3)
                # alternate labels below and above, so neighbouring tiers stay readable
                ax.annotate(
                    curve.points[0].label,
                    (xs[0], ys[0]),
                    textcoords="offset points",
                    xytext=(6, -12 if tiers % 2 == 0 else 6),
                    fontsize=8,
                )
                tiers += 1
        oracle = report.oracle
        ax.scatter(
            [oracle.cost],
            [oracle.quality],
            marker="*",
            s=220,
            color=_ORACLE_COLOUR,
            zorder=4,
            label=f"oracle ({oracle.quality:.0%})",
        )
        strongest = report.strongest
        ax.axhline(
            strongest.quality,
            color="#888888",
            linestyle="--",
            linewidth=0.9,
            label=f"quality of {report.outcomes.tiers[-1]} ({strongest.quality:.0%})",
        )
        for ref in report.references()[1:]:  # a cheaper tier more accurate than the last
            ax.axhline(
                ref.quality,
                color="#888888",
                linestyle=":",
                linewidth=0.9,
                label=f"quality of {ref.label}, the best tier ({ref.quality:.0%})",
            )
        ax.scatter([], [], color=_TIER_COLOUR, marker="D", s=36, label="always one tier")
        ax.set_xlabel("mean cost (USD per prompt)")
        ax.set_ylabel("share answered correctly")
        ax.set_ylim(-0.02, 1.02)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
        ax.grid(True, linewidth=0.4, alpha=0.6)
        ax.set_title(
            title or f"Cost vs quality on {len(report.outcomes.prompts)} prompts", fontsize=11
        )
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out


def _colour(curve: Curve) -> tuple[str, str]:
    """The curve's colour and marker; a router ranked by P(cheap right) gets its own."""
    if curve.kind == "router" and "P(cheap" in curve.name:
        return "#b07aa1", "^"
    return _STYLE[curve.kind]


def _share_panel(ax: Any, report: HarnessReport) -> None:
    """Share correct against the share of prompts calling the strongest tier."""
    o = report.outcomes
    q = o.correct.mean(axis=0)
    ax.plot(
        [0, 1],
        [q[0], q[-1]],
        color="#888888",
        linestyle="--",
        linewidth=0.9,
        label="random router (APGR 0.50)",
    )
    for curve in report.curves:
        if curve.kind not in _STYLE or curve.metrics is None:
            continue
        colour, marker = _colour(curve)
        points = sorted(
            (p for p in curve.points if p.strong_share is not None),
            key=lambda p: (p.strong_share or 0.0, p.quality),
        )
        apgr = curve.metrics.apgr.value
        ax.plot(
            [p.strong_share for p in points],
            [p.quality for p in points],
            marker=marker,
            markersize=2,
            linewidth=1.2,
            color=colour,
            label=f"{curve.name} (APGR {apgr:.2f})" if apgr is not None else curve.name,
        )
    ax.set_xlabel(f"share of prompts calling {o.tiers[-1]}")
    ax.set_ylabel("share answered correctly")
    ax.set_xlim(-0.02, 1.02)
    ax.grid(True, linewidth=0.4, alpha=0.6)
    ax.set_title("APGR / CPT view", fontsize=11)
    ax.legend(fontsize=7, loc="lower right")
