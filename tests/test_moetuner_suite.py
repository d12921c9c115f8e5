"""The moetuner suite end to end (quick): real recorded routing, in-domain and cross-domain rows for every
solver, paper records only beside the Mixtral rows, verdicts by the one tolerance rule, no printing."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from rich.console import Console

from hwsim.hardware import load_hardware
from hwsim.records import within_tolerance
from hwsim.suites.moetuner import PAPER, PAPER_MODEL, SOLVERS, SUITE
from hwsim.suites.registry import SuiteContext, get_suite
from hwsim.systems.moetuner import ep_rank


def test_quick_suite(tmp_path):
    assert get_suite("moetuner") is SUITE
    out = StringIO()
    result = SUITE.run(SuiteContext(hardware=None, quick=True, seed=0, console=Console(file=out, width=120),
                                    figures_dir=tmp_path / "figs"))
    assert out.getvalue() == ""  # suites compute, the CLI presents
    sim: dict[tuple, dict[str, float]] = {}
    paper: dict[tuple, dict[str, float]] = {}
    for r in result.records:
        if "solver" not in r.case:
            continue
        key = (r.case["model"], r.case["scale"], r.case["solver"], r.case["solve_domain"], r.case["eval_domain"])
        (paper if r.source == "paper" else sim).setdefault(key, {})[r.metric] = r.value
        if r.source == "paper":
            assert r.citation and r.case["model"] == PAPER_MODEL and r.case["solver"] == "moetuner"
    models = {k[0] for k in sim}
    assert models == {"mixtral-8x7b", "olmoe-1b-7b"}
    for (model, scale, solver, solve_d, eval_d), row in sim.items():
        base = sim[model, scale, "contiguous", solve_d, eval_d]
        assert row["speedup_vs_contiguous"] == pytest.approx(base["moe_time_s"] / row["moe_time_s"] - 1)
        assert row["max_over_mean_gpu_load"] >= 1.0
        assert (row["cross_node_bytes"] > 0) == scale.startswith("multi")
    # every solver, in-domain and cross-domain, at the paper's two Mixtral layouts
    for scale in ("single-tp2", "multi-tp4"):
        for solver in SOLVERS:
            for solve_d, eval_d in (("arxiv", "arxiv"), ("arxiv", "github"), ("github", "github"), ("github", "arxiv")):
                assert (PAPER_MODEL, scale, solver, solve_d, eval_d) in sim
        for metric, value in PAPER[scale.split("-")[0]].items():
            assert paper[PAPER_MODEL, scale, "moetuner", "arxiv", "github"][metric] == value
    headline = result.tables[0]
    within = [i for i, c in enumerate(headline.columns) if c.name == "within"]
    for row in headline.rows:
        if row[1] == "moetuner":
            sims = [row[i - 2] for i in within]
            refs = [row[i - 1] for i in within]
            assert [row[i] for i in within] == ["yes" if within_tolerance(s, p) else "no" for s, p in zip(sims, refs)]
        else:
            assert all(row[i] is None for i in within)
    # replicas appear only where the solver may replicate
    replicas = {r[2]: r[12] for r in result.tables[1].rows}
    assert replicas["contiguous"] == 0 and replicas["moetuner"] == 0
    assert result.figures == [tmp_path / "figs" / "gpu_load.png"]


def test_ep_rank_has_a_port_per_gpu():
    hw = load_hardware("h200-sxm-2x8")
    rank = ep_rank(hw, 4, 4)
    assert rank.topology.devices == 4 and rank.topology.nodes == 2
    assert rank.device.peak("bf16") == 4 * hw.device.peak("bf16")
    assert rank.topology.inter_link.bandwidth_bytes_per_s == 4 * hw.topology.inter_link.bandwidth_bytes_per_s
    assert rank.topology.link.bandwidth_bytes_per_s == 4 * hw.topology.link.bandwidth_bytes_per_s


def test_tp_collectives_and_attention_follow_tokens():
    from hwsim.systems.moe import MODELS, Batch, simulate

    model = MODELS["mixtral-8x7b"]
    rank = ep_rank(load_hardware("h100-sxm"), 4, 2)
    rng = np.random.default_rng(0)
    loads = rng.integers(100, 1000, size=(2, 8)).astype(float)
    routing = np.outer(loads[0], loads[1])[None] / loads[0].sum()
    split = np.zeros((2, 8, 4))
    split[:, np.arange(8), np.arange(8) // 2] = 1.0
    batch = Batch(4096, 2048)
    plain = simulate(model, rank, batch, split, loads, routing, tp=1)
    tp = simulate(model, rank, batch, split, loads, routing, tp=2)
    assert tp.time_s > plain.time_s  # the TP collectives cost time
    moved = simulate(model, rank, batch, split, loads, routing, tp=2, attention_with_tokens=True)
    assert moved.layers[1].attention_s > tp.layers[1].attention_s  # the busiest rank also attends to more tokens


def test_routing_parameter(tmp_path):
    from hwsim.errors import WorkloadError

    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(WorkloadError, match="x.npz"):
        SUITE.run(SuiteContext(hardware=None, quick=True, params={"routing": str(bad)}))


def test_unknown_parameter_is_refused():
    from hwsim.errors import SuiteError

    with pytest.raises(SuiteError, match="has no parameter 'tokens'"):
        SUITE.run(SuiteContext(hardware=None, quick=True, params={"tokens": 4}))
