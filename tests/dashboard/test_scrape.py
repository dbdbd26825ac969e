"""Scrape targets, rates and histogram quantiles (checked against numpy on the same samples)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dashboard.scrape import (
    SELF,
    Scraper,
    TargetState,
    buckets,
    histogram_quantile,
    parse_samples,
    parse_targets,
    read_file_sd,
)

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def test_targets_from_env_and_file_sd(tmp_path: Path):
    assert parse_targets("edge=127.0.0.1:9100, matcher=http://h:1/metrics") == {
        "edge": "http://127.0.0.1:9100/metrics",
        "matcher": "http://h:1/metrics",
    }
    with pytest.raises(ValueError, match="name=host:port"):
        parse_targets("edge127.0.0.1:9100")
    sd = tmp_path / "scrape-targets.json"
    sd.write_text(
        json.dumps(
            [
                {"targets": ["127.0.0.1:1"], "labels": {"job": "policy"}},
                {"targets": ["127.0.0.1:2", "127.0.0.1:3"], "labels": {"job": "edge"}},
            ]
        )
    )
    assert read_file_sd(sd) == {
        "policy": "http://127.0.0.1:1/metrics",
        "edge-1": "http://127.0.0.1:2/metrics",
        "edge-2": "http://127.0.0.1:3/metrics",
    }
    s = Scraper(tmp_path, {"PAXSIM_DASHBOARD_TARGETS": "matcher=127.0.0.1:4"})
    assert set(s.targets) == {"policy", "edge-1", "edge-2", "matcher", SELF}
    sd.write_text("not json")  # a broken file drops its targets, keeps the rest, does not raise
    sd.touch()
    s.refresh_targets()
    assert set(s.targets) == {"matcher", SELF}


def test_histogram_quantile_interpolates_like_promql():
    reg = CollectorRegistry()
    h = Histogram("x_seconds", "x", buckets=BOUNDS, registry=reg)
    rng = np.random.default_rng(3)
    values = rng.lognormal(mean=-3.0, sigma=0.8, size=5000)
    for v in values:
        h.observe(v)
    cum = buckets(parse_samples(generate_latest(reg).decode()), "x_seconds")
    assert cum[float("inf")] == 5000
    for q in (0.5, 0.9, 0.99):
        est = histogram_quantile(q, cum)
        true = float(np.quantile(values, q))
        lo = max([0.0] + [b for b in BOUNDS if b <= true])  # the estimate stays inside the true value's bucket
        hi = min([b for b in BOUNDS if b >= true] + [float("inf")])
        assert lo <= est <= hi, (q, est, true)
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None


def test_rate_and_windowed_quantiles_use_the_history():
    reg = CollectorRegistry()
    c = Counter("paxsim_t_events_total", "c", registry=reg)
    h = Histogram("paxsim_t_seconds", "h", buckets=BOUNDS, registry=reg)
    ts = TargetState("x")
    for i in range(11):  # one scrape per second; 10 events/s; slow observations early, fast ones late
        c.inc(10)
        for _ in range(10):
            h.observe(2.0 if i < 5 else 0.007)
        ts.history.append((float(i), parse_samples(generate_latest(reg).decode())))
    assert ts.rate("paxsim_t_events_total", window_s=5.0) == pytest.approx(10.0)
    recent = ts.quantiles("paxsim_t_seconds", window_s=4.0)
    assert recent["window"] == "4s" and 0.005 <= recent["p99"] <= 0.01  # only the fast ones are in the window
    whole = ts.quantiles("paxsim_t_seconds", window_s=100.0)
    assert whole["p99"] > 1.0  # window reaches the first scrape: includes the slow ones


def test_token_cli_issues_lists_and_revokes(tmp_path: Path):
    from typer.testing import CliRunner

    from dashboard.auth import TokenStore
    from dashboard.cli import tokens_app

    f = tmp_path / "tokens.json"
    run = CliRunner()
    out = run.invoke(tokens_app, ["issue", "--name", "alice", "--role", "auditor", "--file", str(f)])
    assert out.exit_code == 0, out.output
    token = out.output.strip().splitlines()[-1]
    assert TokenStore(f).authenticate(token).name == "alice"
    assert "alice" in run.invoke(tokens_app, ["list", "--file", str(f)]).output
    assert run.invoke(tokens_app, ["issue", "--name", "bob", "--role", "root", "--file", str(f)]).exit_code != 0
    assert run.invoke(tokens_app, ["revoke", "alice", "--file", str(f)]).exit_code == 0
    assert TokenStore(f).authenticate(token) is None
