"""``paxsim load``: ramp a load step by step through the full stack until it saturates, and report.

Each step is a fresh run of the whole pipeline (:func:`paxsim.demo.run_pipeline`: broker, enrolment, every
stage as a process) at a higher offered rate, so steps do not contaminate each other. A step is *sustained*
when the stages kept up: nothing dropped at the edge, the decided rate within 5 % of the produced rate, and
p99 latency under the limit. The first step that is not sustained is the saturation point.

``--compare A.yaml B.yaml`` runs the same ramp under two configurations (e.g. two policies) and reports both.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from core.config import Settings
from paxsim.summary import RunSummary

if TYPE_CHECKING:
    from paxsim.accuracy import Replica
# the run's heavy modules (paxsim.demo, paxsim.accuracy, cv2, numpy) are imported where they run, so that
# `paxsim --help` and every other command start without them

P99_LIMIT_MS = 1000.0
KEEP_UP = 0.95


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Virtual mode ramps the sighting rate; video mode (``videos`` set) ramps the number of replayed cameras,
    starting at ``cameras`` and multiplying by ``factor`` (``start_rate`` is then unused)."""

    cameras: int
    start_rate: float  # sightings/s (all cameras) at the first step
    factor: float  # rate (or camera count) multiplier per step
    steps: int
    step_s: float  # traffic seconds per step
    videos: str | None = None  # folder of rendered or recorded videos (scenario render layout or *.mp4)
    speed: float = 1.0  # replay speed of the videos; 0: unpaced (every frame in order, as fast as the edge takes them)
    gt: str | None = None  # ground truth (a `paxsim scenario render` folder) to score the videos against
    stagger: str = "even"  # replica start offsets: even, random, none
    seed: int = 0  # for stagger="random"

    def rates(self) -> list[float]:
        return [self.start_rate * self.factor**i for i in range(self.steps)]

    def camera_counts(self) -> list[int]:
        return [max(1, round(self.cameras * self.factor**i)) for i in range(self.steps)]


class Video(NamedTuple):
    camera_id: str
    zone: str
    path: Path
    fps: float | None
    min_face_px: int | None  # the smallest face the camera was installed to find (its detector's scan scale)


def find_videos(folder: Path) -> list[Video]:
    """Every video: the ``paxsim scenario render`` layout (``<camera>/video.mp4`` + ``manifest.json`` with each
    camera's zone, fps and ``min_face_px``), else every ``*.mp4`` with its zone read from the name
    (``cam-<zone>-N``)."""
    manifest = folder / "manifest.json"
    cams = {c["id"]: c for c in json.loads(manifest.read_text())["cameras"]} if manifest.exists() else {}
    out = []
    for video in sorted(folder.glob("*/video.mp4")) or sorted(folder.glob("*.mp4")):
        cid = video.parent.name if video.name == "video.mp4" else video.stem
        spec = cams.get(cid, {})
        zone = spec.get("zone") or (cid.split("-")[1] if cid.count("-") >= 2 else "")
        out.append(Video(cid, zone, video, spec.get("fps"), spec.get("min_face_px")))
    if not out:
        raise FileNotFoundError(f"no videos in {folder} (expected <camera>/video.mp4 or *.mp4)")
    return out


STAGGERS = ("even", "random", "none")


def video_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()


