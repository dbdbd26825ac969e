"""The provisioned Grafana files are valid and every metric their queries use exists in the services' /metrics.

The live check against the running stages' endpoints is in test_prometheus.py; this one uses the same
registries in-process (every stage module imported), so it runs without a broker or Prometheus.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
METRIC_RE = re.compile(r"\bpaxsim_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_created")

# every module that declares metrics of a service process
SERVICE_MODULES = [
    "edge.service",
    "edge.publisher",
    "edge.metrics",
    "policy.gate",
    "policy.filters",
    "policy.policyfile",
    "policy.audit",
    "matcher.service",
    "broker.stream",
    "broker.embedded",
    "dashboard.app",
]


def _family(sample: str) -> str:
    for suf in SUFFIXES:
        if sample.endswith(suf):
            return sample[: -len(suf)]
    return sample


def grafana_metric_names() -> set[str]:
    """Metric family names used by the dashboards' queries (a counter's ``_total`` is part of its name)."""
    names: set[str] = set()
    for path in (GRAFANA / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for tgt in panel.get("targets", []):
                names |= {_family(m) for m in METRIC_RE.findall(tgt["expr"])}
    return names


def family_names(text: str) -> set[str]:
    """Families in a /metrics text; counters listed under their ``_total`` sample name, as queries use them."""
    out: set[str] = set()
    for fam in text_string_to_metric_families(text):
        out.add(fam.name + "_total" if fam.type == "counter" else fam.name)
        if fam.type == "info":
            out.add(fam.name + "_info")
    for line in text.splitlines():  # families without samples still have their TYPE line
        if line.startswith("# TYPE "):
            _h, _t, name, kind = line.split(" ", 3)
            out.add(name + "_total" if kind == "counter" and not name.endswith("_total") else name)
    return out


def test_provisioning_files_are_valid():
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus" and ds["datasources"][0]["uid"] == "paxsim-prom"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "paxsim.yml").read_text())
    assert prov["providers"][0]["type"] == "file"
    dash = json.loads((GRAFANA / "dashboards" / "paxsim.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    for p in dash["panels"]:
        assert p["targets"], p["title"]
        for tgt in p["targets"]:
            assert tgt["datasource"]["uid"] == "paxsim-prom" and tgt["expr"].count("(") == tgt["expr"].count(")"), tgt["expr"]


def test_committed_dashboard_is_what_the_generator_writes(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("make_dashboard", GRAFANA / "make_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    assert json.loads((GRAFANA / "dashboards" / "paxsim.json").read_text()) == json.loads(json.dumps(mod.DASHBOARD))


def test_every_metric_grafana_uses_is_declared_by_a_service():
    code = (
        "import sys, importlib; from prometheus_client import generate_latest\n"
        f"[importlib.import_module(m) for m in {SERVICE_MODULES!r}]\n"
        "sys.stdout.write(generate_latest().decode())"
    )
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    exposed = family_names(text)
    used = grafana_metric_names()
    assert len(used) >= 15
    missing = sorted(used - exposed)
    assert not missing, f"Grafana queries metrics no service declares: {missing}"
