"""The MoETuner ILP at the issue's scale point: 64 experts x 16 GPUs (2 nodes) x 16 layers within 60 s.

Run with ``pytest tests/benchmarks --benchmark-enable``; the solve time, method, status and gap to a
proven lower bound go to ``extra_info``. With benchmarks disabled (CI) it still runs once and checks
the budget and the answer.
"""

from __future__ import annotations

import numpy as np

from hwsim.placement import objective, solve, validate
from hwsim.placement.routing import fit_model, load_routing, routing_file, sample_trace


def scale_problem():
    from hwsim.placement import PlacementProblem

    model, _ = fit_model(load_routing(routing_file("olmoe-1b-7b", "arxiv")), structure_seed=0)
    trace = sample_trace(model, 2048 * 16 * 8, np.random.default_rng(0))
    # costs as the moetuner suite derives them for OLMoE on two 8-GPU H100 nodes (order of magnitude)
    return PlacementProblem(trace.loads, trace.routing, gpus=16, capacity=5, gpus_per_node=8,
                            intra_node_cost=0.0014, inter_node_cost=0.013)


def test_moetuner_ilp_scale_point(benchmark):
    problem = scale_problem()
    assert (problem.layers, problem.experts, problem.gpus) == (16, 64, 16)
    placement = benchmark.pedantic(lambda: solve(problem, "moetuner", time_limit_s=50.0, hard_timeout_s=60.0),
                                   rounds=1, iterations=1)
    validate(problem, placement)
    info = placement.info
    benchmark.extra_info.update({k: info[k] for k in ("solve_s", "gap", "method", "status", "objective", "lower_bound")})
    assert info["solve_s"] < 60.0
    assert 0.0 <= info["gap"] < 0.5
    assert objective(problem, placement).total <= objective(problem, solve(problem, "greedy")).total
