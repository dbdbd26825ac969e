"""``paxsim up`` as a subprocess for benches: start it, wait until every stage is up, find its processes, read
its summary. The benches drive the stack exactly as a user does (same command, same example configuration)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "paxsim.example.yaml"


class UpRun:
    """One ``paxsim up --config deploy/paxsim.example.yaml`` run in a fresh state dir."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, prefix: str = "bench-up-") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        from core.obs import free_port

        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PAXSIM")},
            "PAXSIM__STATE_DIR": str(self.tmp / "state"),
            "PAXSIM__SCENARIO__CAMERAS": "12",
            "PAXSIM__SCENARIO__TRAVELLERS": "120",
            "PAXSIM__DASHBOARD__PORT": str(self.port),
            "COLUMNS": "120",
            **(env or {}),
        }
        cmd = [sys.executable, "-m", "paxsim.cli", "up", "--config", str(CONFIG), *args]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
        self.run_dir = self.tmp / "state" / "up"

    @property
    def text(self) -> str:
        return "".join(self.lines)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_up(self, timeout_s: float = 120.0) -> UpRun:
        deadline = time.monotonic() + timeout_s
        while "all stages up" not in self.text:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("paxsim up did not start:\n" + self.text[-3000:])
            time.sleep(0.2)
        return self

    def processes(self) -> dict[str, psutil.Process]:
        """Stage processes by name (``matcher-2`` …), plus ``keyd`` and ``broker``."""
        from paxsim.up import processes_of

        return processes_of(self.proc.pid)

    @property
    def bootstrap(self) -> str:
        m = re.search(r"\(Tansu\) on (\S+?);", self.text)
        if m is None:
            raise RuntimeError("no embedded broker address in the output")
        return m.group(1)

    def wait(self, timeout_s: float) -> dict:
        """Wait for the run to end; its ``up-summary.json`` with ``exit`` (1 also when the audit scan found
        something: a result, not a failure of the run). RuntimeError when it wrote no summary."""
        self.proc.wait(timeout=timeout_s)
        summary = self.run_dir / "up-summary.json"
        if not summary.exists():
            raise RuntimeError(f"paxsim up exited {self.proc.returncode} without a summary:\n" + self.text[-3000:])
        return {**json.loads(summary.read_text()), "exit": self.proc.returncode}
