"""``agentflow report``: cost and latency tables from a JSONL span file or a Phoenix project.

Reads the spans ``tracing.JsonlSpanExporter`` wrote (and/or a Phoenix project's spans),
sums ``llm.cost.*`` and token counts over LLM and EMBEDDING spans only (the roll-ups on
run and step spans would count everything twice), groups them by their run (the AGENT
ancestor), step (nearest ancestor with ``agentflow.step.name``), tier and endpoint, and
checks each run's sum against the run span's ``agentflow.cost.total_usd`` roll-up.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from openinference.semconv.trace import SpanAttributes as OI

from agentflow.cli._spans import (
    ReportError,
    SpanRecord,
    call_cost,
    read_jsonl,
    read_phoenix,
    to_float,
    to_int,
)
from tracing import attributes as A

__all__ = [
    "Group",
    "Report",
    "ReportError",
    "SpanRecord",
    "add_parser",
    "build_report",
    "format_usd",
    "read_jsonl",
    "render_html",
    "run",
]

GROUPINGS: Final = ("run", "step", "tier", "endpoint")
_CALL_KINDS: Final = frozenset({"LLM", "EMBEDDING"})
_NONE: Final = "(none)"
# A run's LLM spans and its roll-up are both rounded floats: agree within this.
_TOLERANCE_USD: Final = 1e-9


@dataclass
class Group:
    """The calls (LLM and EMBEDDING spans) of one run, step, tier or endpoint."""

    calls: int = 0
    errors: int = 0
    cache_hits: int = 0
    saved: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    costs: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def cost_usd(self) -> float:
        return math.fsum(self.costs)

    @property
    def cached_share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def percentile_ms(self, p: float) -> float | None:
        """Nearest-rank percentile of the call latencies; None without any."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    def add(self, span: SpanRecord) -> None:
        attrs = span.attributes
        self.calls += 1
        self.errors += int(span.error)
        if attrs.get(A.AGENTFLOW_CACHE_HIT) is True:
            self.cache_hits += 1
            self.saved.append(to_float(attrs.get(A.AGENTFLOW_COST_SAVED_USD)))
        self.prompt_tokens += to_int(attrs.get(OI.LLM_TOKEN_COUNT_PROMPT))
        self.cached_tokens += to_int(attrs.get(OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ))
        self.completion_tokens += to_int(attrs.get(OI.LLM_TOKEN_COUNT_COMPLETION))
        self.costs.append(call_cost(attrs))
        if span.start_ns is not None and span.end_ns is not None:
            self.latencies_ms.append((span.end_ns - span.start_ns) / 1e6)


@dataclass
class Report:
    """Groups per dimension (``run``, ``step``, ``tier``, ``endpoint``) and check warnings."""

    tables: dict[str, dict[str, Group]]
    # (step, tier) → USD, for the chart
    step_tier_cost: dict[tuple[str, str], float]
    warnings: list[str]
    span_count: int


