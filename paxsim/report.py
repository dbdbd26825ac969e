"""Load-test report: one self-contained HTML file with plotly charts, plus a JSON file with the same figures."""

from __future__ import annotations

import html
import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:  # paxsim.load calls the report: only the type is needed here
    from paxsim.load import LoadResult

STAGES = (
    ("produced_rate", "edge → sightings"),
    ("admitted_rate", "policy gate admitted"),
    ("decided_rate", "matcher decided"),
    ("matched_rate", "matched"),
)


def _video(results: list[LoadResult]) -> bool:
    return any(r.plan.videos for r in results)


def _steps(r: LoadResult) -> tuple[list[dict], list[float], list[str]]:
    """Rows, x values (video cameras, or sightings/s into the pipeline) and one category label per step."""
    rows = [s.row() for s in r.steps]
    if r.plan.videos:
        x = [row["offered_rate"] for row in rows]
        cats = [f"{r.label} · {v:,.0f} cam" for v in x]
    else:
        x = [row["produced_rate"] for row in rows]
        cats = [f"{r.label} · {v:,.0f}/s" for v in x]
    return rows, x, cats


def _figures(results: list[LoadResult]) -> list[tuple[str, go.Figure]]:
    figs: list[tuple[str, go.Figure]] = []
    thr, lat, cpu, mem, drops = go.Figure(), go.Figure(), go.Figure(), go.Figure(), go.Figure()
    video = _video(results)
    for r in results:
        rows, x, cats = _steps(r)
        for key, name in STAGES:
            thr.add_trace(go.Scatter(x=x, y=[row[key] for row in rows], mode="lines+markers", name=f"{r.label}: {name}"))
        if r.plan.videos:
            thr.add_trace(
                go.Scatter(
                    x=x,
                    y=[row["frames_processed_rate"] for row in rows],
                    mode="lines+markers",
                    name=f"{r.label}: frames analysed (right)",
                    yaxis="y2",
                )
            )
        for q in ("p50", "p99"):
            lat.add_trace(go.Scatter(x=x, y=[row[f"latency_{q}_ms"] for row in rows], mode="lines+markers", name=f"{r.label}: {q}"))
        for p in sorted({p for row in rows for p in row["processes"]}):
            cpu.add_trace(go.Bar(x=cats, y=[row["processes"].get(p, {}).get("cpu_s", 0) / r.plan.step_s for row in rows], name=p))
            mem.add_trace(go.Bar(x=cats, y=[row["processes"].get(p, {}).get("rss_max_mb", 0) for row in rows], name=p))
        rules = sorted({k for row in rows for k in row["dropped_by_rule"]} | {"edge:backpressure", "edge:frames"})
        special = {"edge:backpressure": "edge_dropped", "edge:frames": "frames_dropped"}
        for rule in rules:
            ys = [row[special[rule]] if rule in special else row["dropped_by_rule"].get(rule, 0) for row in rows]
            drops.add_trace(go.Bar(x=cats, y=ys, name=rule))
    xt = "video cameras replayed" if video else "sightings/s into the pipeline"
    thr.update_layout(
        title="Throughput per stage (events/s)" + (", frames analysed/s on the right" if video else " vs offered load"),
        xaxis_title=xt,
        yaxis_title="events/s",
    )
    if video:
        thr.update_layout(yaxis2=dict(title="frames/s", overlaying="y", side="right"))
    lat.update_layout(title="Capture → decision latency", xaxis_title=xt, yaxis_title="ms", yaxis_type="log")
    cpu.update_layout(title="CPU per service incl. its worker processes (cores used during the step)", barmode="group", yaxis_title="cores")
    mem.update_layout(title="Peak memory per service incl. its worker processes", barmode="group", yaxis_title="MiB")
    drops.update_layout(title="Drops and refusals by reason", barmode="stack", yaxis_title="events")
    for f in (thr, lat, cpu, mem, drops):
        f.update_layout(template="plotly_dark", height=380, margin=dict(l=60, r=60, t=50, b=50))
    figs += [("throughput", thr), ("latency", lat), ("drops", drops), ("cpu", cpu), ("memory", mem)]
    figs += _accuracy_figures(results)
    return figs