def video_cameras(
    folder: Path, count: int, speed: float, stagger: str = "even", seed: int = 0, biometric: set[str] | None = None
) -> tuple[list[dict], dict[str, Replica]]:
    """``count`` cameras replaying the folder's videos round-robin, looping, paced at ``speed`` × real time, and
    which video (and start offset) each one replays. ``speed=0`` replays unpaced: each camera hands the edge
    every frame in order as fast as it takes them (files block instead of dropping), so a run analyses a fixed
    sequence of frames and its rate is the edge's capacity, free of which frames an overloaded edge happened
    to drop.

    Replica k of the N replicas of one video starts ``k/N`` of the way into it (``stagger="even"``), at a frame
    drawn from ``seed`` (``"random"``) or at frame 0 (``"none"``: all replicas in lockstep). Every replica replays
    the file itself; the edge seeks to its ``start_frame`` on the first pass (``CameraConfig.start_frame``).

    With ``biometric`` (the policy's biometric zones) only videos of those zones are replayed: a camera in a
    count-only zone produces no sighting, and a load test of it would measure nothing."""
    if stagger not in STAGGERS:
        raise ValueError(f"stagger must be one of {STAGGERS}, got {stagger!r}")
    videos = find_videos(folder)
    if biometric is not None:
        faces = [v for v in videos if v.zone in biometric]
        if not faces:
            zones = sorted({v.zone for v in videos})
            raise ValueError(f"no video in {folder} is from a biometric zone (videos: {zones}; biometric: {sorted(biometric)})")
        videos = faces
    import numpy as np

    from paxsim.accuracy import Replica

    rng = np.random.default_rng(seed)
    out: list[dict] = []
    replicas: dict[str, Replica] = {}
    for k in range(count):
        vi = k % len(videos)
        cid, zone, path, fps, min_face_px = videos[vi]
        rep = k // len(videos)
        n = len(range(vi, count, len(videos)))  # replicas of this video
        camera_id = cid if rep == 0 else f"{cid}-r{rep}"
        offset = 0
        if rep and stagger != "none":
            length = video_frames(path)
            offset = int(rng.integers(1, max(2, length))) if stagger == "random" else (rep * length) // n
        cam = {
            "camera_id": camera_id,
            "zone": zone,
            "source": str(Path(path).resolve()),
            "loop": True,
            "realtime": speed > 0,
            "start_frame": offset,
        }
        if fps and speed > 0:
            cam["fps"] = fps * speed
        if min_face_px:
            cam["detector"] = {"min_face_px": min_face_px}
        out.append(cam)
        replicas[camera_id] = Replica(camera_id, cid, offset)
    return out, replicas


@dataclass
class StepResult:
    offered_rate: float
    traffic_s: float
    summary: RunSummary

    @property
    def produced_rate(self) -> float:
        return self.summary.produced / self.traffic_s

    @property
    def decided_rate(self) -> float:
        return self.summary.decided / self.traffic_s

    @property
    def sustained(self) -> bool:
        s = self.summary
        p99 = s.latency_p99_ms or 0.0
        frames = s.frames_processed + s.frames_dropped
        frames_ok = s.frames_dropped <= (1 - KEEP_UP) * frames  # video: the edge kept up with its cameras
        return s.edge_dropped == 0 and frames_ok and s.decided >= KEEP_UP * s.produced and p99 <= P99_LIMIT_MS

    def row(self) -> dict:
        s = self.summary
        return {
            "offered_rate": round(self.offered_rate, 1),
            "produced_rate": round(self.produced_rate, 1),
            "admitted_rate": round(s.admitted / self.traffic_s, 1),
            "decided_rate": round(self.decided_rate, 1),
            "matched_rate": round(s.matched / self.traffic_s, 1),
            "latency_p50_ms": s.latency_p50_ms,
            "latency_p99_ms": s.latency_p99_ms,
            "edge_dropped": s.edge_dropped,
            "frames_processed_rate": round(s.frames_processed / self.traffic_s, 1),
            "frames_dropped": s.frames_dropped,
            "deadletters": s.deadletters,
            "duplicate_decisions": s.duplicate_decisions,
            "decisions": {"match": s.matched, "unknown": s.unknown, "refused": s.refused, "verified": s.verified, "rejected": s.rejected},
            "dropped_by_rule": {**s.gate_dropped_by_rule, **s.refused_by_rule},
            "accuracy": s.accuracy,
            "audit_scan": s.audit_scan,  # compliance: expired-readable / non-consented / audit gaps
            "processes": s.processes,
            "sustained": self.sustained,
        }


@dataclass
class LoadResult:
    label: str
    plan: LoadPlan
    steps: list[StepResult] = field(default_factory=list)

    @property
    def saturation_rate(self) -> float | None:
        """Offered rate of the first step that was not sustained (None: never saturated)."""
        for s in self.steps:
            if not s.sustained:
                return s.offered_rate
        return None

    @property
    def max_sustained_rate(self) -> float | None:
        ok = [s.decided_rate for s in self.steps if s.sustained]
        return max(ok) if ok else None

    def headline(self) -> str:
        """One line: what the stack sustained and where it saturated (video mode counts cameras and frames)."""
        ok = [s for s in self.steps if s.sustained]
        sat = self.saturation_rate
        if self.plan.videos:
            best = max(ok, key=lambda s: s.offered_rate) if ok else None
            kept = (
                (
                    f"{best.offered_rate:,.0f} video cameras ({best.row()['frames_processed_rate']:,.1f} frames/s analysed, "
                    f"{best.decided_rate:,.1f} decided/s)"
                )
                if best
                else "none"
            )
            return f"max sustained: {kept}; " + (f"saturation at {sat:,.0f} cameras" if sat else "not saturated")
        return f"max sustained {self.max_sustained_rate or 0:,.1f} decided/s; " + (
            f"saturation at {sat:,.0f} offered/s" if sat else "not saturated"
        )

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "headline": self.headline(),
            "plan": asdict(self.plan),
            "saturation_offered_rate": self.saturation_rate,
            "max_sustained_decided_rate": self.max_sustained_rate,
            "steps": [s.row() for s in self.steps],
        }


