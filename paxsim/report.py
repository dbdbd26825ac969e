"""Load-test report: one self-contained HTML file with plotly charts, plus a JSON file with the same figures."""

from __future__ import annotations

import html
import json
import platform
import time
from pathlib import Path

import plotly.graph_objects as go

from paxsim.load import LoadResult

STAGES = (("produced_rate", "edge → sightings"), ("admitted_rate", "policy gate admitted"), ("decided_rate", "matcher decided"), ("matched_rate", "matched"))


def _figures(results: list[LoadResult]) -> list[tuple[str, go.Figure]]:
    figs: list[tuple[str, go.Figure]] = []
    thr = go.Figure()
    lat = go.Figure()
    cpu = go.Figure()
    mem = go.Figure()
    drops = go.Figure()
    for r in results:
        rows = [s.row() for s in r.steps]
        x = [row["produced_rate"] for row in rows]
        for key, name in STAGES:
            thr.add_trace(go.Scatter(x=x, y=[row[key] for row in rows], mode="lines+markers", name=f"{r.label}: {name}"))
        for q in ("p50", "p99"):
            lat.add_trace(go.Scatter(x=x, y=[row[f"latency_{q}_ms"] for row in rows], mode="lines+markers", name=f"{r.label}: {q}"))
        procs = sorted({p for row in rows for p in row["processes"]})
        for p in procs:
            cpu.add_trace(go.Bar(x=[f"{r.label} {v:,.0f}/s" for v in x], y=[row["processes"].get(p, {}).get("cpu_s", 0) / r.plan.step_s for row in rows], name=p))
            mem.add_trace(go.Bar(x=[f"{r.label} {v:,.0f}/s" for v in x], y=[row["processes"].get(p, {}).get("rss_max_mb", 0) for row in rows], name=p))
        rules = sorted({k for row in rows for k in row["dropped_by_rule"]} | {"edge:backpressure", "edge:frames"})
        special = {"edge:backpressure": "edge_dropped", "edge:frames": "frames_dropped"}
        for rule in rules:
            ys = [row[special[rule]] if rule in special else row["dropped_by_rule"].get(rule, 0) for row in rows]
            drops.add_trace(go.Bar(x=[f"{r.label} {v:,.0f}/s" for v in x], y=ys, name=rule))
    thr.update_layout(title="Throughput per stage (events/s) vs offered load", xaxis_title="sightings/s into the pipeline", yaxis_title="events/s")
    lat.update_layout(title="Capture → decision latency", xaxis_title="sightings/s into the pipeline", yaxis_title="ms", yaxis_type="log")
    cpu.update_layout(title="CPU per service (cores used during the step)", barmode="group", yaxis_title="cores")
    mem.update_layout(title="Peak memory per service", barmode="group", yaxis_title="MiB")
    drops.update_layout(title="Drops and refusals by reason", barmode="stack", yaxis_title="events")
    for f in (thr, lat, cpu, mem, drops):
        f.update_layout(template="plotly_dark", height=380, margin=dict(l=60, r=20, t=50, b=50))
    figs += [("throughput", thr), ("latency", lat), ("drops", drops), ("cpu", cpu), ("memory", mem)]
    figs += _accuracy_figures(results)
    return figs


def reference_step(r: LoadResult) -> tuple[int, dict] | None:
    """The step whose accuracy the report charts: the largest sustained step with video ground truth, else the first scored one."""
    rows = [(i, s.row()) for i, s in enumerate(r.steps)]
    scored = [(i, row) for i, row in rows if (row["accuracy"] or {}).get("groups")]
    ok = [x for x in scored if x[1]["sustained"]]
    return (ok or scored[:1] or [None])[-1]


