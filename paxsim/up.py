"""``paxsim up --config FILE``: the whole stack as local processes, from the same file the compose testbed uses.

1. broker: the embedded one (Tansu) unless ``broker.bootstrap`` names a Kafka; topics ensured either way;
2. enrolment: the scenario's consenting travellers into the gallery and consent registry (state dir);
3. policy gate, ``--matchers`` matcher processes (one consumer group), dashboard, then the virtual-camera edge,
   each its own ``python -m paxsim.cli <stage>`` process (:class:`core.stack.Stack`);
4. the edge replays the scenario in cycles of ``--cycle`` seconds (fresh event ids each time) until Ctrl-C,
   SIGTERM or ``--duration``; then the edge stops, gate and matchers drain, and everything is stopped.

Files live in ``<state_dir>/up``. With the embedded broker that directory is emptied first: a fresh
broker holds no topics, so stores from a previous run would describe records that no longer exist.
``paxsim enrol`` (the compose one-shot ``enrol`` service) only does step 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from broker import metricnames as broker_metrics
from broker import topics as t
from core.config import ENV_PREFIX, Settings
from core.paths import RUN_MARKER
from core.stack import Stack, total
from edge import metricnames as edge_metrics
from matcher import metricnames as matcher_metrics
from paxsim.demo import rate_table
from paxsim.infra import start_infra
from policy import metricnames as policy_metrics
from policy.keyd import KeydProcess

JOIN_TIMEOUT_S = 45.0
DRAIN_TIMEOUT_S = 20.0
SCAN_TOKEN_NAME = "paxsim-up-audit-scan"  # the scan's auditor token in the deployment's store, revoked after the scan
EXIT_STAGE, EXIT_CONFIG, EXIT_BROKER = 1, 2, 3


class StageFailed(RuntimeError):
    """A stage process exited while the stack was supposed to be running."""


@dataclass
class UpCounts:
    """Counters summed over every process of a stage (edge cycles are added up as they end)."""

    published: float = 0.0
    gate_in: float = 0.0
    admitted: float = 0.0
    decided: float = 0.0
    matched: float = 0.0
    verified: float = 0.0  # e-gate 1:1
    duplicates: float = 0.0
    edge_cycles: int = 0
    per_matcher: dict[str, float] = field(default_factory=dict)  # decided events per matcher process

    def rows(self) -> list[tuple[str, float]]:
        return [
            ("edge → sightings", self.published),
            ("policy gate in", self.gate_in),
            ("policy gate admitted", self.admitted),
            ("matchers decided", self.decided),
            ("matchers matched (1:N)", self.matched),
            ("matchers verified (e-gate 1:1)", self.verified),
        ]


@dataclass
class _Edge:
    """Published count of the edge cycles that already ended (a restarted edge starts its counters at 0)."""

    done: float = 0.0
    current: float = 0.0


def processes_of(up_pid: int) -> dict:
    """A running ``paxsim up``'s processes by stage name (``matcher-2`` …), plus ``keyd`` and ``broker``:
    for tools and tests that watch or fault a stack from outside. Values are ``psutil.Process``."""
    import psutil

    out = {}
    for p in psutil.Process(up_pid).children(recursive=False):
        try:
            cmd = p.cmdline()
            if "policy.keyd" in cmd:
                out["keyd"] = p
            elif any(c.endswith("tansu") for c in cmd):
                out["broker"] = p
            elif "paxsim.cli" in cmd:
                out[p.environ().get("PAXSIM_INSTANCE") or cmd[cmd.index("paxsim.cli") + 1]] = p
        except psutil.NoSuchProcess:
            continue
    return out


def matcher_names(n: int) -> list[str]:
    return ["matcher"] + [f"matcher-{i}" for i in range(2, n + 1)]


MAX_RESTARTS = 5  # per stage and run; a stage that keeps dying ends the run (its log says why)
RESTART_BACKOFF_S = (0.5, 8.0)  # first wait, longest wait (doubling)

Samples = dict  # (metric name, labels) -> value, as Stack.scrape returns them


def _add(a: Samples, b: Samples) -> Samples:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


@dataclass
class Supervisor:
    """Restarts stages that die (with back-off, at most :data:`MAX_RESTARTS` each) and keeps their counters:
    a restarted process counts from 0, so what the dead one had counted is carried over, and the totals and
    rates never go backwards."""

    restarts: dict[str, int] = field(default_factory=dict)
    last: dict[str, Samples] = field(default_factory=dict)  # last scrape of each live process
    carried: dict[str, Samples] = field(default_factory=dict)  # counters of the stage's dead processes
    next_try: dict[str, float] = field(default_factory=dict)

    def scrape(self, stack: Stack, name: str) -> Samples:
        got = stack.scrape(name)
        if got:
            self.last[name] = got
        return _add(self.carried.get(name, {}), got or {})

    def heal(self, stack: Stack, console: Console, now: float) -> None:
        """Restart every dead stage but the edge (whose cycles end on purpose: see :meth:`restart`);
        StageFailed past the limit."""
        for name, child in list(stack.children.items()):
            if name != "edge" and not child.alive():
                self.restart(stack, name, console, now)

    def restart(self, stack: Stack, name: str, console: Console, now: float) -> bool:
        """Restart the dead stage ``name`` unless its back-off is still running (then False)."""
        child = stack.children[name]
        n = self.restarts.get(name, 0)
        code = child.proc.returncode  # type: ignore[union-attr]
        if n >= MAX_RESTARTS:
            raise StageFailed(f"stage {name} exited (code {code}) after {n} restarts; see {child.log_path}")
        if now < self.next_try.get(name, 0.0):
            return False
        self.carried[name] = _add(self.carried.get(name, {}), self.last.pop(name, {}))
        self.restarts[name] = n + 1
        self.next_try[name] = now + min(RESTART_BACKOFF_S[1], RESTART_BACKOFF_S[0] * 2**n)
        stack.restart(name)
        console.print(f"[yellow]stage {name} exited (code {code}): restarted ({n + 1}/{MAX_RESTARTS}); see {child.log_path}[/]")
        return True

    def heal_keyd(self, keys: KeydProcess, console: Console, now: float) -> None:
        """Restart a dead key holder on its address, with its token and sealed state file: the stages wait for
        it meanwhile (they retry, they do not die) and find the same keys and tombstones when it is back."""
        if keys.alive() or now < self.next_try.get("keyd", 0.0):
            return
        n = self.restarts.get("keyd", 0)
        code = keys.proc.returncode
        if n >= MAX_RESTARTS:
            raise StageFailed(f"the key holder exited (code {code}) after {n} restarts")
        self.restarts["keyd"] = n + 1
        self.next_try["keyd"] = now + min(RESTART_BACKOFF_S[1], RESTART_BACKOFF_S[0] * 2**n)
        keys.restart()
        console.print(f"[yellow]key holder exited (code {code}): restarted from its sealed state ({n + 1}/{MAX_RESTARTS})[/]")


def scrape(stack: Stack, edge: _Edge, matchers: list[str], cycles: int, sup: Supervisor | None = None) -> UpCounts:
    sup = sup or Supervisor()
    if stack.children["edge"].alive():
        e = stack.scrape("edge")
        if e:
            edge.current = total(e, edge_metrics.PUBLISHED_TOTAL, topic=t.SIGHTINGS.name)
    c = UpCounts(published=edge.done + edge.current, edge_cycles=cycles)
    g = sup.scrape(stack, "policy")
    c.gate_in = total(g, policy_metrics.GATE_EVENTS_TOTAL)
    c.admitted = total(g, policy_metrics.GATE_EVENTS_TOTAL, outcome="admitted")
    for name in matchers:
        m = sup.scrape(stack, name)
        c.per_matcher[name] = total(m, matcher_metrics.EVENTS_TOTAL)
        c.decided += c.per_matcher[name]
        c.matched += total(m, matcher_metrics.EVENTS_TOTAL, decision="match")
        c.verified += total(m, matcher_metrics.EVENTS_TOTAL, decision="verified")
        c.duplicates += total(m, matcher_metrics.DUPLICATES_TOTAL)
    return c


def _table(c: UpCounts, prev: UpCounts, dt: float, elapsed: float, dashboard: str) -> Table:
    title = f"paxsim up: {elapsed:6.1f} s, edge cycle {c.edge_cycles}  dashboard {dashboard}  (Ctrl-C stops)"
    return rate_table(title, c.rows(), prev.rows(), dt)


def _check_alive(stack: Stack) -> None:
    for name, child in stack.children.items():
        if name != "edge" and not child.alive():
            raise StageFailed(f"stage {name} exited (code {child.proc.returncode}); see {child.log_path}")  # type: ignore[union-attr]


async def _wait_joined(stack: Stack, names: list[str], stop: asyncio.Event) -> None:
    """Every consumer stage holds at least one partition (so edge start-up does not count as latency)."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for name in names:
        while total(await asyncio.to_thread(stack.scrape, name), broker_metrics.ASSIGNED_PARTITIONS) < 1:
            _check_alive(stack)
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                raise StageFailed(
                    f"stage {name} did not join its consumer group within {JOIN_TIMEOUT_S:.0f}s; see {stack.children[name].log_path}"
                )
            await asyncio.sleep(0.2)


