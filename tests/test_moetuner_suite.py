"""The moetuner suite end to end (quick): every case reported, speedups consistent with the times,
the ILP no worse than the heuristics on the routing it was solved on, and the figure written."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from hwsim.suites.moetuner import PAPER_SPEEDUP, SOLVERS, SUITE, tp_rank
from hwsim.suites.registry import SuiteContext, get_suite


def test_quick_suite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert get_suite("moetuner") is SUITE
    out = StringIO()
    result = SUITE.run(SuiteContext(hardware=None, quick=True, seed=0, console=Console(file=out, width=120),
                                    figures_dir=tmp_path / "figs"))
    rows: dict[tuple, dict[str, float]] = {}
    for r in result.records:
        if "solver" in r.case:
            rows.setdefault((r.case["model"], r.case["scale"], r.case["solver"]), {})[r.metric] = r.value
    cases = {(m, s) for m, s, _ in rows}
    expected = {(m, s) for m in ("mixtral-8x7b", "olmoe-1b-7b") for s in PAPER_SPEEDUP}
    expected |= {("mixtral-8x7b", "single-tp2"), ("mixtral-8x7b", "multi-tp4")}  # the paper's EP4xTP layouts
    assert cases == expected
    for model, scale in cases:
        base = rows[model, scale, "contiguous"]["e2e_time"]
        for solver in SOLVERS:
            row = rows[model, scale, solver]
            assert row["speedup_vs_contiguous"] == pytest.approx(base / row["e2e_time"] - 1)
            assert row["max_over_mean_gpu_load"] >= 1.0
            assert row["p99_layer_time"] <= row["e2e_time"]
            assert (row["cross_node_bytes"] > 0) == scale.startswith("multi")
        tuned = rows[model, scale, "moetuner"]
        assert tuned["objective_solve_domain"] <= rows[model, scale, "greedy"]["objective_solve_domain"] + 1e-6
        assert 0 <= tuned["optimality_gap"] < 1
    assert "paper" in out.getvalue() and "+17.5%" in out.getvalue()
    assert result.figures == [tmp_path / "figs" / "gpu_load.png"]
    assert result.figures[0].stat().st_size > 10_000


def test_tp_rank_splits_compute_not_the_network():
    from hwsim.hardware import load_hardware

    hw = load_hardware("h100-sxm")
    rank = tp_rank(hw, 4)
    assert rank.device.peak("bf16") == 4 * hw.device.peak("bf16")
    assert rank.device.memory.bandwidth_bytes_per_s == 4 * hw.device.memory.bandwidth_bytes_per_s
    assert rank.topology == hw.topology


def test_unknown_parameter_is_refused():
    from hwsim.errors import SuiteError

    with pytest.raises(SuiteError, match="has no parameter 'tokens'"):
        SUITE.run(SuiteContext(hardware=None, quick=True, params={"tokens": 4}))