def build_report(spans: Iterable[SpanRecord]) -> Report:
    """Group the LLM and EMBEDDING spans; check each run's sum against its roll-up.

    A span seen twice (same trace and span id, e.g. in both the file and Phoenix) counts
    once: the first copy wins.
    """
    by_id: dict[tuple[str, str], SpanRecord] = {}
    for span in spans:
        by_id.setdefault((span.trace_id, span.span_id), span)

    def ancestors(span: SpanRecord) -> Iterable[SpanRecord]:
        seen: set[str] = set()
        parent_id = span.parent_id
        while parent_id and parent_id not in seen:
            seen.add(parent_id)
            parent = by_id.get((span.trace_id, parent_id))
            if parent is None:
                return
            yield parent
            parent_id = parent.parent_id

    runs = [s for s in by_id.values() if s.kind == "AGENT"]
    names = [_run_name(s) for s in runs]
    run_labels = {
        (s.trace_id, s.span_id): name if names.count(name) == 1 else f"{name} [{s.span_id[:8]}]"
        for s, name in zip(runs, names, strict=True)
    }

    tables: dict[str, dict[str, Group]] = {g: {} for g in GROUPINGS}
    step_tier: dict[tuple[str, str], float] = {}
    run_sums: dict[tuple[str, str], list[float]] = {key: [] for key in run_labels}
    for span in by_id.values():
        if span.kind not in _CALL_KINDS:
            continue
        run_key: tuple[str, str] | None = None
        step = ""
        for parent in ancestors(span):
            if not step and parent.attributes.get(A.AGENTFLOW_STEP_NAME):
                step = str(parent.attributes[A.AGENTFLOW_STEP_NAME])
            if parent.kind == "AGENT":
                run_key = (parent.trace_id, parent.span_id)
                break
        labels = {
            "run": run_labels[run_key] if run_key else "(no run)",
            "step": step or "(no step)",
            "tier": str(span.attributes.get(A.AGENTFLOW_TIER) or _NONE),
            "endpoint": str(
                span.attributes.get(A.AGENTFLOW_ENDPOINT)
                or span.attributes.get(OI.LLM_MODEL_NAME)
                or _NONE
            ),
        }
        for grouping, label in labels.items():
            tables[grouping].setdefault(label, Group()).add(span)
        cost = call_cost(span.attributes)
        if run_key:
            run_sums[run_key].append(cost)
        key = (labels["step"], labels["tier"])
        step_tier[key] = step_tier.get(key, 0.0) + cost

    warnings: list[str] = []
    for key, label in run_labels.items():
        rollup = by_id[key].attributes.get(A.AGENTFLOW_COST_TOTAL_USD)
        if rollup is None:
            continue
        summed = math.fsum(run_sums[key])
        if abs(summed - to_float(rollup)) > _TOLERANCE_USD:
            warnings.append(
                f"warning: run {label!r}: its LLM spans sum to ${summed:.8f} but the run "
                f"span's {A.AGENTFLOW_COST_TOTAL_USD} is ${to_float(rollup):.8f} "
                "(spans missing from the source?)"
            )
    return Report(tables, step_tier, warnings, len(by_id))


def _run_name(span: SpanRecord) -> str:
    name = span.attributes.get(A.AGENTFLOW_RUN_NAME)
    return str(name) if name else span.name


# -- rendering -------------------------------------------------------------------------

COLUMNS: Final = (
    "calls",
    "cache hits",
    "prompt tok",
    "cached",
    "completion tok",
    "cost USD",
    "saved USD",
    "p50 ms",
    "p99 ms",
    "errors",
)


def format_usd(value: float) -> str:
    return f"{value:.8f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cells(group: Group) -> list[str]:
    return [
        str(group.calls),
        str(group.cache_hits),
        str(group.prompt_tokens),
        f"{group.cached_share:.0%}",
        str(group.completion_tokens),
        format_usd(group.cost_usd),
        format_usd(math.fsum(group.saved)),
        _ms(group.percentile_ms(50)),
        _ms(group.percentile_ms(99)),
        str(group.errors),
    ]


def _rows(groups: Mapping[str, Group]) -> list[tuple[str, list[str]]]:
    ordered = sorted(groups.items(), key=lambda item: (-item[1].cost_usd, item[0]))
    return [(label, _cells(group)) for label, group in ordered]


def render_text(report: Report, by: Sequence[str]) -> str:
    """The tables as aligned plain text, one per grouping in ``by``."""
    out: list[str] = []
    for grouping in by:
        rows = _rows(report.tables[grouping])
        header = [f"by {grouping}", *COLUMNS]
        body = [[label, *cells] for label, cells in rows]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(cells: Sequence[str], widths: Sequence[int] = widths) -> str:
            first = cells[0].ljust(widths[0])
            rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        out.append(line(header))
        out.append("  ".join("-" * w for w in widths))
        out.extend(line(r) for r in body)
        if not body:
            out.append("(no LLM or EMBEDDING spans)")
        out.append("")
    return "\n".join(out)


_PALETTE: Final = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")


