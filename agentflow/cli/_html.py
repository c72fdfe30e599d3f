"""The HTML page of ``agentflow report --html``: one self-contained file (inline CSS and
SVG, no script, nothing fetched) drawn from the same summary ``--json`` prints.

Sections, each a ``<section id=...>``: ``totals``, ``timeline`` (cost and calls over
time), ``utilisation`` (GPU-hour endpoints: busy vs provisioned, idle $), ``savings``
(by kind), ``escalation`` (per step: the escalation tax, what rejected answers cost
on top of the ones a stronger tier gave, and the routing saving), ``latency``
(p50/p95/p99 per step and tier), ``cost-per-step`` (stacked by tier), ``endpoints``
($ per million tokens with and without idle), ``tables`` and ``runs`` (a ``<details>``
drill-down per run: its steps and a waterfall of its calls).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["Table", "render_page"]

# (heading, column names, rows of cells; the first cell of a row is its label)
Table = tuple[str, Sequence[str], Sequence[Sequence[str]]]

PALETTE: Final = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")
_SAVING_LABELS: Final = {
    "prefix_cache": "prefix cache",
    "response_cache": "response cache",
    "semantic_cache": "semantic cache",
    "routing": "routing",
}
_NEGATIVE: Final = "#b00"  # a bar for a value below 0
_MAX_RUNS: Final = 100  # runs drawn in the drill-down, first ones first
_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:4px 8px}td+td,th+th{text-align:right}"
    "th{background:#f3f3f3}.warn{color:#b00}"
    ".cards{display:flex;gap:1em;flex-wrap:wrap}"
    ".card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}"
    ".card b{display:block;font-size:1.4em}.muted{color:#777}"
    "details.run{border:1px solid #ddd;border-radius:6px;padding:.4em .8em;margin:.4em 0}"
    "details.run summary{cursor:pointer;font-weight:600}"
    ".wide{overflow-x:auto}table.economics{font-size:.85em}"
)
esc = html.escape


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0:  # a saving an escalation turned into a cost
        return f"-{_usd(-value)}"
    return f"${value:.2f}" if value >= 1 else f"${value:.6f}"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _svg(width: int, height: int, label: str, body: Sequence[str]) -> str:
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(label)}">' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
        f"{esc(text)}</text>"
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<rect{klass} x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.0):.1f}" height="{h:.1f}" '
        f'fill="{fill}"><title>{esc(title)}</title></rect>'
    )


def _hbars(label: str, rows: Sequence[tuple[str, float, str]], colour: str) -> str:
    """Horizontal bars: (label, value, caption shown after the bar); a value below 0 (a
    saving an escalation turned into a cost) is drawn by its size, in red."""
    top = max((abs(v) for _, v, _ in rows), default=0.0) or 1.0
    lw, bw, rh = 200, 460, 24
    body: list[str] = []
    for i, (name, value, caption) in enumerate(rows):
        y = 6 + i * rh
        w = bw * abs(value) / top
        fill = _NEGATIVE if value < 0 else colour
        body.append(_text(lw - 6, y + 15, name, "end"))
        body.append(_rect(lw, y + 3, w, rh - 8, fill, f"{name}: {caption}", "bar"))
        body.append(_text(lw + w + 6, y + 15, caption))
    return _svg(lw + bw + 160, 12 + rh * max(1, len(rows)), label, body)


def _timeline(traffic: Mapping[str, Any]) -> str:
    """Two column charts over the window's buckets: USD spent, then calls started."""
    buckets = traffic.get("buckets") or []
    size = traffic.get("bucket_s", 1)
    pw, ph, left = 760, 110, 70
    bar = pw / max(1, len(buckets))
    body: list[str] = []
    for row, (key, colour, fmt) in enumerate(
        (("usd", PALETTE[0], _usd), ("calls", PALETTE[1], lambda v: f"{v:g} calls"))
    ):
        y0 = 10 + row * (ph + 30)
        top = max((float(b[key]) for b in buckets), default=0.0) or 1.0
        body.append(_text(left - 6, y0 + 12, fmt(top), "end", 11))
        body.append(_text(left - 6, y0 + ph, "USD" if key == "usd" else "calls", "end", 11))
        body.append(
            f'<line x1="{left}" y1="{y0 + ph}" x2="{left + pw}" y2="{y0 + ph}" stroke="#999"/>'
        )
        for i, b in enumerate(buckets):
            h = ph * float(b[key]) / top
            title = f"+{b['start_s']:g}s (bucket of {size}s): {fmt(float(b[key]))}"
            body.append(_rect(left + i * bar + 1, y0 + ph - h, bar - 2, h, colour, title, "bar"))
    body.append(_text(left, 2 * (ph + 30) + 8, "start of window", "start", 11))
    body.append(_text(left + pw, 2 * (ph + 30) + 8, f"{size}s per bar", "end", 11))
    return _svg(left + pw + 20, 2 * (ph + 30) + 14, "cost and calls over time", body)


