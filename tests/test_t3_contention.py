"""T3's contention mechanisms: limit case, monotone slowdown under load, MCA's promise, the ideal bound."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from hwsim.engine import Flow, Simulation
from hwsim.hardware import load_hardware
from hwsim.systems.t3 import (
    FLUID,
    STRATEGIES,
    T3Error,
    T3Params,
    gemm_under_load_s,
    gemm_waves,
    ideal_overlap,
    ring_hardware,
    simulate_ring,
    simulate_sublayer,
)
from hwsim.systems.t3_memory import DramTiming, MCAConfig, mca_allocate
from hwsim.workloads.tensor_parallel import sublayer_gemm

CASES = [("mega-gpt2", "OP", 16), ("t-nlg", "FC-2", 8), ("gpt-3", "IP", 32)]


@pytest.fixture(scope="module")
def t3_gpu():
    return load_hardware("t3-gpu")


@pytest.mark.parametrize("model,sublayer,tp", CASES[1:])  # mega-gpt2 OP's GEMM alone nears the bandwidth
@pytest.mark.parametrize("name", [s for s in STRATEGIES if s != "software"])
def test_private_and_shared_hbm_agree_without_contention_parameters(t3_gpu, model, sublayer, tp, name):
    """The limit case: smooth traffic, no mixing penalty, demand under capacity: sharing costs nothing.

    (Software overlap is left out: its reduce kernel runs as fast as memory allows, an unpaced flow
    that takes bandwidth from the GEMM even in the fluid model.)"""
    gemm = sublayer_gemm(model, sublayer, tp)
    hw = ring_hardware(t3_gpu, tp)
    shared = simulate_sublayer(hw, gemm, STRATEGIES[name], FLUID)
    private = simulate_sublayer(hw, gemm, STRATEGIES[name], replace(FLUID, contention=False))
    assert shared.time_s == pytest.approx(private.time_s, rel=1e-9)


def test_with_contention_parameters_sharing_costs_time_where_the_collective_is_heavy(t3_gpu):
    gemm = sublayer_gemm("mega-gpt2", "OP", 16)
    hw = ring_hardware(t3_gpu, 16)
    shared = simulate_sublayer(hw, gemm, STRATEGIES["t3"])
    private = simulate_sublayer(hw, gemm, STRATEGIES["t3"], replace(T3Params(), contention=False))
    assert shared.time_s > private.time_s * 1.01
    assert shared.gemm_s > private.gemm_s * 1.05


@pytest.mark.parametrize("model,sublayer,tp", CASES[:2])
def test_gemm_slows_monotonically_as_communication_load_grows(t3_gpu, model, sublayer, tp):
    gemm = sublayer_gemm(model, sublayer, tp)
    hw = ring_hardware(t3_gpu, tp)
    loads = np.linspace(0.0, 0.95, 9) * t3_gpu.device.memory.bandwidth_bytes_per_s
    times = [gemm_under_load_s(hw, gemm, load) for load in loads]
    assert all(b >= a * (1 - 1e-12) for a, b in itertools.pairwise(times))
    assert times[-1] > times[0] * 1.005
    # without the contention parameters, a load the GEMM's demand leaves room for costs nothing
    fluid = [gemm_under_load_s(hw, gemm, load, FLUID) for load in loads[:3]]
    assert fluid == pytest.approx([fluid[0]] * 3, rel=1e-9)


def test_mca_never_lets_the_gemm_fall_below_its_promise():
    """Random flow mixes: the GEMM gets its demand, or all but the starvation share, whatever the rest want."""
    rng = np.random.default_rng(7)
    env = Simulation().env
    for _ in range(500):
        cfg = MCAConfig(queue_threshold=float(rng.uniform(0.3, 1.0)), starvation_share=float(rng.uniform(0.01, 0.3)))
        capacity = float(rng.uniform(10.0, 1000.0))
        flows = []
        for i in range(int(rng.integers(1, 5))):
            cap = None if rng.random() < 0.4 else float(rng.uniform(0.01, 1.5)) * capacity
            flows.append(Flow(1.0, 1.0, cap, env.event(), f"gemm.rd|{i}", 0.0))
        for i in range(int(rng.integers(1, 5))):
            cap = None if rng.random() < 0.5 else float(rng.uniform(0.01, 1.5)) * capacity
            flows.append(Flow(1.0, 1.0, cap, env.event(), f"coll.rd|{i}", 0.0))
        mca_allocate(cfg, capacity, flows)
        gemm = [f for f in flows if f.label.startswith("gemm")]
        demand = sum(f.cap_bytes_per_s if f.cap_bytes_per_s is not None else float("inf") for f in gemm)
        got = sum(f.rate_bytes_per_s for f in gemm)
        assert got >= cfg.gemm_promise(capacity, demand) * (1 - 1e-9)
        assert sum(f.rate_bytes_per_s for f in flows) <= capacity * (1 + 1e-9)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("model,sublayer,tp", CASES)
def test_no_strategy_beats_ideal(t3_gpu, model, sublayer, tp, batch):
    gemm = sublayer_gemm(model, sublayer, tp, batch=batch)
    hw = ring_hardware(t3_gpu, tp)
    results = {name: simulate_sublayer(hw, gemm, s) for name, s in STRATEGIES.items()}
    ideal = ideal_overlap(hw, gemm, STRATEGIES, results)
    for name, r in results.items():
        assert r.time_s >= ideal * (1 - 1e-9), name


def test_mixing_efficiency_from_dram_timings():
    t = DramTiming()
    assert t.efficiency({"gemm.rd": 5.0}) == 1.0  # a lone stream keeps its rows open
    two_reads = t.efficiency({"gemm.rd": 1.0, "coll.rd": 1.0})
    assert two_reads == pytest.approx(t.page_s / (t.page_s + 0.5 * t.exposed_fraction * (t.t_rp_s + t.t_rcd_s)))
    read_write = t.efficiency({"gemm.rd": 1.0, "coll.wr": 1.0})
    assert read_write < two_reads  # the bus turnaround on top of the row switches
    assert DramTiming(exposed_fraction=0.0, t_wtr_s=0.0, t_rtw_s=0.0).efficiency({"gemm.rd": 1.0, "coll.wr": 1.0}) == 1.0


def test_l2_keeps_panels_across_waves():
    m, n, k = 2048, 2048, 256
    no_reuse = gemm_waves((m,), n, k, 16, 2.0, 128, 128, 1e-6, 0.0)
    reuse = gemm_waves((m,), n, k, 16, 2.0, 128, 128, 1e-6, 64e6)
    assert sum(w.read_bytes for w in reuse) == pytest.approx((m + n) * k * 2.0)  # every panel read once
    assert sum(w.read_bytes for w in no_reuse) > sum(w.read_bytes for w in reuse)


def test_nmc_update_occupies_its_bank_longer_than_a_write(t3_gpu):
    gemm = sublayer_gemm("mega-gpt2", "OP", 16)
    hw = ring_hardware(t3_gpu, 16)
    cheap = replace(T3Params(), dram=DramTiming(exposed_fraction=0.0))
    costly = replace(T3Params(), dram=DramTiming(exposed_fraction=1.0))
    fast, slow = (simulate_sublayer(hw, gemm, STRATEGIES["t3"], p) for p in (cheap, costly))
    assert fast.hbm_bytes == pytest.approx(slow.hbm_bytes)  # the in-bank read moves no bytes on the bus
    assert slow.time_s > fast.time_s


@pytest.mark.parametrize("name", ["sequential", "software", "t3", "t3-mca"])
def test_all_gpus_homogeneous_ring_equals_the_mirror_model(t3_gpu, name):
    gemm = sublayer_gemm("mega-gpt2", "OP", 8)
    hw = ring_hardware(t3_gpu, 8)
    mirror = simulate_sublayer(hw, gemm, STRATEGIES[name])
    every = simulate_ring(hw, gemm, STRATEGIES[name], all_gpus=True)
    assert len(every) == 8
    for r in every:
        assert r.time_s == pytest.approx(mirror.time_s, rel=1e-9)
        assert r.hbm_bytes == pytest.approx(mirror.hbm_bytes, rel=1e-9)
        assert r.link_bytes == pytest.approx(mirror.link_bytes, rel=1e-12)


def test_a_straggler_or_a_slow_link_delays_the_whole_ring(t3_gpu):
    gemm = sublayer_gemm("t-nlg", "FC-2", 8)
    hw = ring_hardware(t3_gpu, 8)
    strategy = STRATEGIES["t3"]
    base = max(r.time_s for r in simulate_ring(hw, gemm, strategy, all_gpus=True))
    times = [max(r.time_s for r in simulate_ring(hw, gemm, strategy, all_gpus=True, compute_scale=[f] + [1.0] * 7))
             for f in (1.05, 1.1, 1.2)]
    assert base < times[0] < times[1] < times[2]
    skew = simulate_ring(hw, gemm, strategy, all_gpus=True, link_scale=[1.0] * 7 + [0.5])
    assert min(r.time_s for r in skew) > base  # every GPU waits for the slow link's messages
    with pytest.raises(T3Error, match="all_gpus"):
        simulate_ring(hw, gemm, strategy, compute_scale=[1.1] + [1.0] * 7)