def _svg_chart(report: Report) -> str:
    """Cost per step as horizontal bars, stacked by tier, as inline SVG."""
    steps = sorted(
        {s for s, _ in report.step_tier_cost},
        key=lambda s: -sum(c for (st, _), c in report.step_tier_cost.items() if st == s),
    )
    tiers = sorted({t for _, t in report.step_tier_cost})
    colour = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(tiers)}
    totals = {s: sum(report.step_tier_cost.get((s, t), 0.0) for t in tiers) for s in steps}
    top = max(totals.values(), default=0.0) or 1.0
    label_w, bar_w, row_h, pad = 160, 480, 26, 10
    legend_h = 24
    height = pad * 2 + legend_h + row_h * max(1, len(steps))
    width = label_w + bar_w + 140
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="cost per step, stacked by tier">'
    ]
    x = label_w
    for tier in tiers:
        parts.append(
            f'<rect x="{x}" y="{pad}" width="12" height="12" fill="{colour[tier]}"/>'
            f'<text x="{x + 16}" y="{pad + 11}" font-size="12">{esc(tier)}</text>'
        )
        x += 24 + 7 * len(tier)
    for row, step in enumerate(steps):
        y = pad + legend_h + row * row_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" '
            f'text-anchor="end">{esc(step)}</text>'
        )
        x0 = float(label_w)
        for tier in tiers:
            cost = report.step_tier_cost.get((step, tier), 0.0)
            if cost <= 0:
                continue
            w = bar_w * cost / top
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
                f'fill="{colour[tier]}"><title>{esc(step)} / {esc(tier)}: $'
                f"{format_usd(cost)}</title></rect>"
            )
            x0 += w
        parts.append(
            f'<text x="{x0 + 6:.1f}" y="{y + 15}" font-size="12">${format_usd(totals[step])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report, by: Sequence[str], title: str) -> str:
    """A self-contained page (no external resources): the chart and the tables."""
    esc = html.escape
    sections = []
    for grouping in by:
        head = "".join(f"<th>{esc(c)}</th>" for c in [f"by {grouping}", *COLUMNS])
        body = "".join(
            "<tr><td>"
            + esc(label)
            + "</td>"
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + "</tr>"
            for label, cells in _rows(report.tables[grouping])
        )
        sections.append(f"<h2>By {esc(grouping)}</h2><table><tr>{head}</tr>{body}</table>")
    warnings = "".join(f'<p class="warn">{esc(w)}</p>' for w in report.warnings)
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "th,td{border:1px solid #ccc;padding:4px 8px}td+td,th+th{text-align:right}"
        "th{background:#f3f3f3}.warn{color:#b00}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{style}</style></head><body>"
        f"<h1>{esc(title)}</h1>{warnings}<h2>Cost per step, by tier</h2>{_svg_chart(report)}"
        + "".join(sections)
        + "</body></html>\n"
    )


# -- command ---------------------------------------------------------------------------


def _groupings(value: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in GROUPINGS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--by takes a comma-separated list of {', '.join(GROUPINGS)}; got {value!r}"
        )
    return chosen


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``report`` subcommand; it sets ``func=run`` on the namespace."""
    parser = subparsers.add_parser(
        "report",
        help="cost, token and latency tables from a JSONL span file or a Phoenix project",
        description=(
            "Sum llm.cost.* and token counts over the LLM and EMBEDDING spans of a JSONL "
            "span file (tracing.JsonlSpanExporter) and/or a Phoenix project, and print "
            "them per run, step, tier and endpoint with p50/p99 latency and errors."
        ),
    )
    parser.add_argument("spans", nargs="?", metavar="SPANS.jsonl", help="JSONL span file")
    parser.add_argument("--phoenix", metavar="URL", help="also read spans from this Phoenix")
    parser.add_argument(
        "--project", default="default", help="Phoenix project name (default: default)"
    )
    parser.add_argument("--html", metavar="OUT.html", help="also write a self-contained page")
    parser.add_argument(
        "--by",
        type=_groupings,
        default=list(GROUPINGS),
        metavar="run,step,tier,endpoint",
        help="which tables to print (default: all four)",
    )
    parser.set_defaults(func=run)


def _collect(args: argparse.Namespace) -> list[SpanRecord]:
    if not args.spans and not args.phoenix:
        raise ReportError("give a JSONL span file, --phoenix URL, or both")
    records: list[SpanRecord] = []
    if args.spans:
        records.extend(read_jsonl(args.spans))
        if not records:
            raise ReportError(f"{args.spans} holds no spans")
    if args.phoenix:
        records.extend(read_phoenix(args.phoenix, args.project))
    return records


def run(args: argparse.Namespace) -> int:
    """Run ``report`` with parsed arguments; returns the exit code."""
    emit = print
    try:
        report = build_report(_collect(args))
        emit(render_text(report, args.by))
        for warning in report.warnings:
            print(warning, file=sys.stderr, flush=True)
        if args.html:
            title = f"agentflow report: {args.spans or args.project}"
            try:
                Path(args.html).write_text(render_html(report, args.by, title), encoding="utf-8")
            except OSError as exc:
                raise ReportError(f"cannot write {args.html}: {exc}") from exc
            emit(f"wrote {args.html}")
    except ReportError as exc:
        print(f"agentflow report: {exc}", file=sys.stderr)
        return 1
    return 0
