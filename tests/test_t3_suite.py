"""The t3 suite: paper figures computed from the cases, verdicts, and records."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from hwsim.suites.registry import SuiteContext, get_suite
from hwsim.suites.t3 import PAPER, CaseResult, figure_value, within


def test_within_tolerance_is_relative_to_the_paper():
    assert within(30.0, 24.0) and within(18.0, 24.0)
    assert not within(31.0, 24.0)
    assert within(-27.0, -22.0) and not within(-28.0, -22.0)


class _Fake:
    def __init__(self, time_s, hbm_bytes):
        self.time_s, self.hbm_bytes = time_s, hbm_bytes


def test_figure_values_are_geomeans_and_extremes_of_the_cases():
    cases = [
        CaseResult("palm", 32, "OP", {"sequential": _Fake(2.0, 100.0), "t3-mca": _Fake(1.0, 50.0)}, 1.0),
        CaseResult("t-nlg", 8, "OP", {"sequential": _Fake(2.0, 100.0), "t3-mca": _Fake(1.6, 80.0)}, 1.0),
    ]
    by_label = {f.label: f for f in PAPER}
    assert figure_value(by_label["T3-MCA, geomean"], cases) == pytest.approx(100 * ((2.0 * 1.25) ** 0.5 - 1))
    assert figure_value(by_label["T3-MCA, max"], cases) == pytest.approx(100.0)
    assert figure_value(by_label["T3-MCA data movement, max"], cases) == pytest.approx(50.0)
    assert figure_value(by_label["T3-MCA, 500B-class at TP 32, geomean"], cases) == pytest.approx(100.0)


def test_suite_quick_run_reports_every_paper_figure_and_strategy():
    ctx = SuiteContext(hardware=None, quick=True, console=Console(file=io.StringIO(), width=200))
    result = get_suite("t3").run(ctx)
    figures = {r.case["figure"] for r in result.records if r.metric == "paper_figure_pct"}
    assert "T3-MCA, geomean" in figures and "ideal overlap, geomean" in figures
    speedups = {(r.case["model"], r.case["sublayer"], r.case["strategy"]): r.value
                for r in result.records if r.metric == "speedup" and r.hardware == "t3-gpu"}
    for (model, sublayer, strategy), value in speedups.items():
        # nothing beats the ideal-overlap bound by more than rounding
        assert value <= speedups[(model, sublayer, "ideal")] * (1 + 1e-9), (model, sublayer, strategy)
    rel = [r.value for r in result.records if r.metric == "dram_bytes_rel" and r.case["strategy"] == "t3"]
    assert rel and all(v < 1.0 for v in rel)
    assert all(r.source == "simulated" for r in result.records)
