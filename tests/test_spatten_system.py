"""SpAtten model: the top-k engine, DRAM accounting, pipeline behaviour and the suite."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.hardware import load_hardware
from hwsim.systems.spatten import (BREAKDOWN, CONFIGS, SpAttenConfig, SpAttenError, dense_baseline, simulate,
                                   topk_engine, topk_engine_mean_cycles)
from hwsim.systems.spatten_workloads import WORKLOADS, SpAttenWorkload, WorkloadError
from hwsim.kernels.topk import topk_ref

HW = load_hardware("spatten")


def tiny(**kw) -> SpAttenWorkload:
    base = dict(name="tiny", model="tiny", task="glue", layers=2, heads=2, head_dim=64, prompt_tokens=40,
                generated_tokens=0, token_keep=(1.0, 1.0), heads_kept=(2, 2), value_keep=1.0, key_msb_bits=6,
                key_lsb_bits=4, value_bits=8, query_bits=16, refetch_fraction=0.0, prob_threshold=0.1)
    base.update(kw)
    return SpAttenWorkload(**base)


# --- top-k engine ---------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(values=st.lists(st.integers(-5, 5) | st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=200),
       data=st.data(), p=st.sampled_from([1, 3, 16, 64]), seed=st.integers(0, 2**16))
def test_engine_selects_exactly_the_k_largest(values, data, p, seed):
    k = data.draw(st.integers(1, len(values)))
    run = topk_engine(values, k, p, np.random.default_rng(seed))
    _, ref_idx = topk_ref(np.asarray([values], dtype=np.float64), k)
    np.testing.assert_array_equal(run.indices, ref_idx[0])
    # cost is exactly the per-iteration formula plus the output pass
    assert run.cycles == sum(math.ceil(n / p) + 3 for n in run.lengths) + math.ceil(len(values) / p) + 3
    assert run.lengths[0] == len(values) and all(b < a for a, b in zip(run.lengths, run.lengths[1:]))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), p=st.sampled_from([1, 4, 16]), seed=st.integers(0, 1000))
def test_cycle_by_cycle_walk_equals_fast_mode(n, p, seed):
    values = np.random.default_rng(seed).integers(0, 20, n).astype(float)
    k = max(1, n // 3)
    fast = topk_engine(values, k, p, np.random.default_rng(seed))
    walk = topk_engine(values, k, p, np.random.default_rng(seed), cycle_accurate=True)
    assert (fast.cycles, fast.lengths) == (walk.cycles, walk.lengths)
    np.testing.assert_array_equal(fast.indices, walk.indices)


def test_engine_cycles_grow_linearly_in_n_over_p():
    rng = np.random.default_rng(0)
    per_unit = {}
    for p in (1, 4, 16):
        for n in (512, 2048, 8192):
            per_unit[(p, n)] = topk_engine_mean_cycles(n, n // 4, p, rng, trials=12) / (n / p)
    # quick-select streams ~2.5-3.5x the row on average (random pivots) plus the output pass, whatever n, P
    assert all(2.0 < c < 6.5 for c in per_unit.values()), per_unit
    for p in (1, 4, 16):
        assert per_unit[(p, 8192)] == pytest.approx(per_unit[(p, 512)], rel=0.35)
    # more comparators, fewer cycles, in proportion while n/P is large
    c1 = topk_engine_mean_cycles(8192, 2048, 1, rng, trials=12)
    c16 = topk_engine_mean_cycles(8192, 2048, 16, rng, trials=12)
    assert 10 < c1 / c16 < 20


def test_engine_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(SpAttenError, match="1 <= k <= n=3"):
        topk_engine([1.0, 2.0, 3.0], 4, 16, rng)
    with pytest.raises(SpAttenError, match="comparators"):
        topk_engine([1.0], 1, 0, rng)
    with pytest.raises(SpAttenError, match="NaN"):
        topk_engine([1.0, float("nan")], 1, 4, rng)


# --- DRAM accounting and the pipeline ---------------------------------------------------------

def test_dense_bytes_are_q_k_v_rows_of_whole_transactions():
    w = tiny()
    r = simulate(HW, w, CONFIGS["dense-fp32"])
    row = 64 * 4  # 64 fp32 values: 8 transactions of 32 B
    assert r.total_dram_bytes == w.layers * w.heads * 3 * w.prompt_tokens * row
    # 6-bit keys: 48 B of data still move as 2 transactions (64 B); 16-bit queries 128 B; 8-bit values 64 B
    s = simulate(HW, w, CONFIGS["spatten"])
    assert s.dram_bytes["k_msb"] == w.layers * w.heads * w.prompt_tokens * 64
    assert s.dram_bytes["q"] == w.layers * w.heads * w.prompt_tokens * 128
    assert s.dram_bytes["v"] == w.layers * w.heads * w.prompt_tokens * 64


def test_cascade_pruning_removes_tokens_and_heads_for_later_layers():
    w = tiny(layers=3, token_keep=(1.0, 0.5, 0.25), heads_kept=(2, 2, 1))
    dense = simulate(HW, w, CONFIGS["dense-fp32"])
    pruned = simulate(HW, w, replace(CONFIGS["dense-fp32"], token_pruning=True, head_pruning=True))
    rows = 2 * 40 + 2 * 20 + 1 * 10  # head-layers x kept tokens
    assert pruned.total_dram_bytes == rows * 3 * 256
    assert pruned.total_dram_bytes < dense.total_dram_bytes
    assert pruned.topk_runs == 3  # token top-k before layers 1 and 2, head top-k before layer 2


def test_progressive_quantization_refetches_lsbs_at_the_given_rate():
    w = tiny(prompt_tokens=200, refetch_fraction=0.3)
    r = simulate(HW, w, CONFIGS["spatten"], seed=3)
    assert 0.2 < r.refetched_queries / r.queries < 0.4
    assert r.dram_bytes["k_lsb"] > 0
    off = simulate(HW, tiny(prompt_tokens=200, refetch_fraction=0.0), CONFIGS["spatten"], seed=3)
    assert off.dram_bytes["k_lsb"] == 0 and off.latency_s < r.latency_s


def test_generation_step_is_memory_bound_and_shares_the_channels():
    w = WORKLOADS["gpt2-medium-wikitext2"]
    one = simulate(HW, w, CONFIGS["dense-fp32"], steps_simulated=1)
    # a dense fp32 generation step cannot beat its bytes over the full HBM bandwidth
    step_bytes = w.layers * w.heads * (w.prompt_tokens + 1) * 2 * 256
    assert one.step_latency_s >= step_bytes / HW.device.memory.bandwidth_bytes_per_s
    # halving the channels (same per-channel rate) slows a memory-bound step, not a compute-bound prompt
    d = HW.device
    half = replace(HW, device=replace(d, memory=replace(d.memory, channels=8, bandwidth_bytes_per_s=d.memory.bandwidth_bytes_per_s / 2)))
    slow = simulate(half, w, CONFIGS["dense-fp32"], steps_simulated=1)
    assert slow.step_latency_s > 1.5 * one.step_latency_s


def test_every_technique_reduces_dram_and_same_seed_same_result():
    w = WORKLOADS["gpt2-small-wikitext2"]
    sizes = [simulate(HW, w, cfg, seed=1, steps_simulated=1).total_dram_bytes for _, cfg in BREAKDOWN]
    assert all(b <= a for a, b in zip(sizes, sizes[1:])), sizes  # GPT-2 small prunes no heads: equal there
    assert sizes[1] < sizes[0] and sizes[3] < sizes[2] and sizes[4] < sizes[3]
    a = simulate(HW, w, CONFIGS["spatten"], seed=5, steps_simulated=1)
    b = simulate(HW, w, CONFIGS["spatten"], seed=5, steps_simulated=1)
    assert (a.latency_s, a.dram_bytes, a.topk_cycles) == (b.latency_s, b.dram_bytes, b.topk_cycles)


def test_spatten_eighth_is_slower_and_gpu_baseline_counts_kernels():
    w = WORKLOADS["bert-base-glue"]
    full = simulate(HW, w)
    eighth = simulate(load_hardware("spatten-1/8"), w)
    assert 4 < eighth.latency_s / full.latency_s <= 8.5
    g = dense_baseline(load_hardware("titan-xp"), w)
    assert g.kernels == w.layers * 7 and g.latency_s > 0


def test_workload_validation_and_wrong_hardware():
    with pytest.raises(WorkloadError, match="never rise"):
        tiny(token_keep=(0.5, 1.0))
    with pytest.raises(WorkloadError, match="2 entries"):
        tiny(heads_kept=(2,))
    with pytest.raises(SpAttenError, match="not a SpAtten accelerator"):
        simulate(load_hardware("titan-xp"), tiny())


def test_suite_quick_run_reports_headline_and_topk_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the figure goes to ./results/spatten/
    from rich.console import Console

    from hwsim.suites.registry import SuiteContext, get_suite

    ctx = SuiteContext(hardware=None, quick=True, console=Console(file=open(tmp_path / "out.txt", "w")))
    result = get_suite("spatten").run(ctx)
    metrics = {(r.metric, r.case.get("benchmark")) for r in result.records}
    assert ("dram_reduction_geomean", "average") in metrics
    assert ("speedup_vs_titan_xp_mean", "average") in metrics
    topk = [r for r in result.records if r.metric == "topk_engine_cycles" and r.case["k"] == r.case["n"] // 4]
    assert {r.case["comparators"] for r in topk} == {1, 4, 16, 64}
    assert all(p.exists() for p in result.figures)
