"""The compose testbed: valid for docker-compose, consistent with paxsim's commands and configuration."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from broker import topics as t
from core.config import load_settings
from tests.deploy.conftest import (
    COMPOSE,
    COMPOSE_SASL,
    DEPLOY,
    EXAMPLE_CONFIG,
    ROOT,
    compose_config,
    env_example,
    interpolate,
    load_compose,
    paxsim_services,
)

COMPOSE_FILES = [(COMPOSE,), (COMPOSE, COMPOSE_SASL)]


@pytest.mark.parametrize("files", COMPOSE_FILES, ids=["base", "base+sasl"])
def test_docker_compose_config_accepts_the_files(docker_compose: str, files: tuple[Path, ...]) -> None:
    r = compose_config(docker_compose, *files)
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    services = resolved["services"]
    assert {"kafka", "topic-init", "enrol", "policy", "matcher", "dashboard", "edge-1", "edge-2", "prometheus", "grafana"} <= set(services)
    assert services["matcher"]["deploy"]["replicas"] == int(env_example()["MATCHER_REPLICAS"])
    assert "version" not in load_compose(files[0])  # Compose Specification: no top-level version key
    # every published port is bound to the host's loopback only
    for name, svc in services.items():
        for port in svc.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert text.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


@pytest.mark.parametrize("files", COMPOSE_FILES, ids=["base", "base+sasl"])
def test_each_stage_mounts_only_its_own_key_holder_credential_as_a_file(docker_compose: str, files: tuple[Path, ...]) -> None:
    """No key-holder token is in any container's environment: each service that talks to the key holder mounts
    its own role's credential file as the secret keyd_token; the key holder mounts every role's; the admin one
    stays with enrolment (and the SASL override keeps all of it)."""
    from policy.keyd import PERMISSIONS, ROLE_TOKEN_FILES_ENV, STAGE_ROLES, TOKEN_FILE_ENV

    r = compose_config(docker_compose, *files)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    services = doc["services"]
    assert {name: Path(s["file"]).name for name, s in doc["secrets"].items() if name.startswith("keyd_")} == {
        **{f"keyd_{role}": role for role in PERMISSIONS},
        "keyd_master": "master.key",  # the key holder's master key: a secret, never a file in its state volume
    }

    def keyd_secrets(svc: dict) -> dict[str, str]:
        return {s["source"]: s.get("target", s["source"]) for s in svc.get("secrets", []) if s["source"].startswith("keyd_")}

    for name, svc in services.items():
        assert not any(k in ("PAXSIM_KEYD_TOKEN", "PAXSIM_KEYD_ROLE_TOKENS") for k in svc.get("environment") or {}), name
        command = svc.get("command") or []
        stage = command[0] if command else ""
        if stage in STAGE_ROLES and name != "enrol":
            assert keyd_secrets(svc) == {f"keyd_{STAGE_ROLES[stage]}": "keyd_token"}, (name, keyd_secrets(svc))
            assert svc["environment"][TOKEN_FILE_ENV] == "/run/secrets/keyd_token"
    assert keyd_secrets(services["enrol"]) == {"keyd_admin": "keyd_token"}  # enrolment makes subject keys (admin)
    keyd = services["keyd"]
    assert set(keyd_secrets(keyd)) == {f"keyd_{role}" for role in PERMISSIONS} | {"keyd_master"}
    assert "--master-key" in keyd["command"] and keyd["command"][keyd["command"].index("--master-key") + 1] == "/run/secrets/keyd_master"
    assert not any("keyd_master" in str(s) for n, svc in services.items() if n != "keyd" for s in svc.get("secrets", []))
    assert keyd["environment"][TOKEN_FILE_ENV] == "/run/secrets/keyd_admin"
    roles = dict(item.split(":", 1) for item in keyd["environment"][ROLE_TOKEN_FILES_ENV].split(","))
    assert roles == {role: f"/run/secrets/keyd_{role}" for role in PERMISSIONS if role != "admin"}


def test_docker_compose_config_rejects_a_broken_file(docker_compose: str, tmp_path: Path) -> None:
    """The validation is real: an unknown service key fails it."""
    broken = load_compose(COMPOSE)
    broken["services"]["policy"]["commandd"] = ["policy"]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    r = compose_config(docker_compose, path)
    assert r.returncode != 0
    assert "commandd" in r.stderr


def test_missing_cluster_id_stops_compose(docker_compose: str, tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text("\n".join(f"{k}={v}" for k, v in env_example().items() if k != "KAFKA_CLUSTER_ID") + "\n")
    r = compose_config(docker_compose, COMPOSE, env_file=env)
    assert r.returncode != 0 and "KAFKA_CLUSTER_ID" in r.stderr


def _commands() -> list[tuple[str, list[str]]]:
    env = env_example()
    seen: dict[tuple[str, ...], str] = {}
    for files in COMPOSE_FILES:
        for f in files:
            for name, svc in paxsim_services(load_compose(f)).items():
                if "command" in svc:
                    seen.setdefault(tuple(interpolate(str(a), env) for a in svc["command"]), name)
    return [(name, list(cmd)) for cmd, name in seen.items()]


def test_every_paxsim_service_has_a_command() -> None:
    names = {n for n, _ in _commands()}
    assert names == set(paxsim_services(load_compose(COMPOSE))), "a paxsim service without a command would only print --help"


def test_every_compose_command_runs_with_help() -> None:
    """Each ``command:`` of a paxsim service, as ``python -m paxsim.cli <command> --help``, exits 0."""
    commands = _commands()

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "paxsim.cli", *cmd, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, [c for _, c in commands]))
    failures = [
        f"{name}: paxsim {' '.join(cmd)} --help → {r.returncode}\n{r.stdout[-400:]}{r.stderr[-400:]}"
        for (name, cmd), r in zip(commands, results)
        if r.returncode != 0
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("files", COMPOSE_FILES, ids=["base", "base+sasl"])
def test_compose_environment_is_valid_paxsim_configuration(files: tuple[Path, ...]) -> None:
    """The example config plus each service's PAXSIM__* variables loads: no unknown or invalid key."""
    env = env_example()
    names = set(paxsim_services(load_compose(COMPOSE)))
    merged: dict[str, dict[str, str]] = {}
    for f in files:  # an override file names the services without repeating their image
        for name, svc in load_compose(f)["services"].items():
            if name in names:
                merged.setdefault(name, {}).update({k: interpolate(str(v), env) for k, v in (svc.get("environment") or {}).items()})
    assert set(merged) == names
    for name, environ in merged.items():
        assert environ.get("PAXSIM_CONFIG") in (None, "/etc/paxsim/paxsim.yaml")
        settings = load_settings(EXAMPLE_CONFIG, {k: v for k, v in environ.items() if k != "PAXSIM_CONFIG"})
        assert settings.broker.bootstrap == "kafka:9092", name
        assert settings.metrics.host == "0.0.0.0", name


