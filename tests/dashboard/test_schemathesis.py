"""schemathesis against the dashboard's OpenAPI spec: no input with the token of any role makes the server
fail, and no generated request reaches identity data (plain ids or pseudonyms) without a token."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error

from broker import topics as t
from core.config import load_settings
from dashboard.app import create_app
from tests.dashboard.conftest import ADMIN, AUDITOR, OPERATOR, TOKENS
from tests.dashboard.test_api import _seed, _track

PSEUDONYM = "ps-" + "5e" * 12  # shaped like SubjectVault.pseudonym: what a keyed run stores

PUBLIC = {"/healthz", "/api/summary", "/api/panels"}


def _app():
    """The app on a seeded temp state dir, built at import: schemathesis reads the spec at collection time."""
    state = Path(tempfile.mkdtemp(prefix="paxsim-schemathesis-"))
    atexit.register(shutil.rmtree, state, ignore_errors=True)
    s = load_settings(environ={}).model_copy(update={"state_dir": state / "state"})
    _seed(s)
    app = create_app(s, {"PAXSIM_DASHBOARD_TOKENS": TOKENS}, background=False)
    now = time.time()  # identity data to leak: trajectories under a plain id and under a pseudonym
    for n, ref in enumerate(("pax-00001", PSEUDONYM)):
        app.state.services.view.apply(t.TRACKS.name, _track(ref, "gate", "security", now, n), now)
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_identity_without_token(case):
    # with the token of every role, every generated request is handled without a 5xx
    for token in (ADMIN, OPERATOR, AUDITOR):
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])
    # with whatever token schemathesis made up (or none), nothing but the aggregates is ever served
    anon = case.call()
    assert anon.status_code < 500
    if case.path not in PUBLIC:
        assert 400 <= anon.status_code < 500, (case.method, case.path, anon.status_code)  # refused, never served
        assert "pax-" not in anon.text and "ps-" not in anon.text
