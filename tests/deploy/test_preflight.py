"""``paxsim preflight``: the compose testbed does not start on the secrets deploy/.env.example ships."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import sys
import uuid
from pathlib import Path

from paxsim.preflight import KEYD_FILES_ENV, KEYD_ROLES
from tests.deploy.conftest import COMPOSE, ROOT, env_example, load_compose

SECRETS = ("KAFKA_CLUSTER_ID", "GRAFANA_ADMIN_PASSWORD")


def preflight(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in (*SECRETS, KEYD_FILES_ENV)}
    return subprocess.run(
        [sys.executable, "-m", "paxsim.cli", "preflight"], env={**base, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def keyd_files(directory: Path, tokens: dict[str, str]) -> str:
    """The key holder's credentials as compose mounts them (one file per role); returns the preflight's list."""
    directory.mkdir(exist_ok=True)
    for role, token in tokens.items():
        (directory / role).write_text(token + "\n")
    return ",".join(f"{role}:{directory / role}" for role in KEYD_ROLES)


def fresh(directory: Path) -> dict[str, str]:
    return {
        "KAFKA_CLUSTER_ID": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        KEYD_FILES_ENV: keyd_files(directory, {role: secrets.token_urlsafe(32) for role in KEYD_ROLES}),
    }


def test_every_secret_shipped_in_env_example_is_refused_by_name_with_how_to_make_one() -> None:
    shipped = {k: v for k, v in env_example().items() if k in SECRETS}
    assert set(shipped) == set(SECRETS), "deploy/.env.example and paxsim.preflight disagree on the secrets"
    assert not any(k.startswith("PAXSIM_KEYD_TOKEN") for k in env_example()), "key-holder tokens are files, not variables"
    r = preflight(shipped)
    assert r.returncode == 2, r.stdout + r.stderr
    for name in SECRETS:
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith(f"preflight: {name} ")), "")
        assert "example value" in line and "make one with: python3 -c" in line, r.stdout
    for role in KEYD_ROLES:  # no credential files at all: each role named, with the script that makes them
        assert f"the key holder's {role} credential (no file given) is missing; make them with: deploy/make-keyd-tokens.sh" in r.stdout


def test_fresh_secrets_pass_and_weak_missing_or_shared_ones_do_not(tmp_path: Path) -> None:
    assert preflight(fresh(tmp_path / "ok")).returncode == 0
    weak = {**fresh(tmp_path / "weak"), "GRAFANA_ADMIN_PASSWORD": "hunter2", "KAFKA_CLUSTER_ID": "not-a-uuid"}
    (tmp_path / "weak" / "admin").unlink()
    (tmp_path / "weak" / "edge").write_text("short")
    r = preflight(weak)
    assert r.returncode == 2
    assert "GRAFANA_ADMIN_PASSWORD is shorter than 12" in r.stdout
    assert "KAFKA_CLUSTER_ID is not a base64url UUID" in r.stdout
    assert "the key holder's admin credential" in r.stdout and "is missing" in r.stdout
    assert "the key holder's edge credential" in r.stdout and "is shorter than 32" in r.stdout
    shared = fresh(tmp_path / "shared")
    (tmp_path / "shared" / "matcher").write_text((tmp_path / "shared" / "edge").read_text())  # one credential, two stages
    r = preflight(shared)
    assert r.returncode == 2 and "the key holder's matcher credential" in r.stdout and "same as another role's" in r.stdout, r.stdout


def test_make_keyd_tokens_writes_one_strong_distinct_credential_per_role(tmp_path: Path) -> None:
    import shutil

    script = tmp_path / "deploy" / "make-keyd-tokens.sh"
    script.parent.mkdir()
    shutil.copy(ROOT / "deploy" / "make-keyd-tokens.sh", script)
    assert subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60).returncode == 0
    out = tmp_path / "deploy" / "secrets" / "keyd"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.iterdir()]}
    assert modes == {"keyd": 0o700, "master.key": 0o600, **{role: 0o600 for role in KEYD_ROLES}}, modes  # none readable by others
    assert len(bytes.fromhex((out / "master.key").read_text())) == 32
    r = preflight({**fresh(tmp_path / "unused"), KEYD_FILES_ENV: ",".join(f"{role}:{out / role}" for role in KEYD_ROLES)})
    assert r.returncode == 0, r.stdout
    assert subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60).returncode == 1  # never overwrites


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
