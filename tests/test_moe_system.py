"""The expert-parallel MoE system model: closed-form checks and the direction of effects."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hwsim.hardware import Link, Topology, load_hardware
from hwsim.systems.moe import (
    MODELS,
    Batch,
    MoEError,
    MoEModel,
    attention_s,
    combine_slots,
    dispatch_slots,
    grouped_gemm_s,
    simulate,
    slot_bytes,
)

H100 = load_hardware("h100-sxm")


def _two_gpus():
    return replace(H100, topology=Topology(kind="switch", devices=2, link=Link(100e9, 2e-6)))


TOP1 = MoEModel("t", experts=2, top_k=1, moe_layers=1, hidden=1024, expert_ffn=4096, ffn_matrices=3,
                attention_params=4 * 1024 * 1024, heads=8, head_dim=128)


def test_one_layer_matches_closed_form():
    hw = _two_gpus()
    batch = Batch(tokens=4096, context_tokens=512)
    split = np.zeros((1, 2, 2))
    split[0, 0, 1] = 1.0  # expert 0 on GPU 1, expert 1 on GPU 0
    split[0, 1, 0] = 1.0
    loads = np.array([[4096.0, 0.0]])  # every token chooses expert 0
    run = simulate(TOP1, hw, batch, split, loads, np.zeros((0, 2, 2)))
    # layer 0: tokens start evenly spread, so GPU 0 sends half of them to GPU 1; top-1 has no combine
    dispatch = 2e-6 + 2048 * slot_bytes(TOP1) / 100e9
    expected = attention_s(TOP1, hw, batch) + dispatch + grouped_gemm_s(TOP1, hw, np.array([4096.0, 0.0]))
    assert run.time_s == pytest.approx(expected, rel=1e-9)
    assert run.cross_gpu_bytes == pytest.approx(2048 * slot_bytes(TOP1))


def test_byte_matrices_conserve_slots():
    rng = np.random.default_rng(0)
    routing = rng.integers(0, 50, size=(6, 6)).astype(float)
    split_prev = np.eye(3)[rng.integers(0, 3, 6)]
    split = np.eye(3)[rng.integers(0, 3, 6)]
    d = dispatch_slots(split_prev, split, routing.sum(axis=0), routing)
    assert d.sum() == pytest.approx(routing.sum())
    assert np.allclose(d.sum(axis=0), routing.sum(axis=0) @ split)  # what each GPU receives = its load
    c = combine_slots(np.array([10.0, 30.0, 60.0]), top_k=4)
    assert np.allclose(c, c.T) and np.all(np.diag(c) == 0)
    assert combine_slots(np.array([1.0, 2.0]), top_k=1).sum() == 0


def test_balanced_placement_is_faster_and_layer_ends_at_slowest_gpu():
    model = MODELS["olmoe-1b-7b"]
    hw = H100
    rng = np.random.default_rng(1)
    loads = rng.zipf(1.6, size=(2, 64)).astype(float)
    routing = np.einsum("a,b->ab", loads[0], loads[1])[None] / loads[1].sum()
    contiguous = np.zeros((2, 64, 8))
    contiguous[:, np.arange(64), np.arange(64) // 8] = 1.0
    balanced = np.zeros((2, 64, 8))
    for l in range(2):  # heaviest-first onto least loaded
        total = np.zeros(8)
        for e in np.argsort(-loads[l]):
            g = int(np.argmin(np.where(balanced[l].sum(axis=0) < 8, total, np.inf)))
            balanced[l, e, g] = 1.0
            total[g] += loads[l, e]
    batch = Batch(16384, 1024)
    a = simulate(model, hw, batch, contiguous, loads, routing)
    b = simulate(model, hw, batch, balanced, loads, routing)
    assert b.time_s < a.time_s
    for layer in a.layers:
        assert layer.time_s == pytest.approx(layer.attention_s + layer.gpu_end_s.max())
        assert layer.gpu_end_s.max() >= layer.compute_s.max()


def test_cross_node_bytes_only_on_two_level():
    model = MODELS["olmoe-1b-7b"]
    hw = load_hardware("h100-sxm-2x8")
    rng = np.random.default_rng(2)
    loads = rng.random((2, 64)) * 100
    routing = rng.random((1, 64, 64))
    split = np.zeros((2, 64, 16))
    split[:, np.arange(64), np.arange(64) // 4] = 1.0
    run = simulate(model, hw, Batch(2048 * 16, 1024), split, loads, routing)
    assert 0 < run.cross_node_bytes < run.cross_gpu_bytes
    single = simulate(model, H100, Batch(2048 * 8, 1024), split[:, :, :8] * 0 + np.eye(8)[np.arange(64) // 8][None],
                      loads, routing)
    assert single.cross_node_bytes == 0


def test_shape_errors():
    with pytest.raises(MoEError, match="do not fit"):
        simulate(MODELS["olmoe-1b-7b"], H100, Batch(1024, 128), np.zeros((1, 8, 8)), np.ones((1, 8)), np.zeros((0, 8, 8)))