async def _drain(stack: Stack, edge: _Edge, matchers: list[str], cycles: int, sup: Supervisor | None = None) -> UpCounts:
    """After the edge stopped: wait until gate and matchers have handled what was published (or give up)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last = None
    while True:
        c = await asyncio.to_thread(scrape, stack, edge, matchers, cycles, sup)
        caught_up = c.gate_in >= c.published and c.decided + c.duplicates >= c.admitted
        if (caught_up and last is not None and (c.gate_in, c.decided) == (last.gate_in, last.decided)) or time.monotonic() > deadline:
            return c
        last = c
        await asyncio.sleep(0.5)


async def delivery(settings: Settings) -> dict[str, int]:
    """Delivery accounting from the topics themselves (process counters restart at 0 with a restarted stage):
    admitted sightings, how many have a decision on the matches topic, how many have none, how many have
    more than one."""
    from collections import Counter

    from broker.messages import Match, MessageError, Sighting, decode
    from broker.reader import read_all

    admitted: set[str] = set()
    for r in await read_all(settings, t.ADMITTED.name):
        try:
            admitted.add(decode(r.value, Sighting).event_id)
        except MessageError:
            continue  # a poison record: the gate dead-letters it, it is no admitted event
    decided: Counter[str] = Counter(decode(r.value, Match).event_id for r in await read_all(settings, t.MATCHES.name))
    return {
        "admitted": len(admitted),
        "decided": len(admitted & set(decided)),
        "undecided": len(admitted - set(decided)),
        "decided_twice": sum(1 for n in decided.values() if n > 1),
    }


async def _settle(settings: Settings, timeout_s: float) -> dict[str, int]:
    """Delivery accounting once every admitted event has a decision (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        d = await delivery(settings)
        if d["undecided"] == 0 or time.monotonic() > deadline:
            return d
        await asyncio.sleep(1.0)


def _run_dir(settings: Settings) -> Path:
    return Path(settings.state_dir).resolve() / "up"


def run_audit_scan(stack: Stack, bootstrap: str, tokens_file: Path, console: Console) -> int:
    """``paxsim audit scan`` against the still-running broker and stages (every stage's /metrics labels, the
    dashboard's state with a short-lived auditor token) and this run's stores; returns its exit code."""
    from dashboard.auth import TokenStore
    from policy.cli import DASHBOARD_TOKEN_ENV

    console.print("[bold]paxsim audit scan[/] (every topic from offset 0, every store, the audit chains, the running stages)")
    cmd = [sys.executable, "-m", "paxsim.cli", "audit", "scan", "--bootstrap", bootstrap]
    cmd += [arg for c in stack.children.values() if c.alive() for arg in ("--metrics", f"{c.name}={c.metrics_url}")]
    dash = stack.children.get("dashboard")
    if dash is not None and dash.alive():
        cmd += ["--dashboard", f"http://127.0.0.1:{dash.metrics_port}"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    with TokenStore(tokens_file).temporary(SCAN_TOKEN_NAME, "auditor") as token:
        return subprocess.run(cmd, env={**base, **stack.env, DASHBOARD_TOKEN_ENV: token}, stdin=subprocess.DEVNULL, check=False).returncode


async def up(
    settings: Settings, duration: float | None, console: Console, matchers: int = 1, cycle_s: float = 60.0, audit_scan: bool = False
) -> dict:
    """Run the stack until ``duration`` seconds of traffic have passed (``None``: until SIGINT/SIGTERM).

    With ``audit_scan``, once the stages have drained, ``paxsim audit scan`` reads the broker (the embedded one
    keeps nothing after it stops), the stores and the running stages; its exit code is in the summary.
    Returns the final counts (also written to ``<state_dir>/up/up-summary.json``). Raises
    :class:`StageFailed` when a stage dies and ``BrokerUnreachable`` when an external broker is not there;
    every process it started is stopped on the way out in all cases."""
    run_dir = _run_dir(settings)
    embedded = settings.broker.embedded
    if embedded:
        shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / RUN_MARKER  # tools with the same configuration work on this run's state while it lives
    marker.write_text(str(os.getpid()))
    # the deployment's dashboard token store: where `paxsim dashboard-token` writes with the same config, outside
    # the run dir (emptied at every start); the dashboard follows the file, so a token issued now works at once
    from dashboard.services import TOKENS_FILE_ENV, tokens_path

    tokens = {TOKENS_FILE_ENV: str(tokens_path(settings).resolve())}
    settings = settings.model_copy(update={"state_dir": run_dir})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack: Stack | None = None
    names = matcher_names(matchers)
    edge = _Edge()
    sup = Supervisor()
    accounted: dict[str, int] = {}
    cycles = 0
    counts = UpCounts()
    scan_code: int | None = None
    # the run's key holder keeps its sealed state in the run dir, so a restarted holder keeps keys and tombstones
    bootstrap = ""
    broker_restarts = 0
    try:
        async with start_infra(settings, console.print, keyd_state=run_dir / "keyd" / "state") as infra:
            bootstrap = infra.bootstrap
            try:
                if matchers > settings.broker.partitions:
                    console.print(
                        f"[yellow]{matchers} matchers but {settings.broker.partitions} partitions: {matchers - settings.broker.partitions} will sit idle[/]"
                    )
                subjects, grants = await asyncio.to_thread(infra.enrol, cycle_s)
                console.print(f"enrolled {subjects} consenting travellers ({grants} purpose grants) of {settings.scenario.travellers}")
                stack = infra.stack(run_dir, tokens)
                stack.spawn("policy", ["policy"])
                for name in names:
                    stack.spawn(name, ["matcher"])
                # the configured port (deploy/paxsim.example.yaml: 8600), so bookmarks and Prometheus targets hold; 0 = any free one
                dash = stack.spawn("dashboard", ["dashboard"], metrics_flag="--port", port=settings.dashboard.port or None)
                dashboard_url = f"http://{settings.dashboard.host}:{dash.metrics_port}/"
                await _wait_joined(stack, ["policy", *names], stop)
                cycle = min(cycle_s, duration) if duration else cycle_s
                stack.spawn("edge", ["edge", "--virtual", "--duration", f"{cycle:g}"])
                cycles = 1
                console.print(
                    f"all stages up: policy, {len(names)} matcher(s), dashboard {dashboard_url}, edge ({settings.scenario.cameras} cameras)"
                )
                console.print(
                    f"dashboard tokens: {tokens[TOKENS_FILE_ENV]} (paxsim dashboard-token issue --name NAME --role ROLE, same config)",
                    soft_wrap=True,
                )
                t0 = last_t = time.monotonic()
                deadline = t0 + duration if duration else None
                with Live(_table(counts, counts, 1, 0, dashboard_url), console=console, refresh_per_second=2) as live:
                    while not stop.is_set():
                        try:
                            await asyncio.wait_for(stop.wait(), timeout=1.0)
                        except TimeoutError:
                            pass
                        now = time.monotonic()
                        new = await asyncio.to_thread(scrape, stack, edge, names, cycles, sup)
                        live.update(_table(new, counts, now - last_t, now - t0, dashboard_url))
                        counts, last_t = new, now
                        await asyncio.to_thread(sup.heal, stack, console, now)  # a killed stage is restarted, not fatal
                        await asyncio.to_thread(sup.heal_keyd, infra.keys, console, now)
                        e = stack.children["edge"]
                        if not e.alive():
                            edge.done, edge.current = edge.done + edge.current, 0.0
                            if e.proc.returncode != 0:  # type: ignore[union-attr]
                                # crashed: restarted like any stage (back-off, counted, StageFailed past the limit)
                                if await asyncio.to_thread(sup.restart, stack, "edge", console, now):
                                    cycles += 1
                            else:
                                if deadline is not None and now >= deadline - 1.0:
                                    break
                                stack.restart("edge")  # next scenario cycle; event ids carry a fresh nonce
                                cycles += 1
                        if deadline is not None and now >= deadline:
                            break  # the edge still running gets SIGTERM below and stops at once
                console.print("\nstopping: edge first, then gate and matchers drain")
                if stack.children["edge"].alive():
                    stack.kill("edge", signal.SIGTERM)
                    edge.done, edge.current = edge.done + edge.current, 0.0
                counts = await _drain(stack, edge, names, cycles, sup)
                accounted = await _settle(infra.client_settings, DRAIN_TIMEOUT_S)
                if audit_scan:  # while the stages run: their metric labels and the dashboard's memory are stores too
                    scan_code = await asyncio.to_thread(run_audit_scan, stack, bootstrap, Path(tokens[TOKENS_FILE_ENV]), console)
                await asyncio.to_thread(stack.stop)
            finally:
                if stack is not None:
                    await asyncio.to_thread(stack.stop)
            broker_restarts = infra.broker.restarts if infra.broker else 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        marker.unlink(missing_ok=True)  # the stack is gone: tools go back to the configuration's state dir
    if broker_restarts and accounted:
        # a restarted embedded broker starts with an empty log: what the gate admitted before is gone from it
        accounted["lost_with_broker_log"] = max(0, int(counts.admitted) - accounted["admitted"])
    summary = {
        **asdict(counts),
        "matchers": len(names),
        "bootstrap": bootstrap,
        "embedded": embedded,
        "audit_scan_exit": scan_code,
        "restarts": dict(sup.restarts),
        "broker_restarts": broker_restarts,
        "delivery": accounted,
    }
    (run_dir / "up-summary.json").write_text(json.dumps(summary, indent=2))
    tab = Table(title="paxsim up: totals")
    tab.add_column("figure")
    tab.add_column("value", justify="right")
    for name, value in counts.rows():
        tab.add_row(name, f"{value:,.0f}")
    tab.add_row("duplicates skipped", f"{counts.duplicates:,.0f}")
    tab.add_row("edge cycles", str(cycles))
    for name, n in sorted(sup.restarts.items()):
        tab.add_row(f"restarts of {name}", str(n))
    if accounted:
        tab.add_row(
            "admitted events: decided / undecided / decided twice (from the topics)",
            f"{accounted['decided']:,} / {accounted['undecided']:,} / {accounted['decided_twice']:,}",
        )
    if broker_restarts:
        tab.add_row("[red]embedded broker restarts (its log is memory only)[/]", f"[red]{broker_restarts}[/]")
        tab.add_row("[red]admitted events lost with the broker's log[/]", f"[red]{accounted.get('lost_with_broker_log', 0):,}[/]")
    console.print(tab)
    if broker_restarts:
        console.print(
            f"[red]the embedded broker restarted {broker_restarts} time(s) and lost every record it held; "
            "the figures from the topics cover only what came after (use a Kafka with storage to survive this)[/]",
            soft_wrap=True,
        )
    console.print(f"logs and stores in {run_dir}/")
    return summary
