from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from scenario.cli import app


def test_render_command_writes_outputs(tiny_yaml: Path, tmp_path: Path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["render", "--out", str(out), "--seconds", "1", "--scenario", str(tiny_yaml)])
    assert res.exit_code == 0, res.output
    for cam in ("cam-a", "cam-b"):
        assert (out / cam / "video.mp4").stat().st_size > 0
        assert (out / cam / "gt" / "gt.txt").exists()
    assert (out / "manifest.json").exists()


def test_render_command_refuses_bad_scenario_and_camera(tiny_yaml: Path, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_yaml.read_text().replace("zone: gate, position", "zone: mars, position"))
    res = CliRunner().invoke(app, ["render", "--out", str(tmp_path / "o"), "--scenario", str(bad)])
    assert res.exit_code == 2 and "mars" in res.output
    res = CliRunner().invoke(app, ["render", "--out", str(tmp_path / "o"), "--scenario", str(tiny_yaml), "--camera", "cam-zzz"])
    assert res.exit_code == 2 and "cam-zzz" in res.output
