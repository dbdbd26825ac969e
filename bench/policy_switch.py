"""Policy overhead on one running stack: enforcement switched off and on by hot reload, in alternating windows.

    .venv/bin/python -m bench.policy_switch                       # 40 s warm-up, 16 windows of 12 s (~6 min)
    .venv/bin/python -m bench.policy_switch --windows 24 --window-s 10 --keep /tmp/switch

The load is ``bench.policy_stack``'s throughput load: the default airport's four face cameras, rendered once and
replayed unpaced as ``--cameras`` cameras through the real edge, the embedded broker, the policy gate, the
matcher and the dashboard, each its own process. Here the stack is started **once**, under the packaged policy,
and the bench rewrites the policy file every window: ``on`` = the packaged policy, ``off`` = the same file with
``enforcement: off`` (measurement only; the run carries the acknowledgement). Every service hot-reloads it
(within ~1 s), which is how an operator would change it.

Why one stack and short windows: a shared host's CPUs can slow down for seconds at a time whatever the guest
does (measured in docs/privacy.md), and separate stack rounds (``bench.policy_stack``) are minutes apart, so a
round caught in such an episode moves a mode's median by more than the policy costs. Windows of ~12 s alternate on, off, off, on, … (each
mode first in half the pairs), with the same warm processes, caches and broker, so an episode hits both modes
alike and the adjacent pair ratios cancel slow drift.

Each window:
1. writes the mode's policy file (atomic rename);
2. waits until every stage reports the new version in ``paxsim_policy_loaded_info`` (a window whose switch
   took longer than ``--settle-s`` is reported and left out), then ``--settle-s`` more for work in flight;
3. counts, over ``--window-s``: frames the edge analysed (``paxsim_edge_frames_processed_total``), policy
   decisions counted by every stage (``paxsim_policy_decisions_total``: > 0 with enforcement on, 0 with it
   off, which proves the switch took effect), and the CPU seconds of every process (the edge with its vision
   workers, policy, matcher, dashboard, broker, key holder).

Leaks at saturation are not measured here (the windows mix modes in one broker log): ``bench.policy_stack``'s
saturated rounds do that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from rich.console import Console

from bench.policy_stack import UNSAFE_ENV, HelperCPU, camera_load, camera_plan, policy_texts, run_dir, schedule
from core.obs import parse_samples, total
from core.stack import TARGETS_FILE_NAME
from dashboard.scrape import read_file_sd
from paxsim.load import run_load
from policy.policyfile import parse_policy

STAGES = ("edge", "policy", "matcher", "dashboard")


@dataclass
class Window:
    mode: str
    seconds: float
    frames: int  # frames the edge analysed in the window
    decisions: int  # policy decisions counted by all stages (0 with enforcement off)
    switch_s: float  # file written → every stage reported the new version
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds in the window by role

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    @property
    def edge_cpu_per_frame_ms(self) -> float:
        return self.cpu_s.get("edge", 0.0) / max(1, self.frames) * 1e3


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def roles(targets: dict[str, str]) -> dict[int, str]:
    """pid → role for every process under this one: a stage (matched by the port of its metrics URL, with all
    its descendants, e.g. the edge's vision workers), the broker or the key holder (:attr:`HelperCPU.NAMES`)."""
    by_port = {str(urlsplit(url).port): name for name, url in targets.items()}
    out: dict[int, str] = {}
    procs = psutil.Process().children(recursive=True)
    for p in procs:
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        for flag in ("--metrics-port", "--port"):
            if flag in cmd and cmd.index(flag) + 1 < len(cmd) and cmd[cmd.index(flag) + 1] in by_port:
                out[p.pid] = by_port[cmd[cmd.index(flag) + 1]]
        joined = " ".join(cmd)
        for key, role in HelperCPU.NAMES.items():
            if key in joined and p.pid not in out:
                out[p.pid] = role
    for p in procs:  # descendants take their ancestor's role
        if p.pid in out:
            continue
        with contextlib.suppress(psutil.Error):
            role = next((out[a.pid] for a in p.parents() if a.pid in out), None)
            if role:
                out[p.pid] = role
    return out


def cpu_by_role(pids: dict[int, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid, role in pids.items():
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[role] = out.get(role, 0.0) + t.user + t.system
    return out


class Switcher:
    """Drives the windows against a stack that ``run_load`` starts in ``run_dir``."""

    def __init__(
        self, run_dir: Path, live: Path, modes: list[str], warmup_s: float, window_s: float, settle_s: float, console: Console
    ) -> None:
        self.run_dir, self.live, self.modes = run_dir, live, modes
        self.warmup_s, self.window_s, self.settle_s, self.console = warmup_s, window_s, settle_s, console
        self.texts = policy_texts()
        self.versions = {m: parse_policy(t, "switch", unsafe_no_policy=True).version for m, t in self.texts.items()}
        self.windows: list[Window] = []
        self.skipped: list[tuple[str, float]] = []  # (mode, switch seconds) of windows whose switch was too slow

    @property
    def duration_s(self) -> float:
        """Traffic seconds the run needs: warm-up, then per window the switch, the settle and the count."""
        return self.warmup_s + len(self.modes) * (2 * self.settle_s + self.window_s) + 10.0

    async def _targets(self, timeout_s: float = 180.0) -> dict[str, str]:
        """{stage: metrics URL} from the stack's Prometheus file_sd, once every stage is in it."""
        path = self.run_dir / TARGETS_FILE_NAME
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                found = read_file_sd(path)
                if all(s in found for s in STAGES):
                    return found
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the stack's stages did not all appear in {path} within {timeout_s:.0f} s")

    async def _scrape(self, client: httpx.AsyncClient, url: str) -> dict:
        r = await client.get(url)
        r.raise_for_status()
        return parse_samples(r.text)

    async def _loaded(self, client: httpx.AsyncClient, targets: dict[str, str], version: str) -> bool:
        """True when every stage that exports a policy version has the given one in force."""
        for url in targets.values():
            s = await self._scrape(client, url)
            versions = {dict(lbl).get("version") for (n, lbl), v in s.items() if n == "paxsim_policy_loaded_info" and v == 1}
            if versions and versions != {version}:
                return False
        return True

    async def _counts(
        self, client: httpx.AsyncClient, targets: dict[str, str], pids: dict[int, str]
    ) -> tuple[float, float, float, dict[str, float]]:
        """(time, frames the edge analysed, policy decisions of every stage, CPU seconds by role): one scrape each."""
        t = time.monotonic()
        cpu = cpu_by_role(pids)
        frames = decisions = 0.0
        for name, url in targets.items():
            samples = await self._scrape(client, url)
            decisions += total(samples, "paxsim_policy_decisions_total")
            if name == "edge":
                frames = total(samples, "paxsim_edge_frames_processed_total")
        return t, frames, decisions, cpu

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            targets = await self._targets()
            while True:  # the edge is up and analysing (its metrics port opens a moment after it starts)
                with contextlib.suppress(httpx.HTTPError):
                    if total(await self._scrape(client, targets["edge"]), "paxsim_edge_frames_processed_total") >= 1:
                        break
                await asyncio.sleep(0.5)
            pids = await asyncio.to_thread(roles, targets)
            self.console.print(f"switcher: stack up ({', '.join(sorted(set(pids.values())))}); warm-up {self.warmup_s:g} s")
            await asyncio.sleep(self.warmup_s)
            for i, mode in enumerate(self.modes):
                t_switch = time.monotonic()
                write_atomic(self.live, self.texts[mode])
                while not await self._loaded(client, targets, self.versions[mode]):
                    await asyncio.sleep(0.2)
                switch_s = time.monotonic() - t_switch
                await asyncio.sleep(self.settle_s)
                if switch_s > self.settle_s:
                    self.skipped.append((mode, switch_s))
                    self.console.print(f"  window {i + 1:2d} {mode:>3}: switch took {switch_s:.1f} s (> {self.settle_s:g} s): left out")
                    await asyncio.sleep(self.window_s)
                    continue
                t0, f0, d0, c0 = await self._counts(client, targets, pids)
                await asyncio.sleep(self.window_s)
                t1, f1, d1, c1 = await self._counts(client, targets, pids)
                w = Window(mode, t1 - t0, int(f1 - f0), int(d1 - d0), switch_s, {r: c1.get(r, 0.0) - c0.get(r, 0.0) for r in c1})
                self.windows.append(w)
                self.console.print(
                    f"  window {i + 1:2d} {mode:>3}: {w.frames_per_s:5.1f} frames/s  edge CPU/frame {w.edge_cpu_per_frame_ms:4.1f} ms  "
                    f"decisions {w.decisions:6d}  switch {switch_s:.1f} s  CPU s: "
                    + " ".join(f"{r} {v:.2f}" for r, v in sorted(w.cpu_s.items()))
                )
            write_atomic(self.live, self.texts["on"])  # the run ends under the enforcing policy


def pair_ratios(windows: list[Window]) -> list[float]:
    """on/off of adjacent windows of different modes (the schedule's pairs; a pair with a left-out window is skipped)."""
    out, i = [], 0
    while i + 1 < len(windows):
        a, b = windows[i], windows[i + 1]
        if a.mode != b.mode:
            on, off = (a, b) if a.mode == "on" else (b, a)
            out.append(on.frames_per_s / off.frames_per_s)
            i += 2
        else:
            i += 1
    return out


def report(sw: Switcher, args: argparse.Namespace) -> dict:
    ws = sw.windows
    by = {m: [w for w in ws if w.mode == m] for m in ("off", "on")}
    if not by["off"] or not by["on"]:
        raise SystemExit("no complete window of one of the modes: nothing to compare")
    f_off, f_on = (statistics.median(w.frames_per_s for w in by[m]) for m in ("off", "on"))
    ref = statistics.median(w.edge_cpu_per_frame_ms for w in ws)
    n_off, n_on = (statistics.median(w.frames_per_s * w.edge_cpu_per_frame_ms / ref for w in by[m]) for m in ("off", "on"))
    pairs = pair_ratios(ws)
    roles_ = sorted({r for w in ws for r in w.cpu_s})
    cpu = {m: {r: statistics.median(w.cpu_s.get(r, 0.0) / w.seconds for w in by[m]) for r in roles_} for m in ("off", "on")}
    print()
    print(
        f"policy hot-switched on one stack: {args.cameras} replayed cameras, unpaced, {len(ws)} windows of {args.window_s:g} s "
        f"({len(sw.skipped)} left out: slow switch) after {args.warmup_s:g} s warm-up"
    )
    print(f"  frames analysed/s (median)  off {f_off:6.1f}   on {f_on:6.1f}   ratio on/off {f_on / f_off:.3f}  (goal ≥ 0.97)")
    print(f"  adjacent pairs on/off       {[round(x, 3) for x in pairs]}")
    if pairs:
        print(
            f"                              median {statistics.median(pairs):.3f}  min {min(pairs):.3f}  max {max(pairs):.3f}  "
            f"on faster in {sum(x > 1 for x in pairs)} of {len(pairs)}"
        )
    print(
        f"  edge CPU per frame (median) off {statistics.median(w.edge_cpu_per_frame_ms for w in by['off']):.1f}   "
        f"on {statistics.median(w.edge_cpu_per_frame_ms for w in by['on']):.1f} ms"
    )
    print(
        f"  at equal host speed         off {n_off:6.1f}   on {n_on:6.1f}   ratio on/off {n_on / n_off:.3f}  "
        f"(frames/s × edge CPU per frame ÷ {ref:.1f} ms)"
    )
    print("  CPU cores used (median)     " + "  ".join(f"{r} {cpu['off'][r]:.3f}→{cpu['on'][r]:.3f}" for r in roles_) + "  (off→on)")
    print(f"  policy decisions per window off {[w.decisions for w in by['off']]}   on {[w.decisions for w in by['on']]}")
    print(f"  switch latency              max {max(w.switch_s for w in ws):.1f} s")
    return {
        "ratio": f_on / f_off,
        "pairs": pairs,
        "equal_host_speed_ratio": n_on / n_off,
        "windows": [
            {"mode": w.mode, "seconds": w.seconds, "frames": w.frames, "decisions": w.decisions, "switch_s": w.switch_s, "cpu_s": w.cpu_s}
            for w in ws
        ],
    }


async def measure(args: argparse.Namespace, console: Console) -> Switcher:
    settings, videos = camera_load(args.render_seconds, console)
    with run_dir(args.keep, "bench-policy-switch-") as tmp:
        live = Path(tmp) / "policy-live.yaml"
        write_atomic(live, policy_texts()["on"])
        modes = schedule(args.windows // 2, "on")
        sw = Switcher(Path(tmp) / "load" / "switch" / "step-1", live, modes, args.warmup_s, args.window_s, args.settle_s, console)
        plan = camera_plan(args.cameras, sw.duration_s, videos, 0.0, settings.scenario.seed)
        s = settings.model_copy(update={"state_dir": Path(tmp), "policy": settings.policy.model_copy(update={"file": live})})
        os.environ[UNSAFE_ENV] = "1"  # the services must accept the 'off' file on reload (measurement only)
        tasks = [asyncio.create_task(run_load(s, plan, "switch", console, stop_at_saturation=False)), asyncio.create_task(sw.run())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()  # a failure in either is raised (the other is cancelled below)
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            os.environ.pop(UNSAFE_ENV, None)
    return sw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=8, help="replayed cameras (8 saturates the edge on 2 cores)")
    ap.add_argument("--windows", type=int, default=16, help="measured windows, half per mode (on, off, off, on, …)")
    ap.add_argument("--window-s", type=float, default=12.0, help="seconds counted per window")
    ap.add_argument(
        "--settle-s", type=float, default=2.0, help="after every stage has the new policy, wait this long before counting (work in flight)"
    )
    ap.add_argument("--warmup-s", type=float, default=40.0, help="seconds of traffic before the first window")
    ap.add_argument("--render-seconds", type=float, default=60.0, help="length of the rendered videos (cached)")
    ap.add_argument("--keep", metavar="DIR", help="keep the run's state (logs, audit, summary) under DIR")
    ap.add_argument("--json", metavar="FILE", help="also write the windows and ratios as JSON")
    args = ap.parse_args()
    if args.windows < 2 or args.windows % 2:
        ap.error("--windows must be an even number ≥ 2")
    sw = asyncio.run(measure(args, Console()))
    out = report(sw, args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
