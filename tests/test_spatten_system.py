"""SpAtten model: the top-k engine against the released latency model, the testbench's row mapping,
progressive quantization as a re-queued request, DRAM timing, baselines and the suite."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.hardware import load_hardware
from hwsim.kernels.topk import topk_ref
from hwsim.systems.spatten import (
    BREAKDOWN,
    CONFIGS,
    HBM2_2GBPS,
    SpAttenConfig,
    SpAttenError,
    _Accelerator,
    dense_baseline,
    map_row,
    plan_bytes,
    plan_iteration,
    simulate,
    topk_engine,
    topk_engine_mean_cycles,
)
from hwsim.systems.spatten_workloads import Benchmark, get_benchmark
from hwsim.workloads.spatten_csv import WorkloadRow

HW = load_hardware("spatten")


def row(**kw) -> WorkloadRow:
    base: dict[str, object] = {"iteration": 0, "layer": 0, "head": 0, "head_dim": 64, "length": 64, "key_fetch": 64,
                               "key_bits": 8, "query_bits": 16, "requant_threshold": 0.05, "requant": False,
                               "requant_bits": 4, "value_fetch": 64, "value_bits": 8, "accumulate_importance": True,
                               "rescale_importance": False, "topk": False, "topk_k": -1, "line": 2}
    base.update(kw)
    return WorkloadRow(**base)  # type: ignore[arg-type]


def bench(*rows: WorkloadRow, heads: int = 2) -> Benchmark:
    return Benchmark(name="t", model="t", layers=1 + max(r.layer for r in rows), heads=heads, head_dim=64,
                     rows=tuple(rows), generation=True, keep_source="test")


# --- the top-k engine is the released latency model (TopKLatencyModel.scala) ----------------------

class Scripted:
    """An rng whose pivot indices are given, so two implementations can see the same pivots."""

    def __init__(self, picks):
        self.picks = list(picks)

    def integers(self, n):
        return self.picks.pop(0) % n


def released_model_cycles(values, target, parallelism, picks):
    """TopKLatencyModel.topKLatency written out from its description: keep the ``target`` smallest;
    per iteration ceil(size/P) + 3 cycles; stop when the pivot's ties complete the target."""
    seq, cycles, picks = list(values), 0, list(picks)
    while seq:
        cycles += (len(seq) + parallelism - 1) // parallelism + 3
        pivot = seq[picks.pop(0) % len(seq)]
        lo = [x for x in seq if x < pivot]
        hi = [x for x in seq if x > pivot]
        cnt = len(seq) - len(lo) - len(hi)
        if len(lo) <= target:
            if len(lo) + cnt > target:
                break
            target -= len(lo) + cnt
            seq = hi
        else:
            seq = lo
    return cycles


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 300), data=st.data(), p=st.sampled_from([1, 4, 16]), seed=st.integers(0, 10**6))
def test_engine_cycles_equal_the_released_model_for_the_same_pivots(n, data, p, seed):
    k = data.draw(st.integers(1, n - 1))
    values = np.random.default_rng(seed).permutation(n).astype(float)
    picks = np.random.default_rng(seed + 1).integers(0, 10**9, 64).tolist()
    ours = topk_engine(values, k, p, Scripted(picks))
    # the released model keeps the k smallest; ours the k largest: negate
    assert ours.cycles == released_model_cycles((-values).tolist(), k, p, picks)


def test_engine_by_hand():
    values = np.arange(16.0)            # keep the top 4 of 0..15 with 4 comparators
    run = topk_engine(values, 4, 4, Scripted([11]))   # pivot 11: exactly 4 above it
    assert run.cycles == math.ceil(16 / 4) + 3 == 7 and run.iterations == 1
    np.testing.assert_array_equal(run.indices, [12, 13, 14, 15])


@settings(max_examples=120, deadline=None)
@given(values=st.lists(st.integers(-5, 5) | st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=200),
       data=st.data(), p=st.sampled_from([1, 3, 16, 64]), seed=st.integers(0, 2**16))
def test_engine_selects_exactly_the_k_largest(values, data, p, seed):
    k = data.draw(st.integers(1, len(values)))
    run = topk_engine(values, k, p, np.random.default_rng(seed))
    _, ref_idx = topk_ref(np.asarray([values], dtype=np.float64), k)
    np.testing.assert_array_equal(run.indices, ref_idx[0])
    assert run.cycles == sum(math.ceil(n / p) + 3 for n in run.lengths)   # no output pass
    assert run.lengths[0] == len(values)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), p=st.sampled_from([1, 4, 16]), seed=st.integers(0, 1000))
