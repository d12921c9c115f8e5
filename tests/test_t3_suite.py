"""The t3 suite: paper figures computed from the cases, verdicts, paper records and tables."""

from __future__ import annotations

import pytest

from hwsim.records import within_tolerance
from hwsim.suites.registry import SuiteContext, get_suite
from hwsim.suites.t3 import PAPER, CaseResult, figure_value, within


def test_within_is_the_project_rule_relative_to_the_paper():
    assert within(0.30, 0.24) and within(0.18, 0.24)
    assert not within(0.31, 0.24)
    assert within(0.27, 0.22) and not within(0.28, 0.22)
    assert within(0.30, 0.20) == within_tolerance(0.30, 0.20)


class _Fake:
    def __init__(self, time_s, hbm_bytes):
        self.time_s, self.hbm_bytes = time_s, hbm_bytes


def test_figure_values_are_geomeans_and_extremes_of_the_cases():
    cases = [
        CaseResult("palm", 32, "OP", {"sequential": _Fake(2.0, 100.0), "t3-mca": _Fake(1.0, 50.0)}, 1.0),
        CaseResult("t-nlg", 8, "OP", {"sequential": _Fake(2.0, 100.0), "t3-mca": _Fake(1.6, 80.0)}, 1.0),
    ]
    by_label = {f.label: f for f in PAPER}
    assert figure_value(by_label["T3-MCA, geomean"], cases) == pytest.approx((2.0 * 1.25) ** 0.5 - 1)
    assert figure_value(by_label["T3-MCA, max"], cases) == pytest.approx(1.0)
    assert figure_value(by_label["T3-MCA data movement, max"], cases) == pytest.approx(0.5)
    assert figure_value(by_label["T3-MCA, 500B-class at TP 32, geomean"], cases) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def quick_result():
    return get_suite("t3").run(SuiteContext(hardware=None, quick=True))


def test_suite_returns_tables_and_paper_records_joined_by_key(quick_result):
    result = quick_result
    assert result.tables and all(t.rows for t in result.tables)
    paper = {r.key: r for r in result.records if r.source == "paper"}
    assert paper and all(r.citation for r in paper.values())
    simulated = {r.key: r for r in result.records if r.source == "simulated"}
    assert set(paper) <= set(simulated)  # every paper figure has our number beside it
    headline = next(t for t in result.tables if t.title.startswith("simulated vs T3 paper"))
    for row in headline.rows:
        fig = next(f for f in PAPER if f.label == row[0])
        sign = -1.0 if fig.kind == "bytes" else 1.0
        assert row[3] == within_tolerance(sign * float(row[1]), sign * float(row[2]))  # verdicts match the numbers
    batches = {r.case.get("batch") for r in result.records if r.source == "paper"}
    assert batches == {1, 4, 8, 16}


def test_suite_nothing_beats_ideal_and_t3_moves_fewer_bytes(quick_result):
    speedups = {(r.case["model"], r.case["tp"], r.case["sublayer"], r.case["strategy"]): r.value
                for r in quick_result.records if r.metric == "speedup" and r.hardware == "t3-gpu"}
    for (model, tp, sublayer, strategy), value in speedups.items():
        assert value <= speedups[(model, tp, sublayer, "ideal")] * (1 + 1e-9), (model, sublayer, strategy)
    rel = [r.value for r in quick_result.records
           if r.metric == "dram_bytes_ratio" and r.case["strategy"] == "t3" and r.hardware == "t3-gpu"]
    assert rel and all(v < 1.0 for v in rel)


def test_suite_batch_parameter_changes_tokens():
    suite = get_suite("t3")
    assert "batch" in suite.parameters and "seq_len" in suite.parameters  # type: ignore[attr-defined]