async def run_load(settings: Settings, plan: LoadPlan, label: str, console: Console, stop_at_saturation: bool = True) -> LoadResult:
    """Run the ramp; each step in its own state dir under ``<state_dir>/load/<label>/step-N``."""
    from paxsim.accuracy import RenderTruth, video_enrolment
    from paxsim.demo import VideoEval, run_pipeline
    from paxsim.infra import policy_file
    from policy.policyfile import load_policy

    result = LoadResult(label, plan)
    base = Path(settings.state_dir) / "load" / label
    policy = load_policy(policy_file(settings))
    biometric = {z for z, rule in policy.zones.items() if rule.biometric}
    truth = RenderTruth.load(Path(plan.gt)) if plan.gt else None
    embeddings = None
    if truth is not None:
        console.print("enrolling the travellers the videos show from portraits at 6 poses, one gallery view each (real embedder; cached)")
        embeddings = video_enrolment(
            truth,
            settings.scenario.travellers,
            settings.scenario.file,
            Path(settings.state_dir) / "load" / f"enrol-seed{truth.seed}-{settings.scenario.travellers}.npz",
            views=True,
        )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        levels = plan.camera_counts() if plan.videos else plan.rates()
        task = progress.add_task(f"{label}: ramp", total=len(levels))
        for i, level in enumerate(levels):
            rate = float(level)
            cameras = None
            evaluation = None
            if plan.videos:
                cameras, replicas = video_cameras(Path(plan.videos), int(level), plan.speed, plan.stagger, plan.seed, biometric)
                if truth is not None:
                    evaluation = VideoEval(truth, replicas, embeddings)
                progress.update(task, description=f"{label}: {level} video cameras at {plan.speed:g}×")
                scenario = settings.scenario
            else:
                progress.update(task, description=f"{label}: {rate:,.0f} sightings/s offered")
                scenario = settings.scenario.model_copy(update={"cameras": plan.cameras, "events_per_second": rate})
            step_settings = settings.model_copy(update={"state_dir": base / f"step-{i + 1}", "scenario": scenario})
            t0 = time.monotonic()
            summary = await run_pipeline(step_settings, plan.step_s, None, cameras=cameras, evaluation=evaluation)
            step = StepResult(rate, plan.step_s, summary)
            result.steps.append(step)
            progress.advance(task)
            console.print(
                f"  step {i + 1}: {f'{level} cameras' if plan.videos else f'offered {rate:,.0f}/s'}, decided {step.decided_rate:,.1f}/s, p99 {summary.latency_p99_ms or 0:,.0f} ms, "
                f"edge drops {summary.edge_dropped:,.0f} → {'sustained' if step.sustained else '[red]saturated[/]'} ({time.monotonic() - t0:.0f} s)"
            )
            if stop_at_saturation and not step.sustained:
                break
    return result


# figure, what B - A > 0 means, what B - A < 0 means
COMPARED = (
    ("identified/s (matched)", "B identifies more people", "B identifies fewer people"),
    ("decided/s", "B decides more events", "B decides fewer events"),
    ("refused at the gate or after matching, /s", "B's policy refuses more", "B's policy refuses less"),
    ("p99 capture → decision, ms", "B is slower", "B is faster"),
    ("CPU seconds, all stages", "B costs more CPU", "B costs less CPU"),
    ("identifications of non-consented people", "B LEAKS MORE", "B leaks less"),
    ("audit scan findings (expired / non-consented / gaps)", "B has more findings", "B has fewer findings"),
)


def _figures(row: dict, traffic_s: float) -> list[float | None]:
    acc, scan = row["accuracy"] or {}, row["audit_scan"] or {}
    refused = sum(row["dropped_by_rule"].values()) / traffic_s if traffic_s else 0.0
    return [
        row["matched_rate"],
        row["decided_rate"],
        round(refused, 2),
        row["latency_p99_ms"],
        round(sum(p["cpu_s"] for p in row["processes"].values()), 1),
        acc.get("leaks"),
        sum(scan.values()) if scan else None,
    ]


