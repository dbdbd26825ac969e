"""CLI sub-apps of the policy package (mounted by paxsim/cli.py):

* ``audit_app``        → ``paxsim audit verify`` (and ``paxsim audit scan`` when the scanner is present)
* ``consent_app``      → ``paxsim consent grant | withdraw | list``
* ``policy_file_app``  → ``paxsim policy-file check | show``

The state directory comes from ``--state-dir``, else the configuration (``state_dir``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from policy.audit import AuditLog, audit_dir, verify
from policy.consent import ConsentError, ConsentRegistry, registry_path
from policy.policyfile import DEFAULT_POLICY_PATH, POLICY_ENV, UNSAFE_ENV, PolicyError, load_policy, parse_policy

console = Console()
audit_app = typer.Typer(no_args_is_help=True, help="Tamper-evident audit log: verify the hash chains, scan for leaks.")
consent_app = typer.Typer(no_args_is_help=True, help="Consent registry: grant, withdraw (queues erasure), list.")
policy_file_app = typer.Typer(no_args_is_help=True, help="The policy file: validate it, show the policy in force.")

DASHBOARD_TOKEN_ENV = "PAXSIM_DASHBOARD_TOKEN"  # the scanner's dashboard credential (auditor), never on the command line
StateOpt = typer.Option(None, "--state-dir", help="state directory (default: the configuration's state_dir)")
ConfigOpt = typer.Option(None, "--config", "-c", envvar="PAXSIM_CONFIG", help="YAML configuration file")


def _state_dir(state_dir: Path | None, config: str | None) -> Path:
    """``--state-dir`` as given; else the configuration's state dir, or the run dir of the ``paxsim up`` running
    with it (one registry per configuration: a withdrawal goes where the running stack reads)."""
    if state_dir is not None:
        return state_dir
    from core.config import ConfigError, load_settings
    from core.paths import live_run_dir

    try:
        sd = Path(load_settings(config).state_dir)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    live = live_run_dir(sd)
    if live is not None:
        print(f"a running `paxsim up` uses this configuration: working on its state in {live}", file=sys.stderr)
        return live
    return sd


def _policy_version() -> str:
    try:
        return load_policy().version
    except PolicyError:
        return ""


# ---------------------------------------------------------------------------------------------- audit


@audit_app.command("verify")
def audit_verify(
    files: list[Path] | None = typer.Argument(None, help="chain files (default: every chain in <state>/audit)"),
    state_dir: Path | None = StateOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Check every audit chain: changed, removed, reordered, inserted or torn records, and (with the run's key
    holder in $PAXSIM_KEYD_URL) against its signed checkpoints: a cut tail, a rewritten chain, a deleted chain
    file. Exit 1 if any."""
    anchored = False
    problems: list = []  # what only the key holder's checkpoints show (policy.notary.AnchorProblem)
    if files:
        reports = [verify(f) for f in files]
    else:
        from policy.crypto import HttpKeySource, KeyUnavailable
        from policy.notary import verify_with

        d = audit_dir(_state_dir(state_dir, config))
        try:
            keys = HttpKeySource.from_env()
        except KeyUnavailable:
            keys = None
        try:
            reports, problems, anchored = verify_with(d, keys)
        except KeyUnavailable as exc:
            console.print(f"[red]the key holder holds the checkpoints and did not answer: {exc}[/]", soft_wrap=True)
            raise typer.Exit(2) from None
        if not reports and not problems:
            console.print(f"no audit chains in {d}")
            raise typer.Exit(0)
    table = Table("chain", "records", "head seq", "head hash", "problems")
    bad = 0
    for r in reports:
        table.add_row(
            r.path.name, str(r.records), str(r.head[0]), r.head[1][:16], "[green]none[/]" if r.ok else f"[red]{len(r.problems)}[/]"
        )
        bad += len(r.problems)
    console.print(table)
    for r in reports:
        for p in r.problems:
            console.print(f"[red]{r.path}[/]: {p}")
    for ap in problems:
        console.print(f"[red]{ap}[/]", soft_wrap=True)
    bad += len(problems)
    if not files:
        console.print(
            "checked against the key holder's signed checkpoints"
            if anchored
            else "[yellow]not anchored: no key holder ($PAXSIM_KEYD_URL): a cut tail, a rewritten or deleted chain cannot be seen[/]",
            soft_wrap=True,
        )
    if bad:
        console.print(f"[red]{bad} problem(s): the audit log was altered or damaged[/]")
        raise typer.Exit(1)
    console.print("[green]every chain verifies[/]")


