import json

import numpy as np
import pytest

from broker import messages as m
from broker.schema import SCHEMA_PATH, schema_document


def _sighting(**kw):
    base = dict(event_id="e1", camera_id="cam-1", zone="security", captured_at=1.5, track_id=3, box=(1, 2, 30, 40), quality=0.9,
                embedding=m.embedding_to_bytes(np.arange(128, dtype=np.float32) / 128))
    base.update(kw)
    return m.Sighting(**base)


def test_roundtrip_is_compact_and_exact():
    s = _sighting()
    data = m.encode(s)
    assert m.decode(data, m.Sighting) == s
    assert m.decode(data) == s  # the tagged union finds the type
    assert len(data) < 512 + 160  # raw float32 embedding (not 128 floats as text) + named fields
    np.testing.assert_array_equal(s.vector(), np.arange(128, dtype=np.float32) / 128)


@pytest.mark.parametrize("payload", [b"", b"\xff\x00garbage", m.encode(m.ZoneCount(camera_id="c", zone="z", window_start=0, window_end=1, faces=2))])
def test_decode_rejects_wrong_bytes(payload):
    with pytest.raises(m.MessageError):
        m.decode(payload, m.Sighting)


def test_nan_and_short_embeddings_are_rejected():
    bad = np.zeros(128, np.float32)
    bad[5] = np.nan
    with pytest.raises(m.MessageError, match="NaN"):
        m.check_sighting(_sighting(embedding=m.embedding_to_bytes(bad)))
    with pytest.raises(m.MessageError, match="bytes"):
        m.check_sighting(_sighting(embedding=b"\x00" * 100))


def test_committed_schema_document_is_current():
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(schema_document())), "run: paxsim schema -o broker/schema.json"
