"""``paxsim load``: ramp a load step by step through the full stack until it saturates, and report.

Each step is a fresh run of the whole pipeline (:func:`paxsim.demo.run_pipeline`: broker, enrolment, every
stage as a process) at a higher offered rate, so steps do not contaminate each other. A step is *sustained*
when the stages kept up: nothing dropped at the edge, the decided rate within 5 % of the produced rate, and
p99 latency under the limit. The first step that is not sustained is the saturation point.

``--compare A.yaml B.yaml`` runs the same ramp under two configurations (e.g. two policies) and reports both.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from paxsim.config import Settings
from paxsim.demo import run_pipeline

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
    speed: float = 1.0  # replay speed of the videos

    def rates(self) -> list[float]:
        return [self.start_rate * self.factor**i for i in range(self.steps)]

    def camera_counts(self) -> list[int]:
        return [max(1, round(self.cameras * self.factor**i)) for i in range(self.steps)]


def find_videos(folder: Path) -> list[tuple[str, str, Path, float | None]]:
    """(camera id, zone, video path, fps) for every video: the ``paxsim scenario render`` layout
    (``<camera>/video.mp4`` + ``manifest.json`` with zones), else every ``*.mp4`` with its zone read from the
    name (``cam-<zone>-N``)."""
    manifest = folder / "manifest.json"
    cams = {c["id"]: c for c in json.loads(manifest.read_text())["cameras"]} if manifest.exists() else {}
    out = []
    for video in sorted(folder.glob("*/video.mp4")) or sorted(folder.glob("*.mp4")):
        cid = video.parent.name if video.name == "video.mp4" else video.stem
        spec = cams.get(cid, {})
        zone = spec.get("zone") or (cid.split("-")[1] if cid.count("-") >= 2 else "")
        out.append((cid, zone, video, spec.get("fps")))
    if not out:
        raise FileNotFoundError(f"no videos in {folder} (expected <camera>/video.mp4 or *.mp4)")
    return out


def video_cameras(folder: Path, count: int, speed: float) -> list[dict]:
    """``count`` cameras replaying the folder's videos round-robin, looping, paced at ``speed`` × real time.
    Replicas of one video all start at its first frame (staggered starts are not implemented yet)."""
    videos = find_videos(folder)
    out = []
    for k in range(count):
        cid, zone, path, fps = videos[k % len(videos)]
        rep = k // len(videos)
        cam = {"camera_id": cid if rep == 0 else f"{cid}-r{rep}", "zone": zone, "source": str(path.resolve()), "loop": True, "realtime": True}
        if fps:
            cam["fps"] = fps * speed
        out.append(cam)
    return out


@dataclass
class StepResult:
    offered_rate: float
    traffic_s: float
    summary: dict

    @property
    def produced_rate(self) -> float:
        return self.summary["produced"] / self.traffic_s

    @property
    def decided_rate(self) -> float:
        return self.summary["decided"] / self.traffic_s

    @property
    def sustained(self) -> bool:
        s = self.summary
        p99 = s["latency_p99_ms"] or 0.0
        frames = s.get("frames_processed", 0) + s.get("frames_dropped", 0)
        frames_ok = s.get("frames_dropped", 0) <= (1 - KEEP_UP) * frames  # video: the edge kept up with its cameras
        return s["edge_dropped"] == 0 and frames_ok and s["decided"] >= KEEP_UP * s["produced"] and p99 <= P99_LIMIT_MS

    def row(self) -> dict:
        s = self.summary
        return {
            "offered_rate": round(self.offered_rate, 1),
            "produced_rate": round(self.produced_rate, 1),
            "admitted_rate": round(s["admitted"] / self.traffic_s, 1),
            "decided_rate": round(self.decided_rate, 1),
            "matched_rate": round(s["matched"] / self.traffic_s, 1),
            "latency_p50_ms": s["latency_p50_ms"],
            "latency_p99_ms": s["latency_p99_ms"],
            "edge_dropped": s["edge_dropped"],
            "frames_processed_rate": round(s.get("frames_processed", 0) / self.traffic_s, 1),
            "frames_dropped": s.get("frames_dropped", 0),
            "deadletters": s["deadletters"],
            "duplicate_decisions": s["duplicate_decisions"],
            "decisions": {"match": s["matched"], "unknown": s["unknown"], "refused": s["refused"]},
            "dropped_by_rule": {**s["gate_dropped_by_rule"], **s["refused_by_rule"]},
            "accuracy": s.get("accuracy"),
            "processes": s["processes"],
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

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "plan": asdict(self.plan),
            "saturation_offered_rate": self.saturation_rate,
            "max_sustained_decided_rate": self.max_sustained_rate,
            "steps": [s.row() for s in self.steps],
        }


async def run_load(settings: Settings, plan: LoadPlan, label: str, console: Console, stop_at_saturation: bool = True) -> LoadResult:
    """Run the ramp; each step in its own state dir under ``<state_dir>/load/<label>/step-N``."""
    result = LoadResult(label, plan)
    base = Path(settings.state_dir) / "load" / label
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(), console=console) as progress:
        levels = plan.camera_counts() if plan.videos else plan.rates()
        task = progress.add_task(f"{label}: ramp", total=len(levels))
        for i, level in enumerate(levels):
            rate = float(level)
            cameras = None
            if plan.videos:
                cameras = video_cameras(Path(plan.videos), int(level), plan.speed)
                progress.update(task, description=f"{label}: {level} video cameras at {plan.speed:g}×")
                scenario = settings.scenario
            else:
                progress.update(task, description=f"{label}: {rate:,.0f} sightings/s offered")
                scenario = settings.scenario.model_copy(update={"cameras": plan.cameras, "events_per_second": rate})
            step_settings = settings.model_copy(update={"state_dir": base / f"step-{i + 1}", "scenario": scenario})
            t0 = time.monotonic()
            summary = await run_pipeline(step_settings, plan.step_s, None, cameras=cameras)
            step = StepResult(rate, plan.step_s, summary)
            result.steps.append(step)
            progress.advance(task)
            console.print(
                f"  step {i + 1}: {'%d cameras' % level if plan.videos else 'offered %s/s' % format(rate, ',.0f')}, decided {step.decided_rate:,.0f}/s, p99 {summary['latency_p99_ms'] or 0:,.0f} ms, "
                f"edge drops {summary['edge_dropped']:,.0f} → {'sustained' if step.sustained else '[red]saturated[/]'} ({time.monotonic() - t0:.0f} s)"
            )
            if stop_at_saturation and not step.sustained:
                break
    return result


def compare_runs(a: LoadResult, b: LoadResult) -> dict:
    """B relative to A at each step both reached: throughput ratio, added p50/p99, CPU ratio (the cost of a policy)."""
    steps = []
    for sa, sb in zip(a.steps, b.steps):
        ra, rb = sa.row(), sb.row()
        cpu_a = sum(p["cpu_s"] for p in ra["processes"].values())
        cpu_b = sum(p["cpu_s"] for p in rb["processes"].values())
        steps.append({
            "offered_rate": ra["offered_rate"],
            "decided_rate_ratio": (rb["decided_rate"] / ra["decided_rate"]) if ra["decided_rate"] else None,
            "added_p50_ms": (rb["latency_p50_ms"] or 0) - (ra["latency_p50_ms"] or 0),
            "added_p99_ms": (rb["latency_p99_ms"] or 0) - (ra["latency_p99_ms"] or 0),
            "cpu_ratio": cpu_b / cpu_a if cpu_a else None,
            "leaks": [(ra["accuracy"] or {}).get("leaks"), (rb["accuracy"] or {}).get("leaks")],
        })
    return {"baseline": a.label, "candidate": b.label, "steps": steps,
            "max_sustained_ratio": (b.max_sustained_rate / a.max_sustained_rate) if a.max_sustained_rate and b.max_sustained_rate else None}
