"""The defence switches of core.faults: off by default, only with the unsafe switch, only known names."""

from __future__ import annotations

import pytest

from core import faults


def test_no_defence_is_off_unless_both_variables_say_so():
    assert faults.switched_off({}) == frozenset()
    with pytest.raises(faults.FaultError, match="only with PAXSIM_UNSAFE_NO_POLICY=1"):
        faults.switched_off({faults.ENV: "matcher.dedupe"})
    assert faults.switched_off({faults.ENV: "matcher.dedupe", faults.UNSAFE_ENV: "1"}) == {"matcher.dedupe"}


def test_a_name_that_is_no_defence_is_refused_with_the_list():
    with pytest.raises(faults.FaultError, match="nope is not a defence .*matcher.dedupe"):
        faults.switched_off({faults.ENV: "nope", faults.UNSAFE_ENV: "1"})
    with pytest.raises(faults.FaultError):
        faults.disabled("not-a-defence")


def test_every_defence_is_used_by_the_code_and_the_red_team():
    from pathlib import Path

    from paxsim.redteam import CATALOGUE

    root = Path(__file__).resolve().parents[1]
    code = "".join(p.read_text() for d in ("broker", "policy", "matcher", "dashboard") for p in (root / d).rglob("*.py"))
    unused = [n for n in faults.DEFENCES if f'disabled("{n}")' not in code]
    assert not unused, f"defence switches nothing reads: {unused}"
    untested = set(faults.DEFENCES) - {d for a in CATALOGUE for d in a.defences}
    assert not untested, f"defences no red-team check tests: {untested}"