def policy_diff(a: Path | None, b: Path | None) -> list[str]:
    """Unified diff of the two policy files (the packaged default for None)."""
    import difflib

    from policy.policyfile import DEFAULT_POLICY_PATH

    pa, pb = a or DEFAULT_POLICY_PATH, b or DEFAULT_POLICY_PATH
    return list(difflib.unified_diff(pa.read_text().splitlines(), pb.read_text().splitlines(), pa.name, pb.name, lineterm=""))


def _retention_rows(policy_a: Path | None, policy_b: Path | None) -> list[dict]:
    """What each policy keeps and for how long (s): the settings behind the data-age figures."""
    from policy.policyfile import DEFAULT_POLICY_PATH, load_policy

    pa, pb = load_policy(policy_a or DEFAULT_POLICY_PATH), load_policy(policy_b or DEFAULT_POLICY_PATH)
    rows: list[tuple[str, float | None, float | None]] = [
        ("sealed sightings readable for, s", pa.retention.sightings_s, pb.retention.sightings_s)
    ]
    for purpose in sorted(set(pa.purposes) | set(pb.purposes)):
        ra, rb = pa.purposes.get(purpose), pb.purposes.get(purpose)
        rows.append((f"matches and tracks kept for '{purpose}', s", ra.retention_s if ra else None, rb.retention_s if rb else None))
    out = []
    for name, va, vb in rows:
        delta = None if va is None or vb is None else round(vb - va, 2)
        meaning = (
            "purpose only in one policy"
            if delta is None
            else "no change"
            if delta == 0
            else "B keeps data longer"
            if delta > 0
            else "B keeps data shorter"
        )
        out.append({"figure": name, "a": va, "b": vb, "b_minus_a": delta, "meaning": meaning})
    return out


def _refusal_rows(ra: dict, rb: dict, traffic_a: float, traffic_b: float) -> list[dict]:
    """Refusals per rule and second, A beside B (gate rules and post-match rules)."""
    out = []
    for rule in sorted(set(ra["dropped_by_rule"]) | set(rb["dropped_by_rule"])):
        va = round(ra["dropped_by_rule"].get(rule, 0) / traffic_a, 2) if traffic_a else 0.0
        vb = round(rb["dropped_by_rule"].get(rule, 0) / traffic_b, 2) if traffic_b else 0.0
        delta = round(vb - va, 2)
        meaning = "no change" if delta == 0 else f"B refuses more under {rule}" if delta > 0 else f"B refuses less under {rule}"
        out.append({"figure": f"refused by {rule}, /s", "a": va, "b": vb, "b_minus_a": delta, "meaning": meaning})
    return out


def compare_runs(a: LoadResult, b: LoadResult, policy_a: Path | None = None, policy_b: Path | None = None) -> dict:
    """B relative to A at each step both reached: throughput ratio, added p50/p99, CPU ratio (the cost of a policy),
    and for a person to read: the policy diff, what each policy keeps for how long, and per step each figure
    (refusals rule by rule included) side by side with what its change means."""
    steps = []
    side_by_side = []
    for sa, sb in zip(a.steps, b.steps):
        ra, rb = sa.row(), sb.row()
        fa, fb = _figures(ra, sa.traffic_s), _figures(rb, sb.traffic_s)
        rows = []
        for (name, higher, lower), va, vb in zip(COMPARED, fa, fb):
            delta = None if va is None or vb is None else round(vb - va, 2)
            meaning = "not measured in both" if delta is None else "no change" if delta == 0 else higher if delta > 0 else lower
            rows.append({"figure": name, "a": va, "b": vb, "b_minus_a": delta, "meaning": meaning})
        rows += _refusal_rows(ra, rb, sa.traffic_s, sb.traffic_s)
        side_by_side.append({"offered": round(sa.offered_rate, 1), "rows": rows})
    for sa, sb in zip(a.steps, b.steps):
        ra, rb = sa.row(), sb.row()
        cpu_a = sum(p["cpu_s"] for p in ra["processes"].values())
        cpu_b = sum(p["cpu_s"] for p in rb["processes"].values())
        steps.append(
            {
                "offered_rate": ra["offered_rate"],
                "decided_rate_ratio": (rb["decided_rate"] / ra["decided_rate"]) if ra["decided_rate"] else None,
                "added_p50_ms": (rb["latency_p50_ms"] or 0) - (ra["latency_p50_ms"] or 0),
                "added_p99_ms": (rb["latency_p99_ms"] or 0) - (ra["latency_p99_ms"] or 0),
                "cpu_ratio": cpu_b / cpu_a if cpu_a else None,
                "leaks": [(ra["accuracy"] or {}).get("leaks"), (rb["accuracy"] or {}).get("leaks")],
            }
        )
    return {
        "baseline": a.label,
        "candidate": b.label,
        "policy_diff": policy_diff(policy_a, policy_b),
        "retention": _retention_rows(policy_a, policy_b),
        "side_by_side": side_by_side,
        "steps": steps,
        "max_sustained_ratio": (b.max_sustained_rate / a.max_sustained_rate) if a.max_sustained_rate and b.max_sustained_rate else None,
    }


