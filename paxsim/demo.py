"""``paxsim demo``: the synthetic airport through every stage on a real broker, with live progress and a summary.

1. start the embedded broker (or use ``broker.bootstrap``) and create the topics;
2. enrol the scenario's consenting travellers (gallery + consent registry in the run's state dir);
3. start policy gate, matcher, dashboard and the virtual-camera edge agent as separate processes;
4. show events/s per stage while the edge runs, then wait until the gate and matcher have drained;
5. stop every process and print a summary computed from the matches topic itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from broker import metricnames as broker_metrics
from broker import topics as t
from broker.messages import Match, Sighting, TrackUpdate, decode
from broker.reader import read_all
from core.config import Settings
from core.paths import gallery_path, ground_truth_path, state_dir
from core.stack import Stack, total
from edge import metricnames as edge_metrics
from matcher import metricnames as matcher_metrics
from matcher.gallery import Gallery
from paxsim.accuracy import RenderTruth, Replica, live_camera_perception, read_track_log, read_truth, score, video_accuracy
from paxsim.infra import policy_file, start_infra
from paxsim.summary import RunSummary
from policy import metricnames as policy_metrics
from policy.consent import ConsentRegistry, consent_path, open_consent
from policy.crypto import KeySource, SubjectVault
from policy.crypto.outputs import OutputKeys
from policy.policyfile import load_policy
from policy.scan import run_scan, state_stores
from scenario.world import load_world

log = logging.getLogger("paxsim.demo")

TRACK_LOG = "edge-tracks.jsonl"
LIVE_LOG = "live-camera-tracks.jsonl"  # the demo's live rendered camera (scenario.live_camera)
LIVE_SUFFIX = "-live"


@dataclass(frozen=True)
class VideoEval:
    """Score a video run against rendered ground truth: the truth and which video each published camera replays."""

    truth: RenderTruth
    replicas: dict[str, Replica]
    embeddings: dict[str, np.ndarray] | None = None  # enrolment vectors of the travellers the videos show


def start_pipeline(
    stack: Stack,
    duration_s: float,
    ground_truth: Path | None,
    join_timeout_s: float = 30.0,
    cameras: Path | None = None,
    track_log: Path | None = None,
) -> None:
    """Consumers first; the edge once they hold their partitions, so start-up does not count as latency.

    (Correctness does not depend on the order: consumers start at offset 0.)"""
    start_consumers(stack, join_timeout_s)
    if cameras is not None:  # real video cameras (files, streams, synthetic live) from a camera list
        edge_args = ["edge", "--cameras", str(cameras), "--duration", str(duration_s)]
        if track_log is not None:  # every tracked face logged for scoring
            edge_args += ["--track-log", str(track_log)]
    else:
        edge_args = ["edge", "--virtual", "--duration", str(duration_s)]
        if ground_truth:
            edge_args += ["--ground-truth", str(ground_truth)]
    stack.spawn("edge", edge_args)


def start_live_camera(stack: Stack, settings: Settings, run_dir: Path, duration_s: float) -> str | None:
    """Spawn a second edge running ``scenario.live_camera`` (rendered live, in real time) through the real
    vision pipeline with one worker process; returns the camera id, or None when the setting is empty or
    names no face camera of the built-in airport."""
    name = settings.scenario.live_camera
    if not name:
        return None
    spec = next((c for c in load_world().cameras if c.id == name and c.faces), None)
    if spec is None:
        log.warning("scenario.live_camera %r is no face camera of the built-in airport: no live camera", name)
        return None
    cam = {
        "camera_id": name + LIVE_SUFFIX,
        "zone": spec.zone,
        "source": f"synthetic:{name}",
        "realtime": True,
        "sample_fps": settings.scenario.live_camera_fps,
    }
    path = run_dir / "live-camera.yaml"
    path.write_text(yaml.safe_dump({"cameras": [cam]}, sort_keys=False))
    args = ["edge", "--cameras", str(path), "--duration", str(duration_s), "--track-log", str(run_dir / LIVE_LOG), "--workers", "1"]
    stack.spawn("edge-live", args)
    return name


def start_consumers(stack: Stack, join_timeout_s: float = 30.0) -> None:
    """Spawn policy gate, matcher and dashboard; return once gate and matcher hold their partitions."""
    stack.spawn("policy", ["policy"])
    stack.spawn("matcher", ["matcher"])
    stack.spawn("dashboard", ["dashboard"], metrics_flag="--port")
    deadline = time.monotonic() + join_timeout_s
    for name in ("policy", "matcher"):
        while total(stack.scrape(name), broker_metrics.ASSIGNED_PARTITIONS) < 1:
            child = stack.children[name]
            if not child.alive():
                raise RuntimeError(f"stage {name} exited during start-up (code {child.proc.returncode}); see {child.log_path}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError(f"stage {name} did not join its consumer group within {join_timeout_s:.0f}s; see {child.log_path}")
            time.sleep(0.1)


@dataclass
class StageCounts:
    published: float = 0.0
    count_only: float = 0.0
    edge_dropped: float = 0.0
    frames_dropped: float = 0.0
    frames_processed: float = 0.0
    gate_admitted: float = 0.0
    gate_denied: float = 0.0
    gate_dead: float = 0.0
    matched: float = 0.0
    unknown: float = 0.0
    refused: float = 0.0
    verified: float = 0.0  # e-gate 1:1: the live face is the claimed enrolee
    rejected: float = 0.0  # e-gate 1:1: it is not (or the claimed person is not enrolled)
    duplicates: float = 0.0
    live_frames: float = 0.0  # frames the live camera's real edge analysed
    gate_denied_by_rule: dict[str, float] | None = None

    @property
    def gate_total(self) -> float:
        return self.gate_admitted + self.gate_denied + self.gate_dead

    @property
    def matcher_total(self) -> float:
        return self.matched + self.unknown + self.refused + self.verified + self.rejected + self.duplicates


def scrape_counts(stack: Stack, last: StageCounts) -> StageCounts:
    """Counters from every live child; a child that has exited keeps its last values."""
    c = StageCounts(**{k: v for k, v in last.__dict__.items()})
    if stack.children["edge"].alive():
        e = stack.scrape("edge")
        if e:
            c.published = total(e, edge_metrics.PUBLISHED_TOTAL, topic=t.SIGHTINGS.name)
            c.count_only = total(e, edge_metrics.COUNT_ONLY_FACES_TOTAL)
            c.edge_dropped = total(e, edge_metrics.DROPPED_TOTAL)  # publish queue full
            c.frames_dropped = total(e, edge_metrics.FRAMES_DROPPED_TOTAL)  # video cameras: pipeline full
            c.frames_processed = total(e, edge_metrics.FRAMES_PROCESSED_TOTAL)
    live = stack.children.get("edge-live")
    if live is not None and live.alive():
        e = stack.scrape("edge-live")
        if e:
            c.live_frames = total(e, edge_metrics.FRAMES_PROCESSED_TOTAL)
    g = stack.scrape("policy")
    if g:
        c.gate_admitted = total(g, policy_metrics.GATE_EVENTS_TOTAL, outcome="admitted")
        c.gate_denied = total(g, policy_metrics.GATE_EVENTS_TOTAL, outcome="denied")
        c.gate_dead = total(g, policy_metrics.GATE_EVENTS_TOTAL, outcome="deadletter")
        rules: dict[str, float] = {}
        for (name, labels), v in g.items():
            lbl = dict(labels)
            if name == policy_metrics.DECISIONS_TOTAL and lbl.get("decision") == "deny" and v:
                rules[f"{lbl['stage']}:{lbl['rule']}"] = v
        c.gate_denied_by_rule = rules
    m = stack.scrape("matcher")
    if m:
        c.matched = total(m, matcher_metrics.EVENTS_TOTAL, decision="match")
        c.unknown = total(m, matcher_metrics.EVENTS_TOTAL, decision="unknown")
        c.refused = total(m, matcher_metrics.EVENTS_TOTAL, decision="refused")
        c.verified = total(m, matcher_metrics.EVENTS_TOTAL, decision="verified")
        c.rejected = total(m, matcher_metrics.EVENTS_TOTAL, decision="rejected")
        c.duplicates = total(m, matcher_metrics.DUPLICATES_TOTAL)
    return c


def rate_table(title: str, rows: list[tuple[str, float]], prev: list[tuple[str, float]], dt: float) -> Table:
    """Live table of per-stage counters and their rate since the previous sample (``paxsim demo`` and ``paxsim up``)."""
    tab = Table(title=title, expand=False)
    for col in ("stage", "events", "events/s"):
        tab.add_column(col, justify="right" if col != "stage" else "left")
    for (name, now), (_, before) in zip(rows, prev):
        tab.add_row(name, f"{now:,.0f}", f"{(now - before) / dt if dt > 0 else 0:,.0f}")
    return tab


def stage_rows(c: StageCounts) -> list[tuple[str, float]]:
    return [
        ("edge → sightings", c.published),
        ("policy gate in", c.gate_total),
        ("policy gate admitted", c.gate_admitted),
        ("matcher decided", c.matcher_total),
        ("matcher matched (1:N)", c.matched),
        ("matcher verified (e-gate 1:1)", c.verified),
    ]


def progress_table(c: StageCounts, prev: StageCounts, dt: float, elapsed: float) -> Table:
    return rate_table(f"paxsim demo: {elapsed:5.1f} s", stage_rows(c), stage_rows(prev), dt)


def resolve_pseudonyms(matches: list, settings: Settings, keys: KeySource | None) -> list:
    """Matches (or track updates, alerts) with sealed references opened and pseudonyms replaced by subject ids,
    for scoring against ground truth (needs the live keys; references past their purpose's retention name
    nobody, subjects whose key is destroyed stay pseudonymous)."""
    if keys is not None and any(m.sealed for m in matches):
        outputs = OutputKeys(keys, background=False)
        try:
            matches = [m for m, _readable in outputs.open_all(matches)]
        finally:
            outputs.close()
    refs = {m.subject_id for m in matches if m.subject_id and m.subject_id.startswith("ps-")}
    if not refs or keys is None or not gallery_path(settings).exists():
        return matches
    names = SubjectVault(keys).resolve(refs, Gallery.load(gallery_path(settings)).subjects())
    return [msgspec.structs.replace(m, subject_id=names.get(m.subject_id, m.subject_id)) if m.subject_id in names else m for m in matches]


async def summarise(settings: Settings, keys: KeySource | None = None, evaluation: VideoEval | None = None) -> RunSummary:
    """Figures computed from the matches topic itself (one record per decided event); with ``evaluation``,
    accuracy of a video run against the rendered ground truth (sightings linked through the edge's track log)."""
    sighting_records = await read_all(settings, t.SIGHTINGS.name)
    produced = len(sighting_records)
    records = await read_all(settings, t.MATCHES.name)
    matches = [decode(r.value, Match) for r in records]
    ids = [m.event_id for m in matches]
    lat = np.array([m.matched_at - m.captured_at for m in matches]) if matches else np.zeros(0)
    by = {d: sum(1 for m in matches if m.decision == d) for d in ("match", "unknown", "refused", "verified", "rejected")}
    refused_by_rule: dict[str, int] = {}
    for m in matches:
        if m.decision not in ("match", "verified"):
            refused_by_rule[f"post_match:{m.rule}"] = refused_by_rule.get(f"post_match:{m.rule}", 0) + 1
    dead = await read_all(settings, t.DEADLETTER.name)
    updates = {u.event_id: u for u in (decode(r.value, TrackUpdate) for r in await read_all(settings, t.TRACKS.name))}
    moves = [u for u in updates.values() if u.prev_zone and u.prev_zone != u.zone]
    acc = None
    truth = read_truth(ground_truth_path(settings))
    if truth and consent_path(settings).exists():
        consent = ConsentRegistry.load(consent_path(settings))
        acc = score(resolve_pseudonyms(matches, settings, keys), truth, consent.is_allowed).as_dict()
    elif evaluation is not None and consent_path(settings).exists():
        consent = ConsentRegistry.load(consent_path(settings))
        sightings = [decode(r.value, Sighting) for r in sighting_records]
        log = read_track_log(state_dir(settings) / TRACK_LOG)
        acc = await asyncio.to_thread(
            video_accuracy,
            sightings,
            resolve_pseudonyms(matches, settings, keys),
            resolve_pseudonyms(list(updates.values()), settings, keys),
            log,
            evaluation.truth,
            evaluation.replicas,
            consent.is_allowed,
        )
    return RunSummary(
        accuracy=acc,
        produced=produced,
        decided=len(matches),
        duplicate_decisions=len(ids) - len(set(ids)),
        matched=by["match"],
        unknown=by["unknown"],
        refused=by["refused"],
        verified=by["verified"],
        rejected=by["rejected"],
        refused_by_rule=refused_by_rule,
        deadletters=len(dead),
        zone_transitions=len(moves),
        implausible_transitions=sum(not u.plausible for u in moves),
        latency_p50_ms=float(np.percentile(lat, 50) * 1000) if lat.size else None,
        latency_p99_ms=float(np.percentile(lat, 99) * 1000) if lat.size else None,
    )


def summary_table(s: RunSummary) -> Table:
    tab = Table(title="paxsim demo summary")
    tab.add_column("figure")
    tab.add_column("value", justify="right")
    tab.add_row("sightings produced (biometric zones)", f"{s.produced:,}")
    tab.add_row("faces counted only (non-biometric zones)", f"{s.count_only_faces:,.0f}")
    tab.add_row("dropped at the edge (backpressure)", f"{s.edge_dropped:,.0f}")
    tab.add_row("admitted by the policy gate", f"{s.admitted:,.0f}")
    for rule, n in sorted(s.gate_dropped_by_rule.items()):
        tab.add_row(f"  dropped by {rule}", f"{n:,.0f}")
    for rule, m in sorted(s.refused_by_rule.items()):
        tab.add_row(f"  dropped by {rule}", f"{m:,}")
    tab.add_row("matched (consented, within threshold)", f"{s.matched:,}")
    tab.add_row("unknown (embedding discarded)", f"{s.unknown:,}")
    if s.verified or s.rejected:
        tab.add_row("e-gate 1:1 verified / rejected", f"{s.verified:,} / {s.rejected:,}")
    tab.add_row("decisions recorded / duplicates", f"{s.decided:,} / {s.duplicate_decisions}")
    tab.add_row("dead letters", f"{s.deadletters:,}")
    tab.add_row("zone transitions / faster than walking", f"{s.zone_transitions:,} / {s.implausible_transitions:,}")
    acc = s.accuracy
    if acc and acc["rank1"] is not None:
        tab.add_row("rank-1 / FRR / FAR vs ground truth", f"{acc['rank1']:.1%} / {acc['frr']:.1%} / {(acc['far'] or 0):.2%}")
        tab.add_row("identifications of non-consented travellers", f"{acc['leaks']}")
    live = s.live_camera
    if live:
        tab.add_row(
            f"live camera {live['camera']}: frames analysed/s, recall >= 30 / >= 60 px, precision, IDF1",
            f"{live['analysed_per_s']:.1f}/s, {_pct(live['recall_ge_30px'])} / {_pct(live['recall_ge_60px'])}, "
            f"{_pct(live['precision'])}, {_pct(live['idf1_ge_30px'])}",
        )
    p50, p99 = s.latency_p50_ms, s.latency_p99_ms
    if s.audit_scan is not None:
        tab.add_row("audit scan: expired-readable / non-consented / audit gaps", " / ".join(str(v) for v in s.audit_scan.values()))
        tab.add_row("audit scan: unlinkable references (erased subjects)", str(s.audit_unlinkable))
    tab.add_row("end-to-end latency p50 / p99", f"{p50:.1f} / {p99:.1f} ms" if p50 is not None and p99 is not None else "n/a")
    return tab


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def drain_marker(stack: Stack) -> tuple[float, float] | None:
    """(gate handled, matcher handled) when both consumers hold partitions and have no lag, else None.

    The pipeline has drained once the edge has exited and this marker stays the same for two polls."""
    g, m = stack.scrape("policy"), stack.scrape("matcher")
    joined = total(g, broker_metrics.ASSIGNED_PARTITIONS) > 0 and total(m, broker_metrics.ASSIGNED_PARTITIONS) > 0
    lag = total(g, broker_metrics.CONSUMER_LAG_MESSAGES) + total(m, broker_metrics.CONSUMER_LAG_MESSAGES)
    if not joined or lag > 0:
        return None
    return total(g, policy_metrics.GATE_EVENTS_TOTAL), total(m, matcher_metrics.EVENTS_TOTAL) + total(m, matcher_metrics.DUPLICATES_TOTAL)


def live_stores(stack: Stack, settings: Settings) -> list:
    """What the leak scanner reads from the running stages: every live stage's /metrics label values and the
    dashboard's in-memory state (read with an auditor token issued for it and revoked at once)."""
    from dashboard.auth import TokenStore
    from dashboard.services import tokens_path
    from policy.livestores import DashboardStore, MetricsStore

    subjects = open_consent(Path(settings.state_dir), consent_path(settings)).subjects()
    urls = {c.name: c.metrics_url for c in stack.children.values() if c.alive()}
    stores: list = [MetricsStore.fetch(urls, subjects, time.time())]
    dash = stack.children.get("dashboard")
    if dash is not None and dash.alive():
        with TokenStore(tokens_path(settings)).temporary("paxsim-audit-scan", "auditor") as token:
            stores.append(DashboardStore.fetch(f"http://127.0.0.1:{dash.metrics_port}", token))
    return stores


async def watch(stack: Stack, console: Console | None, drain_timeout_s: float = 30.0) -> StageCounts:
    """Until the edge has finished and gate and matcher have drained: sample counters and resources, and show
    live progress when a console is given. Returns the last counts."""
    counts = StageCounts()
    t0 = last_t = time.monotonic()
    marker, stable, edge_done_at = None, 0, None
    live = Live(progress_table(counts, counts, 1, 0), console=console, refresh_per_second=4) if console else None
    with live or contextlib.nullcontext():
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            new = await asyncio.to_thread(scrape_counts, stack, counts)
            await asyncio.to_thread(stack.sample_resources)
            if live:
                live.update(progress_table(new, counts, now - last_t, now - t0))
            counts, last_t = new, now
            edges = {n: c for n, c in stack.children.items() if n.startswith("edge")}  # the edges end on their own
            for name, child in stack.children.items():
                if child.alive():
                    continue
                code = child.proc.returncode  # type: ignore[union-attr]
                if name not in edges or code != 0:
                    raise RuntimeError(f"stage {name} exited (code {code}); see {child.log_path}")
            if any(c.alive() for c in edges.values()):
                continue
            edge_done_at = edge_done_at or now
            current = await asyncio.to_thread(drain_marker, stack)
            stable = stable + 1 if current is not None and current == marker else 0
            marker = current
            if stable >= 2:
                return counts
            if now - edge_done_at > drain_timeout_s:
                if console:
                    console.print(f"[yellow]pipeline did not drain within {drain_timeout_s:.0f}s of the edge finishing[/]")
                return counts


async def run_pipeline(
    settings: Settings,
    duration_s: float,
    console: Console | None,
    cameras: list[dict] | None = None,
    evaluation: VideoEval | None = None,
    live_camera: bool = False,
) -> RunSummary:
    """Broker (embedded unless ``broker.bootstrap``), enrolment, every stage for ``duration_s`` of traffic, drain,
    stop; returns the summary with per-stage counts and resource use. ``cameras`` (edge.camera.CameraConfig
    mappings) replaces the virtual cameras with real video ones; ``evaluation`` scores them against rendered
    ground truth (the edge then logs every tracked face: ``paxsim edge --track-log``). ``live_camera`` (the demo):
    also run ``scenario.live_camera`` through the real edge and score it. Stores live in ``settings.state_dir``,
    which is emptied first: a run starts from an empty broker, so old stores would be stale. Every process
    started is stopped on the way out, whatever happens (Ctrl-C included)."""
    run_dir = Path(settings.state_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    say = console.print if console else (lambda *a, **k: None)
    async with start_infra(settings, say) as infra:
        subjects, grants = infra.enrol(duration_s, evaluation.embeddings if evaluation else None)
        say(f"enrolled {subjects} consenting travellers ({grants} purpose grants) of {settings.scenario.travellers}")
        stack = infra.stack(run_dir)
        t_start = time.monotonic()
        live: str | None = None
        try:
            cameras_file = None
            if cameras is not None:
                cameras_file = run_dir / "cameras.yaml"
                cameras_file.write_text(yaml.safe_dump({"cameras": cameras}, sort_keys=False))
            track_log = run_dir / TRACK_LOG if evaluation is not None and cameras_file is not None else None
            start_pipeline(stack, duration_s, ground_truth_path(settings), cameras=cameras_file, track_log=track_log)
            live = start_live_camera(stack, settings, run_dir, duration_s) if live_camera and cameras is None else None
            if live:
                say(f"live camera [bold]{live}[/]: rendered frames through the real edge (decode, detect, track, embed)")
            counts = await watch(stack, console)
            running = await asyncio.to_thread(live_stores, stack, settings)  # before the stages stop
        finally:
            stack.stop()
        wall_s = time.monotonic() - t_start
        client_settings = infra.client_settings
        key_source = infra.key_source()
        summary = await summarise(client_settings, key_source, evaluation)
        # the embedded broker forgets everything when it stops: scan every topic and store while it still runs
        consent = open_consent(run_dir, consent_path(settings))
        stores = [*state_stores(client_settings, consent), *running]
        report = await run_scan(client_settings, load_policy(policy_file(settings)), key_source, stores=stores, consent=consent)
        a, b, c = report.counts
        summary.audit_scan = {"expired_readable": a, "non_consented": b, "audit_gaps": c}
        summary.audit_unlinkable = report.unlinkable  # references to erased subjects: the success case
        summary.audit_scan_sources = {name: int(n) for name, n in report.records.items() if name.startswith(("live:", "store:"))}
        if live:
            perception = await asyncio.to_thread(live_camera_perception, run_dir / LIVE_LOG, live + LIVE_SUFFIX, live, load_world())
            if perception is not None:
                perception["analysed_per_s"] = perception["frames_analysed"] / duration_s
            summary.live_camera = perception
    summary.admitted = counts.gate_admitted
    summary.gate_dropped_by_rule = counts.gate_denied_by_rule or {}
    summary.edge_dropped = counts.edge_dropped
    summary.frames_dropped = counts.frames_dropped
    summary.frames_processed = counts.frames_processed
    summary.count_only_faces = counts.count_only
    summary.wall_s = wall_s
    summary.processes = {c.name: {"cpu_s": round(c.cpu_s, 3), "rss_max_mb": round(c.rss_max / 2**20, 1)} for c in stack.children.values()}
    (run_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary


async def run_demo(settings: Settings, duration_s: float, console: Console) -> RunSummary:
    """The demo: :func:`run_pipeline` in ``<state_dir>/demo`` with live progress, then the summary table."""
    run_dir = Path(settings.state_dir) / "demo"
    summary = await run_pipeline(settings.model_copy(update={"state_dir": run_dir}), duration_s, console, live_camera=True)
    console.print(summary_table(summary))
    console.print(f"logs, stores and summary.json in {run_dir}/")
    return summary
