"""Cost models against hand algebra: round-number hardware makes every expected time exact."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.costs import (
    DTYPE_BYTES,
    all_to_all,
    attention,
    efficiency_from_fit,
    elementwise,
    fit_linear_time,
    gemm,
    gemv,
    itemsize,
    memcpy,
    ring_all_gather,
    ring_all_reduce,
    ring_reduce_scatter,
    roofline,
    softmax,
    topk,
)
from hwsim.errors import CostError, HwsimError
from hwsim.hardware import load_hardware
from hwsim.hardware.model import Device, Efficiency, Link, Memory, Topology

PEAK = 1e12  # FLOP/s
BW = 1e11  # bytes/s


def make_device(overhead_s: float = 0.0, efficiency: Efficiency = Efficiency()) -> Device:
    return Device(
        name="round",
        kind="gpu",
        compute_units=1,
        clock_hz=1e9,
        peak_flops_per_s={"fp32": PEAK, "fp16": PEAK, "int8": PEAK},
        memory=Memory(capacity_bytes=1e12, bandwidth_bytes_per_s=BW),
        sram_bytes=1e6,
        launch_overhead_s=overhead_s,
        efficiency=efficiency,
    )


DEV = make_device()


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


# ------------------------------------------------------------------------------------------ ops


def test_dtype_sizes():
    assert DTYPE_BYTES == {"fp64": 8, "fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1,
                           "int12": 1.5, "int4": 0.5}
    assert itemsize("int12") == 1.5


def test_roofline_takes_the_larger_term_plus_overhead():
    dev = make_device(overhead_s=1e-6)
    cost = roofline(dev, "x", 2e9, 1e6, "fp32")
    assert (cost.compute_s, cost.memory_s, cost.overhead_s) == (2e-3, 1e-5, 1e-6)
    assert close(cost.time_s, 1e-6 + 2e-3)
    assert cost.bound == "compute" and cost.intensity == 2e3
    assert roofline(dev, "x", 1e3, 1e9, "fp32").bound == "memory"
    tiny = roofline(dev, "x", 1.0, 1.0, "fp32")
    assert tiny.bound == "overhead" and close(tiny.time_s, 1e-6 + 1e-11)
    nothing = roofline(dev, "x", 0, 0, None)
    assert (nothing.compute_s, nothing.memory_s, nothing.time_s) == (0.0, 0.0, 1e-6)


def test_gemm_flops_bytes_and_time():
    cost = gemm(DEV, 1000, 1000, 1000, "fp32")
    assert cost.flops == 2e9 and cost.bytes == 3e6 * 4
    assert close(cost.compute_s, 2e-3) and close(cost.memory_s, 1.2e-4)
    assert close(cost.time_s, 2e-3) and cost.bound == "compute"
    batched = gemm(DEV, 1000, 1000, 1000, "fp32", batch=3)
    assert batched.flops == 3 * cost.flops and batched.bytes == 3 * cost.bytes
    skinny = gemm(DEV, 2, 3, 5, "fp16")
    assert skinny.flops == 60 and skinny.bytes == (10 + 15 + 6) * 2


ROOF = dataclasses.replace(DEV, kind="accelerator")  # no per-family models: the plain roofline


def test_gemv_is_memory_bound():
    cost = gemv(ROOF, 1000, 1000, "fp32")
    assert cost.flops == 2e6 and cost.bytes == (1e6 + 2000) * 4
    assert close(cost.time_s, 4.008e6 / BW) and cost.bound == "memory"
    assert gemv(DEV, 10, 20, "fp32", batch=4).flops == 4 * 400


def test_elementwise_softmax_topk_memcpy():
    ew = elementwise(DEV, 1_000_000, "fp16")
    assert ew.flops == 1e6 and ew.bytes == 6e6 and close(ew.time_s, 6e-5)
    assert elementwise(DEV, 10, "fp32", inputs=1, outputs=1, flops_per_element=0).flops == 0

    sm = softmax(DEV, 100, 1000, "fp32")
    assert sm.flops == 5e5 and sm.bytes == 8e5 and close(sm.time_s, 8e-6)

    tk = topk(ROOF, 10, 1000, 8, "fp32")
    assert tk.flops == 1e4 and tk.bytes == 10 * (1000 * 4 + 8 * (4 + 4))
    assert close(tk.time_s, tk.bytes / BW)
    assert topk(DEV, 10, 1000, 8, "fp32", comparisons_per_element=2).flops == 2e4
    assert topk(DEV, 1, 5, 5, "int8").bytes == 5 + 5 * 5

    mc = memcpy(DEV, 1e6)
    assert mc.flops == 0 and mc.bytes == 2e6 and close(mc.time_s, 2e-5) and mc.bound == "memory"


def test_attention_dense_counts():
    cost = attention(DEV, heads=8, q_len=128, kv_len=1024, head_dim=64, dtype="fp16")
    scores = 128 * 1024
    assert cost.flops == 8 * (4 * scores * 64 + 5 * scores)
    assert cost.bytes == 8 * (2 * 128 + 2 * 1024) * 64 * 2
    assert close(cost.time_s, max(cost.flops / PEAK, cost.bytes / BW))


def test_kept_tokens_and_heads_are_strictly_cheaper():
    args = dict(heads=8, q_len=16, kv_len=1024, head_dim=64, dtype="fp16")
    dense = attention(DEV, **args)
    for kept in (dict(kept_tokens=512), dict(kept_heads=[0, 2, 5]), dict(kept_tokens=1000, kept_heads=7)):
        pruned = attention(DEV, **args, **kept)
        assert pruned.flops < dense.flops and pruned.bytes < dense.bytes and pruned.time_s < dense.time_s
    by_index = attention(DEV, **args, kept_tokens=np.arange(0, 1024, 2), kept_heads=(1, 3))
    assert by_index == attention(DEV, **args, kept_tokens=512, kept_heads=2)
    assert attention(DEV, **args, kept_tokens=1024, kept_heads=8) == dense


def test_half_point_gives_half_of_max_and_time_is_linear_in_work():
    eff = Efficiency(compute_max=0.8, compute_half_flops=1e9, memory_max=0.5, memory_half_bytes=1e6)
    assert eff.compute(1e9) == 0.4 and eff.memory(1e6) == 0.25
    dev = make_device(overhead_s=3e-6, efficiency=eff)
    for flops in (1e6, 1e9, 1e12):
        cost = roofline(dev, "x", flops, 0, "fp32")
        assert math.isclose(cost.time_s, 3e-6 + (flops + 1e9) / (PEAK * 0.8), rel_tol=1e-12)
    at_half = roofline(dev, "x", 1e9, 0, "fp32")
    assert math.isclose(at_half.compute_s, 2 * 1e9 / (PEAK * 0.8), rel_tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 64))
def test_gemm_time_is_monotone_in_size(m, n, k, grow):
    dev = load_hardware("h100-sxm").device
    assert gemm(dev, m, n, k, "bf16").time_s <= gemm(dev, m + grow, n, k, "bf16").time_s
    assert gemm(dev, m, n, k, "bf16").time_s <= gemm(dev, m, n, k + grow, "bf16").time_s


# ---------------------------------------------------------------------------------- collectives

RING = Topology(kind="ring", devices=4, link=Link(1e10, 1e-6))


def test_ring_reduce_scatter_closed_form():
    cost = ring_reduce_scatter(RING, 4e6)
    chunk = 1e6
    assert cost.steps == 3 and cost.devices == 4
    assert close(cost.time_s, 3 * (1e-6 + chunk / 1e10))
    assert cost.link_bytes_per_device == 3 * chunk
    assert cost.hbm_bytes_per_device == 3 * 5 * chunk
    near_memory = ring_reduce_scatter(RING, 4e6, hbm_step=lambda step, c: 2 * c)
    assert near_memory.hbm_bytes_per_device == 3 * 2 * chunk and near_memory.time_s == cost.time_s


def test_ring_all_gather_closed_form():
    cost = ring_all_gather(RING, 4e6)
    assert cost.steps == 3 and close(cost.time_s, 3 * (1e-6 + 1e-4))
    assert cost.link_bytes_per_device == 3e6 and cost.hbm_bytes_per_device == 6e6


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_all_reduce_link_bytes_are_two_n_minus_one_over_n(n):
    topo = Topology(kind="ring", devices=n, link=Link(1e10, 1e-6))
    size = 1.2e7
    cost = ring_all_reduce(topo, size)
    assert math.isclose(cost.link_bytes_per_device, 2 * (n - 1) / n * size, rel_tol=1e-12)
    assert cost.steps == 2 * (n - 1)
    rs, ag = ring_reduce_scatter(topo, size), ring_all_gather(topo, size)
    assert math.isclose(cost.time_s, rs.time_s + ag.time_s, rel_tol=1e-12)
    assert math.isclose(cost.hbm_bytes_per_device, rs.hbm_bytes_per_device + ag.hbm_bytes_per_device, rel_tol=1e-12)


@pytest.mark.parametrize("chunks", [1, 2, 5, 16])
def test_chunked_all_reduce_adds_latency_only(chunks):
    n, size, lat, bw = 4, 4e6, 1e-6, 1e10
    cost = ring_all_reduce(RING, size, chunks=chunks)
    expected = (2 * (n - 1) + chunks - 1) * lat + 2 * (n - 1) / n * size / bw
    assert math.isclose(cost.time_s, expected, rel_tol=1e-12)
    assert cost.link_bytes_per_device == ring_all_reduce(RING, size).link_bytes_per_device


def test_two_level_ring_is_gated_by_the_network_hop():
    topo = Topology(kind="two-level", devices=8, nodes=2, link=Link(1e11, 1e-6), inter_link=Link(1e10, 5e-6))
    cost = ring_reduce_scatter(topo, 8e6)
    assert close(cost.time_s, 7 * (5e-6 + 1e6 / 1e10))
    inside = Topology(kind="switch", devices=8, link=Link(1e11, 1e-6))
    assert close(ring_reduce_scatter(inside, 8e6).time_s, 7 * (1e-6 + 1e6 / 1e11))


def test_single_device_collectives_are_free():
    single = Topology()
    for cost in (ring_reduce_scatter(single, 1e6), ring_all_gather(single, 1e6), ring_all_reduce(single, 1e6, 4),
                 all_to_all(single, [[5.0]])):
        assert (cost.time_s, cost.link_bytes_per_device, cost.hbm_bytes_per_device) == (0.0, 0.0, 0.0)


def test_all_to_all_on_a_switch_is_set_by_the_busiest_port():
    topo = Topology(kind="switch", devices=4, link=Link(1e9, 1e-6))
    m = np.full((4, 4), 1e5)
    m[0, 1:] = 1e6  # device 0 sends 3 MB: its up port is the hot link
    m[np.diag_indices(4)] = 1e12  # local: ignored
    cost = all_to_all(topo, m)
    assert cost.hot_link == ("up", 0, -1) and cost.link_loads[("up", 0, -1)] == 3e6
    assert cost.link_loads[("down", -1, 1)] == 1e6 + 2e5
    assert close(cost.time_s, 1e-6 + 3e6 / 1e9)
    assert cost.link_bytes_per_device == 3e6 and cost.size_bytes == 3e6 + 9e5


def test_all_to_all_on_a_ring_sums_multi_hop_routes():
    topo = Topology(kind="ring", devices=4, link=Link(1e9))
    m = np.zeros((4, 4))
    m[0, 2] = 1e6  # two hops; a tie goes forward: 0->1->2
    m[1, 2] = 5e5
    m[3, 0] = 2e5
    cost = all_to_all(topo, m)
    assert dict(cost.link_loads) == {("ring", 0, 1): 1e6, ("ring", 1, 2): 1.5e6, ("ring", 3, 0): 2e5}
    assert cost.hot_link == ("ring", 1, 2) and close(cost.time_s, 1.5e-3)


def test_all_to_all_on_two_levels_is_set_by_the_nic():
    topo = Topology(kind="two-level", devices=4, nodes=2, link=Link(1e11, 1e-6), inter_link=Link(1e10, 1e-6))
    m = np.full((4, 4), 1e6)
    cost = all_to_all(topo, m)
    assert cost.link_loads[("nic-out", 0, -1)] == 2e6 and cost.link_loads[("up", 0, -1)] == 1e6
    assert close(cost.time_s, 1e-6 + 2e6 / 1e10)
    assert cost.hot_link[0] in ("nic-out", "nic-in")
    assert cost.hbm_bytes_per_device == 6e6


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 1e9), min_size=16, max_size=16), st.permutations(range(4)))
def test_all_to_all_on_a_switch_ignores_device_labels(entries, perm):
    topo = Topology(kind="switch", devices=4, link=Link(1e9, 1e-6))
    m = np.array(entries).reshape(4, 4)
    p = np.array(perm)
    relabelled = m[np.ix_(p, p)]
    assert all_to_all(topo, relabelled).time_s == all_to_all(topo, m).time_s


# ----------------------------------------------------------------------------------------- fit


def test_fit_recovers_a_known_line():
    rate, fixed = 2.5e11, 7e-6
    points = [(x, fixed + x / rate) for x in (1e3, 1e5, 1e7, 1e9, 1e11)]
    got_rate, got_fixed = fit_linear_time(points)
    assert math.isclose(got_rate, rate, rel_tol=1e-9) and math.isclose(got_fixed, fixed, rel_tol=1e-9)


def test_fit_round_trips_through_the_efficiency_identity():
    eff = Efficiency(compute_max=0.75, compute_half_flops=4e9)
    dev = make_device(overhead_s=4e-6, efficiency=eff)
    points = [(x, roofline(dev, "x", x, 0, "fp32").time_s) for x in (1e6, 1e8, 1e10, 1e12)]
    rate, fixed = fit_linear_time(points)
    max_fraction, half = efficiency_from_fit(rate, fixed, PEAK, 4e-6)
    assert math.isclose(max_fraction, 0.75, rel_tol=1e-9) and math.isclose(half, 4e9, rel_tol=1e-6)


def test_efficiency_from_fit_caps_and_clamps():
    assert efficiency_from_fit(2e12, 1e-6, PEAK, 0.0) == (1.0, 1e-6 * PEAK)
    assert efficiency_from_fit(5e11, 1e-6, PEAK, 2e-6) == (0.5, 0.0)


# -------------------------------------------------------------------------------------- errors

RAISES = [
    (lambda: itemsize("fp7"), "dtype"),
    (lambda: gemm(DEV, 0, 1, 1), "m"),
    (lambda: gemm(DEV, 1, -3, 1), "n"),
    (lambda: gemm(DEV, 1, 1, 2.5), "k"),
    (lambda: gemm(DEV, 1, 1, 1, batch=0), "batch"),
    (lambda: gemm(DEV, 1, 1, 1, "fp99"), "dtype"),
    (lambda: gemm(DEV, 1, 1, 1, "bf16"), "dtype 'bf16'"),
    (lambda: gemv(DEV, 1, 0), "k"),
    (lambda: elementwise(DEV, -1), "n"),
    (lambda: elementwise(DEV, 4, inputs=0, outputs=0), "inputs"),
    (lambda: elementwise(DEV, 4, flops_per_element=-1), "flops_per_element"),
    (lambda: softmax(DEV, 0, 4), "rows"),
    (lambda: topk(DEV, 1, 4, 5), "k"),
    (lambda: topk(DEV, 1, 4, 0), "k"),
    (lambda: attention(DEV, 2, 4, 8, 16, kept_tokens=9), "kept_tokens"),
    (lambda: attention(DEV, 2, 4, 8, 16, kept_tokens=[0, 8]), "kept_tokens"),
    (lambda: attention(DEV, 2, 4, 8, 16, kept_tokens=[1, 1]), "kept_tokens"),
    (lambda: attention(DEV, 2, 4, 8, 16, kept_tokens=[]), "kept_tokens"),
    (lambda: attention(DEV, 2, 4, 8, 16, kept_heads=3), "kept_heads"),
    (lambda: attention(DEV, 2, 4, 8, 0), "head_dim"),
    (lambda: memcpy(DEV, 0), "nbytes"),
    (lambda: roofline(DEV, "x", -1, 0, "fp32"), "flops"),
    (lambda: roofline(DEV, "x", 1, float("nan"), "fp32"), "nbytes"),
    (lambda: ring_reduce_scatter(RING, 0), "size_bytes"),
    (lambda: ring_all_gather(RING, -1), "size_bytes"),
    (lambda: ring_all_reduce(RING, 1e6, chunks=0), "chunks"),
    (lambda: all_to_all(RING, np.zeros((3, 4))), "byte_matrix"),
    (lambda: all_to_all(RING, -np.ones((4, 4))), "byte_matrix"),
    (lambda: all_to_all(RING, np.full((4, 4), np.inf)), "byte_matrix"),
    (lambda: fit_linear_time([(1.0, 1.0)]), "points"),
    (lambda: fit_linear_time([(1.0, 2.0), (2.0, 1.0)]), "slope"),
    (lambda: fit_linear_time([(1.0, 1.0), (1.0, 2.0)]), "points"),
    (lambda: fit_linear_time([(1.0, 0.0), (2.0, 1.0)]), "points"),
    (lambda: efficiency_from_fit(0.0, 1e-6, PEAK, 0.0), "rate"),
    (lambda: efficiency_from_fit(1e9, 1e-6, -1.0, 0.0), "peak"),
]


@pytest.mark.parametrize("call, name", RAISES)
def test_bad_inputs_raise_cost_error_naming_the_argument(call, name):
    with pytest.raises(CostError, match=name) as info:
        call()
    assert isinstance(info.value, HwsimError)


def test_bytes_that_fit_on_chip_go_at_sram_bandwidth():
    from dataclasses import replace

    from hwsim.costs import memcpy
    from hwsim.hardware import load_hardware

    cpu = load_hardware("xeon-e5-2640v4").device
    fast = replace(cpu, sram_bandwidth_bytes_per_s=cpu.memory.bandwidth_bytes_per_s * 4)
    small, large = cpu.sram_bytes / 4, cpu.sram_bytes * 4
    assert memcpy(fast, small).memory_s == pytest.approx(memcpy(cpu, small).memory_s / 4)
    assert memcpy(fast, large).memory_s == pytest.approx(memcpy(cpu, large).memory_s)


def test_gpu_gemv_and_topk_come_from_the_family_models():
    """A GPU's GEMV streams at the GEMV fraction of the staircase and its top-k is priced by the
    selection kernel's per-row rate with rows in parallel: not the roofline, not the GEMM curve."""
    from hwsim.costs.ops import operator_models

    models = operator_models(DEV)
    assert models is not None and operator_models(ROOF) is None
    g = gemv(DEV, 4096, 4096, "fp16")
    assert close(g.time_s, models.gemv_s(4096, 4096, 2.0))
    assert g.time_s > gemv(ROOF, 4096, 4096, "fp16").time_s  # slower than a perfect stream
    one_row = topk(DEV, 1, 1 << 20, 64, "fp32").time_s
    many_rows = topk(DEV, 2, 1 << 20, 64, "fp32").time_s  # 2 <= parallel rows; the read of 2 rows is shorter
    assert close(one_row, many_rows)  # rows run side by side, up to the resident blocks
    assert topk(DEV, 1, 1 << 21, 64, "fp32").time_s > 1.9 * (one_row - models.launch_s)