# ------------------------------------------------------------------------------------------- command

RENDER_CAMERAS = ("cam-security-1", "cam-immigration-1", "cam-egate-1", "cam-gate-1")  # the face cameras (both shipped scenarios)


def rendered_population(settings: Settings, render: Path) -> Settings:
    """``settings`` with the scenario seed and population size a ``paxsim scenario render`` folder was made from
    (its manifest), so that the run enrols the travellers the videos show."""
    m = json.loads((render / "manifest.json").read_text())
    scen = settings.scenario.model_copy(update={"seed": int(m["seed"]), "travellers": len(m["identities"])})
    return settings.model_copy(update={"scenario": scen})


def rendered_videos(settings: Settings, seconds: float, console: Console) -> Path:
    """The scenario's face cameras (``settings.scenario``: its file and seed, the world the run enrols from)
    rendered for ``seconds`` into a cache dir (reused when present; named by the scenario file's content, so an
    edited scenario is rendered again)."""
    import hashlib

    scen = settings.scenario
    name = scen.file.stem if scen.file else "default"
    digest = hashlib.sha256(Path(scen.file).read_bytes()).hexdigest()[:8] if scen.file else "builtin"
    out = Path(settings.state_dir).resolve() / "rendered" / f"{name}-{digest}-seed{scen.seed}-{seconds:g}s"
    if (out / "manifest.json").exists():
        console.print(f"rendered videos: {out} (cached)")
        return out
    console.print(f"rendering the face cameras of {scen.file or 'the built-in airport'} ({seconds:g} s) into {out}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "paxsim.cli",
        "scenario",
        "render",
        "--out",
        str(tmp),
        "--seconds",
        f"{seconds:g}",
        "--seed",
        str(scen.seed),
    ]
    if scen.file:
        cmd += ["--scenario", str(scen.file)]
    for cam in RENDER_CAMERAS:
        cmd += ["--camera", cam]
    subprocess.run(cmd, check=True)
    tmp.replace(out)
    return out


ConfigOpt = typer.Option(None, "--config", "-c", envvar="PAXSIM_CONFIG", help="YAML configuration file")


