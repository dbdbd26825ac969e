"""Configuration as data: one YAML file plus ``PAXSIM__SECTION__KEY`` environment overrides.

Loaded and validated once at start-up; a bad file or override stops the process with a message naming
the offending key. Processes started together share one configuration: the parent writes its validated
settings to ``effective-config.yaml`` and passes that file to its children as ``PAXSIM_CONFIG``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "PAXSIM__"
CONFIG_ENV = "PAXSIM_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientTuning(_Section):
    """Kafka client settings that must differ between Tansu and real Kafka (see ARCHITECTURE.md)."""

    session_timeout_ms: int = Field(ge=1000)
    heartbeat_interval_ms: int = Field(ge=100)
    fetch_max_wait_ms: int = Field(ge=1)
    # consumers off the data path (dashboard feed, erasure listeners): Tansu answers an empty fetch only after
    # the wait, so every consumer polls 1000/wait times a second; these need not poll 100×/s
    background_fetch_max_wait_ms: int = Field(ge=1)
    request_timeout_ms: int = Field(ge=1000)
    max_message_bytes: int = Field(ge=1024)
    linger_ms: int = Field(ge=0)


EMBEDDED_TUNING = ClientTuning(
    session_timeout_ms=6000,
    heartbeat_interval_ms=1000,
    fetch_max_wait_ms=10,
    background_fetch_max_wait_ms=100,
    request_timeout_ms=15000,
    max_message_bytes=1_000_000,
    linger_ms=5,
)
KAFKA_TUNING = ClientTuning(
    session_timeout_ms=10000,
    heartbeat_interval_ms=3000,
    fetch_max_wait_ms=50,
    background_fetch_max_wait_ms=500,
    request_timeout_ms=30000,
    max_message_bytes=1_000_000,
    linger_ms=5,
)


class KafkaSecurity(_Section):
    """How clients authenticate to Kafka. PLAINTEXT (the default) for the embedded broker and the plain testbed;
    SASL_SSL + SCRAM-SHA-512 for deploy/docker-compose.sasl.yml. The password is read from a file (a compose
    secret), never written into the configuration."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str | None = None
    password_file: Path | None = Field(default=None, description="file holding the SASL password (e.g. /run/secrets/...)")
    ca_file: Path | None = Field(default=None, description="PEM CA bundle that signed the brokers' certificates; empty = system CAs")

    @model_validator(mode="after")
    def _check(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL_") and not (self.username and self.password_file):
            raise ValueError(f"protocol {self.protocol} needs username and password_file")
        return self


class BrokerSettings(_Section):
    bootstrap: str | None = Field(default=None, description="host:port[,host:port] of an external Kafka; empty = embedded Tansu")
    profile: Literal["auto", "embedded", "kafka"] = "auto"
    tuning: dict[str, int] = Field(default_factory=dict, description="overrides of ClientTuning fields")
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    connect_timeout_s: float = Field(default=15.0, gt=0)
    embedded_port: int = Field(default=0, ge=0, le=65535, description="0 = pick a free port")
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)

    @property
    def embedded(self) -> bool:
        return not self.bootstrap

    def client_tuning(self) -> ClientTuning:
        profile = self.profile
        if profile == "auto":
            profile = "embedded" if self.embedded else "kafka"
        base = EMBEDDED_TUNING if profile == "embedded" else KAFKA_TUNING
        return base.model_copy(update=self.tuning)

    @model_validator(mode="after")
    def _check_tuning_keys(self) -> BrokerSettings:
        unknown = set(self.tuning) - set(ClientTuning.model_fields)
        if unknown:
            raise ValueError(f"unknown broker.tuning keys: {sorted(unknown)}")
        return self


class RetentionSettings(_Section):
    """Kafka ``retention.ms`` of the topics that carry no biometric payload. Sightings, matches and tracks take
    their lifetimes from the policy file (retention.sightings_s and each purpose's retention_s), which is also
    what crypto-shredding and the stores enforce; on the embedded broker retention.ms is ignored anyway."""

    counts_s: float = Field(default=86400.0, gt=0)
    audit_s: float = Field(default=30 * 86400.0, gt=0)
    deadletter_s: float = Field(default=86400.0, gt=0)


