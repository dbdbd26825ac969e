"""Every `paxsim …` command the README shows exists, and every option it writes is one that command takes.

The commands themselves run in their own tests (demo, up, load, detect, redteam, …); this keeps the README from
promising a command or a flag that is gone or was renamed (an `--option` the CLI does not know fails here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_commands() -> list[list[str]]:
    """Each `paxsim …` use in the README, from inline code and from shell blocks, split into words."""
    text = README.read_text()
    found = re.findall(r"`(paxsim [^`]+)`", text)
    found += re.findall(r"^(?:\.venv/bin/)?(paxsim [^#\n]+)", text, flags=re.M)
    out = []
    for cmd in found:
        for one in cmd.replace("\\|", "|").split("`, `"):
            out.append(one.split())
    return out


def _command_path(words: list[str]) -> list[list[str]]:
    """The (sub)command path(s) of a README use: `consent grant/withdraw/list` is three."""
    path = [words[1]]
    if len(words) > 2 and re.fullmatch(r"[a-z][a-z-]*(/[a-z][a-z-]*)*", words[2]) and words[1] in SUBAPPS:
        return [[words[1], sub] for sub in words[2].split("/")]
    return [path]


SUBAPPS = {"consent", "audit", "policy-file", "scenario", "gallery", "dashboard-token", "topics"}


def _help(path: list[str]) -> str:
    from typer.testing import CliRunner

    from paxsim.cli import app

    r = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert r.exit_code == 0, f"`paxsim {' '.join(path)}` from the README does not exist: {r.output[-800:]}"
    return r.output


CASES = sorted(
    {(" ".join(p), tuple(w for w in words if w.lstrip("[").startswith("--"))) for words in _readme_commands() for p in _command_path(words)}
)


def test_the_readme_shows_commands():
    assert len(CASES) >= 15


@pytest.mark.parametrize(("command", "options"), CASES, ids=[f"{c} {' '.join(o)}".strip() for c, o in CASES])
def test_readme_command_exists_with_its_options(command: str, options: tuple[str, ...]):
    text = _help(command.split())
    for opt in options:
        name = opt.strip("[]").split("=")[0]
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"`paxsim {command}` has no option {name}"
