"""The policy file: strict defaults, line-numbered errors, versions, hot reload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from policy.policyfile import DEFAULT_POLICY_PATH, Policy, PolicyError, PolicyHolder, load_policy, parse_policy

GOOD = """\
label: t1
zones:
  egate: {biometric: true, purpose: egate-verification}
  retail: {biometric: false}
purposes:
  egate-verification: {retention_s: 60}
  model-training: {retention_s: 600}
exports:
  allowed_purposes: [model-training]
"""


def issues(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(PolicyError) as ei:
        parse_policy(text, "p.yaml")
    return [(i.line, i.path, i.message) for i in ei.value.issues]


def test_default_policy_file_is_valid_and_binds_every_biometric_zone_to_a_purpose():
    p = load_policy(DEFAULT_POLICY_PATH)
    assert p.version.startswith("airport-default@")
    for name, z in p.zones.items():
        if z.biometric:
            assert p.purpose_for_zone(name) in p.purposes
    assert p.purpose_for_zone("retail") is None
    assert "model-training" in p.exports.allowed_purposes


def test_strict_defaults_when_nothing_is_said():
    p = parse_policy("", "empty.yaml")
    assert p.version == Policy().version == "strict-default@" + p.version.split("@")[1]
    assert p.zones == {} and p.purposes == {}
    assert p.exports.allowed_purposes == [] and p.exports.require_subject_consent
    assert not p.edge.allow_image_bytes
    assert p.unknown_faces.action == "discard" and not p.unknown_faces.tracklets.enabled
    p2 = parse_policy("zones: {x: {}}\npurposes: {y: {}}\n")
    assert not p2.zones["x"].biometric and p2.purposes["y"].requires_consent


def test_unknown_purpose_is_reported_on_its_line():
    text = GOOD.replace("purpose: egate-verification}", "purpose: egate-verificaton}")
    assert issues(text) == [
        (3, "zones.egate.purpose", "unknown purpose 'egate-verificaton' (known: ['egate-verification', 'model-training'])")
    ]


def test_schema_errors_carry_the_line_of_the_value_or_of_the_extra_key():
    text = GOOD + "quality:\n  min_quality: 3\n  colour: red\n"
    got = issues(text)
    assert (11, "quality.min_quality", "Input should be less than or equal to 1") in got
    assert (12, "quality.colour", "Extra inputs are not permitted") in got


def test_missing_purpose_on_biometric_zone_points_at_the_zone():
    got = issues(GOOD.replace("{biometric: true, purpose: egate-verification}", "{biometric: true}"))
    assert got == [(3, "zones.egate", "a biometric zone needs a purpose")]


def test_duplicate_keys_and_bad_yaml_are_errors_with_lines():
    got = issues(GOOD + "label: t2\n")
    assert got[0][0] == 10 and "duplicate key (first defined on line 1)" in got[0][2]
    got = issues("zones:\n  egate: [1, 2\n")
    assert got[0][0] == 3 and "not valid YAML" in got[0][2]
    assert issues("- 1\n- 2\n")[0][2] == "the top level must be a mapping"


def test_export_of_an_undefined_purpose_and_epoch_longer_than_ttl_are_refused():
    got = issues(GOOD.replace("[model-training]", "[model-training, marketing]") + "retention: {sightings_s: 5, epoch_s: 10}\n")
    assert (9, "exports.allowed_purposes.1", "unknown purpose 'marketing' (known: ['egate-verification', 'model-training'])") in got
    assert any(line == 10 and path == "retention.epoch_s" for line, path, _ in got)


def test_version_is_the_meaning_not_the_formatting():
    a = parse_policy(GOOD)
    b = parse_policy("# a comment\n" + GOOD.replace("{retention_s: 60}", "{retention_s: 60.0}"))
    c = parse_policy(GOOD.replace("retention_s: 60}", "retention_s: 61}"))
    assert a.version == b.version
    assert a.version != c.version and c.version.startswith("t1@")


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))  # mtime granularity on some filesystems


def test_hot_reload_swaps_valid_policies_and_keeps_the_old_one_on_errors(tmp_path: Path):
    f = tmp_path / "policy.yaml"
    f.write_text(GOOD)
    holder = PolicyHolder(f)
    v1 = holder.version
    seen = []
    holder.on_change(lambda old, new: seen.append((old.version, new.version)))
    assert holder.reload() is False  # unchanged

    _rewrite(f, GOOD.replace("retention_s: 60}", "retention_s: 30}"))
    assert holder.reload() is True
    v2 = holder.version
    assert v2 != v1 and seen == [(v1, v2)]
    assert holder.current.purposes["egate-verification"].retention_s == 30

    _rewrite(f, GOOD + "bogus: 1\n")
    assert holder.reload() is False
    assert holder.version == v2  # the broken file did not take effect
    assert holder.last_error is not None and holder.last_error.issues[0].line == 10

    _rewrite(f, GOOD)
    assert holder.reload() is True and holder.version == v1 and holder.last_error is None


async def test_watch_picks_up_a_change_from_asyncio(tmp_path: Path):
    f = tmp_path / "policy.yaml"
    f.write_text(GOOD)
    holder = PolicyHolder(f)
    v1 = holder.version
    stop = asyncio.Event()
    task = asyncio.create_task(holder.watch(0.02, stop))
    _rewrite(f, GOOD.replace("label: t1", "label: t2"))
    for _ in range(200):
        if holder.version != v1:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert holder.version.startswith("t2@")