class ScenarioSettings(_Section):
    file: Path | None = Field(default=None, description="scenario YAML (zones, cameras, population); empty = the built-in small airport")
    seed: int = 7
    cameras: int = Field(default=8, ge=1, le=10_000, description="virtual cameras; beyond the scenario's own they replicate them")
    travellers: int = Field(default=300, ge=1)
    events_per_second: float = Field(default=150.0, gt=0, description="total sighting rate, all virtual cameras")
    live_camera: str | None = Field(
        default="cam-security-1",
        description="a face camera of the built-in airport that the demo renders live and runs through the real edge "
        "(decode, detect, track, embed) beside the virtual cameras; empty = none",
    )
    live_camera_fps: float = Field(default=5.0, gt=0, le=30, description="frames per second the live camera's edge analyses")


class PolicySettings(_Section):
    file: Path | None = Field(
        default=None,
        description="the policy file (zones, purposes, retention, consent and export rules); "
        "empty = $PAXSIM_POLICY, else the packaged policy/default-policy.yaml",
    )


class MatcherSettings(_Section):
    site_file: Path | None = Field(
        default=None,
        description="YAML with the site's zones (name, length_m) and walking routes (path), for trajectory plausibility; "
        "a scenario file qualifies; empty = scenario.file, else the packaged matcher/default-site.yaml",
    )
    threshold: float = Field(
        default=0.42,
        gt=0,
        description="Euclidean distance; below = same person. Calibrated on the synthetic population (docs/scenario.md: "
        "EER threshold 0.393); dlib's 0.6 is for real faces and would match 74 % of different synthetic identities",
    )
    margin: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="name the nearest subject only if the second nearest is at least this much farther (0: off); the "
        "default removes nearly every wrong identity at a small cost in identifications; for a stated FPIR, calibrate "
        "both with the threshold on the population the cameras see (bench.portraits --impostors, docs/load.md)",
    )
    metric_file: Path | None = Field(
        default=None,
        description="a learned metric (`paxsim scenario metric`, WCCN): templates and sightings are compared in its "
        "space, with the threshold and margin calibrated in the file (threshold and margin above then do not apply); "
        "for real or rendered cameras, not the virtual ones (their noise model is in the embedder's own space)",
    )
    batch_max: int = Field(default=256, ge=1)
    dedupe_window_s: float = Field(default=600.0, gt=0)
    snapshot_every_s: float = Field(default=5.0, gt=0, description="seconds between matcher state snapshots (when changed)")


class DashboardSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=0, le=65535)
    max_stream_clients: int = Field(
        default=32, ge=0, le=10_000, description="live pages (/api/stream) served at once; more get 503 with Retry-After"
    )


class MetricsSettings(_Section):
    host: str = "127.0.0.1"
    base_port: int = Field(default=0, ge=0, le=65535, description="0 = each service picks a free port")


class Settings(_Section):
    state_dir: Path = Path("var")
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    scenario: ScenarioSettings = Field(default_factory=ScenarioSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    matcher: MatcherSettings = Field(default_factory=MatcherSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)


class ConfigError(Exception):
    """The configuration file or an override is invalid; the message says which key and why."""


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml_mapping(path: Path, what: str, error: type[Exception], empty_ok: bool = False) -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or ``error`` saying what is wrong with it (``what``: "config file");
    ``empty_ok``: an empty file reads as ``{}``."""
    try:
        loaded = yaml.safe_load(path.read_text())
        if loaded is None and empty_ok:
            loaded = {}
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise error(f"{path}: the top level must be a mapping")
    return loaded


def validation_lines(exc: ValidationError) -> str:
    """One indented line per pydantic error: the dotted key, then the message."""
    return "\n".join(f"  {'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the YAML file (``path``, else ``$PAXSIM_CONFIG``, else defaults) and apply env overrides."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    if path:
        data = read_yaml_mapping(Path(path), "config file", ConfigError, empty_ok=True)
    data = _merge(data, _env_overrides(environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        source = str(path) if path else "defaults"
        raise ConfigError(f"invalid configuration ({source} + {ENV_PREFIX}* overrides):\n" + validation_lines(exc)) from None
