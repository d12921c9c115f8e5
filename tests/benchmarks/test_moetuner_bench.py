"""The MoETuner ILPs at the issue's scale points within 60 s, with the gap to a valid bound:
64 experts x 16 GPUs (2 nodes) x 16 layers (OLMoE, fitted generator) and 256 experts x 8 GPUs x 58 layers
(DeepSeek-V3 shape, synthetic routing with OLMoE's fitted skew and affinity: no public DeepSeek statistics).

Run with ``pytest tests/benchmarks --benchmark-enable``; solve time, method, status and gap go to
``extra_info``. With benchmarks disabled (CI) each still runs once and checks the budget and the answer.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.placement import PlacementProblem, objective, solve, validate
from hwsim.placement.routing import (
    fit_model,
    load_routing,
    routing_file,
    sample_trace,
    synthetic_model,
)


def olmoe_problem() -> PlacementProblem:
    model, _ = fit_model(load_routing(routing_file("olmoe-1b-7b", "arxiv")), structure_seed=0)
    trace = sample_trace(model, 2048 * 16 * 8, np.random.default_rng(0))
    # costs as the moetuner suite derives them for OLMoE on two 8-GPU nodes (order of magnitude)
    return PlacementProblem(trace.loads, trace.routing, gpus=16, capacity=5, gpus_per_node=8,
                            intra_node_cost=0.0014, inter_node_cost=0.013)


def deepseek_problem() -> PlacementProblem:
    _, rep = fit_model(load_routing(routing_file("olmoe-1b-7b", "arxiv")), structure_seed=0)
    rng = np.random.default_rng(1)
    model = synthetic_model(58, 256, rep.zipf_s, rep.concentration, rng, top_k=8)
    trace = sample_trace(model, 2048 * 8 * 8, rng)
    return PlacementProblem(trace.loads, trace.routing, gpus=8, capacity=33, intra_node_cost=0.002)


@pytest.mark.slow
@pytest.mark.parametrize("which,shape", [("olmoe", (16, 64, 16)), ("deepseek", (58, 256, 8))])
@pytest.mark.parametrize("solver", ["moetuner", "moetuner-replicate"])
def test_ilp_scale_points(benchmark, which, shape, solver):
    problem = olmoe_problem() if which == "olmoe" else deepseek_problem()
    assert (problem.layers, problem.experts, problem.gpus) == shape
    placement = benchmark.pedantic(lambda: solve(problem, solver, time_limit_s=40.0), rounds=1, iterations=1)
    validate(problem, placement)
    info = placement.info
    benchmark.extra_info.update({k: info[k] for k in ("solve_s", "gap", "method", "status", "objective", "lower_bound")})
    assert info["solve_s"] < 60.0
    assert 0.0 <= info["gap"] < 0.5
    assert info["lower_bound"] <= objective(problem, placement).total
    baseline = "greedy" if solver == "moetuner" else "eplb"
    if solver == "moetuner-replicate":
        assert objective(problem, placement).total <= objective(problem, solve(problem, baseline)).total + 1e-6
