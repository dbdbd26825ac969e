"""``paxsim load``: ramp a load step by step through the full stack until it saturates, and report.

Each step is a fresh run of the whole pipeline (:func:`paxsim.demo.run_pipeline`: broker, enrolment, every
stage as a process) at a higher offered rate, so steps do not contaminate each other. A step is *sustained*
when the stages kept up: nothing dropped at the edge, the decided rate within 5 % of the produced rate, and
p99 latency under the limit. The first step that is not sustained is the saturation point.

``--compare A.yaml B.yaml`` runs the same ramp under two configurations (e.g. two policies) and reports both.
"""

from __future__ import annotations

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
    cameras: int
    start_rate: float  # sightings/s (all cameras) at the first step
    factor: float  # rate multiplier per step
    steps: int
    step_s: float  # traffic seconds per step

    def rates(self) -> list[float]:
        return [self.start_rate * self.factor**i for i in range(self.steps)]


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
        return s["edge_dropped"] == 0 and s["decided"] >= KEEP_UP * s["produced"] and p99 <= P99_LIMIT_MS

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
        task = progress.add_task(f"{label}: ramp", total=len(plan.rates()))
        for i, rate in enumerate(plan.rates()):
            progress.update(task, description=f"{label}: {rate:,.0f} sightings/s offered")
            step_settings = settings.model_copy(
                update={
                    "state_dir": base / f"step-{i + 1}",
                    "scenario": settings.scenario.model_copy(update={"cameras": plan.cameras, "events_per_second": rate}),
                }
            )
            t0 = time.monotonic()
            summary = await run_pipeline(step_settings, plan.step_s, None)
            step = StepResult(rate, plan.step_s, summary)
            result.steps.append(step)
            progress.advance(task)
            console.print(
                f"  step {i + 1}: offered {rate:,.0f}/s, decided {step.decided_rate:,.0f}/s, p99 {summary['latency_p99_ms'] or 0:,.0f} ms, "
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
