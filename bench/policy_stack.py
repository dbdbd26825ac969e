"""Policy overhead on the deployed stack: replayed camera videos through every service, filters on and off.

    .venv/bin/python -m bench.policy_stack                 # 2 rounds per mode, 8 cameras × 60 s each (~7 min)
    .venv/bin/python -m bench.policy_stack --rounds 3 --cameras 8 --seconds 60
    .venv/bin/python -m bench.policy_stack --cameras 4 --speed 0.5   # below saturation: same frames, compare CPU

This is the load of the load tests (``paxsim load --rendered``): the default airport's four face cameras, rendered
once (cached under ``var/rendered``) and replayed as ``--cameras`` staggered cameras through the real edge (dlib
detection, tracking, embedding), the embedded broker, the policy gate, the matcher and the dashboard, each its
own process, as ``paxsim demo`` runs them. ``--cameras 8`` is past the edge's capacity on 2 cores, so the run
is at saturation: the edge drops frames and its embedding queue drops work.

``on``  = the packaged default policy (``policy/default-policy.yaml``);
``off`` = the same file with ``enforcement: off`` (measurement only; this bench gives the acknowledgement).
Rounds alternate (off, on, on, off, …) so drift hits both sides. Reported side by side: frames analysed and
sightings decided per second (medians, and their ratio on/off), CPU seconds per analysed frame of the whole
stack, capture → decision p50/p99, and per round the audit scan (expired-readable / non-consented /
audit gaps) and the identifications of non-consented travellers the ground truth finds (leaks).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from paxsim.config import Settings, load_settings
from paxsim.load import LoadPlan, rendered_population, rendered_videos, run_load
from policy.policyfile import DEFAULT_POLICY_PATH

UNSAFE_ENV = "PAXSIM_UNSAFE_NO_POLICY"


@dataclass
class StackRound:
    mode: str
    frames_per_s: float
    decided_per_s: float
    frames_dropped: float
    cpu_s: float  # all services (the broker is not counted: same code in both modes)
    p50_ms: float | None
    p99_ms: float | None
    audit_scan: tuple[int, int, int]
    leaks: int | None  # identifications of non-consented travellers (ground truth)
    cpu_by_service: dict[str, float]
    seconds: float  # traffic seconds

    @property
    def cpu_per_frame_ms(self) -> float:
        return self.cpu_s / max(1e-9, self.frames_per_s * self.seconds) * 1e3


def policy_files(folder: Path) -> dict[str, Path]:
    """The default policy, and the same policy with enforcement off (everything else byte-identical)."""
    text = DEFAULT_POLICY_PATH.read_text()
    on, off = folder / "stack-on.yaml", folder / "stack-off.yaml"
    on.write_text(text)
    off.write_text(text + "\nenforcement: off\n")
    return {"on": on, "off": off}


async def run_round(settings: Settings, policy: Path, mode: str, label: str, plan: LoadPlan, state: Path,
                    console: Console) -> StackRound:
    """One round in ``state/load/<label>``; the enrolment cache in ``state/load`` is shared by the rounds."""
    s = settings.model_copy(update={"state_dir": state, "policy": settings.policy.model_copy(update={"file": policy})})
    if mode == "off":
        os.environ[UNSAFE_ENV] = "1"  # inherited by the services of this round only
    try:
        result = await run_load(s, plan, label, console, stop_at_saturation=False)
    finally:
        os.environ.pop(UNSAFE_ENV, None)
    row = result.steps[0].row()
    scan = row["audit_scan"] or {}
    cpu = {name: p["cpu_s"] for name, p in row["processes"].items()}
    r = StackRound(mode, row["frames_processed_rate"], row["decided_rate"], row["frames_dropped"], sum(cpu.values()),
                   row["latency_p50_ms"], row["latency_p99_ms"],
                   (scan.get("expired_readable", -1), scan.get("non_consented", -1), scan.get("audit_gaps", -1)),
                   (row["accuracy"] or {}).get("leaks"), cpu, plan.step_s)
    return r


async def measure(args: argparse.Namespace, console: Console) -> dict[str, list[StackRound]]:
    base = load_settings(environ={})
    videos = rendered_videos(base, args.render_seconds, console)
    settings = rendered_population(base, videos)
    plan = LoadPlan(cameras=args.cameras, start_rate=1.0, factor=2.0, steps=1, step_s=args.seconds, videos=str(videos),
                    speed=args.speed, gt=str(videos), stagger="even", seed=settings.scenario.seed)
    rounds: dict[str, list[StackRound]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="bench-policy-stack-") as tmp:
        files = policy_files(Path(tmp))
        for r in range(args.rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                rr = await run_round(settings, files[mode], mode, f"stack-{mode}-{r + 1}", plan, Path(tmp), console)
                rounds[mode].append(rr)
                console.print(f"stack round {r + 1} {mode:>3}: {rr.frames_per_s:5.1f} frames/s  {rr.decided_per_s:5.2f} decided/s  "
                              f"frames dropped {rr.frames_dropped:,.0f}  CPU/frame {rr.cpu_per_frame_ms:.1f} ms  "
                              f"p99 {rr.p99_ms or 0:,.0f} ms  audit scan {rr.audit_scan}  leaks {rr.leaks}")
    return rounds


def report(rounds: dict[str, list[StackRound]], args: argparse.Namespace) -> None:
    def med(mode: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in rounds[mode])

    print()
    print(f"policy on the deployed stack: {args.cameras} replayed cameras at {args.speed:g}× × {args.seconds:g} s, "
          f"{args.rounds} rounds per mode (medians)")
    f_off, f_on = med("off", "frames_per_s"), med("on", "frames_per_s")
    d_off, d_on = med("off", "decided_per_s"), med("on", "decided_per_s")
    c_off, c_on = med("off", "cpu_per_frame_ms"), med("on", "cpu_per_frame_ms")
    print(f"  frames analysed/s       off {f_off:7.1f}   on {f_on:7.1f}   ratio on/off {f_on / f_off:.3f}  (goal ≥ 0.97)")
    print(f"  sightings decided/s     off {d_off:7.2f}   on {d_on:7.2f}   ratio on/off {d_on / d_off if d_off else float('nan'):.3f}")
    print(f"  stack CPU per frame     off {c_off:7.1f} ms   on {c_on:7.1f} ms   CPU-bound ratio {c_off / c_on:.3f}")
    for mode in ("off", "on"):
        p99 = [round(r.p99_ms or 0) for r in rounds[mode]]
        print(f"  {mode:>3}: capture → decision p99 per round {p99} ms; audit scan {[r.audit_scan for r in rounds[mode]]}; "
              f"leaks {[r.leaks for r in rounds[mode]]}; frames dropped {[round(r.frames_dropped) for r in rounds[mode]]}")
    services = sorted({k for rs in rounds.values() for r in rs for k in r.cpu_by_service})
    print("  CPU seconds per round by service (median):  " + "  ".join(
        f"{s} {statistics.median(r.cpu_by_service.get(s, 0) for r in rounds['off']):.1f}→"
        f"{statistics.median(r.cpu_by_service.get(s, 0) for r in rounds['on']):.1f}" for s in services))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cameras", type=int, default=8, help="replayed cameras (8 saturates the edge on 2 cores)")
    ap.add_argument("--seconds", type=float, default=60.0, help="traffic seconds per round")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="replay speed; below saturation (e.g. --cameras 4 --speed 0.5) every frame is analysed in both "
                         "modes, so the stack's CPU per frame compares the same work")
    ap.add_argument("--render-seconds", type=float, default=60.0, help="length of the rendered videos (cached)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    ap.add_argument("--rounds", type=int, default=2, help="rounds per mode (alternating)")
    args = ap.parse_args()
    rounds = asyncio.run(measure(args, Console()))
    report(rounds, args)


if __name__ == "__main__":
    main()