def _utilisation(endpoints: Mapping[str, Any]) -> str:
    gpu = {n: e for n, e in endpoints.items() if e.get("provisioned_gpu_hours") is not None}
    if not gpu:
        return '<p class="muted">No endpoint here is priced by the GPU-hour.</p>'
    lw, bw, rh = 260, 420, 30
    body: list[str] = []
    for i, (name, e) in enumerate(sorted(gpu.items())):
        y = 6 + i * rh
        share = min(1.0, float(e.get("utilisation") or 0.0))
        caption = f"{_pct(e.get('utilisation'))} busy, idle {_usd(e.get('idle_usd'))}"
        body.append(_text(lw - 6, y + 16, name, "end", 11))
        body.append(_rect(lw, y + 3, bw, rh - 10, "#e6e6e6", f"{name}: provisioned"))
        body.append(_rect(lw, y + 3, bw * share, rh - 10, PALETTE[2], f"{name}: {caption}", "bar"))
        body.append(_text(lw + bw + 6, y + 16, caption, "start", 11))
        if (engine := e.get("engine_utilisation")) is not None:  # the engine's own, thin
            tip = f"{name}: {_pct(engine)} busy by {e.get('engine_busy_source')}"
            body.append(_rect(lw, y + rh - 8, bw * min(1.0, float(engine)), 3, "#222", tip))
    chart = _svg(lw + bw + 200, 12 + rh * len(gpu), "GPU utilisation per endpoint", body)
    return chart + _engine_busy(gpu)


def _engine_busy(gpu: Mapping[str, Any]) -> str:
    """agentflow's busy GPU-hours beside the engine's own (``engine_metrics=True``)."""
    sampled = {n: e for n, e in sorted(gpu.items()) if e.get("engine_busy_gpu_hours") is not None}
    if not sampled:
        return (
            '<p class="muted">The engines\' own busy time was not sampled: '
            "<code>af.configure(engine_metrics=True)</code> records it.</p>"
        )
    head = ["endpoint", "GPU-h busy (agentflow)", "GPU-h busy (engine)", "utilisation"]
    head += ["engine utilisation", "engine source"]
    rows = [
        [
            name,
            _num(e["busy_gpu_hours"], "{:.6f}"),
            _num(e["engine_busy_gpu_hours"], "{:.6f}"),
            _pct(e["utilisation"]),
            _pct(e["engine_utilisation"]),
            str(e["engine_busy_source"]),
        ]
        for name, e in sampled.items()
    ]
    return _table(head, rows, "engine-busy")


def _latency(groups: Mapping[str, Any], kind: str) -> str:
    rows = [(n, g) for n, g in sorted(groups.items()) if g.get("p50_ms") is not None]
    if not rows:
        return f'<p class="muted">No timed calls per {esc(kind)}.</p>'
    top = max(float(g["p99_ms"]) for _, g in rows) or 1.0
    lw, bw, rh = 200, 460, 16
    body: list[str] = []
    for i, (name, g) in enumerate(rows):
        y = 6 + i * (3 * rh + 10)
        body.append(_text(lw - 6, y + rh * 1.5 + 4, name, "end"))
        for j, p in enumerate(("p50", "p95", "p99")):
            value = float(g[f"{p}_ms"])
            title = f"{name} {p}: {value:.1f} ms"
            body.append(_rect(lw, y + j * rh, bw * value / top, rh - 3, PALETTE[j], title, "bar"))
            body.append(
                _text(
                    lw + bw * value / top + 4, y + j * rh + 11, f"{p} {value:.1f} ms", "start", 10
                )
            )
    return _svg(lw + bw + 140, 12 + len(rows) * (3 * rh + 10), f"latency per {kind}", body)


