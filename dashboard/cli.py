"""CLI sub-app of the dashboard (mounted by paxsim/cli.py as ``paxsim dashboard-token``): API tokens."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dashboard.auth import Role, TokenError, TokenStore

console = Console()
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens of the dashboard (roles: admin, operator, auditor).")

ConfigOpt = typer.Option(None, "--config", "-c", envvar="PAXSIM_CONFIG", help="YAML configuration file")
FileOpt = typer.Option(None, "--file", help="token file (default: <state_dir>/dashboard/tokens.json)")


def _store(path: Path | None, config: str | None) -> TokenStore:
    if path is None:
        from core.config import ConfigError, load_settings
        from dashboard.services import tokens_path

        try:
            path = tokens_path(load_settings(config))
        except ConfigError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    return TokenStore(path)


@tokens_app.command("issue")
def issue(
    name: str = typer.Option(..., "--name", help="who holds the token"),
    role: Role = typer.Option(..., "--role", help="admin | operator | auditor"),
    days: float = typer.Option(90.0, "--days", min=0.0, help="lifetime in days (0: never expires)"),
    path: Path | None = FileOpt,
    config: str | None = ConfigOpt,
) -> None:
    """Create a token; it is printed once (only an scrypt hash is stored). Issuing for a name that holds one
    replaces it (its old secret stops working at once)."""
    store = _store(path, config)
    try:
        token = store.issue(name, role, ttl_s=days * 86_400.0 if days > 0 else None)
    except TokenError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"token for [bold]{name}[/] ({role.value}), shown once:", highlight=False)
    print(token)


@tokens_app.command("list")
def list_tokens(path: Path | None = FileOpt, config: str | None = ConfigOpt) -> None:
    """Token holders, roles and expiry (never the tokens)."""
    import time

    table = Table("name", "role", "expires")
    for p, expires in _store(path, config).entries():
        table.add_row(p.name, p.role.value, time.strftime("%Y-%m-%d %H:%M", time.localtime(expires)) if expires else "never")
    console.print(table)


@tokens_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="token holder"), path: Path | None = FileOpt, config: str | None = ConfigOpt) -> None:
    """Revoke every token of ``name``."""
    n = _store(path, config).revoke(name)
    console.print(f"revoked {n} token(s) of {name}")
    if not n:
        raise typer.Exit(1)