def test_compose_partitions_and_replicas_are_consistent() -> None:
    env = env_example()
    doc = load_compose(COMPOSE)
    partitions = int(interpolate(str(doc["services"]["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]), env))
    replicas = int(interpolate(str(doc["services"]["matcher"]["deploy"]["replicas"]), env))
    paxsim_partitions = int(interpolate(str(doc["services"]["policy"]["environment"]["PAXSIM__BROKER__PARTITIONS"]), env))
    assert partitions == paxsim_partitions
    assert 1 <= replicas <= partitions, "matcher replicas beyond the partition count would sit idle"
    kafka_env = doc["services"]["kafka"]["environment"]
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka_env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka-data:/var/lib/kafka/data" in doc["services"]["kafka"]["volumes"]


def test_edge_shards_cover_every_camera_once() -> None:
    doc = load_compose(COMPOSE)
    shards = []
    for _name, svc in paxsim_services(doc).items():
        cmd = svc["command"]
        if cmd[0] == "edge":
            shards.append(cmd[cmd.index("--shard") + 1])
    n = {int(s.split("/")[1]) for s in shards}
    assert len(n) == 1 and sorted(int(s.split("/")[0]) for s in shards) == list(range(1, n.pop() + 1))


def test_prometheus_scrapes_every_metrics_endpoint_of_the_compose_file() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets: set[str] = set()
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            targets |= {x.split(":")[0] for x in sc["targets"]}
        for sd in job.get("dns_sd_configs", []):
            targets |= set(sd["names"])
    doc = load_compose(COMPOSE)
    long_running = {n for n, s in paxsim_services(doc).items() if s.get("restart") != "no"}
    # the key holder is out of the monitoring network's reach (its own internal network): not scraped
    assert long_running - {"keyd"} <= targets, f"not scraped: {long_running - {'keyd'} - targets}"
    assert "keyd" not in targets and "kafka-exporter" in targets


def test_grafana_dashboard_uses_the_provisioned_datasource_and_real_metrics() -> None:
    import json
    import re

    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "paxsim.yml").read_text())
    mounted = load_compose(COMPOSE)["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounted
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "paxsim.json").read_text())
    names = set()
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == uid
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid
            names |= set(re.findall(r"\b(paxsim_[a-z_]+?)(?:_bucket)?\b", target["expr"]))
    source = "\n".join(p.read_text() for pkg in ("broker", "edge", "policy", "matcher", "dashboard") for p in (ROOT / pkg).rglob("*.py"))
    missing = sorted(n for n in names if f'"{n}"' not in source)
    assert not missing, f"dashboard queries metrics nobody exports: {missing}"


def test_example_config_is_valid_and_uses_the_embedded_broker_by_default() -> None:
    s = load_settings(EXAMPLE_CONFIG, {})
    assert s.broker.embedded
    assert s.broker.partitions >= 2
    assert {topic.name for topic in t.ALL}  # catalogue importable with this config


KEY_USERS = {"enrol", "policy", "matcher", "dashboard", "edge-1", "edge-2"}  # services that talk to the key holder


def test_the_key_holder_is_on_an_internal_network_that_only_its_clients_join(docker_compose: str) -> None:
    r = compose_config(docker_compose, COMPOSE)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    assert doc["networks"]["keys"].get("internal") is True  # no route out of it
    services = doc["services"]
    assert set(services["keyd"]["networks"]) == {"keys"}
    on_keys = {name for name, svc in services.items() if "keys" in (svc.get("networks") or {})}
    assert on_keys == KEY_USERS | {"keyd"}, on_keys  # not Kafka, Prometheus, Grafana, the exporter or topic-init
    assert "ports" not in services["keyd"]


# compose service → its Kafka user (the key holder's role names: broker/acls.py ACCESS)
KAFKA_USERS = {
    "topic-init": "paxsim-admin",
    "enrol": "paxsim-admin",
    "policy": "paxsim-gate",
    "matcher": "paxsim-matcher",
    "dashboard": "paxsim-dashboard",
    "edge-1": "paxsim-edge",
    "edge-2": "paxsim-edge",
}


def test_sasl_gives_each_stage_its_own_kafka_user_and_password_and_the_broker_enforces_acls(docker_compose: str) -> None:
    from broker.acls import ACCESS

    r = compose_config(docker_compose, COMPOSE, COMPOSE_SASL)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    services = doc["services"]
    for name, user in KAFKA_USERS.items():
        env = services[name]["environment"]
        assert env["PAXSIM__BROKER__SECURITY__USERNAME"] == user, name
        mounted = {s["source"]: s.get("target", s["source"]) for s in services[name]["secrets"] if s["source"].startswith("kafka_")}
        # its own password at the path the settings read, and no other user's
        assert mounted == {f"kafka_password_{user.removeprefix('paxsim-')}": "kafka_password", "kafka_ca": "kafka_ca"}, (name, mounted)
        assert env["PAXSIM__BROKER__SECURITY__PASSWORD_FILE"] == "/run/secrets/kafka_password"
    exporter = services["kafka-exporter"]
    assert "--sasl.username=paxsim-auditor" in exporter["command"]
    assert {s["source"] for s in exporter["secrets"]} == {"kafka_password_auditor", "kafka_ca"}  # and no key-holder credential
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert set(kafka["KAFKA_SUPER_USERS"].split(";")) == {"User:ANONYMOUS", "User:paxsim-admin"}
    # ANONYMOUS (a super user) only exists on listeners bound to the broker container's loopback
    plaintext = [x.split(":")[0] for x in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",") if x.endswith(":PLAINTEXT")]
    for listener in kafka["KAFKA_LISTENERS"].split(","):
        name, _, addr = listener.partition("://")
        assert name not in plaintext or addr.startswith("127.0.0.1:"), listener
    # make-secrets.sh writes a password for every user the stages present, and one per ACL principal
    script = (DEPLOY / "kafka" / "make-secrets.sh").read_text()
    made = set(script.split("for user in ", 1)[1].split(";", 1)[0].split())
    assert {f"paxsim-{u}" for u in made} == set(KAFKA_USERS.values()) | {f"paxsim-{stage}" for stage in ACCESS}
    assert {n for n in doc["secrets"] if n.startswith("kafka_")} == {f"kafka_password_{u}" for u in made} | {"kafka_ca"}


def test_the_acl_file_the_broker_applies_is_the_current_plan() -> None:
    """kafka/init-sasl.sh applies deploy/kafka/acls.txt line by line: it must be what `paxsim topics acls`
    prints from broker/acls.py today."""
    out = subprocess.run([sys.executable, "-m", "paxsim.cli", "topics", "acls"], capture_output=True, text=True, check=True, cwd=ROOT)
    committed = [ln for ln in (DEPLOY / "kafka" / "acls.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert committed == out.stdout.splitlines(), (
        "deploy/kafka/acls.txt is stale: paxsim topics acls > deploy/kafka/acls.txt (keep the header)"
    )
    init = (DEPLOY / "kafka" / "init-sasl.sh").read_text()
    assert "/opt/paxsim-kafka/acls.txt" in init and "kafka-configs.sh" in init
