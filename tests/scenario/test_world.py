from __future__ import annotations

from pathlib import Path

import pytest

from scenario.world import PURPOSES, ScenarioError, load_spec, load_world


def test_default_airport_loads_with_required_zones_and_purposes():
    w = load_world()
    assert {"curb", "checkin", "security", "immigration", "egate", "concourse", "gate", "arrivals"} <= set(w.zones)
    assert len(w.travellers) == w.spec.population.size
    assert {c.zone for c in w.cameras} <= set(w.zones)
    assert "security" in w.graph["checkin"] and {"egate", "immigration"} <= set(w.graph["security"])
    for tr in w.travellers[:50]:
        assert set(tr.consent) == set(PURPOSES)
        times = [(v.enter, v.exit) for v in tr.itinerary]
        assert all(a < b for a, b in times)
        assert all(times[i][1] == pytest.approx(times[i + 1][0]) for i in range(len(times) - 1))


def test_same_seed_same_world_other_seed_differs():
    a, b, c = load_world(seed=11), load_world(seed=11), load_world(seed=12)
    assert a.manifest() == b.manifest()
    assert a.manifest()["identities"] != c.manifest()["identities"]


def test_egate_only_for_eligible_consenting_travellers():
    w = load_world(seed=5)
    for tr in w.travellers:
        zones = [v.zone for v in tr.itinerary]
        if "egate" in zones:
            assert tr.demographics.nationality_group in w.spec.egate_groups
            assert tr.consent["egate-verification"]


def test_demographic_distribution_is_followed(tiny_yaml: Path):
    text = (
        tiny_yaml.read_text()
        .replace("size: 6", "size: 600")
        .replace("nationality_group: {domestic: 1.0}", "nationality_group: {domestic: 0.8, visa-required: 0.2}\n  sex: {female: 1.0}")
    )
    tiny_yaml.write_text(text)
    w = load_world(tiny_yaml)
    assert all(t.demographics.sex == "female" for t in w.travellers)
    share = sum(t.demographics.nationality_group == "visa-required" for t in w.travellers) / 600
    assert 0.15 < share < 0.25
    assert not any(t.consent["model-training"] for t in w.travellers)
    assert all(t.consent["flow-analytics"] for t in w.travellers)


@pytest.mark.parametrize(
    "old,new,key",
    [
        ("path: [security, gate]", "path: [security, lounge]", "unknown zone 'lounge'"),
        ("zone: gate, position", "zone: nowhere, position", "unknown zone 'nowhere'"),
        ("model-training: 0.0", "model-training: 0.0, selling: 1.0", "unknown purposes"),
        ("dwell_s: [8, 12], props", "dwell_s: [12, 8], props", "dwell_s"),
        ("resolution: [160, 120], fps: 5}\n  - {id: cam-b", "resolution: [4, 4], fps: 5}\n  - {id: cam-b", "resolution"),
    ],
)
def test_invalid_scenarios_are_refused_with_the_key(tiny_yaml: Path, old: str, new: str, key: str):
    text = tiny_yaml.read_text()
    assert old in text
    tiny_yaml.write_text(text.replace(old, new))
    with pytest.raises(ScenarioError, match=key):
        load_spec(tiny_yaml)


def test_missing_and_non_yaml_files(tmp_path: Path):
    with pytest.raises(ScenarioError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("zones: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list")
    with pytest.raises(ScenarioError, match="mapping"):
        load_spec(bad)


def test_population_size_override(tiny_yaml: Path):
    assert len(load_world(tiny_yaml, travellers=17).travellers) == 17
    with pytest.raises(ScenarioError):
        load_world(tiny_yaml, travellers=0)