def pooled_groups(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """Per-group rank-1 / FRR / FAR / correct-transition share pooled over the scored steps (sums of counts)."""
    out: dict[str, dict[str, dict]] = {}
    for row in rows:
        for key, values in ((row["accuracy"] or {}).get("groups") or {}).items():
            for v, g in values.items():
                c = out.setdefault(key, {}).setdefault(
                    v,
                    dict.fromkeys(
                        ("events", "genuine", "correct", "missed", "impostor", "false_acc", "leaks", "transitions", "transitions_ok"), 0
                    ),
                )
                gen, imp = g["genuine"], g["events"] - g["genuine"]
                c["events"] += g["events"]
                c["genuine"] += gen
                c["correct"] += round((g["rank1"] or 0) * gen)
                c["missed"] += round((g["frr"] or 0) * gen)
                c["impostor"] += imp
                c["false_acc"] += round((g["far"] or 0) * imp)
                c["leaks"] += g["leaks"]
                c["transitions"] += g["transitions"]["transitions"]
                c["transitions_ok"] += g["transitions"]["correct"]
    for values in out.values():
        for c in values.values():
            c["rank1"] = c["correct"] / c["genuine"] if c["genuine"] else None
            c["frr"] = c["missed"] / c["genuine"] if c["genuine"] else None
            c["far"] = c["false_acc"] / c["impostor"] if c["impostor"] else None
            c["transition_share"] = c["transitions_ok"] / c["transitions"] if c["transitions"] else None
    return out


def _accuracy_figures(results: list[LoadResult]) -> list[tuple[str, go.Figure]]:
    """Video runs against ground truth: detection recall by face width and IDF1 / HOTA per camera for every step,
    and rank-1, FRR, FAR and the correct-transition share per demographic group pooled over the steps."""
    size, cams, groups = go.Figure(), go.Figure(), go.Figure()
    any_acc = False
    for r in results:
        rows, _, cats = _steps(r)
        scored = [(cat, row) for cat, row in zip(cats, rows) if (row["accuracy"] or {}).get("groups") is not None]
        if not scored:
            continue
        any_acc = True
        for cat, row in scored:
            acc = row["accuracy"]
            bins = acc["recall_by_size"]
            size.add_trace(
                go.Bar(
                    x=[b["range"] for b in bins],
                    y=[b["recall"] for b in bins],
                    name=cat,
                    text=[f"{b['found']}/{b['faces']}" for b in bins],
                    textposition="outside",
                )
            )
            names = sorted(acc["cameras"])
            cams.add_trace(go.Bar(x=names, y=[acc["cameras"][c]["idf1"] for c in names], name=f"{cat}: IDF1"))
            if any(acc["cameras"][c].get("hota") is not None for c in names):
                cams.add_trace(
                    go.Scatter(
                        x=names, y=[acc["cameras"][c].get("hota") for c in names], mode="markers", marker_size=10, name=f"{cat}: HOTA"
                    )
                )
        pooled = pooled_groups([row for _, row in scored])
        xs = [f"{key}={v}" for key, values in pooled.items() for v in values]
        ns = [c["events"] for values in pooled.values() for c in values.values()]
        for metric, label in (("rank1", "rank-1"), ("frr", "FRR"), ("far", "FAR"), ("transition_share", "correct transitions")):
            ys = [c[metric] for values in pooled.values() for c in values.values()]
            groups.add_trace(go.Bar(x=[f"{x} (n={n})" for x, n in zip(xs, ns)], y=ys, name=f"{r.label}: {label}"))
    if not any_acc:
        return []
    size.update_layout(
        title="Detection recall by face width under load (edge tracks vs ground truth, IoU ≥ 0.5; found/faces)",
        yaxis_title="recall",
        yaxis_range=[0, 1.15],
        barmode="group",
    )
    cams.update_layout(
        title="Tracking per camera: IDF1 (bars, motmetrics), HOTA (dots, TrackEval)",
        yaxis_title="score",
        yaxis_range=[0, 1],
        barmode="group",
    )
    groups.update_layout(
        title="Identification per demographic group of the true traveller, all steps pooled (n = scored sightings)",
        yaxis_title="share",
        yaxis_range=[0, 1.05],
        barmode="group",
    )
    for f in (size, cams, groups):
        f.update_layout(template="plotly_dark", height=420, margin=dict(l=60, r=20, t=50, b=110))
    return [("recall-by-size", size), ("tracking", cams), ("groups", groups)]


def _table(results: list[LoadResult]) -> str:
    head = [
        "run",
        "offered/s or cameras",
        "decided/s",
        "p50 ms",
        "p99 ms",
        "edge drops",
        "frames dropped",
        "dead letters",
        "rank-1",
        "FRR",
        "FAR",
        "leaks",
        "transitions ok",
        "audit scan (expired / non-consented / gaps)",
        "sustained",
    ]
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in results:
        for row in (s.row() for s in r.steps):
            acc = row["accuracy"] or {}
            cells = [
                r.label,
                f"{row['offered_rate']:,.0f}",
                f"{row['decided_rate']:,.1f}",
                f"{row['latency_p50_ms'] or 0:,.1f}",
                f"{row['latency_p99_ms'] or 0:,.1f}",
                f"{row['edge_dropped']:,.0f}",
                f"{row['frames_dropped']:,.0f}",
                f"{row['deadletters']}",
                f"{acc['rank1']:.1%}" if acc.get("rank1") is not None else "n/a",
                f"{acc['frr']:.1%}" if acc.get("frr") is not None else "n/a",
                f"{acc['far']:.2%}" if acc.get("far") is not None else "n/a",
                str(acc.get("leaks", "n/a")),
                (f"{acc['transitions']['correct']}/{acc['transitions']['transitions']}" if acc.get("transitions") else "n/a"),
                " / ".join(str(v) for v in row["audit_scan"].values()) if row.get("audit_scan") else "n/a",
                "yes" if row["sustained"] else "no",
            ]
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _accuracy_table(results: list[LoadResult]) -> str:
    """Per step of a video run: sightings linked to ground truth, recall by face width, mean IDF1 / HOTA."""
    rows_html = []
    for r in results:
        rows, _, cats = _steps(r)
        for cat, row in zip(cats, rows):
            acc = row["accuracy"] or {}
            if "recall_by_size" not in acc:
                continue
            cams = acc["cameras"].values()
            mean = lambda k, cams=cams: (
                (sum(c[k] for c in cams if c.get(k) is not None) / max(1, sum(c.get(k) is not None for c in cams)))
                if any(c.get(k) is not None for c in cams)
                else None
            )
            cells = [cat, f"{acc['link']['linked']}/{acc['link']['sightings']}"]
            cells += [f"{b['recall']:.0%} ({b['found']}/{b['faces']})" if b["recall"] is not None else "n/a" for b in acc["recall_by_size"]]
            cells += [f"{m:.3f}" if m is not None else "n/a" for m in (mean("idf1"), mean("mota"), mean("hota"))]
            rows_html.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            head_bins = [b["range"] for b in acc["recall_by_size"]]
    if not rows_html:
        return ""
    head = ["step", "sightings linked to gt", *[f"recall {b}" for b in head_bins], "IDF1 (mean of cameras)", "MOTA", "HOTA"]
    return (
        "<h2>Accuracy against ground truth</h2><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(rows_html)
        + "</table>"
    )


def _rows_html(rows: list[dict]) -> str:
    body = "".join(
        f"<tr><td style='text-align:left'>{html.escape(r['figure'])}</td><td>{_fmt(r['a'])}</td><td>{_fmt(r['b'])}</td>"
        f"<td>{_fmt(r['b_minus_a'])}</td><td style='text-align:left'>{html.escape(r['meaning'])}</td></tr>"
        for r in rows
    )
    return f"<table><tr><th>figure</th><th>A</th><th>B</th><th>B − A</th><th>what the change means</th></tr>{body}</table>"


def comparison_figure(cmp: dict) -> go.Figure:
    """One panel per compared figure (refusals by rule included): A and B as bars, one pair per step."""
    from plotly.subplots import make_subplots

    names = list(dict.fromkeys(r["figure"] for step in cmp["side_by_side"] for r in step["rows"]))
    cols = 3
    nrows = -(-len(names) // cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=names, vertical_spacing=0.5 / max(nrows, 1))
    steps = [f"{step['offered']:g}" for step in cmp["side_by_side"]]
    for i, name in enumerate(names):
        row, col = i // cols + 1, i % cols + 1
        for side, label, color in (("a", cmp["baseline"], "#5794f2"), ("b", cmp["candidate"], "#ff9830")):
            ys = [next((r[side] for r in step["rows"] if r["figure"] == name), None) for step in cmp["side_by_side"]]
            fig.add_trace(
                go.Bar(x=steps, y=ys, name=f"{'A' if side == 'a' else 'B'}: {label}", marker_color=color, showlegend=i == 0),
                row=row,
                col=col,
            )
    fig.update_layout(
        title="A beside B at each step (x: offered load)",
        template="plotly_dark",
        barmode="group",
        height=260 * nrows + 80,
        margin=dict(l=50, r=20, t=80, b=40),
    )
    fig.update_annotations(font_size=11)
    return fig


def _comparison(cmp: dict | None) -> str:
    """The two policies' diff, what each keeps for how long, a chart per figure, then each step's figures side
    by side with what B - A means."""
    if not cmp:
        return ""
    out = [f"<h2 id='comparison'>comparison: {html.escape(cmp['baseline'])} (A) → {html.escape(cmp['candidate'])} (B)</h2>"]
    diff = cmp.get("policy_diff") or []
    out.append("<h3>policy diff</h3><pre>" + (html.escape("\n".join(diff)) if diff else "the two policy files are the same") + "</pre>")
    if cmp.get("retention"):
        out.append("<h3>what each policy keeps, and for how long</h3>" + _rows_html(cmp["retention"]))
    if cmp.get("side_by_side"):
        out.append(comparison_figure(cmp).to_html(full_html=False, include_plotlyjs=False, div_id="fig-comparison"))
    for step in cmp.get("side_by_side", []):
        out.append(f"<h3>step offered {step['offered']:g}</h3>" + _rows_html(step["rows"]))
    return "".join(out)


def _fmt(v) -> str:  # noqa: ANN001
    if v is None:
        return "–"
    return f"{v:,.2f}".rstrip("0").rstrip(".") if isinstance(v, float) else f"{v:,}"


def _attack_table(attacks: list[dict] | None) -> str:
    """The red team's table (paxsim redteam): attack, expected defence, observed, pass/fail."""
    if not attacks:
        return ""
    failed = sum(not a["passed"] for a in attacks)
    rows = "".join(
        "<tr>"
        + "".join(f"<td style='text-align:left'>{html.escape(str(a[k]))}</td>" for k in ("attack", "defence", "observed"))
        + f"<td>{'pass' if a['passed'] else '<b>FAIL</b>'}</td></tr>"
        for a in attacks
    )
    return (
        f"<h2>privacy attack surface</h2><p>paxsim redteam: {len(attacks) - failed} passed, {failed} failed</p>"
        f"<table><tr><th>attack</th><th>expected defence</th><th>observed</th><th>result</th></tr>{rows}</table>"
    )


def write_report(results: list[LoadResult], html_path: Path, extra: dict | None = None, attacks: list[dict] | None = None) -> Path:
    """Write ``html_path`` and ``html_path.with_suffix('.json')``; return the JSON path. ``attacks``: the red
    team's results (its table becomes the report's "privacy attack surface" section)."""
    figs = _figures(results)
    meta = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "python": platform.python_version()}
    doc = {"meta": meta, "runs": [r.as_dict() for r in results], **(extra or {}), **({"redteam": attacks} if attacks is not None else {})}
    json_path = html_path.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig-{name}") for i, (name, fig) in enumerate(figs)]
    summary = "".join(f"<li><b>{html.escape(r.label)}</b>: {html.escape(r.headline())}</li>" for r in results)
    extra_html = _comparison((extra or {}).get("comparison")) + "".join(
        f"<h2>{html.escape(k)}</h2><pre>{html.escape(json.dumps(v, indent=2, default=str))}</pre>"
        for k, v in (extra or {}).items()
        if k != "comparison"
    )
    html_path.write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>paxsim load report</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;background:#111217;color:#d8d9da}} table{{border-collapse:collapse}}
td,th{{border:1px solid #333;padding:4px 8px;text-align:right}} h1,h2{{font-weight:500}} pre{{background:#181b1f;padding:8px}}</style>
</head><body><h1>paxsim load report</h1><p>{html.escape(json.dumps(meta))}</p><ul>{summary}</ul>
{_table(results)}
{_accuracy_table(results)}
{_attack_table(attacks)}
{"".join(parts)}
{extra_html}
</body></html>"""
    )
    return json_path
