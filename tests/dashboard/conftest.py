"""Helpers for the dashboard tests: a short real pipeline (embedded broker + every stage as a process)
whose scrape targets are written to a Prometheus file_sd file, and system binaries that may be missing."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.paths import ground_truth_path
from core.stack import TARGETS_FILE_NAME, Stack, total
from paxsim.demo import start_pipeline
from paxsim.infra import child_env, enrol_scenario

SMALL = dict(cameras=8, travellers=150, events_per_second=120.0)

ADMIN = "admin-token-" + "a" * 20
OPERATOR = "operator-token-" + "o" * 20
AUDITOR = "auditor-token-" + "u" * 20
TOKENS = f"admin:alice:{ADMIN},operator:olga:{OPERATOR},auditor:aude:{AUDITOR}"


def need_binary(path: str) -> str:
    """The binary's path; skip if it is missing, except in CI (env CI set), where a missing binary fails."""
    found = shutil.which(path)
    if found:
        return found
    msg = f"{path} is not installed (deploy/install-system-deps.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def small(settings: Settings) -> Settings:
    return settings.model_copy(update={"scenario": settings.scenario.model_copy(update=SMALL)})


@dataclass
class LivePipeline:
    stack: Stack
    settings: Settings
    targets_file: Path

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.children['dashboard'].metrics_port}"


def start_live_pipeline(
    client_settings: Settings, bootstrap: str, duration_s: float, monkeypatch: pytest.MonkeyPatch, keys
) -> LivePipeline:  # noqa: ANN001
    cs = small(client_settings)
    enrol_scenario(cs, duration_s)
    monkeypatch.setenv("PAXSIM_DASHBOARD_TOKENS", TOKENS)  # passed on to the dashboard child
    stack = Stack(Path(cs.state_dir), child_env(cs, bootstrap, True, keys))
    start_pipeline(stack, duration_s, ground_truth_path(cs))
    targets = stack.run_dir / TARGETS_FILE_NAME  # written by Stack.spawn (Prometheus file_sd)
    assert stack.wait_ready("dashboard", 20), "dashboard did not open its port"
    return LivePipeline(stack, cs, targets)


def wait_for(what: str, check, timeout: float, interval: float = 0.25):  # noqa: ANN001
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, KeyError, ValueError, TypeError, IndexError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def matcher_decided(stack: Stack) -> float:
    return total(stack.scrape("matcher"), "paxsim_matcher_events_total")
