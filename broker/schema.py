"""The machine-readable contract: JSON Schema of every message plus the topic catalogue.

``broker/schema.json`` is this document, committed; a test fails when it is out of date
(regenerate with ``paxsim schema -o broker/schema.json``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import msgspec

from broker import topics as t
from broker.messages import ALL_TYPES

SCHEMA_PATH = Path(__file__).with_name("schema.json")


def _clean_descriptions(node: Any) -> Any:
    """Docstrings reach the schema dedented by some msgspec releases and not by others: clean them ourselves,
    so the committed document changes only when the contract does."""
    if isinstance(node, dict):
        return {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _clean_descriptions(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node


def schema_document() -> dict:
    schemas, components = msgspec.json.schema_components(ALL_TYPES, ref_template="#/$defs/{name}")
    schemas, components = _clean_descriptions(schemas), _clean_descriptions(components)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "paxsim broker messages",
        "description": (
            "Records are MessagePack maps with a 'type' tag (e.g. 'sighting.v1'). Fields typed bytes are raw: "
            "'embedding' is little-endian float32 x dim, 'sealed' is AES-GCM ciphertext, 'payload' the original record."
        ),
        "oneOf": schemas,
        "$defs": components,
        "x-topics": [
            {
                "name": topic.name,
                "message": getattr(topic.message, "__struct_config__").tag,  # noqa: B009 (msgspec sets it on every Struct)
                "key": topic.key,
                "retention": topic.retention,
                "doc": topic.doc,
            }
            for topic in t.ALL
        ],
    }
