"""The policy CLI sub-apps, as the lead mounts them."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from policy.cli import audit_app, consent_app, policy_file_app
from policy.consent import ConsentRegistry, registry_path

app = typer.Typer()
app.add_typer(audit_app, name="audit")
app.add_typer(consent_app, name="consent")
app.add_typer(policy_file_app, name="policy-file")
runner = CliRunner()


def test_grant_withdraw_list_and_verify(tmp_path: Path):
    sd = ["--state-dir", str(tmp_path)]
    r = runner.invoke(app, ["consent", "grant", "pax-1", "boarding", "--zone", "gate", *sd])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["consent", "grant", "pax-1", "selling-data", *sd]).exit_code == 2
    r = runner.invoke(app, ["consent", "withdraw", "pax-1", *sd])
    assert r.exit_code == 0 and "erasure request" in r.output
    assert runner.invoke(app, ["consent", "withdraw", "pax-1", *sd]).exit_code == 1
    r = runner.invoke(app, ["consent", "list", "--json", *sd])
    assert '"status": "withdrawn"' in r.output
    reg = ConsentRegistry.open(registry_path(tmp_path))
    assert len(reg.pending_erasures()) == 1 and not reg.is_allowed("pax-1", "boarding", "gate", 1e12)
    r = runner.invoke(app, ["audit", "verify", *sd])
    assert r.exit_code == 0 and "every chain verifies" in r.output
    chain = tmp_path / "audit" / "consent.jsonl"
    chain.write_text(chain.read_text().replace("consent.grant", "consent.grunt"))
    r = runner.invoke(app, ["audit", "verify", *sd])
    assert r.exit_code == 1 and "changed" in r.output


def test_policy_file_check_prints_lines(tmp_path: Path):
    bad = tmp_path / "p.yaml"
    bad.write_text("zones:\n  egate: {biometric: true, purpose: nope}\n")
    r = runner.invoke(app, ["policy-file", "check", str(bad)])
    assert r.exit_code == 1 and "p.yaml:2:" in r.output and "unknown purpose 'nope'" in r.output
    r = runner.invoke(app, ["policy-file", "check"])
    assert r.exit_code == 0 and "airport-default@" in r.output


def test_policy_file_check_refuses_enforcement_off_without_the_acknowledgement(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PAXSIM_UNSAFE_NO_POLICY", raising=False)
    off = tmp_path / "off.yaml"
    off.write_text("label: measure\nenforcement: off\n")
    r = runner.invoke(app, ["policy-file", "check", str(off)])
    assert r.exit_code == 1 and "off.yaml:2:" in r.output and "unsafe-no-policy" in r.output
    r = runner.invoke(app, ["policy-file", "check", "--unsafe-no-policy", str(off)])
    assert r.exit_code == 0 and "measurement only" in r.output and "measure@" in r.output


def test_audit_verify_finds_a_decision_changed_inside_a_batch(tmp_path: Path):
    from policy.audit import AuditLog

    with AuditLog.in_state_dir(tmp_path, "gate") as log:
        log.append_batch("gate.decisions", [("e1", "gate", "", "allow", "p@1", None), ("e2", "gate", "fresh", "deny", "p@1", None)])
    sd = ["--state-dir", str(tmp_path)]
    assert runner.invoke(app, ["audit", "verify", *sd]).exit_code == 0
    chain = tmp_path / "audit" / "gate.jsonl"
    chain.write_text(chain.read_text().replace('"fresh","deny"', '"fresh","allow"'))
    r = runner.invoke(app, ["audit", "verify", *sd])
    assert r.exit_code == 1 and "changed" in r.output and "inside the batch" in r.output