def _stacked(step_tier_cost: Mapping[tuple[str, str], float]) -> str:
    """Cost per step as horizontal bars, stacked by tier."""
    steps = sorted({s for s, _ in step_tier_cost})
    tiers = sorted({t for _, t in step_tier_cost})
    colour = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tiers)}
    totals = {s: sum(step_tier_cost.get((s, t), 0.0) for t in tiers) for s in steps}
    steps.sort(key=lambda s: -totals[s])
    top = max(totals.values(), default=0.0) or 1.0
    lw, bw, rh, legend = 160, 480, 26, 24
    body: list[str] = []
    x = lw
    for tier in tiers:
        body.append(_rect(x, 10, 12, 12, colour[tier], tier))
        body.append(_text(x + 16, 21, tier))
        x += 24 + 7 * len(tier)
    for row, step in enumerate(steps):
        y = 10 + legend + row * rh
        body.append(_text(lw - 6, y + 15, step, "end"))
        x0 = float(lw)
        for tier in tiers:
            cost = step_tier_cost.get((step, tier), 0.0)
            if cost > 0:
                w = bw * cost / top
                body.append(
                    _rect(
                        x0, y + 3, w, rh - 8, colour[tier], f"{step} / {tier}: ${cost:.8f}", "bar"
                    )
                )
                x0 += w
        body.append(_text(x0 + 6, y + 15, f"${totals[step]:.8f}"))
    return _svg(
        lw + bw + 140, 20 + legend + rh * max(1, len(steps)), "cost per step, stacked by tier", body
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{klass}><tr>{cells}</tr>{body}</table>"


def _escalation(steps: Mapping[str, Any]) -> str:
    """Per step: the escalation tax (bars, for steps that scored answers) and a table of
    what was scored, rejected and escalated, the tax and the routing saving."""
    scored = {n: g["escalation"] for n, g in steps.items() if g.get("escalation", {}).get("scored")}
    bars = [
        (name, float(e["escalation_tax_usd"]), f"{_usd(e['escalation_tax_usd'])} tax")
        for name, e in sorted(scored.items())
    ]
    chart = (
        _hbars("escalation tax per step", bars, PALETTE[3])
        if bars
        else '<p class="muted">No step scored its answers: nothing escalated.</p>'
    )
    head = ["step", "scored", "rejected", "rejected USD", "escalated", "tax USD", "tax share"]
    head.append("routing saved USD")
    rows = []
    for name, g in sorted(steps.items()):
        e = g.get("escalation") or {}
        rows.append(
            [
                name,
                str(e.get("scored", 0)),
                str(e.get("rejected", 0)),
                _usd(e.get("rejected_usd", 0.0)),
                str(e.get("escalated", 0)),
                _usd(e.get("escalation_tax_usd", 0.0)),
                _pct(e.get("escalation_tax_share", 0.0)),
                _usd(g["saved"].get("routing", 0.0)),
            ]
        )
    return chart + _table(head, rows, "escalation")


def _economics_table(endpoints: Mapping[str, Any]) -> str:
    head = [
        "endpoint",
        "tier",
        "calls",
        "USD",
        "GPU-h provisioned",
        "GPU-h busy",
        "utilisation",
        "idle USD",
        "$/Mtok in",
        "$/Mtok out",
        "$/Mtok in +idle",
        "$/Mtok out +idle",
    ]
    rows = [
        [
            name,
            e["tier"],
            str(e["calls"]),
            _usd(e["usd"]),
            _num(e["provisioned_gpu_hours"], "{:.6f}"),
            _num(e["busy_gpu_hours"], "{:.6f}"),
            _pct(e["utilisation"]),
            _usd(e["idle_usd"]),
            _num(e["usd_per_mtok_input"], "{:.4f}"),
            _num(e["usd_per_mtok_output"], "{:.4f}"),
            _num(e["usd_per_mtok_input_with_idle"], "{:.4f}"),
            _num(e["usd_per_mtok_output_with_idle"], "{:.4f}"),
        ]
        for name, e in endpoints.items()
    ]
    return f'<div class="wide">{_table(head, rows, "economics")}</div>'


def _waterfall(calls: Sequence[Mapping[str, Any]], tiers: Sequence[str]) -> str:
    if not calls:
        return ""
    colour = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tiers)}
    end = max(c["offset_ms"] + (c["latency_ms"] or 0.0) for c in calls) or 1.0
    lw, bw, rh, top = 160, 560, 12, 18
    body = [
        _text(lw, 12, "+0 ms (the run's first call)", "start", 10),
        _text(lw + bw, 12, f"+{end:.0f} ms", "end", 10),
    ]
    for i, c in enumerate(calls):
        y = top + i * rh
        x = lw + bw * c["offset_ms"] / end
        w = max(2.0, bw * (c["latency_ms"] or 0.0) / end)
        what = f"cache:{c['cache']}" if c["cache"] else c["endpoint"]
        title = (
            f"{c['step']} via {what}: {_num(c['latency_ms'])} ms at +{c['offset_ms']:.1f} ms, "
            f"{_usd(c['usd'])}{' (error)' if c['error'] else ''}"
        )
        body.append(_text(lw - 6, y + 10, c["step"], "end", 9))
        fill = "#b00" if c["error"] else colour.get(c["tier"], "#999")
        body.append(_rect(x, y + 2, w, rh - 3, fill, title, "call"))
    return _svg(lw + bw + 20, top + 4 + rh * len(calls), "calls of the run over time", body)


