"""``paxsim topics create | list``: the topic catalogue on any Kafka-protocol broker (mounted by paxsim/cli.py).

``create`` is what the compose testbed's one-shot ``topic-init`` service runs: it waits for the broker,
creates every missing catalogue topic with ``broker.partitions`` partitions and its ``retention.ms``, then
checks what exists. It exits non-zero when a topic is missing afterwards or when the admitted and matches
topics differ in partition count (the matcher writes the match for input partition *p* to matches partition
*p*, see ARCHITECTURE.md). Fewer partitions than configured is a warning: Kafka can add partitions
(``kafka-topics.sh --alter --partitions N``), the embedded broker cannot.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.table import Table

from broker import topics as t
from broker.clients import BrokerUnreachable, bootstrap_of, connect, security_kwargs
from core.config import ConfigError, Settings, load_settings
from policy.policyfile import load_policy

app = typer.Typer(no_args_is_help=True, help="Kafka topics of the catalogue: create them (compose topic-init), list them.")
console = Console()

ConfigOpt = typer.Option(None, "--config", "-c", envvar="PAXSIM_CONFIG", help="YAML configuration file")
BootstrapOpt = typer.Option(None, "--bootstrap", "-b", help="host:port of the broker (default: broker.bootstrap)")

EXIT_CONFIG, EXIT_BROKER, EXIT_CHECK = 2, 3, 1


@dataclass(frozen=True, slots=True)
class TopicState:
    name: str
    expected_partitions: int
    partitions: int | None  # None = missing
    replication: int | None
    retention_ms: str | None

    @property
    def status(self) -> str:
        if self.partitions is None:
            return "missing"
        if self.partitions < self.expected_partitions:
            return "fewer partitions"
        return "ok"


async def describe_catalogue(settings: Settings, bootstrap: str) -> list[TopicState]:
    """State of every catalogue topic. Only existing topics are described: a metadata request for a missing
    topic may auto-create it (the embedded broker does, with 4 partitions)."""
    from aiokafka.admin import AIOKafkaAdminClient  # here: the Kafka client is not needed for --help
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=settings.broker.client_tuning().request_timeout_ms, **security_kwargs(settings)
    )
    await connect(admin, bootstrap, settings.broker.connect_timeout_s, what="admin client")
    try:
        existing = set(await admin.list_topics())
        names = [topic.name for topic in t.ALL if topic.name in existing]
        described = {d["topic"]: d for d in await admin.describe_topics(names)} if names else {}
        retention: dict[str, str] = {}
        if names:
            resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
            for resp in await admin.describe_configs(resources):
                for res in resp.resources:
                    for entry in res[4]:
                        if entry[0] == "retention.ms":
                            retention[res[3]] = entry[1]
    finally:
        await admin.close()
    out = []
    for topic in t.ALL:
        d = described.get(topic.name)
        parts = d["partitions"] if d else None
        out.append(
            TopicState(
                name=topic.name,
                expected_partitions=settings.broker.partitions,
                partitions=len(parts) if parts is not None else None,
                replication=len(parts[0]["replicas"]) if parts else None,
                retention_ms=retention.get(topic.name),
            )
        )
    return out


def problems(states: list[TopicState]) -> list[str]:
    """What makes the catalogue unusable: missing topics, admitted/matches partition counts that differ."""
    out = [f"topic {s.name} is missing" for s in states if s.partitions is None]
    by_name = {s.name: s for s in states}
    a, m = by_name[t.ADMITTED.name], by_name[t.MATCHES.name]
    if a.partitions is not None and m.partitions is not None and a.partitions != m.partitions:
        out.append(
            f"{t.ADMITTED.name} has {a.partitions} partitions but {t.MATCHES.name} has {m.partitions}: "
            "the matcher needs them equal (it writes the match for input partition p to matches partition p)"
        )
    return out


def states_table(states: list[TopicState], bootstrap: str) -> Table:
    tab = Table(title=f"paxsim topics on {bootstrap}")
    for col in ("topic", "partitions", "replicas", "retention.ms", "status"):
        tab.add_column(col, justify="left" if col in ("topic", "status") else "right")
    for s in states:
        colour = {"ok": "green", "missing": "red"}.get(s.status, "yellow")
        parts = (
            "-"
            if s.partitions is None
            else f"{s.partitions}" + ("" if s.partitions == s.expected_partitions else f" (config {s.expected_partitions})")
        )
        tab.add_row(s.name, parts, str(s.replication or "-"), s.retention_ms or "-", f"[{colour}]{s.status}[/]")
    return tab


def _settings(config: str | None, bootstrap: str | None) -> tuple[Settings, str]:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_CONFIG) from None
    if bootstrap:
        settings = settings.model_copy(update={"broker": settings.broker.model_copy(update={"bootstrap": bootstrap})})
    try:
        return settings, bootstrap_of(settings)
    except BrokerUnreachable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_BROKER) from None


def _report(states: list[TopicState], bootstrap: str) -> int:
    console.print(states_table(states, bootstrap))
    for s in states:
        if s.status == "fewer partitions":
            console.print(
                f"[yellow]{s.name} has {s.partitions} partitions, the configuration asks for {s.expected_partitions}; "
                f"on Kafka: kafka-topics.sh --bootstrap-server {bootstrap} --alter --topic {s.name} --partitions {s.expected_partitions}[/]"
            )
    bad = problems(states)
    for p in bad:
        console.print(f"[red]{p}[/]")
    return EXIT_CHECK if bad else 0


@app.command("create")
def create(
    config: str | None = ConfigOpt,
    bootstrap: str | None = BootstrapOpt,
    wait: float = typer.Option(60.0, "--wait", min=0, help="seconds to keep retrying while the broker is not reachable yet"),
) -> None:
    """Create every missing catalogue topic (partitions, retention.ms), then check them. Idempotent."""
    settings, boot = _settings(config, bootstrap)

    async def _run() -> tuple[list[str], list[TopicState]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            try:
                from broker.admin import ensure_topics  # the Kafka client, only when a command talks to a broker

                created = await ensure_topics(settings, boot, load_policy(settings.policy.file).topic_retention())
                return created, await describe_catalogue(settings, boot)
            except BrokerUnreachable:
                if loop.time() >= deadline:
                    raise
                console.print(f"broker {boot} not reachable yet; retrying")
                await asyncio.sleep(2.0)

    try:
        created, states = asyncio.run(_run())
    except BrokerUnreachable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_BROKER) from None
    console.print(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else " (all existed)"))
    raise typer.Exit(_report(states, boot))


@app.command("acls")
def acls(
    prefix: str = typer.Option(
        "paxsim-", "--user-prefix", help="SCRAM user of a stage: PREFIX + stage (edge, gate, matcher, dashboard, auditor)"
    ),
    bootstrap: str = typer.Option("localhost:19092", "--bootstrap", help="the broker listener the init step talks to"),
) -> None:
    """Print the kafka-acls.sh commands that give each stage's Kafka user exactly the topics it reads and writes
    (broker/acls.py), one per line, for an init step on a broker with an authorizer."""
    import shlex

    from broker.acls import ACCESS, acl_arguments

    for args in acl_arguments({stage: f"User:{prefix}{stage}" for stage in ACCESS}, bootstrap):
        print(shlex.join(["kafka-acls.sh", *args]))


@app.command("list")
def list_(
    config: str | None = ConfigOpt,
    bootstrap: str | None = BootstrapOpt,
    check: bool = typer.Option(False, "--check", help="exit 1 when a topic is missing or admitted/matches partitions differ"),
) -> None:
    """Show every catalogue topic: partitions, replicas, retention.ms, status. Creates nothing."""
    settings, boot = _settings(config, bootstrap)
    try:
        states = asyncio.run(describe_catalogue(settings, boot))
    except BrokerUnreachable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_BROKER) from None
    code = _report(states, boot)
    raise typer.Exit(code if check else 0)


if __name__ == "__main__":
    app()
