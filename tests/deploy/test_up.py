"""``paxsim up --config deploy/paxsim.example.yaml``: the whole stack as local processes on the real embedded broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.deploy.conftest import EXAMPLE_CONFIG, ROOT

SMALL = {  # a small airport through the same example file (environment overrides, as the compose file does)
    "PAXSIM__SCENARIO__CAMERAS": "12",
    "PAXSIM__SCENARIO__TRAVELLERS": "120",
    "PAXSIM__SCENARIO__EVENTS_PER_SECOND": "80",
    "PAXSIM__DASHBOARD__PORT": "0",  # tests run side by side: the example's 8600 would collide
}


def up_command() -> list[str]:
    return [sys.executable, "-m", "paxsim.cli", "up"]


def _wait_all_up(proc: subprocess.Popen, timeout_s: float = 90) -> list[str]:
    """The lines ``paxsim up`` printed until every stage was up (fails the test if it never says so)."""
    deadline = time.monotonic() + timeout_s
    out: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        out.append(line)
        if "all stages up" in line or not line:
            break
    assert "all stages up" in "".join(out), "".join(out)
    return out


def _env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAXSIM")}
    return {**base, **SMALL, "PAXSIM__STATE_DIR": str(tmp_path / "state"), "COLUMNS": "120"}


@pytest.mark.slow  # ~30 s: six processes start, 8 s of traffic, drain, audit scan
def test_up_runs_the_stack_for_a_duration_and_the_audit_scan_is_clean(tmp_path: Path) -> None:
    """Issue 8's acceptance: ``paxsim up`` with the example config runs the whole stack and ``paxsim audit scan``
    is clean after it. The scan runs inside ``up --audit-scan``, once the stages have drained and before they and
    the embedded broker (which keeps nothing) go away: their metric labels and the dashboard's memory are read too."""
    from core.obs import free_port

    port = free_port()  # dashboard.port is honoured (the example's 8600 would collide with parallel tests)
    r = subprocess.run(
        [*up_command(), "--config", str(EXAMPLE_CONFIG), "--duration", "8", "--matchers", "2", "--audit-scan"],
        env={**_env(tmp_path), "PAXSIM__DASHBOARD__PORT": str(port)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_dir = tmp_path / "state" / "up"
    summary = json.loads((run_dir / "up-summary.json").read_text())
    assert f"http://127.0.0.1:{port}/" in r.stdout, "the dashboard page is not on the configured port"
    assert summary["audit_scan_exit"] == 0
    assert "expired-readable 0 / non-consented 0 / audit 0" in r.stdout
    assert "live:metrics" in r.stdout and "live:dashboard" in r.stdout, "the running stages were not scanned"
    assert summary["embedded"] is True and summary["matchers"] == 2
    assert summary["published"] > 0
    assert summary["gate_in"] >= summary["published"]  # the gate saw everything the edge published
    assert summary["decided"] + summary["duplicates"] >= summary["admitted"] > 0  # matchers drained the admitted topic
    assert summary["matched"] > 0
    assert summary["delivery"]["undecided"] == 0 and summary["delivery"]["decided_twice"] == 0, summary["delivery"]
    # one consumer group: the two matchers split the partitions, each decided part of the events
    assert set(summary["per_matcher"]) == {"matcher", "matcher-2"}
    assert all(v > 0 for v in summary["per_matcher"].values()), summary["per_matcher"]
    for stage in ("policy", "matcher", "matcher-2", "dashboard", "edge"):
        assert (run_dir / f"{stage}.log").exists()


@pytest.mark.slow  # ~20 s
def test_up_stops_every_process_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*up_command(), "--config", str(EXAMPLE_CONFIG)],
        env=_env(tmp_path),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = _wait_all_up(proc)
        # the README's token command, run beside `paxsim up` with the same state dir, works against its dashboard
        issued = subprocess.run(
            [sys.executable, "-m", "paxsim.cli", "dashboard-token", "issue", "--name", "alice", "--role", "operator"],
            env=_env(tmp_path),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert issued.returncode == 0, issued.stdout + issued.stderr
        token = issued.stdout.strip().splitlines()[-1]
        url = next(w.rstrip(",") for line in out for w in line.split() if w.startswith("http://") and w.rstrip(",").endswith("/"))
        r = httpx.get(url + "api/trajectories", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, (r.status_code, r.text)
        # a camera agent that crashes is restarted (counted), not the end of the run
        from paxsim.up import processes_of

        crashed = processes_of(proc.pid)["edge"]
        crashed.kill()
        deadline = time.monotonic() + 20
        while (edge := processes_of(proc.pid).get("edge")) is None or edge.pid == crashed.pid:
            assert time.monotonic() < deadline and proc.poll() is None, "the killed edge was not restarted"
            time.sleep(0.25)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5  # broker, policy, matcher, dashboard, edge
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(out) + rest
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {[p.pid for p in alive]}"
        summary = json.loads((tmp_path / "state" / "up" / "up-summary.json").read_text())
        assert summary["restarts"] == {"edge": 1}, summary["restarts"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow  # ~25 s
def test_ctrl_c_in_a_terminal_stops_up_cleanly(tmp_path: Path) -> None:
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group, not to `paxsim up` alone: the
    stages used to exit with it, and `up` took that for crashes (restarts, a restarted broker, a scan not clean).
    Here `up` leads its own group, as under a shell, and the group gets the signal."""
    proc = subprocess.Popen(
        [*up_command(), "--config", str(EXAMPLE_CONFIG), "--audit-scan"],
        env=_env(tmp_path),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a job started from a terminal
    )
    try:
        out = _wait_all_up(proc)
        time.sleep(3.0)  # some traffic
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        text = "".join(out) + rest
        assert proc.returncode == 0, text[-3000:]
        assert "restarted" not in rest, rest[-2000:]
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {[p.pid for p in alive]}"
        summary = json.loads((tmp_path / "state" / "up" / "up-summary.json").read_text())
        assert summary["restarts"] == {}, summary["restarts"]
        assert summary["audit_scan_exit"] == 0, text[-3000:]
        assert "expired-readable 0 / non-consented 0 / audit 0" in rest, rest[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow  # ~30 s
def test_a_withdrawal_with_the_cli_and_the_same_config_reaches_the_running_up(tmp_path: Path) -> None:
    """`paxsim consent withdraw --config X` beside `paxsim up --config X` used to open another registry (the
    configuration's state dir, not the run's) and answer "nothing to withdraw": the person was silently ignored.
    Now it works on the running stack's registry, and the subject's templates leave every matcher replica."""
    from matcher.gallery import Gallery
    from tests.pipeline.test_erasure_e2e import erasures_applied, until

    env = _env(tmp_path)
    proc = subprocess.Popen(
        [*up_command(), "--config", str(EXAMPLE_CONFIG), "--matchers", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_dir = tmp_path / "state" / "up"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "paxsim.cli", *args, "--config", str(EXAMPLE_CONFIG)]
        return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    try:
        _wait_all_up(proc)
        listed = cli("consent", "list", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "a running `paxsim up` uses this configuration" in listed.stderr, listed.stderr
        active = {row["subject_id"] for row in map(json.loads, listed.stdout.splitlines()) if row.get("status") == "active"}
        subject = sorted(active & set(Gallery.load(run_dir / "gallery.npz").subjects()))[0]
        r = cli("consent", "withdraw", subject)
        assert r.returncode == 0 and "withdrawn" in r.stdout, r.stdout + r.stderr
        with httpx.Client(timeout=10, trust_env=False) as http:
            until(
                "both matcher replicas applied the erasure",
                lambda: all(isinstance(v, float) and v >= 1 for k, v in erasures_applied(run_dir, http).items() if k.startswith("matcher")),
                60,
            )
        until("the gallery file no longer holds the subject", lambda: subject not in Gallery.load(run_dir / "gallery.npz").subjects(), 30)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, rest[-3000:]
        assert not (run_dir / "up.pid").exists()  # tools go back to the configuration's state dir
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_fails_clearly_when_the_configured_kafka_is_not_there(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "PAXSIM__BROKER__BOOTSTRAP": "127.0.0.1:9", "PAXSIM__BROKER__CONNECT_TIMEOUT_S": "2"}
    r = subprocess.run(
        [*up_command(), "--config", str(EXAMPLE_CONFIG), "--duration", "2"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 3, r.stdout + r.stderr
    assert "127.0.0.1:9" in r.stdout + r.stderr


def test_up_rejects_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("broker:\n  partitions: 0\n")
    r = subprocess.run(
        [*up_command(), "--config", str(bad), "--duration", "2"], env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "broker.partitions" in r.stdout + r.stderr


def test_audit_scan_without_a_key_holder_refuses_instead_of_reporting_clean(tmp_path: Path) -> None:
    """Without keys no pseudonym resolves and no sealed payload opens: a '0 / 0 / 0' then means nothing."""
    env = _env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "paxsim.cli", "audit", "scan"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no key holder" in r.stdout + r.stderr and "--no-keys" in r.stdout + r.stderr, r.stdout + r.stderr


def test_up_refuses_a_dashboard_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**_env(tmp_path), "PAXSIM__DASHBOARD__PORT": str(port)}
        r = subprocess.run(
            [*up_command(), "--config", str(EXAMPLE_CONFIG), "--duration", "2"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2 and f"dashboard.port {port}" in r.stdout + r.stderr, r.stdout + r.stderr
