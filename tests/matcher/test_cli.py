"""Gallery CLI plumbing with a stand-in embedder (consent gating, views, erasure), plus one run with the
real dlib models on a synthetic face when the scenario face generator is available."""

import numpy as np
import pytest
from typer.testing import CliRunner

import matcher.cli as cli
from matcher.gallery import Gallery

runner = CliRunner()


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "paxsim.yaml"
    p.write_text(f"state_dir: {tmp_path / 'state'}\n")
    return str(p)


@pytest.fixture
def fake_embed(monkeypatch):
    """Each image file holds a seed; its 'face' is a fixed vector for that seed."""

    def faces(path, allow_many=False):
        text = path.read_text().strip()
        if text == "none":
            raise cli.ImageError(f"{path}: no face found")
        rng = np.random.default_rng(int(text))
        return [(10, 20, 64, 64)], rng.normal(0, 0.05, (1, 128)).astype(np.float32)

    monkeypatch.setattr(cli, "faces_in_image", faces)
    return cli.embed_image


def img(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content)
    return str(p)


def test_enrol_list_identify_remove(tmp_path, cfg, fake_embed):
    a1, a2, b = img(tmp_path, "a1.png", "1"), img(tmp_path, "a2.png", "2"), img(tmp_path, "b.png", "3")
    r = runner.invoke(cli.app, ["enrol", "--id", "alice", "--consent", "boarding,egate-verification", a1, a2, "-c", cfg])
    assert r.exit_code == 0, r.output
    assert "2 view(s) added" in r.output
    assert runner.invoke(cli.app, ["enrol", "--id", "bob", "--consent", "boarding", b, "-c", cfg]).exit_code == 0
    r = runner.invoke(cli.app, ["list", "-c", cfg])
    assert r.exit_code == 0 and "alice" in r.output and "egate-verification" in r.output and "2 subject(s), 3 view(s)" in r.output
    g = Gallery.load(tmp_path / "state" / "gallery.npz")
    q = np.stack([fake_embed(tmp_path / "a2.png")[0] + 0.001, np.full(128, 0.5, np.float32)])
    lines = cli.identify_lines(g.subject_ids, g.vectors, q, threshold=0.55)
    assert lines[0].startswith("alice ") and float(lines[0].split()[1]) < 0.05
    assert lines[1] == "unknown"
    # with a margin, alice is named only when bob is that much farther (as the matcher decides)
    d = np.linalg.norm(g.vectors - q[0], axis=1)
    gap = min(x for x, n in zip(d, g.subject_ids) if n == "bob") - min(x for x, n in zip(d, g.subject_ids) if n == "alice")
    assert cli.identify_matches(g.subject_ids, g.vectors, q[:1], 0.55, margin=gap / 2)[0][0] == "alice"
    assert cli.identify_matches(g.subject_ids, g.vectors, q[:1], 0.55, margin=gap * 2)[0][0] is None
    r = runner.invoke(cli.app, ["remove", "alice", "-c", cfg])
    assert r.exit_code == 0 and "removed 2 view(s)" in r.output and "erasure request" in r.output
    g = Gallery.load(tmp_path / "state" / "gallery.npz")
    assert g.subjects() == ["bob"]
    assert runner.invoke(cli.app, ["remove", "alice", "-c", cfg]).exit_code == 1


def test_enrol_refuses_bad_purpose_or_bad_image_and_stores_nothing(tmp_path, cfg, fake_embed):
    good, bad = img(tmp_path, "g.png", "1"), img(tmp_path, "n.png", "none")
    r = runner.invoke(cli.app, ["enrol", "--id", "x", "--consent", "marketing", good, "-c", cfg])
    assert r.exit_code == 2 and "unknown or missing purpose" in r.output
    r = runner.invoke(cli.app, ["enrol", "--id", "x", "--consent", "boarding", good, bad, "-c", cfg])
    assert r.exit_code == 2 and "no face found" in r.output
    assert not (tmp_path / "state" / "gallery.npz").exists()


def test_unreadable_image_is_a_clear_error(tmp_path):
    with pytest.raises(cli.ImageError, match="cannot read"):
        cli.embed_image(tmp_path / "missing.png")


