"""The ``paxsim`` command: the demo, the embedded broker, each stage as its own process, and tools."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console

from core.config import ConfigError, Settings, load_settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="paxsim: airport camera analytics whose privacy controls are measured under load."
)
console = Console(stderr=False)

ConfigOpt = typer.Option(None, "--config", "-c", envvar="PAXSIM_CONFIG", help="YAML configuration file")
MetricsOpt = typer.Option(None, "--metrics-port", help="serve Prometheus metrics on this port (0 = any free port)")


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


@app.command()
def demo(
    duration: float = typer.Option(30.0, "--duration", "-d", min=2, max=3600, help="seconds of camera traffic"),
    cameras: int | None = typer.Option(None, "--cameras", "-n", min=1, help="virtual cameras (default: config)"),
    config: str | None = ConfigOpt,
) -> None:
    """Start the embedded broker and every stage, run the synthetic airport, print a summary."""
    from broker.clients import BrokerUnreachable
    from paxsim.demo import run_demo

    settings = _settings(config)
    if cameras is not None:
        settings = settings.model_copy(update={"scenario": settings.scenario.model_copy(update={"cameras": cameras})})
    try:
        summary = asyncio.run(run_demo(settings, duration, console))
    except BrokerUnreachable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(3) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every stage stopped[/]")
        raise typer.Exit(130) from None
    if summary.matched <= 0:
        console.print("[red]no sighting was matched: the pipeline is broken[/]")
        raise typer.Exit(1)


@app.command()
def broker(config: str | None = ConfigOpt, port: int = typer.Option(9092, help="loopback port to listen on")) -> None:
    """Run only the embedded broker (Tansu) with the topics created, until Ctrl-C."""
    from broker.embedded import EmbeddedBroker
    from core.obs import setup_logging

    setup_logging("broker")
    settings = _settings(config)

    async def _run() -> None:
        b = await EmbeddedBroker(settings, port=port).start()
        console.print(f"embedded broker on [bold]{b.bootstrap}[/]; topics created. Ctrl-C stops it.")
        console.print(f"  list topics: .venv/bin/python deploy/read_topic.py {b.bootstrap} --list")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sup = asyncio.create_task(b.supervise())
        await stop.wait()
        sup.cancel()
        await b.stop()

    asyncio.run(_run())


@app.command()
def edge(
    virtual: bool = typer.Option(True, "--virtual/--no-virtual", help="virtual cameras in embedding space"),
    cameras: Path | None = typer.Option(None, "--cameras", help="camera list YAML for real video (files, streams, webcams, synthetic)"),
    duration: float = typer.Option(
        30.0, "--duration", min=0.1, help="seconds to run (video cameras: from the first frame read, so a slow start is not counted)"
    ),
    ground_truth: Path | None = typer.Option(None, "--ground-truth", help="append event id → traveller here (evaluation only)"),
    shard: str = typer.Option("1/1", "--shard", help="I/N: run only cameras whose index modulo N is I-1 (N edge agents split the airport)"),
    track_log: Path | None = typer.Option(
        None, "--track-log", help="with --cameras: append every tracked face here (JSON lines, local; for scoring)"
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="with --cameras: vision worker processes (default: one per core)"),
    config: str | None = ConfigOpt,
    metrics_port: int | None = MetricsOpt,
) -> None:
    """Run an edge agent that publishes sightings."""
    from edge.service import run_video_edge, run_virtual_edge
    from paxsim.service import run_stage

    if cameras is not None:
        from edge.camera import load_cameras

        try:
            configs = load_cameras(cameras)
        except Exception as exc:  # a bad camera file is a clear error, not a traceback
            console.print(f"[red]{cameras}: {exc}[/]")
            raise typer.Exit(2) from None
        run_stage(
            "edge", lambda s, stop: run_video_edge(s, stop, configs, duration, workers=workers, track_log=track_log), metrics_port, config
        )
        return
    if track_log is not None:
        console.print("[red]--track-log needs --cameras FILE.yaml (virtual cameras have no tracks)[/]")
        raise typer.Exit(2)
    if not virtual:
        console.print("[red]--no-virtual needs --cameras FILE.yaml[/]")
        raise typer.Exit(2)
    try:
        i, n = (int(x) for x in shard.split("/"))
        if not 1 <= i <= n:
            raise ValueError
    except ValueError:
        console.print(f"[red]--shard must be I/N with 1 <= I <= N, got {shard!r}[/]")
        raise typer.Exit(2) from None
    from scenario.virtual import VirtualAirport

    async def virtual_edge(s, stop):  # noqa: ANN001, ANN202
        airport = await asyncio.to_thread(VirtualAirport, s.scenario, duration)  # the synthetic airport plays the cameras
        return await run_virtual_edge(s, stop, airport, duration, ground_truth, (i, n))

    run_stage("edge", virtual_edge, metrics_port, config)


@app.command()
def policy(config: str | None = ConfigOpt, metrics_port: int | None = MetricsOpt) -> None:
    """Run the policy gate between the sightings and the admitted topics."""
    from paxsim.service import run_stage
    from policy.gate import run_gate

    run_stage("policy", run_gate, metrics_port, config)


@app.command()
def matcher(config: str | None = ConfigOpt, metrics_port: int | None = MetricsOpt) -> None:
    """Run the matcher (1:N search against the consented gallery)."""
    from matcher.service import run_matcher
    from paxsim.service import run_stage

    run_stage("matcher", run_matcher, metrics_port, config)


@app.command()
def dashboard(config: str | None = ConfigOpt, port: int | None = typer.Option(None, "--port", help="HTTP port (default: config)")) -> None:
    """Run the dashboard API (also serves /metrics and /healthz)."""
    from dashboard.app import run_dashboard
    from paxsim.service import run_stage

    run_stage("dashboard", lambda s, stop: run_dashboard(s, stop, port), None, config)


@app.command()
def redteam(
    config: str | None = ConfigOpt,
    defences_off: bool = typer.Option(
        False, "--defences-off", help="the same run with every tested defence switched off: each check must then say FAIL"
    ),
) -> None:
    """Start a stack, run the catalogue of planted leaks and attacks against it, print what each defence did.

    Exit 1 if any defence failed (with --defences-off: if any check passed, i.e. does not test its defence).
    State goes to ``<state_dir>/redteam`` (emptied first)."""
    from paxsim.redteam import results_table, run_redteam

    settings = _settings(config)
    settings = settings.model_copy(update={"state_dir": Path(settings.state_dir) / "redteam"})
    results = run_redteam(settings, console, defences_off=defences_off)
    console.print(results_table(results))
    failed = sum(not r.passed for r in results)
    print(
        f"redteam: {len(results) - failed} passed, {failed} failed" + (" (defences off: every check should fail)" if defences_off else "")
    )
    if (failed < len(results)) if defences_off else failed:
        raise typer.Exit(1)


@app.command()
def keyd(
    port: int = typer.Option(8700, "--port", help="port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="listen address"),
    policy_file: str | None = typer.Option(None, "--policy", help="policy file (key lifetimes come from it)"),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="allow a non-loopback --host (a private container network only)"),
    state: Path | None = typer.Option(None, "--state", help="sealed state file: keys and erasure tombstones survive a restart"),
    master_key: Path | None = typer.Option(
        None, "--master-key", help="master key file of --state (required with it, outside its directory; made if missing)"
    ),
) -> None:
    """Run the key holder: epoch and subject keys, served to services that present $PAXSIM_KEYD_TOKEN (in memory
    only, or kept sealed in --state)."""
    from policy.keyd import main as keyd_main

    args = (
        ["--port", str(port), "--host", host]
        + (["--policy", policy_file] if policy_file else [])
        + (["--allow-remote"] if allow_remote else [])
        + (["--state", str(state)] if state else [])
        + (["--master-key", str(master_key)] if master_key else [])
    )
    try:
        code = keyd_main(args)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def preflight() -> None:
    """Refuse to start a compose deployment on the example secrets (the one-shot ``preflight`` service)."""
    import os

    from paxsim.preflight import problems

    found = problems(os.environ)
    for line in found:
        console.print(f"[red]preflight:[/] {line}", soft_wrap=True)
    if found:
        console.print(
            "[red]preflight:[/] edit deploy/.env (copied from deploy/.env.example), run deploy/make-keyd-tokens.sh, and start again",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    console.print("preflight: secrets set, none of them an example value")


@app.command()
def schema(out: Path | None = typer.Option(None, "--out", "-o", help="write here instead of stdout")) -> None:
    """Print the JSON Schema of every broker message (and the topic catalogue)."""
    from broker.schema import schema_document

    text = json.dumps(schema_document(), indent=2, sort_keys=True) + "\n"
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


@app.command("up")
def up_command(
    config: str | None = ConfigOpt,
    duration: float | None = typer.Option(None, "--duration", "-d", min=1, help="seconds of traffic, then stop (default: until Ctrl-C)"),
    matchers: int = typer.Option(1, "--matchers", "-m", min=1, max=64, help="matcher processes in the one consumer group"),
    cycle: float = typer.Option(60.0, "--cycle", min=2, help="seconds of one scenario run; the edge replays it until stopped"),
    audit_scan: bool = typer.Option(
        False, "--audit-scan", help="after stopping the stages, run `paxsim audit scan` on the broker and stores; exit 1 unless clean"
    ),
) -> None:
    """Run the whole stack as local processes: embedded broker unless broker.bootstrap is set."""
    from broker.clients import BrokerUnreachable
    from core.obs import port_free
    from paxsim.up import EXIT_BROKER, EXIT_CONFIG, EXIT_STAGE, StageFailed, up

    settings = _settings(config)
    if settings.dashboard.port and not port_free(settings.dashboard.host, settings.dashboard.port):
        console.print(
            f"[red]dashboard.port {settings.dashboard.port} on {settings.dashboard.host} is in use; "
            f"free it or set dashboard.port (0 = any free port, e.g. PAXSIM__DASHBOARD__PORT=0)[/]"
        )
        raise typer.Exit(EXIT_CONFIG)
    try:
        summary = asyncio.run(up(settings, duration, console, matchers=matchers, cycle_s=cycle, audit_scan=audit_scan))
    except BrokerUnreachable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_BROKER) from None
    except StageFailed as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_STAGE) from None
    if audit_scan and summary["audit_scan_exit"] != 0:
        console.print(f"[red]audit scan not clean (exit {summary['audit_scan_exit']})[/]")
        raise typer.Exit(EXIT_STAGE)


@app.command("enrol")
def enrol_command(
    config: str | None = ConfigOpt,
    cycle: float = typer.Option(60.0, "--cycle", min=2, help="scenario length (the enrolled identities do not depend on it)"),
) -> None:
    """Enrol the scenario's consenting travellers into the gallery and consent registry of the state dir."""
    from paxsim.infra import enrol_scenario
    from policy.crypto import HttpKeySource, KeyUnavailable, SubjectVault

    settings = _settings(config)
    try:  # with the run's key holder (compose passes it), every template is sealed under its subject's key
        vault: SubjectVault | None = SubjectVault(HttpKeySource.from_env())
    except KeyUnavailable:
        vault = None
    subjects, grants = enrol_scenario(settings, cycle, vault=vault)
    console.print(
        f"enrolled {subjects} consenting travellers ({grants} purpose grants) of {settings.scenario.travellers} into {Path(settings.state_dir).resolve()}"
    )


def _mount_sub_apps() -> None:
    """Command groups owned by their packages."""
    from dashboard.cli import tokens_app
    from edge.cli import detect as edge_detect
    from matcher.cli import app as gallery_app
    from matcher.cli import identify as matcher_identify
    from paxsim.load import load_command
    from paxsim.topics import app as topics_app
    from policy.cli import audit_app, consent_app, policy_file_app
    from scenario.cli import app as scenario_app

    app.add_typer(tokens_app, name="dashboard-token")
    app.add_typer(topics_app, name="topics")
    app.command("detect")(edge_detect)
    app.add_typer(gallery_app, name="gallery")
    app.command("identify")(matcher_identify)
    app.add_typer(audit_app, name="audit")
    app.add_typer(consent_app, name="consent")
    app.add_typer(policy_file_app, name="policy-file")
    app.add_typer(scenario_app, name="scenario")
    app.command("load")(load_command)


_mount_sub_apps()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":
    app()