def _accuracy_figures(results: list[LoadResult]) -> list[tuple[str, go.Figure]]:
    """Video runs against ground truth: detection recall by face width, IDF1 / MOTA per camera, and rank-1, FRR,
    FAR and the correct-transition share per demographic group."""
    size, cams, groups = go.Figure(), go.Figure(), go.Figure()
    any_acc = False
    for r in results:
        ref = reference_step(r)
        if ref is None:
            continue
        any_acc = True
        i, row = ref
        acc = row["accuracy"]
        tag = f"{r.label} step {i + 1}"
        bins = acc["recall_by_size"]
        size.add_trace(go.Bar(x=[b["range"] for b in bins], y=[b["recall"] for b in bins], name=tag,
                              text=[f"{b['found']}/{b['faces']}" for b in bins], textposition="outside"))
        names = sorted(acc["cameras"])
        for key in ("idf1", "mota"):
            cams.add_trace(go.Bar(x=names, y=[acc["cameras"][c][key] for c in names], name=f"{tag}: {key.upper()}"))
        for metric, label in (("rank1", "rank-1"), ("frr", "FRR"), ("far", "FAR"), ("transitions", "correct transitions")):
            xs, ys = [], []
            for key, values in acc["groups"].items():
                for v, g in values.items():
                    xs.append(f"{key}={v}")
                    ys.append(g["transitions"]["share"] if metric == "transitions" else g[metric])
            groups.add_trace(go.Bar(x=xs, y=ys, name=f"{tag}: {label}"))
    if not any_acc:
        return []
    size.update_layout(title="Detection recall by face width (edge tracks vs ground truth, IoU ≥ 0.5)", yaxis_title="recall", yaxis_range=[0, 1.1], barmode="group")
    cams.update_layout(title="Tracking per camera (motmetrics)", yaxis_title="score", barmode="group")
    groups.update_layout(title="Identification per demographic group (true traveller's group)", yaxis_title="share", yaxis_range=[0, 1.05], barmode="group")
    for f in (size, cams, groups):
        f.update_layout(template="plotly_dark", height=380, margin=dict(l=60, r=20, t=50, b=80))
    return [("recall-by-size", size), ("tracking", cams), ("groups", groups)]


def _table(results: list[LoadResult]) -> str:
    head = ["run", "offered/s or cameras", "decided/s", "p50 ms", "p99 ms", "edge drops", "frames dropped", "dead letters", "rank-1", "FRR", "FAR", "leaks", "transitions ok", "sustained"]
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in results:
        for row in (s.row() for s in r.steps):
            acc = row["accuracy"] or {}
            cells = [
                r.label, f"{row['offered_rate']:,.0f}", f"{row['decided_rate']:,.0f}",
                f"{row['latency_p50_ms'] or 0:,.1f}", f"{row['latency_p99_ms'] or 0:,.1f}", f"{row['edge_dropped']:,.0f}", f"{row['frames_dropped']:,.0f}", f"{row['deadletters']}",
                f"{acc['rank1']:.1%}" if acc.get("rank1") is not None else "n/a",
                f"{acc['frr']:.1%}" if acc.get("frr") is not None else "n/a",
                f"{acc['far']:.2%}" if acc.get("far") is not None else "n/a",
                str(acc.get("leaks", "n/a")),
                (f"{acc['transitions']['correct']}/{acc['transitions']['transitions']}" if acc.get("transitions") else "n/a"),
                "yes" if row["sustained"] else "no",
            ]
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_report(results: list[LoadResult], html_path: Path, extra: dict | None = None) -> Path:
    """Write ``html_path`` and ``html_path.with_suffix('.json')``; return the JSON path."""
    figs = _figures(results)
    meta = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "python": platform.python_version()}
    doc = {"meta": meta, "runs": [r.as_dict() for r in results], **(extra or {})}
    json_path = html_path.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig-{name}") for i, (name, fig) in enumerate(figs)]
    summary = "".join(
        f"<li><b>{html.escape(r.label)}</b>: max sustained {r.max_sustained_rate or 0:,.0f} decided/s; "
        f"saturation at {('%s offered/s' % format(r.saturation_rate, ',.0f')) if r.saturation_rate else 'not reached'}</li>"
        for r in results
    )
    extra_html = "".join(f"<h2>{html.escape(k)}</h2><pre>{html.escape(json.dumps(v, indent=2, default=str))}</pre>" for k, v in (extra or {}).items())
    html_path.write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>paxsim load report</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;background:#111217;color:#d8d9da}} table{{border-collapse:collapse}}
td,th{{border:1px solid #333;padding:4px 8px;text-align:right}} h1,h2{{font-weight:500}} pre{{background:#181b1f;padding:8px}}</style>
</head><body><h1>paxsim load report</h1><p>{html.escape(json.dumps(meta))}</p><ul>{summary}</ul>
{_table(results)}
{''.join(parts)}
{extra_html}
</body></html>"""
    )
    return json_path
