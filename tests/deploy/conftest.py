"""Helpers for the deployment tests: the compose files, their paxsim commands, the docker-compose binary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_SASL = DEPLOY / "docker-compose.sasl.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
EXAMPLE_CONFIG = DEPLOY / "paxsim.example.yaml"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}")


def env_example() -> dict[str, str]:
    """KEY=VALUE lines of deploy/.env.example."""
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` substitution."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is None or "?" in m.group(0).split(name, 1)[1][:2]:
            raise KeyError(f"compose variable {name} has no value")
        return default

    return _VAR.sub(sub, value)


def load_compose(path: Path) -> dict:
    """The compose file as YAML (anchors and merge keys resolved by the YAML loader)."""
    return yaml.safe_load(path.read_text())


def paxsim_services(doc: dict) -> dict[str, dict]:
    """Services that run the paxsim image."""
    return {n: s for n, s in doc["services"].items() if "paxsim" in str(s.get("image", ""))}


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Debian's docker-compose (apt-get install docker-compose). Missing: skipped locally, a failure under CI."""
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed; CI must install the Debian package docker-compose")
        pytest.skip("docker-compose not installed (apt-get install docker-compose); CI fails instead of skipping")
    return exe


def compose_config(exe: str, *files: Path, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    args = [exe, "--project-directory", str(DEPLOY), "--env-file", str(env_file)]
    for f in files:
        args += ["-f", str(f)]
    env = {k: v for k, v in os.environ.items() if k not in env_example()}  # only the env file decides
    return subprocess.run([*args, "config"], capture_output=True, text=True, env=env, timeout=60)
