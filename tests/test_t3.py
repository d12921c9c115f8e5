"""The T3 model: its limits (no contention), closed forms (ring bytes, NMC savings, waves) and its switches."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from hwsim.costs import itemsize, ring_all_reduce
from hwsim.engine import Flow, Simulation
from hwsim.hardware import Link, load_hardware
from hwsim.systems.t3 import (
    FLUID,
    STRATEGIES,
    Strategy,
    T3Error,
    gemm_waves,
    ideal_overlap,
    ring_hardware,
    simulate_sublayer,
    wave_count,
)
from hwsim.systems.t3_memory import MCAConfig, MemoryModelError, mca_allocate
from hwsim.workloads.tensor_parallel import WorkloadError, sublayer_gemm

# the fluid limit on private HBMs: no memory contention of any kind
NO_CONTENTION = replace(FLUID, contention=False)


@pytest.fixture(scope="module")
def t3_gpu():
    return load_hardware("t3-gpu")


def _infinite_links(hw, devices):
    ring = ring_hardware(hw, devices)
    return replace(ring, topology=replace(ring.topology, link=Link(bandwidth_bytes_per_s=math.inf, latency_s=0.0)))


def _chunk_bytes(gemm):
    return gemm.m // gemm.tp * gemm.n * itemsize(gemm.dtype)


def test_sublayer_shapes_follow_megatron_partitioning():
    g = sublayer_gemm("t-nlg", "FC-2", 8)
    assert (g.m, g.n, g.k) == (8192, 4256, 4 * 4256 // 8)
    assert sublayer_gemm("t-nlg", "OP", 16).k == 4256 // 16
    assert sublayer_gemm("mt-nlg", "IP", 32).k == 3 * 20480 // 32
    with pytest.raises(WorkloadError, match="sublayer"):
        sublayer_gemm("t-nlg", "QKV", 8)
    with pytest.raises(WorkloadError, match="not divisible"):
        sublayer_gemm("t-nlg", "OP", 5)


def test_no_contention_infinite_links_gemm_bound_is_exactly_gemm_plus_all_gather(t3_gpu):
    """GEMM-dominant, private HBM, free links: T3 hides the whole reduce-scatter: max(G, RS) + AG."""
    gemm = sublayer_gemm("t-nlg", "FC-2", 8)
    hw = _infinite_links(t3_gpu, 8)
    seq = simulate_sublayer(hw, gemm, STRATEGIES["sequential"], NO_CONTENTION)
    t3 = simulate_sublayer(hw, gemm, STRATEGIES["t3"], NO_CONTENTION)
    rs = seq.reduce_scatter_end_s - seq.gemm_s
    assert seq.gemm_s > rs  # the premise: the GEMM dominates
    assert t3.time_s == pytest.approx(max(seq.gemm_s, rs) + seq.all_gather_s, rel=1e-9)
    results = {"sequential": seq, "t3": t3}
    ideal = ideal_overlap(hw, gemm, {k: STRATEGIES[k] for k in results}, results, NO_CONTENTION)
    assert t3.time_s == pytest.approx(ideal, rel=1e-9)


def test_no_contention_collective_bound_is_max_plus_at_most_one_pipeline_fill(t3_gpu):
    """Collective-dominant: T3 ends between max(G, RS) + AG and that plus one stage of GEMM (the fill)."""
    gemm = sublayer_gemm("mega-gpt2", "OP", 16)
    hw = ring_hardware(t3_gpu, 16)
    t3 = simulate_sublayer(hw, gemm, STRATEGIES["t3"], NO_CONTENTION)
    link = hw.topology.link
    c = _chunk_bytes(gemm)
    rs = (gemm.tp - 1) * (c / link.bandwidth_bytes_per_s + link.latency_s)  # the links set the collective
    bound = max(t3.gemm_s, rs) + t3.all_gather_s
    assert rs > t3.gemm_s
    assert bound * (1 - 1e-9) <= t3.time_s <= bound + t3.gemm_s / gemm.tp


@pytest.mark.parametrize("name", ["sequential", "software", "t3-track", "t3", "t3-mca"])
@pytest.mark.parametrize("tp", [8, 16])
def test_ring_link_bytes_match_closed_form(t3_gpu, name, tp):
    """Reduce-scatter + all-gather move 2 (N-1)/N of the output over each GPU's link, in every strategy."""
    gemm = sublayer_gemm("mega-gpt2", "IP", tp)
    result = simulate_sublayer(ring_hardware(t3_gpu, tp), gemm, STRATEGIES[name])
    size = gemm.output_elements * itemsize(gemm.dtype)
    assert result.link_bytes == pytest.approx(2 * (tp - 1) / tp * size, rel=1e-12)
    assert result.link_bytes == pytest.approx(ring_all_reduce(ring_hardware(t3_gpu, tp).topology, size).link_bytes_per_device)


