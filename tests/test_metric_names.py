"""The metric names readers use are the ones the stages register, and reading them registers nothing."""

from __future__ import annotations

import subprocess
import sys

STAGES = ("edge", "policy", "matcher", "broker", "dashboard")

PROBE = """
import importlib, json
from prometheus_client import REGISTRY
before = {m.name for m in REGISTRY.collect()}
names = {p: vars(importlib.import_module(p + ".metricnames")) for p in %r}
after_names = {m.name for m in REGISTRY.collect()}
for mod in ("edge.service", "edge.metrics", "edge.publisher", "policy.gate", "policy.erasure", "policy.filters",
            "matcher.service", "broker.stream", "dashboard.metrics"):
    importlib.import_module(mod)
families = set()
for m in REGISTRY.collect():
    families |= {m.name, m.name + "_total" if m.type == "counter" else m.name} | {s.name for s in m.samples}
consts = {p: {k: v for k, v in ns.items() if k.isupper() and isinstance(v, str)} for p, ns in names.items()}
print(json.dumps({"registered_by_names": sorted(after_names - before), "consts": consts, "families": sorted(families)}))
"""


def test_every_metric_name_constant_is_registered_by_its_stage_and_importing_the_names_registers_none():
    import json

    out = subprocess.run([sys.executable, "-c", PROBE % (STAGES,)], capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    assert doc["registered_by_names"] == []
    families = set(doc["families"])
    for stage, consts in doc["consts"].items():
        assert consts, stage
        for const, name in consts.items():
            assert name.startswith(f"paxsim_{'gate' if const.startswith('GATE_') else stage}_"), (stage, const, name)
            assert name in families, f"{stage}.metricnames.{const} = {name!r} is registered by no {stage} module"