def load_command(
    virtual: int = typer.Option(8, "--virtual", min=1, help="virtual cameras (embedding space)"),
    videos: Path | None = typer.Option(None, "--videos", help="replay these videos (paxsim scenario render output or *.mp4) instead"),
    rendered: bool = typer.Option(
        False, "--rendered", help="render the scenario's face cameras into a cache dir and replay them (with their ground truth)"
    ),
    render_seconds: float = typer.Option(60.0, "--render-seconds", min=2, help="with --rendered: length of the rendered videos"),
    gt: Path | None = typer.Option(
        None, "--gt", help="score against this `paxsim scenario render` folder (default: --videos itself when it is one)"
    ),
    video_cameras_n: int = typer.Option(
        1, "--cameras", min=1, help="with --videos: cameras at the first step (videos replicated, looping)"
    ),
    stagger: str = typer.Option(
        "even", "--stagger", help="with --videos: replica start offsets: even (k/N of the video), random (seeded), none"
    ),
    speed: float = typer.Option(1.0, "--speed", min=0.05, max=20, help="with --videos: replay speed"),
    rate: float = typer.Option(100.0, "--rate", min=1, help="offered sightings/s at the first step (virtual)"),
    factor: float = typer.Option(2.0, "--factor", min=1.05, help="rate (or camera count) multiplier per step"),
    steps: int | None = typer.Option(None, "--steps", min=1, max=20, help="ramp steps at most (default 5 virtual, 4 videos)"),
    duration: float = typer.Option(300.0, "--duration", min=5, help="total seconds of traffic over all steps"),
    report: Path = typer.Option(Path("load-report.html"), "--report", help="HTML report (JSON beside it)"),
    policy_file: Path | None = typer.Option(None, "--policy", help="policy file for the run (default: config)"),
    compare: tuple[Path, Path] | None = typer.Option(
        None, "--compare", help="A.yaml B.yaml: the same ramp under two policy files, and the difference"
    ),
    full_ramp: bool | None = typer.Option(
        None, "--full-ramp/--stop-at-saturation", help="run every step even after saturation (default: yes with videos, no virtual)"
    ),
    redteam: bool = typer.Option(
        True, "--redteam/--no-redteam", help="also run `paxsim redteam` (~30 s) and put its table in the report (privacy attack surface)"
    ),
    config: str | None = ConfigOpt,
) -> None:
    """Ramp load through the full stack step by step until saturation; write an HTML + JSON report."""
    from core.config import ConfigError, load_settings
    from paxsim.report import write_report
    from policy.policyfile import PolicyError, load_policy

    console = Console()
    try:
        base = load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if stagger not in STAGGERS:
        console.print(f"[red]--stagger must be one of {', '.join(STAGGERS)}[/]")
        raise typer.Exit(2)
    files = list(compare) if compare else [policy_file]
    runs: list[tuple[str, Settings]] = []
    for f in files:
        if f is not None:
            try:
                load_policy(f)  # validate up front, with line numbers
            except PolicyError as exc:
                console.print(f"[red]{exc}[/]")
                raise typer.Exit(2) from None
        label = f.stem if f is not None else "load"
        runs.append(
            (label, base.model_copy(update={"policy": base.policy.model_copy(update={"file": f.resolve() if f else base.policy.file})}))
        )
    if rendered and videos is None:
        videos = rendered_videos(base, render_seconds, console)
    if videos is not None:
        if gt is None and (videos / "manifest.json").exists() and any(videos.glob("*/gt/gt.txt")):
            gt = videos
        if ((gt or videos) / "manifest.json").exists():  # enrol the population the videos were rendered from
            runs = [(label, rendered_population(s, gt or videos)) for label, s in runs]
        n = steps or 4
        plan = LoadPlan(
            cameras=video_cameras_n,
            start_rate=rate,
            factor=factor,
            steps=n,
            step_s=duration / n,
            videos=str(videos),
            speed=speed,
            gt=str(gt) if gt else None,
            stagger=stagger,
            seed=base.scenario.seed,
        )
    else:
        n = steps or 5
        plan = LoadPlan(cameras=virtual, start_rate=rate, factor=factor, steps=n, step_s=duration / n)
    if full_ramp is None:
        full_ramp = videos is not None  # a few bounded steps: show the curve past the knee, spend the whole duration
    if videos is not None:  # before any broker starts: a folder with no face camera is a clear error, not 0 sightings
        biometric = {z for z, rule in load_policy(runs[0][1].policy.file).zones.items() if rule.biometric}
        try:
            video_cameras(Path(videos), 1, 1.0, biometric=biometric)
        except (ValueError, FileNotFoundError) as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    results = [asyncio.run(run_load(s, plan, label, console, stop_at_saturation=not full_ramp and not compare)) for label, s in runs]
    extra = {"comparison": compare_runs(results[0], results[1], *files)} if len(results) == 2 else None
    attacks = None
    if redteam:
        from paxsim.redteam import run_redteam

        console.print("privacy attack surface: paxsim redteam")
        rt = run_redteam(runs[0][1].model_copy(update={"state_dir": Path(base.state_dir) / "load" / "redteam"}), console)
        attacks = [{"attack": r.attack, "defence": r.defence, "observed": r.observed, "passed": r.passed} for r in rt]
    json_path = write_report(results, report, extra, attacks)
    for r in results:
        console.print(f"[bold]{r.label}[/]: {r.headline()}")
    if attacks is not None:
        failed = sum(not a["passed"] for a in attacks)
        console.print(f"redteam: {len(attacks) - failed} passed, {failed} failed")
    console.print(f"report: {report} (figures: {json_path})")


cli = typer.Typer(add_completion=False, no_args_is_help=True, help="paxsim load (also mounted in paxsim.cli)")
cli.command("load")(load_command)

if __name__ == "__main__":
    cli()