@pytest.mark.parametrize("model,sublayer,tp", [("mega-gpt2", "OP", 8), ("t-nlg", "FC-1", 16), ("gpt-3", "IP", 32)])
def test_nmc_strictly_cuts_hbm_bytes_by_the_closed_form(t3_gpu, model, sublayer, tp):
    """NMC reads each forwarded chunk once instead of both partials, and needs no final add: (N+1) chunks fewer."""
    gemm = sublayer_gemm(model, sublayer, tp)
    hw = ring_hardware(t3_gpu, tp)
    track = simulate_sublayer(hw, gemm, STRATEGIES["t3-track"])
    nmc = simulate_sublayer(hw, gemm, STRATEGIES["t3"])
    assert nmc.hbm_bytes < track.hbm_bytes
    assert track.hbm_bytes - nmc.hbm_bytes == pytest.approx((tp + 1) * _chunk_bytes(gemm), rel=1e-9)
    seq = simulate_sublayer(hw, gemm, STRATEGIES["sequential"])
    assert nmc.hbm_bytes < seq.hbm_bytes


@pytest.mark.parametrize("taken", [0, 8, 16, 48, 79])
def test_wave_quantization_slowdown_matches_formula(t3_gpu, taken):
    """Software overlap: each stage kernel needs ceil(tiles / (units - taken)) waves of one tile time."""
    gemm = sublayer_gemm("t-nlg", "FC-2", 8)  # compute-bound: a wave lasts one tile's compute time
    hw = ring_hardware(t3_gpu, 8)
    strategy = Strategy("sw", overlap="software", collective_cus=taken)
    result = simulate_sublayer(hw, gemm, strategy, NO_CONTENTION)
    units = t3_gpu.device.compute_units
    stage_tiles = (gemm.m // 8 // 128) * math.ceil(gemm.n / 128)
    tile_s = 2.0 * 128 * 128 * gemm.k / (t3_gpu.device.peak("fp16") / units)
    expected_waves = 8 * wave_count(stage_tiles, units, taken)
    assert expected_waves == 8 * math.ceil(stage_tiles / (units - taken))
    assert result.gemm_waves == expected_waves
    assert result.gemm_s == pytest.approx(expected_waves * tile_s, rel=1e-9)


def test_wave_count_formula_points():
    assert wave_count(160, 80) == 2
    assert wave_count(161, 80) == 3
    assert wave_count(160, 80, 16) == 3   # ceil(160 / 64)
    assert wave_count(64, 80, 16) == 1
    with pytest.raises(T3Error):
        wave_count(10, 80, 80)


def test_gemm_waves_cover_every_tile_and_byte_once():
    m, n, k = 1000, 700, 64
    waves = gemm_waves((m,), n, k, 10, 2.0, 128, 128, 1e-6)
    assert sum(w.tiles for w in waves) == math.ceil(m / 128) * math.ceil(n / 128)
    assert sum(w.write_bytes for w in waves) == pytest.approx(m * n * 2.0)
    # every wave reads at least one A panel and one B panel, and never more than the whole operands
    assert all(w.read_bytes >= (m % 128 or 128) * k * 2 for w in waves)
    staged = gemm_waves((500, 500), n, k, 10, 2.0, 128, 128, 1e-6)
    assert sorted(st for w in staged for st in w.completes) == [0, 1]
    assert sum(w.first_stage_write_bytes for w in staged) == pytest.approx(500 * n * 2.0)


def _flows(env, specs):
    return [Flow(1.0, 1.0, cap, env.event(), label, 0.0) for label, cap in specs]


def test_mca_admits_communication_by_queue_occupancy():
    sim = Simulation()
    cfg = MCAConfig(queue_threshold=0.9, starvation_share=0.05)
    flows = _flows(sim.env, [("gemm.rd|a", 50.0), ("coll.rd|d", None)])
    mca_allocate(cfg, 100.0, flows)
    assert [f.rate_bytes_per_s for f in flows] == pytest.approx([50.0, 40.0])  # headroom up to the threshold
    flows = _flows(sim.env, [("gemm.rd|a", 93.0), ("coll.rd|d", None)])
    mca_allocate(cfg, 100.0, flows)
    assert [f.rate_bytes_per_s for f in flows] == pytest.approx([93.0, 5.0])  # queue past the threshold: the floor
    flows = _flows(sim.env, [("gemm.rd|a", None), ("coll.rd|d", None)])
    mca_allocate(cfg, 100.0, flows)
    assert [f.rate_bytes_per_s for f in flows] == pytest.approx([95.0, 5.0])  # a backlogged GEMM fills the queue
    flows = _flows(sim.env, [("coll.rd|d", None), ("coll.wr|d", None)])
    mca_allocate(cfg, 100.0, flows)
    assert [f.rate_bytes_per_s for f in flows] == pytest.approx([50.0, 50.0])


def test_mca_never_slows_the_gemm(t3_gpu):
    gemm = sublayer_gemm("mega-gpt2", "OP", 16)  # small K: the GEMM's HBM demand is high
    hw = ring_hardware(t3_gpu, 16)
    fair = simulate_sublayer(hw, gemm, STRATEGIES["t3"])
    mca = simulate_sublayer(hw, gemm, STRATEGIES["t3-mca"])
    assert mca.gemm_s <= fair.gemm_s * (1 + 1e-9)
    assert mca.hbm_bytes == pytest.approx(fair.hbm_bytes)  # arbitration moves no bytes


def test_contention_slows_overlap_and_strategies_combine(t3_gpu):
    gemm = sublayer_gemm("mega-gpt2", "OP", 16)
    hw = ring_hardware(t3_gpu, 16)
    shared = simulate_sublayer(hw, gemm, STRATEGIES["software"])
    private = simulate_sublayer(hw, gemm, STRATEGIES["software"], NO_CONTENTION)
    assert shared.time_s > private.time_s
    combined = simulate_sublayer(hw, gemm, Strategy("sw-mca", overlap="software", collective_cus=8, mca=True))
    assert combined.time_s > 0
    nmc_no_mca = simulate_sublayer(hw, gemm, Strategy("nmc", overlap="t3", nmc=True, mca=False))
    assert nmc_no_mca.hbm_bytes == pytest.approx(simulate_sublayer(hw, gemm, STRATEGIES["t3"]).hbm_bytes)


def test_invalid_strategies_are_one_line_errors(t3_gpu):
    with pytest.raises(T3Error, match="near-memory"):
        Strategy("x", overlap="software", nmc=True)
    with pytest.raises(T3Error, match="DMA"):
        Strategy("x", overlap="t3", collective_cus=4)
    with pytest.raises(T3Error, match="none left"):
        simulate_sublayer(ring_hardware(t3_gpu, 8), sublayer_gemm("t-nlg", "OP", 8),
                          Strategy("x", overlap="software", collective_cus=80))
    with pytest.raises(MemoryModelError):
        MCAConfig(queue_threshold=0.0)
