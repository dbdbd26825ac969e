from pathlib import Path

import pytest

from core.config import ConfigError, load_settings


def test_defaults_are_embedded_and_strict():
    s = load_settings(environ={})
    assert s.broker.embedded
    assert s.broker.client_tuning().fetch_max_wait_ms <= 20
    assert s.policy.file is None  # the packaged strict policy (or $PAXSIM_POLICY)


def test_file_and_env_overrides(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("scenario:\n  cameras: 9\nbroker:\n  bootstrap: kafka:9092\n")
    s = load_settings(f, environ={"PAXSIM__SCENARIO__SEED": "42", "PAXSIM__BROKER__TUNING__FETCH_MAX_WAIT_MS": "77"})
    assert s.scenario.cameras == 9 and s.scenario.seed == 42
    assert not s.broker.embedded
    assert s.broker.client_tuning().session_timeout_ms >= 6000  # real Kafka profile
    assert s.broker.client_tuning().fetch_max_wait_ms == 77


@pytest.mark.parametrize(
    "text, needle",
    [
        ("scenario:\n  cameras: -3\n", "scenario.cameras"),
        ("scenario:\n  camras: 3\n", "scenario.camras"),
        ("broker:\n  tuning:\n    bogus: 1\n", "unknown broker.tuning keys"),
        ("- just a list\n", "top level must be a mapping"),
        ("scenario: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(f, environ={})
    assert needle in str(err.value)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", environ={})
