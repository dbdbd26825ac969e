import json

import numpy as np
import pytest

from broker import messages as m
from broker.schema import SCHEMA_PATH, schema_document


def _sighting(**kw):
    base = dict(
        event_id="e1",
        camera_id="cam-1",
        zone="security",
        captured_at=1.5,
        track_id=3,
        box=(1, 2, 30, 40),
        quality=0.9,
        embedding=m.embedding_to_bytes(np.arange(128, dtype=np.float32) / 128),
    )
    base.update(kw)
    return m.Sighting(**base)


def test_roundtrip_is_compact_and_exact():
    s = _sighting()
    data = m.encode(s)
    assert m.decode(data, m.Sighting) == s
    assert m.decode(data) == s  # the tagged union finds the type
    assert len(data) < 512 + 160  # raw float32 embedding (not 128 floats as text) + named fields
    np.testing.assert_array_equal(s.vector(), np.arange(128, dtype=np.float32) / 128)


@pytest.mark.parametrize(
    "payload", [b"", b"\xff\x00garbage", m.encode(m.ZoneCount(camera_id="c", zone="z", window_start=0, window_end=1, faces=2))]
)
def test_decode_rejects_wrong_bytes(payload):
    with pytest.raises(m.MessageError):
        m.decode(payload, m.Sighting)


def test_wrong_dimensions_and_oversized_sealed_payloads_are_rejected():
    import msgspec

    with pytest.raises(m.MessageError, match="dim 64"):
        m.check_sighting(msgspec.structs.replace(_sighting(), embedding=m.embedding_to_bytes(np.zeros(64, np.float32)), dim=64))
    with pytest.raises(m.MessageError, match="dim 0"):
        m.check_sighting(msgspec.structs.replace(_sighting(), embedding=b"", dim=0))
    with pytest.raises(m.MessageError, match="sealed payload"):
        m.check_sighting(msgspec.structs.replace(_sighting(), embedding=b"", sealed=b"x" * 920_000, key_id="sightings:1"))


def test_nan_and_short_embeddings_are_rejected():
    bad = np.zeros(128, np.float32)
    bad[5] = np.nan
    with pytest.raises(m.MessageError, match="NaN"):
        m.check_sighting(_sighting(embedding=m.embedding_to_bytes(bad)))
    with pytest.raises(m.MessageError, match="bytes"):
        m.check_sighting(_sighting(embedding=b"\x00" * 100))


def test_committed_schema_document_is_current():
    # descriptions are cleaned by schema_document itself, so only a contract change (a field, a type, a tag, a
    # topic, a docstring's words) fails this, never how a msgspec release indents docstrings
    committed, current = json.loads(SCHEMA_PATH.read_text()), json.loads(json.dumps(schema_document()))
    assert committed == current, "the message contract changed: regenerate with  .venv/bin/paxsim schema -o broker/schema.json"


def test_schema_descriptions_do_not_depend_on_docstring_indentation():
    from broker.schema import _clean_descriptions

    indented = {"description": "First line.\n\n    More.\n    ", "properties": [{"description": "  x\n    y"}]}
    assert _clean_descriptions(indented) == {"description": "First line.\n\nMore.", "properties": [{"description": "x\ny"}]}


def test_claim_and_verification_decisions_are_compatible_additions():
    # a sighting without a claim encodes exactly as before the field existed (omit_defaults)
    plain = _sighting()
    assert b"claimed_subject" not in m.encode(plain) and m.decode(m.encode(plain), m.Sighting).claimed_subject == ""
    claimed = _sighting(zone="egate", claimed_subject="ps-0123456789abcdef01234567")
    assert m.decode(m.encode(claimed), m.Sighting).claimed_subject == "ps-0123456789abcdef01234567"
    for decision in ("verified", "rejected"):
        match = m.Match(
            event_id="e1", camera_id="c", zone="egate", purpose="egate-verification", captured_at=1.0, matched_at=2.0, decision=decision
        )
        assert m.decode(m.encode(match), m.Match).decision == decision
    bogus = m.encode(
        m.Match(event_id="e1", camera_id="c", zone="egate", purpose="p", captured_at=1.0, matched_at=2.0, decision="match")
    ).replace(b"\xa5match", b"\xa5maybe")
    with pytest.raises(m.MessageError):
        m.decode(bogus, m.Match)
