"""``agentflow report``: cost, GPU utilisation, savings and latency from a JSONL span
file or a Phoenix project, over a time window.

Reads the spans ``tracing.JsonlSpanExporter`` wrote (and/or a Phoenix project's spans),
sums ``llm.cost.*`` and token counts over LLM and EMBEDDING spans only (the roll-ups on
run and step spans would count everything twice), groups them by their run (the AGENT
ancestor), step (nearest ancestor with ``agentflow.step.name``), tier and endpoint, and
checks each run's sum against the run span's ``agentflow.cost.total_usd`` roll-up. The
economics (``_economics``), latency and traffic (``_traffic``) and the JSON object
(``_summary``) are computed over the calls that started inside the window; the page is
drawn by ``_html``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agentflow.cli._calls import Call, Calls, Window, label_calls, parse_moment
from agentflow.cli._economics import savings
from agentflow.cli._escalation import ESCALATION_COLUMNS, add_escalation, escalation_rows
from agentflow.cli._html import Table, render_page
from agentflow.cli._spans import ReportError, SpanRecord, read_jsonl, read_phoenix, to_float
from agentflow.cli._summary import summarise
from agentflow.cli._traffic import percentile
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
    "render_economics",
    "render_html",
    "render_text",
    "run",
]

GROUPINGS: Final = ("run", "step", "tier", "endpoint")
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
        """Nearest-rank percentile of the latencies of calls that reached a model."""
        return percentile(self.latencies_ms, p)

    def add(self, call: Call) -> None:
        self.calls += 1
        self.errors += int(call.span.error)
        self.cache_hits += int(call.cache_hit)
        self.saved.append(math.fsum(savings(call).values()))
        self.prompt_tokens += call.prompt_tokens
        self.cached_tokens += call.cached_tokens
        self.completion_tokens += call.completion_tokens
        self.costs.append(call.cost_usd)
        if not call.cache_hit and (ms := call.latency_ms) is not None:
            self.latencies_ms.append(ms)


@dataclass
class Report:
    """Groups per dimension (``run``, ``step``, ``tier``, ``endpoint``), check warnings,
    and the labelled calls and window the economics are computed over."""

    tables: dict[str, dict[str, Group]]
    # (step, tier) → USD, for the chart
    step_tier_cost: dict[tuple[str, str], float]
    warnings: list[str]
    span_count: int
    calls: Calls = field(default_factory=lambda: Calls([], {}, 0))
    window: Window = field(default_factory=lambda: Window(0, 1))

    def summary(self, bucket_s: int | None = None) -> dict[str, Any]:
        """The machine-readable report (what ``--json`` prints)."""
        out = summarise(self.calls, self.window, bucket_s=bucket_s)
        add_escalation(out, [c for c in self.calls.calls if self.window.holds(c.start_ns)])
        out["warnings"] = list(self.warnings)
        return out


def build_report(
    spans: Iterable[SpanRecord], *, since: int | None = None, until: int | None = None
) -> Report:
    """Group the LLM and EMBEDDING spans that started in ``[since, until)`` (ns since
    the epoch; all of them by default); check each run's sum against its roll-up.

    A span seen twice (same trace and span id, e.g. in both the file and Phoenix) counts
    once: the first copy wins. A run is checked only when it lies wholly in the window.
    """
    source = label_calls(spans)
    window = Window.over(source, since, until)
    tables: dict[str, dict[str, Group]] = {g: {} for g in GROUPINGS}
    step_tier: dict[tuple[str, str], float] = {}
    run_sums: dict[tuple[str, str], list[float]] = {key: [] for key in source.runs}
    for call in source.calls:
        if not window.holds(call.start_ns):
            continue
        labels = {"run": call.run, "step": call.step, "tier": call.tier, "endpoint": call.endpoint}
        for grouping, label in labels.items():
            tables[grouping].setdefault(label, Group()).add(call)
        if call.run_key:
            run_sums[call.run_key].append(call.cost_usd)
        key = (call.step, call.tier)
        step_tier[key] = step_tier.get(key, 0.0) + call.cost_usd

    warnings: list[str] = []
    for key, (label, span) in source.runs.items():
        rollup = span.attributes.get(A.AGENTFLOW_COST_TOTAL_USD)
        whole = since is None and until is None
        inside = window.holds(span.start_ns) and window.holds((span.end_ns or 1) - 1)
        if rollup is None or not (whole or inside):
            continue
        summed = math.fsum(run_sums[key])
        if abs(summed - to_float(rollup)) > _TOLERANCE_USD:
            warnings.append(
                f"warning: run {label!r}: its LLM spans sum to ${summed:.8f} but the run "
                f"span's {A.AGENTFLOW_COST_TOTAL_USD} is ${to_float(rollup):.8f} "
                "(spans missing from the source?)"
            )
    return Report(tables, step_tier, warnings, source.span_count, source, window)


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
        body = [[label, *cells] for label, cells in _rows(report.tables[grouping])]
        out.extend(_aligned([f"by {grouping}", *COLUMNS], body))
        if not body:
            out.append("(no LLM or EMBEDDING spans)")
        out.append("")
    return "\n".join(out)


_ECONOMICS_COLUMNS: Final = (
    "GPU-h provisioned",
    "GPU-h busy",
    "utilisation",
    "idle USD",
    "$/Mtok in",
    "$/Mtok out",
    "+idle in",
    "+idle out",
    "engine GPU-h busy",  # the engine's own counters (engine_metrics=True), "-" if unsampled
    "engine util",
)


def _aligned(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)]


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def render_economics(summary: Mapping[str, Any]) -> str:
    """GPU-hour endpoints (utilisation, idle $, $/Mtok), savings by kind, the window;
    ``--json`` and the page have $/Mtok for every endpoint."""
    body = [
        [
            name,
            _opt(e["provisioned_gpu_hours"], "{:.6f}"),
            _opt(e["busy_gpu_hours"], "{:.6f}"),
            _opt(e["utilisation"], "{:.1%}"),
            _opt(e["idle_usd"], "{:.8f}"),
            _opt(e["usd_per_mtok_input"], "{:.4f}"),
            _opt(e["usd_per_mtok_output"], "{:.4f}"),
            _opt(e["usd_per_mtok_input_with_idle"], "{:.4f}"),
            _opt(e["usd_per_mtok_output_with_idle"], "{:.4f}"),
            _opt(e.get("engine_busy_gpu_hours"), "{:.6f}"),
            _opt(e.get("engine_utilisation"), "{:.1%}"),
        ]
        for name, e in summary["endpoints"].items()
        if e["provisioned_gpu_hours"] is not None
    ]
    out = _aligned(["GPU-hour endpoints", *_ECONOMICS_COLUMNS], body) if body else []
    if rows := escalation_rows(summary):  # steps that escalate: what rejected answers cost
        out += [""] if out else []
        out += _aligned(["escalation", *ESCALATION_COLUMNS], rows)
    if rows := _saving_rows(summary):  # steps that saved (or lost) money, by kind
        out += [""] if out else []
        out += _aligned(["saved USD by step", *rows[0]], rows[1:])
    saved = summary["totals"]["saved"]
    window = summary["window"]
    out += [
        "",
        "saved USD: "
        + ", ".join(f"{kind.replace('_', ' ')} {format_usd(usd)}" for kind, usd in saved.items()),
        f"window: {window['since']} to {window['until']} ({window['seconds']:.1f} s)",
        "",
    ]
    return "\n".join(out)


def _saving_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """The kinds (a header row), then one row per step with a saving of any kind; a
    routing saving below 0 is an escalation that cost more than the strongest tier."""
    steps = summary.get("steps", {})
    kinds = list(summary["totals"]["saved"])
    rows = [
        [step, *(format_usd(entry["saved"][k]) for k in kinds), format_usd(entry["saved_usd"])]
        for step, entry in steps.items()
        if any(entry["saved"].values())
    ]
    return [[*(k.replace("_", " ") for k in kinds), "total"], *rows] if rows else []


def _tables(report: Report, by: Sequence[str]) -> list[Table]:
    return [
        (f"By {grouping}", [f"by {grouping}", *COLUMNS], [[label, *cells] for label, cells in rows])
        for grouping in by
        for rows in [_rows(report.tables[grouping])]
    ]


def render_html(
    report: Report,
    by: Sequence[str],
    title: str,
    bucket_s: int | None = None,
    *,
    summary: Mapping[str, Any] | None = None,
) -> str:
    """A self-contained page (no script, nothing fetched): charts, tables, runs.
    ``summary`` is ``report.summary(bucket_s)`` when the caller already has it."""
    if summary is None:
        summary = report.summary(bucket_s)
    return render_page(title, summary, report.step_tier_cost, _tables(report, by))


# -- command ---------------------------------------------------------------------------


def _groupings(value: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in GROUPINGS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--by takes a comma-separated list of {', '.join(GROUPINGS)}; got {value!r}"
        )
    return chosen


def _moment(value: str) -> int:
    try:
        return parse_moment(value)
    except ReportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bucket(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--bucket takes whole seconds >= 1; got {value!r}")
    return int(value)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``report`` subcommand; it sets ``func=run`` on the namespace."""
    parser = subparsers.add_parser(
        "report",
        help="cost, GPU utilisation, savings and latency from a JSONL span file or Phoenix",
        description=(
            "Sum llm.cost.* and token counts over the LLM and EMBEDDING spans of a JSONL "
            "span file (tracing.JsonlSpanExporter) and/or a Phoenix project, and print "
            "them per run, step, tier and endpoint with p50/p99 latency and errors; for "
            "GPU-hour endpoints, provisioned and busy GPU-hours, utilisation and idle "
            "cost over the window; $ per million tokens; savings by kind."
        ),
    )
    parser.add_argument("spans", nargs="?", metavar="SPANS.jsonl", help="JSONL span file")
    parser.add_argument("--phoenix", metavar="URL", help="also read spans from this Phoenix")
    parser.add_argument(
        "--project", default="default", help="Phoenix project name (default: default)"
    )
    parser.add_argument(
        "--since",
        type=_moment,
        metavar="TIME",
        help="window start: ISO 8601 (UTC unless it says) or epoch seconds "
        "(default: the first call's start)",
    )
    parser.add_argument(
        "--until",
        type=_moment,
        metavar="TIME",
        help="window end, exclusive (default: just after the last call's end)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the tables"
    )
    parser.add_argument("--html", metavar="OUT.html", help="also write a self-contained page")
    parser.add_argument(
        "--bucket",
        type=_bucket,
        metavar="SECONDS",
        help="traffic bucket width (default: at most 60 buckets over the window)",
    )
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
        report = build_report(
            _collect(args), since=getattr(args, "since", None), until=getattr(args, "until", None)
        )
        summary = report.summary(getattr(args, "bucket", None))
        if getattr(args, "json", False):
            emit(json.dumps(summary, indent=2, allow_nan=False))
        else:
            emit(render_text(report, args.by))
            emit(render_economics(summary))
        for warning in report.warnings:
            print(warning, file=sys.stderr, flush=True)
        if args.html:
            title = f"agentflow report: {args.spans or args.project}"
            page = render_html(report, args.by, title, summary=summary)
            try:
                Path(args.html).write_text(page, encoding="utf-8")
            except OSError as exc:
                raise ReportError(f"cannot write {args.html}: {exc}") from exc
            if not getattr(args, "json", False):
                emit(f"wrote {args.html}")
    except ReportError as exc:
        print(f"agentflow report: {exc}", file=sys.stderr)
        return 1
    return 0