def _runs(runs: Mapping[str, Any], tiers: Sequence[str]) -> str:
    parts = []
    ordered = sorted(runs.items(), key=lambda item: item[1].get("start_ms") or 0.0)
    for index, (name, r) in enumerate(ordered[:_MAX_RUNS]):
        steps = [
            [
                s,
                str(g["calls"]),
                _usd(g["usd"]),
                _usd(g["saved_usd"]),
                _num(g["p50_ms"]),
                _num(g["p99_ms"]),
                str(g["errors"]),
            ]
            for s, g in r["steps"].items()
        ]
        listed = r["calls_listed"]
        more = r["calls"] - len(listed)
        parts.append(
            f'<details class="run"{" open" if index == 0 else ""}>'
            f"<summary>{esc(name)}: {r['calls']} calls, "
            f"{_usd(r['usd'])} spent, {_usd(r['saved_usd'])} saved</summary>"
            + _table(["step", "calls", "USD", "saved", "p50 ms", "p99 ms", "errors"], steps)
            + _waterfall(listed, tiers)
            + (f'<p class="muted">{more} more calls not drawn.</p>' if more > 0 else "")
            + "</details>"
        )
    if len(ordered) > _MAX_RUNS:
        parts.append(
            f'<p class="muted">{len(ordered) - _MAX_RUNS} more runs: narrow the window '
            "(--since/--until) or read them in --json.</p>"
        )
    return "".join(parts) or '<p class="muted">No runs.</p>'


def _section(ident: str, heading: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{esc(heading)}</h2>{body}</section>'


def render_page(
    title: str,
    summary: Mapping[str, Any],
    step_tier_cost: Mapping[tuple[str, str], float],
    tables: Sequence[Table],
) -> str:
    """The page: charts from ``summary`` (``agentflow report --json``), then ``tables``."""
    totals, window = summary["totals"], summary["window"]
    saved = totals["saved"]
    cards = [
        ("spent", _usd(totals["usd"])),
        ("calls", str(totals["calls"])),
        ("saved", _usd(totals["saved_usd"])),
        ("idle GPU cost", _usd(totals["idle_usd"])),
        (
            "GPU utilisation",
            _pct(totals["busy_gpu_hours"] / totals["provisioned_gpu_hours"])
            if totals["provisioned_gpu_hours"]
            else "-",
        ),
        ("peak / mean calls", _num(summary["traffic"]["peak_to_mean"], "{:.2f}")),
    ]
    card_html = "".join(f'<div class="card">{esc(k)}<b>{esc(v)}</b></div>' for k, v in cards)
    savings = [(_SAVING_LABELS[k], float(v), _usd(float(v))) for k, v in saved.items()]
    tiers = sorted(summary["tiers"])
    warnings = "".join(f'<p class="warn">{esc(w)}</p>' for w in summary.get("warnings", []))
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">{esc(window["since"])} to {esc(window["until"])} '
        f"({window['seconds']:.1f} s), {summary['span_count']} spans</p>",
        warnings,
        _section("totals", "Totals", f'<div class="cards">{card_html}</div>'),
        _section("timeline", "Cost and calls over time", _timeline(summary["traffic"])),
        _section("utilisation", "GPU utilisation per endpoint", _utilisation(summary["endpoints"])),
        _section("savings", "Savings by kind", _hbars("savings by kind", savings, PALETTE[4])),
        _section(
            "escalation", "Escalation tax and routing per step", _escalation(summary["steps"])
        ),
        _section(
            "latency",
            "Latency percentiles",
            "<h3>Per step</h3>"
            + _latency(summary["steps"], "step")
            + "<h3>Per tier</h3>"
            + _latency(summary["tiers"], "tier"),
        ),
        _section("cost-per-step", "Cost per step, by tier", _stacked(step_tier_cost)),
        _section("endpoints", "Cost per million tokens", _economics_table(summary["endpoints"])),
        _section(
            "tables",
            "Tables",
            "".join(f"<h3>{esc(h)}</h3>" + _table(cols, rows) for h, cols, rows in tables),
        ),
        _section("runs", "Runs", _runs(summary["runs"], tiers)),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
