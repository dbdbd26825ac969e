"""``paxsim preflight``: the compose testbed does not start on the secrets deploy/.env.example ships."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import uuid

from paxsim.preflight import KEYD_TOKENS
from tests.deploy.conftest import COMPOSE, ROOT, env_example, load_compose

SECRETS = ("KAFKA_CLUSTER_ID", "GRAFANA_ADMIN_PASSWORD", *KEYD_TOKENS)


def preflight(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [sys.executable, "-m", "paxsim.cli", "preflight"], env={**base, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def fresh() -> dict[str, str]:
    return {
        "KAFKA_CLUSTER_ID": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        **{name: secrets.token_urlsafe(32) for name in KEYD_TOKENS},
    }


def test_every_secret_shipped_in_env_example_is_refused_by_name_with_how_to_make_one() -> None:
    shipped = {k: v for k, v in env_example().items() if k in SECRETS}
    assert set(shipped) == set(SECRETS), "deploy/.env.example and paxsim.preflight disagree on the secrets"
    r = preflight(shipped)
    assert r.returncode == 2, r.stdout + r.stderr
    for name in SECRETS:
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith(f"preflight: {name} ")), "")
        assert "example value" in line and "make one with: python3 -c" in line, r.stdout


def test_fresh_secrets_pass_and_weak_or_missing_ones_do_not() -> None:
    assert preflight(fresh()).returncode == 0
    weak = {**fresh(), "GRAFANA_ADMIN_PASSWORD": "hunter2", "KAFKA_CLUSTER_ID": "not-a-uuid"}
    del weak["PAXSIM_KEYD_TOKEN"]
    r = preflight(weak)
    assert r.returncode == 2
    assert "GRAFANA_ADMIN_PASSWORD is shorter than 12" in r.stdout
    assert "KAFKA_CLUSTER_ID is not a base64url UUID" in r.stdout
    assert "PAXSIM_KEYD_TOKEN is not set" in r.stdout
    shared = fresh()
    shared["PAXSIM_KEYD_TOKEN_EDGE"] = shared["PAXSIM_KEYD_TOKEN_MATCHER"]  # one credential for two stages
    r = preflight(shared)
    assert r.returncode == 2 and "PAXSIM_KEYD_TOKEN_EDGE is the same as another key-holder token" in r.stdout, r.stdout


def test_nothing_in_the_compose_file_starts_before_preflight_succeeded() -> None:
    services = load_compose(COMPOSE)["services"]

    def deps(name: str) -> dict:
        d = services[name].get("depends_on") or {}
        return {k: {"condition": "service_started"} for k in d} if isinstance(d, list) else d

    def waits_for_preflight(name: str, seen: frozenset[str] = frozenset()) -> bool:
        for dep, cond in deps(name).items():
            if dep == "preflight":
                if cond["condition"] == "service_completed_successfully":
                    return True
            elif dep not in seen and waits_for_preflight(dep, seen | {name}):
                return True
        return False

    assert services["preflight"]["command"] == ["preflight"]
    late = [n for n in services if n != "preflight" and not waits_for_preflight(n)]
    assert not late, f"services that may start on the example secrets: {late}"


def test_only_the_key_holder_mounts_its_sealed_state() -> None:
    services = load_compose(COMPOSE)["services"]
    holders = [n for n, s in services.items() if any(str(v).startswith("keyd-state:") for v in s.get("volumes") or [])]
    assert holders == ["keyd"]
    assert "--state" in services["keyd"]["command"]
