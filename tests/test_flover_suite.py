"""The flover suite's sections: registered, and their numbers behave as the mechanism says."""

from __future__ import annotations

import io

from rich.console import Console

from hwsim.hardware import load_hardware
from hwsim.suites import flover as F
from hwsim.suites.registry import SuiteContext, get_suite


def _ctx() -> SuiteContext:
    return SuiteContext(hardware=None, quick=True, seed=1, console=Console(file=io.StringIO(), width=200))


def test_suite_is_registered():
    assert get_suite("flover").name == "flover"


def test_speedup_falls_towards_one_as_arrivals_spread_out():
    out = F._Out([], "a100-sxm")
    rows = F._gaps(_ctx(), load_hardware("a100-sxm"), out)
    spans = [span for _, _, span in rows]
    assert all(a > b for a, b in zip(spans, spans[1:]))  # less overlap, less to fuse
    assert spans[0] > 5 and 0.95 < spans[-1] < 1.2
    assert all(lat >= 0.99 for _, lat, _ in rows)  # fusing never loses to concurrent instances here
    notes = {r.case["gap_s"]: r.note for r in out.records if r.metric == "speedup_mean_latency"}
    assert notes == {g: f"paper {F.PAPER_GAP_SPEEDUP[g]}x" for g in F.GAPS_S}


def test_verdicts_use_the_stated_tolerance():
    assert F._within(12.5, 10.0) and not F._within(12.6, 10.0) and not F._within(7.4, 10.0)