def test_real_embedder_on_a_synthetic_face(tmp_path, cfg):
    faces = pytest.importorskip("tests.edge.faces", reason="synthetic face generator not available")
    import cv2

    frame, boxes = faces.scene([(5, 150, 200, 100, 0.0)])
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), frame)
    r = runner.invoke(cli.app, ["enrol", "--id", "synth-5", "--consent", "boarding", str(path), "-c", cfg])
    assert r.exit_code == 0, r.output
    g = Gallery.load(tmp_path / "state" / "gallery.npz")
    live = cli.embed_image(path)
    assert cli.identify_lines(g.subject_ids, g.vectors, live, 0.55)[0].startswith("synth-5 ")


def test_offline_identify_and_list_obey_consent_and_identify_is_audited(tmp_path, cfg, fake_embed):
    from policy.audit import audit_dir, read_records
    from policy.consent import ConsentRegistry, registry_path

    a, b = img(tmp_path, "a.png", "1"), img(tmp_path, "b.png", "3")
    assert runner.invoke(cli.app, ["enrol", "--id", "alice", "--consent", "boarding", a, "-c", cfg]).exit_code == 0
    assert runner.invoke(cli.app, ["enrol", "--id", "bob", "--consent", "boarding", b, "-c", cfg]).exit_code == 0
    from paxsim.cli import app as paxsim_app

    def app_run(args):  # noqa: ANN001, ANN202 (`paxsim identify`, `paxsim gallery list`)
        return runner.invoke(paxsim_app, args if args[0] == "identify" else ["gallery", *args])

    assert app_run(["identify", a, "-c", cfg]).output.startswith("alice ")
    reg = ConsentRegistry.open(registry_path(tmp_path / "state"))
    assert reg.withdraw("alice") is not None  # `paxsim consent withdraw alice`: templates wait for the matcher
    reg.close()
    r = app_run(["identify", a, "-c", cfg])
    assert r.exit_code == 0 and r.output.strip() == "unknown", "a withdrawn subject was named"
    assert app_run(["identify", b, "--purpose", "egate-verification", "-c", cfg]).output.strip() == "unknown"
    assert app_run(["identify", b, "--purpose", "boarding", "-c", cfg]).output.startswith("bob ")
    assert app_run(["identify", b, "--purpose", "nope", "-c", cfg]).exit_code == 2
    r = app_run(["list", "-c", cfg])
    assert "withdrawn: erasure pending" in r.output and "boarding" in r.output
    rows = [rec for _n, rec, _raw in read_records(audit_dir(tmp_path / "state") / "offline-tools.jsonl") if rec is not None]
    assert [(x.action, x.subject_id, x.rule) for x in rows] == [
        ("identify", "alice", "purpose:any"),
        ("identify", None, "purpose:any"),
        ("identify", None, "purpose:egate-verification"),
        ("identify", "bob", "purpose:boarding"),
    ]


def test_enrolment_records_every_grant_in_the_consent_chain(tmp_path, cfg, fake_embed):
    from policy.audit import audit_dir, read_records, verify

    a = img(tmp_path, "a.png", "1")
    assert runner.invoke(cli.app, ["enrol", "--id", "carol", "--consent", "boarding,flow-analytics", a, "-c", cfg]).exit_code == 0
    chain = audit_dir(tmp_path / "state") / "consent.jsonl"
    rows = [rec for _n, rec, _raw in read_records(chain) if rec is not None]
    assert sorted((x.action, x.subject_id, x.rule, x.object_id) for x in rows) == [
        ("consent.grant", "carol", "boarding", "enrolment"),
        ("consent.grant", "carol", "flow-analytics", "enrolment"),
    ]
    assert verify(chain).ok


def test_identify_many_images_as_json_and_a_bad_image_loses_nothing_else(tmp_path, cfg, fake_embed):
    import json

    from paxsim.cli import app as paxsim_app

    a, b, bad = img(tmp_path, "a.png", "1"), img(tmp_path, "b.png", "3"), img(tmp_path, "bad.png", "none")
    assert runner.invoke(cli.app, ["enrol", "--id", "alice", "--consent", "boarding", a, "-c", cfg]).exit_code == 0
    r = runner.invoke(paxsim_app, ["identify", a, bad, b, "--json", "-c", cfg])
    assert r.exit_code == 2 and "bad.png: no face found" in r.output  # reported, and the other two still answered
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert [x["image"] for x in rows] == [a, b]
    assert rows[0]["faces"][0]["subject"] == "alice" and rows[0]["faces"][0]["box"] == [10, 20, 64, 64]
    assert rows[0]["faces"][0]["distance"] < 0.55
    assert rows[1]["faces"] == [{"box": [10, 20, 64, 64], "subject": None, "distance": None}]