def test_cycle_by_cycle_walk_equals_fast_mode(n, p, seed):
    values = np.random.default_rng(seed).integers(0, 20, n).astype(float)
    k = max(1, n // 3)
    fast = topk_engine(values, k, p, np.random.default_rng(seed))
    walk = topk_engine(values, k, p, np.random.default_rng(seed), cycle_accurate=True)
    assert (fast.cycles, fast.lengths) == (walk.cycles, walk.lengths)
    np.testing.assert_array_equal(fast.indices, walk.indices)


def test_engine_cycles_scale_with_n_over_p_and_reject_bad_arguments():
    rng = np.random.default_rng(0)
    c1 = topk_engine_mean_cycles(8192, 2048, 1, rng, trials=12)
    c16 = topk_engine_mean_cycles(8192, 2048, 16, rng, trials=12)
    assert 10 < c1 / c16 < 20
    with pytest.raises(SpAttenError, match="1 <= k <= n=3"):
        topk_engine([1.0, 2.0, 3.0], 4, 16, rng)
    with pytest.raises(SpAttenError, match="comparators"):
        topk_engine([1.0], 1, 0, rng)
    with pytest.raises(SpAttenError, match="NaN"):
        topk_engine([1.0, float("nan")], 1, 4, rng)


# --- one request through the pipeline, by hand ----------------------------------------------------

def test_one_row_workload_cycles_by_hand():
    r = row(length=64, key_fetch=64, value_fetch=16)    # 8-bit keys and values, no re-fetch
    b = bench(r, heads=1)
    result = simulate(HW, b, seed=3)
    clock = 1e-9
    per_channel = HW.device.memory.bandwidth_bytes_per_s / 16 * HBM2_2GBPS.refresh_factor

    def fetch_s(nbytes: float) -> float:   # 32-byte beats over 16 channels + activation and CAS once
        beats = nbytes / 32
        return math.ceil(beats / 16) * 32 / per_channel + (7 + 7) * clock

    rng = np.random.default_rng(3)          # the engine's draws: scores, then pivots
    topk = topk_engine(rng.random(64), 16, 16, rng)
    assert topk.cycles == sum(math.ceil(n / 16) + 3 for n in topk.lengths)
    expected = (fetch_s(64 * 64)             # 64 keys x 64 B (8-bit x 64)
                + (64 / 8 + 11 + 87) * clock  # Q.K at 8 keys per cycle, then drain multiplier + softmax
                + topk.cycles * clock         # local value pruning: 16 of 64
                + fetch_s(16 * 64)            # 16 values x 64 B
                + (16 / 8 + 3) * clock)       # prob.V at 8 values per cycle, then drain
    assert result.latency_s == pytest.approx(expected, rel=1e-9)
    assert result.cycles == pytest.approx(expected / clock, rel=1e-9)


# --- the testbench's mapping of rows ----------------------------------------------------------

def test_testbench_mapping_of_bits_fusion_and_rounding():
    m = map_row(row(key_bits=12, value_bits=8, key_fetch=61, value_fetch=17), CONFIGS["spatten"])
    assert (m.key_rows, m.value_rows) == (64, 24)                  # rounded up to multiples of 8
    assert m.requant and m.key_row_bytes == 64 and m.lsb_row_bytes == 32   # 12-bit -> 8 MSB + forced LSB
    full = map_row(row(key_bits=-1, value_bits=-1), CONFIGS["spatten"])
    assert full.requant and full.key_row_bytes == 64 and full.value_row_bytes == 64
    six = map_row(row(key_bits=6, value_bits=6), CONFIGS["spatten"])
    assert six.key_row_bytes == 48 and not six.requant              # two heads' 6-bit keys: 96 B, 3 beats
    rows = [row(head=h, key_bits=6, value_bits=6, value_fetch=16) for h in range(4)]
    reqs = plan_iteration(rows, bench(*rows, heads=4), CONFIGS["spatten"])
    assert [q.local_topk is not None for q in reqs] == [True, False, True, False]   # once per fused pair


def test_progressive_quantization_without_refetch_is_static_msb_bytes():
    rows = [row(head=h, layer=layer, key_fetch=40, value_fetch=16, requant=False) for layer in range(2) for h in range(2)]
    b = bench(*rows)
    pq = simulate(HW, b, CONFIGS["spatten"])
    msb_only = 4 * 40 * 64   # 4 requests x 40 keys x 8 bits x 64 dims, no LSBs
    assert pq.dram_bytes["k_msb"] == pq.simulated_bytes["k_msb"] == msb_only
    assert pq.dram_bytes["k_lsb"] == pq.simulated_bytes["k_lsb"] == 0
    static = plan_bytes(b, CONFIGS["no-progressive-quant"])     # 12-bit keys always
    assert static["k_msb"] == 4 * 40 * 96 and static["k_lsb"] == 0
    # re-fetch on one head: its LSBs, 4 bits per element, and nothing else changes
    rows[1] = replace(rows[1], requant=True)
    one = simulate(HW, bench(*rows), CONFIGS["spatten"])
    assert one.dram_bytes["k_lsb"] == one.simulated_bytes["k_lsb"] == 40 * 32
    assert one.dram_bytes["k_msb"] == msb_only and one.latency_s > pq.latency_s


def _run(rows, requant_first: bool) -> _Accelerator:
    rows = [replace(rows[0], requant=requant_first)] + list(rows[1:])
    b = bench(*rows, heads=len(rows))
    acc = _Accelerator(HW, 64, np.random.default_rng(0), None, "t")
    acc.run(plan_iteration(rows, b, CONFIGS["spatten"]), layer_barrier=False)
    return acc


def test_refetch_never_stalls_another_heads_qk():
    rows = [row(head=h, length=1024, key_fetch=512, value_fetch=300) for h in range(3)]  # all fit the key buffer
    calm, refetch = _run(rows, False), _run(rows, True)
    assert refetch.refetched == 1 and calm.refetched == 0
    for h in (1, 2):   # the other heads start Q.K exactly when they would without the re-fetch
        assert refetch.qk_start[(0, h)] == calm.qk_start[(0, h)]
    # head 1 used the array while head 0's LSBs were on their way; head 0 recomputed afterwards
    assert refetch.qk_start[(0, 1)] < refetch.recompute_start[(0, 0)]
    assert (0, 0) not in calm.recompute_start


def test_head_pruning_and_token_pruning_change_bytes_from_the_rows():
    b = get_benchmark("gpt2-medium-wikitext2")
    full = plan_bytes(b, BREAKDOWN[2][1])     # fp32 + token + head pruning
    no_head = plan_bytes(b, BREAKDOWN[1][1])  # fp32 + token pruning only: pruned heads come back
    assert sum(no_head.values()) > sum(full.values())
    sizes = [sum(plan_bytes(b, cfg).values()) for _, cfg in BREAKDOWN]
    assert all(y <= x for x, y in itertools.pairwise(sizes))


def test_layer_barrier_never_helps_and_same_seed_same_result():
    b = get_benchmark("gpt2-small-wikitext2")
    free = simulate(HW, b, iterations=1, seed=4)
    barrier = simulate(HW, b, iterations=1, seed=4, layer_barrier=True)
    assert barrier.latency_s >= free.latency_s
    again = simulate(HW, b, iterations=1, seed=4)
    assert (again.latency_s, again.dram_bytes, again.topk_cycles) == (free.latency_s, free.dram_bytes, free.topk_cycles)


def test_dram_activation_makes_small_fetches_less_efficient():
    def time_of(nbytes: float) -> float:
        acc = _Accelerator(HW, 64, np.random.default_rng(0), None, "t")
        acc.env.process(_wait(acc, nbytes))
        return acc.sim.run()

    def _wait(acc, nbytes):
        yield acc.fetch(nbytes, "k_msb", "x")

    peak = HW.device.memory.bandwidth_bytes_per_s
    small, large = 512 / time_of(512), 65536 / time_of(65536)
    assert small < 0.6 * peak and 0.85 * peak < large < HBM2_2GBPS.refresh_factor * peak


def test_eighth_is_slower_and_baseline_is_an_op_sequence():
    b = get_benchmark("gpt2-small-wikitext2")
    full = simulate(HW, b, iterations=1)
    eighth = simulate(load_hardware("spatten-1/8"), b, iterations=1)
    assert 4 < eighth.latency_s / full.latency_s <= 12
    g = dense_baseline(load_hardware("titan-xp"), b)
    assert g.ops == 32 * 12 * 8                # cat K, cat V, QK, scale, mask, softmax, PV, merge
    assert g.dispatch_s == pytest.approx(g.ops * load_hardware("titan-xp").device.launch_overhead_s)
    with pytest.raises(SpAttenError, match="not a SpAtten accelerator"):
        simulate(load_hardware("titan-xp"), b)


def test_baseline_ops_on_measured_models_see_the_whole_sequence_in_the_caches():
    """Each op of the op-by-op layer streams at the staircase level of the layer's footprint: a 1 MB
    cache append alone fits the fast step, inside the ~4.5 MB layer it does not."""

    from hwsim.costs import memcpy
    from hwsim.costs.families import MemoryStep, OperatorModels
    from hwsim.systems.spatten import attention_ops

    fast, slow = MemoryStep(2.5e6, 50e9, 40e9), MemoryStep(4e6, 10e9, 8e9)
    models = OperatorModels(threads=1, launch_s=1e-6, staircase=(MemoryStep(1e4, 50e9, 40e9), fast, slow),
                            gemm_flops_per_s={"fp32": 1e11}, gemm_fixed_s=1e-6)
    cpu = load_hardware("xeon-e5-2640v4").device
    dev = replace(cpu, operators=models)
    heads, kv, d = 4, 1024, 64                 # one cache: 1 MiB; the layer touches 4 caches and more
    ops = attention_ops(dev, heads, 1, kv, d, cache_append=True)
    alone = memcpy(dev, 4.0 * heads * kv * d)
    assert ops[0].bytes == alone.bytes
    assert ops[0].time_s > 3 * alone.time_s


def test_a3_and_mnnfast_models_fetch_what_their_designs_fetch():
    b = get_benchmark("gpt2-small-wikitext2")
    a3 = plan_bytes(b, CONFIGS["a3"])
    int8 = plan_bytes(b, CONFIGS["dense-int8"])
    mnn = plan_bytes(b, CONFIGS["mnnfast"])
    assert a3 == int8
    assert mnn["k_msb"] == a3["k_msb"] and mnn["v"] < a3["v"]


def test_suite_quick_run_returns_tables_and_paper_records(tmp_path):
    from hwsim.suites.registry import SuiteContext, get_suite

    out = tmp_path / "console.txt"
    from rich.console import Console

    with open(out, "w") as fh:
        ctx = SuiteContext(hardware=None, quick=True, console=Console(file=fh), figures_dir=tmp_path)
        result = get_suite("spatten").run(ctx)
    assert out.read_text() == ""     # the suite never prints
    paper = {r.metric: r for r in result.records if r.source == "paper"}
    assert paper["speedup_vs_titan_xp"].value == 162.0 and paper["energy_saving_vs_xeon"].citation
    sim = {(r.metric, r.case_key) for r in result.records if r.source == "simulated"}
    for metric, r in paper.items():
        assert (metric, r.case_key) in sim
    assert not any(r.metric == "refetch_fraction" for r in result.records)   # an input, not a result
    titles = [t.title for t in result.tables]
    assert any("DRAM" in t for t in titles) and any("headline" in t for t in titles)
    assert all(p.exists() for p in result.figures)


def test_suite_takes_a_user_workload(tmp_path):
    from hwsim.errors import WorkloadError
    from hwsim.suites.registry import SuiteContext, get_suite
    from hwsim.workloads.spatten_csv import COLUMNS

    p = tmp_path / "mine.csv"
    p.write_text(",".join(COLUMNS) + "\n" + "0,0,0,64.0,200,100,8,16,0.05,True,4,30,8,True,False,False,-1\n")
    result = get_suite("spatten").run(SuiteContext(hardware=None, quick=True, params={"workload": str(p)}))
    benches = {r.case.get("benchmark") for r in result.records}
    assert "mine" in benches
    p.write_text(",".join(COLUMNS) + "\n" + "0,0,0,64.0,200,100,8,16,0.05,yes,4,30,8,True,False,False,-1\n")
    with pytest.raises(WorkloadError, match="mine.csv:2"):
        get_suite("spatten").run(SuiteContext(hardware=None, quick=True, params={"workload": str(p)}))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SpAttenConfig().name = "x"  # type: ignore[misc]


def test_sampled_iterations_stand_for_all_of_them():
    """Iteration 0 of the released files runs before any pruning: sampling must not over-weight it."""
    b = get_benchmark("gpt2-small-wikitext2")
    every = simulate(HW, b, iterations=None)
    sampled = simulate(HW, b, iterations=2)
    assert sampled.iterations_simulated == 3 and every.iterations_simulated == 32
    assert sampled.latency_s == pytest.approx(every.latency_s, rel=0.05)
    assert sampled.dram_bytes == every.dram_bytes == every.simulated_bytes
