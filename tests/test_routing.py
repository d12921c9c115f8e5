"""Routing traces: the seeded generator, the real-file loader and the fit."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.placement import PlacementError
from hwsim.placement.routing import (
    affinity,
    fit_model,
    load_cv,
    load_routing,
    routing_file,
    sample_trace,
    synthetic_model,
)


def test_generator_is_deterministic_and_keeps_counts():
    a = sample_trace(synthetic_model(4, 16, 1.0, 0.5, np.random.default_rng(3)), 5000, np.random.default_rng(4))
    b = sample_trace(synthetic_model(4, 16, 1.0, 0.5, np.random.default_rng(3)), 5000, np.random.default_rng(4))
    assert np.array_equal(a.loads, b.loads) and np.array_equal(a.routing, b.routing)
    assert np.all(a.loads.sum(axis=1) == 5000)
    assert np.array_equal(a.routing.sum(axis=2), a.loads[:-1])   # rows: who left layer l
    assert np.array_equal(a.routing.sum(axis=1), a.loads[1:])    # columns: who arrived at l+1


def test_chain_keeps_the_asked_popularity():
    model = synthetic_model(5, 32, 1.2, 0.9, np.random.default_rng(0))
    for l in range(4):
        assert np.allclose(model.popularity[l] @ model.transitions[l], model.popularity[l + 1], rtol=1e-6, atol=1e-9)


def test_skew_and_concentration_move_cv_and_affinity_the_right_way():
    rng = np.random.default_rng
    flat = synthetic_model(3, 32, 0.2, 1.0, rng(1))
    skewed = synthetic_model(3, 32, 1.5, 1.0, rng(1))
    assert load_cv(skewed.popularity) > 2 * load_cv(flat.popularity)
    tight = synthetic_model(3, 32, 0.5, 0.95, rng(1))
    loose = synthetic_model(3, 32, 0.5, 0.0, rng(1))
    joint = lambda m: m.popularity[0][:, None] * m.transitions[0]
    assert affinity(joint(tight)) > 0.3 > 1e-9 > affinity(joint(loose))


def test_affinity_limits():
    assert affinity(np.outer([1, 2, 3], [4, 5, 6])) == pytest.approx(0.0, abs=1e-12)
    assert affinity(np.diag([1.0, 1.0, 1.0])) == pytest.approx(1.0)


def test_loader_reads_the_real_files():
    real = load_routing(routing_file("olmoe-1b-7b", "arxiv"))
    assert (real.num_experts, real.top_k, real.num_layers) == (64, 8, 16)
    assert real.layers.tolist() == [0, 7, 15]
    assert real.cross_counts.shape == (2, 64, 64)
    assert real.expert_counts.sum(axis=1).tolist() == [real.expert_counts.sum() / 3] * 3


def test_loader_errors(tmp_path):
    with pytest.raises(PlacementError, match="no routing statistics for 'gpt' on 'arxiv'"):
        routing_file("gpt", "arxiv")
    bad = tmp_path / "x.npz"
    np.savez(bad, num_experts=np.array(4))
    with pytest.raises(PlacementError, match="missing arrays"):
        load_routing(bad)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, **{k: np.array([{"a": 1}], dtype=object) for k in
                         ("num_experts", "top_k", "num_layers", "layers", "expert_counts", "cross_pairs", "cross_counts")})
    with pytest.raises(PlacementError, match="cannot read"):
        load_routing(pickled)


def test_fit_matches_real_cv_and_affinity():
    real = load_routing(routing_file("olmoe-1b-7b", "github"))
    model, report = fit_model(real, structure_seed=1)
    assert report.fitted_cv == pytest.approx(report.real_cv, rel=0.01)
    assert report.fitted_affinity == pytest.approx(report.real_affinity, rel=0.1)
    # recorded layers keep their real popularity
    assert np.allclose(model.popularity[7], real.expert_counts[1] / real.expert_counts[1].sum())
    trace = sample_trace(model, 400_000, np.random.default_rng(0))
    assert load_cv(trace.loads[[0, 7, 15]]) == pytest.approx(report.real_cv, rel=0.05)
