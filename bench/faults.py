"""Fault matrix: ``kill -9`` of one process of the running stack at a time, under virtual load.

    .venv/bin/python -m bench.faults                         # every fault, 30 s each (~6 min)
    .venv/bin/python -m bench.faults --faults keyd broker --seconds 40

Each row is its own ``paxsim up --config deploy/paxsim.example.yaml --matchers 2 --audit-scan`` run (gate,
two matchers, dashboard, key holder, virtual-camera edge on the embedded broker, 80 sightings/s). ``--kill-at``
seconds after every stage is up, the named process gets SIGKILL; ``paxsim up`` restarts stages and the key
holder itself (the embedded broker is restarted by its own supervisor, with an empty log). The run then goes on
to its end, drains, and scans. Per fault:

* produced: sightings the edge published (its counters, carried over restarts);
* admitted: the gate's count of what it passed on;
* decided once / lost / doubled: from the topics: admitted events with exactly one decision, with none, with
  more than one (``paxsim up``'s delivery accounting);
* lost with the broker's log: admitted events the gate counted that are no longer on the admitted topic (only
  an embedded broker restart loses its log);
* restarts and the audit scan's exit code (0: expired-readable 0, non-consented 0, audit gaps 0).
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from bench.upstack import UpRun

FAULTS = ("none", "policy", "matcher", "matcher-2", "dashboard", "keyd", "broker")


def run_fault(fault: str, seconds: float, kill_at: float, rate: float) -> dict:
    run = UpRun(
        ["--matchers", "2", "--duration", f"{seconds:g}", "--audit-scan"],
        {"PAXSIM__SCENARIO__EVENTS_PER_SECOND": f"{rate:g}"},
        prefix=f"bench-fault-{fault}-",
    )
    run.wait_up()
    time.sleep(kill_at)
    if fault != "none":
        run.processes()[fault].kill()
    summary = run.wait(seconds + 240)
    d = summary["delivery"]
    restarts = {**summary["restarts"], **({"broker": summary["broker_restarts"]} if summary.get("broker_restarts") else {})}
    return {
        "produced": int(summary["published"]),
        "admitted": int(summary["admitted"]),
        "decided_once": d["decided"] - d["decided_twice"],
        "lost": d["undecided"],
        "doubled": d["decided_twice"],
        "lost_with_log": d.get("lost_with_broker_log", 0),
        "restarts": ", ".join(f"{k} {v}" for k, v in sorted(restarts.items())),
        "scan": summary["audit_scan_exit"],
        "scan_line": next((ln.strip() for ln in run.lines if "expired-readable" in ln), ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    ap.add_argument("--seconds", type=float, default=30.0, help="traffic per run")
    ap.add_argument("--kill-at", type=float, default=10.0, help="seconds after every stage is up")
    ap.add_argument("--rate", type=float, default=80.0, help="sightings/s offered")
    args = ap.parse_args()
    console = Console(width=max(Console().width, 150))
    rows = {}
    for fault in args.faults:
        console.print(f"fault: kill -9 {fault} at {args.kill_at:g} s" if fault != "none" else "no fault (baseline)")
        rows[fault] = run_fault(fault, args.seconds, args.kill_at, args.rate)
        console.print(f"  {rows[fault]}")
    tab = Table(title=f"fault matrix: kill -9 at {args.kill_at:g} s of {args.seconds:g} s, {args.rate:g} sightings/s, 2 matchers")
    for col in ("kill -9", "produced", "admitted", "decided once", "lost", "doubled", "lost with broker log", "restarted", "audit scan"):
        tab.add_column(col, justify="left" if col in ("kill -9", "restarted", "audit scan") else "right")
    for fault, r in rows.items():
        tab.add_row(
            fault,
            f"{r['produced']:,}",
            f"{r['admitted']:,}",
            f"{r['decided_once']:,}",
            f"{r['lost']:,}",
            f"{r['doubled']:,}",
            f"{r['lost_with_log']:,}",
            r["restarts"] or "–",
            "clean" if r["scan"] == 0 else f"exit {r['scan']}: {r['scan_line']}",
        )
    console.print(tab)


if __name__ == "__main__":
    main()
