"""Debian's Prometheus scrapes a short real pipeline on loopback; PromQL returns the series the Grafana
dashboard and the web panels rely on, with values that agree with the topics themselves."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from pathlib import Path

import httpx

from broker import topics as t
from broker.messages import Match, decode
from broker.reader import read_all
from core.obs import free_port, wait_port
from core.stack import total
from tests.dashboard.conftest import need_binary, start_live_pipeline, wait_for
from tests.dashboard.test_grafana import family_names, grafana_metric_names

NAME_RE = re.compile(r"^paxsim_(edge|gate|policy|matcher|broker|dashboard|audit|crypto)_[a-z0-9_]+$")
UNIT_SUFFIXES = (
    "_total",
    "_seconds",
    "_messages",
    "_events",
    "_partitions",
    "_templates",
    "_info",
    "_frames",
    "_points",
    "_clients",
    "_up",
    "_state",
    "_active",
)


def promql(base: str, query: str) -> list[dict]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_every_stage_and_promql_matches_the_topics(settings, client_settings, broker, keys, tmp_path: Path, monkeypatch):
    prom = need_binary("prometheus")
    live = start_live_pipeline(client_settings, broker.bootstrap, 10.0, monkeypatch, keys)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: paxsim\n"
        "    scrape_timeout: 900ms\n"
        f"    file_sd_configs: [{{files: ['{live.targets_file}'], refresh_interval: 1s}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prom,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_port("127.0.0.1", port, 20), "prometheus did not start"
        # every stage is a target and up (while the edge still runs)
        jobs = wait_for(
            "all four stages up in prometheus",
            lambda: (lambda r: r if len(r) == 4 else None)({s["metric"]["job"] for s in promql(base, "up == 1")}),
            20,
        )
        assert jobs == {"edge", "policy", "matcher", "dashboard"}
        # the scraped real /metrics of every stage: consistent names, and every metric Grafana uses exists
        # (read while the edge still runs; it exits when its traffic is done)
        families: set[str] = set()
        for _name, child in live.stack.children.items():
            text = httpx.get(child.metrics_url, timeout=5).text
            families |= family_names(text)
        ours = {f for f in families if f.startswith("paxsim_") and not f.endswith("_created")}  # _created: the client's own
        bad = sorted(f for f in ours if not NAME_RE.match(f) or not f.endswith(UNIT_SUFFIXES))
        assert not bad, f"metric names off the paxsim_<stage>_<what>_<unit> scheme: {bad}"
        missing = sorted(grafana_metric_names() - families)
        assert not missing, f"Grafana references metrics no service exposes: {missing}"

        # throughput is a rate computed by prometheus, not a number we pushed
        wait_for("a matcher rate", lambda: float(promql(base, "sum(rate(paxsim_matcher_events_total[5s]))")[0]["value"][1]) > 0, 20)
        p99 = wait_for(
            "a p99 latency",
            lambda: promql(base, "histogram_quantile(0.99, sum by (le) (rate(paxsim_matcher_e2e_latency_seconds_bucket[10s])))"),
            10,
        )
        assert 0 < float(p99[0]["value"][1]) < 10
        lag_stages = {s["metric"]["stage"] for s in promql(base, "sum by (stage) (paxsim_broker_consumer_lag_messages)")}
        assert {"gate", "matcher"} <= lag_stages
        rules = {(s["metric"]["stage"], s["metric"]["rule"]) for s in promql(base, "sum by (stage, rule) (paxsim_policy_decisions_total)")}
        assert ("gate", "fresh") in rules or any(st == "gate" for st, _ in rules)
        assert any(st == "post_match" for st, _ in rules)
        assert promql(base, f'paxsim_dashboard_records_total{{topic="{t.MATCHES.name}"}} > 0')
        assert promql(base, "max by (purpose) (paxsim_dashboard_data_ttl_seconds)")

        # after the run drains, prometheus's counter equals the number of decisions on the matches topic
        wait_for("the edge to finish", lambda: not live.stack.children["edge"].alive(), 30)
        decided = asyncio.run(read_all(live.settings, t.MATCHES.name))
        wait_for(
            "matcher drained",
            lambda: (
                total(live.stack.scrape("matcher"), "paxsim_matcher_events_total") >= len(decided)
                and len(asyncio.run(read_all(live.settings, t.MATCHES.name)))
                == total(live.stack.scrape("matcher"), "paxsim_matcher_events_total")
            ),
            20,
            0.5,
        )
        # per decision kind, prometheus's counters equal the matches topic (the run's own record of what
        # happened), whichever kinds this run happened to produce
        on_topic = Counter(decode(rec.value, Match).decision for rec in asyncio.run(read_all(live.settings, t.MATCHES.name)))
        assert on_topic["match"] > 0, f"no enrolled traveller was matched: {dict(on_topic)}"

        def by_decision() -> dict[str, int]:
            return {
                s["metric"]["decision"]: int(float(s["value"][1]))
                for s in promql(base, "sum by (decision) (paxsim_matcher_events_total)")
                if float(s["value"][1]) > 0
            }

        wait_for("prometheus to see every decision, per kind", lambda: by_decision() == dict(on_topic), 10)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        live.stack.stop()