@audit_app.command("export")
def audit_export(
    purpose: str = typer.Argument(..., help="an exportable purpose of the policy, e.g. model-training"),
    state_dir: Path | None = StateOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Export the tracks topic for one purpose: only subjects who consented to it, by pseudonym, every decision
    audited (chain ``export``). Written to <state>/exports/, where ``audit scan`` checks it like every store."""
    import asyncio

    from broker.clients import BrokerUnreachable
    from core.config import ConfigError, load_settings
    from policy.crypto import HttpKeySource, KeyUnavailable, SubjectVault
    from policy.export import export_tracks, exports_dir

    try:
        settings = load_settings(config)
        pol = load_policy()
    except (ConfigError, PolicyError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if state_dir is not None:
        settings = settings.model_copy(update={"state_dir": state_dir})
    try:
        vault = SubjectVault(HttpKeySource.from_env())
    except KeyUnavailable as exc:
        console.print(f"[red]no key holder ({exc}): pseudonymous tracks cannot be checked against consent[/]")
        raise typer.Exit(2) from None
    out = exports_dir(settings.state_dir) / f"{purpose}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
    reg = ConsentRegistry.open(registry_path(settings.state_dir))
    try:
        res = asyncio.run(export_tracks(settings, pol, reg, vault, purpose, out, AuditLog.in_state_dir(settings.state_dir, "export")))
    except BrokerUnreachable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(3) from None
    console.print(f"exported {res.exported} record(s) to {res.path}; refused {res.refused}; unlinkable (erased) {res.unlinkable}")


# ---------------------------------------------------------------------------------------------- consent


def _registry(state_dir: Path | None, config: str | None) -> tuple[ConsentRegistry, Path]:
    sd = _state_dir(state_dir, config)
    return ConsentRegistry.open(registry_path(sd)), sd


@consent_app.command("grant")
def consent_grant(
    subject: str = typer.Argument(..., help="subject id, e.g. pax-00012"),
    purpose: str = typer.Argument(..., help="purpose, e.g. boarding"),
    zone: list[str] | None = typer.Option(None, "--zone", "-z", help="limit to these zones (repeat; default: all)"),
    days: float = typer.Option(365.0, "--days", min=0.0, help="validity in days"),
    ttl_s: float | None = typer.Option(None, "--ttl-s", min=0.001, help="validity in seconds (overrides --days)"),
    state_dir: Path | None = StateOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Grant (or renew) a subject's consent for one purpose."""
    pol = load_policy()
    if purpose not in pol.purposes:
        console.print(f"[red]unknown purpose {purpose!r}; the policy defines {sorted(pol.purposes)}[/]")
        raise typer.Exit(2)
    reg, sd = _registry(state_dir, config)
    try:
        rec = reg.consent(subject, purpose, ttl_s=ttl_s if ttl_s is not None else days * 86400.0, zones=zone or ())
    except ConsentError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    with AuditLog.in_state_dir(sd, "consent") as audit:
        audit.append("consent.grant", "allow", rule=purpose, subject_id=subject, policy_version=pol.version)
    console.print(
        f"granted {subject} → {purpose} until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(rec.expires_at))}"
        f" in {', '.join(rec.zones) if rec.zones else 'every zone'}"
    )


@consent_app.command("withdraw")
def consent_withdraw(
    subject: str = typer.Argument(..., help="subject id"),
    purpose: str | None = typer.Option(None, "--purpose", "-p", help="only this purpose (default: all)"),
    state_dir: Path | None = StateOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Withdraw consent; queues an erasure request that the services publish and act on."""
    reg, sd = _registry(state_dir, config)
    req = reg.withdraw(subject, purpose=purpose)
    if req is None:
        console.print(f"[yellow]{subject} has no active consent{' for ' + purpose if purpose else ''}: nothing to withdraw[/]")
        raise typer.Exit(1)
    with AuditLog.in_state_dir(sd, "consent") as audit:
        audit.append(
            "consent.withdraw", "allow", rule=purpose or "*", subject_id=subject, object_id=req.request_id, policy_version=_policy_version()
        )
    console.print(f"withdrawn: {subject} ({purpose or 'every purpose'}); erasure request {req.request_id} queued")


@consent_app.command("list")
def consent_list(
    subject: str | None = typer.Option(None, "--subject", "-s"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
    state_dir: Path | None = StateOpt,
    config: str | None = ConfigOpt,
) -> None:
    """List consent records and their status."""
    reg, _sd = _registry(state_dir, config)
    now = time.time()
    recs = sorted((r for r in reg.all() if subject is None or r.subject_id == subject), key=lambda r: (r.subject_id, r.purpose))
    if as_json:
        for r in recs:
            print(json.dumps(r.as_row(now)))
        return
    table = Table("subject", "purpose", "zones", "expires", "status")
    for r in recs:
        st = r.status(now)
        color = {"active": "green", "withdrawn": "red", "expired": "yellow"}.get(st, "white")
        table.add_row(
            r.subject_id,
            r.purpose,
            ",".join(r.zones) or "*",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.expires_at)),
            f"[{color}]{st}[/]",
        )
    console.print(table)
    pending = reg.pending_erasures()
    console.print(f"{len(recs)} record(s); {len(pending)} erasure request(s) not yet published")


# ---------------------------------------------------------------------------------------------- policy file


@policy_file_app.command("check")
def policy_check(
    path: Path | None = typer.Argument(None, help="policy file (default: $PAXSIM_POLICY or the packaged one)"),
    unsafe_no_policy: bool = typer.Option(
        False,
        "--unsafe-no-policy",
        help=(f"accept 'enforcement: off' (measurement only; services need {UNSAFE_ENV}=1 in their environment)"),
    ),
) -> None:
    """Validate a policy file; print its version, or every error with its line. Exit 1 if invalid."""
    try:
        if unsafe_no_policy:
            src = path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH
            pol = parse_policy(Path(src).read_text(), str(src), unsafe_no_policy=True)
        else:
            pol = load_policy(path)
    except OSError as exc:
        console.print(f"[red]cannot read: {exc}[/]")
        raise typer.Exit(1) from None
    except PolicyError as exc:
        for issue in exc.issues:
            console.print(f"[red]{issue}[/]", highlight=False, soft_wrap=True)  # file:line:col stays one line, as editors parse it
        raise typer.Exit(1) from None
    if pol.enforcement == "off":
        console.print("[bold red]enforcement: off: every privacy control is disabled (measurement only)[/]")
    console.print(f"valid: version [bold]{pol.version}[/] ({len(pol.zones)} zones, {len(pol.purposes)} purposes)")


@policy_file_app.command("show")
def policy_show(path: Path | None = typer.Argument(None)) -> None:
    """Print the policy in force with every default filled in, as JSON."""
    try:
        pol = load_policy(path)
    except PolicyError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    print(json.dumps({"version": pol.version, "source": pol.source, **pol.model_dump(mode="json")}, indent=2))


@audit_app.command("scan")
def audit_scan(
    state_dir: Path | None = StateOpt,
    config: str | None = ConfigOpt,
    bootstrap: str | None = typer.Option(None, "--bootstrap", help="broker host:port (default: the configuration's)"),
    policy_path: Path | None = typer.Option(None, "--policy", help="policy file (default: $PAXSIM_POLICY or packaged)"),
    show: int = typer.Option(20, "--show", help="print at most this many findings"),
    no_keys: bool = typer.Option(False, "--no-keys", help="scan without a key holder (sealed payloads and pseudonyms unreadable)"),
    metrics: list[str] | None = typer.Option(
        None, "--metrics", help="STAGE=URL of a running stage's /metrics: its label values are scanned (repeat)"
    ),
    dashboard: str | None = typer.Option(
        None,
        "--dashboard",
        help=f"base URL of the running dashboard: its in-memory state is scanned (auditor token in ${DASHBOARD_TOKEN_ENV})",
    ),
) -> None:
    """Read every topic from offset 0 and every store; report (a) expired-readable, (b) non-consented, (c) audit gaps.

    Exit 1 if any count is not 0. Keys come from the run's key holder (PAXSIM_KEYD_URL / PAXSIM_KEYD_TOKEN).
    With --metrics / --dashboard the running stages' metric labels and the dashboard's state are scanned too.
    """
    import asyncio

    from rich.progress import Progress

    from broker.clients import BrokerUnreachable
    from core.config import ConfigError, load_settings
    from policy.crypto import HttpKeySource, KeyUnavailable
    from policy.scan import run_scan

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    upd: dict = {}
    if state_dir is not None:
        upd["state_dir"] = state_dir
    if bootstrap is not None:
        upd["broker"] = settings.broker.model_copy(update={"bootstrap": bootstrap})
    settings = settings.model_copy(update=upd)
    try:
        pol = load_policy(policy_path)
    except PolicyError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    try:
        keys = HttpKeySource.from_env()
        keys.chain("sightings")
    except KeyUnavailable as exc:
        if not no_keys:  # without keys no pseudonym resolves: a clean result would say nothing
            console.print(
                f"[red]no key holder ({exc}): pseudonyms and sealed payloads cannot be checked; "
                "run with the key holder's PAXSIM_KEYD_URL/PAXSIM_KEYD_TOKEN, or --no-keys to scan anyway[/]"
            )
            raise typer.Exit(2) from None
        console.print(f"[yellow]no key holder ({exc}): sealed payloads count as unreadable, pseudonyms as unlinkable[/]")
        keys = None
    from policy.consent import consent_path, open_consent
    from policy.livestores import DashboardStore, LiveStoreError, MetricsStore
    from policy.scan import state_stores

    consent = open_consent(Path(settings.state_dir), consent_path(settings))
    stores: list = state_stores(settings, consent)
    try:  # the running stages first: they are read as they are now
        if metrics:
            urls = {item.partition("=")[0]: item.partition("=")[2] or item for item in metrics}
            stores.append(MetricsStore.fetch(urls, consent.subjects(), time.time()))
        if dashboard:
            token = os.environ.get(DASHBOARD_TOKEN_ENV, "")
            if not token:
                console.print(f"[red]--dashboard needs an auditor token in ${DASHBOARD_TOKEN_ENV}[/]")
                raise typer.Exit(2)
            stores.append(DashboardStore.fetch(dashboard, token))
    except LiveStoreError as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(3) from None
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("scanning", total=None)
        try:
            report = asyncio.run(
                run_scan(settings, pol, keys, stores=stores, consent=consent, progress=lambda what: bar.update(task, description=what))
            )
        except BrokerUnreachable as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(3) from None
    a, b, c = report.counts
    table = Table("source", "items read", "undecodable")
    for src, n in sorted(report.records.items()):
        table.add_row(src, str(n), str(report.undecodable.get(src, 0)))
    console.print(table)
    for f in report.findings[:show]:
        console.print(str(f), highlight=False)
    if len(report.findings) > show:
        console.print(f"... and {len(report.findings) - show} more")
    d = report.delivery
    if d:
        dead = ", ".join(f"{k} {v}" for k, v in sorted(d["dead_lettered"].items())) or "none"
        console.print(
            f"delivery: admitted {d['admitted']:,}, decided {d['decided']:,}, refused by a matcher (dead letter) "
            f"{d['dead_lettered_admitted']:,}, in flight {d['in_flight']:,}, lost {d['lost']:,}, "
            f"decided twice {d['decided_twice']:,}; dead-lettered: {dead}",
            soft_wrap=True,
        )
    console.print(f"unlinkable references (subject erased, key destroyed): {report.unlinkable:,}")
    console.print(f"not scanned by design: {'; '.join(report.excluded)}")
    color = "green" if report.clean else "red"
    console.print(f"[{color}]expired-readable {a} / non-consented {b} / audit {c}[/]")
    if not report.clean:
        raise typer.Exit(1)
